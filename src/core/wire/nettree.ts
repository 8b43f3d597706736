/**
 * The net_tree object: metadata of a file, directory or symlink as it travels.
 *
 *   off size field
 *    0   8   size      u64 BIG-endian (file: its length; dir/link: whole object length)
 *    8   8   mtime s   u64 LE
 *   16   8   mtime ns  u64 LE
 *   24   8   atime s   u64 LE
 *   32   8   atime ns  u64 LE
 *   40   4   uid       u32 LE
 *   44   4   gid       u32 LE
 *   48   2   mode      u16 LE
 *   50   2   namesz    u16 BIG-endian
 *   52   4   zero
 *   56   namesz        share path (no NUL)
 *   ...  payload       file: tree nodes x 32; dir: child entry hashes x 32; link: target
 *
 * The mixed endianness is the C tool's (only size and namesz are swapped there);
 * we keep it for wire compatibility. One encoder and one decoder, every length
 * checked before it is used.
 */
import { LcsyncError } from '../base/errors.js';
import { HASH_SIZE } from '../model/hash.js';
import { typeOfMode, type EntryType, type FileMeta } from '../model/meta.js';
import { CHUNK_SIZE, nodeCount } from '../model/tree.js';
import { displayName, nameFromBytes, nameToBytes } from '../base/names.js';

export const NET_TREE_HEADER = 56;
/** Tree objects travel in parts of at most this many bytes, each under its own hash. */
export const TREE_PART_SIZE = 32768;

export interface NetTree {
  type: EntryType;
  /** File length for files; whole object length for dirs and links (set by the encoder). */
  size: number;
  meta: FileMeta;
  /** The share path (string form of names.ts: bytes that are not UTF-8 kept as escapes). */
  name: string;
  payload: Buffer;
}

export function encodeNetTree(t: Omit<NetTree, 'type'> & { type: EntryType }): Buffer {
  const name = nameToBytes(t.name);
  if (name.length > 0xffff) throw new LcsyncError('USAGE', `share path too long for the wire (${name.length} bytes): ${displayName(t.name)}`);
  const total = NET_TREE_HEADER + name.length + t.payload.length;
  // From node's shared pool when small (every byte is written below): a share keeps one such object
  // per file, and one with an ArrayBuffer of its own cost about 200 bytes more, half of it outside V8's heap.
  const b = Buffer.allocUnsafe(total);
  b.fill(0, 52, NET_TREE_HEADER);
  const size = t.type === 'file' ? t.size : total;
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeBigUInt64LE(BigInt.asUintN(64, t.meta.mtimeSec), 8);
  b.writeBigUInt64LE(BigInt.asUintN(64, t.meta.mtimeNsec), 16);
  b.writeBigUInt64LE(BigInt.asUintN(64, t.meta.atimeSec), 24);
  b.writeBigUInt64LE(BigInt.asUintN(64, t.meta.atimeNsec), 32);
  b.writeUInt32LE(t.meta.uid >>> 0, 40);
  b.writeUInt32LE(t.meta.gid >>> 0, 44);
  b.writeUInt16LE(t.meta.mode & 0xffff, 48);
  b.writeUInt16BE(name.length, 50);
  name.copy(b, NET_TREE_HEADER);
  t.payload.copy(b, NET_TREE_HEADER + name.length);
  return b;
}

export interface NetTreeHead {
  type: EntryType;
  size: number;
  meta: FileMeta;
  name: string;
  /** Offset of the payload in the whole object. */
  payloadOffset: number;
  /** Length of the whole object (all parts together). */
  objectLength: number;
}

export interface DecodeLimits {
  /** Largest file size a header may claim; bounds the tree we would allocate. */
  maxFileSize: number;
}

export const DEFAULT_LIMITS: DecodeLimits = { maxFileSize: 64 * 2 ** 30 };

/**
 * Decode the header and name from the first part (or the whole object), and
 * work out how long the whole object must be. Rejects, before any allocation,
 * a header whose claims cannot be true.
 */
