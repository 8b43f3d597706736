/**
 * The index (the C tool's "mdex"): everything a share can send, keyed by hash.
 *
 * Walking a file or directory records, for each regular file, its chunks (keyed
 * by leaf hash), its tree object parts (keyed by the part hashes) and an alias
 * (BLAKE3 of the share path); for directories and symlinks their objects and
 * aliases. A share maps a joined group back to an object by the 14-byte prefix
 * the group address carries.
 *
 * Names are read as bytes and kept in the string form of names.ts, so a file
 * whose name is not UTF-8 is indexed, hashed and served under its exact bytes.
 */
import { closeSync, lstatSync, openSync, type BigIntStats } from 'node:fs';
import { readFullSync } from '../base/readfull.js';
import { open, readdir, readlink, realpath, type FileHandle } from '../base/bytefs.js';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { aliasHash, fileEntryHash, symlinkEntryHash } from '../model/entry.js';
import type { Hash } from '../model/hash.js';
import { metaFromStats, typeOfMode, type EntryType, type FileMeta } from '../model/meta.js';
import { encodeNetTree, splitParts } from '../wire/nettree.js';
import { shareDirHash } from '../wire/verify.js';
import { MerkleTree, CHUNK_SIZE } from '../model/tree.js';
import { ChunkTable } from './chunktable.js';
import { ObjectTable } from './objecttable.js';
import { GROUP_PREFIX_BYTES } from '../wire/address.js';
import { Limiter } from '../base/limit.js';
import { RAW_FIELDS, lstatMany, lstatManyRaw, rawStat, type PathStat } from '../base/lstatmany.js';
import { displayName, fsPath, nameFromBytes, nameToBytes } from '../base/names.js';
import { bundleObjects, type BundleObject } from './bundles.js';

/** One file, directory or symlink found by the walk. */
export interface IndexRecord {
  type: EntryType;
  /** Path relative to the parent of the shared item; starts with the item's basename. */
  sharePath: string;
  /** Absolute path on this host. */
  localPath: string;
  meta: FileMeta;
  /** File length; for dirs and links the length of their object. */
  size: number;
  /** Entry hash (for files: the hash of tree part 0). */
  hash: Hash;
  /** Files only. */
  tree?: MerkleTree;
  /** Symlinks only: the target (string form of names.ts). */
  target?: string;
  /** Files of more than one tree part only: hashes of parts 0..n-1 (a one-part file's is `hash`; an array a file cost a share about 100 bytes). */
  partHashes?: Hash[];
}

/** Chunk bytes live in a file; read (and re-verified) at send time. */
export type ChunkObject = { kind: 'chunk'; hash: Hash; localPath: string; offset: number; length: number; record: IndexRecord };

/** Something the share can send on a group. */
export type IndexObject =
  | ChunkObject
  /** A file tree part, a directory or a symlink object, held in memory; sent with OTI. */
  | { kind: 'tree'; hash: Hash; bytes: Buffer; record: IndexRecord }
  /**
   * A root's signature (signature.ts): made for this share, not found by the walk, so it has no
   * record; held in memory and sent with OTI as tree objects are. `name` is what logs and status call it.
   */
  | { kind: 'signature'; hash: Hash; bytes: Buffer; root: ShareRoot; name: string }
  /** A part of a directory's bundle (bundles.ts, an lcsync extension): its bytes are made when sent. */
  | BundleObject;

/** What logs and status call an object: its entry's share path, or a signature's name. */
export function objectName(o: IndexObject): string {
  if (o.kind === 'bundle') return `${o.record.sharePath} (bundle ${o.part + 1}/${o.parts})`;
  return o.kind === 'signature' ? o.name : o.record.sharePath;
}

export interface ShareRoot {
  /** The path as given, resolved. */
  localPath: string;
  /** Basename of the shared item: what `lcsync sync NAME` asks for. */
  shareName: string;
  type: EntryType;
  hash: Hash;
}

