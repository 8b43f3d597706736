/**
 * Sync one verified file entry into its destination: hash the local copy, reuse the chunks it
 * already has (also moved ones), fetch the others (equal chunks once), write them into a
 * temporary file (or in place) and commit it atomically; another type of object at the
 * destination is replaced only once the new file is complete.
 */
import { lstat, open, rename, unlink } from '../base/bytefs.js';
import path from 'node:path';
import { fromSystemError } from '../base/errors.js';
import { readFull } from '../base/readfull.js';
import { hash } from '../model/hash.js';
import { MerkleTree, CHUNK_SIZE, chunkLength, leafIndex } from '../model/tree.js';
import { fromCursor, isZeroLeaf, placesOf, type ChunkPlaces } from './chunks.js';
import { isEmptyDir, siblingName, swapIn } from './conflicts.js';
import type { FetchedEntry, SyncContext } from './context.js';
import type { FileMeta } from '../model/meta.js';
import type { SyncOptions } from './types.js';
import type { BigIntStats } from 'node:fs';
import { ifPresent } from './local.js';
import { DEFERRED_SYNC_MAX, OutputFile, processUmask } from './writer.js';
import type { Hash } from '../model/hash.js';

/** What stands at a file's destination. */
interface LocalFile {
  /** Its tree when it is a regular file. */
  tree?: MerkleTree;
  /** What lstat said of it. */
  st?: BigIntStats;
  /** What the new file replaces by renaming (never written through): an empty directory, a symlink, a special file. */
  replace?: 'dir' | 'other';
  /** A non-empty directory: left alone. */
  conflict?: true;
}

/** What stands at `dest`, or undefined when nothing does. */
async function localFile(ctx: SyncContext, dest: string, dryRun: boolean): Promise<LocalFile | undefined> {
  // In a directory this run made there is nothing yet (two entries of one name are refused by walk.ts).
  if (ctx.temps.isNew(path.dirname(dest))) return undefined;
  const st = await ifPresent(dest, dryRun, () => lstat(dest, { bigint: true }));
  if (!st) return undefined;
  const found = await ifPresent(dest, dryRun, async (): Promise<LocalFile> => {
    if (st.isDirectory()) return (await isEmptyDir(dest)) ? { replace: 'dir' } : { conflict: true };
    // The size of the file it opens, not of the lstat above: another run may rename a new version over it.
    // A tree cached for this identity (by the walk of the destination, or an earlier run) is not hashed again.
    if (st.isFile()) return { tree: ctx.localTrees?.lookup(dest, st) ?? (await MerkleTree.fromFile(dest)), st };
    return { replace: 'other' }; // a symlink or special file: replaced by rename, never written through
  });
  // Gone since the lstat (another run moved it): it existed, and nothing of it is used.
  return found ?? {};
}

