/**
 * Kept-open descriptors of the files a share reads chunks from, read synchronously.
 *
 * A share at line rate reads a thousand or more 32 KiB chunks a second, mostly from the page cache
 * (the index has just hashed them). Through fs/promises each chunk was an open, a read and a close,
 * three trips through the thread pool and a FileHandle to finalise: a fifth of the share's CPU in a
 * profile of a 64 MiB transfer, for a read that takes microseconds. Here a chunk costs a stat of
 * its path and one positional read on a descriptor kept open while the file's chunks are being
 * sent; consecutive chunks of a file opened together (a receiver asks for them in order, a report
 * names several) share one stat and one readv (readRun): three in four chunks of a 64 MiB transfer.
 * (A read that must go to the disk blocks the send loop meanwhile; so did the hash check.)
 * The stat is the addon's lstat of the path's bytes (../base/lstatmany.ts), compared as raw
 * numbers: Node's statSync builds a Stats object each time, 16 us a chunk and 3% of a share's CPU
 * at line rate. A path that is a symlink (a share of a link to a file) is checked with statSync,
 * which follows it, as is every path without the addon or with LCSYNC_NO_NATIVE_STAT=1.
 *
 * What a chunk read guarantees is unchanged: the caller checks the bytes against the leaf hash,
 * which catches any change in place (a truncated file reads short). A file replaced under its name
 * (a new inode, as editors and rsync do) is caught before each read: the path is stat-ed and a
 * descriptor whose device and inode are no longer the path's is closed and the path opened
 * afresh, so the old inode is never read once the name points elsewhere (as when every chunk
 * opened the file). So is one whose file's status changed (ctime: its mode or owner, as when it is
 * made unreadable, or its bytes): the open then checks the permission again, as it did per chunk.
 * (ctime ticks with the kernel's coarse clock: a change within a few milliseconds of the open
 * may go unseen until the next one, or until the descriptor idles out.) At most `keep` descriptors stay open (the least recently used is closed
 * first), each at most `idleMs` after its last read, and closeAll() closes them all (a re-index,
 * the share's stop).
 */
import { closeSync, constants as fsc, fstatSync } from 'node:fs';
import { openFdSync, statSyncIfAny } from '../base/bytefs.js';
import { LcsyncError } from '../base/errors.js';
import { RAW_FIELDS, lstatManyRaw } from '../base/lstatmany.js';
import { nameToBytes } from '../base/names.js';
import { readFullSync, readvFullSync } from '../base/readfull.js';
import { S_IFMT, S_IFREG } from '../model/meta.js';

/** Descriptors kept open at most by default: a share sends a few files at a time. */
export const DEFAULT_KEEP = 16;
/** A descriptor unused this long is closed. */
export const DEFAULT_IDLE_MS = 1000;

interface OpenFile {
  fd: number;
  dev: number;
  ino: number;
  ctimeMs: number;
  usedAt: number;
  /**
   * For the addon's lstat: the path's bytes with a NUL, and its raw device, inode and ctime (ns) as
   * lstat showed them when they were the descriptor's. Undefined: the path is checked by statSync.
   */
  probe?: { path: Buffer; dev: bigint; ino: bigint; ctimeNs: bigint };
}

