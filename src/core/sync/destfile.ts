/**
 * The file of one destination in the receiver's local tree cache (localtrees.ts says what it is for and how
 * it is used): its layout, encoded and decoded here. Magic, the destination path, records, and a BLAKE3 of
 * all of it. A file's record is an 8-byte ctime and the share cache's entry encoding (encodeEntry); a
 * directory's (encodeDirRecord) holds its identity and its listing: each child's name, what lstat showed of
 * it and, for a file, its entry hash; the records of its files follow it. On load (decodeCacheFile) the hash
 * and every length are checked (a damaged file is a miss for every entry); a file's record is only indexed by
 * path, its identity compared in place (recordIfSame) and its tree decoded and checked (treeOf: node count,
 * parents) when a lookup hits it, a tree that fails being a miss, never a wrong tree.
 */
import { endianness } from 'node:os';
import { RAW_FIELDS } from '../base/lstatmany.js';
import { nameFromBytes, nameToBytes } from '../base/names.js';
import { hash, hashConcat, toHex, type Hash } from '../model/hash.js';
import { MerkleTree } from '../model/tree.js';
import { ENTRY_HEADER, decodeEntry, encodeEntryParts, entryPath, type FileIdentity } from '../index/cache.js';
import type { DirIdentity, DirListing } from '../index/mdex.js';

/** A file's identity as the receiver keys it: the share's, and its ctime. */
export interface LocalIdentity extends FileIdentity {
  ctimeNs: bigint;
}

export const MAGIC = Buffer.from('LCDEST2\n', 'latin1');
export const OLD_MAGIC = Buffer.from('LCDEST1\n', 'latin1');
/** Starts a directory's record where a file's has the share cache's entry magic. */
export const DIR_MAGIC = Buffer.from('LCDIR01\n', 'latin1');

/** A file's entry as a cache file holds it. */
export interface Entry {
  id: LocalIdentity;
  tree: MerkleTree;
}

/** Where a directory's record and the records of its files are in a checked cache file. */
export interface DirPlace {
  /** The directory record's start, and the end of its files' records. */
  at: number;
  end: number;
  /** Where its files' records start, and how many there are; indexed by key into `files` when first asked for. */
  filesAt: number;
  files: number;
  indexed: boolean;
}

/** A checked cache file: loose file records by key, directories by key. */
export interface Decoded {
  files: Map<string, number>;
  dirs: Map<string, DirPlace>;
}

export const NUL = Buffer.of(0);

/** A file's record: length, ctime, the share cache's entry encoding; or the bytes read, as they were. */
export function encodeFileRecord(k: string, e: Entry | Buffer): Buffer[] {
  if (Buffer.isBuffer(e)) return [e];
  const body = encodeEntryParts(k, e.id, e.tree);
  const pre = Buffer.alloc(12);
  pre.writeUInt32BE(body.reduce((n, b) => n + b.length, 0) + 8, 0);
  pre.writeBigInt64BE(e.id.ctimeNs, 4);
  return [pre, ...body];
}

/*
 * A directory's record: length, the directory's ctime, DIR_MAGIC, its inode, device and mtime, its
 * key (length and bytes), the number of children and of file records that follow it, then per child
 * in byte order of the names: the first RECORD_STAT bytes of what lstatManyRaw gave for it (every
 * field but atime, in this host's byte order: a cache file is this host's), its entry hash (zeros
 * for a directory), its name and a NUL.
 */
const DIR_HEAD = 4 + 8 + 8 + 24 + 4;
export const RECORD_STAT = 8 * (RAW_FIELDS - 1);

export function encodeDirRecord(k: string, st: { ino: bigint; dev: bigint; mtimeNs: bigint; ctimeNs: bigint }, files: number, stats: Buffer, hashes: readonly Buffer[], names: readonly Buffer[]): Buffer[] {
  const key = nameToBytes(k);
  const head = Buffer.alloc(DIR_HEAD);
  head.writeBigInt64BE(st.ctimeNs, 4);
  DIR_MAGIC.copy(head, 12);
  head.writeBigUInt64BE(BigInt.asUintN(64, st.ino), 20);
  head.writeBigUInt64BE(BigInt.asUintN(64, st.dev), 28);
  head.writeBigInt64BE(st.mtimeNs, 36);
  head.writeUInt32BE(key.length, 44);
  const counts = Buffer.alloc(8);
  counts.writeUInt32BE(names.length, 0);
  counts.writeUInt32BE(files, 4);
  const parts = [head, key, counts, stats, ...hashes, ...names.flatMap((b) => [b, NUL])];
  head.writeUInt32BE(parts.reduce((n, b) => n + b.length, 0) - 4, 0);
  return parts;
}

/** The identity a file record holds. */
export function recordIdentity(r: Buffer): LocalIdentity {
  return { ctimeNs: r.readBigInt64BE(RECORD_CTIME), size: Number(r.readBigUInt64BE(RECORD_ID)), mtimeNs: r.readBigInt64BE(RECORD_ID + 8), ino: r.readBigUInt64BE(RECORD_ID + 16), dev: r.readBigUInt64BE(RECORD_ID + 24) };
}