export interface IndexOptions {
  /** Called for skipped special files and other non-fatal findings. */
  onWarning?: (message: string) => void;
  /** Called with each record as it is indexed. */
  onRecord?: (record: IndexRecord) => void;
  /** Called with bytes hashed so far, for progress. */
  onBytes?: (n: number) => void;
  /** Reuse a previous tree for a file when its identity is unchanged (see cache.ts). */
  treeCache?: TreeCache;
  /** Hashes large files on worker threads (see hashpool.ts); files below its threshold stay on this thread. */
  leafHasher?: LeafHasher;
  /** Leave out directory entries with these names (a receiver's own temporary files). */
  skipName?: (name: string) => boolean;
  /** Publish a bundle per directory (bundles.ts): what a share does unless told not to; a receiver's local index does not. */
  bundles?: boolean;
  /** Records and entry hashes only, no objects to serve (a receiver comparing its copy): files skip encoding their tree objects. */
  entriesOnly?: boolean;
  /** Directories as a receiver last saw them (sync/localtrees.ts): one found unchanged is not walked file by file. */
  listings?: DirListings;
}

/** A directory's identity as lstat shows it. */
export interface DirIdentity {
  ino: bigint;
  dev: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/**
 * The children of a directory as they were when a receiver last saw it, in byte order of their
 * names, with the entry hash of each that is not a directory (sync/localtrees.ts keeps them).
 */
export interface DirListing {
  readonly count: number;
  /** The children's paths under `abs`, each followed by a NUL: what lstatManyRaw takes. */
  paths(abs: string): Buffer;
  name(i: number): string;
  isDir(i: number): boolean;
  /** Whether child `i` (not a directory) shows in `words` (an lstatManyRaw result) every field but atime as it was. */
  same(words: Int32Array, i: number): boolean;
  /** The entry hash of child `i` (not a directory), valid while `same` holds. */
  hash(i: number): Hash;
}

export interface DirListings {
  /** The listing of the directory `abs` whose lstat shows `id`, if that shows it unchanged since (same names). */
  get(abs: string, id: DirIdentity): DirListing | undefined;
  /** Every child of `abs` showed as `listing` has it: the walk took their entry hashes from it. */
  used(abs: string, listing: DirListing): void;
}

/** Builds trees of large files elsewhere (HashPool in hashpool.ts). */
export interface LeafHasher {
  /** Files of at least this many bytes go to treeFromHandle. */
  readonly threshold: number;
  treeFromHandle(fh: FileHandle, size: number, onBytes?: (n: number) => void): Promise<MerkleTree>;
}

/** Keyed by a file's identity; ctimeNs is given too, for caches that key by it (a receiver's, sync/localtrees.ts). */
export interface TreeCache {
  get(localPath: string, st: { size: number; mtimeNs: bigint; ino: bigint; dev: bigint; ctimeNs?: bigint }): MerkleTree | undefined;
  set(localPath: string, st: { size: number; mtimeNs: bigint; ino: bigint; dev: bigint; ctimeNs?: bigint }, tree: MerkleTree): void;
}

/**
 * Files up to this size are read with synchronous calls on the walking thread
 * (see smallFileTree); larger ones with promise reads, up to 8 at once, or by a
 * LeafHasher. Two chunks: one or two reads of a cached file.
 */
const SMALL_FILE = 2 * CHUNK_SIZE;
/** Trees of at least this many bytes of nodes are kept as a view of the file's tree object, not beside it. */
const SHARED_TREE_BYTES = 1 << 16;
/** Children of a directory lstat-ed in one call (lstatmany.ts). */
const STAT_BATCH = 256;
/** Longest stretch of synchronous walking before the event loop gets a turn. */
const YIELD_MS = 5;

/** FileMeta from a batched lstat (as metaFromStats from a BigIntStats). */
export function metaFromPathStat(st: PathStat): FileMeta {
  const ns = 1_000_000_000n;
  return {
    mode: st.mode & 0xffff,
    uid: st.uid,
    gid: st.gid,
    mtimeSec: st.mtimeNs / ns,
    mtimeNsec: st.mtimeNs % ns,
    atimeSec: st.atimeNs / ns,
    atimeNsec: st.atimeNs % ns,
  };
}

export class ShareIndex {
  readonly roots: ShareRoot[] = [];
  readonly records: IndexRecord[] = [];
  /** Objects other than chunks, and aliases, by hash and by prefix (objecttable.ts). */
  private readonly objects = new ObjectTable<IndexObject>();
  /** Chunks are kept apart, compactly (chunktable.ts): a large file has a great many. */
  private readonly chunks = new ChunkTable();
  /** Large files being read at once while indexing. */
  private readonly fileSlots = new Limiter(8);
  /** Where small files are read (see SMALL_FILE). */
  private readonly smallBuf = Buffer.allocUnsafe(SMALL_FILE);
  /** When the walk last let the event loop run (see yieldNow). */
  private lastYield = performance.now();

