#!/usr/bin/env node
/**
 * Index speed against b3sum, on the same data in the same run.
 *
 *   npm run build && node bench/index-bench.js [--size-mib 1024] [--files 10000] [--runs 3]
 *
 * Makes a file of pseudo-random bytes and a tree of small files (1-16 KiB) in a
 * temporary directory under /var/tmp, warms the page cache, then times (median
 * of --runs) `b3sum --num-threads 1`, the library (ShareIndex.build, on the main
 * thread and with the worker pool) and the CLI (`lcsync index`, which uses the
 * pool). Prints MB/s (10^6 bytes/s) and the ratio to b3sum. Removes its data at
 * the end, also on Ctrl-C.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DIST, REPO, median, option, writeRandomFile } from './common.js';



const SIZE = option('index-bench', 'size-mib', 1024) * 2 ** 20;
const FILES = option('index-bench', 'files', 10000);
const RUNS = option('index-bench', 'runs', 3);

const b3sum = spawnSync('b3sum', ['--version'], { encoding: 'utf8' });
if (b3sum.status !== 0) {
  console.error('index-bench: b3sum not found (Debian: apt-get install b3sum)');
  process.exit(3);
}

let mdex;
let hashpool;
let blake3Impl;
try {
  mdex = await import(path.join(DIST, 'index', 'mdex.js'));
  hashpool = await import(path.join(DIST, 'index', 'hashpool.js'));
  ({ blake3Impl } = await import(path.join(DIST, 'model', 'hash.js')));
} catch (e) {
  console.error(`index-bench: cannot load dist/ (${e.message}); run npm run build first`);
  process.exit(3);
}
const { ShareIndex } = mdex;
const { HashPool } = hashpool;

const work = mkdtempSync(path.join('/var/tmp', 'lcsync-index-bench-'));
const cleanup = () => rmSync(work, { recursive: true, force: true });
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});


async function time(fn) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(runs);
}

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`);
}


/** FILES files of 1-16 KiB in directories of 100, returns their total size and paths. */
function makeSmallTree(dir) {
  let total = 0;
  const files = [];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0);
  const buf = Buffer.allocUnsafe(16384);
  for (let i = 0; i < FILES; i++) {
    const sub = path.join(dir, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    const size = 1024 + (rnd() % (16384 - 1024 + 1));
    randomFillSync(buf, 0, size);
    const f = path.join(sub, `f${i}.bin`);
    writeFileSync(f, buf.subarray(0, size));
    files.push(f);
    total += size;
  }
  return { total, files };
}

const mb = (bytes, s) => bytes / s / 1e6;
const rows = [];
function row(data, what, bytes, s, ref) {
  rows.push({ data, what, s, mbs: mb(bytes, s), ratio: ref ? ref / s : undefined });
}

try {
  const big = path.join(work, 'big.bin');
  const small = path.join(work, 'small');
  process.stderr.write(`generating ${SIZE / 2 ** 20} MiB file and ${FILES} small files in ${work} ...\n`);
  writeRandomFile(big, SIZE);
  const { total: smallBytes, files } = makeSmallTree(small);
  const listFile = path.join(work, 'list');
  writeFileSync(listFile, files.join('\0'));

  // Warm the page cache (and the JIT) with one untimed pass of each.
  process.stderr.write('warming the page cache ...\n');
  sh('b3sum', ['--num-threads', '1', big]);
  sh('sh', ['-c', `xargs -0 b3sum --num-threads 1 < '${listFile}' > /dev/null`]);
  await ShareIndex.build([small]);
  await ShareIndex.build([big]);

  process.stderr.write(`timing, median of ${RUNS} ...\n`);
  // Big file.
  const bBig = await time(() => sh('b3sum', ['--num-threads', '1', big]));
  row('big file', 'b3sum --num-threads 1', SIZE, bBig);
  const poolBig = await time(async () => {
    const pool = new HashPool();
    try {
      await ShareIndex.build([big], { leafHasher: pool });
    } finally {
      await pool.close();
    }
  });
  row('big file', `library, worker pool (${new HashPool().size} workers, started each run)`, SIZE, poolBig, bBig);
  const warmPool = new HashPool().warm();
  await ShareIndex.build([big], { leafHasher: warmPool });
  let warmBig;
  try {
    warmBig = await time(() => ShareIndex.build([big], { leafHasher: warmPool }));
  } finally {
    await warmPool.close();
  }
  row('big file', 'library, worker pool already running (a share)', SIZE, warmBig, bBig);
  const mainBig = await time(() => ShareIndex.build([big]));
  row('big file', 'library, main thread only', SIZE, mainBig, bBig);
  const cliBig = await time(() => sh(process.execPath, [path.join(REPO, 'bin', 'run.js'), 'index', big]));
  row('big file', 'CLI lcsync index (incl. start-up)', SIZE, cliBig, bBig);

  // Small files.
  const bSmall = await time(() => sh('sh', ['-c', `xargs -0 b3sum --num-threads 1 < '${listFile}' > /dev/null`]));
  row(`${FILES} files`, 'b3sum --num-threads 1 (xargs)', smallBytes, bSmall);
  const libSmall = await time(() => ShareIndex.build([small]));
  row(`${FILES} files`, 'library (walk, stat, hash)', smallBytes, libSmall, bSmall);
  const cliSmall = await time(() => sh(process.execPath, [path.join(REPO, 'bin', 'run.js'), 'index', small]));
  row(`${FILES} files`, 'CLI lcsync index (incl. start-up)', smallBytes, cliSmall, bSmall);

  const cpu = os.cpus();
  console.log(`lcsync index benchmark: ${SIZE / 2 ** 20} MiB random file; ${FILES} files of 1-16 KiB (${(smallBytes / 2 ** 20).toFixed(1)} MiB)`);
  console.log(`${cpu.length} x ${cpu[0]?.model ?? 'cpu'}, node ${process.version}, ${b3sum.stdout.trim()}, warm page cache, median of ${RUNS}`);
  console.log('Note: b3sum hashes each file as one BLAKE3 input; lcsync hashes 32 KiB leaves plus a parent per');
  console.log(`node pair (BLAKE3: ${blake3Impl === 'native' ? 'the C code in the addon, SIMD' : 'hash-wasm, no SIMD'}), and for directories also`);
  console.log('stats every entry and builds the index objects.\n');
  const w = Math.max(...rows.map((r) => r.what.length));
  console.log(`${'data'.padEnd(12)} ${'what'.padEnd(w)} ${'seconds'.padStart(8)} ${'MB/s'.padStart(8)} ${'vs b3sum'.padStart(8)}`);
  for (const r of rows) {
    console.log(
      `${r.data.padEnd(12)} ${r.what.padEnd(w)} ${r.s.toFixed(3).padStart(8)} ${r.mbs.toFixed(0).padStart(8)} ${(r.ratio === undefined ? '' : r.ratio.toFixed(2)).padStart(8)}`,
    );
  }
  const load = os.loadavg()[0].toFixed(2);
  console.log(`\ntarget: big file with the pool at least 0.5 x b3sum single-thread: started each run ${(bBig / poolBig).toFixed(2)}, already running ${(bBig / warmBig).toFixed(2)}`);
  console.log(`load average at the end: ${load} (other work on the machine lowers our figures more than b3sum's: we use every core)`);
} finally {
  cleanup();
}
