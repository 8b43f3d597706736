/**
 * The bundle object (an lcsync extension, docs/protocol.md#bundles): one directory's entries in
 * one object, so that a receiver of many small files makes one round trip per directory instead
 * of two per file. Each entry is a child's net_tree object (a file's whole tree, a directory's or
 * symlink's object) and, for small files, the file's bytes. Nothing in a bundle is trusted for
 * itself: a receiver checks every entry against the directory object it already verified (its
 * child hashes) exactly as if it had fetched the entry alone (sync/bundle.ts).
 *
 * Layout (integers BE, as the signature object's):
 *
 *   0   6   "LCBDL1"
 *   6   1   version 1
 *   7   1   flags 0 (anything else is refused)
 *   8   32  the key the directory was asked for by (its entry hash, or its alias)
 *   40  2   part z
 *   42  2   parts n (1 <= n <= MAX_BUNDLE_PARTS, z < n)
 *   44  4   entry count m
 *   48  ... m entries: entry hash (32), object length L (u32, 1..MAX_BUNDLE_ENTRY_OBJECT),
 *           data length D (u32, 0 = none, at most MAX_BUNDLE_ENTRY_DATA), the L object bytes,
 *           the D data bytes
 *
 * and nothing after the last entry. Part z travels under bundleKey(key, z) like a tree object
 * (with OTI, OID = BLAKE3 of its bytes, sealed when the share encrypts).
 */
import { LcsyncError } from '../base/errors.js';
import { HASH_SIZE, hashConcat, type Hash } from '../model/hash.js';
import { TREE_PART_SIZE } from './nettree.js';

const MAGIC = Buffer.from('LCBDL1', 'ascii');
const VERSION = 1;
const GROUP_TAG = Buffer.from('lcsync-bundle', 'ascii');
export const BUNDLE_HEADER = 48;
/** Per entry, before its bytes: hash, object length, data length. */
export const BUNDLE_ENTRY_HEADER = HASH_SIZE + 8;
/** Most parts of one directory's bundle: a receiver never asks for more, whatever part 0 claims. */
export const MAX_BUNDLE_PARTS = 4096;
/** An entry's object is one tree part at most (a file of one part, a directory of about 1,000 children). */
export const MAX_BUNDLE_ENTRY_OBJECT = TREE_PART_SIZE;
/** A file's bytes travel in a bundle only when it is one chunk at most. */
export const MAX_BUNDLE_ENTRY_DATA = 32768;

export interface BundleEntry {
  /** The entry hash the directory lists. */
  hash: Hash;
  /** The entry's net_tree object (whole). */
  obj: Buffer;
  /** A small file's bytes, when the bundle carries them. */
  data?: Buffer;
}

export interface BundlePart {
  /** The key the directory was asked for by (entry hash or alias hash). */
  key: Hash;
  part: number;
  parts: number;
  entries: BundleEntry[];
}

/** The key (and so the group) of part `z` of the bundle of the directory asked for by `dirKey`. */
export function bundleKey(dirKey: Uint8Array, z: number): Hash {
  if (dirKey.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `directory key must be ${HASH_SIZE} bytes, got ${dirKey.length}`);
  if (!Number.isInteger(z) || z < 0 || z >= MAX_BUNDLE_PARTS) throw new LcsyncError('INTERNAL', `bundle part ${z} out of range`);
  const part = Buffer.alloc(2);
  part.writeUInt16BE(z);
  return hashConcat([GROUP_TAG, dirKey, part]);
}

/** Bytes an entry takes in a bundle. */
export function bundleEntrySize(objLength: number, dataLength: number): number {
  return BUNDLE_ENTRY_HEADER + objLength + dataLength;
}

