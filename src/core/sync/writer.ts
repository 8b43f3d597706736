/**
 * The output writer (docs/protocol.md#the-receiver, step 5): a file is never left half-written.
 *
 * Atomic mode (the default) writes into a temporary copy next to the destination, named
 * `.<basename>.lcsync-<pid>-<random>.tmp`, seeded with the destination's current content (a
 * reflink where the file system can), and renames it over the destination once complete and
 * synced. In-place mode writes the destination itself.
 *
 * Two runs may write one destination at once (two `lcsync sync` into one directory): each
 * writes its own temporary copy and renames it over the destination, so the destination is
 * always one complete version. A run touches its temporary copy at least every
 * HEARTBEAT_MS, and cleanup (removeStaleTemps) removes only copies that no live run can
 * own: see isStaleTemp.
 *
 * Positional writes, not mmap: npm mmap bindings were found to take 32-bit offsets and to die with
 * SIGBUS when a mapped file shrinks. Positions are JS numbers, exact up to 2^53, so files above 4 GiB work.
 *
 * A new file starts as a temporary file truncated to its size, all holes: a caller that skips
 * writing all-zero chunks into it (`fresh`) leaves them as holes, like `cp --sparse=auto`.
 */
import { closeSync, constants as fsc, fchmodSync, fchownSync, fstatSync, ftruncateSync, openSync, readFileSync, readlinkSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { chmod, copyFile, lstat, open, readdir, rename, stat, unlink, type FileHandle } from '../base/bytefs.js';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { loadAddon } from '../base/addon.js';
import { fsPath, nameFromBytes, nameToBytes } from '../base/names.js';
import type { FileMeta } from '../model/meta.js';

export interface OutputOptions {
  /** Write the destination directly (no temporary copy); an interrupted run leaves it partly new. */
  inplace?: boolean;
  /**
   * A file of at most DEFERRED_SYNC_MAX bytes is renamed without an fsync of its own; `deferred`
   * makes it durable with the others at the end of the run (see DeferredSync).
   */
  deferred?: DeferredSync;
  /** Record the committed file's inode, device and mtime in `identity` (for the local tree cache). */
  identity?: boolean;
  /** The caller has just found nothing at dest: a new file, no need to look again. */
  absent?: boolean;
  /**
   * A synchronous write slower than this (ms) makes the rest promise writes (default SLOW_WRITE_MS);
   * negative: promise writes from the start.
   */
  slowWriteMs?: number;
}

/**
 * A synchronous write that took longer than this (ms) was not a copy into the page cache: the
 * storage is throttling or slow, and the output's later writes go through the thread pool.
 */
export const SLOW_WRITE_MS = 20;

/**
 * A file synced on its own (larger than DEFERRED_SYNC_MAX) is handed to the disk every this many
 * bytes written, by an fdatasync on a pool thread that the writes do not wait for, so that the fsync
 * at commit finds little left to write: it was 70-170 ms of a 64 MiB receiver's end, every dirty page
 * written after the last chunk came (bench/README.md, ninth session).
 */
export const EARLY_FLUSH_BYTES = 8 * 2 ** 20;

/** Files up to this size are made durable at the end of a run, not one by one (see DeferredSync). */
export const DEFERRED_SYNC_MAX = 64 * 1024;

const TEMP_MODE = 0o600;
/** The process's umask, read once: process.umask() sets it twice to read it, which costs as much as a file's other calls. */
let umaskValue: number | undefined;
export function processUmask(): number {
  umaskValue ??= process.umask();
  return umaskValue;
}
/** Room left for `.` + `.lcsync-<pid>-<hex>.tmp` under the usual 255-byte name limit. */
const MAX_BASE_BYTES = 200;
/** A run's temporary copy is touched (mtime) at least this often while it is open, even when no chunk arrives. */
export const HEARTBEAT_MS = 30_000;
/**
 * A temp made in another PID namespace or on another machine (a container or an NFS client
 * sharing the directory) is kept until untouched this long: its pid means nothing here. Four
 * missed heartbeats.
 */
export const STALE_AFTER_MS = 4 * HEARTBEAT_MS;
/** A temp untouched this long is stale even if its pid is alive (the pid was reused). */
export const ABANDONED_AFTER_MS = 3600_000;
const TEMP_RE = /^\.(.*)\.lcsync-(\d+)-([0-9a-f]+)\.tmp$/;

/** The basename as it appears in temp names: its first MAX_BASE_BYTES bytes (names are bytes; a cut character is fine). */
function tempBase(base: string): string {
  const b = nameToBytes(base);
  return b.length <= MAX_BASE_BYTES ? base : nameFromBytes(b.subarray(0, MAX_BASE_BYTES));
}

/** Whether a directory entry is one of our temporary copies (of any run). */
export function isTempName(name: string): boolean {
  return TEMP_RE.test(name);
}

/** A fresh temporary name next to `dest` (`.<basename>.lcsync-<pid>-<random>.tmp`), for a file or a symlink. */
export function tempPathFor(dest: string): string {
  const name = `.${tempBase(path.basename(dest))}.lcsync-${process.pid}-${pidScope()}${tempRandom()}.tmp`;
  return path.join(path.dirname(dest), name);
}

/** Random bytes for temp names, drawn 256 names at a time: a randomBytes call per file cost more than the file's writes. */
let randomPool = Buffer.alloc(0);
let randomAt = 0;
function tempRandom(): string {
  if (randomAt + 6 > randomPool.length) {
    randomPool = randomBytes(6 * 256);
    randomAt = 0;
  }
  randomAt += 6;
  return randomPool.toString('hex', randomAt - 6, randomAt);
}

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(offset + length)) {
    throw new LcsyncError('INTERNAL', `output: invalid position ${offset} (+${length})`);
  }
}

