#!/usr/bin/env node
/**
 * What the tree cache saves a share that restarts.
 *
 *   npm run build && node bench/cache-bench.js [--files 2000] [--size-mib 512] [--runs 3]
 *
 * Makes a tree of --files files totalling --size-mib MiB (sizes vary 0.5x-1.5x
 * around the mean) in a temporary directory under /var/tmp, with mtimes an hour
 * old (the cache skips files modified in the last 2 s), reads it once untimed so
 * that every run finds it in the page cache, then times (median of --runs) what
 * `lcsync share` does at start:
 *   - no cache:   ShareIndex.build with the hash pool, no tree cache;
 *   - cold cache: the same with an empty on-disk cache, then (timed apart)
 *                 flush(), which writes the entries; a share does that after
 *                 it has started serving;
 *   - warm cache: the same with a new TreeStore (empty memory) on the filled
 *                 cache directory, as after a restart: stat, read and verify
 *                 each entry, hash nothing.
 * Checks that all three give the same root hash, prints seconds and the
 * speed-up, and removes its data at the end (also on Ctrl-C).
 */
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST, option } from './common.js';



const FILES = option('cache-bench', 'files', 2000);
const SIZE = option('cache-bench', 'size-mib', 512) * 2 ** 20;
const RUNS = option('cache-bench', 'runs', 3);

let mdex, cache, hashpool, hash;
try {
  mdex = await import(path.join(DIST, 'index', 'mdex.js'));
  cache = await import(path.join(DIST, 'index', 'cache.js'));
  hashpool = await import(path.join(DIST, 'index', 'hashpool.js'));
  hash = await import(path.join(DIST, 'model', 'hash.js'));
} catch (e) {
  console.error(`cache-bench: cannot load dist/ (${e.message}); run npm run build first`);
  process.exit(3);
}

const work = mkdtempSync(path.join('/var/tmp', 'lcsync-cache-bench-'));
const cleanup = () => rmSync(work, { recursive: true, force: true });
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

try {
  const data = path.join(work, 'data');
  const old = new Date(Date.now() - 3600_000);
  const mean = Math.floor(SIZE / FILES);
  const buf = Buffer.allocUnsafe(Math.ceil(mean * 1.5) + 1);
  let total = 0;
  process.stderr.write(`cache-bench: writing ${FILES} files, ${(SIZE / 2 ** 20).toFixed(0)} MiB in ${data} ...\n`);
  for (let i = 0; i < FILES; i++) {
    // 100 files per directory, sizes spread evenly over 0.5x..1.5x of the mean.
    const dir = path.join(data, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) mkdirSync(dir, { recursive: true });
    const size = Math.floor(mean * (0.5 + ((i * 7919) % FILES) / FILES));
    const p = path.join(dir, `f${i}.bin`);
    writeFileSync(p, randomFillSync(buf, 0, size).subarray(0, size));
    utimesSync(p, old, old);
    total += size;
  }
  // Untimed pass: every run below finds the data in the page cache.
  for (let i = 0; i < FILES; i++) readFileSync(path.join(data, `d${String(Math.floor(i / 100)).padStart(3, '0')}`, `f${i}.bin`));

  const pool = new hashpool.HashPool().warm();
  const build = async (treeCache) => {
    const t0 = performance.now();
    const idx = await mdex.ShareIndex.build([data], { treeCache, leafHasher: pool });
    return { s: (performance.now() - t0) / 1000, root: hash.toHex(idx.roots[0].hash) };
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const cacheDir = path.join(work, 'cache');
  const none = [];
  const cold = [];
  const warm = [];
  const flush = [];
  const roots = new Set();
  let stats;
  for (let r = 0; r < RUNS; r++) {
    const n = await build(undefined);
    none.push(n.s);
    rmSync(cacheDir, { recursive: true, force: true });
    const coldStore = new cache.TreeStore({ dir: cacheDir });
    const c = await build(coldStore);
    cold.push(c.s);
    // The share writes entries after it has started serving; timed apart.
    const f0 = performance.now();
    await coldStore.flush();
    flush.push((performance.now() - f0) / 1000);
    const store = new cache.TreeStore({ dir: cacheDir });
    const w = await build(store);
    warm.push(w.s);
    stats = store.stats;
    for (const x of [n, c, w]) roots.add(x.root);
  }
  await pool.close();
  if (roots.size !== 1) throw new Error(`root hashes differ between runs: ${[...roots].join(', ')}`);
  if (stats.hits !== FILES || stats.misses !== 0) throw new Error(`warm run missed the cache: ${JSON.stringify(stats)}`);
  const mb = total / 1e6;
  const row = (name, s) => `${name.padEnd(12)} ${s.toFixed(3).padStart(8)} s  ${(mb / s).toFixed(0).padStart(6)} MB/s`;
  console.log(`cache-bench: ${FILES} files, ${mb.toFixed(1)} MB, median of ${RUNS}, ${os.availableParallelism()} CPUs, load ${os.loadavg()[0].toFixed(2)}`);
  console.log(row('no cache', median(none)));
  console.log(row('cold cache', median(cold)));
  console.log(`${'  then flush'.padEnd(12)} ${median(flush).toFixed(3).padStart(8)} s  (writing ${FILES} cache entries, in the background of a running share)`);
  console.log(row('warm cache', median(warm)));
  console.log(`speed-up of a restart with a warm cache: ${(median(none) / median(warm)).toFixed(1)}x (root ${[...roots][0]})`);
} finally {
  cleanup();
}