  /** Walk `paths` and index everything below them. */
  static async build(paths: readonly string[], opts: IndexOptions = {}): Promise<ShareIndex> {
    const idx = new ShareIndex();
    for (const p of paths) await idx.add(p, opts);
    return idx;
  }

  /**
   * Index `given`. `sharePath` overrides the share path of the top entry (by
   * default its basename): a receiver indexes its destination under the
   * sender's share path so that entry hashes compare.
   */
  async add(given: string, opts: IndexOptions & { sharePath?: string } = {}): Promise<ShareRoot> {
    let abs: string;
    try {
      abs = await realpath(given);
    } catch (e) {
      throw fromSystemError(e, displayName(given));
    }
    const shareName = opts.sharePath ?? (path.basename(abs) || '/');
    const rec = await this.walk(abs, shareName, 0, opts);
    if (!rec) throw new LcsyncError('USAGE', `${displayName(given)}: a special file (device, fifo or socket); lcsync shares only regular files, directories and symlinks`);
    const root: ShareRoot = { localPath: abs, shareName, type: rec.type, hash: rec.hash };
    this.roots.push(root);
    return root;
  }

  get objectCount(): number {
    return this.objects.size + this.chunks.size;
  }

  /** Look an object up by full hash, following an alias. */
  get(h: Hash): IndexObject | undefined {
    return this.objects.get(h) ?? this.chunks.get(h);
  }

  /** Look an object up by the 14 hash bytes that a group address carries. */
  getByPrefix(prefix: Uint8Array): IndexObject | undefined {
    const o = this.objects.getByPrefix(prefix.subarray(0, GROUP_PREFIX_BYTES));
    return o.found ? o.obj : this.chunks.getByPrefix(prefix);
  }

  /** Every hash the index answers to (objects and aliases). */
  *hashes(): Iterable<Hash> {
    yield* this.objects.hashes();
    yield* this.chunks.hashes();
  }

  /**
   * Serve the signature `bytes` of `root` under `key` (signature.ts), or with `what` = 'manifest'
   * its signed manifest (manifest.ts). Neither is part of any directory, so no entry hash covers
   * them; receivers check them against the root and the trusted key instead.
   */
  publishSignature(root: ShareRoot, key: Hash, bytes: Buffer, what: 'signature' | 'manifest' = 'signature'): void {
    this.putObject({ kind: 'signature', hash: key, bytes, root, name: `${root.shareName} (${what})` });
  }

  private putObject(o: IndexObject): void {
    // Identical objects anywhere in the share are one object; the last one indexed wins, as in the C mdex.
    this.objects.put(o.hash, o);
  }

  private putAlias(alias: Hash, target: Hash): void {
    this.objects.alias(alias, target);
  }

