/**
 * Trees of many small files end to end (needs root): one share, receivers in a lab.
 *  - 2,000 files with modes, owners, times and symlinks synced with -a: byte- and metadata-identical, also with
 *    10% random loss;
 *  - the local tree cache (src/core/sync/localtrees.ts): a re-sync hashes no local file, each kind of local
 *    change (size, mtime, ctime, inode) makes exactly that file a miss, --checksum hashes every file;
 *  - a tree sync killed (SIGKILL) or interrupted (SIGINT) mid-run leaves no partial file under a final name,
 *    and a second run ends identical with no temporary file left.
 * (The cache keyed by device is covered with a made-up stat in test/localtrees.test.ts.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, truncateSync, utimesSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, killGroup, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { cli, runSync, sha256, startShare, treeListing, type RunningShare } from './e2e.js';

const why = skipReason(['nft']);
const FILES = 2000;
const DIRS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every path under `dir` (relative), depth first. */
function walk(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel)).flatMap((n) => {
    const r = path.join(rel, n);
    // A sync still running renames its temporary files away under the walk.
    const st = lstatSync(path.join(dir, r), { throwIfNoEntry: false });
    return !st ? [] : st.isDirectory() ? [r, ...walk(dir, r)] : [r];
  });
}

const isTemp = (p: string) => /\.lcsync-\d+-[0-9a-f]+\.tmp$/.test(p);