async function unlinkQuietly(p: string): Promise<void> {
  try {
    await unlink(p);
  } catch {
    // Already gone; nothing else can be done about a temp we cannot remove.
  }
}

/** fsync a directory so a rename or create in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories; the rename itself has happened.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP') throw err;
  } finally {
    await fh.close();
  }
}

/**
 * Durability for many small files at once. An fsync per file before its rename, and one of its
 * directory after, cost more than writing a small file; instead small files are renamed into
 * place as soon as they are complete (so they are never partial: an interrupted run leaves each
 * one old or new), and at the end of the run one syncfs per file system (syncFs below)
 * writes their data and directory entries to disk. Without either way to syncfs, or for a few files, every
 * file and then every directory is fsynced instead. What a power cut during the run can leave: README "Crash safety".
 */
/** Up to this many files, DeferredSync.flush fsyncs each file and directory instead of a syncfs per file system. */
const FSYNC_EACH_MAX = 16;

export class DeferredSync {
  private readonly dirs = new Set<string>();
  private readonly files: string[] = [];

  add(file: string): void {
    this.files.push(file);
    this.dirs.add(path.dirname(file));
  }

  get pending(): number {
    return this.files.length;
  }

  /** Make every file added so far durable, with the directory entries that name them. */
  async flush(): Promise<void> {
    if (this.files.length === 0) return;
    const files = this.files.splice(0);
    const dirs = [...this.dirs];
    this.dirs.clear();
    // A few files: their fsyncs cost less than a syncfs, which also writes whatever else is
    // dirty on the file system (and starts a process).
    let synced = files.length > FSYNC_EACH_MAX;
    if (synced) {
      const oneDirPerFs = new Map<bigint, string>();
      for (const d of dirs) {
        const st = await stat(d, { bigint: true }).catch(() => undefined);
        if (st && !oneDirPerFs.has(st.dev)) oneDirPerFs.set(st.dev, d);
      }
      for (const d of oneDirPerFs.values()) if (!(await syncFs(d))) synced = false;
    }
    if (synced) return;
    for (const f of files) {
      const fh = await open(f, 'r').catch(() => undefined); // replaced or removed since: not ours to sync
      if (!fh) continue;
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    for (const d of dirs) await syncDir(d).catch((err) => Promise.reject(fromSystemError(err, d)));
  }
}

/**
 * syncfs(2) on the file system holding `dir`: by the addon on a pool thread (native/syncfs.c), else by
 * coreutils `sync -f` (a process start, a fork of the whole receiver: 10-20 ms of its CPU). False when
 * neither can run or the call fails; the caller then fsyncs file by file.
 */
export function syncFs(dir: string): Promise<boolean> {
  const native = process.env.LCSYNC_NO_NATIVE_SYNCFS ? undefined : loadAddon().addon?.syncFs;
  return new Promise((resolve) => {
    if (typeof native === 'function') {
      native(nameToBytes(dir), (errno) => resolve(errno === 0));
      return;
    }
    const child = spawn('sync', ['-f', '--', dir], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}

/** What a new small file is to become (writeNewSmallFile). */
export interface SmallFileSpec {
  /** The complete content; ranges in `holes` are zeros that are not written (they stay holes). */
  data: Uint8Array;
  holes?: readonly [offset: number, length: number][];
  /** Permission bits of the finished file (the umask is not applied: the caller has). */
  mode: number;
  /** Owner and group to give it when they differ from what it is created with (-o, -g); undefined keeps either. */
  uid?: number;
  gid?: number;
  /**
   * Access and modification times to give it (-t), where the writer can with the file (SmallFileWriter
   * with the addon: see CommittedIdentity.timesSet); otherwise the caller sets them.
   */
  times?: Pick<FileMeta, 'atimeSec' | 'atimeNsec' | 'mtimeSec' | 'mtimeNsec'>;
}

/** What a file is once committed at its destination (for the local tree cache). */
export interface CommittedIdentity {
  ino: bigint;
  dev: bigint;
  mtimeNs: bigint;
  /** The spec's times were set with the file (mtimeNs is then the one given); else they are the caller's to set. */
  timesSet?: boolean;
}

/**
 * A new file of at most DEFERRED_SYNC_MAX bytes whose bytes are all in memory, made in one go:
 * a temporary copy created 0600 with O_EXCL next to `dest`, written, given its owner and mode,
 * renamed over `dest`, and added to `deferred` to be made durable at the end of the run (so,
 * like OutputFile.commit with `deferred`, never a partial file at `dest`). Synchronous calls: for
 * such a file the half-dozen system calls take microseconds each, and as promises each was a
 * thread-pool round trip and a few objects, which made writing cost more than receiving. Returns
 * the identity of the file now at `dest`. On failure the temporary copy is removed and the
 * error names `dest` (or the owner/mode step, as applyOwnership would).
 */
export function writeNewSmallFile(dest: string, spec: SmallFileSpec, deferred: DeferredSync): CommittedIdentity {
  if (spec.data.length > DEFERRED_SYNC_MAX) throw new LcsyncError('INTERNAL', `output: ${spec.data.length} bytes is not a small file`);
  const tmp = tempPathFor(dest);
  const tmpPath = fsPath(tmp);
  let fd: number;
  try {
    fd = openSync(tmpPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, TEMP_MODE);
  } catch (err) {
    throw fromSystemError(err, dest);
  }
  let closed = false;
  try {
    const { data } = spec;
    let at = 0;
    const put = (end: number) => {
      while (at < end) {
        const n = writeSync(fd, data, at, end - at, at);
        if (n <= 0) throw new LcsyncError('IO', `${dest}: write made no progress`);
        at += n;
      }
    };
    for (const [offset, length] of spec.holes ?? []) {
      put(offset);
      at = offset + length;
    }
    put(data.length);
    // Holes at the end: the size comes from truncation.
    if (spec.holes?.length) ftruncateSync(fd, data.length);
    const st = fstatSync(fd, { bigint: true });
    try {
      const uid = spec.uid ?? Number(st.uid);
      const gid = spec.gid ?? Number(st.gid);
      if (uid !== Number(st.uid) || gid !== Number(st.gid)) fchownSync(fd, uid, gid);
      // After chown, which clears set-id bits.
      fchmodSync(fd, spec.mode & 0o7777);
    } catch (e) {
      throw fromSystemError(e, `cannot set owner or mode of ${dest}`);
    }
    closed = true;
    closeSync(fd);
    renameSync(tmpPath, fsPath(dest));
    deferred.add(dest);
    return { ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs };
  } catch (err) {
    if (!closed) closeSync(fd);
    try {
      unlinkSync(tmpPath);
    } catch {
      // Already gone.
    }
    throw err instanceof LcsyncError ? err : fromSystemError(err, dest);
  }
}

export class OutputFile {
  private fh: FileHandle | undefined;
  private done = false;
  private heartbeat: NodeJS.Timeout | undefined;
  /** The error of the write that failed; every later use of the output reports it (not "closed"). */
  private failure: Error | undefined;
  /** Committed: the bytes are at dest now, no longer at path. */
  private renamed = false;
  /** After commit, with OutputOptions.identity: what the committed file is. */
  identity: CommittedIdentity | undefined;
  private deferred: DeferredSync | undefined;
  private wantIdentity = false;
  /** Writes go synchronously until one is slow (see write()). */
  private syncWrites = true;
  private slowWriteMs = SLOW_WRITE_MS;
  /** Bytes written since the last early flush began (EARLY_FLUSH_BYTES). */
  private unflushed = 0;
  /** The early flush in flight, if any. */
  private flushing: Promise<void> | undefined;
  /**
   * What an early flush failed with: reported by commit, since the kernel tells a write-back error
   * to one fsync of a descriptor only, and that one was the early flush.
   */
  private flushFailure: Error | undefined;

  private constructor(
    /** The file being written: the temporary copy, or dest itself in place. */
    readonly path: string,
    readonly dest: string,
    readonly size: number,
    readonly inplace: boolean,
    fh: FileHandle,
    /** Mode and owner the finished file gets: those of the file it replaces, else the umask default. */
    private readonly finalMode: number,
    private readonly owner: { uid: number; gid: number } | undefined,
    /**
     * Whether every byte not written yet reads as zero (a new temporary file, truncated to size,
     * on which nothing else was seeded): all-zero chunks need not be written and stay holes.
     */
    readonly fresh: boolean = false,
  ) {
    this.fh = fh;
    if (!inplace) {
      // Tell other runs' cleanup this copy is alive while chunks are slow to come (see isStaleTemp).
      this.heartbeat = setInterval(() => {
        const now = new Date();
        this.fh?.utimes(now, now).catch(() => undefined);
      }, HEARTBEAT_MS);
      this.heartbeat.unref();
    }
  }

  static async open(dest: string, size: number, opts: OutputOptions = {}): Promise<OutputFile> {
    checkRange(size, 0);
    const old = opts.absent
      ? undefined
      : await stat(dest).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw fromSystemError(err, dest);
        });
    if (old && !old.isFile()) throw new LcsyncError('IO', `${dest}: not a regular file`);

    if (opts.inplace) {
      let fh: FileHandle;
      try {
        // O_RDWR|O_CREAT without O_APPEND: positional writes must land where they are aimed.
        fh = await open(dest, fsc.O_RDWR | fsc.O_CREAT, 0o666);
      } catch (err) {
        throw fromSystemError(err, dest);
      }
      // Truncation waits for commit, so chunks past the new end can still be read and reused.
      return new OutputFile(dest, dest, size, true, fh, -1, undefined).configured(opts);
    }

    const tmp = tempPathFor(dest);
    let fh: FileHandle | undefined;
    try {
      let finalMode: number;
      if (old) {
        await copyFile(dest, tmp, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE);
        await chmod(tmp, TEMP_MODE);
        fh = await open(tmp, 'r+');
        finalMode = old.mode & 0o7777;
      } else {
        // A new file gets 0666 less the umask (as open(2) would give it), once complete.
        fh = await open(tmp, 'wx+', TEMP_MODE);
        finalMode = 0o666 & ~processUmask();
      }
      await fh.truncate(size);
      const owner = old ? { uid: old.uid, gid: old.gid } : undefined;
      return new OutputFile(tmp, dest, size, false, fh, finalMode, owner, !old).configured(opts);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await unlinkQuietly(tmp);
      throw fromSystemError(err, dest);
    }
  }

  /** Whether the next write is made synchronously (false once a write was slow, or with OutputOptions.slowWriteMs < 0). */
  get writesSynchronously(): boolean {
    return this.syncWrites;
  }

  private configured(opts: OutputOptions): this {
    if (opts.slowWriteMs !== undefined) {
      this.slowWriteMs = opts.slowWriteMs;
      this.syncWrites = opts.slowWriteMs >= 0;
    }
    // In place is not atomic anyway; a large file's own fsync is small beside its writes.
    if (!this.inplace && this.size <= DEFERRED_SYNC_MAX) this.deferred = opts.deferred;
    this.wantIdentity = !!opts.identity;
    return this;
  }

  /** Where the bytes written so far are: the temporary copy until commit has renamed it over dest. */
  get location(): string {
    return this.renamed ? this.dest : this.path;
  }

  /**
   * Write all of `data` at `offset`. On failure the output is aborted before the error is thrown.
   *
   * Synchronously (pwrite on this thread) while writes return at once, as they do into the page
   * cache: a promise write per chunk was a thread-pool round trip (a futex wake of a worker, an
   * eventfd wake back, a promise), which cost a receiver of a 64 MiB file about 0.2 CPU-s more
   * than the copies themselves (bench/README.md, eighth session). A write that took longer than
   * SLOW_WRITE_MS (dirty-page throttling, a network or slow file system) turns this output to
   * promise writes for good, so that such storage does not stall the receive loop.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    const fh = this.handle();
    try {
      checkRange(offset, data.length);
      if (offset + data.length > this.size) {
        throw new LcsyncError('INTERNAL', `output: write at ${offset} (+${data.length}) past the end (${this.size})`);
      }
      let done = 0;
      while (done < data.length) {
        let bytesWritten: number;
        if (this.syncWrites) {
          const t0 = performance.now();
          bytesWritten = writeSync(fh.fd, data, done, data.length - done, offset + done);
          if (performance.now() - t0 > this.slowWriteMs) this.syncWrites = false;
        } else {
          ({ bytesWritten } = await fh.write(data, done, data.length - done, offset + done));
        }
        if (bytesWritten <= 0) throw new LcsyncError('IO', `${this.dest}: write made no progress`);
        done += bytesWritten;
      }
      if (!this.deferred) this.flushEarly(fh, data.length);
    } catch (err) {
      // Recorded before the abort awaits: writes still in flight then fail with this cause, not "closed".
      const failure = this.failure ?? fromSystemError(err, this.dest);
      this.failure = failure;
      await this.abort();
      throw failure;
    }
  }

  /** Start an fdatasync once EARLY_FLUSH_BYTES were written since the last one began (one at a time). */
  private flushEarly(fh: FileHandle, written: number): void {
    this.unflushed += written;
    if (this.unflushed < EARLY_FLUSH_BYTES || this.flushing) return;
    this.unflushed = 0;
    this.flushing = fh.datasync().then(
      () => {
        this.flushing = undefined;
      },
      (err: Error) => {
        this.flushFailure ??= err;
        this.flushing = undefined;
      },
    );
  }

  /** Make the output the destination: sync the data, rename over dest, sync the directory (or leave both to `deferred`). */
  async commit(): Promise<void> {
    const fh = this.handle();
    clearInterval(this.heartbeat);
    try {
      if (this.inplace) {
        await fh.truncate(this.size);
      } else {
        if (this.owner) {
          // Keep the replaced file's owner where we may (root); otherwise it stays ours, as with rsync.
          await fh.chown(this.owner.uid, this.owner.gid).catch(() => undefined);
        }
        // After chown, which clears set-id bits.
        await fh.chmod(this.finalMode);
      }
      await this.flushing;
      if (this.flushFailure) throw this.flushFailure;
      if (!this.deferred) await fh.sync();
      if (this.wantIdentity) {
        // Synchronous: an fstat costs microseconds, a promise round trip through the thread pool more.
        const st = fstatSync(fh.fd, { bigint: true });
        this.identity = { ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs };
      }
      this.fh = undefined;
      await fh.close();
      if (!this.inplace) {
        await rename(this.path, this.dest);
        // At once, before the directory sync below: readers of written chunks follow the bytes.
        this.renamed = true;
      }
      this.done = true;
    } catch (err) {
      this.fh = undefined;
      await fh.close().catch(() => undefined);
      if (!this.inplace) await unlinkQuietly(this.path);
      this.done = true;
      throw fromSystemError(err, this.dest);
    }
    if (this.deferred) {
      this.deferred.add(this.dest);
      return;
    }
    try {
      await syncDir(path.dirname(this.dest));
    } catch (err) {
      throw fromSystemError(err, path.dirname(this.dest));
    }
  }

  /** Close and, in atomic mode, remove the temporary copy; dest is untouched. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    clearInterval(this.heartbeat);
    const fh = this.fh;
    this.fh = undefined;
    await this.flushing;
    await fh?.close().catch(() => undefined);
    if (!this.inplace) await unlinkQuietly(this.path);
  }

  private handle(): FileHandle {
    if (this.failure) throw this.failure;
    if (!this.fh || this.done) throw new LcsyncError('INTERNAL', `output ${this.dest} is already closed`);
    return this.fh;
  }
}

/** Hex digits of the pid scope at the start of the random part of a temp name. */
const SCOPE_HEX = 8;
let scope: string | undefined;

/**
 * Where the pid in a temp name can be judged: this boot of this machine (a directory may be
 * shared over NFS) and this PID namespace (containers). Temp names start their random part
 * with it; a temp of another scope, or of an older lcsync, is judged by its age alone.
 */
export function pidScope(): string {
  if (scope === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const ns = readlinkSync('/proc/self/ns/pid');
      scope = createHash('sha256').update(`${boot} ${ns}`).digest('hex').slice(0, SCOPE_HEX);
    } catch {
      // Unknown: a tag no one else has, so every other temp is judged by its age.
      scope = randomBytes(SCOPE_HEX / 2).toString('hex');
    }
  }
  return scope;
}

/** Whether a process with this pid exists in our PID namespace (ours counts). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface TempInfo {
  pid: number;
  /** Time since it was last touched (a live run touches its temps every HEARTBEAT_MS). */
  ageMs: number;
  /** Made in our pid scope (pidScope), so its pid means what it says here. */
  sameScope: boolean;
}

/**
 * The cleanup rule: may this temporary copy be removed? Only when no live run can own it.
 * - Made in our scope: when its pid is gone (at once: a killed run's chunks are fetched again
 *   by the next run), or when untouched for ABANDONED_AFTER_MS (its pid was reused).
 * - Made elsewhere (another PID namespace or machine, or an older lcsync): its pid means
 *   nothing here, so only when untouched for STALE_AFTER_MS; a live run touches it far more often.
 */
export function isStaleTemp(t: TempInfo, alive: (pid: number) => boolean = pidAlive): boolean {
  if (t.ageMs >= ABANDONED_AFTER_MS) return true;
  if (t.sameScope) return !alive(t.pid);
  return t.ageMs >= STALE_AFTER_MS;
}

/** What a temp name says: its pid and whether it was made in our pid scope. */
export function parseTempName(name: string): { base: string; pid: number; sameScope: boolean } | undefined {
  const m = TEMP_RE.exec(name);
  if (!m) return undefined;
  const random = m[3]!;
  return { base: m[1]!, pid: Number(m[2]), sameScope: random.length === SCOPE_HEX + 12 && random.slice(0, SCOPE_HEX) === pidScope() };
}

/**
 * The temporary names in each directory, read once per run (TempListing.in): looking for a
 * killed run's temps of each file by reading its whole directory again would cost a directory
 * listing per file, quadratic in a directory of many small files. A temp that appears after the
 * listing belongs to a live run (or is found by the next run).
 */
export class TempListing {
  private readonly dirs = new Map<string, Promise<string[]>>();
  private readonly madeHere = new Set<string>();

