/**
 * Files with repeated content, end to end over a lab network (needs root): long runs of equal
 * chunks make equal tree parts (one OID under several groups), equal chunks across files, equal
 * subdirectories, sparse images past 4 GiB. Each must sync, fetch every distinct object once, and
 * come out identical (and sparse where the source was).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync, readSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { cli, runSync, sha256, startShare } from './e2e.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { hash, toHex, type Hash } from '../src/core/model/hash.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { encodeNetTree, splitParts } from '../src/core/wire/nettree.js';
import { metaFromStats } from '../src/core/model/meta.js';
import { describeUnless } from './skip.js';

const why = skipReason(['nft']);

const CHUNK = 32768;

/** A file of `chunks` chunks, each a copy of `pattern[i % pattern.length]`; `null` chunks are holes (zeros). */
function patternFile(p: string, chunks: number, pattern: (Buffer | null)[]): void {
  const fd = openSync(p, 'w');
  try {
    ftruncateSync(fd, chunks * CHUNK);
    for (let i = 0; i < chunks; i++) {
      const c = pattern[i % pattern.length];
      if (c) writeSync(fd, c, 0, CHUNK, i * CHUNK);
    }
  } finally {
    closeSync(fd);
  }
}

/** A sparse file of `size` bytes with `marks` written at their offsets. */
function sparseFile(p: string, size: number, marks: [number, string][]): void {
  const fd = openSync(p, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [off, text] of marks) writeSync(fd, Buffer.from(text), 0, text.length, off);
  } finally {
    closeSync(fd);
  }
}

/** Bytes a file really occupies on disk (st_blocks are 512-byte units). */
function allocated(p: string): number {
  return statSync(p).blocks * 512;
}

function readAt(p: string, off: number, len: number): string {
  const fd = openSync(p, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, off);
    return b.toString();
  } finally {
    closeSync(fd);
  }
}

