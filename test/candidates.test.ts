import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CandidateTable, type Candidate } from '../src/core/sync/candidates.js';
import { MerkleTree } from '../src/core/model/tree.js';

const id = (size: number, i: number) => ({ size, mtimeNs: BigInt(i) * 1_000_000_007n - 5n * 10n ** 18n, ctimeNs: BigInt(i) * 3n, ino: 2n ** 64n - 1n - BigInt(i), dev: BigInt(i) << 40n });

describe('the local tree cache\'s candidates, packed', () => {
  it('gives back every file\'s tree, identity, flag and raw record as set, past many growths, one-chunk trees and larger alike', () => {
    const records = randomBytes(1 << 16);
    const table = new CandidateTable(records);
    const set: [string, Candidate][] = [];
    for (let i = 0; i < 3000; i++) {
      // Empty, one chunk, and (every 500th) three chunks: a tree of several nodes.
      const size = i % 500 === 7 ? 70_000 : i % 3 === 0 ? 0 : 1 + (i % 32768);
      const tree = MerkleTree.fromBuffer(randomBytes(size));
      const c: Candidate = { tree, expect: id(size, i), touched: i % 2 === 0 };
      if (i % 5 === 0) c.raw = records.subarray(i, i + 100 + (i % 7));
      table.set(`d${i % 10}/f${i}`, c);
      set.push([`d${i % 10}/f${i}`, c]);
    }
    expect(table.size).toBe(3000);
    for (const [k, c] of set) {
      const got = table.get(k)!;
      expect(got.expect).toEqual(c.expect);
      expect(got.touched).toBe(c.touched);
      expect(got.tree.size).toBe(c.tree.size);
      expect(got.tree.nodes.equals(c.tree.nodes)).toBe(true);
      if (c.raw) expect(got.raw!.equals(c.raw)).toBe(true);
      else expect(got.raw).toBeUndefined();
    }
    expect([...table.keys()]).toEqual(set.map(([k]) => k));
    // A file set again keeps its slot and takes what is set last (a larger tree, then one chunk again).
    const k = set[10]![0];
    const big = MerkleTree.fromBuffer(randomBytes(100_000));
    table.set(k, { tree: big, expect: id(100_000, 1), touched: true });
    expect(table.size).toBe(3000);
    expect(table.get(k)!.tree.nodes.equals(big.nodes)).toBe(true);
    // A tree given out before is not changed by setting its slot again.
    const given = table.get(set[11]![0])!.tree;
    const givenNodes = Buffer.from(given.nodes);
    table.set(set[11]![0], { tree: MerkleTree.fromBuffer(Buffer.from('other')), expect: id(5, 3), touched: true });
    expect(given.nodes.equals(givenNodes)).toBe(true);
    const small = MerkleTree.fromBuffer(Buffer.from('x'));
    table.set(k, { tree: small, expect: id(1, 2), touched: false });
    expect(table.get(k)).toMatchObject({ touched: false, expect: id(1, 2) });
    expect(table.get(k)!.tree.root.equals(small.root)).toBe(true);
    expect(table.get('missing')).toBeUndefined();
  });

  it('keeps no raw record that is not a part of the file read at open', () => {
    const table = new CandidateTable(Buffer.alloc(1000));
    table.set('a', { tree: MerkleTree.fromBuffer(Buffer.from('a')), expect: id(1, 1), touched: false, raw: Buffer.alloc(10) });
    expect(table.get('a')!.raw).toBeUndefined();
  });
});
