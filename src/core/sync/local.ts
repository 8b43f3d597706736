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
import { LocalTreeCache } from './localtrees.js';

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

/** The entry hashes (hex) a local copy holds: what a directory's children are looked up in. */
export interface LocalHashes {
  /**
   * Whether the local copy holds entry `hex`: as a child of `dir` when it is given (the directory
   * that would hold it), else anywhere.
   */
  has(hex: string, dir?: string): boolean;
}

/** What a local directory holds, by entry hash, and the entry hash of each of its paths (resolved). */
export interface LocalEntries {
  hashes: LocalHashes;
  byPath: { get(p: string): string | undefined };
}

/**
 * Entry hashes of what the directory `target` already holds, indexed as the share path
 * `sharePath` (so they compare with the source's), for skipping children that are equal; empty
 * when `target` is not a directory. Files whose identity `treeCache` knows are not hashed again.
 */
export async function localEntryHashes(target: string, sharePath: string, treeCache?: TreeCache | LocalTreeCache): Promise<Set<string>> {
  const local = await localEntries(target, sharePath, treeCache);
  return local instanceof Entries ? local.all().hashes : new Set();
}

/**
 * As localEntryHashes, with each local path's entry hash too (--delete keeps the paths whose hash
 * the source lists). With the local tree cache, directories it shows unchanged are not walked
 * file by file (../index/mdex.ts DirListings), and their files' hashes are only looked at when a
 * lookup misses the rest: a re-sync that finds a directory equal to the source's never does.
 */
export async function localEntries(target: string, sharePath: string, treeCache?: TreeCache | LocalTreeCache): Promise<LocalEntries> {
  const none = { hashes: new Set<string>(), byPath: new Map<string, string>() };
  const st = await lstat(target).catch(() => undefined);
  if (!st?.isDirectory()) return none;
  const local = new ShareIndex();
  const cache = treeCache instanceof LocalTreeCache ? treeCache : undefined;
  try {
    // Temporary copies (ours of a killed run, or another live run's) are not part of the tree.
    // Listings hold entry hashes as the top of a share has them (a path inside a share puts more of
    // its path into each: then every directory is walked).
    const listings = sharePath.includes('/') ? undefined : cache?.listings;
    await local.add(target, { sharePath, skipName: isTempName, treeCache, entriesOnly: true, listings });
    const hashes = new Set<string>();
    const byPath = new Map<string, string>();
    for (const r of local.records) {
      const h = toHex(r.hash);
      hashes.add(h);
      // Already absolute and normal (the walk joins names to the destination's real path).
      byPath.set(r.localPath, h);
    }
    const top = local.records.find((r) => r.sharePath === sharePath);
    return new Entries(hashes, byPath, cache, [top?.localPath ?? path.resolve(target), path.resolve(target)]);
  } catch (e) {
    // Only a shortcut: a file that changed while hashing (another run writing here) means
    // every entry is compared one by one instead. Real errors come back where they matter.
    if (!(e instanceof LcsyncError) || e.code === 'PERMISSION') throw e;
    return none;
  }
}

/**
 * The walk's records, and the files of directories it found unchanged, added when a lookup first
 * misses the rest: only that directory's when the lookup names it, else all of them.
 *
 * A lookup that names the directory finds only that directory's own children. A file's or a
 * symlink's entry hash covers its path, but a directory's covers only its basename, its stat
 * fields and its children: two empty directories `a/logs` and `b/logs` with the same mode, owner
 * and mtime (as a tar archive makes them) have the same hash, and `b/logs` missing must not be
 * taken for present because `a/logs` is.
 */
class Entries implements LocalEntries {
  private readonly done = new Set<string>();
  /** Entry hashes by the directory holding them, keyed by its path below the destination ('' for the destination). */
  private readonly byDir = new Map<string, Set<string>>();

  constructor(
    private readonly set: Set<string>,
    private readonly map: Map<string, string>,
    private readonly cache: LocalTreeCache | undefined,
    /** The destination as the walk resolved it (its real path) and as given (resolved): where `dir` arguments start. */
    private readonly bases: readonly string[],
  ) {
    for (const [p, hex] of map) this.addToDir(path.dirname(p), hex);
  }

  private lastDir: [string, string | undefined] = ['', undefined];

  /** `dir` (absolute or relative to the working directory) below the destination, or undefined if outside it. */
  private dirKey(dir: string): string | undefined {
    // A directory's children are looked up one after another with the same `dir`.
    if (this.lastDir[0] === dir && dir !== '') return this.lastDir[1];
    const k = this.resolveKey(dir);
    this.lastDir = [dir, k];
    return k;
  }

  private resolveKey(dir: string): string | undefined {
    const abs = path.resolve(dir);
    for (const base of this.bases) {
      if (abs === base) return '';
      if (abs.startsWith(base + path.sep)) return abs.slice(base.length + 1);
    }
    return undefined;
  }

  private addToDir(dir: string, hex: string): void {
    const k = this.dirKey(dir);
    if (k === undefined) return;
    let s = this.byDir.get(k);
    if (!s) this.byDir.set(k, (s = new Set()));
    s.add(hex);
  }

  private add([dir, files]: [string, Iterable<[string, string]>]): void {
    if (this.done.has(dir)) return;
    this.done.add(dir);
    for (const [name, hex] of files) {
      this.set.add(hex);
      this.map.set(path.join(dir, name), hex);
      this.addToDir(dir, hex);
    }
  }

  /** With every unchanged directory's files added. */
  all(): { hashes: Set<string>; byPath: Map<string, string> } {
    for (const d of this.cache?.unchangedFiles() ?? []) this.add(d);
    return { hashes: this.set, byPath: this.map };
  }

  /** With the files of `dir` added, if the walk found it unchanged. */
  private addDir(dir: string): void {
    const d = this.cache?.unchangedFilesIn(dir);
    if (d) this.add(d);
  }

  readonly hashes: LocalHashes = {
    has: (hex, dir) => {
      if (dir === undefined) return this.set.has(hex) || (this.cache !== undefined && this.all().hashes.has(hex));
      if (this.cache) this.addDir(dir);
      const k = this.dirKey(dir);
      return k !== undefined && (this.byDir.get(k)?.has(hex) ?? false);
    },
  };

  readonly byPath = {
    get: (p: string): string | undefined => {
      const h = this.map.get(p);
      if (h !== undefined || !this.cache) return h;
      this.addDir(path.dirname(p));
      return this.map.get(p);
    },
  };
}
