import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LcsyncError } from '../src/core/base/errors.js';
import { HASH_SIZE, hash } from '../src/core/model/hash.js';
import type { FileMeta } from '../src/core/model/meta.js';
import {
  NET_TREE_HEADER,
  TREE_PART_SIZE,
  decodeNetTree,
  decodeNetTreeHead,
  dirChildren,
  encodeNetTree,
  partCount,
  splitParts,
} from '../src/core/wire/nettree.js';
import { CHUNK_SIZE, MerkleTree } from '../src/core/model/tree.js';
import { nameToBytes } from '../src/core/base/names.js';

const meta = (mode: number): FileMeta => ({
  mode,
  uid: 1000,
  gid: 100,
  mtimeSec: 1704164645n,
  mtimeNsec: 123456789n,
  atimeSec: 1704164646n,
  atimeNsec: 987654321n,
});

function fileObject(size: number, name = 'share/a.bin'): { obj: Buffer; tree: MerkleTree } {
  const data = Buffer.alloc(size, 7);
  const tree = MerkleTree.fromBuffer(data);
  const obj = encodeNetTree({ type: 'file', size, meta: meta(0o100644), name, payload: size === 0 ? Buffer.alloc(0) : tree.nodes });
  return { obj, tree };
}

/** Expect `fn` to throw an LcsyncError with code INTEGRITY whose message matches `re`. */
function rejects(fn: () => unknown, re: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(LcsyncError);
  expect((caught as LcsyncError).code).toBe('INTEGRITY');
  expect((caught as LcsyncError).message).toMatch(re);
}

describe('net_tree layout', () => {
  it('puts size and name length big-endian and everything else little-endian', () => {
    const { obj } = fileObject(100000);
    expect(obj.readBigUInt64BE(0)).toBe(100000n);
    expect(obj.readBigUInt64LE(8)).toBe(1704164645n);
    expect(obj.readBigUInt64LE(16)).toBe(123456789n);
    expect(obj.readBigUInt64LE(24)).toBe(1704164646n);
    expect(obj.readBigUInt64LE(32)).toBe(987654321n);
    expect(obj.readUInt32LE(40)).toBe(1000);
    expect(obj.readUInt32LE(44)).toBe(100);
    expect(obj.readUInt16LE(48)).toBe(0o100644);
    expect(obj.readUInt16BE(50)).toBe('share/a.bin'.length);
    expect(obj.readUInt32LE(52)).toBe(0);
    expect(obj.subarray(56, 56 + 11).toString()).toBe('share/a.bin');
    expect(obj.length).toBe(NET_TREE_HEADER + 11 + 7 * HASH_SIZE);
  });

  it('writes every byte of a small object taken from node\'s shared pool, whatever the pool held before', () => {
    // Leave the pool's next bytes dirty, as other callers of allocUnsafe do.
    for (let i = 0; i < 64; i++) Buffer.allocUnsafe(100).fill(0xff);
    const { obj, tree } = fileObject(5000);
    expect(obj.buffer.byteLength).toBe(Buffer.poolSize);
    expect(obj.readUInt32LE(52)).toBe(0);
    expect(obj.equals(Buffer.concat([obj.subarray(0, NET_TREE_HEADER), Buffer.from('share/a.bin'), tree.nodes]))).toBe(true);
    const clean = Buffer.alloc(obj.length);
    obj.copy(clean);
    expect(decodeNetTree(obj)).toEqual(decodeNetTree(clean));
  });

  it('gives a one-part object back as itself, not a view of it', () => {
    const { obj } = fileObject(5000);
    expect(splitParts(obj)[0]).toBe(obj);
  });
});

