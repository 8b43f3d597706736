/**
 * The larger symbol size end to end (needs root): a share started with `--symbol-size 1368` and a
 * receiver that was told nothing, through a bridge in its own namespace. The receiver learns the
 * size from the verified tree objects and takes the chunks in it: with its native assembler and
 * with the JavaScript path (LCSYNC_NO_NATIVE_RX=1), on a clean link and at 10% loss, encrypted too.
 * What went on the wire is counted by nftables rules in the share's namespace, by UDP length: every
 * datagram the share sent was 1,404 or 1,416 bytes (1,412 and 1,424 with the UDP header), none of
 * the 1,060 or 1,072 of the C protocol's size, and a 4 MiB file took about a quarter fewer
 * datagrams than the same share at 1024 sends. The shares here send without UDP GSO
 * (LCSYNC_NO_GSO=1): a GSO send reaches the output hook as one packet of many datagrams, which a
 * veth pair carries whole, so only single datagrams can be told apart by length.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { cli, runSync, startShare, treeListing } from './e2e.js';

const why = skipReason(['nft']);
/** One datagram per packet, so that the output hook sees each (see the top). */
const NO_GSO = { LCSYNC_NO_GSO: '1' };

describeUnless(why, 'share --symbol-size 1368 (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let keyfile: string;
  /** Chunk datagrams of the first test's clean sync at 1368. */
  let cleanChunks1368 = 0;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-symsize-'));
    src = path.join(work, 'data');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'big.bin'), randomBytes(4 * 1024 * 1024 + 777));
    // Zeros and repeated content: equal chunks, a sparse output.
    writeFileSync(path.join(src, 'zeros.bin'), Buffer.alloc(300 * 1024));
    writeFileSync(path.join(src, 'sub', 'again.bin'), Buffer.concat(Array.from({ length: 5 }, () => Buffer.alloc(32 * 1024, 'ab'))));
    for (let i = 0; i < 12; i++) writeFileSync(path.join(src, 'sub', `s${i}.txt`), randomBytes(1 + i * 3000));
    writeFileSync(path.join(src, 'sub', 'empty'), '');
    symlinkSync('sub/s1.txt', path.join(src, 'link'));
    keyfile = path.join(work, 'key');
    writeFileSync(keyfile, randomBytes(128));
    const nft = async (...args: string[]) => {
      const r = await lab.exec(0, ['nft', ...args]);
      if (r.code !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`);
    };
    await nft('add', 'table', 'inet', 'symsize');
    await nft('add', 'chain', 'inet', 'symsize', 'out', '{ type filter hook output priority 0 ; }');
    // UDP length = 8 + datagram: 1068 / 1080 at T = 1024, 1412 / 1424 at T = 1368.
    for (const [name, len] of [['c1024', 1068], ['o1024', 1080], ['c1368', 1412], ['o1368', 1424]] as const) {
      await nft('add', 'counter', 'inet', 'symsize', name);
      await nft('add', 'rule', 'inet', 'symsize', 'out', 'udp', 'dport', '4242', 'udp', 'length', String(len), 'counter', 'name', name);
    }
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Datagrams the share's host sent so far, by kind: chunks (c) and objects with OTI (o) at each size. */
  async function sent(): Promise<Record<'c1024' | 'o1024' | 'c1368' | 'o1368', number>> {
    const r = await lab.exec(0, ['nft', 'list', 'counters', 'table', 'inet', 'symsize']);
    const n = (name: string) => {
      const m = new RegExp(`counter ${name} \\{\\s*packets (\\d+)`).exec(r.stdout);
      if (!m) throw new Error(`no counter ${name}: ${r.stdout} ${r.stderr}`);
      return Number(m[1]);
    };
    return { c1024: n('c1024'), o1024: n('o1024'), c1368: n('c1368'), o1368: n('o1368') };
  }

  let run = 0;
  async function syncInto(extra: string[], env: string[] = []): Promise<string> {
    const dest = path.join(work, `out${run++}`);
    const args = [process.execPath, cli, 'sync', '--json', '-i', 'e0', '--timeout', '30', '--no-cache', '-r', ...extra, 'data/', dest];
    const r = env.length > 0 ? await lab.exec(1, ['env', ...env, ...args], { timeoutMs: 120_000 }) : await runSync(lab, 1, ['--timeout', '30', '-r', ...extra, 'data/', dest], 120_000);
    expect(r.code, r.stderr).toBe(0);
    expect(treeListing(dest)).toEqual(treeListing(src));
    return dest;
  }

  it('a receiver learns the size from the share and syncs, natively and in JavaScript, clean and at 10% loss; only 1368-byte symbols go out; status shows the size', async () => {
    const rundir = path.join(work, 'run');
    mkdirSync(rundir);
    const share = await startShare(lab, 0, [src], ['--symbol-size', '1368', '--bwlimit', '200M', '--rundir', rundir], undefined, NO_GSO);
    try {
      const st = await lab.exec(0, [process.execPath, cli, 'status', '--rundir', rundir]);
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toContain('symbols of 1368 bytes (lcsync receivers only)');
      const json = await lab.exec(0, [process.execPath, cli, 'status', '--json', '--rundir', rundir]);
      expect(json.stdout).toMatch(/"symbolSize":\s*1368/);
      const before = await sent();
      await syncInto([]);
      const clean = await sent();
      await lab.setLoss(1, 10);
      try {
        await syncInto([]);
        await syncInto([], ['LCSYNC_NO_NATIVE_RX=1']);
      } finally {
        await lab.setLoss(1, 0);
      }
      const after = await sent();
      expect(after.c1024 - before.c1024).toBe(0);
      expect(after.o1024 - before.o1024).toBe(0);
      expect(after.o1368 - before.o1368).toBeGreaterThan(0);
      // The distinct chunks that are not all zeros (big.bin's 129 and again.bin's one; the small files
      // come in bundles), 24 datagrams each at least.
      const chunks = clean.c1368 - before.c1368;
      expect(chunks).toBeGreaterThanOrEqual(130 * 24);
      cleanChunks1368 = chunks;
      console.log(`symbol size 1368: a clean sync took ${chunks} chunk datagrams of 1,404 bytes and ${clean.o1368 - before.o1368} object datagrams of 1,416`);
    } finally {
      await share.stop();
    }
  }, 300_000);

  it('the same share at 1024 sends a third more chunk datagrams for the same sync, of 1,060 bytes', async () => {
    const share = await startShare(lab, 0, [src], ['--bwlimit', '200M'], undefined, NO_GSO);
    try {
      const before = await sent();
      await syncInto([]);
      const after = await sent();
      expect(after.c1368 - before.c1368).toBe(0);
      const chunks = after.c1024 - before.c1024;
      expect(chunks).toBeGreaterThanOrEqual(130 * 32);
      console.log(`symbol size 1024: a clean sync took ${chunks} chunk datagrams of 1,060 bytes`);
      // 24 symbols per chunk against 32, give or take a few repeated ones.
      if (cleanChunks1368 > 0) expect(Math.abs(cleanChunks1368 / chunks - 24 / 32)).toBeLessThan(0.05);
    } finally {
      await share.stop();
    }
  }, 300_000);

  it('encrypted: a keyed share at 1368 and a receiver with the key, at 10% loss', async () => {
    const share = await startShare(lab, 0, [src], ['--symbol-size', '1368', '--bwlimit', '200M', '--keyfile', keyfile], undefined, NO_GSO);
    try {
      const before = await sent();
      await lab.setLoss(1, 10);
      try {
        await syncInto(['--keyfile', keyfile]);
      } finally {
        await lab.setLoss(1, 0);
      }
      const after = await sent();
      expect(after.c1024 - before.c1024 + (after.o1024 - before.o1024)).toBe(0);
      expect(after.c1368 - before.c1368).toBeGreaterThan(0);
    } finally {
      await share.stop();
    }
  }, 300_000);
});
