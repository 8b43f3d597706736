/**
 * A share that follows its files: when shared files change, appear or vanish,
 * build a new index and serve it instead of the old one.
 *
 * Triggers: file-system events (fs.watch on every shared directory; quiet
 * periods of DEBOUNCE_MS merge a burst of events into one re-index), a
 * periodic rescan (which also covers file systems without events, such as NFS),
 * an explicit request (SIGHUP), and the share itself: before a stream starts
 * the share re-reads the chunk and checks its hash, and a mismatch ('stale')
 * means the index no longer describes the file, so the file is forgotten by the
 * tree cache and the share re-indexes at once. Together with the share's check
 * this is what keeps stale bytes off the wire: a changed chunk is never sent
 * under its old hash, and its old hash leaves the index at the next re-index.
 *
 * Re-indexing walks everything (stat only) and hashes only the files whose
 * identity (size, mtime, inode) changed, through the tree cache. One re-index
 * runs at a time; triggers during a run cause one more run after it.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from '../base/bytefs.js';
import { fsPath, wellFormedName } from '../base/names.js';
import path from 'node:path';
import { toHex } from '../model/hash.js';
import type { ChunkObject, ShareIndex } from '../index/mdex.js';

export type ReindexReason = 'event' | 'rescan' | 'signal' | 'stale' | 'retry';

export interface RootLine {
  hash: string;
  shareName: string;
  type: string;
  path: string;
}

export interface ReindexEvent {
  reason: ReindexReason;
  /** Whether any root hash differs from the index served before. */
  changed: boolean;
  roots: RootLine[];
  objects: number;
  seconds: number;
}

/** What the follower needs of a Share (src/core/share/share.ts). */
export interface FollowedShare {
  readonly index: ShareIndex;
  setIndex(index: ShareIndex): void;
  on(event: 'stale', listener: (obj: ChunkObject) => void): unknown;
  off(event: 'stale', listener: (obj: ChunkObject) => void): unknown;
}

export interface FollowOptions {
  /** The paths as given to the share (files or directories). */
  paths: readonly string[];
  /** Build a fresh index of `paths` (with the tree cache, so unchanged files are not re-hashed). */
  build: () => Promise<ShareIndex>;
  /** Watch for file-system events; default true. */
  events?: boolean;
  /** Seconds between rescans; 0 turns rescans off. */
  rescanSec: number;
  debounceMs?: number;
  /** A file's bytes no longer match its index: forget its cached tree before re-indexing. */
  forget?: (localPath: string) => void;
  onReindex?: (ev: ReindexEvent) => void;
  onWarning?: (message: string) => void;
  onVerbose?: (message: string) => void;
}

const DEBOUNCE_MS = 200;
/** After a failed re-index (say a file vanished mid-walk), try again this soon, at most MAX_RETRIES times in a row. */
const RETRY_MS = 1000;
const MAX_RETRIES = 5;

export function rootLines(index: ShareIndex): RootLine[] {
  return index.roots.map((r) => ({ hash: toHex(r.hash), shareName: r.shareName, type: r.type, path: r.localPath }));
}

export class Follower {
  /** Completed re-index runs. */
  reindexes = 0;
  last?: ReindexEvent & { at: number };
  /** Watchers of shared files' parents, by shared path (undefined: missing, or could not be watched). */
  private readonly watchers = new Map<string, FSWatcher | undefined>();
  /** Watchers of the directories of shared directories, by directory (see watchAll). */
  private readonly dirWatchers = new Map<string, FSWatcher>();
  private timer?: NodeJS.Timeout;
  private rescanTimer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private pending?: ReindexReason;
  private retries = 0;
  private closed = false;
  /** Paths we already warned about not being able to watch (warn once, not at every re-index). */
  private readonly warned = new Set<string>();
  private readonly onStale = (obj: ChunkObject) => {
    this.opts.forget?.(obj.record.localPath);
    this.trigger('stale', 0);
  };

  private constructor(
    private readonly share: FollowedShare,
    private readonly opts: FollowOptions,
  ) {}

  static async start(share: FollowedShare, opts: FollowOptions): Promise<Follower> {
    const f = new Follower(share, opts);
    share.on('stale', f.onStale);
    if (opts.events ?? true) await f.watchAll();
    if (opts.rescanSec > 0) {
      f.rescanTimer = setInterval(() => f.trigger('rescan', 0), opts.rescanSec * 1000);
      f.rescanTimer.unref();
    }
    return f;
  }