/** Sync a verified file entry into `dest`. */
export async function syncFile(ctx: SyncContext, entry: FetchedEntry, dest: string): Promise<void> {
  const { opts, summary, chunks } = ctx;
  const tree = entry.tree!;
  const size = entry.head.size;
  // A new file in a directory this run made, its one chunk's bytes in the directory's bundle (all
  // zeros go the general way: a file of one hole).
  if (tree.chunks === 1 && !opts.dryRun && !opts.inplace && ctx.temps.isNew(path.dirname(dest))) {
    const bytes = chunks.takeProvided(tree.leaf(0), size);
    if (bytes && ZEROS.compare(bytes, 0, bytes.length, 0, bytes.length) !== 0) return syncBundledFile(ctx, entry, dest, bytes);
  }
  // A file longer than the chunks joined at once: ask the share where it is in it now (the cursor),
  // while the local copy is looked at, so as to start there and share what is going out.
  const cursor = !opts.dryRun && tree.chunks > (opts.parallel ?? 128) ? chunks.cursor(tree.root) : undefined;
  let local = await localFile(ctx, dest, !!opts.dryRun);
  if (local?.conflict) return ctx.conflict(dest, 'file');
  const existed = local !== undefined;
  const replace = local?.replace;
  const plan = planFile(tree, size, local?.tree, !!opts.inplace);
  const { sameContent, reuse, places } = plan;
  let fetchCount = plan.fetchCount;
  if (opts.dryRun) {
    // An estimate: chunks that are zeros, or equal to chunks of files synced before, travel not at all.
    let travel = 0;
    for (const at of places.values()) if (!isZeroLeaf(tree.leaf(at[0]!), chunkLength(size, at[0]!))) travel++;
    ctx.item({ path: dest, type: 'file', change: sameContent ? 'unchanged' : existed ? 'updated' : 'created', chunksFetched: travel, chunksReused: reuse.size + fetchCount - travel });
    return;
  }
  if (sameContent && local?.tree && local.st) {
    const changedMeta = await ctx.finishMeta(dest, entry.head.meta, false);
    const st = local.st;
    ctx.localTrees?.wrote(dest, local.tree, { size, ino: st.ino, dev: st.dev, mtimeNs: finalMtime(ctx, entry.head.meta, st.mtimeNs) });
    ctx.item({ path: dest, type: 'file', change: changedMeta ? 'metadata' : 'unchanged', chunksFetched: 0, chunksReused: 0 });
    return;
  }
  // Not needed past the plan: a suspended syncFile keeps every local it has, and the local copy's
  // tree of a 4 GiB file is 8 MiB.
  // eslint-disable-next-line no-useless-assignment -- the assignment is for the garbage collector
  local = undefined;
  chunks.wanted += places.size;
  // Temporary files of an earlier run that was killed are removed; their chunks are fetched again.
  await ctx.temps.removeStaleOf(dest);
  if (!existed && !opts.inplace && size <= DEFERRED_SYNC_MAX) return syncNewSmallFile(ctx, entry, dest, places, fetchCount);
  // Another type of object stays in place until the new file is complete, written under a fresh
  // name next to it (never through a link), and is then replaced by rename.
  const target = replace ? siblingName(dest, 'new') : dest;
  const out = await OutputFile.open(target, size, { inplace: opts.inplace && !replace, deferred: ctx.deferredSync, identity: ctx.localTrees !== undefined, absent: !existed || replace !== undefined });
  let fetchedHere = 0;
  // Where this file's chunks can be read back by other files: the output wherever it is now
  // (temporary, then dest), and after a type conflict the name it was finally renamed to.
  let replaced: string | undefined;
  const home = {
    get path(): string {
      return replaced ?? out.location;
    },
  };
  try {
    if (reuse.size > 0) {
      // Moved chunks come from the old file, which stays untouched until commit (reuse is off in place).
      const old = await open(dest, 'r');
      try {
        for (const [i, j] of reuse) {
          const buf = Buffer.alloc(chunkLength(size, i));
          await readFull(old, buf, buf.length, j * CHUNK_SIZE);
          // Another run into the same destination may have renamed a new version over it since it
          // was hashed: a chunk that is not what the tree says is fetched instead.
          if (!hash(buf).equals(tree.leaf(i))) {
            reuse.delete(i);
            fetchCount++;
            const groups = places.size;
            places.add(i);
            chunks.wanted += places.size - groups;
            continue;
          }
          await out.write(i * CHUNK_SIZE, buf);
          summary.chunksReused++;
        }
      } finally {
        await old.close();
      }
    }
    // Until commit the chunks written here are read back from the temporary file; then from dest.
    const fetchOne = async (at: number[]): Promise<void> => {
      const { leaf, length, bytes, fetched } = await getChunk(ctx, tree, size, at);
      if (fetched) fetchedHere++;
      try {
        // All zeros into a fresh temporary file: leave a hole (a sparse file, as cp --sparse=auto).
        if (out.fresh && isZeroLeaf(leaf, length)) return;
        for (const i of at) {
          await out.write(i * CHUNK_SIZE, bytes);
          summary.bytesWritten += bytes.length;
        }
        chunks.stored(leaf, home, at[0]! * CHUNK_SIZE);
      } finally {
        // Written or not (a failed write), other files stop waiting for this fetch.
        chunks.stored(leaf);
        chunks.done(leaf, bytes);
        ctx.progress();
      }
    };
    for (const pass of fromCursor(places, await cursor)) await ctx.chunkLimit.each(pass, fetchOne);
    ctx.checkAbort();
    await out.commit();
  } catch (e) {
    await out.abort();
    throw e;
  }
  if (replace) {
    try {
      if (replace === 'dir') await swapIn(target, dest);
      else await rename(target, dest);
    } catch (e) {
      await unlink(target).catch(() => undefined);
      throw fromSystemError(e, dest);
    }
    replaced = dest;
  }
  await ctx.finishMeta(dest, entry.head.meta, false, !existed || replace !== undefined);
  const id = out.identity;
  if (id) ctx.localTrees?.wrote(dest, tree, { size, ino: id.ino, dev: id.dev, mtimeNs: finalMtime(ctx, entry.head.meta, id.mtimeNs) });
  ctx.item({ path: dest, type: 'file', change: existed ? 'updated' : 'created', chunksFetched: fetchedHere, chunksReused: reuse.size + fetchCount - fetchedHere });
}