/** Where the low 32 bits of an int64 are, counted in 32-bit words (lstatManyRaw writes in this host's order). */
const LOW = endianness() === 'LE' ? 0 : 1;

/** A directory record of a checked cache file, as the walk's fast path uses it (../index/mdex.ts DirListing). */
export class Listing implements DirListing {
  readonly count: number;
  /** Children that are not directories: files, every one (relisted saves no other kind). */
  readonly files: number;
  private readonly stats: Int32Array;
  private readonly hashesAt: number;
  private readonly nameAt: number[] = [];

  constructor(
    private readonly buf: Buffer,
    readonly place: DirPlace,
  ) {
    let o = place.at + DIR_HEAD - 4;
    o += 4 + buf.readUInt32BE(o);
    this.count = buf.readUInt32BE(o);
    this.files = buf.readUInt32BE(o + 4);
    o += 8;
    // Copied: an Int32Array needs an aligned offset.
    const stats = new Int32Array((this.count * RECORD_STAT) / 4);
    new Uint8Array(stats.buffer).set(buf.subarray(o, o + this.count * RECORD_STAT));
    this.stats = stats;
    o += this.count * RECORD_STAT;
    this.hashesAt = o;
    o += this.count * 32;
    // Exactly `count` names, none empty, ending where the record does (else `valid` is false: not used).
    const end = place.at + 4 + buf.readUInt32BE(place.at);
    for (let i = 0; i < this.count && this.valid; i++) {
      this.nameAt.push(o);
      const z = buf.indexOf(0, o);
      this.valid = z > o && z < end;
      o = z + 1;
    }
    this.nameAt.push(o);
    this.valid &&= o === end;
  }

  /** Whether the names hold together with the count (checkDirRecord checked the rest). */
  readonly valid: boolean = true;

  private nameBytes(i: number): Buffer {
    return this.buf.subarray(this.nameAt[i]!, this.nameAt[i + 1]! - 1);
  }

  paths(abs: string): Buffer {
    const prefix = nameToBytes(abs + '/');
    const names = this.buf.subarray(this.nameAt[0]!, this.nameAt[this.count]!);
    const out = Buffer.allocUnsafe(this.count * prefix.length + names.length);
    let o = 0;
    for (let i = 0; i < this.count; i++) {
      o += prefix.copy(out, o);
      o += this.buf.copy(out, o, this.nameAt[i]!, this.nameAt[i + 1]!);
    }
    return out;
  }

  name(i: number): string {
    return nameFromBytes(this.nameBytes(i));
  }

  isDir(i: number): boolean {
    return (this.stats[(i * RECORD_STAT) / 4 + 2 + LOW]! & 0o170000) === 0o040000;
  }

  same(words: Int32Array, i: number): boolean {
    const g = i * RAW_FIELDS * 2;
    const w = (i * RECORD_STAT) / 4;
    for (let j = 0; j < RECORD_STAT / 4; j++) if (words[g + j] !== this.stats[w + j]) return false;
    return true;
  }

  hash(i: number): Hash {
    return this.buf.subarray(this.hashesAt + 32 * i, this.hashesAt + 32 * (i + 1));
  }

  /** The children that are files, with their entry hashes (hex): what the local side of a comparison looks up. */
  *fileHashes(): Iterable<[string, string]> {
    for (let i = 0; i < this.count; i++) if (!this.isDir(i)) yield [this.name(i), toHex(this.hash(i))];
  }
}

/**
 * The cache file: magic, destination path, records, BLAKE3 of all before it. As parts, to be written
 * in order: the trees' nodes are not copied (a whole file of big trees held twice was tens of MiB).
 */
/**
 * Above this many bytes a cache file is hashed part by part rather than copied together first: the
 * copy of a 4 GiB file's record (its 8 MiB tree) was the receiver's peak memory at the end of a run.
 */
const CONCAT_HASH_MAX = 4 * 2 ** 20;

export function encodeCacheFile(root: string, records: readonly Buffer[]): Buffer[] {
  const rootBytes = nameToBytes(root);
  const head = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(rootBytes.length, MAGIC.length);
  const parts: Buffer[] = [head, rootBytes, ...records];
  const bytes = parts.reduce((n, b) => n + b.length, 0);
  // Many small parts hash faster copied together; big trees are not copied.
  parts.push(bytes <= CONCAT_HASH_MAX ? hash(Buffer.concat(parts, bytes)) : hashConcat(parts));
  return parts;
}


/**
 * Check a cache file of destination `root` (its hash, the destination, every record's length, every
 * directory record's counts and names, every loose file record's header) and index it: where each
 * loose file's record starts, by key, and each directory's; undefined when any check fails. The
 * files under a directory record are indexed (their headers checked) when first asked for, and
 * trees are checked when used (treeOf): one that fails is a miss.
 */
