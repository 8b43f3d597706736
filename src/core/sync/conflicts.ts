/**
 * Type conflicts at the destination: where the source has another type of object than what
 * stands there. An empty directory, a symlink or a special file is replaced (a new object staged
 * under a sibling name, then swapped in; a link is never followed); a non-empty directory where
 * the source has a file or symlink is left as it is and reported (rsync without --delete does
 * the same).
 */
import { lstat, opendir, rename, rmdir, unlink } from '../base/bytefs.js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { displayName } from '../base/names.js';
import type { SyncConflict } from './types.js';

/** The report of a non-empty directory left where the source has a file or symlink. */
export function dirConflict(dest: string, source: 'file' | 'symlink'): SyncConflict {
  return {
    path: dest,
    source,
    local: 'dir',
    message: `conflict: ${displayName(dest)} is a non-empty directory where the source has a ${source}; left as it is`,
  };
}

/** Whether directory `p` has no entries. */
export async function isEmptyDir(p: string): Promise<boolean> {
  const d = await opendir(p);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close().catch(() => undefined);
  }
}

/** A fresh name next to `dest`: `.<name>.lcsync-<pid>-<random>.new` for a staged object, `.old` for one moved aside. */
export function siblingName(dest: string, tag: 'new' | 'old'): string {
  let base = path.basename(dest);
  // Room for the suffix under the usual 255-byte name limit.
  while (Buffer.byteLength(base) > 200) base = base.slice(0, -1);
  return path.join(path.dirname(dest), `.${base}.lcsync-${process.pid}-${randomBytes(6).toString('hex')}.${tag}`);
}

/**
 * Put the object staged at `staged` where `dest` is, when one rename cannot (a file or link
 * replacing an empty directory, a directory replacing a file or link): the old object moves aside
 * first and comes back if the new one cannot take its place, so `dest` always names either the
 * old or the new object after an error, and is missing only between two renames. The old object
 * (a file, a link or an empty directory) is removed last.
 */
export async function swapIn(staged: string, dest: string): Promise<void> {
  const aside = siblingName(dest, 'old');
  await rename(dest, aside);
  try {
    await rename(staged, dest);
  } catch (e) {
    await rename(aside, dest).catch(() => undefined);
    throw e;
  }
  const st = await lstat(aside);
  if (st.isDirectory()) await rmdir(aside);
  else await unlink(aside);
}
