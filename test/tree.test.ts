import { mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hash, hashPair, HASH_SIZE } from '../src/core/model/hash.js';
import { CHUNK_SIZE, MerkleTree, chunkCount, chunkLength, leafIndex, nextPow2, nodeCount } from '../src/core/model/tree.js';
import { HashPool } from '../src/core/index/hashpool.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { readVectorText, vectorDir, vectorFileSizes, vectorPath } from './vectors.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-tree-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Deterministic bytes, different for each seed. */
function data(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A tree computed the slow, obvious way, to check the real one against. */
function naiveRoot(buf: Buffer): Buffer {
  if (buf.length === 0) return Buffer.alloc(HASH_SIZE);
  let level: Buffer[] = [];
  for (let off = 0; off < buf.length; off += CHUNK_SIZE) level.push(hash(buf.subarray(off, off + CHUNK_SIZE)));
  while (level.length & (level.length - 1)) level.push(Buffer.alloc(HASH_SIZE));
  while (level.length > 1) {
    const up: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(hashPair(level[i]!, level[i + 1]!));
    level = up;
  }
  return level[0]!;
}

describe('tree shape', () => {
  it.each([
    [0, 1, 1, 1],
    [1, 1, 1, 1],
    [32767, 1, 1, 1],
    [32768, 1, 1, 1],
    [32769, 2, 2, 3],
    [3 * CHUNK_SIZE, 3, 4, 7],
    [5 * CHUNK_SIZE + 1, 6, 8, 15],
    [1048589, 33, 64, 127],
  ])('%i bytes: %i chunks, base %i, %i nodes', (size, chunks, base, nodes) => {
    expect(chunkCount(size)).toBe(chunks);
    expect(nextPow2(chunks)).toBe(base);
    expect(nodeCount(size)).toBe(nodes);
    const t = MerkleTree.blank(size);
    expect(t.nodes.length).toBe(nodes * HASH_SIZE);
    expect(t.base).toBe(base);
  });

  it('chunk lengths: full chunks, a short last chunk, zero past the end', () => {
    expect(chunkLength(32769, 0)).toBe(CHUNK_SIZE);
    expect(chunkLength(32769, 1)).toBe(1);
    expect(chunkLength(32769, 2)).toBe(0);
    expect(chunkLength(0, 0)).toBe(0);
  });
});

describe('building', () => {
  it('an empty file has a one-node tree of zeros that verifies', () => {
    const t = MerkleTree.fromBuffer(Buffer.alloc(0));
    expect(t.nodeCount).toBe(1);
    expect(t.root.equals(Buffer.alloc(HASH_SIZE))).toBe(true);
    expect(t.verify()).toBe(true);
    expect(t.hexDump()).toBe(`00000000: ${'0'.repeat(64)}\n`);
  });

  it('one chunk (1 and 32768 bytes): the root is the leaf hash', () => {
    for (const n of [1, 32767, 32768]) {
      const d = data(n);
      const t = MerkleTree.fromBuffer(d);
      expect(t.nodeCount).toBe(1);
      expect(t.root.equals(hash(d))).toBe(true);
    }
  });

  it('32769 bytes: a full leaf and a one-byte leaf', () => {
    const d = data(32769);
    const t = MerkleTree.fromBuffer(d);
    expect(t.leaf(0).equals(hash(d.subarray(0, CHUNK_SIZE)))).toBe(true);
    expect(t.leaf(1).equals(hash(d.subarray(CHUNK_SIZE)))).toBe(true);
    expect(t.root.equals(hashPair(t.leaf(0), t.leaf(1)))).toBe(true);
  });

  it.each([3, 5, 6, 7, 9, 13])('%i chunks (not a power of two): zero padding leaves, root as computed by hand', (chunks) => {
    const d = data(chunks * CHUNK_SIZE - 100, chunks);
    const t = MerkleTree.fromBuffer(d);
    expect(t.chunks).toBe(chunks);
    for (let i = chunks; i < t.base; i++) expect(t.leaf(i).equals(Buffer.alloc(HASH_SIZE))).toBe(true);
    expect(t.root.equals(naiveRoot(d))).toBe(true);
    expect(t.verify()).toBe(true);
  });

  it('fromFile equals fromBuffer, and so does the worker pool', async () => {
    const pool = new HashPool({ size: 2, threshold: 0 });
    try {
      // Sizes around the 1 MiB read block and the pool's 4 MiB range.
      for (const n of [0, 1, CHUNK_SIZE, (1 << 20) + 1, 4 * 2 ** 20 + 3 * CHUNK_SIZE + 17, 9 * 2 ** 20]) {
        const d = data(n, n);
        const f = path.join(tmp, `b${n}`);
        writeFileSync(f, d);
        const want = MerkleTree.fromBuffer(d);
        expect((await MerkleTree.fromFile(f)).equals(want)).toBe(true);
        const fh = await open(f, 'r');
        try {
          expect((await pool.treeFromHandle(fh, n)).equals(want)).toBe(true);
        } finally {
          await fh.close();
        }
      }
    } finally {
      await pool.close();
    }
  });

  it('with idleMs the pool stops its workers when idle and starts them again for the next file', async () => {
    const pool = new HashPool({ size: 2, threshold: 0, idleMs: 50 });
    const n = 5 * 2 ** 20 + 7;
    const d = data(n, 3);
    const f = path.join(tmp, 'idle');
    writeFileSync(f, d);
    const want = MerkleTree.fromBuffer(d);
    const fh = await open(f, 'r');
    try {
      expect(pool.workers).toBe(0);
      expect((await pool.treeFromHandle(fh, n)).equals(want)).toBe(true);
      expect(pool.workers).toBe(2);
      const end = Date.now() + 5000;
      while (pool.workers > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(pool.workers).toBe(0);
      expect((await pool.treeFromHandle(fh, n)).equals(want)).toBe(true);
    } finally {
      await fh.close();
      await pool.close();
    }
  });

  it('a file that is shorter than the size asked for is an IO error, not a short tree', async () => {
    const f = path.join(tmp, 'short');
    writeFileSync(f, data(5 * CHUNK_SIZE));
    await expect(MerkleTree.fromFile(f, 6 * CHUNK_SIZE)).rejects.toMatchObject({ code: 'IO' });
    const pool = new HashPool({ size: 2, threshold: 0 });
    const fh = await open(f, 'r');
    try {
      await expect(pool.treeFromHandle(fh, 200 * CHUNK_SIZE)).rejects.toMatchObject({ code: 'IO' });
    } finally {
      await fh.close();
      await pool.close();
    }
  });

  it('onBytes reports every byte once', async () => {
    const f = path.join(tmp, 'progress');
    const n = 3 * 2 ** 20 + 5;
    writeFileSync(f, data(n));
    const fh = await open(f, 'r');
    let total = 0;
    try {
      await MerkleTree.fromHandle(fh, n, (k) => (total += k));
    } finally {
      await fh.close();
    }
    expect(total).toBe(n);
  });
});

describe('vectors from the C lcsync', () => {
  const files = vectorFileSizes.filter((n) => n > 0).map((n) => `f${n}.bin`);
  it('there are vectors to check, and these are all of them', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
    expect(readdirSync(path.join(vectorDir, 'files')).sort()).toEqual(['f0.bin', ...files].sort());
  });
  it.each(files)('%s gives its --hex dump', async (f) => {
    const want = readVectorText('trees', `${f}.tree`);
    const t = await MerkleTree.fromFile(vectorPath('files', f));
    expect(t.hexDump()).toBe(want);
    expect(t.verify()).toBe(true);
  });
  it('f0.bin (empty) has no vector because the C tool refuses it', () => {
    expect(existsSync(vectorPath('files', 'f0.bin'))).toBe(true);
    expect(existsSync(path.join(vectorDir, 'trees', 'f0.bin.tree'))).toBe(false);
  });
});

describe('verify', () => {
  const d = data(5 * CHUNK_SIZE + 7);
  const good = MerkleTree.fromBuffer(d);

  it('accepts a tree received intact', () => {
    expect(MerkleTree.fromNodes(good.size, good.nodes).verify()).toBe(true);
  });

  it('rejects a tampered node anywhere: root, parent, leaf', () => {
    for (let n = 0; n < good.nodeCount; n++) {
      const nodes = Buffer.from(good.nodes);
      nodes[n * HASH_SIZE + 5]! ^= 1;
      expect(MerkleTree.fromNodes(good.size, nodes).verify(), `node ${n}`).toBe(false);
    }
  });

  it('rejects a non-zero padding leaf even when its parents are recomputed to match', () => {
    const t = MerkleTree.fromNodes(good.size, good.nodes);
    t.setLeaf(7, Buffer.alloc(HASH_SIZE, 1));
    t.seal();
    expect(t.verify()).toBe(false);
  });

  it('rejects an empty-file tree that is not zero', () => {
    expect(MerkleTree.fromNodes(0, Buffer.alloc(HASH_SIZE, 9)).verify()).toBe(false);
  });

  it('fromNodes refuses the wrong number of node bytes', () => {
    expect(() => MerkleTree.fromNodes(good.size, good.nodes.subarray(32))).toThrow(LcsyncError);
    expect(() => MerkleTree.fromNodes(0, Buffer.alloc(64))).toThrow(LcsyncError);
  });
});

describe('diff', () => {
  const size = 7 * CHUNK_SIZE + 1000; // 8 chunks, the last one short
  const base = data(size, 3);
  const remote = MerkleTree.fromBuffer(base);
  const changed = (offsets: number[]) => {
    const b = Buffer.from(base);
    for (const o of offsets) b[o]! ^= 0xff;
    return MerkleTree.fromBuffer(b);
  };

  it('identical files: nothing to fetch', () => {
    expect(remote.diff(MerkleTree.fromBuffer(base))).toEqual([]);
  });

  it('no local file: every chunk', () => {
    expect(remote.diff(undefined)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('first, middle and last (short) chunk differ', () => {
    expect(remote.diff(changed([0]))).toEqual([0]);
    expect(remote.diff(changed([3 * CHUNK_SIZE + 5]))).toEqual([3]);
    expect(remote.diff(changed([size - 1]))).toEqual([7]);
    expect(remote.diff(changed([10, 4 * CHUNK_SIZE, size - 1]))).toEqual([0, 4, 7]);
  });

  it('the local file grew: only the chunks whose bytes differ, plus the now-short last chunk', () => {
    const grown = MerkleTree.fromBuffer(Buffer.concat([base, data(2 * CHUNK_SIZE, 9)]));
    expect(remote.diff(grown)).toEqual([7]);
  });

  it('the local file shrank: the missing chunks and the cut one', () => {
    const shrunk = MerkleTree.fromBuffer(base.subarray(0, 3 * CHUNK_SIZE + 10));
    expect(remote.diff(shrunk)).toEqual([3, 4, 5, 6, 7]);
    const shrunkOnBoundary = MerkleTree.fromBuffer(base.subarray(0, 4 * CHUNK_SIZE));
    expect(remote.diff(shrunkOnBoundary)).toEqual([4, 5, 6, 7]);
  });

  it('an empty local file: every chunk; an empty remote: nothing', () => {
    expect(remote.diff(MerkleTree.fromBuffer(Buffer.alloc(0)))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(MerkleTree.fromBuffer(Buffer.alloc(0)).diff(remote)).toEqual([]);
  });

  it('leafIndex finds a chunk the local file holds at another index', () => {
    const shifted = MerkleTree.fromBuffer(Buffer.concat([data(CHUNK_SIZE, 42), base]));
    const idx = leafIndex(shifted);
    expect(idx.get(remote.leaf(2))).toBe(3);
  });
});

describe('leafStartsWith', () => {
  it('says whether a leaf starts with a key, as comparing the leaf itself does', () => {
    const tree = MerkleTree.fromBuffer(randomBytes(5 * 32768 + 3));
    for (let i = 0; i < tree.chunks; i++) {
      const leaf = Buffer.from(tree.leaf(i));
      for (const len of [0, 1, 14, 32]) expect(tree.leafStartsWith(i, leaf, len)).toBe(true);
      const other = Buffer.from(leaf);
      other[13] ^= 1;
      expect(tree.leafStartsWith(i, other, 13)).toBe(true);
      expect(tree.leafStartsWith(i, other, 14)).toBe(false);
      // Another leaf's prefix, a key shorter than asked for, more than a hash: no.
      expect(tree.leafStartsWith(i, tree.leaf((i + 1) % tree.chunks), 14)).toBe(false);
      expect(tree.leafStartsWith(i, leaf.subarray(0, 10), 14)).toBe(false);
      expect(tree.leafStartsWith(i, Buffer.concat([leaf, leaf]), 33)).toBe(false);
    }
  });
});
