/**
 * The cursor (wire/packet.ts, an lcsync extension; docs/protocol.md#mld-and-when-a-share-sends):
 * its one encoder and bounds-checking decoder, that it is never taken for a datagram or a gone
 * notice (nor they for it), and the order a receiver asks for a file's chunks in from it.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CURSOR_IDLE, CURSOR_LEN, cursorKey, cursorTag, decodeCursor, decodeDatagram, decodeGoneNotice, encodeCursor, encodeGoneNotice } from '../src/core/wire/packet.js';
import { fromCursor, placesOf } from '../src/core/sync/chunks.js';
import { CHUNK_SIZE, MerkleTree } from '../src/core/model/tree.js';
import { hash } from '../src/core/model/hash.js';

const root = hash(Buffer.from('a file'));

describe('cursor datagram', () => {
  it('round-trips the chunk and carries a tag of the cursor key, never the root itself', () => {
    const key = cursorKey(root);
    const c = encodeCursor(key, 1234);
    expect(c.length).toBe(CURSOR_LEN);
    expect(decodeCursor(c)).toEqual({ tag: cursorTag(key), chunk: 1234 });
    expect(c.includes(root.subarray(0, 8))).toBe(false);
    expect(decodeCursor(encodeCursor(key, CURSOR_IDLE))!.chunk).toBe(CURSOR_IDLE);
    expect(cursorKey(hash(Buffer.from('another file'))).equals(key)).toBe(false);
  });

  it('refuses bad fields when encoding', () => {
    expect(() => encodeCursor(Buffer.alloc(31), 0)).toThrow(RangeError);
    expect(() => encodeCursor(cursorKey(root), -1)).toThrow(RangeError);
    expect(() => encodeCursor(cursorKey(root), 2 ** 32)).toThrow(RangeError);
    expect(() => encodeCursor(cursorKey(root), 1.5)).toThrow(RangeError);
  });

  it('is not a datagram or a gone notice, and neither is taken for a cursor', () => {
    const c = encodeCursor(cursorKey(root), 7);
    expect(decodeDatagram(c)).toBeUndefined();
    expect(decodeGoneNotice(c)).toBeUndefined();
    expect(decodeCursor(encodeGoneNotice(root))).toBeUndefined();
    const wrongMagic = Buffer.from(c);
    wrongMagic[0] ^= 1;
    expect(decodeCursor(wrongMagic)).toBeUndefined();
  });

  it('the decoder never throws and accepts only CURSOR_LEN bytes with the magic', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const d = decodeCursor(bytes);
        if (d) expect(bytes.length).toBe(CURSOR_LEN);
      }),
    );
    expect(decodeCursor(encodeCursor(cursorKey(root), 1).subarray(0, CURSOR_LEN - 1))).toBeUndefined();
  });
});

describe('fromCursor: the order a receiver fetches a file in', () => {
  // Chunks 0, 1, 3, 4, 5 and 6 wanted; 1 and 6 hold the same bytes (one group).
  const tree = MerkleTree.blank(7 * CHUNK_SIZE);
  for (let i = 0; i < 7; i++) tree.setLeaf(i, hash(Buffer.from(`chunk ${i === 6 ? 1 : i}`)));
  tree.seal();
  const places = placesOf(tree, [0, 1, 3, 4, 5, 6]);
  const passes = (c: number | undefined) => fromCursor(places, c).map((p) => [...p]);

  it('groups equal chunks, in the order of their first', () => {
    expect(places.size).toBe(5);
    expect([...places.values()]).toEqual([[0], [1, 6], [3], [4], [5]]);
  });

  it('starts at the first chunk at or after the cursor, and wraps around in a second pass', () => {
    expect(passes(3)).toEqual([[[3], [4], [5]], [[0], [1, 6]]]);
    expect(passes(2)).toEqual([[[3], [4], [5]], [[0], [1, 6]]]);
  });

  it('keeps the chunk order in one pass without a cursor, at 0, idle, or past the last chunk', () => {
    const plain = [[[0], [1, 6], [3], [4], [5]], []];
    expect(passes(undefined)).toEqual(plain);
    expect(passes(0)).toEqual(plain);
    expect(passes(CURSOR_IDLE)).toEqual(plain);
    expect(passes(99)).toEqual(plain);
  });

  it('a chunk added later joins its group, or becomes a new last group', () => {
    const p = placesOf(tree, [3, 6]);
    p.add(1);
    p.add(0);
    expect([...p.values()]).toEqual([[3], [6, 1], [0]]);
    expect(() => p.add(7)).toThrow(RangeError);
  });
});
