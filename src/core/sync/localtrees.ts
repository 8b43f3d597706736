/**
 * The receiver's cache of local trees: Merkle trees of the files under one destination, so that
 * a re-sync does not hash unchanged local files again (`sync --checksum` hashes them anyway).
 *
 * An entry stands for one identity of a file: size, mtime, ctime, inode and device (the share's
 * tree cache, ../index/cache.ts, keys by the first four; ctime is added here because a receiver's
 * files are also changed by tools that put the mtime back). Any difference is a miss.
 *
 * One file per destination, `<cache dir>/dests-v1/<BLAKE3 of the destination's real path>`:
 * outside the destination (never taken for synced content, never synced back by a share of the
 * destination) and one per destination, so concurrent syncs to other destinations never touch
 * each other's. Two runs into one destination each write their whole file under a temporary name
 * and rename it: the last one wins, and every entry is checked against the file's identity when
 * used, so a stale entry is a miss. Layout: magic, the destination path, entries (each an 8-byte
 * ctime and the share cache's entry encoding, encodeEntry), and a BLAKE3 of all of it. On load the
 * hash and every length are checked (a damaged file is a miss for every entry), and each entry is
 * only indexed by path: its identity is compared in place and its tree decoded and checked (node
 * count, parents) when a lookup hits it, a tree that fails being a miss, never a wrong tree. A
 * save writes the entries found unchanged as the bytes that were read.
 *
 * What is saved is what this run found unchanged or hashed (under the identity it had then), and
 * what it wrote or touched, lstat-ed again at the end: a written file must still show the
 * expected inode, size and the mtime it was given, and is saved with the ctime it shows then. A
 * file changed after an lstat gets a new ctime, provided its ctime was older than the lstat by
 * more than one clock tick; so a hashed file younger than RACY_MS is not cached, and the save
 * waits until the run's own changes are RACY_MS old (once per run, when it wrote more than a few
 * files: after a run that wrote few, those younger than RACY_MS are left out and hashed next time,
 * which costs less than the wait). A change
 * made within the same tick as the run's own last change to a file, before that lstat, keeping
 * size and mtime, is not seen (git's index has the same limit); --checksum is the way round it.
 */
import { mkdir, open, readFile, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { realpath } from '../base/bytefs.js';
import { lstatMany } from '../base/lstatmany.js';
import { nameFromBytes, nameToBytes } from '../base/names.js';
import { hash, hashConcat, toHex } from '../model/hash.js';
import { MerkleTree } from '../model/tree.js';
import { ENTRY_HEADER, decodeEntry, encodeEntryParts, entryPath, type FileIdentity } from '../index/cache.js';
import type { TreeCache } from '../index/mdex.js';

/** A file's identity as the receiver keys it: the share's, and its ctime. */
export interface LocalIdentity extends FileIdentity {
  ctimeNs: bigint;
}

const MAGIC = Buffer.from('LCDEST1\n', 'latin1');
export const DESTS_SUBDIR = 'dests-v1';
/** Longer than a kernel's timestamp tick (a jiffy, at most 10 ms) with room for clock skew. */
const RACY_MS = 50n;
/** A cache file larger than this is not read (a million entries take about 120 MB). */
const MAX_FILE = 1 << 30;

interface Entry {
  id: LocalIdentity;
  tree: MerkleTree;
}

interface Candidate {
  tree: MerkleTree;
  /** What lstat must show at save time (ctime is compared only when the run did not touch the file). */
  expect: LocalIdentity;
  touched: boolean;
  /** The entry's bytes in the file read at open, when it is that entry unchanged: saved as they are. */
  raw?: Buffer;
}

/**
 * Written files the save does not wait for (see check): when this few and this small, hashing
 * them again on the next run costs less than waiting RACY_MS for their ctime to settle now.
 */
const REHASH_FILES = 256;
const REHASH_BYTES = 8 * 2 ** 20;

export interface LocalTreeStats {
  hits: number;
  misses: number;
  /** The cache file was there but failed its checks (every entry a miss). */
  corrupt: boolean;
  saved: number;
}

export interface LocalTreeOptions {
  /** The cache directory (the file goes into its dests-v1/). */
  dir: string;
  /** The destination as the sync names it (need not exist yet; its parent must). */
  dest: string;
  /** Trust no entry: hash every file (`sync --checksum`); what is hashed is still saved. */
  checksum?: boolean;
  onWarning?: (message: string) => void;
}

/** Where the cache file of destination `realDest` lives under `dir`. */
export function cacheFileFor(dir: string, realDest: string): string {
  return path.join(dir, DESTS_SUBDIR, toHex(hash(nameToBytes(realDest))));
}

/** A path's identity from a bigint lstat. */
export function identityOf(st: { size: bigint; mtimeNs: bigint; ctimeNs: bigint; ino: bigint; dev: bigint }): LocalIdentity {
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
}

/** Plain comparisons: lstat and decodeCacheFile both give inode and device as unsigned. */
function sameLocal(a: LocalIdentity, b: LocalIdentity): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev;
}

