/**
 * What stands at a destination path, looked at without following links: the one place that
 * tells "nothing there" (sync creates it) from a failure to look (an error naming the path);
 * and what a local directory already has, by entry hash.
 */
import { lstat } from '../base/bytefs.js';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { toHex } from '../model/hash.js';
import { ShareIndex, type TreeCache } from '../index/mdex.js';
import { isTempName } from './writer.js';

/** Nothing at a path: ENOENT, or in a dry run ENOTDIR (a parent that would have become a directory is still a file). */
export function isAbsent(e: unknown, dryRun: boolean): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || (dryRun && code === 'ENOTDIR');
}

/**
 * What `look` finds at `p` (an lstat, and whatever it reads of what stands there), or undefined
 * when nothing is there (isAbsent). An LcsyncError goes up as it is; any other failure becomes
 * one naming `p`.
 */
export async function ifPresent<T>(p: string, dryRun: boolean, look: () => Promise<T>): Promise<T | undefined> {
  try {
    return await look();
  } catch (e) {
    if (e instanceof LcsyncError) throw e;
    if (isAbsent(e, dryRun)) return undefined;
    throw fromSystemError(e, p);
  }
}

/** The directory that will hold `target` must exist and be a directory. */
export async function checkParent(target: string): Promise<void> {
  const parent = path.dirname(path.resolve(target));
  try {
    const st = await lstat(parent);
    if (!st.isDirectory()) throw new LcsyncError('IO', `${parent}: not a directory`);
  } catch (e) {
    if (e instanceof LcsyncError) throw e;
    throw fromSystemError(e, `destination directory ${parent}`);
  }
}

/** What a local directory holds, by entry hash, and the entry hash of each of its paths (resolved). */
export interface LocalEntries {
  hashes: Set<string>;
  byPath: Map<string, string>;
}

/**
 * Entry hashes of what the directory `target` already holds, indexed as the share path
 * `sharePath` (so they compare with the source's), for skipping children that are equal; empty
 * when `target` is not a directory. Files whose identity `treeCache` knows are not hashed again.
 */
export async function localEntryHashes(target: string, sharePath: string, treeCache?: TreeCache): Promise<Set<string>> {
  return (await localEntries(target, sharePath, treeCache)).hashes;
}

/** As localEntryHashes, with each local path's entry hash too (--delete keeps the paths whose hash the source lists). */
export async function localEntries(target: string, sharePath: string, treeCache?: TreeCache): Promise<LocalEntries> {
  const none = { hashes: new Set<string>(), byPath: new Map<string, string>() };
  const st = await lstat(target).catch(() => undefined);
  if (!st?.isDirectory()) return none;
  const local = new ShareIndex();
  try {
    // Temporary copies (ours of a killed run, or another live run's) are not part of the tree.
    await local.add(target, { sharePath, skipName: isTempName, treeCache, entriesOnly: true });
    const hashes = new Set<string>();
    const byPath = new Map<string, string>();
    for (const r of local.records) {
      const h = toHex(r.hash);
      hashes.add(h);
      // Already absolute and normal (the walk joins names to the destination's real path).
      byPath.set(r.localPath, h);
    }
    return { hashes, byPath };
  } catch (e) {
    // Only a shortcut: a file that changed while hashing (another run writing here) means
    // every entry is compared one by one instead. Real errors come back where they matter.
    if (!(e instanceof LcsyncError) || e.code === 'PERMISSION') throw e;
    return none;
  }
}
