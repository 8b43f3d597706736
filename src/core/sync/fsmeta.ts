/**
 * Applying received metadata to local files: the archive flags -p -o -g -t.
 *
 * Node's fs.utimes takes times as doubles, which cannot carry nanoseconds at
 * today's epoch (about 0.2 us resolution), and the entry hashes include the
 * nanoseconds. So times are set by utimensat in the addon (native/fstimes.c),
 * one call per path. Without the addon they go through coreutils
 * `touch -d @SEC.NSEC`, which calls utimensat with full precision; files that
 * share a timestamp share one call, but files rarely do, so that costs two
 * processes per file. Paths reach it NUL-separated on the stdin of `xargs -0`, as
 * bytes: an argument list is a JS string and could not carry a name that is not UTF-8.
 */
import { spawn } from 'node:child_process';
import { loadAddon } from '../base/addon.js';
import { chmod, lchown, lstat } from '../base/bytefs.js';
import { fromSystemError } from '../base/errors.js';
import type { FileMeta } from '../model/meta.js';
import { nameToBytes } from '../base/names.js';

export interface MetaFlags {
  perms: boolean;
  owner: boolean;
  group: boolean;
  times: boolean;
}

/**
 * Owner, group and permissions now; times are collected for applyTimes, after children are written.
 * `st`: what an lstat of the path just said (saves looking again); calls that would change nothing are not made.
 */
export async function applyOwnership(localPath: string, meta: FileMeta, flags: MetaFlags, isLink: boolean, st?: { uid: number; gid: number; mode: number }): Promise<void> {
  try {
    let chowned = false;
    if (flags.owner || flags.group) {
      st ??= await lstat(localPath);
      const uid = flags.owner ? meta.uid : st.uid;
      const gid = flags.group ? meta.gid : st.gid;
      if (uid !== st.uid || gid !== st.gid) {
        await lchown(localPath, uid, gid);
        chowned = true;
      }
    }
    // chown clears set-id bits, so permissions come after it.
    if (flags.perms && !isLink && (chowned || !st || (st.mode & 0o7777) !== (meta.mode & 0o7777))) await chmod(localPath, meta.mode & 0o7777);
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

type Lutimens = (path: Uint8Array, atimeSec: bigint, atimeNsec: number, mtimeSec: bigint, mtimeNsec: number) => void;

/** utimensat from the addon, or undefined (no addon, or one built before it had the function). */
function nativeLutimens(): Lutimens | undefined {
  if (process.env.LCSYNC_NO_NATIVE_TIMES) return undefined;
  const f = (loadAddon().addon as { lutimensNs?: unknown } | undefined)?.lutimensNs;
  return typeof f === 'function' ? (f as Lutimens) : undefined;
}

/** Set access and modification times with nanosecond precision, never following symlinks. */
export async function applyTimes(items: readonly TimeStamp[]): Promise<void> {
  const lutimens = nativeLutimens();
  if (lutimens) {
    for (const { path, meta } of items) {
      try {
        lutimens(nameToBytes(path), meta.atimeSec, Number(meta.atimeNsec), meta.mtimeSec, Number(meta.mtimeNsec));
      } catch (e) {
        // As touch -c: a path removed meanwhile is no error.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw fromSystemError(e, `cannot set times of ${path}`);
      }
    }
    return;
  }
  await applyTimesByTouch(items);
}

/** The fallback without the addon: coreutils touch, one process per distinct time. */
async function applyTimesByTouch(items: readonly TimeStamp[]): Promise<void> {
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
    // xargs keeps each touch under ARG_MAX however many paths there are.
    const list = Buffer.concat(paths.flatMap((p) => [nameToBytes(p), NUL]));
    const { code, stderr } = await runWithInput('xargs', ['-0', '-r', 'touch', '-h', '-c', flag, '-d', when, '--'], list);
    if (code !== 0) {
      const err = Object.assign(new Error(stderr), { code: code === 127 || code === -2 ? 'ENOENT' : undefined });
      throw fromSystemError(err, `cannot set times (${stderr.trim().split('\n')[0] ?? ''})`);
    }
  }
}

const NUL = Buffer.of(0);

/** Run `cmd` with `input` on its stdin; resolves with its exit code (-2 when it cannot start) and stderr. */
function runWithInput(cmd: string, args: string[], input: Buffer): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.stdin.on('error', () => undefined); // EPIPE when it failed early: the exit code says why.
    child.on('error', (e) => resolve({ code: -2, stderr: e.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    child.stdin.end(input);
  });
}