describe('round trips', () => {
  it.each([0, 1, 32768, 32769, 100000, 1048589])('file of %i bytes', (size) => {
    const { obj, tree } = fileObject(size);
    const t = decodeNetTree(obj);
    expect(t.type).toBe('file');
    expect(t.size).toBe(size);
    expect(t.name).toBe('share/a.bin');
    expect(t.meta).toEqual(meta(0o100644));
    expect(t.payload.equals(size === 0 ? Buffer.alloc(0) : tree.nodes)).toBe(true);
  });

  it('directory: size is the object length, payload the child hashes', () => {
    const kids = [hash(Buffer.from('a')), hash(Buffer.from('b'))];
    const obj = encodeNetTree({ type: 'dir', size: 0, meta: meta(0o40755), name: 'share/sub', payload: Buffer.concat(kids) });
    expect(obj.readBigUInt64BE(0)).toBe(BigInt(obj.length));
    const t = decodeNetTree(obj);
    expect(t.type).toBe('dir');
    expect(t.size).toBe(obj.length);
    expect(dirChildren(t.payload)).toEqual(kids);
  });

  it('symlink: the payload is the target', () => {
    const obj = encodeNetTree({ type: 'symlink', size: 0, meta: meta(0o120777), name: 'share/link', payload: Buffer.from('../x/ÿ') });
    const t = decodeNetTree(obj);
    expect(t.type).toBe('symlink');
    expect(t.payload.toString()).toBe('../x/ÿ');
  });

  it('names in UTF-8 of any length up to 65535 bytes; longer is refused by the encoder', () => {
    const name = 'share/' + 'é'.repeat(1000);
    expect(decodeNetTree(fileObject(10, name).obj).name).toBe(name);
    expect(() => fileObject(10, 'x'.repeat(0x10000))).toThrow(LcsyncError);
  });

  it('a large file tree is cut into 32 KiB parts; part 0 alone tells the whole length', () => {
    const { obj } = fileObject(40 * 2 ** 20); // 1280 chunks -> base 2048 -> 4095 nodes -> 131040 bytes of nodes
    const parts = splitParts(obj);
    expect(parts.length).toBe(partCount(obj.length));
    expect(obj.length).toBe(NET_TREE_HEADER + 11 + 4095 * HASH_SIZE);
    expect(parts.length).toBe(5); // 4 full parts and 35 bytes
    for (const p of parts.slice(0, -1)) expect(p.length).toBe(TREE_PART_SIZE);
    expect(Buffer.concat(parts).equals(obj)).toBe(true);
    const head = decodeNetTreeHead(parts[0]!);
    expect(head.objectLength).toBe(obj.length);
    expect(head.size).toBe(40 * 2 ** 20);
  });

  it('an empty object still makes one part', () => {
    expect(splitParts(Buffer.alloc(0)).length).toBe(1);
    expect(partCount(0)).toBe(1);
  });
});

