#!/usr/bin/env node
/**
 * BLAKE3 implementations as lcsync calls them, on one core.
 *
 *   node bench/blake3-bench.js [--mib 64] [--runs 3]
 *
 * The candidates for the pure (no compiler) fallback are measured when installed; the repository
 * depends on the one chosen (see bench/README.md), the others can be added for a re-run with
 *   npm install --no-save blake3-wasm@2.1.5 hash-wasm@4.12.0 blake3-jit@1.1.0
 * (or installed anywhere and named by NODE_PATH=DIR/node_modules), and the native addon
 * (native/blake3_napi.c) is measured when build/Release holds it.
 *
 * Cases, each the median of --runs (MB/s = 10^6 bytes/s):
 *   leaves 32 KiB   --mib MiB hashed as 32 KiB leaves, one call per leaf (tree.ts, hashpool.ts, a receiver
 *                   checking a chunk); the addon also one call per 1 MiB block of leaves (blake3Leaves)
 *   small files     inputs of 1-16 KiB, one call each (a file of the small-file tree is one leaf)
 *   parents         64-byte inputs (Merkle parent nodes), million calls per second
 *   stream 1 MiB    --mib MiB fed to one incremental hasher in 1 MiB updates (a whole-file digest)
 * Every candidate's digests are first checked against the others' on the same inputs.
 */
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO, median, option } from './common.js';

const MIB = option('blake3-bench', 'mib', 64);
const RUNS = option('blake3-bench', 'runs', 3);
const LEAF = 32768;
const require = createRequire(import.meta.url);
/** import() by way of require.resolve, so that NODE_PATH can point at candidates installed elsewhere. */
const load = (name) => import(pathToFileURL(require.resolve(name)).href);

/** Each backend: hash(u8) -> 32 bytes, stream() -> {update(u8), digest() -> 32 bytes}, leaves?(data, out). */
async function backends() {
  const out = [];
  const skipped = [];
  try {
    const a = require(path.join(REPO, 'build', 'Release', 'lcsync.node'));
    if (typeof a.blake3HashInto !== 'function') throw new Error('addon without blake3HashInto (rebuild it)');
    out.push({
      name: 'native addon (C, SIMD)',
      hash: (d) => {
        const o = Buffer.allocUnsafe(32);
        a.blake3HashInto(d, o, 0);
        return o;
      },
      stream: () => {
        const h = a.blake3Hasher();
        return {
          update: (d) => a.blake3Update(h, d),
          digest: () => {
            const o = Buffer.allocUnsafe(32);
            a.blake3Final(h, o, 0);
            return o;
          },
        };
      },
      leaves: (d, o) => a.blake3Leaves(d, LEAF, o, 0),
    });
  } catch (e) {
    skipped.push(`native addon: ${e.message.split('\n')[0]}`);
  }
  try {
    const b = require('blake3-wasm');
    const v = require('blake3-wasm/package.json').version;
    out.push({
      name: `blake3-wasm ${v}`,
      hash: (d) => b.hash(d),
      stream: () => {
        const h = b.createHash();
        return { update: (d) => h.update(d), digest: () => h.digest() };
      },
    });
  } catch (e) {
    skipped.push(`blake3-wasm: ${e.message.split('\n')[0]}`);
  }
  try {
    const { createBLAKE3 } = await load('hash-wasm');
    const v = require('hash-wasm/package.json').version;
    const one = await createBLAKE3();
    const streaming = await createBLAKE3();
    out.push({
      name: `hash-wasm ${v}`,
      hash: (d) => one.init().update(d).digest('binary'),
      stream: () => {
        // createBLAKE3 is async: one instance for streams, made up front, reset here.
        const h = streaming.init();
        return { update: (d) => h.update(d), digest: () => h.digest('binary') };
      },
    });
  } catch (e) {
    skipped.push(`hash-wasm: ${e.message.split('\n')[0]}`);
  }
  try {
    const j = await load('blake3-jit');
    const v = require('blake3-jit/package.json').version;
    j.warmupSimd?.();
    out.push({
      name: `blake3-jit ${v}`,
      hash: (d) => j.hash(d),
      stream: () => {
        const h = j.createHasher();
        return { update: (d) => h.update(d), digest: () => h.finalize() };
      },
    });
  } catch (e) {
    skipped.push(`blake3-jit: ${e.message.split('\n')[0]}`);
  }
  return { out, skipped };
}