  /**
   * Index one entry. Synchronous (a record, or undefined for a skipped special
   * file) when nothing needs waiting for: a small or cached file; a promise
   * for directories, symlinks and large files. A bad entry throws (or rejects).
   */
  private walk(abs: string, sharePath: string, depth: number, opts: IndexOptions, pre?: PathStat): IndexRecord | undefined | Promise<IndexRecord | undefined> {
    let st: PathStat | BigIntStats;
    if (pre) st = pre;
    else {
      try {
        st = lstatSync(fsPath(abs), { bigint: true });
      } catch (e) {
        throw fromSystemError(e, displayName(abs));
      }
    }
    const meta = pre ? metaFromPathStat(pre) : metaFromStats(st as BigIntStats);
    const type = typeOfMode(meta.mode);
    if (!type) {
      // Only inside a directory: a special file given as the path itself is an error, reported once by add().
      if (depth > 0) opts.onWarning?.(`skipping special file ${displayName(abs)}`);
      return undefined;
    }
    if (type === 'symlink') return this.indexSymlink(abs, sharePath, meta).then((rec) => this.recorded(rec, opts));
    if (type === 'dir') return this.indexDir(abs, sharePath, meta, depth, opts, st).then((rec) => this.recorded(rec, opts));
    const size = Number(st.size);
    const id = { size, mtimeNs: st.mtimeNs, ino: st.ino, dev: st.dev, ctimeNs: st.ctimeNs };
    const cached = opts.treeCache?.get(abs, id);
    if (cached || size <= SMALL_FILE) {
      const rec = this.fileRecord(abs, sharePath, meta, size, cached ?? this.smallFileTree(abs, size), opts.entriesOnly);
      if (!cached) opts.treeCache?.set(abs, id, rec.tree!);
      opts.onBytes?.(size);
      return this.recorded(rec, opts);
    }
    return this.fileSlots.run(() => this.largeFileTree(abs, size, opts)).then((tree) => {
      const rec = this.fileRecord(abs, sharePath, meta, size, tree, opts.entriesOnly);
      // The record's tree (a view of its tree object for a large file), not the one hashed: one copy of the nodes.
      opts.treeCache?.set(abs, id, rec.tree!);
      return this.recorded(rec, opts);
    });
  }

  private recorded(rec: IndexRecord, opts: IndexOptions): IndexRecord {
    this.records.push(rec);
    opts.onRecord?.(rec);
    return rec;
  }

  /** A file's record and objects, from its tree. */
  private fileRecord(abs: string, sharePath: string, meta: FileMeta, size: number, tree: MerkleTree, entriesOnly = false): IndexRecord {
    const root = size === 0 ? undefined : tree.root;
    if (entriesOnly) return { type: 'file', sharePath, localPath: abs, meta, size, hash: fileEntryHash(sharePath, root, 0, meta), tree };
    const obj = encodeNetTree({ type: 'file', size, meta, name: sharePath, payload: size === 0 ? Buffer.alloc(0) : tree.nodes });
    // A large file's nodes are held once, in its tree object (the parts served are views of it too).
    if (tree.nodes.length >= SHARED_TREE_BYTES) tree = MerkleTree.fromNodes(size, obj.subarray(obj.length - tree.nodes.length), true);
    const parts = splitParts(obj);
    const partHashes = parts.map((_, z) => fileEntryHash(sharePath, root, z, meta));
    const rec: IndexRecord = { type: 'file', sharePath, localPath: abs, meta, size, hash: partHashes[0]!, tree, partHashes: partHashes.length > 1 ? partHashes : undefined };
    parts.forEach((bytes, z) => this.putObject({ kind: 'tree', hash: partHashes[z]!, bytes, record: rec }));
    if (size > 0) this.chunks.add(rec);
    this.putAlias(aliasHash(sharePath), rec.hash);
    return rec;
  }

  /**
   * The tree of a file of at most SMALL_FILE bytes, read with synchronous calls
   * into one reused buffer. For such files the I/O is the whole cost, and each
   * promise call (open, read, close) is a thread-pool round trip plus garbage;
   * synchronous calls on a cached file take microseconds. The event loop still
   * runs between files (yieldNow in indexDir).
   */
  private smallFileTree(abs: string, size: number): MerkleTree {
    let fd: number;
    try {
      fd = openSync(fsPath(abs), 'r');
    } catch (e) {
      throw fromSystemError(e, `cannot read ${displayName(abs)}`);
    }
    let got: number;
    try {
      got = readFullSync(fd, this.smallBuf, size, 0);
    } catch (e) {
      throw fromSystemError(e, `cannot read ${displayName(abs)}`);
    } finally {
      closeSync(fd);
    }
    if (got < size) {
      throw new LcsyncError('IO', `cannot read ${displayName(abs)}: file changed while hashing (expected ${size} bytes, ended at ${got})`);
    }
    return MerkleTree.fromBuffer(this.smallBuf.subarray(0, size));
  }