export function decodeCacheFile(buf: Buffer, root: string): Decoded | undefined {
  if (buf.length < MAGIC.length + 4 + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const end = buf.length - 32;
  if (!hash(buf.subarray(0, end)).equals(buf.subarray(end))) return undefined;
  let o = MAGIC.length;
  const rootLen = buf.readUInt32BE(o);
  o += 4;
  if (o + rootLen > end || nameFromBytes(buf.subarray(o, o + rootLen)) !== root) return undefined;
  o += rootLen;
  const out: Decoded = { files: new Map(), dirs: new Map() };
  /** File records still to come under the last directory record. */
  let owned = 0;
  let dir: DirPlace | undefined;
  while (o < end) {
    if (o + 4 > end) return undefined;
    const len = buf.readUInt32BE(o);
    if (len < 8 + ENTRY_HEADER || o + 4 + len > end) return undefined;
    if (owned > 0) {
      // A file of the last directory: its header is checked when first asked for (LocalTreeCache.fileRecord).
      owned--;
      dir!.end = o + 4 + len;
    } else if (buf.compare(DIR_MAGIC, 0, DIR_MAGIC.length, o + 12, o + 20) === 0) {
      const d = checkDirRecord(buf.subarray(o, o + 4 + len));
      if (!d) return undefined;
      dir = { at: o, end: o + 4 + len, filesAt: o + 4 + len, files: d.files, indexed: false };
      out.dirs.set(d.key, dir);
      owned = d.files;
    } else {
      const key = entryPath(buf.subarray(o + 12, o + 4 + len));
      if (key === undefined) return undefined;
      out.files.set(key, o);
    }
    o += 4 + len;
  }
  return owned === 0 ? out : undefined;
}

/** A directory record's key and number of file records, if its lengths and counts hold together. */
export function checkDirRecord(r: Buffer): { key: string; files: number } | undefined {
  if (r.length < DIR_HEAD + 8) return undefined;
  const klen = r.readUInt32BE(DIR_HEAD - 4);
  let o = DIR_HEAD + klen;
  if (klen === 0 || o + 8 > r.length) return undefined;
  const key = nameFromBytes(r.subarray(DIR_HEAD, o));
  const n = r.readUInt32BE(o);
  const files = r.readUInt32BE(o + 4);
  o += 8;
  if (files > n || o + n * (RECORD_STAT + 32) > r.length) return undefined;
  o += n * (RECORD_STAT + 32);
  // The names (n of them, each non-empty) are counted when the listing is used (Listing).
  return n === 0 ? (o === r.length ? { key, files } : undefined) : r[r.length - 1] === 0 && o < r.length ? { key, files } : undefined;
}

/** Where a record's identity is: its ctime (RECORD_CTIME, 8 bytes) and size, mtime, inode, device (RECORD_ID, 32 bytes). */
const RECORD_CTIME = 4;
const RECORD_ID = 12 + ENTRY_HEADER - 36;
/** Laid out as a record's identity fields, to compare them as bytes (no BigInt read back per entry). */
const scratch = Buffer.alloc(40);

/** The record at `at` in `buf` (a checked cache file) if its identity is `id`'s, else undefined. */
export function recordIfSame(buf: Buffer, at: number, id: LocalIdentity): Buffer | undefined {
  scratch.writeBigInt64BE(id.ctimeNs, 0);
  scratch.writeBigUInt64BE(BigInt(id.size), 8);
  scratch.writeBigInt64BE(id.mtimeNs, 16);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.ino), 24);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.dev), 32);
  if (buf.compare(scratch, 0, 8, at + RECORD_CTIME, at + RECORD_CTIME + 8) !== 0) return undefined;
  if (buf.compare(scratch, 8, 40, at + RECORD_ID, at + RECORD_ID + 32) !== 0) return undefined;
  return buf.subarray(at, at + 4 + buf.readUInt32BE(at));
}

/** Whether the directory record at `at` holds identity `id` (ctime, inode, device, mtime). */
export function dirIfSame(buf: Buffer, at: number, id: DirIdentity): boolean {
  scratch.writeBigInt64BE(id.ctimeNs, 0);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.ino), 8);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.dev), 16);
  scratch.writeBigInt64BE(id.mtimeNs, 24);
  return buf.compare(scratch, 0, 8, at + 4, at + 12) === 0 && buf.compare(scratch, 8, 32, at + 20, at + 44) === 0;
}

/** The tree a record holds, checked (node count, parents); undefined when it is not a valid one. */
export function treeOf(record: Buffer): MerkleTree | undefined {
  const entry = decodeEntry(record.subarray(12));
  if (!entry) return undefined;
  try {
    const tree = MerkleTree.fromNodes(entry.id.size, entry.nodes);
    return tree.verify() ? tree : undefined;
  } catch {
    return undefined;
  }
}

