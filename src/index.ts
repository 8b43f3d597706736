/**
 * lcsync as a library. The functions succeed the C API of Librecast:
 *   lc_share / lc_unshare  -> share() / unshare()
 *   lc_syncfile            -> syncFile()
 *   lc_sync                -> syncBuffer()
 * index() builds what `lcsync index` prints, and follow() keeps a mirror current (`sync --follow`).
 */
import { ShareIndex, type IndexOptions } from './core/index/mdex.js';
import { Share, type ShareOptions } from './core/share/share.js';
import { syncBuffer, syncRemote, type SyncOptions, type SyncSummary } from './core/sync/sync.js';
import { followRemote, type FollowOptions, type FollowResult } from './core/sync/live.js';

export { ShareIndex, Share, syncBuffer };
export type { IndexOptions, ShareOptions, SyncOptions, SyncSummary, FollowOptions, FollowResult };
export { LcsyncError, ExitCode } from './core/base/errors.js';
export { MerkleTree, CHUNK_SIZE } from './core/model/tree.js';
export { hash, toHex, parseHex } from './core/model/hash.js';
export { groupAddress } from './core/wire/address.js';

/** Index files and directories (what `lcsync index` and `lcsync share` do first). */
export function index(paths: string[], opts?: IndexOptions): Promise<ShareIndex> {
  return ShareIndex.build(paths, opts);
}

/** Serve `paths` (or a prepared index) until unshare() (the C lc_share). */
export async function share(what: string[] | ShareIndex, opts: ShareOptions): Promise<Share> {
  const idx = what instanceof ShareIndex ? what : await ShareIndex.build(what);
  return Share.start(idx, opts);
}

/** Stop serving (the C lc_unshare); resolves with the share's final statistics. */
export async function unshare(s: Share): Promise<ReturnType<Share['status']>> {
  const st = s.status();
  await s.stop();
  return st;
}

/** Sync a file or directory by hash or share name into `dest` (the C lc_syncfile). */
export function syncFile(source: string, dest: string, opts: SyncOptions): Promise<SyncSummary> {
  return syncRemote(source, dest, opts);
}

/**
 * Sync share name `source` into `dest`, then each new root the share announces, until `opts.signal`
 * aborts (`lcsync sync --follow`). A Share announces a new root when given a new index (setIndex).
 */
export function follow(source: string, dest: string, opts: SyncOptions, hooks?: FollowOptions): Promise<FollowResult> {
  return followRemote(source, dest, opts, hooks);
}