export function decodeNetTreeHead(part0: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): NetTreeHead {
  const b = Buffer.from(part0.buffer, part0.byteOffset, part0.byteLength);
  if (b.length < NET_TREE_HEADER) throw bad(`object of ${b.length} bytes is shorter than the ${NET_TREE_HEADER}-byte header`);
  const size64 = b.readBigUInt64BE(0);
  const mode = b.readUInt16LE(48);
  const namesz = b.readUInt16BE(50);
  if (b.readUInt32LE(52) !== 0) throw bad('header padding is not zero');
  const type = typeOfMode(mode);
  if (!type) throw bad(`unsupported file type in mode 0${mode.toString(8)}`);
  if (NET_TREE_HEADER + namesz > b.length) throw bad(`name of ${namesz} bytes runs past the end of the object`);
  const nameBytes = b.subarray(NET_TREE_HEADER, NET_TREE_HEADER + namesz);
  // Names are bytes (the C tool sends any): whether one is safe to create is the receiver's call.
  const name = nameFromBytes(nameBytes);
  const payloadOffset = NET_TREE_HEADER + namesz;
  let objectLength: number;
  let size: number;
  if (type === 'file') {
    if (size64 > BigInt(limits.maxFileSize)) {
      throw bad(`header claims a file of ${size64} bytes, above the limit of ${limits.maxFileSize}`);
    }
    size = Number(size64);
    objectLength = payloadOffset + (size === 0 ? 0 : nodeCount(size) * HASH_SIZE);
  } else {
    // A directory or link object is sent whole, never in parts; its size is its length.
    if (size64 !== BigInt(b.length)) throw bad(`${type} object claims ${size64} bytes but has ${b.length}`);
    size = b.length;
    objectLength = b.length;
    if (type === 'dir' && (b.length - payloadOffset) % HASH_SIZE !== 0) {
      throw bad('directory payload is not a whole number of hashes');
    }
  }
  return {
    type,
    size,
    name,
    payloadOffset,
    objectLength,
    meta: {
      mode,
      mtimeSec: b.readBigUInt64LE(8),
      mtimeNsec: b.readBigUInt64LE(16),
      atimeSec: b.readBigUInt64LE(24),
      atimeNsec: b.readBigUInt64LE(32),
      uid: b.readUInt32LE(40),
      gid: b.readUInt32LE(44),
    },
  };
}

/** Decode a whole object (all parts joined). */
export function decodeNetTree(obj: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): NetTree {
  const head = decodeNetTreeHead(obj, limits);
  if (obj.length !== head.objectLength) {
    throw bad(`${head.type} object should be ${head.objectLength} bytes, got ${obj.length}`);
  }
  return {
    type: head.type,
    size: head.size,
    meta: head.meta,
    name: head.name,
    payload: Buffer.from(obj.subarray(head.payloadOffset)),
  };
}

/** Number of parts a tree object of `length` bytes travels in. */
export function partCount(length: number): number {
  return Math.max(1, Math.ceil(length / TREE_PART_SIZE));
}

/** Cut an object into its parts. */
export function splitParts(obj: Buffer): Buffer[] {
  // Most objects are one part: that is the object itself, not a view of it (a Buffer object per file held by a share).
  if (obj.length <= TREE_PART_SIZE) return [obj];
  const out: Buffer[] = [];
  for (let off = 0; off < obj.length || out.length === 0; off += TREE_PART_SIZE) {
    out.push(obj.subarray(off, Math.min(off + TREE_PART_SIZE, obj.length)));
  }
  return out;
}

/** Child entry hashes of a directory payload, in the order they were hashed. */
export function dirChildren(payload: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + HASH_SIZE <= payload.length; off += HASH_SIZE) out.push(payload.subarray(off, off + HASH_SIZE));
  return out;
}

function bad(msg: string): LcsyncError {
  return new LcsyncError('INTEGRITY', `malformed tree object: ${msg}`);
}

export { CHUNK_SIZE };
