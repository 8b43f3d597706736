/**
 * The tree cache: Merkle trees of files already hashed, so that a share that
 * restarts (or re-indexes after a change) hashes only the files that changed.
 *
 * An entry is keyed by the file's path and stands for one identity of it:
 * size, mtime (ns), inode and device. Any change to these is a miss. Entries
 * live in memory and, unless disabled, on disk (flush() writes them once an
 * index is built, so creating files does not slow indexing): one file per path under
 * `<dir>/trees-v1/<2 hex>/<hash of the path>`, written to a temporary name and
 * renamed, so a crash leaves either the old entry or the new one. Every entry
 * read from disk is checked (header, identity, node count, every parent hash)
 * and a bad one is deleted and treated as a miss: the cache can make indexing
 * faster, never wrong. The directory is kept under a byte budget by deleting the
 * least recently used entries.
 *
 * A file modified within the same clock tick as an earlier write can keep its
 * mtime; a tree hashed then would be cached under an identity that no longer
 * matches its bytes. So a tree is cached only if the file's identity after
 * hashing is still what it was before, and its mtime is at least RACY_MS old.
 */
import { closeSync, fstatSync, futimesSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readdir, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fromSystemError } from '../base/errors.js';
import { readFullSync } from '../base/readfull.js';
import { claimTurn } from '../base/turnmark.js';
import { hash, toHex } from '../model/hash.js';
import type { TreeCache } from './mdex.js';
import { MerkleTree } from '../model/tree.js';
import { fsPath, nameFromBytes, nameToBytes } from '../base/names.js';

export interface FileIdentity {
  size: number;
  mtimeNs: bigint;
  ino: bigint;
  dev: bigint;
}

const MAGIC = Buffer.from('LCTREE1\n', 'latin1');
const HEADER = MAGIC.length + 32 + 4;
/** Bytes of an encoded entry before its path: magic, size, mtime, inode, device, path length. */
export const ENTRY_HEADER = HEADER;
/** Longest path an entry may record (PATH_MAX). */
const MAX_PATH = 4096;
export const CACHE_SUBDIR = 'trees-v1';
/** Default on-disk budget: the trees of about 128 GiB of files (a tree is 1/512 of its file). */
export const DEFAULT_MAX_BYTES = 256 * 2 ** 20;
const RACY_MS = 2000;
/** Entries written at once by flush(). */
const FLUSH_BATCH = 16;
/** While its caller is busy (a share sending), flush() writes a batch this often at most. */
export const BUSY_FLUSH_GAP_MS = 250;
/** busyUntilQuiet: how long after its last busy moment a caller still counts as busy. */
export const FLUSH_QUIET_MS = 1000;

/**
 * A busy() for flush() that stays true until `busy` has been false for `quietMs`, counting from
 * the call too. A share's streams come and go between a receiver's steps (its tree, then its
 * chunks a few milliseconds later), and receivers that were waiting for a share join in its first
 * few hundred milliseconds; a flush at full speed in those gaps kept four threads of the pool
 * writing entries while the share's reads for the receivers queued behind them.
 */
export function busyUntilQuiet(busy: () => boolean, quietMs = FLUSH_QUIET_MS, now: () => number = Date.now): () => boolean {
  let lastBusy = now();
  return () => {
    const t = now();
    if (busy()) lastBusy = t;
    return t - lastBusy < quietMs;
  };
}

export interface TreeStoreOptions {
  /** The cache directory (entries go into its trees-v1/); undefined keeps trees in memory only. */
  dir?: string;
  /** On-disk budget in bytes; prune() deletes the least recently used entries beyond it. */
  maxBytes?: number;
  /** A file whose mtime is younger than this is hashed every time (see the header comment). */
  racyMs?: number;
  onWarning?: (message: string) => void;
}

export interface TreeStoreStats {
  hits: number;
  misses: number;
  writes: number;
  /** Disk entries that failed their checks and were deleted. */
  corrupt: number;
}

interface MemEntry {
  /**
   * identityKey of the file the tree is for: a string, not the identity (an object and four BigInts,
   * about 160 bytes: a share holds an entry per file).
   */
  key: string;
  tree: MerkleTree;
  /** The sweep generation that last used this entry. */
  gen: number;
}

/**
 * The default cache directory: /var/cache/lcsync for root, else
 * $XDG_CACHE_HOME/lcsync, else ~/.cache/lcsync.
 */
