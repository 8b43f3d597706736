/**
 * A source that changes in the middle of a sync (needs root: a real share and receiver in a lab
 * network). The share is rate-limited so that a sync takes seconds, and the file is changed once
 * the receiver has taken in its first megabytes (its interface counters say so), well before it
 * reaches the changed region: deterministic without relying on sleeps.
 *  - By hash: the share re-indexes, the changed chunks are gone, and the receiver, told so by a
 *    gone notice, stops with "source changed during sync; run again" (exit 8) instead of waiting
 *    out its timeout; nothing is left half-written.
 *  - By share name: the receiver starts over on the name's new root and completes with the new
 *    content; the JSON summary counts the restart.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExitCode } from '../src/core/base/errors.js';
import { createLab, skipReason, type Lab } from './lab.js';
import { cli, sha256, startShare, treeListing } from './e2e.js';
import { describeUnless } from './skip.js';

const why = skipReason();

const MiB = 1024 * 1024;
/**
 * LCSYNC_SOURCE_CHANGE="SIZE_MIB,RATE,CHANGE_MIB,TRIGGER_MB" runs the same tests at another scale,
 * such as the "200,200M,20,40" (20 MiB overwritten in the middle of 200 MiB, sent at the
 * share's default rate, once 40 MB have arrived).
 */
const scale = (process.env.LCSYNC_SOURCE_CHANGE ?? '16,16M,2,2.5').split(',');
const SIZE = Number(scale[0]) * MiB;
/** Default 2 MB/s: a full sync takes about 8 s. */
const RATE = scale[1]!;
/** The region overwritten mid-sync (default 12-14 MiB), far past the receiver's window when the change lands. */
const CHANGE_LEN = Number(scale[2]) * MiB;
const CHANGE_AT = Number(scale[0]) === 16 ? 12 * MiB : Math.floor((SIZE - CHANGE_LEN) / 2);
/** Change the file once the receiver has received this much (default 2.5 MB of about 17 MB). */
const TRIGGER_BYTES = Number(scale[3]) * 1e6;
const CHUNKS = Math.ceil(SIZE / 32768);

describeUnless(why, 'a source that changes during a sync (needs root)', () => {
  let lab: Lab;
  let work: string;
  let file: string;
  let tree: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-srcchange-'));
    mkdirSync(path.join(work, 'data'));
    file = path.join(work, 'data', 'big.bin');
    writeFileSync(file, randomBytes(SIZE));
    tree = path.join(work, 'tree');
    mkdirSync(path.join(tree, 'sub'), { recursive: true });
    writeFileSync(path.join(tree, 'big.bin'), randomBytes(SIZE));
    for (let i = 0; i < 5; i++) writeFileSync(path.join(tree, 'sub', `small${i}.txt`), `small file ${i}\n`);
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Run a sync on host 1; once it has received TRIGGER_BYTES, overwrite the middle of the file. */
  async function syncWhileChanging(source: string, dest: string, changing = file, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; changedAt: number; endedAt: number }> {
    const start = (await lab.counters(1)).rx_bytes;
    const child = lab.spawn(1, [process.execPath, cli, 'sync', '--json', '-i', 'e0', '--timeout', '60', ...extra, source, dest]);
    const t0 = Date.now();
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    let done = false;
    void exited.then(() => (done = true));
    // Bounded: at most 30 s of polling every 50 ms.
    let changedAt = 0;
    for (let i = 0; i < 600 && !done; i++) {
      const now = (await lab.counters(1)).rx_bytes;
      if (now - start >= TRIGGER_BYTES) {
        const fd = openSync(changing, 'r+');
        writeSync(fd, randomBytes(CHANGE_LEN), 0, CHANGE_LEN, CHANGE_AT);
        closeSync(fd);
        changedAt = Date.now();
        console.log(`changed ${CHANGE_LEN / MiB} MiB at ${CHANGE_AT / MiB} MiB of ${SIZE / MiB} MiB ${changedAt - t0} ms into the sync (${now - start} bytes received)`);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(changedAt, `the sync ended before it had received ${TRIGGER_BYTES} bytes: ${stderr}`).toBeGreaterThan(0);
    const hard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    const code = await exited;
    clearTimeout(hard);
    return { code, stdout, stderr, changedAt, endedAt: Date.now() };
  }

  it('by hash: exit 8 with "source changed during sync; run again" soon after the change, nothing half-written', async () => {
    const share = await startShare(lab, 0, [file], ['-v', '--bwlimit', RATE]);
    try {
      const destDir = path.join(work, 'byhash');
      mkdirSync(destDir);
      const r = await syncWhileChanging(share.roots[0]!.hash, path.join(destDir, 'big.bin'));
      console.log(`by hash: exit ${r.code} ${r.endedAt - r.changedAt} ms after the change`);
      expect(r.code, r.stderr).toBe(ExitCode.sourceChanged);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'SOURCE_CHANGED', exitCode: 8, message: 'source changed during sync; run again' } });
      expect(r.stderr).toMatch(/^lcsync: source changed during sync; run again$/m);
      expect(r.stderr).not.toMatch(/no sender answered/);
      // Told, not timed out: well inside the 60 s timeout.
      expect(r.endedAt - r.changedAt).toBeLessThan(15_000);
      // No output and no temporary file: the file was new, so there is nothing at all.
      expect(readdirSync(destDir)).toEqual([]);
      // The share re-indexed and told the receiver (its -v log says so).
      expect(share.stderr()).toMatch(/told .* that object [0-9a-f]{16} is gone \(the source changed\)/);
    } finally {
      await share.stop();
    }
  }, 180_000);

  it('by share name: starts over on the new root and completes with the new content', async () => {
    const share = await startShare(lab, 0, [file], ['-v', '--bwlimit', RATE]);
    try {
      const destDir = path.join(work, 'byname');
      mkdirSync(destDir);
      const dest = path.join(destDir, 'big.bin');
      const r = await syncWhileChanging('big.bin', dest);
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout);
      console.log(`by name: exit ${r.code}, ${s.sourceChanges} restart, ${s.chunksFetched} chunks fetched, ${s.seconds} s, done ${r.endedAt - r.changedAt} ms after the change`);
      expect(s).toMatchObject({ ok: true, sourceChanges: 1, type: 'file' });
      // The whole file arrived once under the new root, after part of it under the old one.
      expect(s.chunksFetched).toBeGreaterThan(CHUNKS);
      expect(s.rootHash).not.toBe(share.roots[0]!.hash);
      expect(sha256(dest)).toBe(sha256(file));
      expect(readdirSync(destDir)).toEqual(['big.bin']);
      expect(existsSync(dest)).toBe(true);
    } finally {
      await share.stop();
    }
  }, 180_000);

  it('by share name, a directory: starts over on the new root and ends with the new tree', async () => {
    const share = await startShare(lab, 0, [tree], ['-v', '--bwlimit', RATE]);
    try {
      const destDir = path.join(work, 'bytree');
      mkdirSync(destDir);
      const r = await syncWhileChanging('tree/', destDir, path.join(tree, 'big.bin'), ['-a']);
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout);
      console.log(`by name (directory): exit ${r.code}, ${s.sourceChanges} restart, ${s.chunksFetched} chunks fetched, ${s.seconds} s`);
      expect(s).toMatchObject({ ok: true, sourceChanges: 1, type: 'dir' });
      expect(treeListing(destDir, { times: true })).toEqual(treeListing(tree, { times: true }));
    } finally {
      await share.stop();
    }
  }, 180_000);
});
