import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ChunkTable } from '../src/core/index/chunktable.js';
import type { IndexRecord } from '../src/core/index/mdex.js';
import { CHUNK_SIZE, MerkleTree } from '../src/core/model/tree.js';

/** A file record of `size` bytes whose leaves are `leaf(i)` (random unless given); only what the table reads is real. */
function fileRecord(name: string, size: number, leaf?: (i: number) => Buffer): IndexRecord {
  const tree = MerkleTree.blank(size);
  for (let i = 0; i < tree.chunks; i++) (leaf?.(i) ?? randomBytes(32)).copy(tree.leaf(i));
  return { type: 'file', sharePath: name, localPath: `/srv/${name}`, meta: {} as IndexRecord['meta'], size, hash: randomBytes(32), tree };
}

describe('ChunkTable', () => {
  it('finds every chunk of several files by hash and by the 14-byte group prefix, with its file, offset and length', () => {
    const t = new ChunkTable();
    const files = [fileRecord('a', 3 * CHUNK_SIZE + 5), fileRecord('b', 1), fileRecord('c', 2500 * CHUNK_SIZE)];
    for (const f of files) t.add(f);
    expect(t.size).toBe(4 + 1 + 2500);
    for (const f of files) {
      for (let i = 0; i < f.tree!.chunks; i++) {
        const h = Buffer.from(f.tree!.leaf(i));
        const byHash = t.get(h)!;
        expect(byHash.kind).toBe('chunk');
        expect(byHash.record).toBe(f);
        expect(byHash.hash.equals(h)).toBe(true);
        expect(byHash.localPath).toBe(f.localPath);
        expect(byHash.offset).toBe(i * CHUNK_SIZE);
        expect(byHash.length).toBe(Math.min(CHUNK_SIZE, f.size - i * CHUNK_SIZE));
        const byPrefix = t.getByPrefix(h.subarray(0, 14))!;
        expect(byPrefix.record).toBe(f);
        expect(byPrefix.offset).toBe(i * CHUNK_SIZE);
      }
    }
    expect(t.get(randomBytes(32))).toBeUndefined();
    expect(t.getByPrefix(randomBytes(14))).toBeUndefined();
    // A hash that shares only the prefix is not the chunk.
    const near = Buffer.from(files[0]!.tree!.leaf(1));
    near[31] ^= 1;
    expect(t.get(near)).toBeUndefined();
    expect(t.getByPrefix(near.subarray(0, 14))?.offset).toBe(CHUNK_SIZE);
    expect(t.getByPrefix(near.subarray(0, 13))).toBeUndefined();
  });

  it('keeps identical chunks once, the last added winning, and lists each distinct hash once', () => {
    const same = randomBytes(32);
    const t = new ChunkTable();
    const a = fileRecord('a', 4 * CHUNK_SIZE, (i) => (i % 2 === 0 ? same : randomBytes(32)));
    const b = fileRecord('b', 2 * CHUNK_SIZE, (i) => (i === 1 ? same : randomBytes(32)));
    t.add(a);
    t.add(b);
    expect(t.size).toBe(1 + 2 + 1);
    const o = t.get(same)!;
    expect(o.record).toBe(b);
    expect(o.offset).toBe(CHUNK_SIZE);
    const listed = [...t.hashes()].map((h) => h.toString('hex'));
    expect(listed.length).toBe(4);
    expect(new Set(listed).size).toBe(4);
    expect(listed).toContain(same.toString('hex'));
  });

  it('is empty before anything is added', () => {
    const t = new ChunkTable();
    expect(t.size).toBe(0);
    expect(t.get(randomBytes(32))).toBeUndefined();
    expect([...t.hashes()]).toEqual([]);
  });
});