/** BLAKE3-free content check of a big sparse file: compare in 1 MiB blocks without holding it. */
function sameContent(a: string, b: string): boolean {
  const sa = statSync(a).size;
  if (sa !== statSync(b).size) return false;
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let off = 0; off < sa; off += ba.length) {
      const n = readSync(fa, ba, 0, ba.length, off);
      readSync(fb, bb, 0, n, off);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** Distinct tree parts, directory and symlink objects (by content) of a share: what must travel, once each. */
async function distinctTreeObjects(paths: string[]): Promise<number> {
  const idx = await ShareIndex.build(paths);
  const oids = new Set<string>();
  for (const r of idx.records) {
    for (const key of r.partHashes ?? [r.hash]) {
      const o = idx.get(key);
      if (o?.kind === 'tree') oids.add(toHex(hash(o.bytes)));
    }
  }
  return oids.size;
}

/**
 * distinctTreeObjects for one big file whose chunks the caller knows (`leafOf(i)`), without
 * hashing gigabytes in the test process.
 */
function distinctTreeParts(p: string, leafOf: (i: number) => Hash): number {
  const st = statSync(p, { bigint: true });
  const tree = MerkleTree.blank(Number(st.size));
  for (let i = 0; i < tree.chunks; i++) tree.setLeaf(i, leafOf(i));
  tree.seal();
  const obj = encodeNetTree({ type: 'file', size: tree.size, meta: metaFromStats(st), name: path.basename(p), payload: tree.nodes });
  return new Set(splitParts(obj).map((part) => toHex(hash(part)))).size;
}

/** Leaf hash of chunk `i` of a sparse file: zeros unless a marker lies in it. */
function sparseLeaf(p: string, marks: [number, string][]): (i: number) => Hash {
  const zero = hash(Buffer.alloc(CHUNK));
  const size = statSync(p).size;
  const dirty = new Set<number>();
  for (const [off, text] of marks) for (let b = off; b < off + text.length; b++) dirty.add(Math.floor(b / CHUNK));
  return (i) => {
    const len = Math.min(CHUNK, size - i * CHUNK);
    if (!dirty.has(i) && len === CHUNK) return zero;
    if (!dirty.has(i)) return hash(Buffer.alloc(len));
    const fd = openSync(p, 'r');
    try {
      const b = Buffer.alloc(len);
      readSync(fd, b, 0, len, i * CHUNK);
      return hash(b);
    } finally {
      closeSync(fd);
    }
  };
}

interface Measured {
  code: number;
  stderr: string;
  summary?: Record<string, any>;
  /** Peak resident set of the sync process, bytes. */
  peakRss: number;
  seconds: number;
}

/** Run `lcsync sync --json` under /usr/bin/time -v on host 1 and report its peak RSS. */
async function measuredSync(lab: Lab, args: string[], timeoutMs: number): Promise<Measured> {
  const t0 = Date.now();
  const r = await lab.exec(1, ['/usr/bin/time', '-v', process.execPath, cli, 'sync', '--json', '-i', 'e0', ...args], { timeoutMs });
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  let summary: Record<string, any> | undefined;
  try {
    summary = JSON.parse(r.stdout);
  } catch {
    summary = undefined;
  }
  return { code: r.code, stderr: r.stderr, summary, peakRss: m ? Number(m[1]) * 1024 : NaN, seconds: (Date.now() - t0) / 1000 };
}

describeUnless(why, 'repeated content over multicast (needs root)', () => {
  let lab: Lab;
  let work: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-rep-'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Share `src` on host 0, sync it by hash to `dest` on host 1, stop the share. */
  async function shareAndSync(src: string[], dest: string, extra: string[] = [], timeoutSec = 30) {
    const share = await startShare(lab, 0, src);
    try {
      const r = await runSync(lab, 1, ['--timeout', String(timeoutSec), ...extra, share.roots[0]!.hash, dest], (timeoutSec + 60) * 1000);
      return { r, share };
    } finally {
      await share.stop();
    }
  }

  for (const chunks of [3071, 3072, 10_000]) {
    it(`syncs a file of ${chunks} equal chunks, fetching that chunk once`, async () => {
      const dir = path.join(work, `eq${chunks}`);
      mkdirSync(dir);
      const src = path.join(dir, 'same.bin');
      patternFile(src, chunks, [randomBytes(CHUNK)]);
      const dest = path.join(dir, 'out.bin');
      const { r } = await shareAndSync([src], dest);
      expect(r.code, r.stderr).toBe(0);
      expect(statSync(dest).size).toBe(chunks * CHUNK);
      expect(sha256(dest)).toBe(sha256(src));
      expect(r.summary!.chunksFetched).toBe(1);
      expect(r.summary!.chunksReused).toBe(chunks - 1);
      rmSync(dir, { recursive: true, force: true });
    }, 120_000);
  }

  it('syncs 3,072 chunks of zeros (96 MiB) without fetching a chunk, as a sparse file', async () => {
    const dir = path.join(work, 'zeros');
    mkdirSync(dir);
    const src = path.join(dir, 'zeros.bin');
    patternFile(src, 3072, [Buffer.alloc(CHUNK)]);
    const dest = path.join(dir, 'out.bin');
    const { r } = await shareAndSync([src], dest);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(dest)).toBe(sha256(src));
    expect(r.summary!.chunksFetched).toBe(0);
    expect(r.summary!.bytesWritten).toBe(0);
    expect(allocated(dest)).toBeLessThan(1 << 20);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
  it('syncs a pattern of three distinct chunks (tree parts repeat at three levels), fetching each object once', async () => {
    const dir = path.join(work, 'pattern');
    mkdirSync(dir);
    const src = path.join(dir, 'azbz.bin');
    // A, zeros, B, zeros: the leaves repeat every 4, their parents every 2, the level above is all one hash.
    const pattern = [randomBytes(CHUNK), Buffer.alloc(CHUNK), randomBytes(CHUNK), Buffer.alloc(CHUNK)];
    patternFile(src, 8192, pattern.map((c, i) => (i % 2 ? null : c)));
    const leaves = pattern.map((c) => hash(c));
    const trees = distinctTreeParts(src, (i) => leaves[i % 4]!);
    // 16,383 nodes in 17 parts: 8 of leaves, 4 of parents, 2 above, 1, ...: most of them repeat.
    expect(trees).toBeLessThanOrEqual(10);
    const dest = path.join(dir, 'out.bin');
    const { r } = await shareAndSync([src], dest);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(dest)).toBe(sha256(src));
    expect(r.summary!.chunksFetched).toBe(2);
    expect(r.summary!.treeObjectsReceived).toBe(trees);
    console.log(`pattern: ${trees} distinct tree objects of 17 parts, ${r.summary!.bytesReceived} bytes received, ${r.summary!.seconds} s`);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('fetches two identical 40 MiB files and two identical subdirectories once', async () => {
    const top = path.join(work, 'twins');
    const src = path.join(top, 'share');
    mkdirSync(path.join(src, 'sub1'), { recursive: true });
    mkdirSync(path.join(src, 'sub2'));
    const big = randomBytes(40 * 1024 * 1024);
    writeFileSync(path.join(src, 'a.bin'), big);
    writeFileSync(path.join(src, 'b.bin'), big);
    const small = randomBytes(4 * 1024 * 1024 + 1000);
    for (const sub of ['sub1', 'sub2']) {
      writeFileSync(path.join(src, sub, 'f.bin'), small);
      writeFileSync(path.join(src, sub, 'note.txt'), 'the same note\n');
    }
    const distinctChunks = 1280 + 129 + 1;
    const trees = await distinctTreeObjects([src]);
    const dest = path.join(top, 'out');
    // The object-by-object path the C share offers, whose tree objects this test counts exactly; with
    // bundles some of them arrive inside a directory's bundle instead (test/bundle*.test.ts).
    const { r } = await shareAndSync([src], dest, ['-r', '--no-bundles']);
    expect(r.code, r.stderr).toBe(0);
    for (const f of ['a.bin', 'b.bin', 'sub1/f.bin', 'sub2/f.bin', 'sub1/note.txt', 'sub2/note.txt']) {
      expect(sha256(path.join(dest, f)), f).toBe(sha256(path.join(src, f)));
    }
    expect(r.summary!.chunksFetched).toBe(distinctChunks);
    expect(r.summary!.chunksReused).toBe(distinctChunks);
    expect(r.summary!.treeObjectsReceived).toBe(trees);
    // 44 MiB of distinct data: nothing travelled twice (a second copy would make it 88).
    expect(r.summary!.bytesReceived).toBeLessThan(44 * 1024 * 1024 * 1.25);
    console.log(`twins: ${r.summary!.chunksFetched} chunks fetched, ${r.summary!.chunksReused} reused, ${r.summary!.treeObjectsReceived} tree objects, ${(r.summary!.bytesReceived / 1e6).toFixed(1)} MB received`);
    rmSync(top, { recursive: true, force: true });
  }, 120_000);

  /** Share a sparse 1 GiB file named big.bin with `marks` written into it, sync it, and check what every such sync must. */
  async function sparseGiB(sub: string, marks: [number, string][], timeoutSec: number): Promise<Measured> {
    const dir = path.join(work, sub);
    mkdirSync(dir);
    const src = path.join(dir, 'big.bin');
    sparseFile(src, 2 ** 30, marks);
    const trees = distinctTreeParts(src, sparseLeaf(src, marks));
    const share = await startShare(lab, 0, [src]);
    const dest = path.join(dir, 'out.bin');
    let m: Measured;
    try {
      m = await measuredSync(lab, ['--timeout', String(timeoutSec), share.roots[0]!.hash, dest], 120_000);
    } finally {
      await share.stop();
    }
    console.log(`sparse 1 GiB (${sub}): ${m.summary?.seconds?.toFixed(2)} s in sync, ${m.seconds.toFixed(2)} s wall, ${m.summary?.bytesReceived} bytes received, ${trees} distinct tree objects, peak RSS ${(m.peakRss / 1e6).toFixed(1)} MB`);
    expect(m.code, m.stderr).toBe(0);
    expect(statSync(dest).size).toBe(2 ** 30);
    for (const [off, text] of marks) expect(readAt(dest, off, text.length)).toBe(text);
    expect(sameContent(src, dest)).toBe(true);
    expect(allocated(dest)).toBeLessThan(1 << 20);
    expect(m.summary!.chunksFetched).toBe(1);
    expect(m.summary!.treeObjectsReceived).toBe(trees);
    rmSync(dir, { recursive: true, force: true });
    return m;
  }

  it('syncs a sparse 1 GiB file with a marker in the middle, fetching one chunk, written sparse', async () => {
    const m = await sparseGiB('sparse1', [[2 ** 29 + 12345, 'mid-marker']], 30);
    expect(m.summary!.bytesReceived).toBeLessThan(4 * 1024 * 1024);
  }, 180_000);

  it('syncs a sparse 1 GiB file whose last chunk holds data: tree parts equal but for a node across their end', async () => {
    // A 7-byte name puts the nodes at byte 63 of the tree object, so every 32 KiB part ends one
    // byte into a node. The last chunk's ancestors are the last node of each level, and some sit
    // across a part's end, after parts equal to their neighbours but for that byte: the receiver
    // took an equal neighbour's part there and stalled on the next one until its timeout.
    const m = await sparseGiB('sparse-end', [[2 ** 30 - 9, 'the-end!!']], 20);
    expect(m.summary!.bytesReceived).toBeLessThan(4 * 1024 * 1024);
  }, 180_000);

  it('syncs a sparse 5 GiB file with markers before, across and after 4 GiB, sparse and under 150 MB of RSS', async () => {
    const dir = path.join(work, 'sparse5');
    mkdirSync(dir);
    const src = path.join(dir, 'huge.bin');
    const G4 = 2 ** 32;
    const marks: [number, string][] = [
      [12345, 'first-marker'],
      [G4 - 100, 'before-4GiB'],
      [G4 - 4, 'across4G'],
      [G4 + 12345, 'after-4GiB'],
      [5 * 2 ** 30 - 9, 'the-end!!'],
    ];
    sparseFile(src, 5 * 2 ** 30, marks);
    const trees = distinctTreeParts(src, sparseLeaf(src, marks));
    const share = await startShare(lab, 0, [src], [], 120_000);
    const dest = path.join(dir, 'out.bin');
    let m: Measured;
    try {
      m = await measuredSync(lab, ['--timeout', '60', share.roots[0]!.hash, dest], 240_000);
    } finally {
      await share.stop();
    }
    expect(m.code, m.stderr).toBe(0);
    expect(statSync(dest).size).toBe(5 * 2 ** 30);
    for (const [off, text] of marks) expect(readAt(dest, off, text.length)).toBe(text);
    expect(allocated(dest)).toBeLessThan(1 << 20);
    console.log(`sparse 5 GiB: ${m.summary!.seconds.toFixed(2)} s in sync, ${m.seconds.toFixed(2)} s wall, ${m.summary!.bytesReceived} bytes received, ${m.summary!.chunksFetched} chunks and ${m.summary!.treeObjectsReceived} tree objects (${trees} distinct) fetched, peak RSS ${(m.peakRss / 1e6).toFixed(1)} MB`);
    // Chunk 0, 131071 (before and across 4 GiB), 131072 (across and after), the last; the zero chunk is known.
    expect(m.summary!.chunksFetched).toBe(4);
    expect(m.summary!.treeObjectsReceived).toBe(trees);
    expect(m.peakRss).toBeLessThan(150e6);
    expect(m.summary!.bytesReceived).toBeLessThan(8 * 1024 * 1024);
    expect(sameContent(src, dest)).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  }, 420_000);
});
