/**
 * File metadata as the protocol sees it: the stat fields that are hashed into
 * entry hashes and carried in net_tree headers. Times are bigints so that
 * nanoseconds survive (a double cannot hold seconds*1e9 exactly).
 */
import type { BigIntStats } from 'node:fs';

export interface FileMeta {
  /** st_mode truncated to 16 bits: file type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: bigint;
  mtimeNsec: bigint;
  atimeSec: bigint;
  atimeNsec: bigint;
}

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

export type EntryType = 'file' | 'dir' | 'symlink';

export function typeOfMode(mode: number): EntryType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    default:
      return undefined;
  }
}

export function metaFromStats(st: BigIntStats): FileMeta {
  const ns = 1_000_000_000n;
  return {
    mode: Number(st.mode & 0xffffn),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeSec: st.mtimeNs / ns,
    mtimeNsec: st.mtimeNs % ns,
    atimeSec: st.atimeNs / ns,
    atimeNsec: st.atimeNs % ns,
  };
}

/**
 * The 26 stat bytes hashed into entry hashes, little-endian: mode u16, uid u32,
 * gid u32, mtime seconds u64, mtime nanoseconds u64 with the low 3 bits cleared
 * (the C tool "reduces precision" so that file systems with coarser clocks agree).
 */
export function encodeStatFields(m: FileMeta): Buffer {
  const b = Buffer.alloc(STAT_FIELDS_BYTES);
  writeStatFields(m, b, 0);
  return b;
}

export const STAT_FIELDS_BYTES = 26;

/** encodeStatFields into `b` at `o`; returns the offset after them. */
export function writeStatFields(m: FileMeta, b: Buffer, o: number): number {
  b.writeUInt16LE(m.mode & 0xffff, o);
  b.writeUInt32LE(m.uid >>> 0, o + 2);
  b.writeUInt32LE(m.gid >>> 0, o + 6);
  b.writeBigUInt64LE(BigInt.asUintN(64, m.mtimeSec), o + 10);
  b.writeBigUInt64LE(BigInt.asUintN(64, m.mtimeNsec) & ~7n, o + 18);
  return o + STAT_FIELDS_BYTES;
}
