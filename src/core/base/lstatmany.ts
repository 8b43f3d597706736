/**
 * lstat of many paths at once: one call into the addon (native/statbatch.c) per batch of paths,
 * with the fields a file's identity needs, instead of a BigIntStats object of eighteen BigInts per
 * path (what made checking 5,000 small files cost more than writing them). Without the addon, or
 * for a path whose times do not fit the addon's 64-bit nanoseconds, lstatSync does the same.
 */
import { lstatSync } from 'node:fs';
import { loadAddon } from './addon.js';
import { fsPath, nameToBytes } from './names.js';

/** What lstat says of a path, as far as identities and file types go. */
export interface PathStat {
  mode: number;
  size: number;
  ino: bigint;
  dev: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  atimeNs: bigint;
  uid: number;
  gid: number;
}

/** Paths per call: bounds the names buffer and the output (72 bytes a path). */
const BATCH = 1024;
const FIELDS = 9;
const EOVERFLOW = 75;
const NUL = Buffer.of(0);
const DOT = Buffer.from('.');

type LstatMany = (names: Uint8Array, out: BigInt64Array) => number;

function nativeLstatMany(): LstatMany | undefined {
  if (process.env.LCSYNC_NO_NATIVE_STAT) return undefined;
  const f = loadAddon().addon?.lstatMany;
  return typeof f === 'function' ? f : undefined;
}

/** One path by lstatSync; undefined when it cannot be lstat-ed (gone, a parent that is not a directory, no permission). */
export function lstatOne(p: string): PathStat | undefined {
  let st;
  try {
    st = lstatSync(fsPath(p), { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  if (!st) return undefined;
  return { mode: Number(st.mode), size: Number(st.size), ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, atimeNs: st.atimeNs, uid: Number(st.uid), gid: Number(st.gid) };
}

/** Values per path in what lstatManyRaw fills (statbatch.c): errno, mode, size, ino, dev, mtime, ctime, uid/gid, atime. */
export const RAW_FIELDS = FIELDS;

/**
 * The addon's lstat of many paths as it fills them: `blob` holds each path's bytes followed by a
 * NUL, `out` gets RAW_FIELDS values per path. False without the addon (then use lstatMany).
 */
export function lstatManyRaw(blob: Uint8Array, out: BigInt64Array): boolean {
  const many = nativeLstatMany();
  if (!many) return false;
  many(blob, out);
  return true;
}

/** Path `i` of an lstatManyRaw result, as lstatMany gives it (undefined when it could not be lstat-ed or needs lstatOne). */
export function rawStat(out: BigInt64Array, i: number): PathStat | undefined {
  const o = i * FIELDS;
  if (out[o] !== 0n) return undefined;
  const ug = BigInt.asUintN(64, out[o + 7]!);
  return {
    mode: Number(out[o + 1]),
    size: Number(out[o + 2]),
    ino: BigInt.asUintN(64, out[o + 3]!),
    dev: BigInt.asUintN(64, out[o + 4]!),
    mtimeNs: out[o + 5]!,
    ctimeNs: out[o + 6]!,
    atimeNs: out[o + 8]!,
    uid: Number(ug >> 32n),
    gid: Number(ug & 0xffffffffn),
  };
}

/** lstat each of `paths` (names.ts strings); undefined for a path that cannot be lstat-ed. Synchronous. */
export function lstatMany(paths: readonly string[]): (PathStat | undefined)[] {
  const many = nativeLstatMany();
  if (!many) return paths.map(lstatOne);
  const result: (PathStat | undefined)[] = new Array(paths.length);
  const out = new BigInt64Array(BATCH * FIELDS);
  for (let from = 0; from < paths.length; from += BATCH) {
    const batch = paths.slice(from, from + BATCH);
    const parts: Buffer[] = [];
    // An empty path lstats as nothing (ENOENT); the addon refuses empty names.
    for (const p of batch) parts.push(p === '' ? DOT : nameToBytes(p), NUL);
    many(Buffer.concat(parts), out);
    for (let i = 0; i < batch.length; i++) {
      const o = i * FIELDS;
      const err = Number(out[o]);
      if (batch[i] === '') result[from + i] = undefined;
      else if (err === EOVERFLOW) result[from + i] = lstatOne(batch[i]!);
      else if (err !== 0) result[from + i] = undefined;
      else result[from + i] = rawStat(out, i);
    }
  }
  return result;
}