/**
 * What a file's sync does: nothing (`sameContent`), copy chunks the local copy has elsewhere
 * (`reuse`: chunk number -> local chunk number; not in place) and fetch the rest, equal chunks
 * once (`places`, `fetchCount` chunks). A function of its own so that the lists of chunk numbers
 * it goes through (a number each, 2 MiB for a 4 GiB file) are garbage before the transfer starts
 * rather than held by the suspended syncFile to its end.
 */
function planFile(tree: MerkleTree, size: number, localTree: MerkleTree | undefined, inplace: boolean): { sameContent: boolean; reuse: Map<number, number>; places: ChunkPlaces; fetchCount: number } {
  const needed = tree.diff(localTree);
  const sameContent = localTree !== undefined && needed.length === 0 && localTree.size === size;
  const reuse = new Map<number, number>();
  if (localTree && !inplace) {
    const have = leafIndex(localTree);
    for (const i of needed) {
      const j = have.get(tree.leaf(i));
      if (j !== undefined && chunkLength(localTree.size, j) === chunkLength(size, i)) reuse.set(i, j);
    }
  }
  const fetch = reuse.size === 0 ? needed : needed.filter((i) => !reuse.has(i));
  // Identical chunks (zeros in a disk image, repeated blocks) travel once and are written everywhere.
  return { sameContent, reuse, places: placesOf(tree, fetch), fetchCount: fetch.length };
}

/** The mtime a synced file ends with: the source's with -t (set at the end of the run), else what it has. */
function finalMtime(ctx: SyncContext, meta: FileMeta, current: bigint): bigint {
  return ctx.opts.flags.times ? meta.mtimeSec * 1_000_000_000n + meta.mtimeNsec : current;
}

/** Zeros to compare small files' chunks with (their bytes are verified: zeros here are the zero leaf). */
const ZEROS = Buffer.alloc(CHUNK_SIZE);

/**
 * The bytes of the chunk at places `at` (its numbers in the file, one chunk's copies), got from the
 * chunk source; what was not fetched for this file (its other places, or all of them when another
 * file or a local copy supplied it) counts as reused.
 */
async function getChunk(ctx: SyncContext, tree: MerkleTree, size: number, at: number[]): Promise<{ leaf: Hash; length: number; bytes: Buffer; fetched: boolean }> {
  ctx.checkAbort();
  const length = chunkLength(size, at[0]!);
  const leaf = tree.leaf(at[0]!);
  const { bytes, fetched } = await ctx.chunks.get(leaf, length);
  ctx.summary.chunksReused += fetched ? at.length - 1 : at.length;
  return { leaf, length, bytes, fetched };
}

/**
 * A new file of one chunk whose bytes came verified in its directory's bundle, in a directory this
 * run made (so nothing stands at `dest` and no temporary copy of an earlier run is there): what
 * syncNewSmallFile does for it, without a promise or an object per step (the lookup of the local
 * copy, the stale temporaries, the chunk places, the chunk source). In a first sync of small files
 * that is nearly every file, and those steps were a good part of the receiver's garbage.
 */
async function syncBundledFile(ctx: SyncContext, entry: FetchedEntry, dest: string, bytes: Buffer): Promise<void> {
  const { opts, summary, chunks } = ctx;
  const tree = entry.tree!;
  const size = entry.head.size;
  const meta = entry.head.meta;
  const leaf = tree.leaf(0);
  chunks.wanted++;
  summary.bytesWritten += size;
  ctx.progress();
  let committed = false;
  try {
    ctx.checkAbort();
    const id = await ctx.smallFiles.write(dest, { data: bytes, holes: [], ...createdOwnerAndMode(opts.flags, meta) });
    committed = true;
    if (!id.timesSet) ctx.deferTimes(dest, meta);
    ctx.localTrees?.wrote(dest, tree, { size, ino: id.ino, dev: id.dev, mtimeNs: finalMtime(ctx, meta, id.mtimeNs) });
  } finally {
    // As syncNewSmallFile: other files wanting this chunk read it from here once it is written.
    chunks.stored(leaf, committed ? { path: dest } : undefined);
  }
  ctx.item({ path: dest, type: 'file', change: 'created', chunksFetched: 1, chunksReused: 0 });
}

