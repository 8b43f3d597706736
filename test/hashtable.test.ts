/**
 * The compact tables that replaced per-chunk JavaScript objects on the receiver: HashTable
 * (model/hashtable.ts) against a Map, ChunkHomes and ChunkPlaces (sync/chunks.ts) for what they
 * answer, and the memory each takes per chunk at the size of a 4 GiB file, which must stay a few
 * bytes a chunk (the maps they replaced took 150-165 bytes a chunk: 20 MiB each at 4 GiB).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomFillSync } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { HashTable } from '../src/core/model/hashtable.js';
import { HASH_SIZE, hash } from '../src/core/model/hash.js';
import { CHUNK_SIZE, MerkleTree, leafIndex } from '../src/core/model/tree.js';
import { ChunkHomes, placesOf } from '../src/core/sync/chunks.js';

/** Keys 0..n-1 in one buffer; keys i and j are equal when alias says so; the first bytes collide often. */
function keySlab(n: number, seed: number): Buffer {
  const slab = Buffer.alloc(n * HASH_SIZE);
  for (let i = 0; i < n; i++) {
    hash(Buffer.from(`${seed}:${i}`)).copy(slab, i * HASH_SIZE);
    // Half the keys share their first eight bytes with key 0: long probe runs, same start.
    if (i % 2 === 1) slab.copy(slab, i * HASH_SIZE, 0, 8);
  }
  return slab;
}

describe('HashTable', () => {
  it('answers as a Map from key bytes to the last value set, through sets, replacements and deletes', () => {
    const N = 40;
    fc.assert(
      fc.property(
        fc.integer(),
        fc.array(fc.tuple(fc.constantFrom('set', 'delete'), fc.nat(N - 1)), { maxLength: 300 }),
        (seed, ops) => {
          const slab = keySlab(N, seed);
          // Values 0..N-1 own key v; values N..2N-1 stand for the same key as v - N (an equal hash).
          const t = new HashTable(() => slab, (v) => (v % N) * HASH_SIZE);
          const model = new Map<string, number>();
          const keyOf = (v: number) => slab.subarray((v % N) * HASH_SIZE, (v % N + 1) * HASH_SIZE).toString('hex');
          let alt = false;
          for (const [op, k] of ops) {
            if (op === 'set') {
              alt = !alt;
              const v = alt ? k : k + N;
              const prev = model.get(keyOf(v));
              expect(t.set(v)).toBe(prev ?? -1);
              model.set(keyOf(v), v);
            } else {
              const prev = model.get(keyOf(k));
              expect(t.delete(prev ?? k)).toBe(prev !== undefined);
              model.delete(keyOf(k));
            }
            expect(t.size).toBe(model.size);
          }
          for (let k = 0; k < N; k++) expect(t.get(slab, k * HASH_SIZE)).toBe(model.get(keyOf(k)) ?? -1);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('ChunkHomes', () => {
  const leaf = (i: number) => hash(Buffer.from(`leaf ${i}`));

  it('finds where a leaf was stored, keeps the first home, forgets deleted ones', () => {
    const h = new ChunkHomes(8);
    const a = { path: 'a' };
    const b = { path: 'b' };
    h.add(leaf(1), a, 0);
    h.add(leaf(2), a, CHUNK_SIZE);
    h.add(leaf(1), b, 5 * CHUNK_SIZE);
    expect(h.get(leaf(1))).toEqual({ file: a, offset: 0 });
    expect(h.get(leaf(2))?.offset).toBe(CHUNK_SIZE);
    a.path = 'a.renamed';
    expect(h.get(leaf(2))?.file.path).toBe('a.renamed');
    h.delete(leaf(1));
    expect(h.get(leaf(1))).toBeUndefined();
    expect(h.size).toBe(1);
  });

  it('holds at most its bound: the oldest make room', () => {
    const h = new ChunkHomes(1500);
    const f = { path: 'f' };
    for (let i = 0; i < 4000; i++) h.add(leaf(i), f, i * CHUNK_SIZE);
    expect(h.size).toBe(1500);
    expect(h.get(leaf(2499))).toBeUndefined();
    for (let i = 2500; i < 4000; i++) expect(h.get(leaf(i))?.offset).toBe(i * CHUNK_SIZE);
  });
});

/** Heap and ArrayBuffer bytes in use after a full collection. */
function used(gc: () => void): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

describe('per-chunk memory of a 4 GiB file (131,072 chunks)', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const chunks = 131072;
  const tree = MerkleTree.blank(chunks * CHUNK_SIZE);
  randomFillSync(tree.nodes);
  const all = Array.from({ length: chunks }, (_, i) => i);

  it('the places of every chunk and a leaf index of the file take under 64 bytes a chunk, the homes of every chunk under 96', () => {
    const before = used(gc);
    const places = placesOf(tree, all);
    const afterPlaces = used(gc);
    const index = leafIndex(tree);
    const afterIndex = used(gc);
    const homes = new ChunkHomes(chunks);
    const file = { path: 'f' };
    for (let i = 0; i < chunks; i++) homes.add(tree.leaf(i), file, i * CHUNK_SIZE);
    const afterHomes = used(gc);
    expect(places.size).toBe(chunks);
    expect(index.get(tree.leaf(77))).toBe(77);
    expect(homes.size).toBe(chunks);
    // placesOf: 20.6 MiB as a map of hex leaves to arrays (165 bytes a chunk); 16-20 now.
    expect((afterPlaces - before) / chunks).toBeLessThan(64);
    // leafIndex: about 150 bytes a chunk as a map of hex leaves; 8-16 now.
    expect((afterIndex - afterPlaces) / chunks).toBeLessThan(64);
    // homes: 19.5 MiB as a map of hex leaves to objects (150 bytes a chunk); 32 bytes of leaf + 8 + 8 + 8-16 now.
    expect((afterHomes - afterIndex) / chunks).toBeLessThan(96);
  });
});
