/**
 * Live interoperability with the C lcsync 0.3.2 (needs root and LCSYNC_C_REF, see test/interop/cref.ts): delta
 * syncs and encryption, both ways.
 *  - delta: after an 8-byte change in a 16 MiB file each receiver fetches one chunk (ours: chunksFetched of
 *    its --json summary; the C client: "32768 bytes synced" of its -v output, which counts fetched chunk bytes),
 *    and the sender's wire bytes stay near one chunk;
 *  - a 128-byte key file and a password (LCSYNC_PASSWORD, derived as the C tool does) on both sides. The C
 *    0.3.2 client is known to crash in encrypted mode while building a received tree; where it does, the test
 *    asserts the crash signature, shows that the C client crashes the same way against the C share (so it is the
 *    C tool's defect, not our share's), and keeps the other direction.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from '../lab.js';
import { describeUnless, firstReason } from '../skip.js';
import { runSync, sha256, startShare, type RunningShare } from '../e2e.js';
import { ExitCode } from '../../src/core/base/errors.js';
import { crefReason, describeRun, runCSync, startCShare, type CKey, type CShare, type CSyncRun } from './cref.js';

const why = firstReason(crefReason(), skipReason(['nft']));

const C_SHARE = 0;
const OUR_SHARE = 1;
const RECEIVER = 2;
const CHUNK = 32_768;
const PASSWORD = 'correct horse battery staple!';

/**
 * Our share or sync with LCSYNC_PASSWORD set. The e2e.ts helpers spawn synchronously with process.env, so the
 * variable is set only for the duration of that synchronous call and never leaks into later processes.
 */
function withPassword<T>(start: () => Promise<T>): Promise<T> {
  const old = process.env.LCSYNC_PASSWORD;
  process.env.LCSYNC_PASSWORD = PASSWORD;
  try {
    return start();
  } finally {
    if (old === undefined) delete process.env.LCSYNC_PASSWORD;
    else process.env.LCSYNC_PASSWORD = old;
  }
}

/**
 * Whether a C run ended the way the known encrypted-client defect ends it: glibc finds its heap corrupted
 * ("malloc(): invalid size (unsorted)" in 0.3.2 on glibc 2.36) and aborts.
 */
function isKnownCrash(r: CSyncRun): boolean {
  return r.signal === 'SIGABRT' && /\b(malloc|free|realloc)\(\)|corrupted/.test(r.stderr);
}

