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
 * used, so a stale entry is a miss. The file's layout, and the checks on load: destfile.ts. A save
 * writes what was found unchanged as the bytes that were read.
 *
 * A directory whose ctime, mtime, inode and device are the recorded ones has the recorded names
 * (creating, removing or renaming an entry changes its mtime and ctime): the walk (../index/mdex.ts
 * unchangedDir) lstats its children in one call and, when each shows every field but atime as
 * recorded, takes the files' entry hashes from the listing. The save lists again every directory
 * the walk did not find unchanged and every one the run changed, under the same rule as files: a
 * directory or child changed within RACY_MS of the save's start is not listed (walked next time).
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
import { mkdir, open, readFile, readdir as readdirNames, rename, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { readdirSync, realpath } from '../base/bytefs.js';
import { RAW_FIELDS, lstatMany, lstatManyRaw, lstatOne, rawStat, type PathStat } from '../base/lstatmany.js';
import { claimTurn } from '../base/turnmark.js';
import { S_IFDIR, S_IFMT, S_IFREG } from '../model/meta.js';
import { nameToBytes } from '../base/names.js';
import { hash, toHex } from '../model/hash.js';
import { fileEntryHash } from '../model/entry.js';
import { MerkleTree } from '../model/tree.js';
import { entryPath, type FileIdentity } from '../index/cache.js';
import { metaFromPathStat, type DirIdentity, type DirListings, type TreeCache } from '../index/mdex.js';
import { isTempName } from './writer.js';
import { CandidateTable, type Candidate } from './candidates.js';
import {
  Listing, NUL, OLD_MAGIC, RECORD_STAT, decodeCacheFile, dirIfSame, encodeCacheFile, encodeDirRecord, encodeFileRecord, recordIdentity, recordIfSame, treeOf,
  type Decoded, type Entry, type LocalIdentity,
} from './destfile.js';

export { decodeCacheFile, encodeCacheFile, type LocalIdentity } from './destfile.js';

export const DESTS_SUBDIR = 'dests-v1';
/** Longer than a kernel's timestamp tick (a jiffy, at most 10 ms) with room for clock skew. */
const RACY_MS = 50n;
/** A cache file larger than this is not read (a million entries take about 120 MB). */
const MAX_FILE = 1 << 30;

/**
 * Written files the save does not wait for (see check): when this few and this small, hashing
 * them again on the next run costs less than waiting RACY_MS for their ctime to settle now.
 */
const REHASH_FILES = 256;
const REHASH_BYTES = 8 * 2 ** 20;

export interface LocalTreeStats {
  hits: number;
  misses: number;
  /** Directories whose listing showed them unchanged: their files were not looked at one by one (counted in hits). */
  listed: number;
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
  readonly stats: LocalTreeStats = { hits: 0, misses: 0, listed: 0, corrupt: false, saved: 0 };
  /** What the save may write of each file this run looked at or wrote (candidates.ts). */
  private readonly candidates: CandidateTable;
  /** Directories the walk asked about, and those it found unchanged (with their listings). */
  private readonly walked = new Set<string>();
  private readonly unchanged = new Map<string, { abs: string; listing: Listing }>();
  /** The walk's side of the directory listings (../index/mdex.ts DirListings). */
  readonly listings: DirListings = {
    get: (abs, id) => this.listing(abs, id),
    used: (abs, l) => {
      const k = this.key(abs);
      if (k === undefined || !(l instanceof Listing)) return;
      this.unchanged.set(k, { abs, listing: l });
      this.stats.hits += l.files;
      this.stats.listed++;
    },
  };

  private constructor(
    /** The destination's real path: keys are paths relative to it ('.' for itself). */
    private readonly root: string,
    /** The destination as the sync names it (path.resolve), which the writers use. */
    private readonly given: string,
    private readonly file: string,
    /** The file read at open (its checks passed), and where its records are. */
    private readonly loaded: Buffer,
    private readonly decoded: Decoded,
    private readonly opts: LocalTreeOptions,
  ) {
    this.candidates = new CandidateTable(loaded);
  }

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
    const decoded = buf && buf.length <= MAX_FILE ? decodeCacheFile(buf, root) : undefined;
    const cache = new LocalTreeCache(root, given, file, decoded ? buf! : Buffer.alloc(0), decoded ?? { files: new Map(), dirs: new Map() }, opts);
    // A file of the format before directory listings is not damaged, only a miss (and rewritten by the save).
    if (buf && !decoded && !buf.subarray(0, OLD_MAGIC.length).equals(OLD_MAGIC)) cache.stats.corrupt = true;
    return cache;
  }

  /**
   * The directories the walk found unchanged (as it named them), each with its files' names and
   * entry hashes (hex): the part of the destination's entries it never looked at one by one (local.ts).
   */
  *unchangedFiles(): Iterable<[string, Iterable<[string, string]>]> {
    for (const { abs, listing } of this.unchanged.values()) yield [abs, listing.fileHashes()];
  }

  /** As unchangedFiles, for the one directory `dir` (named as the walk or the writers name it), if the walk found it unchanged. */
  unchangedFilesIn(dir: string): [string, Iterable<[string, string]>] | undefined {
    const k = this.key(dir);
    const u = k === undefined ? undefined : this.unchanged.get(k);
    return u && [u.abs, u.listing.fileHashes()];
  }

  /** File entries read from disk. */
  get size(): number {
    let n = this.decoded.files.size;
    for (const d of this.decoded.dirs.values()) n += d.files;
    return n;
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

  /** Where the record of file `k` starts, if the file read at open has one. */
  private fileRecord(k: string): number | undefined {
    const at = this.decoded.files.get(k);
    if (at !== undefined) return at;
    const d = this.decoded.dirs.get(path.dirname(k));
    if (!d || d.indexed) return undefined;
    d.indexed = true;
    for (let o = d.filesAt; o < d.end; o += 4 + this.loaded.readUInt32BE(o)) {
      // One whose header does not hold together is left out: a miss.
      const fk = entryPath(this.loaded.subarray(o + 12, o + 4 + this.loaded.readUInt32BE(o)));
      if (fk !== undefined) this.decoded.files.set(fk, o);
    }
    return this.decoded.files.get(k);
  }

  /** DirListings.get: the listing of directory `abs` if its identity is the recorded one. */
  private listing(abs: string, id: DirIdentity): Listing | undefined {
    const k = this.key(abs);
    if (k === undefined) return undefined;
    this.walked.add(k);
    const d = this.decoded.dirs.get(k);
    if (!d || this.opts.checksum || !dirIfSame(this.loaded, d.at, id)) return undefined;
    const l = new Listing(this.loaded, d);
    return l.valid ? l : undefined;
  }

  /** TreeCache (the walk of the destination): the tree of `p` if its identity is the cached one. */
  get(p: string, id: FileIdentity & { ctimeNs?: bigint }): MerkleTree | undefined {
    const k = this.key(p);
    const at = k === undefined || this.opts.checksum ? undefined : this.fileRecord(k);
    const raw = at === undefined || id.ctimeNs === undefined ? undefined : recordIfSame(this.loaded, at, id as LocalIdentity);
    // Decoded only now, and only on a hit.
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
    // Not a spread of `expect`: a spread object here had a hidden class of its own, one per written
    // file (17 MB of them at 84,000 files).
    const id: LocalIdentity = { size: expect.size, mtimeNs: expect.mtimeNs, ctimeNs: 0n, ino: expect.ino, dev: expect.dev };
    this.candidates.set(k, { tree, expect: id, touched: true });
  }

  /**
   * Write what this run saw and wrote (see the header comment) to the cache file. Never fails
   * the sync: a cache that cannot be written is a warning. With `after` (the run's files being made
   * durable), the cache file is written only once that settles, and the listing runs meanwhile.
   */
  async save(after?: Promise<unknown>): Promise<void> {
    // The whole destination was found unchanged, directory by directory: the file is current.
    if (this.unchanged.has('.') && this.candidates.size === 0 && this.walked.size === this.unchanged.size) {
      this.stats.saved = this.stats.hits;
      const now = new Date();
      await utimes(this.file, now, now).catch(() => undefined); // used: kept by pruneOld
      return;
    }
    // The old files go while settle() waits for the run's changes to settle (RACY_MS), not before it:
    // a stat per cache file (hundreds after many runs into new places) ahead of a 50 ms wait.
    const pruned = pruneOld(path.dirname(this.file)).catch(() => undefined);
    try {
      const files = this.collect();
      // Directories to list again: those the walk did not find unchanged, and those the run changed (and their parents).
      const relist = new Set<string>();
      for (const k of this.walked) if (!this.unchanged.has(k)) relist.add(k);
      for (const k of this.candidates.keys()) for (let d = path.dirname(k); !relist.has(d); d = path.dirname(d)) {
        relist.add(d);
        if (d === '.') break;
      }
      const parts: Buffer[] = [];
      let saved = 0;
      for (const [k, { listing }] of this.unchanged) {
        if (relist.has(k)) continue;
        parts.push(this.loaded.subarray(listing.place.at, listing.place.end));
        saved += listing.files;
      }
      // Listed while the changes settle, each listing confirmed after (see DirDraft): listing and
      // records (thousands of entry hashes after a first sync) cost more than the wait itself.
      // Without a wait, listed once, after. Only as many as the wait lasts: a draft is held until
      // confirmed, and drafts of all 100 directories of a 100,000-file first sync (names, lstats,
      // records: about 50 MB) raised the receiver's peak; those past the wait are listed after it,
      // one at a time, which costs the same.
      const waits = mustWait(files);
      const settling = settle(waits);
      const draftUntil = Date.now() + Number(RACY_MS);
      const drafts = [...relist].map((k) => [k, waits && Date.now() < draftUntil ? this.listDir(k, files, DRAFT_SETTLED) : undefined] as const);
      const checked: Checked = { ...files, settled: await settling };
      await pruned;
      for (const [k, draft] of drafts) {
        const listed = draft && stillListed(draft, checked.settled) ? draft : this.listDir(k, checked, checked.settled);
        if (listed) saved += take(listed, checked, parts);
      }
      this.checkRest(checked);
      for (const [k, e] of checked.out) {
        parts.push(...encodeFileRecord(k, e));
        saved++;
      }
      const out = encodeCacheFile(this.root, parts);
      await after?.catch(() => undefined);
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
      this.stats.saved = saved;
    } catch (e) {
      this.opts.onWarning?.(`local tree cache not saved: ${(e as Error).message}`);
    }
  }

  /**
   * Directory `k` as it is now, with the records to save for it: the directory's record only when every
   * child is a directory or a file with an entry, and neither the directory nor any such file changed
   * after `settled` (see the header); else its files' records alone, and the next walk lists the
   * directory itself. Each file's entry comes from `files` (a written one checked against this lstat)
   * or, unchanged, from the file read at open. Nothing is changed here: take() saves what it returns.
   * Undefined when `k` is not a directory now, cannot be listed, or without the addon.
   */
  private listDir(k: string, files: Collected, settled: bigint): DirDraft | undefined {
    const abs = k === '.' ? this.root : path.join(this.root, k);
    // The directory before its names: a name added after this lstat changes the directory's mtime and ctime.
    // As the addon gives it (index 0 of what stillListed compares), or by lstatOne where it cannot.
    const own = nameToBytes(abs);
    const dirRaw = new BigInt64Array(RAW_FIELDS);
    const dir = (lstatManyRaw(Buffer.concat([own, NUL]), dirRaw) && rawStat(dirRaw, 0)) || lstatOne(abs);
    if (!dir || (dir.mode & S_IFMT) !== S_IFDIR) return undefined;
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch {
      return undefined;
    }
    // As the walk (../index/mdex.ts indexDir): temporary copies left out, byte order of the names.
    const keyed = names.filter((n) => !isTempName(n)).map((name) => ({ name, bytes: nameToBytes(name) }));
    keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    const n = keyed.length;
    const prefix = nameToBytes(abs + '/');
    const blob = Buffer.concat([own, NUL, ...keyed.flatMap((c) => [prefix, c.bytes, NUL])]);
    // Index 0 is the directory itself (for stillListed's one lstat of all), its children follow.
    const raw = new BigInt64Array((n + 1) * RAW_FIELDS);
    if (n > 0 && !lstatManyRaw(blob.subarray(own.length + 1), raw.subarray(RAW_FIELDS))) return undefined;
    raw.set(dirRaw);
    let listable = dir.ctimeNs <= settled;
    const hashes: Buffer[] = [];
    const records: Buffer[] = [];
    const taken: string[] = [];
    for (let i = 0; i < n; i++) {
      const st = rawStat(raw, i + 1);
      const type = st && st.mode & S_IFMT;
      if (type === S_IFDIR) {
        hashes.push(Buffer.alloc(32));
        continue;
      }
      const ck = k === '.' ? keyed[i]!.name : path.join(k, keyed[i]!.name);
      let e: Entry | Buffer | undefined;
      if (st && type === S_IFREG && st.ctimeNs <= settled) {
        const id: LocalIdentity = { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
        const w = files.touched.get(ck);
        const c = files.out.get(ck);
        if (w !== undefined) e = writtenEntry(files.candidate(w), st, settled);
        else if (c && sameLocal(Buffer.isBuffer(c) ? recordIdentity(c) : c.id, id)) e = c;
        else {
          // A file of a directory the walk found unchanged: its record as read, if it still holds.
          const at = this.fileRecord(ck);
          e = at === undefined ? undefined : recordIfSame(this.loaded, at, id);
        }
      }
      const tree = e && (Buffer.isBuffer(e) ? treeOf(e) : e.tree);
      if (!st || !e || !tree) {
        listable = false;
        continue;
      }
      // The entry hash the walk gives it (mdex.ts fileRecord): only the part of the share path after its first segment counts.
      hashes.push(fileEntryHash(`./${ck}`, st.size === 0 ? undefined : tree.root, 0, metaFromPathStat(st)));
      records.push(...encodeFileRecord(ck, e));
      taken.push(ck);
    }
    const parts: Buffer[] = [];
    if (listable) {
      const stats = Buffer.alloc(n * RECORD_STAT);
      const rawBytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let i = 0; i < n; i++) rawBytes.copy(stats, i * RECORD_STAT, (i + 1) * RAW_FIELDS * 8, (i + 1) * RAW_FIELDS * 8 + RECORD_STAT);
      parts.push(...encodeDirRecord(k, dir, taken.length, stats, hashes, keyed.map((c) => c.bytes)));
    }
    // Loose when the directory is not listed: records of files that follow no directory record.
    parts.push(...records);
    // One buffer for the directory's records: the few small ones made per file die here, young,
    // instead of living on (promoted) with every other directory's until the cache file is written.
    return { abs, names: keyed.map((c) => c.name), blob, raw, parts: [Buffer.concat(parts)], taken };
  }

  /**
   * What to save of the files: entries this run found unchanged or hashed, as they were (a later
   * change shows in the identity the next run compares), and files it wrote or touched, to be
   * lstat-ed once more (by listDir, or checkRest): only those that still show the expected identity,
   * with the ctime they have then.
   */
  private collect(): Collected {
    const out = new Map<string, Entry | Buffer>();
    const touched = new Map<string, number>();
    const table = this.candidates;
    let touchedBytes = 0;
    for (const [k, slot] of table.slotEntries()) {
      if (table.touched(slot)) {
        touched.set(k, slot);
        touchedBytes += table.sizeAt(slot);
      } else {
        const c = table.at(slot);
        out.set(k, c.raw ?? { id: c.expect, tree: c.tree });
      }
    }
    return { out, touched, touchedBytes, candidate: (slot) => table.at(slot) };
  }

  /** The written files listDir did not take, lstat-ed now (see collect and the header), into `checked.out`. */
  private checkRest(checked: Checked): void {
    const rest = [...checked.touched];
    // Synchronous and batched (lstatmany.ts): thousands of lstat calls cost far less so than as promises, and nothing else is waiting.
    const stats = lstatMany(rest.map(([k]) => (k === '.' ? this.root : path.join(this.root, k))));
    for (let i = 0; i < rest.length; i++) {
      const [k, slot] = rest[i]!;
      const e = stats[i] && writtenEntry(checked.candidate(slot), stats[i]!, checked.settled);
      if (e) checked.out.set(k, e);
    }
  }
}

/**
 * What a save writes of the files: those the run found unchanged or hashed (`out`), and those it
 * wrote (`touched`, to be lstat-ed once more; `touchedBytes` their size).
 */
interface Collected {
  out: Map<string, Entry | Buffer>;
  /** By the slot of their candidate. */
  touched: Map<string, number>;
  touchedBytes: number;
  candidate(slot: number): Candidate;
}

/** And the time before which a ctime must be (see the header). */
interface Checked extends Collected {
  settled: bigint;
}

/**
 * The time before which a ctime counts as settled. The run's own changes are all done: once they
 * are RACY_MS old, a later change shows in ctime, so this waits RACY_MS first (`wait`, mustWait).
 * Unless there are few: then those changed within RACY_MS are left out and hashed next time.
 */
async function settle(wait: boolean): Promise<bigint> {
  if (wait) await new Promise((r) => setTimeout(r, Number(RACY_MS)));
  return (BigInt(Date.now()) - RACY_MS) * 1_000_000n;
}

/** Whether settle() waits: when the run wrote more than a few files (see REHASH_FILES). */
function mustWait(files: Collected): boolean {
  return files.touched.size > REHASH_FILES || files.touchedBytes > REHASH_BYTES;
}

/**
 * A directory listed, and its records made, before the save's settle time is known (listDir under
 * DRAFT_SETTLED, while settle() waits). Its records are saved only if, after the wait, one lstat of
 * the directory and its children shows each as the listing saw it (every field but atime), with a
 * settled ctime for the directory and every child that is not a directory, and its names read after
 * that lstat are the same (stillListed). Then listDir after the wait would have made the same
 * records: what it saves depends only on those stats, the names and the settle time, and a change
 * after that lstat shows in the ctime of what it changed. Otherwise listDir lists the directory again.
 */
interface DirDraft {
  abs: string;
  /** Its names as listed (temporary copies left out). */
  names: string[];
  /** The directory's path and its children's, each followed by a NUL: what lstatManyRaw takes. */
  blob: Buffer;
  /** What lstat showed: the directory at index 0, then each child (RAW_FIELDS values each). */
  raw: BigInt64Array;
  /** The records to save: the directory's (when it is listable), then its files', in one buffer. */
  parts: Buffer[];
  /** The files whose records these are (taken out of what remains to save). */
  taken: string[];
}

/** The settle time a draft is listed under: none yet, so every ctime passes (stillListed checks them after). */
const DRAFT_SETTLED = 2n ** 63n - 1n;
/** The fields of a lstatManyRaw result compared: all but atime (the last), which reading a file changes. */
const COMPARED_FIELDS = RAW_FIELDS - 1;
const MODE_FIELD = 1;
const CTIME_FIELD = 6;

let draftsSaved = 0;
/** How many directory listings made before the settle time were saved as made, in this process (for tests). */
export function listingsSavedAsDrafted(): number {
  return draftsSaved;
}

/** Whether `d`'s records still hold under the settle time `settled` (see DirDraft). */
function stillListed(d: DirDraft, settled: bigint): boolean {
  const now = new BigInt64Array(d.raw.length);
  if (!lstatManyRaw(d.blob, now)) return false;
  // The directory itself lstat-ed without error, now as when listed (not by lstatOne, say): else list it again.
  if (now[0] !== 0n) return false;
  for (let o = 0; o < d.raw.length; o += RAW_FIELDS) {
    for (let f = 0; f < COMPARED_FIELDS; f++) if (now[o + f] !== d.raw[o + f]) return false;
    // listDir asks no settled ctime of a child directory (index 0 is the directory itself, which it does ask).
    const childDir = o > 0 && now[o] === 0n && (Number(now[o + MODE_FIELD]) & S_IFMT) === S_IFDIR;
    if (now[o] === 0n && !childDir && now[o + CTIME_FIELD]! > settled) return false;
  }
  let names: string[];
  try {
    names = readdirSync(d.abs);
  } catch {
    return false;
  }
  const listed = new Set(d.names);
  const kept = names.filter((n) => !isTempName(n));
  if (kept.length !== d.names.length || !kept.every((n) => listed.has(n))) return false;
  draftsSaved++;
  return true;
}

/** Save `d`'s records into `parts` and take its files out of what remains to save; returns how many files. */
function take(d: DirDraft, checked: Checked, parts: Buffer[]): number {
  for (const k of d.taken) {
    checked.touched.delete(k);
    checked.out.delete(k);
  }
  parts.push(...d.parts);
  return d.taken.length;
}

/** The entry of a file the run wrote, `st` its lstat now: only if it shows what was expected, with a settled ctime. */
function writtenEntry(c: Candidate, st: PathStat, settled: bigint): Entry | undefined {
  if ((st.mode & 0o170000) !== 0o100000) return undefined;
  const e = c.expect;
  if (st.size !== e.size || st.ino !== e.ino || st.dev !== e.dev || st.mtimeNs !== e.mtimeNs) return undefined;
  if (st.ctimeNs > settled || c.tree.size !== st.size) return undefined;
  return { id: { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev }, tree: c.tree };
}

/** Cache files of destinations not synced for this long are deleted (a destination of a finished job, a removed disk). */
const UNUSED_FOR_MS = 30 * 86_400_000;
/** The cache directory is swept for such files at most this often; the mtime of PRUNE_MARK beside it (dests-v1.pruned) says when it last was. */
const PRUNE_EVERY_MS = 3600_000;
const PRUNE_MARK = '.pruned';

/** Delete the cache files in `dir` that no sync has used for UNUSED_FOR_MS (and temporary files of crashed saves). */
async function pruneOld(dir: string): Promise<void> {
  if (!(await claimTurn(dir + PRUNE_MARK, PRUNE_EVERY_MS))) return;
  const names = await readdirNames(dir);
  // One batch lstat (the addon) for all: a stat each through the thread pool took 70-100 ms for the
  // 1,300 files of a machine that ran benchmarks, on every sync, before the cache file was written.
  const stats = lstatMany(names.map((n) => path.join(dir, n)));
  const now = Date.now();
  for (let i = 0; i < names.length; i++) {
    const st = stats[i];
    if (!st || (st.mode & S_IFMT) !== S_IFREG) continue;
    const age = now - Number(st.mtimeNs / 1_000_000n);
    if (age > UNUSED_FOR_MS || (names[i]!.includes('.tmp') && age > 3600_000)) await unlink(path.join(dir, names[i]!)).catch(() => undefined);
  }
}

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

