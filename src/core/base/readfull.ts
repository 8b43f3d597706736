/**
 * The one read-until-full loop, in its two forms (promise and synchronous): a positional read may
 * return fewer bytes than asked (a network file system, a signal, a file cut short meanwhile),
 * so every caller that needs a whole range reads through here.
 */
import { readSync, readvSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * Read `length` bytes of `fh` at `position` into `buf` (from its start); returns how many were
 * read, fewer than `length` only at the end of the file.
 */
export async function readFull(fh: FileHandle, buf: Uint8Array, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/**
 * Fill `bufs` (each whole) from consecutive bytes of `fd` starting at `position`, with one readv where it
 * returns everything (a file in the page cache); returns how many bytes went into each, fewer only at the
 * end of the file.
 */
export function readvFullSync(fd: number, bufs: readonly Uint8Array[], position: number): number[] {
  let got = readvSync(fd, bufs, position);
  const out: number[] = [];
  let at = position;
  for (const b of bufs) {
    // What the readv left of this buffer (all of it past a short read) is read on its own.
    const have = Math.min(got, b.length);
    got -= have;
    out.push(have < b.length ? have + readFullSync(fd, b.subarray(have), b.length - have, at + have) : have);
    at += b.length;
  }
  return out;
}

/** readFull on a file descriptor, synchronously (small files on the main thread, the hashing workers). */
export function readFullSync(fd: number, buf: Uint8Array, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