describeUnless(why, 'interop with the C lcsync 0.3.2: delta and encryption both ways (needs root and LCSYNC_C_REF)', () => {
  let lab: Lab;
  let work: string;
  let keyfile: string;
  let cShare: CShare | undefined;
  let ourShare: RunningShare | undefined;
  const notes: string[] = [];

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-interop-'));
    mkdirSync(path.join(work, 'enc'));
    writeFileSync(path.join(work, 'enc', 'f.bin'), randomBytes(300_000));
    keyfile = path.join(work, 'keyfile');
    writeFileSync(keyfile, randomBytes(128));
  }, 60_000);

  afterEach(async () => {
    await cShare?.stop();
    await ourShare?.stop();
    cShare = undefined;
    ourShare = undefined;
  });

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
    if (notes.length > 0) console.log(`\ninterop delta and encryption:\n  ${notes.join('\n  ')}`);
  });

  /** A 16 MiB file in DIR/big.bin, and a copy of it as it was before 8 bytes in its middle changed. */
  function changedFile(dir: string): { src: string; old: string } {
    mkdirSync(path.join(work, dir));
    const src = path.join(work, dir, 'big.bin');
    writeFileSync(src, randomBytes(16 * 1024 * 1024));
    const old = path.join(work, `${dir}-old.bin`);
    copyFileSync(src, old);
    const fd = openSync(src, 'r+');
    writeSync(fd, Buffer.from('8 bytes!'), 0, 8, 8 * 1024 * 1024 + 100);
    closeSync(fd);
    return { src, old };
  }

  it('delta, C share -> our sync: after an 8-byte change our sync fetches one chunk', async () => {
    const { src, old } = changedFile('dc');
    cShare = await startCShare(lab, C_SHARE, [path.dirname(src)]);
    const before = await lab.counters(C_SHARE);
    const r = await runSync(lab, RECEIVER, ['--timeout', '30', 'dc/big.bin', old], 120_000);
    const sent = (await lab.counters(C_SHARE)).tx_bytes - before.tx_bytes;
    expect(r.code, `${r.stderr}\nC share: ${cShare.stderr().slice(-1000)}`).toBe(0);
    expect(sha256(old)).toBe(sha256(src));
    expect(r.summary!.chunksFetched).toBe(1);
    // The C share sent only what our sync joined: the tree and one chunk, not the file.
    expect(sent).toBeLessThan(16 * CHUNK);
    notes.push(`delta C share -> our sync: chunksFetched ${r.summary!.chunksFetched}, C share sent ${sent} B`);
  }, 150_000);

  it('delta, our share -> C sync: after an 8-byte change the C client fetches one chunk', async () => {
    const { src, old } = changedFile('do');
    ourShare = await startShare(lab, OUR_SHARE, [path.dirname(src)]);
    const before = await lab.counters(OUR_SHARE);
    const r = await runCSync(lab, RECEIVER, ['do/big.bin', old], { batch: true }, 120_000);
    const sent = (await lab.counters(OUR_SHARE)).tx_bytes - before.tx_bytes;
    expect(r.code, describeRun(r)).toBe(0);
    expect(sha256(old)).toBe(sha256(src));
    expect(r.bytesSynced, describeRun(r)).toBe(CHUNK);
    // The tree (16 MiB: 1023 nodes, about 33 KiB) and one chunk, with repair: far below a second chunk's worth of
    // the file, let alone the file.
    expect(sent).toBeLessThan(16 * CHUNK);
    notes.push(`delta our share -> C sync: C says ${r.bytesSynced} bytes synced, our share sent ${sent} B`);
  }, 150_000);

  /** The C client against our share with `key`: it completes with identical bytes, or aborts with its known defect. */
  async function cClientFromOurShare(key: CKey, label: string, extra: string[]): Promise<void> {
    const src = path.join(work, 'enc', 'f.bin');
    ourShare = await withPassword(() => startShare(lab, OUR_SHARE, [path.dirname(src)], extra));
    const dest = path.join(work, `${label}-c.bin`);
    const r = await runCSync(lab, RECEIVER, ['enc/f.bin', dest], key, 60_000);
    await ourShare.stop();
    ourShare = undefined;
    if (r.code === 0) {
      expect(sha256(dest)).toBe(sha256(src));
      notes.push(`${label}, our share -> C sync: completed, identical`);
      return;
    }
    // Not a success: it must be the known crash, and the C client must crash the same way against the C share.
    expect(isKnownCrash(r), describeRun(r)).toBe(true);
    expect(existsSync(dest) && sha256(dest) === sha256(src)).toBe(false);
    cShare = await startCShare(lab, C_SHARE, [path.dirname(src)], key);
    const ref = await runCSync(lab, RECEIVER, ['enc/f.bin', path.join(work, `${label}-cc.bin`)], key, 60_000);
    expect(isKnownCrash(ref), `C client against the C share: ${describeRun(ref)}`).toBe(true);
    notes.push(`${label}, our share -> C sync: the C client aborts (${r.signal}, "${r.stderr.trim().split('\n').pop()}"), its known defect: it aborts the same way against the C share`);
  }

  it('a 128-byte key file, C share -> our sync; a wrong key is refused with exit 4 and writes nothing', async () => {
    const src = path.join(work, 'enc', 'f.bin');
    cShare = await startCShare(lab, C_SHARE, [path.dirname(src)], { keyfile });
    const dest = path.join(work, 'kf-ours.bin');
    const r = await runSync(lab, RECEIVER, ['--keyfile', keyfile, '--timeout', '30', 'enc/f.bin', dest]);
    expect(r.code, `${r.stderr}\nC share: ${cShare.stderr().slice(-1000)}`).toBe(0);
    expect(sha256(dest)).toBe(sha256(src));
    const wrong = path.join(work, 'wrongkey');
    writeFileSync(wrong, randomBytes(128));
    const bad = await runSync(lab, RECEIVER, ['--keyfile', wrong, '--timeout', '30', 'enc/f.bin', path.join(work, 'kf-wrong.bin')]);
    expect(bad.code, bad.stderr).toBe(ExitCode.integrity);
    expect(bad.stderr).toContain('cannot decrypt: wrong key or password');
    expect(existsSync(path.join(work, 'kf-wrong.bin'))).toBe(false);
  }, 120_000);

  it('a 128-byte key file, our share -> C sync (the C client\'s known crash recorded as its defect)', async () => {
    await cClientFromOurShare({ keyfile }, 'key file', ['--keyfile', keyfile]);
  }, 150_000);

  it('a password (LCSYNC_PASSWORD), C share -> our sync', async () => {
    const src = path.join(work, 'enc', 'f.bin');
    cShare = await startCShare(lab, C_SHARE, [path.dirname(src)], { password: PASSWORD });
    const dest = path.join(work, 'pw-ours.bin');
    const r = await withPassword(() => runSync(lab, RECEIVER, ['--timeout', '30', 'enc/f.bin', dest]));
    expect(r.code, `${r.stderr}\nC share: ${cShare.stderr().slice(-1000)}`).toBe(0);
    expect(sha256(dest)).toBe(sha256(src));
  }, 120_000);

  it('a password (LCSYNC_PASSWORD), our share -> C sync (the C client\'s known crash recorded as its defect)', async () => {
    await cClientFromOurShare({ password: PASSWORD }, 'password', []);
  }, 150_000);
});