export class LocalTreeCache implements TreeCache {
  readonly stats: LocalTreeStats = { hits: 0, misses: 0, corrupt: false, saved: 0 };
  private readonly candidates = new Map<string, Candidate>();

  private constructor(
    /** The destination's real path: keys are paths relative to it ('.' for itself). */
    private readonly root: string,
    /** The destination as the sync names it (path.resolve), which the writers use. */
    private readonly given: string,
    private readonly file: string,
    /** The file read at open (its checks passed), and where each entry's record starts in it, by key. */
    private readonly loaded: Buffer,
    private readonly entries: Map<string, number>,
    private readonly opts: LocalTreeOptions,
  ) {}

  /** Open the cache of `opts.dest`: read and check its file (missing or damaged: empty). */
  static async open(opts: LocalTreeOptions): Promise<LocalTreeCache> {
    const given = path.resolve(opts.dest);
    // The real path of the parent and the name: the destination itself may not exist yet.
    const root = path.join(await realpath(path.dirname(given)), path.basename(given));
    const file = cacheFileFor(opts.dir, root);
    let buf: Buffer | undefined;
    try {
      buf = await readFile(file);
    } catch {
      buf = undefined;
    }
    const entries = buf && buf.length <= MAX_FILE ? decodeCacheFile(buf, root) : undefined;
    const cache = new LocalTreeCache(root, given, file, entries ? buf! : Buffer.alloc(0), entries ?? new Map(), opts);
    if (buf && !entries) cache.stats.corrupt = true;
    return cache;
  }

  /** Entries read from disk. */
  get size(): number {
    return this.entries.size;
  }

  /** The key of `p`: relative to the destination, under its real or given path; undefined when outside it. */
  private key(p: string): string | undefined {
    // A destination given as a relative path reaches the writers as one.
    if (!path.isAbsolute(p)) p = path.resolve(p);
    for (const base of [this.root, this.given]) {
      if (p === base) return '.';
      if (p.startsWith(base + path.sep)) return p.slice(base.length + 1);
    }
    return undefined;
  }

  /** TreeCache (the walk of the destination): the tree of `p` if its identity is the cached one. */
  get(p: string, id: FileIdentity & { ctimeNs?: bigint }): MerkleTree | undefined {
    const k = this.key(p);
    const at = k === undefined ? undefined : this.entries.get(k);
    const raw = at === undefined || this.opts.checksum || id.ctimeNs === undefined ? undefined : recordIfSame(this.loaded, at, id as LocalIdentity);
    // Decoded only now, and only on a hit: a re-sync of a large tree uses few of its trees beyond their roots.
    const tree = raw && treeOf(raw);
    if (!k || !raw || !tree) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    this.candidates.set(k, { tree, expect: id as LocalIdentity, touched: false, raw });
    return tree;
  }

  /** TreeCache: `p` was hashed with identity `id`, lstat-ed just before. */
  set(p: string, id: FileIdentity & { ctimeNs?: bigint }, tree: MerkleTree): void {
    const k = this.key(p);
    if (k === undefined || id.ctimeNs === undefined) return;
    // Changed within a clock tick of that lstat: a later change might keep this ctime (see the header).
    if (id.ctimeNs > BigInt(Date.now() - Number(RACY_MS)) * 1_000_000n) return;
    this.candidates.set(k, { tree, expect: id as LocalIdentity, touched: false });
  }

  /** The tree of the file at `p` whose bigint lstat is `st`, if cached (what the destination walk found counts). */
  lookup(p: string, st: { size: bigint; mtimeNs: bigint; ctimeNs: bigint; ino: bigint; dev: bigint }): MerkleTree | undefined {
    const k = this.key(p);
    if (k === undefined || this.opts.checksum) return undefined;
    const id = identityOf(st);
    const c = this.candidates.get(k);
    if (c && !c.touched && sameLocal(c.expect, id)) return c.tree;
    return this.get(p, id);
  }