export class ChunkFiles {
  /** By local path, least recently used first (a read moves its file to the end). */
  private readonly files = new Map<string, OpenFile>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Files opened so far (tests, and a share's verbose log). */
  opens = 0;
  /** Checks of a kept descriptor made by the addon's lstat (tests). */
  nativeChecks = 0;
  /** The addon's lstat output for one path. */
  private readonly raw = new BigInt64Array(RAW_FIELDS);

  constructor(
    private readonly keep = DEFAULT_KEEP,
    private readonly idleMs = DEFAULT_IDLE_MS,
  ) {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError('keep must be a positive integer');
  }

  /**
   * Read `length` bytes at `offset` of the file now at `localPath` into `buf` (from its start);
   * returns how many were read, fewer only at the end of the file. Throws the system error when
   * the file cannot be opened or read (gone, no permission), or an LcsyncError when it is no
   * longer a regular file.
   */
  read(localPath: string, buf: Uint8Array, length: number, offset: number): number {
    return this.withFile(localPath, (fd) => readFullSync(fd, buf, length, offset));
  }

  /**
   * read() for a run of consecutive ranges: `bufs` (each whole) from `offset` on, one check of the path
   * and one readv for all of them; returns how many bytes went into each.
   */
  readRun(localPath: string, bufs: readonly Uint8Array[], offset: number): number[] {
    return this.withFile(localPath, (fd) => readvFullSync(fd, bufs, offset));
  }

  /** `read` on the descriptor of the file now at `localPath`; a failed read closes it. */
  private withFile<T>(localPath: string, read: (fd: number) => T): T {
    const f = this.current(localPath);
    try {
      return read(f.fd);
    } catch (err) {
      this.close(localPath);
      throw err;
    } finally {
      f.usedAt = Date.now();
    }
  }

  /** Descriptors open now. */
  get size(): number {
    return this.files.size;
  }

  /** Close every descriptor. */
  closeAll(): void {
    for (const p of [...this.files.keys()]) this.close(p);
    clearTimeout(this.sweeper);
    this.sweeper = undefined;
  }

  /** The open file at `localPath`: the kept descriptor while the name still points at its inode, else opened now. */
  private current(localPath: string): OpenFile {
    const kept = this.files.get(localPath);
    if (kept) {
      if (kept.probe ? this.stillNative(kept.probe) : this.stillByStat(localPath, kept)) {
        // Most recently used goes last.
        this.files.delete(localPath);
        this.files.set(localPath, kept);
        return kept;
      }
      // Replaced, changed or gone: not read through this descriptor again. Opening below says why when it cannot.
      this.close(localPath);
    }
    // Non-blocking: a FIFO put in the file's place must not stop the share in open(2).
    const fd = openFdSync(localPath, fsc.O_RDONLY | fsc.O_NONBLOCK);
    let f: OpenFile;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new LcsyncError('IO', 'no longer a regular file');
      f = { fd, dev: st.dev, ino: st.ino, ctimeMs: st.ctimeMs, usedAt: Date.now(), probe: this.probeOf(localPath, fd) };
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.opens++;
    this.files.set(localPath, f);
    while (this.files.size > this.keep) this.close(this.files.keys().next().value!);
    this.arm();
    return f;
  }

  /** Whether the path still shows the kept descriptor's file, unchanged (statSync, following a symlink). */
  private stillByStat(localPath: string, kept: OpenFile): boolean {
    const st = statSyncIfAny(localPath);
    return st !== undefined && st.ino === kept.ino && st.dev === kept.dev && st.ctimeMs === kept.ctimeMs;
  }

  /** The same by the addon's lstat of the path. */
  private stillNative(probe: NonNullable<OpenFile['probe']>): boolean {
    this.nativeChecks++;
    if (!lstatManyRaw(probe.path, this.raw)) return false;
    const r = this.raw;
    return r[0] === 0n && r[3] === probe.ino && r[4] === probe.dev && r[6] === probe.ctimeNs;
  }

  /**
   * What the addon's lstat shows of `localPath` just opened as `fd`, when that is the descriptor's
   * regular file itself (not a symlink to it, and not replaced since the open); else undefined, and
   * the path is checked by statSync.
   */
  private probeOf(localPath: string, fd: number): OpenFile['probe'] {
    const path = Buffer.concat([nameToBytes(localPath), Buffer.of(0)]);
    const r = this.raw;
    if (!lstatManyRaw(path, r) || r[0] !== 0n || (Number(BigInt.asUintN(64, r[1]!)) & S_IFMT) !== S_IFREG) return undefined;
    const st = fstatSync(fd, { bigint: true });
    if (BigInt.asUintN(64, r[3]!) !== st.ino || BigInt.asUintN(64, r[4]!) !== st.dev || r[6] !== st.ctimeNs) return undefined;
    return { path, dev: r[4]!, ino: r[3]!, ctimeNs: r[6]! };
  }

  private close(localPath: string): void {
    const f = this.files.get(localPath);
    if (!f) return;
    this.files.delete(localPath);
    try {
      closeSync(f.fd);
    } catch {
      // Closing a read-only descriptor cannot lose data; it is gone either way.
    }
  }

  /** Close idle descriptors every idleMs while any is open. */
  private arm(): void {
    if (this.sweeper || this.files.size === 0) return;
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      const now = Date.now();
      for (const [p, f] of [...this.files]) if (now - f.usedAt >= this.idleMs) this.close(p);
      this.arm();
    }, this.idleMs);
    this.sweeper.unref();
  }
}