function time(fn) {
  const runs = [];
  fn(); // warm-up (JIT, wasm tier-up)
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(runs);
}

const hex = (u8) => Buffer.from(u8).toString('hex');

function check(list) {
  const sizes = [0, 1, 64, 1023, 1024, 1025, 4096, LEAF - 1, LEAF, LEAF + 1, (1 << 20) + 7, 3 << 20];
  const data = randomFillSync(Buffer.alloc(3 << 20));
  for (const n of sizes) {
    const d = data.subarray(0, n);
    const want = hex(list[0].hash(d));
    for (const b of list) {
      const s = b.stream();
      for (let off = 0; off < n; off += 1 << 20) s.update(d.subarray(off, Math.min(n, off + (1 << 20))));
      if (hex(b.hash(d)) !== want || hex(s.digest()) !== want) throw new Error(`${b.name} disagrees with ${list[0].name} on ${n} bytes`);
    }
  }
}

const { out: list, skipped } = await backends();
if (list.length === 0) {
  console.error('blake3-bench: no BLAKE3 implementation found');
  process.exit(3);
}
check(list);

const data = randomFillSync(Buffer.alloc(MIB * 2 ** 20));
const leaves = data.length / LEAF;
// Small inputs as the index bench makes them: 1-16 KiB, the same sequence for everyone.
let seed = 12345;
const smallSizes = Array.from({ length: 4096 }, () => 1024 + ((seed = (seed * 1103515245 + 12345) >>> 0) % (16384 - 1024 + 1)));
const smallBytes = smallSizes.reduce((a, b) => a + b, 0);
const pairs = 200000;

const rows = [];
for (const b of list) {
  const r = { name: b.name };
  r.leaves = data.length / time(() => {
    for (let i = 0; i < leaves; i++) b.hash(data.subarray(i * LEAF, (i + 1) * LEAF));
  }) / 1e6;
  if (b.leaves) {
    const outBuf = Buffer.alloc(32 * (2 ** 20 / LEAF));
    r.leavesBatch = data.length / time(() => {
      for (let off = 0; off < data.length; off += 2 ** 20) b.leaves(data.subarray(off, off + 2 ** 20), outBuf);
    }) / 1e6;
  }
  r.small = smallBytes / time(() => {
    let off = 0;
    for (const n of smallSizes) {
      b.hash(data.subarray(off, off + n));
      off = (off + 16384) % (data.length - 16384);
    }
  }) / 1e6;
  r.parents = pairs / time(() => {
    for (let i = 0; i < pairs; i++) b.hash(data.subarray((i & 1023) * 64, (i & 1023) * 64 + 64));
  }) / 1e6;
  r.stream = data.length / time(() => {
    const s = b.stream();
    for (let off = 0; off < data.length; off += 2 ** 20) s.update(data.subarray(off, off + 2 ** 20));
    s.digest();
  }) / 1e6;
  rows.push(r);
}

console.log(`BLAKE3 on one core, node ${process.version}, ${MIB} MiB of random data, median of ${RUNS}; every digest checked`);
for (const s of skipped) console.log(`not measured: ${s}`);
console.log('');
console.log('| implementation | leaves 32 KiB MB/s | small files 1-16 KiB MB/s | parents 64 B M/s | stream 1 MiB updates MB/s |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  const leavesCell = r.leavesBatch ? `${r.leaves.toFixed(0)} (${r.leavesBatch.toFixed(0)} batched)` : r.leaves.toFixed(0);
  console.log(`| ${r.name} | ${leavesCell} | ${r.small.toFixed(0)} | ${r.parents.toFixed(2)} | ${r.stream.toFixed(0)} |`);
}