  in(dir: string): Promise<string[]> {
    let names = this.dirs.get(dir);
    if (!names) {
      names = readdir(dir).then(
        (all) => all.filter(isTempName),
        (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' || err.code === 'ENOTDIR' ? [] : Promise.reject(fromSystemError(err, dir))),
      );
      this.dirs.set(dir, names);
    }
    return names;
  }

  /** `dir` was made by this run: nothing stale can be in it. */
  made(dir: string): void {
    this.dirs.set(dir, Promise.resolve([]));
    this.madeHere.add(dir);
  }

  /** Whether this run made `dir` (so what is in it, this run put there). */
  isNew(dir: string): boolean {
    return this.madeHere.has(dir);
  }

  /**
   * Remove what killed runs left of `dest` (a file's temporary copy, a link made under a
   * temporary name): removeStaleTemps on the directory's listing. Failures are ignored: a temp
   * that cannot be removed now is found by the next run.
   */
  removeStaleOf(dest: string): Promise<number> {
    const dir = path.dirname(dest);
    return this.in(dir)
      .then((names) => (names.length > 0 ? removeStaleTemps(dir, path.basename(dest), undefined, names) : 0))
      .catch(() => 0);
  }
}

/**
 * Remove temporary copies left in `dir` by killed runs (only those of `basename` when given),
 * as isStaleTemp decides. Returns how many were removed. `listed`: the directory's names, when
 * already read (TempListing).
 */
export async function removeStaleTemps(dir: string, basename?: string, now: number = Date.now(), listed?: readonly string[]): Promise<number> {
  let names: readonly string[];
  try {
    names = listed ?? (await readdir(dir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw fromSystemError(err, dir);
  }
  const want = basename === undefined ? undefined : tempBase(basename);
  let removed = 0;
  for (const name of names) {
    const t = parseTempName(name);
    if (!t) continue;
    if (want !== undefined && t.base !== want) continue;
    const full = path.join(dir, name);
    let age: number;
    try {
      const st = await lstat(full);
      // Symlinks too: a run makes a new link under a temporary name and renames it over.
      if (!st.isFile() && !st.isSymbolicLink()) continue;
      age = now - st.mtimeMs;
    } catch {
      continue; // Removed meanwhile.
    }
    if (!isStaleTemp({ pid: t.pid, ageMs: age, sameScope: t.sameScope })) continue;
    try {
      await unlink(full);
      removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, full);
    }
  }
  return removed;
}