  /**
   * This run made `p` hold `tree` (wrote it, or set its metadata): at save time it must show
   * `expect`'s size, inode, device and mtime; its ctime is whatever the run's last change left.
   */
  wrote(p: string, tree: MerkleTree, expect: FileIdentity): void {
    const k = this.key(p);
    if (k === undefined) return;
    this.candidates.set(k, { tree, expect: { ...expect, ctimeNs: 0n }, touched: true });
  }

  /**
   * Write what this run saw and wrote (see the header comment) to the cache file. Never fails
   * the sync: a cache that cannot be written is a warning.
   */
  async save(): Promise<void> {
    // Every entry read was found unchanged and nothing else was hashed or written: the file is current.
    if (this.candidates.size === this.entries.size && [...this.candidates.values()].every((c) => c.raw !== undefined)) {
      this.stats.saved = this.entries.size;
      const now = new Date();
      await utimes(this.file, now, now).catch(() => undefined); // used: kept by pruneOld
      return;
    }
    await pruneOld(path.dirname(this.file)).catch(() => undefined);
    try {
      const checked = await this.check();
      const out = encodeCacheFile(this.root, checked);
      await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.tmp${process.pid}`;
      try {
        // No fsync: a torn file after a power cut fails its hash and is a miss.
        await writeParts(tmp, out);
        await rename(tmp, this.file);
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        throw e;
      }
      this.stats.saved = checked.size;
    } catch (e) {
      this.opts.onWarning?.(`local tree cache not saved: ${(e as Error).message}`);
    }
  }

  /**
   * What to save: entries this run found unchanged or hashed, as they were (a later change shows
   * in the identity the next run compares), and files it wrote or touched, lstat-ed now: only
   * those that still show the expected identity, with the ctime they have now.
   */
  private async check(): Promise<Map<string, Entry | Buffer>> {
    const out = new Map<string, Entry | Buffer>();
    const touched: [string, Candidate][] = [];
    let touchedBytes = 0;
    for (const [k, c] of this.candidates) {
      if (c.touched) {
        touched.push([k, c]);
        touchedBytes += c.expect.size;
      } else out.set(k, c.raw ?? { id: c.expect, tree: c.tree });
    }
    if (touched.length === 0) return out;
    // The run's own changes are all done: once they are RACY_MS old, a later change shows in ctime.
    // Unless there are few: then those changed within RACY_MS are left out and hashed next time.
    if (touched.length > REHASH_FILES || touchedBytes > REHASH_BYTES) await new Promise((r) => setTimeout(r, Number(RACY_MS)));
    const lstatFrom = BigInt(Date.now()) * 1_000_000n;
    // Synchronous and batched (lstatmany.ts): thousands of lstat calls cost far less so than as promises, and nothing else is waiting.
    const stats = lstatMany(touched.map(([k]) => (k === '.' ? this.root : path.join(this.root, k))));
    for (let i = 0; i < touched.length; i++) {
      const [k, c] = touched[i]!;
      const st = stats[i];
      if (!st || (st.mode & 0o170000) !== 0o100000) continue;
      const id: LocalIdentity = { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
      const e = c.expect;
      if (id.size !== e.size || id.ino !== e.ino || id.dev !== e.dev || id.mtimeNs !== e.mtimeNs) continue;
      if (id.ctimeNs > lstatFrom - RACY_MS * 1_000_000n || c.tree.size !== id.size) continue;
      out.set(k, { id, tree: c.tree });
    }
    return out;
  }
}

/** Cache files of destinations not synced for this long are deleted (a destination of a finished job, a removed disk). */
const UNUSED_FOR_MS = 30 * 86_400_000;

/** Delete the cache files in `dir` that no sync has used for UNUSED_FOR_MS (and temporary files of crashed saves). */
async function pruneOld(dir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(dir)) {
    const p = path.join(dir, name);
    const st = await stat(p).catch(() => undefined);
    const age = st ? now - st.mtimeMs : 0;
    if (st?.isFile() && (age > UNUSED_FOR_MS || (name.includes('.tmp') && age > 3600_000))) await unlink(p).catch(() => undefined);
  }
}

/**
 * The cache file: magic, destination path, entries, BLAKE3 of all before it. As parts, to be written
 * in order: the trees' nodes are not copied (a whole file of big trees held twice was tens of MiB).
 */
export function encodeCacheFile(root: string, entries: ReadonlyMap<string, Entry | Buffer>): Buffer[] {
  const rootBytes = nameToBytes(root);
  const head = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(rootBytes.length, MAGIC.length);
  const parts: Buffer[] = [head, rootBytes];
  for (const [k, e] of entries) {
    if (Buffer.isBuffer(e)) {
      parts.push(e);
      continue;
    }
    const body = encodeEntryParts(k, e.id, e.tree);
    const pre = Buffer.alloc(12);
    pre.writeUInt32BE(body.reduce((n, b) => n + b.length, 0) + 8, 0);
    pre.writeBigInt64BE(e.id.ctimeNs, 4);
    parts.push(pre, ...body);
  }
  parts.push(hashConcat(parts));
  return parts;
}

/** Write `parts` in order to a new file `p` (mode 0600), a few hundred at a time (writev has a limit). */
async function writeParts(p: string, parts: readonly Buffer[]): Promise<void> {
  const fh = await open(p, 'w', 0o600);
  try {
    for (let i = 0; i < parts.length; i += 512) {
      const batch = parts.slice(i, i + 512);
      const want = batch.reduce((n, b) => n + b.length, 0);
      const { bytesWritten } = await fh.writev(batch);
      // A short write (full disk) would leave a torn file, which fails its hash on load; say so now.
      if (bytesWritten !== want) throw new Error(`short write to ${p}`);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Check a cache file of destination `root` (its hash, the destination, every record's length and
 * header) and index it: where each entry's record starts, by key; undefined when any check fails.
 * Trees are checked when used (treeOf): one that fails is a miss.
 */
export function decodeCacheFile(buf: Buffer, root: string): Map<string, number> | undefined {
  if (buf.length < MAGIC.length + 4 + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const end = buf.length - 32;
  if (!hash(buf.subarray(0, end)).equals(buf.subarray(end))) return undefined;
  let o = MAGIC.length;
  const rootLen = buf.readUInt32BE(o);
  o += 4;
  if (o + rootLen > end || nameFromBytes(buf.subarray(o, o + rootLen)) !== root) return undefined;
  o += rootLen;
  const out = new Map<string, number>();
  while (o < end) {
    if (o + 4 > end) return undefined;
    const len = buf.readUInt32BE(o);
    if (len < 8 + ENTRY_HEADER || o + 4 + len > end) return undefined;
    const key = entryPath(buf.subarray(o + 12, o + 4 + len));
    if (key === undefined) return undefined;
    out.set(key, o);
    o += 4 + len;
  }
  return out;
}

/** Where a record's identity is: its ctime (RECORD_CTIME, 8 bytes) and size, mtime, inode, device (RECORD_ID, 32 bytes). */
const RECORD_CTIME = 4;
const RECORD_ID = 12 + ENTRY_HEADER - 36;
/** Laid out as a record's identity fields, to compare them as bytes (no BigInt read back per entry). */
const scratch = Buffer.alloc(40);

/** The record at `at` in `buf` (a checked cache file) if its identity is `id`'s, else undefined. */
function recordIfSame(buf: Buffer, at: number, id: LocalIdentity): Buffer | undefined {
  scratch.writeBigInt64BE(id.ctimeNs, 0);
  scratch.writeBigUInt64BE(BigInt(id.size), 8);
  scratch.writeBigInt64BE(id.mtimeNs, 16);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.ino), 24);
  scratch.writeBigUInt64BE(BigInt.asUintN(64, id.dev), 32);
  if (buf.compare(scratch, 0, 8, at + RECORD_CTIME, at + RECORD_CTIME + 8) !== 0) return undefined;
  if (buf.compare(scratch, 8, 40, at + RECORD_ID, at + RECORD_ID + 32) !== 0) return undefined;
  return buf.subarray(at, at + 4 + buf.readUInt32BE(at));
}

/** The tree a record holds, checked (node count, parents); undefined when it is not a valid one. */
function treeOf(record: Buffer): MerkleTree | undefined {
  const entry = decodeEntry(record.subarray(12));
  if (!entry) return undefined;
  try {
    const tree = MerkleTree.fromNodes(entry.id.size, entry.nodes);
    return tree.verify() ? tree : undefined;
  } catch {
    return undefined;
  }
}
