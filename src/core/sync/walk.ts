/**
 * Walking a verified tree into the destination: each entry goes to the writer of its type, and
 * a directory (made, or swapped in for what stands there) recurses into the children whose entry
 * hashes the local copy does not have yet.
 */
import { lstat, lstatSyncIfAny, mkdir, rmdir } from '../base/bytefs.js';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { displayName } from '../base/names.js';
import { toHex } from '../model/hash.js';
import { dirChildren, type NetTreeHead } from '../wire/nettree.js';
import { childName } from '../wire/verify.js';
import { siblingName, swapIn } from './conflicts.js';
import type { FetchedEntry, SyncContext } from './context.js';
import { syncFile } from './file.js';
import { ifPresent, type LocalHashes } from './local.js';
import { syncSymlink } from './symlink.js';

/** Sync a verified entry of any type into `dest`; `localHashes` are the entry hashes the local copy has. */
export async function syncEntry(ctx: SyncContext, entry: FetchedEntry, dest: string, localHashes: LocalHashes): Promise<void> {
  ctx.checkAbort();
  if (entry.head.type === 'file') return syncFile(ctx, entry, dest);
  if (entry.head.type === 'symlink') return syncSymlink(ctx, entry, dest);
  return syncDir(ctx, entry, dest, localHashes);
}

/**
 * Sync a directory entry into `dest` (which becomes that directory). With
 * `recursive`, children whose entry hashes the local copy already has are skipped.
 */
export async function syncDir(ctx: SyncContext, entry: FetchedEntry, dest: string, localHashes: LocalHashes): Promise<void> {
  const { opts } = ctx;
  const st = await ifPresent(dest, !!opts.dryRun, () => lstat(dest));
  const exists = !!st?.isDirectory();
  /** A file, symlink or special file stands where the source has a directory: replaced (a link is never followed). */
  const replace = st !== undefined && !exists;
  if (!exists && !opts.dryRun) {
    if (replace) {
      const staged = siblingName(dest, 'new');
      try {
        await mkdir(staged, { mode: 0o755 });
        await swapIn(staged, dest);
      } catch (e) {
        await rmdir(staged).catch(() => undefined);
        throw fromSystemError(e, `cannot replace ${dest} with a directory`);
      }
    } else {
      try {
        await mkdir(dest, { mode: 0o755 });
        ctx.temps.made(dest);
      } catch (e) {
        // Another run into the same destination made it first: fine if it is a directory.
        const now = (e as NodeJS.ErrnoException).code === 'EEXIST' ? await lstat(dest).catch(() => undefined) : undefined;
        if (!now?.isDirectory()) throw fromSystemError(e, `cannot create directory ${dest}`);
      }
    }
  }
  opts.onItem?.({ path: dest, type: 'dir', change: exists ? 'unchanged' : replace ? 'updated' : 'created' });
  if (opts.flags.recursive) {
    const listed = dirChildren(entry.obj.subarray(entry.head.payloadOffset));
    const children = listed.filter((h) => !localHashes.has(toHex(h), dest));
    // Children the directory's bundle carries (verified against this directory) are not fetched alone.
    // With include/exclude rules the bundle is taken whatever the number missing: it names the
    // children without joining their groups, so an excluded one is never asked for.
    // Asked even with nothing missing: a bundle asked for early (prefetchMissingDir) is then let go.
    const bundle = await ctx.bundleChildren(entry, children.length > 0 && ctx.filtering ? Number.MAX_SAFE_INTEGER : children.length);
    // Two children under one name would race each other for it (a symlink and a directory
    // made one after the other): the second is refused.
    const taken = new Set<string>();
    const subdirs: Promise<void>[] = [];
    // Let go of even when something here throws: directories waiting for room (bundle.ts HOLD_BYTES) wait for it.
    try {
      // Every child started settles before an error goes up: the first failure stops the session
      // (every pending request fails at once), and each file being written removes its temporary
      // copy before the process can exit. Conflicts are not failures: the other children go on.
      // Children are started as the session's entry slots allow (a task each, its entry, its bytes:
      // all children of the tree at once held about 3 KiB a file); a directory child gives its slot
      // back once fetched, before its own children take theirs, and is awaited after its siblings.
      // Subdirectories the bundle names go first and take no slot (their own children take theirs):
      // waiting behind files of other directories, their bundles were asked for late, came after
      // the wait for them, and their files then travelled one by one (2.9x the tree on the wire).
      const bundledDir = (h: Buffer) => bundle.children.get(toHex(h))?.head.type === 'dir';
      const ordered = [...children.filter(bundledDir), ...children.filter((h) => !bundledDir(h))];
      // Subdirectories missing here want their own bundles: asked for now, in this directory's order
      // (the same on every receiver; see bundle.ts prefetchMissingDir), not as their syncs get there.
      for (const h of ordered) {
        const sub = bundledDir(h) ? bundle.children.get(toHex(h))! : undefined;
        if (!sub) break;
        const subDest = path.join(dest, childName(entry.head, sub.head));
        if (ctx.wants(subDest, true) && (!exists || nothingAt(subDest))) ctx.prefetchMissingDir(sub);
      }
      const running = new Set<Promise<void>>();
      for (const h of ordered) {
        // Each child starts with some synchronous work (a bundled small file: its write queued):
        // a hundred at once held the event loop for 100-300 ms (base/turns.ts).
        const turn = ctx.turns.pause();
        if (turn) await turn;
        const release = bundledDir(h) ? () => {} : await ctx.entrySlots.hold();
        if (ctx.failure) {
          release();
          break;
        }
        const task = (async () => {
          try {
            // An entry the rules exclude is known by its first part (or its bundle entry) alone:
            // neither its further tree parts nor its chunks are asked for.
            const wanted = (head: NetTreeHead) => ctx.wants(path.join(dest, childName(entry.head, head)), head.type === 'dir');
            const bundled = bundle.children.get(toHex(h));
            const child = bundled ? (wanted(bundled.head) ? bundled : undefined) : await ctx.fetchEntryIf(h, wanted);
            const head = bundled?.head ?? child?.head;
            const rel = head ? childName(entry.head, head) : undefined;
            if (rel !== undefined && taken.has(rel)) {
              throw new LcsyncError('INTEGRITY', `refusing directory "${displayName(entry.head.name)}": it lists "${displayName(rel)}" twice`);
            }
            if (rel !== undefined) taken.add(rel);
            if (!child || rel === undefined) return;
            if (child.head.type === 'dir') {
              release();
              subdirs.push(syncEntry(ctx, child, path.join(dest, rel), localHashes).catch((e: unknown) => ctx.fail(e)));
            } else await syncEntry(ctx, child, path.join(dest, rel), localHashes);
          } catch (e) {
            ctx.fail(e);
          } finally {
            release();
          }
        })();
        running.add(task);
        void task.finally(() => running.delete(task));
      }
      await Promise.all(running);
    } finally {
      bundle.release();
    }
    await Promise.all(subdirs);
    if (ctx.failure) throw ctx.failure.error;
    ctx.planDelete(dest, taken, new Set(listed.map(toHex)));
  }
  if (!opts.dryRun) await ctx.finishMeta(dest, entry.head.meta, false);
}

/** Whether nothing at all is at `p` (a failure to look counts as something: no bundle is asked for early). */
function nothingAt(p: string): boolean {
  try {
    return lstatSyncIfAny(p) === undefined;
  } catch {
    return false;
  }
}