export function encodeBundle(b: BundlePart): Buffer {
  if (b.key.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', 'bundle key must be 32 bytes');
  if (!(b.parts >= 1 && b.parts <= MAX_BUNDLE_PARTS && b.part >= 0 && b.part < b.parts)) throw new LcsyncError('INTERNAL', `bundle part ${b.part} of ${b.parts}`);
  let size = BUNDLE_HEADER;
  for (const e of b.entries) {
    const d = e.data?.length ?? 0;
    if (e.hash.length !== HASH_SIZE || e.obj.length < 1 || e.obj.length > MAX_BUNDLE_ENTRY_OBJECT || d > MAX_BUNDLE_ENTRY_DATA) {
      throw new LcsyncError('INTERNAL', 'bundle entry out of bounds');
    }
    size += bundleEntrySize(e.obj.length, d);
  }
  const out = Buffer.alloc(size);
  MAGIC.copy(out, 0);
  out[6] = VERSION;
  out[7] = 0;
  b.key.copy(out, 8);
  out.writeUInt16BE(b.part, 40);
  out.writeUInt16BE(b.parts, 42);
  out.writeUInt32BE(b.entries.length, 44);
  let at = BUNDLE_HEADER;
  for (const e of b.entries) {
    e.hash.copy(out, at);
    out.writeUInt32BE(e.obj.length, at + 32);
    out.writeUInt32BE(e.data?.length ?? 0, at + 36);
    at += BUNDLE_ENTRY_HEADER;
    at += e.obj.copy(out, at);
    if (e.data) at += e.data.copy(out, at);
  }
  return out;
}

function refuse(why: string): never {
  throw new LcsyncError('INTEGRITY', `bad bundle: ${why}`);
}

/** Only the header (magic, version, flags, key, part, parts): what a request checks before taking an object. */
export function decodeBundleHead(buf: Buffer): { key: Hash; part: number; parts: number; count: number } {
  if (buf.length < BUNDLE_HEADER) refuse(`${buf.length} bytes, shorter than its header`);
  if (!buf.subarray(0, 6).equals(MAGIC)) refuse('no LCBDL1 magic');
  if (buf[6] !== VERSION) refuse(`version ${buf[6]}`);
  if (buf[7] !== 0) refuse(`flags ${buf[7]}`);
  const part = buf.readUInt16BE(40);
  const parts = buf.readUInt16BE(42);
  if (parts < 1 || parts > MAX_BUNDLE_PARTS || part >= parts) refuse(`part ${part} of ${parts}`);
  const count = buf.readUInt32BE(44);
  if (count > Math.floor((buf.length - BUNDLE_HEADER) / (BUNDLE_ENTRY_HEADER + 1))) refuse(`${count} entries cannot fit in ${buf.length} bytes`);
  return { key: buf.subarray(8, 40), part, parts, count };
}

/** Decode a whole bundle part; every length is checked against what is left. Entries are views into `buf`. */
export function decodeBundle(buf: Buffer): BundlePart {
  const { key, part, parts, count } = decodeBundleHead(buf);
  const entries: BundleEntry[] = [];
  let at = BUNDLE_HEADER;
  for (let i = 0; i < count; i++) {
    if (buf.length - at < BUNDLE_ENTRY_HEADER) refuse(`entry ${i} truncated`);
    const hash = buf.subarray(at, at + HASH_SIZE);
    const objLength = buf.readUInt32BE(at + 32);
    const dataLength = buf.readUInt32BE(at + 36);
    at += BUNDLE_ENTRY_HEADER;
    if (objLength < 1 || objLength > MAX_BUNDLE_ENTRY_OBJECT) refuse(`entry ${i} object of ${objLength} bytes`);
    if (dataLength > MAX_BUNDLE_ENTRY_DATA) refuse(`entry ${i} data of ${dataLength} bytes`);
    if (buf.length - at < objLength + dataLength) refuse(`entry ${i} truncated`);
    const obj = buf.subarray(at, at + objLength);
    at += objLength;
    const data = dataLength > 0 ? buf.subarray(at, at + dataLength) : undefined;
    at += dataLength;
    entries.push(data ? { hash, obj, data } : { hash, obj });
  }
  if (at !== buf.length) refuse(`${buf.length - at} bytes after the last entry`);
  return { key, part, parts, entries };
}