describeUnless(why, 'trees of many small files (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let cacheDir: string;
  let share: RunningShare;
  let hash: string;
  const files: string[] = [];

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-tree-'));
    src = path.join(work, 'tree');
    cacheDir = path.join(work, 'cache');
    const modes = [0o644, 0o600, 0o755, 0o640, 0o444];
    for (let d = 0; d < DIRS; d++) mkdirSync(path.join(src, `d${d}`, d % 4 === 0 ? 'deep' : ''), { recursive: true });
    for (let f = 0; f < FILES; f++) {
      const rel = path.join(`d${f % DIRS}`, f % 40 === 0 ? 'deep' : '', `f${f}.dat`);
      const p = path.join(src, rel);
      // Mostly small, some empty, a few of several chunks.
      writeFileSync(p, randomBytes(f % 97 === 0 ? 0 : f % 101 === 0 ? randomInt(20_000, 70_000) : randomInt(1, 8193)));
      chmodSync(p, modes[f % modes.length]!);
      if (f % 7 === 0) chownSync(p, 1000 + (f % 3), 2000 + (f % 5));
      const t = 1_600_000_000 + f * 37.123456;
      utimesSync(p, t, t);
      files.push(rel);
    }
    for (let d = 0; d < DIRS; d += 5) {
      const link = path.join(src, `d${d}`, 'link');
      symlinkSync(`f${d}.dat`, link);
      lchownSync(link, 1001, 2001);
    }
    for (let d = 0; d < DIRS; d++) utimesSync(path.join(src, `d${d}`), 1_500_000_000 + d, 1_500_000_000 + d);
    share = await startShare(lab, 0, [src], [], 120_000);
    hash = share.roots[0]!.hash;
  }, 300_000);

  afterAll(async () => {
    await share?.stop();
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const listing = (dir: string) => treeListing(dir, { times: true, owners: true });
  const sync = (host: number, dest: string, extra: string[] = []) => runSync(lab, host, ['-a', ...(extra.includes('--timeout') ? [] : ['--timeout', '60']), '--cache', cacheDir, ...extra, hash, dest], 600_000);

  it('syncs 2,000 files with -a byte- and metadata-identical; a re-sync hashes no local file', async () => {
    const dest = path.join(work, 'plain');
    const r = await sync(1, dest);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary!.files.created).toBe(FILES);
    expect(listing(dest)).toEqual(listing(src));
    const again = await sync(1, dest);
    expect(again.code, again.stderr).toBe(0);
    expect(again.summary!.localTrees).toMatchObject({ hits: FILES, misses: 0, corrupt: false });
    // Every directory was taken from its listing (localtrees.ts): no file was looked at one by one.
    expect(again.summary!.localTrees!.listed).toBeGreaterThan(0);
    expect(again.summary!.bytesWritten).toBe(0);
    expect(listing(dest)).toEqual(listing(src));
  }, 600_000);

  it('invalidates the cache on a change of size, mtime, ctime or inode, and --checksum hashes every file', async () => {
    const dest = path.join(work, 'changes');
    expect((await sync(1, dest)).code).toBe(0);
    const [bySize, byMtime, byCtime, byInode] = [files[3]!, files[10]!, files[21]!, files[44]!].map((f) => path.join(dest, f)) as [string, string, string, string];
    appendFileSync(bySize, 'x');
    utimesSync(byMtime, 1_000_000_000, 1_000_000_000);
    // Mode changed and put back: only the ctime differs.
    const mode = lstatSync(byCtime).mode & 0o7777;
    chmodSync(byCtime, mode === 0o600 ? 0o644 : 0o600);
    chmodSync(byCtime, mode);
    // The same bytes, mode, owner and times in a new inode.
    const st = lstatSync(byInode);
    const copy = `${byInode}.copy`;
    copyFileSync(byInode, copy);
    chmodSync(copy, st.mode & 0o7777);
    chownSync(copy, st.uid, st.gid);
    // touch -r copies the times to the nanosecond (a JS Date would round them).
    expect(spawnSync('touch', ['-h', '-r', byInode, copy]).status).toBe(0);
    renameSync(copy, byInode);
    const r = await sync(1, dest);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary!.localTrees).toMatchObject({ hits: FILES - 4, misses: 4 });
    // The changed size and mtime are put right; the other two are equal to the source as they are.
    expect(r.summary!.files).toMatchObject({ updated: 1, metadata: 1 });
    expect(listing(dest)).toEqual(listing(src));
    const forced = await sync(1, dest, ['--checksum']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.summary!.localTrees).toMatchObject({ hits: 0, misses: FILES });
    // A truncated cache file is a miss for every file, never a wrong answer.
    const cacheFile = readdirSync(path.join(cacheDir, 'dests-v1')).map((n) => path.join(cacheDir, 'dests-v1', n));
    for (const f of cacheFile) truncateSync(f, 100);
    const damaged = await sync(1, dest);
    expect(damaged.code, damaged.stderr).toBe(0);
    expect(damaged.summary!.localTrees).toMatchObject({ misses: FILES });
    expect(listing(dest)).toEqual(listing(src));
  }, 600_000);

  it('syncs the tree identical under 10% random loss', async () => {
    const dest = path.join(work, 'lossy');
    await lab.setLoss(2, 10);
    try {
      const r = await sync(2, dest, ['--timeout', '120']);
      expect(r.code, r.stderr).toBe(0);
      expect(listing(dest)).toEqual(listing(src));
    } finally {
      await lab.setLoss(2, 0);
    }
  }, 900_000);

  for (const signal of ['SIGKILL', 'SIGINT'] as const) {
    it(`leaves no partial file when ${signal} stops a tree sync mid-run, and a second run ends identical`, async () => {
      const dest = path.join(work, `stopped-${signal}`);
      const proc: ChildProcess = lab.spawn(1, [process.execPath, cli, 'sync', '-a', '-i', 'e0', '--timeout', '60', '--cache', cacheDir, hash, dest]);
      const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.once('exit', (code, sig) => resolve({ code, signal: sig })));
      let stoppedAt = 0;
      for (let i = 0; i < 6000 && proc.exitCode === null; i++) {
        const n = existsSync(dest) ? walk(dest).filter((p) => !isTemp(p)).length : 0;
        if (n >= FILES / 5) {
          stoppedAt = n;
          killGroup(proc, signal);
          break;
        }
        await sleep(20);
      }
      const end = await exited;
      expect(stoppedAt, 'the sync ended before it could be stopped').toBeGreaterThan(0);
      if (signal === 'SIGKILL') expect(end.signal).toBe('SIGKILL');
      else expect(end.code).toBe(130);
      const there = walk(dest).filter((p) => lstatSync(path.join(dest, p)).isFile());
      const finals = there.filter((p) => !isTemp(p));
      expect(finals.length).toBeLessThan(FILES);
      // Every file under its final name is complete: the source's bytes.
      for (const p of finals) expect(sha256(path.join(dest, p)), p).toBe(sha256(path.join(src, p)));
      // An interrupted run removes its temporary files; a killed one cannot, and the next run does.
      if (signal === 'SIGINT') expect(there.filter(isTemp)).toEqual([]);
      const r = await sync(1, dest);
      expect(r.code, r.stderr).toBe(0);
      expect(walk(dest).filter(isTemp)).toEqual([]);
      expect(listing(dest)).toEqual(listing(src));
    }, 600_000);
  }
});
