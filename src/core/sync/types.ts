/**
 * What a sync is asked to do (SyncOptions) and what it reports: each entry (SyncItem), each
 * conflict it left alone, its progress and its summary. Shared by every part of the sync side.
 */
import type { DecodeLimits } from '../wire/nettree.js';
import type { ObjectCipher } from '../wire/crypto.js';
import type { DatagramSource } from '../net/datagram.js';
import type { MetaFlags } from './fsmeta.js';
import type { FilterRule } from './filter.js';
import type { HookResult } from './hook.js';

export interface SyncFlags extends MetaFlags {
  recursive: boolean;
}

export interface SyncOptions {
  ifnames: string[];
  flags: SyncFlags;
  /** Fail with TIMEOUT when a request sees no datagram for this long. */
  timeoutSec?: number;
  dryRun?: boolean;
  inplace?: boolean;
  /** Chunk groups joined at once. */
  parallel?: number;
  limits?: DecodeLimits;
  stallMs?: number;
  /** Decrypt objects (the share's key). */
  cipher?: ObjectCipher;
  /** Refuse a root that is not signed by this raw Ed25519 public key, and objects its signed manifest contradicts (resolve.ts). */
  trust?: Uint8Array;
  /** A share name must lead to this root (other roots answering for it are refused). */
  expectRoot?: Uint8Array;
  /** How long to wait for the root's signature object (default: timeoutSec, else 10 s). */
  signatureWaitSec?: number;
  /** A check of a received object threw something other than an integrity error: a bug, reported with its stack. */
  onBug?: (error: Error) => void;
  onItem?: (item: SyncItem) => void;
  /** The source (a share name) changed during the sync; the sync starts over on its new root (`n`-th time). */
  onSourceChanged?: (n: number) => void;
  /** A path left alone because replacing it would delete a non-empty directory (reported once each). */
  onConflict?: (c: SyncConflict) => void;
  onProgress?: (p: SyncProgress) => void;
  signal?: AbortSignal;
  /** Take directories' bundles from a share that serves them (default true; false: only what the C share serves). */
  bundles?: boolean;
  /**
   * Directory of the local tree cache (localtrees.ts): trees of the destination's files, so that
   * unchanged ones are not hashed again on the next sync. Undefined: no cache.
   */
  cacheDir?: string;
  /** Hash every local file, trusting no cached tree (rsync's --checksum). */
  checksum?: boolean;
  /** Something worth saying that does not stop the sync (a cache that cannot be written). */
  onWarning?: (message: string) => void;
  /**
   * Recursive syncs: include/exclude rules with rsync's meaning (filter.ts), in command-line
   * order. An excluded entry is neither fetched beyond what names it nor written; an excluded
   * directory is not descended into.
   */
  filter?: FilterRule[];
  /** Remove destination entries the source does not have (not excluded ones), after everything else is in place. */
  delete?: boolean;
  /**
   * After a sync that changed something: run this through `sh -c` with the changed paths
   * (relative to DEST) on its standard input, one a line, or NUL-terminated with `execNul`. Its
   * exit status is reported in the summary and through onHook; it changes neither the mirror
   * nor the sync's outcome.
   */
  exec?: string;
  execNul?: boolean;
  onHook?: (result: HookResult) => void;
  /** Receive from this source instead of opening a socket (tests run a share in memory). */
  channel?: DatagramSource;
}

export type Change = 'created' | 'updated' | 'unchanged' | 'metadata';

export interface SyncItem {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** 'deleted': removed by --delete (in a dry run: would be). */
  change: Change | 'deleted';
  /** Files: chunks fetched from the network and reused from the local copy. */
  chunksFetched?: number;
  chunksReused?: number;
}

/**
 * A destination entry the sync could not bring in line without deleting data: a non-empty
 * directory where the source has a file or symlink. Everything else is finished; the run ends
 * with ExitCode.partial.
 */
export interface SyncConflict {
  path: string;
  /** What the source has there. */
  source: 'file' | 'symlink';
  /** What is there now. */
  local: 'dir';
  /** One line naming the path, for logs. */
  message: string;
}

export interface SyncProgress {
  bytesReceived: number;
  chunksFetched: number;
  chunksWanted: number;
}

export interface SyncSummary {
  source: string;
  dest: string;
  rootHash: string;
  type: 'file' | 'dir' | 'symlink';
  dryRun: boolean;
  /** UDP payload bytes received and accepted into decoders or ignored. */
  bytesReceived: number;
  datagrams: number;
  /** Chunk bytes written into outputs. */
  bytesWritten: number;
  chunksFetched: number;
  chunksReused: number;
  /** Tree parts, directory and symlink objects that came off the wire (equal ones travel once). */
  treeObjectsReceived: number;
  objectsRejected: number;
  rejoins: number;
  /** Chunks whose source symbols went by with some lost, told to the share at once (an MLD report; docs/protocol.md). */
  lackingReported: number;
  /** Groups joined (objects asked for, rejoins not counted). */
  joins: number;
  /** Entries taken from directories' bundles instead of being fetched alone, and of those, files whose bytes came too. */
  bundleEntries: number;
  bundleFiles: number;
  files: Record<Change, number>;
  /** Entries removed by --delete (a directory with all it held counts once). */
  deleted: number;
  /** The --exec hook, when it ran (it runs only after a sync that changed something). */
  hook?: HookResult;
  /** Entries left alone (see SyncConflict); non-empty means the sync was partial. */
  conflicts: SyncConflict[];
  /**
   * The local tree cache, when used (SyncOptions.cacheDir): local files whose tree it had (hits)
   * and files hashed (misses), entries saved for the next run, and whether its file was damaged.
   */
  localTrees?: { hits: number; misses: number; listed: number; saved: number; corrupt: boolean };
  /** Times the source changed during the sync and the sync moved on to the share name's new root. */
  sourceChanges: number;
  seconds: number;
  /** Bytes written per second. */
  rate: number;
}
