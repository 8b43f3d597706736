/**
 * Sync one verified symlink entry: the link is made under a temporary name and renamed over
 * what stands there (atomic, never following the old link); an empty directory is swapped out,
 * a non-empty one left alone and reported.
 */
import { lstat, readlink, rename, rm, symlink } from '../base/bytefs.js';
import { fromSystemError } from '../base/errors.js';
import { symlinkTarget } from '../wire/verify.js';
import { isEmptyDir, swapIn } from './conflicts.js';
import type { FetchedEntry, SyncContext } from './context.js';
import { ifPresent } from './local.js';
import type { Change } from './types.js';
import { tempPathFor } from './writer.js';

/** What stands at a link's destination. */
interface LocalLink {
  /** The target of a symlink there. */
  existing?: string;
  /** An empty directory: swapped out. */
  replaceDir?: true;
  /** A non-empty directory: left alone. */
  conflict?: true;
}

/** What stands at `dest`, or undefined when nothing does. */
async function localLink(dest: string, dryRun: boolean): Promise<LocalLink | undefined> {
  const st = await ifPresent(dest, dryRun, () => lstat(dest));
  if (!st) return undefined;
  const found = await ifPresent(dest, dryRun, async (): Promise<LocalLink> => {
    if (st.isSymbolicLink()) return { existing: await readlink(dest) };
    if (st.isDirectory()) return (await isEmptyDir(dest)) ? { replaceDir: true } : { conflict: true };
    return {};
  });
  // Gone since the lstat (another run moved it): it existed, and is replaced.
  return found ?? {};
}

export async function syncSymlink(ctx: SyncContext, entry: FetchedEntry, dest: string): Promise<void> {
  const { opts } = ctx;
  const target = symlinkTarget(entry.head, entry.obj);
  const local = await localLink(dest, !!opts.dryRun);
  if (local?.conflict) return ctx.conflict(dest, 'symlink');
  const change: Change = local?.existing === target ? 'unchanged' : local ? 'updated' : 'created';
  // A run killed between making its link and renaming it left the link under a temporary name.
  if (!opts.dryRun) await ctx.temps.removeStaleOf(dest);
  if (!opts.dryRun && change !== 'unchanged') {
    // Make the link under a temporary name and rename it over: atomic, never follows the old link.
    // A random part in the name: two runs in two PID namespaces can have the same pid.
    const tmp = tempPathFor(dest);
    try {
      await symlink(target, tmp);
      if (local?.replaceDir) await swapIn(tmp, dest);
      else await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { force: true });
      throw fromSystemError(e, dest);
    }
  }
  if (!opts.dryRun) await ctx.finishMeta(dest, entry.head.meta, true);
  opts.onItem?.({ path: dest, type: 'symlink', change });
}