  private async largeFileTree(abs: string, size: number, opts: IndexOptions): Promise<MerkleTree> {
    let fh;
    try {
      fh = await open(abs, 'r');
    } catch (e) {
      throw fromSystemError(e, `cannot read ${displayName(abs)}`);
    }
    try {
      const pool = opts.leafHasher;
      return pool && size >= pool.threshold
        ? await pool.treeFromHandle(fh, size, opts.onBytes)
        : await MerkleTree.fromHandle(fh, size, opts.onBytes);
    } catch (e) {
      // Tree errors (a file that shrank) do not know the path; name it here.
      if (e instanceof LcsyncError) throw new LcsyncError(e.code, `cannot read ${displayName(abs)}: ${e.message}`, { cause: e });
      throw fromSystemError(e, `cannot read ${displayName(abs)}`);
    } finally {
      await fh.close();
    }
  }

  /**
   * Let the event loop run (timers, sockets of a share that is re-indexing);
   * indexDir calls this once YIELD_MS of synchronous walking have passed.
   */
  private async yieldNow(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.lastYield = performance.now();
  }

  private async indexSymlink(abs: string, sharePath: string, meta: FileMeta): Promise<IndexRecord> {
    let target: Buffer;
    try {
      target = await readlink(abs, { encoding: 'buffer' });
    } catch (e) {
      throw fromSystemError(e, `cannot read link ${displayName(abs)}`);
    }
    const hash = symlinkEntryHash(sharePath, meta);
    const bytes = encodeNetTree({ type: 'symlink', size: 0, meta, name: sharePath, payload: target });
    const rec: IndexRecord = { type: 'symlink', sharePath, localPath: abs, meta, size: bytes.length, hash, target: nameFromBytes(target) };
    this.putObject({ kind: 'tree', hash, bytes, record: rec });
    this.putAlias(aliasHash(sharePath), hash);
    return rec;
  }

  private async indexDir(abs: string, sharePath: string, meta: FileMeta, depth: number, opts: IndexOptions, id: DirIdentity): Promise<IndexRecord> {
    const listing = opts.listings?.get(abs, id);
    const known = listing && (await this.unchangedDir(abs, sharePath, meta, depth, opts, listing));
    if (known) return known;
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (e) {
      throw fromSystemError(e, `cannot read directory ${displayName(abs)}`);
    }
    // Byte-wise order, as strcmp in the C locale; hashed in descending order (the C tool's `while (e--)`).
    if (opts.skipName) names = names.filter((n) => !opts.skipName!(n));
    // Each name's bytes once, not twice per comparison.
    const keyed = names.map((name) => ({ name, bytes: nameToBytes(name) }));
    keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    names = keyed.map((k) => k.name);
    // Gone since the directory was listed (deleted, or renamed over by a writer): not part of the tree.
    const vanished = (e: unknown): boolean =>
      e instanceof LcsyncError && e.code === 'NOT_FOUND' && (e.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    // Children are started in turn: small files and stats finish synchronously, large files
    // and subdirectories go on concurrently (file reads bounded by fileSlots); the event loop
    // gets a turn every YIELD_MS. The hash list keeps the descending order.
    const pending: (IndexRecord | undefined | Promise<IndexRecord | undefined>)[] = [];
    // The children's lstat in batches (lstatmany.ts): a BigIntStats per child cost more than walking it.
    // A child it cannot lstat is looked at again by walk, which says why (or skips it if it vanished).
    // STAT_BATCH at a time, so that a huge directory does not hold the event loop for all of them.
    let stats: (PathStat | undefined)[] = [];
    let statFrom = 0;
    try {
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        const childPath = path.join(abs, name);
        if (i - statFrom >= stats.length) {
          statFrom = i;
          stats = lstatMany(names.slice(i, i + STAT_BATCH).map((n) => path.join(abs, n)));
        }
        let child: IndexRecord | undefined | Promise<IndexRecord | undefined>;
        try {
          child = this.walk(childPath, `${sharePath}/${name}`, depth + 1, opts, stats[i - statFrom]);
        } catch (e) {
          if (!vanished(e)) throw e;
          child = undefined;
        }
        if (child instanceof Promise) {
          child = child.catch((e: unknown) => {
            if (vanished(e)) return undefined;
            throw e;
          });
        }
        pending.push(child);
        if (performance.now() - this.lastYield >= YIELD_MS) await this.yieldNow();
      }
    } catch (e) {
      // Children still running fail or finish on their own; their failures are not news.
      for (const p of pending) if (p instanceof Promise) p.catch(() => {});
      throw e;
    }
    const found = await Promise.all(pending);
    const children: Hash[] = [];
    for (let i = found.length - 1; i >= 0; i--) {
      const child = found[i];
      if (child) children.push(child.hash);
    }
    return this.dirRecord(abs, sharePath, meta, depth, opts, children, found);
  }

