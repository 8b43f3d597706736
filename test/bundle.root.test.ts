/**
 * Bundles on a real wire (needs root): the CLI share and sync in a lab (host 0 shares, host 1
 * syncs, host 2 spoofs). A tree of many small files synced with bundles ends identical with a
 * fraction of the joins and of the share's datagrams; our client against a share without them
 * (--no-bundles: what a C share serves) ends identical and no slower than a client that never
 * asks for them; a spoofer's bundles (genuine objects, wrong bytes, swapped trees) never put a
 * wrong byte on disk; a file changed on the share during the sync is never written stale. The
 * same without a lab, deterministic: test/bundle.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { expectBuilt, repo, runSync, startShare, treeListing, type RunningShare, type SyncRun } from './e2e.js';

const why = skipReason([]);
const FILES = 400;
const DIRS = 8;

describeUnless(why, 'bundles on a lab network (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let runs = 0;

  beforeAll(async () => {
    expectBuilt(['wire/bundle', 'index/bundles', 'sync/bundle']);
    lab = await createLab({ hosts: 3, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-bundle-root-'));
    src = path.join(work, 'tree');
    for (let d = 0; d < DIRS; d++) mkdirSync(path.join(src, `d${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < FILES; f++) writeFileSync(path.join(src, `d${f % DIRS}`, f % 5 === 0 ? 'sub' : '', `f${f}.dat`), randomBytes(randomInt(200, 8193)));
    writeFileSync(path.join(src, 'big.bin'), randomBytes(5 * 32768 + 17));
    writeFileSync(path.join(src, 'd0', 'empty'), '');
    symlinkSync('d0/f0.dat', path.join(src, 'link'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Sync the tree by name into a fresh directory; checked identical. */
  async function syncTree(extra: string[] = []): Promise<{ r: SyncRun; tx: number; dest: string }> {
    const dest = path.join(work, `out-${runs++}`);
    const before = await lab.counters(0);
    const r = await runSync(lab, 1, ['-a', '--timeout', '30', ...extra, 'tree/', dest], 180_000);
    const after = await lab.counters(0);
    expect(r.code, r.stderr).toBe(0);
    expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
    return { r, tx: after.tx_bytes - before.tx_bytes, dest };
  }

  async function withShare<T>(extra: string[], fn: (share: RunningShare) => Promise<T>): Promise<T> {
    const share = await startShare(lab, 0, [src], extra);
    try {
      return await fn(share);
    } finally {
      await share.stop();
    }
  }

  it('with bundles: identical, with a fraction of the joins, tree objects and share bytes per file', async () => {
    const withB = await withShare([], () => syncTree());
    const without = await withShare(['--no-bundles'], () => syncTree(['--no-bundles']));
    const a = withB.r.summary!;
    const b = without.r.summary!;
    const files = FILES + 2;
    console.log(
      `bundles on a lab wire, ${files} files: joins ${b.joins} -> ${a.joins}, tree objects ${b.treeObjectsReceived} -> ${a.treeObjectsReceived}, ` +
        `share tx ${without.tx} -> ${withB.tx} bytes, received ${b.bytesReceived} -> ${a.bytesReceived}, ${b.seconds.toFixed(2)} s -> ${a.seconds.toFixed(2)} s`,
    );
    // Every small file's bytes came in bundles (not big.bin's, nor the empty file's, which needs none).
    expect(a.bundleFiles).toBe(FILES);
    expect(a.bundleEntries).toBeGreaterThan(files);
    expect(b.bundleEntries).toBe(0);
    // Without: a tree and a chunk join per file. With: a bundle per directory (and the top, and big.bin's chunks).
    expect(b.joins).toBeGreaterThanOrEqual(2 * files);
    expect(a.joins).toBeLessThan(files / 10);
    expect(a.treeObjectsReceived).toBeLessThan(files / 10);
    expect(withB.tx).toBeLessThan(without.tx);
  }, 400_000);

  it('against a share without bundles: identical, and no slower than a client that never asks for them', async () => {
    await withShare(['--no-bundles'], async () => {
      // Alternated, twice each, so that load on the machine falls on both alike.
      const asks: number[] = [];
      const never: number[] = [];
      for (let i = 0; i < 2; i++) {
        const x = await syncTree();
        expect(x.r.summary!.bundleEntries).toBe(0);
        asks.push(x.r.summary!.seconds);
        never.push((await syncTree(['--no-bundles'])).r.summary!.seconds);
      }
      const best = (xs: number[]) => Math.min(...xs);
      console.log(`no-bundle share: client asking ${asks.map((s) => s.toFixed(2)).join(', ')} s, never asking ${never.map((s) => s.toFixed(2)).join(', ')} s`);
      // The one probe costs at most its wait (0.3 s); the rest is noise of a shared machine.
      expect(best(asks)).toBeLessThan(best(never) * 1.25 + 0.5);
    });
  }, 600_000);

  it('a spoofer\'s bundles (genuine objects, wrong bytes, swapped trees) never put a wrong byte on disk', async () => {
    await withShare(['--no-bundles'], async () => {
      const spoofer: ChildProcess = lab.spawn(2, [process.execPath, path.join(repo, 'test', 'fixtures', 'bundle-spoof.mjs'), 'e0', src]);
      try {
        await waitLine(spoofer, (l) => l === 'ready');
        const { r } = await syncTree();
        const stats = new Promise<string>((resolve) => {
          let out = '';
          spoofer.stdout!.on('data', (d) => (out += d));
          spoofer.once('exit', () => resolve(out));
        });
        spoofer.kill('SIGTERM');
        const sent = JSON.parse((await stats).trim().split('\n').pop()!) as { bursts: number; datagrams: number };
        const s = r.summary!;
        console.log(`bundle spoofer: ${sent.bursts} forged bundles (${sent.datagrams} datagrams); client took ${s.bundleEntries} entries and ${s.bundleFiles} files' bytes from them, ${s.seconds.toFixed(2)} s`);
        expect(sent.bursts).toBeGreaterThan(0);
        // What it took from them is only what the directories' hashes cover: genuine trees, never the bytes.
        expect(s.bundleFiles).toBe(0);
      } finally {
        spoofer.kill('SIGKILL');
      }
    });
  }, 300_000);

  it('a file changed on the share during the sync is never written with stale bytes', async () => {
    const victim = path.join(src, 'd3', 'f3.dat');
    const old = readFileSync(victim);
    try {
      await withShare([], async (share) => {
        const dest = path.join(work, `out-${runs++}`);
        const sync = runSync(lab, 1, ['-a', '--timeout', '30', 'tree/', dest], 180_000);
        // Changed while the sync runs (the share re-indexes on the change and says what is gone), once
        // it has taken its root: changed while the name was being resolved, the name would have two
        // roots within the sync's settle wait, the old and the new, which it refuses (exit 4) as it
        // does two shares that disagree. That race made this test fail one run in two.
        let settled = false;
        void sync.finally(() => (settled = true));
        for (const until = Date.now() + 30_000; !existsSync(dest) && !settled && Date.now() < until; ) await new Promise((r) => setTimeout(r, 5));
        writeFileSync(victim, Buffer.alloc(old.length, 0x5a));
        const r = await sync;
        expect(r.code, r.stderr + share.stderr()).toBe(0);
        // Whichever version it synced, it is one the share served as a whole: the new one, or
        // (if it finished before the change was seen) the old one, never a mix of the two.
        const got = readFileSync(path.join(dest, 'd3', 'f3.dat'));
        expect(got.equals(old) || got.equals(readFileSync(victim))).toBe(true);
        if (got.equals(old)) console.log('changed file: the sync finished on the old root');
        else expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
      });
    } finally {
      writeFileSync(victim, old);
    }
  }, 300_000);
});

/** Wait for a line on a fixture's stdout that `match` accepts. */
function waitLine(p: ChildProcess, match: (l: string) => boolean, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`fixture gave no such line within ${ms} ms: ${out} ${err}`)), ms);
    p.stderr?.on('data', (d) => (err += d));
    p.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find(match);
      if (line !== undefined) {
        clearTimeout(t);
        resolve(line);
      }
    });
  });
}