  /** Ask for a re-index after `delayMs` (merging with any already asked for). */
  trigger(reason: ReindexReason, delayMs = this.opts.debounceMs ?? DEBOUNCE_MS): void {
    if (this.closed) return;
    // An urgent reason (stale bytes, a signal) wins over a debounced event.
    this.pending = this.pending === 'stale' || this.pending === 'signal' ? this.pending : reason;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.kick();
    }, delayMs);
  }

  /** Wait for the re-index in progress, if any (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.timer) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    this.timer = undefined;
    this.share.off('stale', this.onStale);
    for (const w of this.watchers.values()) w?.close();
    this.watchers.clear();
    for (const w of this.dirWatchers.values()) w.close();
    this.dirWatchers.clear();
    await this.running;
  }

  private async kick(): Promise<void> {
    if (this.running || this.closed) return;
    while (this.pending && !this.closed) {
      const reason = this.pending;
      this.pending = undefined;
      this.running = this.reindex(reason);
      await this.running;
      this.running = undefined;
    }
  }

  private async reindex(reason: ReindexReason): Promise<void> {
    const t0 = performance.now();
    let index: ShareIndex;
    try {
      index = await this.opts.build();
    } catch (e) {
      // Keep serving the old index: the share still checks every chunk before sending it.
      this.opts.onWarning?.(`re-index failed: ${(e as Error).message}`);
      if (++this.retries <= MAX_RETRIES) this.trigger('retry', RETRY_MS);
      return;
    }
    if (this.closed) return;
    this.retries = 0;
    const before = this.share.index.roots.map((r) => toHex(r.hash)).join(',');
    const roots = rootLines(index);
    const changed = roots.map((r) => r.hash).join(',') !== before;
    // Equal roots mean equal objects (every root covers content and metadata below it): keep the old index.
    if (changed) this.share.setIndex(index);
    const ev: ReindexEvent = { reason, changed, roots, objects: index.objectCount, seconds: (performance.now() - t0) / 1000 };
    this.reindexes++;
    this.last = { ...ev, at: Date.now() };
    this.opts.onReindex?.(ev);
    // Directories that were missing (or whose watcher failed) may be back.
    if (this.opts.events ?? true) await this.watchAll();
  }

  /**
   * Watchers: on a shared file, its parent (filtered by name); on a shared directory, every
   * directory the index found in it, each on its own (not Node's recursive watch, which on Linux
   * keeps a watcher and a Stats object for every file: about 1.3 KiB a file, 130 MiB for 100,000
   * files, and an inotify watch each). A directory's watch reports changes to the files in it;
   * a new subdirectory is reported by its parent, and watched from the re-index that follows.
   */
  private async watchAll(): Promise<void> {
    const dirs = new Set<string>();
    for (const p of this.opts.paths) {
      if (this.watchers.get(p) || this.closed) continue;
      const st = await stat(p).catch(() => undefined);
      if (!st) {
        this.watchers.set(p, undefined);
        continue;
      }
      if (st.isDirectory()) {
        dirs.add(p);
        continue;
      }
      const base = path.basename(p);
      // Node reports names as UTF-8 (U+FFFD for other bytes), so a name that is not UTF-8 is compared in that form.
      const w = this.watchDir(p, path.dirname(p), (name) => name === null || name === base || name === wellFormedName(base));
      this.watchers.set(p, w);
    }
    if (this.closed) return;
    if (dirs.size > 0) {
      for (const r of this.share.index.records) if (r.type === 'dir') dirs.add(r.localPath);
    }
    // Directories gone from the index (removed, or no longer shared) are not watched any more.
    for (const [dir, w] of this.dirWatchers) {
      if (dirs.has(dir)) continue;
      w.close();
      this.dirWatchers.delete(dir);
    }
    for (const dir of dirs) {
      if (this.dirWatchers.has(dir) || this.closed) continue;
      const w = this.watchDir(dir, dir);
      if (w) this.dirWatchers.set(dir, w);
    }
  }

  /** Watchers of directories (see watchAll) in use. */
  get watching(): number {
    return this.dirWatchers.size + [...this.watchers.values()].filter((w) => w !== undefined).length;
  }

  /** Watch directory `dir` for `p` (what warnings name); `wanted` filters by the name an event carries. */
  private watchDir(p: string, dir: string, wanted?: (name: string | null) => boolean): FSWatcher | undefined {
    try {
      const w = watch(fsPath(dir), { persistent: false }, (_ev, name) => {
        if (wanted && !wanted(name)) return;
        this.opts.onVerbose?.(`change under ${p}${name ? `: ${name}` : ''}`);
        this.trigger('event');
      });
      w.on('error', (e) => {
        // The directory went away or the watch limit was hit: rescans (and the next re-index) take over.
        this.opts.onWarning?.(`stopped watching ${dir}: ${e.message}`);
        w.close();
        if (this.dirWatchers.get(dir) === w) this.dirWatchers.delete(dir);
        if (this.watchers.get(p) === w) this.watchers.set(p, undefined);
        this.trigger('event');
      });
      return w;
    } catch (e) {
      if (!this.warned.has(p)) {
        this.warned.add(p);
        this.opts.onWarning?.(`cannot watch ${dir} for changes (${(e as Error).message}); relying on rescans${this.opts.rescanSec > 0 ? ` every ${this.opts.rescanSec} s` : ' (off: send SIGHUP after changes)'}`);
      }
      return undefined;
    }
  }
}
