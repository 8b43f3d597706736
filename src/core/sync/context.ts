/**
 * What the writers of files, symlinks and directories (file.ts, symlink.ts, walk.ts) need of the
 * session that runs them (session.ts): its options and counters, its chunk source, the objects
 * it fetches and verifies, and where items, conflicts and failures are reported.
 */
import type { TurnBudget } from '../base/turns.js';
import type { Limiter } from '../base/limit.js';
import type { Hash } from '../model/hash.js';
import type { FileMeta } from '../model/meta.js';
import type { MerkleTree } from '../model/tree.js';
import type { NetTreeHead } from '../wire/nettree.js';
import type { ChunkSource } from './chunks.js';
import type { LocalTreeCache } from './localtrees.js';
import type { DeferredSync, TempListing } from './writer.js';
import type { SmallFileWriter } from './smallfiles.js';
import type { SyncItem, SyncOptions, SyncSummary } from './types.js';

/** A verified object: its header, its bytes, and for a file its verified Merkle tree. */
export interface FetchedEntry {
  head: NetTreeHead;
  /** Whole object: file header + name + all tree nodes; dir children; link target. */
  obj: Buffer;
  tree?: MerkleTree;
  /** The key it was asked for by (entry hash or alias hash), which also names its bundle. */
  key?: Hash;
}

/** The counters and conflicts one session adds to a SyncSummary. */
export type SessionSummary = Omit<SyncSummary, 'source' | 'dest' | 'rootHash' | 'type' | 'seconds' | 'rate' | 'sourceChanges' | 'localTrees' | 'hook'>;

export interface SyncContext {
  readonly opts: SyncOptions;
  readonly summary: SessionSummary;
  readonly chunks: ChunkSource;
  /** Trees of the destination's files by identity, and what this run wrote (undefined: no cache). */
  readonly localTrees?: LocalTreeCache;
  /** Small files committed without an fsync each, made durable at the end of the run. */
  readonly deferredSync: DeferredSync;
  /** Makes new small files, in batches off the JS thread where the addon can (smallfiles.ts). */
  readonly smallFiles: SmallFileWriter;
  /** The temporary files each destination directory held when this run first looked. */
  readonly temps: TempListing;
  /** Bounds the chunk groups joined at once. */
  readonly chunkLimit: Limiter;
  /** Bounds the children of directories being synced at once, session-wide (walk.ts). */
  readonly entrySlots: Limiter;
  /** Cuts long runs of work (a directory's children, a bundle's entries) into turns of the event loop (base/turns.ts). */
  readonly turns: TurnBudget;
  /** The first error that ended the session (see fail). */
  readonly failure: { error: unknown } | undefined;
  /** Fetch and verify the object `key` names (by share path `alias`), with all its tree parts. */
  fetchEntry(key: Hash, alias?: string): Promise<FetchedEntry>;
  /**
   * As fetchEntry, but once the first part names the entry, `want` decides whether the rest
   * (further tree parts) is fetched at all: undefined when not.
   */
  fetchEntryIf(key: Hash, want: (head: NetTreeHead) => boolean): Promise<FetchedEntry | undefined>;
  /** Whether include/exclude rules apply (then children are named by their directory's bundle where the share has one). */
  readonly filtering: boolean;
  /** Whether the include/exclude rules want the entry that goes to `dest` (always, without rules). */
  wants(dest: string, isDir: boolean): boolean;
  /**
   * With --delete: after everything is in place, remove what `dir` holds beyond `names` (the
   * source's children) and local entries whose hash is in `hashes` (children found equal).
   */
  planDelete(dir: string, names: ReadonlySet<string>, hashes: ReadonlySet<string>): void;
  /**
   * The children of the verified directory `dir` that its bundle carries, verified, by entry hash
   * (hex); their small files' bytes are handed to `chunks` until release() (bundle.ts). `wanted`:
   * how many of its children the local copy lacks (a bundle for one or two of them is not worth it).
   */
  bundleChildren(dir: FetchedEntry, wanted: number): Promise<{ children: Map<string, FetchedEntry>; release(): void }>;
  /** Ask now for the bundle of verified directory `dir`, which the local copy lacks entirely (bundle.ts prefetchMissingDir). */
  prefetchMissingDir(dir: FetchedEntry): void;
  /** Throw INTERRUPTED once the caller's signal has fired. */
  checkAbort(): void;
  /** Tell the caller how far the transfer is. */
  progress(): void;
  /** Report an entry synced (files are counted in the summary). */
  item(it: SyncItem): void;
  /** Report a non-empty directory left where the source has a file or symlink. */
  conflict(dest: string, source: 'file' | 'symlink'): void;
  /** Apply the archive flags to `p`; returns whether anything differed. */
  finishMeta(p: string, meta: FileMeta, isLink: boolean, created?: boolean): Promise<boolean>;
  /** Set the times of `p` (a file this run created with its final owner and mode) with the others at the end, under -t. */
  deferTimes(p: string, meta: FileMeta): void;
  /** End the session with `error`, unless an earlier one did (every pending request then fails). */
  fail(error: unknown): void;
}