/** What finishMeta would leave on a file this run creates: the source's mode with -p, else it less the umask; owner and group with -o, -g; and the times to set with -t. */
function createdOwnerAndMode(f: SyncOptions['flags'], meta: FileMeta): { mode: number; uid: number | undefined; gid: number | undefined; times: FileMeta | undefined } {
  return { mode: f.perms ? meta.mode & 0o7777 : meta.mode & 0o777 & ~processUmask(), uid: f.owner ? meta.uid : undefined, gid: f.group ? meta.gid : undefined, times: f.times ? meta : undefined };
}

/**
 * A new file of at most DEFERRED_SYNC_MAX bytes (nothing at `dest`): its chunks are gathered in
 * memory and the file is made in one go (SmallFileWriter: in a batch on a pool thread, or
 * writeNewSmallFile), with its final owner and mode, so no
 * lstat, chmod or promise per step follows. Its chunks count as in flight (chunks.ts) until the
 * file is in place, and are then read back from there by other files that want them.
 */
async function syncNewSmallFile(ctx: SyncContext, entry: FetchedEntry, dest: string, places: ChunkPlaces, chunkCount: number): Promise<void> {
  const { opts, summary, chunks } = ctx;
  const tree = entry.tree!;
  const size = entry.head.size;
  const meta = entry.head.meta;
  // A file of one chunk is written from that chunk's bytes where they are (a bundle's, a fetch's):
  // a buffer of its own and a copy per file were a tenth of the receiver's garbage in a first sync
  // of small files. They are not reused until done() below, after the write.
  const oneChunk = size <= CHUNK_SIZE;
  let data: Buffer | undefined = oneChunk ? undefined : Buffer.alloc(size);
  const holes: [number, number][] = [];
  /** Leaves this file took from the chunk source, with the offset of their first copy (-1: a hole) and the bytes got. */
  const taken: [Hash, number, Buffer][] = [];
  let fetchedHere = 0;
  let committed = false;
  try {
    await ctx.chunkLimit.each(places.values(), async (at) => {
      const { leaf, length, bytes, fetched } = await getChunk(ctx, tree, size, at);
      if (fetched) fetchedHere++;
      // All zeros: the buffer already holds them, and the file leaves them as holes.
      const zeros = ZEROS.compare(bytes, 0, bytes.length, 0, bytes.length) === 0;
      taken.push([leaf, zeros ? -1 : at[0]! * CHUNK_SIZE, bytes]);
      for (const i of at) {
        if (zeros) holes.push([i * CHUNK_SIZE, length]);
        else {
          if (data) bytes.copy(data, i * CHUNK_SIZE);
          else data = bytes;
          summary.bytesWritten += bytes.length;
        }
      }
      ctx.progress();
    });
    ctx.checkAbort();
    // One chunk of zeros (a hole) or none (an empty file): zeros of the file's length.
    data ??= Buffer.alloc(size);
    holes.sort((a, b) => a[0] - b[0]);
    const id = await ctx.smallFiles.write(dest, { data, holes, ...createdOwnerAndMode(opts.flags, meta) });
    committed = true;
    if (!id.timesSet) ctx.deferTimes(dest, meta);
    ctx.localTrees?.wrote(dest, tree, { size, ino: id.ino, dev: id.dev, mtimeNs: finalMtime(ctx, meta, id.mtimeNs) });
  } finally {
    // Written or not, other files stop waiting for these chunks; once written, they read them from here.
    const home = { path: dest };
    for (const [leaf, offset, bytes] of taken) {
      if (committed && offset >= 0) chunks.stored(leaf, home, offset);
      else chunks.stored(leaf);
      // Copied into `data` long since; only now, with the fetch no longer in flight for others
      // (stored above), may the receiver reuse its buffer (chunks.ts done()).
      chunks.done(leaf, bytes);
    }
  }
  ctx.item({ path: dest, type: 'file', change: 'created', chunksFetched: fetchedHere, chunksReused: chunkCount - fetchedHere });
}