/** How often prune() walks the whole cache at most, and the file whose mtime says when it last did. */
export const PRUNE_INTERVAL_MS = 3600_000;
/**
 * A hit marks its entry recently used (its mtime, which prune() goes by) only when the mark is older than
 * this: prune() runs at most hourly, so a fresher mark says the same. A share starting over a cache of
 * 50,000 files spent 0.5 of its 5 CPU-s re-marking entries it had marked minutes before.
 */
export const TOUCH_AFTER_MS = PRUNE_INTERVAL_MS;
/** Beside the trees directory (trees-v1.pruned), not in it: nothing there but shards. */
const PRUNE_MARK = '.pruned';

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? -1): string {
  // One switch for every lcsync process a script or test suite starts, without a --cache on each.
  if (env.LCSYNC_CACHE_DIR) return env.LCSYNC_CACHE_DIR;
  if (uid === 0) return '/var/cache/lcsync';
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'lcsync');
  return path.join(env.HOME || os.homedir(), '.cache', 'lcsync');
}

export class TreeStore implements TreeCache {
  readonly stats: TreeStoreStats = { hits: 0, misses: 0, writes: 0, corrupt: 0 };
  /** trees-v1 directory, or undefined for memory only. */
  readonly treesDir: string | undefined;
  private readonly mem = new Map<string, MemEntry>();
  private readonly pending = new Map<string, { id: FileIdentity; tree: MerkleTree }>();
  private readonly shards = new Set<string>();
  private gen = 0;
  private readonly maxBytes: number;
  private readonly racyMs: number;
  private diskFailed = false;