  /**
   * A directory that `listing` says is unchanged: its children lstat-ed in one call and compared
   * with the listing, subdirectories walked (each may be unchanged too), the other children's
   * entry hashes taken from the listing. Undefined when any child differs (or vanished): then
   * the directory is walked as any other.
   */
  private async unchangedDir(abs: string, sharePath: string, meta: FileMeta, depth: number, opts: IndexOptions, listing: DirListing): Promise<IndexRecord | undefined> {
    const n = listing.count;
    const out = new BigInt64Array(n * RAW_FIELDS);
    if (n > 0 && !lstatManyRaw(listing.paths(abs), out)) return undefined;
    const words = new Int32Array(out.buffer);
    const subdirs: { i: number; st: PathStat }[] = [];
    for (let i = 0; i < n; i++) {
      if (listing.isDir(i)) {
        const st = rawStat(out, i);
        if (!st || (st.mode & 0o170000) !== 0o040000) return undefined;
        subdirs.push({ i, st });
      } else if (!listing.same(words, i)) return undefined;
    }
    const hashes: Hash[] = new Array<Hash>(n);
    try {
      const recs = await Promise.all(subdirs.map(({ i, st }) => this.walk(path.join(abs, listing.name(i)), `${sharePath}/${listing.name(i)}`, depth + 1, opts, st)));
      subdirs.forEach(({ i }, j) => (hashes[i] = recs[j]!.hash));
    } catch (e) {
      // A subdirectory that went away (or changed type) since its lstat: walked as any other.
      if (e instanceof LcsyncError && e.code === 'NOT_FOUND') return undefined;
      throw e;
    }
    const children: Hash[] = [];
    for (let i = n - 1; i >= 0; i--) children.push(hashes[i] ?? listing.hash(i));
    opts.listings!.used(abs, listing);
    return this.dirRecord(abs, sharePath, meta, depth, opts, children, []);
  }

  /** A directory's record and objects, from its children's entry hashes (in hashed order) and records. */
  private dirRecord(abs: string, sharePath: string, meta: FileMeta, depth: number, opts: IndexOptions, children: Hash[], found: readonly (IndexRecord | undefined)[]): IndexRecord {
    const hash = shareDirHash(sharePath, meta, children, depth === 0);
    const bytes = encodeNetTree({ type: 'dir', size: 0, meta, name: sharePath, payload: Buffer.concat(children) });
    const rec: IndexRecord = { type: 'dir', sharePath, localPath: abs, meta, size: bytes.length, hash };
    this.putObject({ kind: 'tree', hash, bytes, record: rec });
    const alias = aliasHash(sharePath);
    this.putAlias(alias, hash);
    if (opts.bundles) {
      const members: { rec: IndexRecord; obj: Buffer }[] = [];
      for (const child of found) {
        const o = child && this.objects.get(child.hash);
        if (o?.kind === 'tree') members.push({ rec: child!, obj: o.bytes });
      }
      for (const b of bundleObjects(rec, alias, members)) this.putObject(b);
    }
    return rec;
  }
}