describe('malformed objects', () => {
  const { obj: file } = fileObject(100000);
  const dir = encodeNetTree({ type: 'dir', size: 0, meta: meta(0o40755), name: 'd', payload: Buffer.alloc(64, 1) });
  const edit = (b: Buffer, f: (c: Buffer) => void) => {
    const c = Buffer.from(b);
    f(c);
    return c;
  };

  it('shorter than the header', () => {
    for (const n of [0, 1, 55]) rejects(() => decodeNetTreeHead(file.subarray(0, n)), /shorter than the 56-byte header/);
  });

  it('non-zero header padding', () => {
    rejects(() => decodeNetTreeHead(edit(file, (c) => (c[53] = 1))), /padding/);
  });

  it('a file type other than file, directory or symlink', () => {
    for (const mode of [0, 0o10644, 0o20644, 0o60644, 0o140755]) {
      rejects(() => decodeNetTreeHead(edit(file, (c) => c.writeUInt16LE(mode, 48))), /unsupported file type/);
    }
  });

  it('a name running past the end', () => {
    rejects(() => decodeNetTreeHead(edit(file, (c) => c.writeUInt16BE(0xffff, 50))), /runs past the end/);
    rejects(() => decodeNetTreeHead(file.subarray(0, NET_TREE_HEADER + 5)), /runs past the end/);
  });

  it('not: a name that is not UTF-8 (names are bytes; the receiver checks each segment before creating it)', () => {
    const bad = edit(file, (c) => (c[NET_TREE_HEADER] = 0xff));
    const head = decodeNetTreeHead(bad);
    const namesz = bad.readUInt16BE(50);
    expect(nameToBytes(head.name).equals(bad.subarray(NET_TREE_HEADER, NET_TREE_HEADER + namesz))).toBe(true);
  });

  it('a file size above the limit', () => {
    rejects(() => decodeNetTreeHead(edit(file, (c) => c.writeBigUInt64BE(2n ** 64n - 1n, 0))), /above the limit/);
    rejects(() => decodeNetTreeHead(file, { maxFileSize: 99999 }), /above the limit/);
  });

  it('a file object with too few or too many node bytes', () => {
    rejects(() => decodeNetTree(file.subarray(0, file.length - 1)), /should be \d+ bytes/);
    rejects(() => decodeNetTree(Buffer.concat([file, Buffer.alloc(32)])), /should be \d+ bytes/);
    rejects(() => decodeNetTree(edit(file, (c) => c.writeBigUInt64BE(200000n, 0))), /should be \d+ bytes/);
  });

  it('a directory or symlink whose size field is not its length', () => {
    rejects(() => decodeNetTreeHead(edit(dir, (c) => c.writeBigUInt64BE(BigInt(dir.length + 1), 0))), /claims/);
    rejects(() => decodeNetTreeHead(dir.subarray(0, dir.length - 32)), /claims/);
  });

  it('a directory payload that is not whole hashes', () => {
    const odd = encodeNetTree({ type: 'dir', size: 0, meta: meta(0o40755), name: 'd', payload: Buffer.alloc(33) });
    rejects(() => decodeNetTreeHead(odd), /whole number of hashes/);
  });

  it('a header claiming the largest allowed file allocates nothing for it', () => {
    const claim = edit(file.subarray(0, NET_TREE_HEADER + 11), (c) => c.writeBigUInt64BE(BigInt(64 * 2 ** 30), 0));
    const before = process.memoryUsage().arrayBuffers;
    const head = decodeNetTreeHead(claim);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(head.objectLength).toBe(NET_TREE_HEADER + 11 + (2 * 2 ** 21 - 1) * HASH_SIZE);
    expect(grown).toBeLessThan(1 << 20);
  });
});

describe('fuzz: decode returns or throws LcsyncError, never anything else', () => {
  const check = (b: Uint8Array) => {
    try {
      const head = decodeNetTreeHead(b);
      // Whatever it accepts is self-consistent and within the caller's bounds.
      expect(head.payloadOffset).toBeLessThanOrEqual(b.length);
      expect(head.objectLength).toBeGreaterThanOrEqual(head.payloadOffset);
      expect(head.size).toBeLessThanOrEqual(64 * 2 ** 30);
    } catch (e) {
      if (!(e instanceof LcsyncError)) throw e;
    }
    try {
      const t = decodeNetTree(b);
      expect(t.payload.length).toBeLessThanOrEqual(b.length);
    } catch (e) {
      if (!(e instanceof LcsyncError)) throw e;
    }
  };

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), check), { numRuns: 3000 });
  });

  it('plausible headers with random fields', () => {
    const header = fc.record({
      size: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      mode: fc.oneof(fc.constantFrom(0o100644, 0o40755, 0o120777), fc.integer({ min: 0, max: 0xffff })),
      namesz: fc.integer({ min: 0, max: 0xffff }),
      pad: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
      rest: fc.uint8Array({ maxLength: 400 }),
    });
    fc.assert(
      fc.property(header, (h) => {
        const b = Buffer.alloc(NET_TREE_HEADER + h.rest.length);
        b.writeBigUInt64BE(h.size, 0);
        b.writeUInt16LE(h.mode, 48);
        b.writeUInt16BE(h.namesz, 50);
        b.writeUInt32LE(h.pad, 52);
        b.set(h.rest, NET_TREE_HEADER);
        check(b);
      }),
      { numRuns: 5000 },
    );
  });

  it('valid objects with one byte changed or cut short', () => {
    const { obj } = fileObject(3 * CHUNK_SIZE + 1);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: obj.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: obj.length }), (i, v, cut) => {
        const b = Buffer.from(obj);
        b[i] = v;
        check(b.subarray(0, cut));
        check(b);
      }),
      { numRuns: 3000 },
    );
  });
});