  constructor(private readonly opts: TreeStoreOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.racyMs = opts.racyMs ?? RACY_MS;
    if (opts.dir !== undefined) {
      const trees = path.join(opts.dir, CACHE_SUBDIR);
      try {
        mkdirSync(trees, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw fromSystemError(e, `cannot create cache directory ${trees}`);
      }
      this.treesDir = trees;
    }
  }

  get(localPath: string, id: FileIdentity): MerkleTree | undefined {
    const m = this.mem.get(localPath);
    if (m && m.key === identityKey(id)) {
      m.gen = this.gen;
      this.stats.hits++;
      return m.tree;
    }
    const tree = this.readDisk(localPath, id);
    if (tree) {
      this.mem.set(localPath, { key: identityKey(id), tree, gen: this.gen });
      this.stats.hits++;
      return tree;
    }
    this.stats.misses++;
    return undefined;
  }

  set(localPath: string, id: FileIdentity, tree: MerkleTree): void {
    if (!this.cacheable(localPath, id)) {
      this.mem.delete(localPath);
      return;
    }
    this.mem.set(localPath, { key: identityKey(id), tree, gen: this.gen });
    // Written by flush(), off the indexing path: creating a file per entry costs far more than a lookup.
    if (this.treesDir && !this.diskFailed) this.pending.set(localPath, { id, tree });
  }

  /**
   * Write the entries set() since the last flush to disk, FLUSH_BATCH at a time, a turn of the event
   * loop between batches. While `busy()` says so (a share sending to receivers), a batch every
   * BUSY_FLUSH_GAP_MS only: the cache serves the next start, the receivers are waiting now. A first
   * share of 5,000 files wrote its 5,000 entries (a file each) during the receivers' first sync, about
   * 1 CPU-s beside them.
   *
   * Each batch is written with synchronous calls: an entry is a small file created and renamed, tens
   * of microseconds, and through fs/promises each was four trips through the thread pool and their
   * promises, about 170 us of the share's CPU an entry (8.6 CPU-s for 50,000 after a first start).
   */
  async flush(busy?: () => boolean): Promise<void> {
    while (this.pending.size > 0 && !this.diskFailed) {
      if (busy?.()) await new Promise<void>((r) => setTimeout(r, BUSY_FLUSH_GAP_MS));
      // The first entries, taken without copying the rest: [...pending] per batch made the flush
      // quadratic (100,000 entries: 6,250 copies of 100,000 pairs; most of a share's 319 CPU-s
      // and its garbage collection during a first sync of 100,000 files).
      let n = 0;
      for (const [p, e] of this.pending) {
        this.pending.delete(p);
        this.writeDisk(p, e.id, e.tree);
        if (++n === FLUSH_BATCH || this.diskFailed) break;
      }
      if (this.pending.size > 0) await new Promise<void>((r) => setImmediate(r));
    }
    this.pending.clear();
  }

  /** Drop what is known about `localPath` (its file served bytes that no longer match its tree). */
  forget(localPath: string): void {
    this.mem.delete(localPath);
    this.pending.delete(localPath);
    const f = this.entryFile(localPath);
    if (f) tryUnlink(f);
  }

  /**
   * End of an index run: memory entries not used since the previous sweep
   * belong to files that are gone or changed, so drop them.
   */
  sweep(): void {
    for (const [k, e] of this.mem) if (e.gen !== this.gen) this.mem.delete(k);
    this.gen++;
  }

  /**
   * Keep the disk cache within its budget: delete least recently used entries (hits refresh an
   * entry's mtime). It stats every entry, which on a cache of tens of thousands took a CPU-second
   * at every share start; so it runs at most once per `minIntervalMs` per cache directory (the
   * mtime of PRUNE_MARK says when it last did). `skipped` when it did not run.
   */
  async prune(minIntervalMs = PRUNE_INTERVAL_MS): Promise<{ entries: number; bytes: number; removed: number; skipped?: true }> {
    if (!this.treesDir) return { entries: 0, bytes: 0, removed: 0 };
    if (!(await claimTurn(this.treesDir + PRUNE_MARK, minIntervalMs))) return { entries: 0, bytes: 0, removed: 0, skipped: true };
    const files: { p: string; size: number; mtimeMs: number }[] = [];
    for (const shard of await readdir(this.treesDir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      const d = path.join(this.treesDir, shard);
      // A shard at a time, letting the share's send loop and MLD reports have their turns.
      await new Promise<void>((r) => setImmediate(r));
      for (const name of await readdir(d).catch(() => [] as string[])) {
        const p = path.join(d, name);
        const st = await stat(p).catch(() => undefined);
        if (!st?.isFile()) continue;
        // Temporary files of a writer that crashed.
        if (name.includes('.tmp') && Date.now() - st.mtimeMs > 60_000) {
          await unlink(p).catch(() => undefined);
          continue;
        }
        files.push({ p, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
    let total = files.reduce((s, f) => s + f.size, 0);
    let removed = 0;
    if (total > this.maxBytes) {
      files.sort((a, b) => a.mtimeMs - b.mtimeMs);
      // Down to 90% of the budget, so that the next few writes do not prune again.
      for (const f of files) {
        if (total <= this.maxBytes * 0.9) break;
        await unlink(f.p).catch(() => undefined);
        total -= f.size;
        removed++;
      }
    }
    return { entries: files.length - removed, bytes: total, removed };
  }

  private cacheable(localPath: string, id: FileIdentity): boolean {
    const ageMs = Date.now() - Number(id.mtimeNs / 1_000_000n);
    if (ageMs < this.racyMs) return false;
    try {
      const st = statSync(fsPath(localPath), { bigint: true });
      return sameIdentity(id, { size: Number(st.size), mtimeNs: st.mtimeNs, ino: st.ino, dev: st.dev });
    } catch {
      return false;
    }
  }

  private entryFile(localPath: string): string | undefined {
    if (!this.treesDir) return undefined;
    const h = toHex(hash(nameToBytes(localPath)));
    return path.join(this.treesDir, h.slice(0, 2), h.slice(2));
  }

  private readDisk(localPath: string, id: FileIdentity): MerkleTree | undefined {
    const f = this.entryFile(localPath);
    if (!f) return undefined;
    let fd: number;
    try {
      fd = openSync(f, 'r');
    } catch {
      return undefined;
    }
    try {
      return this.readEntry(f, fd, localPath, id);
    } finally {
      closeSync(fd);
    }
  }

  private readEntry(f: string, fd: number, localPath: string, id: FileIdentity): MerkleTree | undefined {
    let buf: Buffer;
    let markedAt: number;
    try {
      const st = fstatSync(fd);
      buf = Buffer.allocUnsafe(st.size);
      buf = buf.subarray(0, readFullSync(fd, buf, buf.length, 0));
      markedAt = st.mtimeMs;
    } catch {
      return undefined;
    }
    const entry = decodeEntry(buf);
    if (!entry) {
      this.stats.corrupt++;
      tryUnlink(f);
      return undefined;
    }
    // Another path with the same name hash (never seen in practice) or another identity: a miss.
    if (entry.path !== localPath || !sameIdentity(entry.id, id)) return undefined;
    let tree: MerkleTree | undefined;
    try {
      tree = MerkleTree.fromNodes(id.size, entry.nodes);
    } catch {
      // Wrong node count for the size: a torn or foreign file.
    }
    if (!tree || !tree.verify()) {
      this.stats.corrupt++;
      tryUnlink(f);
      return undefined;
    }
    // Mark it recently used for prune(), unless it was marked lately (TOUCH_AFTER_MS).
    const now = Date.now();
    if (now - markedAt >= TOUCH_AFTER_MS) {
      try {
        futimesSync(fd, now / 1000, now / 1000);
      } catch {
        // Read-only cache: still usable.
      }
    }
    return tree;
  }

  private writeDisk(localPath: string, id: FileIdentity, tree: MerkleTree): void {
    const f = this.entryFile(localPath);
    if (!f || this.diskFailed) return;
    const tmp = `${f}.tmp${process.pid}`;
    try {
      const shard = path.dirname(f);
      if (!this.shards.has(shard)) {
        mkdirSync(shard, { recursive: true, mode: 0o700 });
        this.shards.add(shard);
      }
      // No fsync: a torn entry after a power cut fails its checks and is a miss.
      writeFileSync(tmp, encodeEntry(localPath, id, tree), { mode: 0o600 });
      renameSync(tmp, f);
      this.stats.writes++;
    } catch (e) {
      tryUnlink(tmp);
      if (this.diskFailed) return;
      // A full or read-only disk: keep working from memory, say so once.
      this.diskFailed = true;
      this.opts.onWarning?.(`tree cache disabled: cannot write ${f}: ${(e as Error).message}`);
    }
  }
}

/** Encode one disk entry: magic, identity, path, tree nodes. */
export function encodeEntry(localPath: string, id: FileIdentity, tree: MerkleTree): Buffer {
  return Buffer.concat(encodeEntryParts(localPath, id, tree));
}

/** encodeEntry's bytes as parts, the tree's nodes not copied (a 5 GiB file's are 10 MiB). */
export function encodeEntryParts(localPath: string, id: FileIdentity, tree: MerkleTree): Buffer[] {
  const p = nameToBytes(localPath);
  const head = Buffer.alloc(HEADER);
  MAGIC.copy(head, 0);
  let o = MAGIC.length;
  head.writeBigUInt64BE(BigInt(id.size), o);
  head.writeBigInt64BE(id.mtimeNs, o + 8);
  head.writeBigUInt64BE(BigInt.asUintN(64, id.ino), o + 16);
  head.writeBigUInt64BE(BigInt.asUintN(64, id.dev), o + 24);
  o += 32;
  head.writeUInt32BE(p.length, o);
  return [head, p, tree.nodes];
}

/** Decode one disk entry; undefined when it is not one (bad magic, lengths out of range). */
export function decodeEntry(buf: Buffer): { path: string; id: FileIdentity; nodes: Buffer } | undefined {
  if (buf.length < HEADER || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  let o = MAGIC.length;
  const size = buf.readBigUInt64BE(o);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const id: FileIdentity = { size: Number(size), mtimeNs: buf.readBigInt64BE(o + 8), ino: buf.readBigUInt64BE(o + 16), dev: buf.readBigUInt64BE(o + 24) };
  o += 32;
  const plen = buf.readUInt32BE(o);
  o += 4;
  if (plen === 0 || plen > MAX_PATH || o + plen > buf.length) return undefined;
  return { path: nameFromBytes(buf.subarray(o, o + plen)), id, nodes: buf.subarray(o + plen) };
}

/** The path of an encoded entry after the checks decodeEntry makes of its header, without decoding the rest. */
export function entryPath(buf: Buffer): string | undefined {
  if (buf.length < HEADER || buf.compare(MAGIC, 0, MAGIC.length, 0, MAGIC.length) !== 0) return undefined;
  // The size must be a safe integer: the high 11 bits of the u64 are zero.
  if ((buf.readUInt32BE(MAGIC.length) & 0xffe00000) !== 0) return undefined;
  const plen = buf.readUInt32BE(HEADER - 4);
  if (plen === 0 || plen > MAX_PATH || HEADER + plen > buf.length) return undefined;
  return nameFromBytes(buf.subarray(HEADER, HEADER + plen));
}

/** The fields sameIdentity compares, in one string. */
function identityKey(id: FileIdentity): string {
  // join makes one flat string; a template literal left a tree of five strings per key (about 200 bytes).
  return [id.size, id.mtimeNs, BigInt.asUintN(64, id.ino), BigInt.asUintN(64, id.dev)].join('/');
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && BigInt.asUintN(64, a.ino) === BigInt.asUintN(64, b.ino) && BigInt.asUintN(64, a.dev) === BigInt.asUintN(64, b.dev);
}

function tryUnlink(p: string): void {
  try {
    unlinkSync(p);
  } catch {
    // Already gone.
  }
}
