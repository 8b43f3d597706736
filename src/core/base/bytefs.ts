/**
 * The fs calls that touch share paths and received names, taking and returning names in the
 * string form of names.ts: a path with bytes that are not UTF-8 reaches the kernel as those
 * exact bytes (a Buffer path), and names read back (readdir, readlink, realpath) keep theirs.
 *
 * Same signatures as node:fs/promises for what lcsync uses, so a module switches by changing
 * its import. Any fs call on a name that came from a directory listing or from the network
 * must come from here: node:fs would turn such bytes into U+FFFD and miss the file.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { MakeDirectoryOptions, Mode, ObjectEncodingOptions, OpenMode, RmOptions, StatOptions, BigIntStats, Stats, TimeLike } from 'node:fs';
import { fsPath, nameFromBytes } from './names.js';

export type { FileHandle } from 'node:fs/promises';

export function lstat(p: string, opts: StatOptions & { bigint: true }): Promise<BigIntStats>;
export function lstat(p: string, opts?: StatOptions & { bigint?: false }): Promise<Stats>;
export function lstat(p: string, opts?: StatOptions): Promise<Stats | BigIntStats> {
  return fsp.lstat(fsPath(p), opts);
}

export function stat(p: string, opts: StatOptions & { bigint: true }): Promise<BigIntStats>;
export function stat(p: string, opts?: StatOptions & { bigint?: false }): Promise<Stats>;
export function stat(p: string, opts?: StatOptions): Promise<Stats | BigIntStats> {
  return fsp.stat(fsPath(p), opts);
}

export function open(p: string, flags?: OpenMode, mode?: Mode): Promise<fsp.FileHandle> {
  return fsp.open(fsPath(p), flags, mode);
}

/** open(2) synchronously, for a plain descriptor kept across many reads (share/chunkfiles.ts). */
export function openFdSync(p: string, flags: number): number {
  return fs.openSync(fsPath(p), flags);
}

/** stat(2) synchronously; undefined when nothing is at `p` (other failures throw). */
export function statSyncIfAny(p: string): Stats | undefined {
  return fs.statSync(fsPath(p), { throwIfNoEntry: false });
}

/** lstat(2) synchronously; undefined when nothing is at `p` (other failures throw). */
export function lstatSyncIfAny(p: string): Stats | undefined {
  return fs.lstatSync(fsPath(p), { throwIfNoEntry: false });
}

/** Names in a directory, read as bytes. */
export async function readdir(p: string): Promise<string[]> {
  const names = await fsp.readdir(fsPath(p), { encoding: 'buffer' });
  return names.map((n) => nameFromBytes(n));
}

/** Names in a directory, read as bytes, synchronously. */
export function readdirSync(p: string): string[] {
  return fs.readdirSync(fsPath(p), { encoding: 'buffer' }).map((n) => nameFromBytes(n));
}

export function readlink(p: string): Promise<string>;
export function readlink(p: string, opts: { encoding: 'buffer' }): Promise<Buffer>;
export async function readlink(p: string, opts?: { encoding: 'buffer' }): Promise<string | Buffer> {
  const target = await fsp.readlink(fsPath(p), { encoding: 'buffer' });
  return opts?.encoding === 'buffer' ? target : nameFromBytes(target);
}

export async function realpath(p: string): Promise<string> {
  return nameFromBytes(await fsp.realpath(fsPath(p), { encoding: 'buffer' }));
}

/** Make a symlink whose target is `target` byte for byte. */
export function symlink(target: string | Buffer, p: string): Promise<void> {
  return fsp.symlink(typeof target === 'string' ? fsPath(target) : target, fsPath(p));
}

export function mkdir(p: string, opts?: Mode | MakeDirectoryOptions): Promise<string | undefined> {
  return fsp.mkdir(fsPath(p), opts);
}

export function opendir(p: string): Promise<import('node:fs').Dir> {
  return fsp.opendir(fsPath(p));
}

export function rmdir(p: string): Promise<void> {
  return fsp.rmdir(fsPath(p));
}

export function rm(p: string, opts?: RmOptions): Promise<void> {
  return fsp.rm(fsPath(p), opts);
}

export function unlink(p: string): Promise<void> {
  return fsp.unlink(fsPath(p));
}

export function rename(from: string, to: string): Promise<void> {
  return fsp.rename(fsPath(from), fsPath(to));
}

export function copyFile(from: string, to: string, mode?: number): Promise<void> {
  return fsp.copyFile(fsPath(from), fsPath(to), mode);
}

export function chmod(p: string, mode: Mode): Promise<void> {
  return fsp.chmod(fsPath(p), mode);
}

export function lchown(p: string, uid: number, gid: number): Promise<void> {
  return fsp.lchown(fsPath(p), uid, gid);
}

export function lutimes(p: string, atime: TimeLike, mtime: TimeLike): Promise<void> {
  return fsp.lutimes(fsPath(p), atime, mtime);
}

export function writeFile(p: string, data: string | Uint8Array, opts?: ObjectEncodingOptions & { mode?: Mode; flag?: OpenMode }): Promise<void> {
  return fsp.writeFile(fsPath(p), data, opts);
}

export function readFile(p: string): Promise<Buffer> {
  return fsp.readFile(fsPath(p));
}
