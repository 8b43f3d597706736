/**
 * Applying received metadata to local files: the archive flags -p -o -g -t.
 *
 * Node's fs.utimes takes times as doubles, which cannot carry nanoseconds at
 * today's epoch (about 0.2 us resolution), and the entry hashes include the
 * nanoseconds. So times go through coreutils `touch -d @SEC.NSEC`, which calls
 * utimensat with full precision; files that share a timestamp share one call.
 */
import { execFile } from 'node:child_process';
import { chmod, lchown, lstat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { fromSystemError } from './errors.js';
import type { FileMeta } from './meta.js';

const run = promisify(execFile);

export interface MetaFlags {
  perms: boolean;
  owner: boolean;
  group: boolean;
  times: boolean;
}

/** Owner, group and permissions now; times are collected for applyTimes, after children are written. */
export async function applyOwnership(localPath: string, meta: FileMeta, flags: MetaFlags, isLink: boolean): Promise<void> {
  try {
    if (flags.owner || flags.group) {
      const st = await lstat(localPath);
      const uid = flags.owner ? meta.uid : st.uid;
      const gid = flags.group ? meta.gid : st.gid;
      if (uid !== st.uid || gid !== st.gid) await lchown(localPath, uid, gid);
    }
    // chown clears set-id bits, so permissions come after it.
    if (flags.perms && !isLink) await chmod(localPath, meta.mode & 0o7777);
  } catch (e) {
    throw fromSystemError(e, `cannot set owner or mode of ${localPath}`);
  }
}

export interface TimeStamp {
  path: string;
  meta: FileMeta;
}

function stamp(sec: bigint, nsec: bigint): string {
  return `@${sec}.${nsec.toString().padStart(9, '0')}`;
}

/** Set access and modification times with nanosecond precision, never following symlinks. */
export async function applyTimes(items: readonly TimeStamp[]): Promise<void> {
  const byStamp = new Map<string, string[]>();
  const add = (key: string, p: string) => {
    const list = byStamp.get(key);
    if (list) list.push(p);
    else byStamp.set(key, [p]);
  };
  for (const { path, meta } of items) {
    add(`-a ${stamp(meta.atimeSec, meta.atimeNsec)}`, path);
    add(`-m ${stamp(meta.mtimeSec, meta.mtimeNsec)}`, path);
  }
  for (const [key, paths] of byStamp) {
    const [flag, when] = key.split(' ') as [string, string];
    // Bounded argument lists so that huge trees stay under ARG_MAX.
    for (let i = 0; i < paths.length; i += 500) {
      try {
        await run('touch', ['-h', '-c', flag, '-d', when, '--', ...paths.slice(i, i + 500)]);
      } catch (e) {
        const err = e as { stderr?: string };
        throw fromSystemError(e, `cannot set times (${(err.stderr ?? '').trim().split('\n')[0] ?? ''})`);
      }
    }
  }
}
