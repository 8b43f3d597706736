/**
 * The sync client (docs/protocol.md#the-receiver): resolve the source, fetch and verify
 * its object, then for a file fetch only the chunks the local copy lacks and
 * write them atomically; for a directory recurse into the children whose entry
 * hashes the local copy lacks. Every object is verified against the hash that
 * named it before anything touches the destination.
 */
import { chmod, lstat, mkdir, open, opendir, readlink, rmdir, symlink, unlink, rename, rm } from '../base/bytefs.js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { hash, hashPair, parseHex, toHex, type Hash } from '../model/hash.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../model/entry.js';
import { DEFAULT_LIMITS, decodeNetTreeHead, dirChildren, partCount, TREE_PART_SIZE, type DecodeLimits, type NetTreeHead } from '../wire/nettree.js';
import { MerkleTree, CHUNK_SIZE, chunkLength, leafIndex } from '../model/tree.js';
import { ShareIndex } from '../index/mdex.js';
import { ObjectReceiver } from './receiver.js';
import { Limiter } from '../base/limit.js';
import { MulticastReceiver } from '../net/mcast-receiver.js';
import type { DatagramSource } from '../net/datagram.js';
import { OutputFile, isTempName, removeStaleTemps, tempPathFor } from './writer.js';
import { applyOwnership, applyTimes, type MetaFlags, type TimeStamp } from './fsmeta.js';
import type { FileMeta } from '../model/meta.js';
import type { ObjectCipher } from '../wire/crypto.js';
import { HASH_SIZE } from '../model/hash.js';
import { displayName, nameFromBytes, nameToBytes } from '../base/names.js';

export interface SyncFlags extends MetaFlags {
  recursive: boolean;
}

export interface SyncOptions {
  ifnames: string[];
  flags: SyncFlags;
  /** Fail with TIMEOUT when a request sees no datagram for this long. */
  timeoutSec?: number;
  dryRun?: boolean;
  inplace?: boolean;
  /** Chunk groups joined at once. */
  parallel?: number;
  limits?: DecodeLimits;
  stallMs?: number;
  /** Decrypt objects (the share's key). */
  cipher?: ObjectCipher;
  /** Refuse a root that is not signed by this raw Ed25519 public key. */
  trust?: Uint8Array;
  /** How long to wait for the root's signature object (default: timeoutSec, else 10 s). */
  signatureWaitSec?: number;
  onItem?: (item: SyncItem) => void;
  /** The source (a share name) changed during the sync; the sync starts over on its new root (`n`-th time). */
  onSourceChanged?: (n: number) => void;
  /** A path left alone because replacing it would delete a non-empty directory (reported once each). */
  onConflict?: (c: SyncConflict) => void;
  onProgress?: (p: SyncProgress) => void;
  signal?: AbortSignal;
  /** Receive from this source instead of opening a socket (tests run a share in memory). */
  channel?: DatagramSource;
}

export type Change = 'created' | 'updated' | 'unchanged' | 'metadata';

export interface SyncItem {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  change: Change;
  /** Files: chunks fetched from the network and reused from the local copy. */
  chunksFetched?: number;
  chunksReused?: number;
}

/**
 * A destination entry the sync could not bring in line without deleting data: a non-empty
 * directory where the source has a file or symlink. Everything else is finished; the run ends
 * with ExitCode.partial.
 */
export interface SyncConflict {
  path: string;
  /** What the source has there. */
  source: 'file' | 'symlink';
  /** What is there now. */
  local: 'dir';
  /** One line naming the path, for logs. */
  message: string;
}

export interface SyncProgress {
  bytesReceived: number;
  chunksFetched: number;
  chunksWanted: number;
}

export interface SyncSummary {
  source: string;
  dest: string;
  rootHash: string;
  type: 'file' | 'dir' | 'symlink';
  dryRun: boolean;
  /** UDP payload bytes received and accepted into decoders or ignored. */
  bytesReceived: number;
  datagrams: number;
  /** Chunk bytes written into outputs. */
  bytesWritten: number;
  chunksFetched: number;
  chunksReused: number;
  /** Tree parts, directory and symlink objects that came off the wire (equal ones travel once). */
  treeObjectsReceived: number;
  objectsRejected: number;
  rejoins: number;
  files: Record<Change, number>;
  /** Entries left alone (see SyncConflict); non-empty means the sync was partial. */
  conflicts: SyncConflict[];
  /** Times the source changed during the sync and the sync moved on to the share name's new root. */
  sourceChanges: number;
  seconds: number;
  /** Bytes written per second. */
  rate: number;
}

/** What the user asked for: a hash, or a share name with rsync's trailing-slash meaning. */
export interface SourceSpec {
  hash: Hash;
  /** Share name when asked by name (one trailing slash removed). */
  name?: string;
  /** True when the contents of a directory go straight into DEST. */
  contents: boolean;
}

/** Share-name prefix that turns off hash detection ("name:cafe0123..." is a share called "cafe0123..."). */
export const NAME_PREFIX = 'name:';
/** A source of this many hex digits or more looks like a root hash (a mis-copied one unless it has 64). */
const HASHLIKE_MIN_DIGITS = 16;

/**
 * SOURCE as the user gave it: 64 hex digits are a root hash; a run of 16 or more hex digits of
 * another length is refused as a mis-copied hash (it would otherwise become a share name that no
 * share has, and the sync would wait for it forever); "name:X" is always the share name X.
 */
export function parseSource(source: string): SourceSpec {
  const forcedName = source.startsWith(NAME_PREFIX);
  if (!forcedName) {
    const h = parseHex(source);
    if (h) return { hash: h, contents: true };
    const bare = source.endsWith('/') ? source.slice(0, -1) : source;
    const hashed = parseHex(bare);
    if (hashed) return { hash: hashed, contents: true };
    if (bare.length >= HASHLIKE_MIN_DIGITS && /^[0-9a-f]+$/i.test(bare)) {
      throw new LcsyncError(
        'USAGE',
        `"${source}" looks like a root hash but has ${bare.length} hex digits, not 64 (for a share named so, write ${NAME_PREFIX}${source})`,
      );
    }
  }
  const given = forcedName ? source.slice(NAME_PREFIX.length) : source;
  if (given === '' || given === '/') throw new LcsyncError('USAGE', `invalid source "${source}"`);
  const contents = given.endsWith('/');
  const name = contents ? given.slice(0, -1) : given;
  if (name.startsWith('/') || name.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new LcsyncError('USAGE', `invalid share name "${source}": use the name the share printed, like "music" or "music/a.ogg"`);
  }
  return { hash: aliasHash(name), name, contents };
}

/** Check that a decoded object (or first part) is the one `key` names; `alias` names it by share path. */
export function objectMatches(obj: Buffer, key: Hash, alias: string | undefined, limits: DecodeLimits): boolean {
  const head = decodeNetTreeHead(obj, limits);
  if (alias !== undefined) return head.name === alias && aliasHash(head.name).equals(key);
  if (head.type === 'file') {
    if (head.size === 0) return obj.length === head.objectLength && fileEntryHash(head.name, undefined, 0, head.meta).equals(key);
    if (obj.length < head.payloadOffset + HASH_SIZE) return false;
    const root = obj.subarray(head.payloadOffset, head.payloadOffset + HASH_SIZE);
    return fileEntryHash(head.name, root, 0, head.meta).equals(key);
  }
  if (obj.length !== head.objectLength) return false;
  if (head.type === 'symlink') return symlinkEntryHash(head.name, head.meta).equals(key);
  const children = dirChildren(obj.subarray(head.payloadOffset));
  return (
    dirEntryHash({ basename: path.posix.basename(head.name), meta: head.meta }, children).equals(key) ||
    dirEntryHash(undefined, children).equals(key)
  );
}

/**
 * Whether `part`, appended to the object bytes known so far, keeps the tree
 * consistent: every sibling pair that ends inside the new bytes hashes to its
 * parent (in heap order a parent always comes before its children, so it is
 * known). The pair that straddles into the next part is checked with that part,
 * and the whole tree is verified once complete.
 */
export function partAgrees(prefix: Buffer, part: Buffer, payloadOffset: number): boolean {
  return partAgreesWith(new Joined([prefix]), part, payloadOffset);
}

/** partAgrees over parts kept apart: joining them for every new part would copy a big tree quadratically. */
function partAgreesWith(known: Joined, part: Buffer, payloadOffset: number): boolean {
  const firstNew = Math.floor(Math.max(0, known.length - payloadOffset) / HASH_SIZE);
  known.push(part);
  try {
    const node = (i: number) => known.slice(payloadOffset + i * HASH_SIZE, HASH_SIZE);
    const complete = Math.floor(Math.max(0, known.length - payloadOffset) / HASH_SIZE);
    let checked = 0;
    // Left children are odd; start with the pair that holds the first new node.
    for (let c = firstNew % 2 === 1 ? firstNew : Math.max(1, firstNew - 1); c + 1 < complete; c += 2) {
      if (!hashPair(node(c), node(c + 1)).equals(node((c - 1) / 2))) return false;
      checked++;
    }
    return checked > 0 || complete - firstNew < 2;
  } finally {
    known.pop();
  }
}

/** Buffers read as one, without joining them. */
class Joined {
  private readonly bufs: Buffer[] = [];
  private readonly starts: number[] = [];
  private total = 0;

  constructor(bufs: readonly Buffer[] = []) {
    for (const b of bufs) this.push(b);
  }

  get length(): number {
    return this.total;
  }

  buffers(): readonly Buffer[] {
    return this.bufs;
  }

  push(b: Buffer): void {
    this.bufs.push(b);
    this.starts.push(this.total);
    this.total += b.length;
  }

  pop(): void {
    const b = this.bufs.pop();
    this.starts.pop();
    if (b) this.total -= b.length;
  }

  /** Bytes [off, off + len), cut short at the end; a copy only when they span two buffers. */
  slice(off: number, len: number): Buffer {
    const end = Math.min(this.total, off + len);
    if (off >= end) return Buffer.alloc(0);
    // The last buffer whose start is <= off.
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    const pieces: Buffer[] = [];
    for (let i = lo, at = off; at < end; i++) {
      const b = this.bufs[i]!;
      const from = at - this.starts[i]!;
      const take = Math.min(b.length - from, end - at);
      pieces.push(b.subarray(from, from + take));
      at += take;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }
}

/** How often a sync by share name starts over on a new root before it gives up (the source keeps changing). */
const MAX_SOURCE_CHANGES = 5;

/** NAME_MAX of Linux and most other systems: a longer segment cannot be created anyway. */
const MAX_SEGMENT_BYTES = 255;

/**
 * Why `seg` (one segment of a share path from the network, string form of names.ts) must not
 * be created, or undefined when it is safe. Checked on its bytes: any byte but `/` and NUL is
 * a valid name on Linux, UTF-8 or not.
 */
function segmentProblem(seg: string): string | undefined {
  const b = nameToBytes(seg);
  if (b.length === 0) return 'empty path segment';
  if (b.equals(DOT) || b.equals(DOTDOT)) return `"${seg}" segment`;
  if (b.includes(0)) return 'NUL byte';
  if (b.includes(SLASH)) return '"/" inside a segment';
  if (b.length > MAX_SEGMENT_BYTES) return `segment of ${b.length} bytes, longer than ${MAX_SEGMENT_BYTES}`;
  return undefined;
}
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const SLASH = 0x2f;

/** Why a whole share path is malformed, or undefined. */
function pathProblem(name: string): string | undefined {
  if (name.startsWith('/')) return 'absolute path';
  for (const seg of name.split('/')) {
    const p = segmentProblem(seg);
    if (p) return p;
  }
  return undefined;
}

/**
 * The name under which the child object `child` of directory object `parent`
 * goes into the parent's destination, or an INTEGRITY error saying why it may
 * not. A file or symlink must be named `<parent>/<one segment>`: its entry hash
 * covers that path, so a mismatch is a lie. A directory's entry hash covers
 * only its basename, so a share that has two equal directories (same basename,
 * stat and contents) under different parents serves one object named after
 * either; only its depth and basename count.
 */
export function childName(parent: NetTreeHead, child: NetTreeHead): string {
  const refuse = (why: string) =>
    new LcsyncError('INTEGRITY', `refusing unsafe name "${displayName(child.name)}" in directory "${displayName(parent.name)}": ${why}`);
  const problem = pathProblem(child.name);
  if (problem) throw refuse(problem);
  const base = path.posix.basename(child.name);
  if (child.type === 'dir') {
    if (child.name.split('/').length !== parent.name.split('/').length + 1) throw refuse('not a direct child');
    return base;
  }
  if (!child.name.startsWith(parent.name + '/')) throw refuse('not inside that directory');
  if (child.name.slice(parent.name.length + 1) !== base) throw refuse('not a direct child');
  return base;
}

/**
 * Chunks whose bytes were written in this session, remembered by leaf so that equal chunks of
 * other files are copied from there (read back and verified) rather than fetched again. Bounded:
 * past it, equal chunks are fetched again, which costs bytes but never correctness.
 */
const MAX_CHUNK_HOMES = 131072;

/** Where a verified copy of a chunk lies: a file (its temporary name until committed) and offset. */
interface ChunkHome {
  file: { path: string };
  offset: number;
}

/** Leaf hashes of all-zero chunks by length: such chunks are known without asking anyone. */
const zeroLeaves = new Map<number, string>();
function zeroLeaf(length: number): string {
  let k = zeroLeaves.get(length);
  if (k === undefined) zeroLeaves.set(length, (k = toHex(hash(Buffer.alloc(length)))));
  return k;
}

interface FetchedEntry {
  head: NetTreeHead;
  /** Whole object: file header + name + all tree nodes; dir children; link target. */
  obj: Buffer;
  tree?: MerkleTree;
}

export class SyncSession {
  private readonly rx: ObjectReceiver;
  private readonly limits: DecodeLimits;
  private readonly chunkLimit: Limiter;
  private readonly treeLimit: Limiter;
  private readonly times: TimeStamp[] = [];
  private readonly started = Date.now();
  readonly summary: Omit<SyncSummary, 'source' | 'dest' | 'rootHash' | 'type' | 'seconds' | 'rate' | 'sourceChanges'> = {
    dryRun: false,
    bytesReceived: 0,
    datagrams: 0,
    bytesWritten: 0,
    chunksFetched: 0,
    chunksReused: 0,
    treeObjectsReceived: 0,
    objectsRejected: 0,
    rejoins: 0,
    files: { created: 0, updated: 0, unchanged: 0, metadata: 0 },
    conflicts: [],
  };
  private chunksWanted = 0;
  /** Chunk fetches in flight, by leaf: a second file wanting the same chunk waits for the first. */
  private readonly chunkFetches = new Map<string, Promise<Buffer>>();
  private readonly chunkHomes = new Map<string, ChunkHome>();

  private constructor(
    private readonly channel: DatagramSource,
    private readonly opts: SyncOptions,
  ) {
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.rx = new ObjectReceiver(channel, {
      cipher: opts.cipher,
      stallMs: opts.stallMs,
      idleTimeoutMs: opts.timeoutSec ? opts.timeoutSec * 1000 : undefined,
    });
    this.chunkLimit = new Limiter(opts.parallel ?? 128);
    // An abort must also end waits for objects that may never come (no sender yet).
    opts.signal?.addEventListener('abort', () => this.rx.close(), { once: true });
    this.treeLimit = new Limiter(16);
    this.summary.dryRun = !!opts.dryRun;
  }

  static async open(opts: SyncOptions): Promise<SyncSession> {
    const channel = opts.channel ?? (await MulticastReceiver.open({ ifnames: opts.ifnames }));
    return new SyncSession(channel, opts);
  }

  async close(): Promise<void> {
    this.rx.close();
    await this.channel.close();
  }

  /** The first error that ended the session; later ones (requests failed because of it) are its echoes. */
  private failure: { error: unknown } | undefined;

  private fail(error: unknown): void {
    if (this.failure) return;
    // A share that said the source changed wins over what that did to other requests.
    this.failure = { error: this.rx.gone ?? error };
    this.rx.close();
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new LcsyncError('INTERRUPTED', 'interrupted');
  }

  private progress(): void {
    this.opts.onProgress?.({ bytesReceived: this.rx.stats.bytes, chunksFetched: this.summary.chunksFetched, chunksWanted: this.chunksWanted });
  }

  /** Fetch and verify the object `key` names, with all its tree parts. */
  async fetchEntry(key: Hash, alias?: string): Promise<FetchedEntry> {
    this.checkAbort();
    const first = await this.treeLimit.run(() => this.rx.fetchTree(key, (o) => objectMatches(o, key, alias, this.limits)));
    const head = decodeNetTreeHead(first, this.limits);
    if (head.type !== 'file') return { head, obj: first };
    if (head.size === 0) return { head, obj: first, tree: MerkleTree.blank(0) };
    const root = first.subarray(head.payloadOffset, head.payloadOffset + HASH_SIZE);
    const n = partCount(head.objectLength);
    if (first.length !== Math.min(TREE_PART_SIZE, head.objectLength)) {
      throw new LcsyncError('INTEGRITY', `tree part 0 of ${head.name} has ${first.length} bytes, expected ${Math.min(TREE_PART_SIZE, head.objectLength)}`);
    }
    // Parts come one after another: a part is accepted only if its node hashes
    // agree with the parents already known, which tells apart parts of equal
    // length (ours, another file's, or a spoofer's) before anything trusts them.
    const parts: Buffer[] = [first];
    const known = new Joined(parts);
    for (let z = 1; z < n; z++) {
      const want = Math.min(TREE_PART_SIZE, head.objectLength - z * TREE_PART_SIZE);
      const partKey = fileEntryHash(head.name, root, z, head.meta);
      const part = await this.treeLimit.run(() =>
        this.rx.fetchTree(partKey, (o) => o.length === want && partAgreesWith(known, o, head.payloadOffset)),
      );
      parts.push(part);
      known.push(part);
    }
    parts.length = 0;
    const obj = Buffer.concat(known.buffers());
    if (obj.length !== head.objectLength) {
      throw new LcsyncError('INTEGRITY', `tree object of ${head.name} should be ${head.objectLength} bytes, got ${obj.length}`);
    }
    // fromNodes copies the nodes: no decodeNetTree copy in between (a 5 GiB file has 10 MiB of them).
    const tree = MerkleTree.fromNodes(head.size, obj.subarray(head.payloadOffset));
    if (!tree.root.equals(root) || !tree.verify()) {
      throw new LcsyncError('INTEGRITY', `tree of ${head.name} does not verify`);
    }
    return { head, obj, tree };
  }

  /** Fetch chunks `indices` of `tree` into `buf` at their offsets (memory sync); equal chunks travel once. */
  async fetchChunksInto(tree: MerkleTree, indices: readonly number[], buf: Buffer): Promise<void> {
    await this.chunkLimit.each(placesOf(tree, indices).values(), async (at) => {
      this.checkAbort();
      const leaf = tree.leaf(at[0]!);
      const { bytes } = await this.chunk(leaf, chunkLength(tree.size, at[0]!));
      for (const i of at) bytes.copy(buf, i * CHUNK_SIZE);
      this.chunkStored(leaf);
    });
  }

  /**
   * The bytes of the chunk named `leaf`, verified: all zeros when that is what it names; else
   * from a copy already written in this session; else from the fetch another file started;
   * else fetched now. `fetched` says whether this call made it travel (counted in the summary).
   * A fetch stays "in flight" for other files until the caller has stored it (chunkStored).
   */
  private async chunk(leaf: Hash, length: number): Promise<{ bytes: Buffer; fetched: boolean }> {
    const k = toHex(leaf);
    if (k === zeroLeaf(length)) return { bytes: Buffer.alloc(length), fetched: false };
    const inflight = this.chunkFetches.get(k);
    if (inflight) return { bytes: await inflight, fetched: false };
    const home = this.chunkHomes.get(k);
    if (home) {
      const copy = await readChunkAt(home.file.path, home.offset, length);
      if (copy && hash(copy).equals(leaf)) return { bytes: copy, fetched: false };
      // Gone (an aborted output) or overwritten since: fetch it.
      this.chunkHomes.delete(k);
    }
    const p = this.rx.fetchChunk(leaf, length);
    this.chunkFetches.set(k, p);
    let bytes: Buffer;
    try {
      bytes = await p;
    } catch (e) {
      this.chunkFetches.delete(k);
      throw e;
    }
    this.summary.chunksFetched++;
    return { bytes, fetched: true };
  }

  /**
   * The chunk `leaf` is stored (in `file` at `offset` when given): later requests read it from
   * there. Until now a fetch of it counted as in flight, so no other file fetched it meanwhile.
   */
  private chunkStored(leaf: Hash, file?: { path: string }, offset = 0): void {
    const k = toHex(leaf);
    this.chunkFetches.delete(k);
    if (!file || this.chunkHomes.has(k)) return;
    if (this.chunkHomes.size >= MAX_CHUNK_HOMES) this.chunkHomes.delete(this.chunkHomes.keys().next().value!);
    this.chunkHomes.set(k, { file, offset });
  }

  /**
   * Fetch the signature object published next to `root` and check it against
   * the trusted key, before anything is written. A share that publishes none
   * (within the wait) is refused too.
   */
  async checkSignature(root: Hash, name: string, trusted: Uint8Array): Promise<void> {
    const { signatureKey, decodeSignature, verifySignedRoot } = await import('../wire/signature.js');
    const waitSec = this.opts.signatureWaitSec ?? this.opts.timeoutSec ?? 10;
    const key = signatureKey(root);
    let sig: Buffer;
    try {
      sig = await this.rx.fetchTree(
        key,
        (o) => {
          try {
            return decodeSignature(o).root.equals(root);
          } catch {
            return false;
          }
        },
        { deadlineMs: waitSec * 1000 },
      );
    } catch (e) {
      if (e instanceof LcsyncError && e.code === 'TIMEOUT') {
        throw new LcsyncError('INTEGRITY', `root ${toHex(root)} is not signed: no signature arrived within ${waitSec} s (the share needs --sign)`);
      }
      throw e;
    }
    verifySignedRoot(sig, { root, name: name.includes('/') ? undefined : name, trusted });
  }

  /** Nothing at that path: ENOENT, or in a dry run ENOTDIR (a parent that would have become a directory is still a file). */
  private absent(e: unknown): boolean {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || (!!this.opts.dryRun && code === 'ENOTDIR');
  }

  /** Leave a non-empty directory where the source has a file or symlink, and say so (rsync without --delete does the same). */
  private conflict(dest: string, source: 'file' | 'symlink'): void {
    const c: SyncConflict = {
      path: dest,
      source,
      local: 'dir',
      message: `conflict: ${displayName(dest)} is a non-empty directory where the source has a ${source}; left as it is`,
    };
    this.summary.conflicts.push(c);
    this.opts.onConflict?.(c);
  }

  private item(it: SyncItem): void {
    if (it.type === 'file') this.summary.files[it.change]++;
    this.opts.onItem?.(it);
  }

  /** Sync a verified file entry into `dest`. */
  async syncFile(entry: FetchedEntry, dest: string): Promise<void> {
    const tree = entry.tree!;
    const size = entry.head.size;
    let localTree: MerkleTree | undefined;
    let existed = false;
    /** What the new file replaces by renaming (never written through): an empty directory, a symlink, a special file. */
    let replace: 'dir' | 'other' | undefined;
    try {
      const st = await lstat(dest);
      existed = true;
      if (st.isDirectory()) {
        if (!(await isEmptyDir(dest))) return this.conflict(dest, 'file');
        replace = 'dir';
      } else if (st.isFile()) {
        // The size of the file it opens, not of the lstat above: another run may rename a new version over it.
        localTree = await MerkleTree.fromFile(dest);
      } else replace = 'other'; // a symlink or special file: replaced by rename, never written through
    } catch (e) {
      if (e instanceof LcsyncError) throw e;
      if (!this.absent(e)) throw fromSystemError(e, dest);
    }
    const needed = tree.diff(localTree);
    const sameContent = localTree !== undefined && needed.length === 0 && localTree.size === size;
    const reuse = new Map<number, number>();
    if (localTree && !this.opts.inplace) {
      const have = leafIndex(localTree);
      for (const i of needed) {
        const j = have.get(tree.leaf(i).toString('hex'));
        if (j !== undefined && chunkLength(localTree.size, j) === chunkLength(size, i)) reuse.set(i, j);
      }
    }
    const fetch = needed.filter((i) => !reuse.has(i));
    // Identical chunks (zeros in a disk image, repeated blocks) travel once and are written everywhere.
    const places = placesOf(tree, fetch);
    if (this.opts.dryRun) {
      // An estimate: chunks that are zeros, or equal to chunks of files synced before, travel not at all.
      let travel = 0;
      for (const at of places.values()) if (tree.leaf(at[0]!).toString('hex') !== zeroLeaf(chunkLength(size, at[0]!))) travel++;
      this.item({ path: dest, type: 'file', change: sameContent ? 'unchanged' : existed ? 'updated' : 'created', chunksFetched: travel, chunksReused: reuse.size + fetch.length - travel });
      return;
    }
    if (sameContent) {
      const changedMeta = await this.finishMeta(dest, entry.head.meta, false);
      this.item({ path: dest, type: 'file', change: changedMeta ? 'metadata' : 'unchanged', chunksFetched: 0, chunksReused: 0 });
      return;
    }
    this.chunksWanted += places.size;
    // Temporary files of an earlier run that was killed are removed; their chunks are fetched again.
    await removeStaleTemps(path.dirname(dest), path.basename(dest)).catch(() => 0);
    // Another type of object stays in place until the new file is complete, written under a fresh
    // name next to it (never through a link), and is then replaced by rename.
    const target = replace ? siblingName(dest, 'new') : dest;
    const out = await OutputFile.open(target, size, { inplace: this.opts.inplace && !replace });
    let fetchedHere = 0;
    const home = { path: out.path };
    try {
      if (reuse.size > 0) {
        // Moved chunks come from the old file, which stays untouched until commit (reuse is off in place).
        const old = await open(dest, 'r');
        try {
          for (const [i, j] of reuse) {
            const buf = Buffer.alloc(chunkLength(size, i));
            await old.read(buf, 0, buf.length, j * CHUNK_SIZE);
            // Another run into the same destination may have renamed a new version over it since it
            // was hashed: a chunk that is not what the tree says is fetched instead.
            if (!hash(buf).equals(tree.leaf(i))) {
              reuse.delete(i);
              fetch.push(i);
              const k = tree.leaf(i).toString('hex');
              const at = places.get(k);
              if (at) at.push(i);
              else {
                places.set(k, [i]);
                this.chunksWanted++;
              }
              continue;
            }
            await out.write(i * CHUNK_SIZE, buf);
            this.summary.chunksReused++;
          }
        } finally {
          await old.close();
        }
      }
      // Until commit the chunks written here are read back from the temporary file; then from dest.
      await this.chunkLimit.each(places.values(), async (at) => {
        this.checkAbort();
        const length = chunkLength(size, at[0]!);
        const leaf = tree.leaf(at[0]!);
        const { bytes, fetched } = await this.chunk(leaf, length);
        if (fetched) fetchedHere++;
        this.summary.chunksReused += fetched ? at.length - 1 : at.length;
        try {
          // All zeros into a fresh temporary file: leave a hole (a sparse file, as cp --sparse=auto).
          if (out.fresh && toHex(leaf) === zeroLeaf(length)) return;
          for (const i of at) {
            await out.write(i * CHUNK_SIZE, bytes);
            this.summary.bytesWritten += bytes.length;
          }
          this.chunkStored(leaf, home, at[0]! * CHUNK_SIZE);
        } finally {
          // Written or not (a failed write), other files stop waiting for this fetch.
          this.chunkStored(leaf);
          this.progress();
        }
      });
      this.checkAbort();
      await out.commit();
      home.path = target;
    } catch (e) {
      await out.abort();
      throw e;
    }
    if (replace) {
      try {
        if (replace === 'dir') await swapIn(target, dest);
        else await rename(target, dest);
      } catch (e) {
        await unlink(target).catch(() => undefined);
        throw fromSystemError(e, dest);
      }
      home.path = dest;
    }
    await this.finishMeta(dest, entry.head.meta, false, !existed || replace !== undefined);
    this.item({ path: dest, type: 'file', change: existed ? 'updated' : 'created', chunksFetched: fetchedHere, chunksReused: reuse.size + fetch.length - fetchedHere });
  }

  /** Apply the archive flags; returns whether anything differed. New files without -p get mode & ~umask, as rsync does. */
  private async finishMeta(p: string, meta: FileMeta, isLink: boolean, created = false): Promise<boolean> {
    const f = this.opts.flags;
    const st = await lstat(p, { bigint: true });
    let changed = false;
    if (f.perms && !isLink && Number(st.mode & 0o7777n) !== (meta.mode & 0o7777)) changed = true;
    if (f.owner && Number(st.uid) !== meta.uid) changed = true;
    if (f.group && Number(st.gid) !== meta.gid) changed = true;
    if (f.times && (st.mtimeNs / 1_000_000_000n !== meta.mtimeSec || st.mtimeNs % 1_000_000_000n !== meta.mtimeNsec)) changed = true;
    await applyOwnership(p, meta, f, isLink);
    if (created && !f.perms && !isLink) {
      await chmod(p, meta.mode & 0o777 & ~process.umask());
    }
    if (f.times) this.times.push({ path: p, meta });
    return changed;
  }

  async syncSymlink(entry: FetchedEntry, dest: string): Promise<void> {
    // The target's exact bytes (any but NUL), as the C tool sends them.
    const targetBytes = entry.obj.subarray(entry.head.payloadOffset);
    if (targetBytes.includes(0)) throw new LcsyncError('INTEGRITY', `refusing symlink "${displayName(entry.head.name)}": its target holds a NUL byte`);
    const target = nameFromBytes(targetBytes);
    let existing: string | undefined;
    let exists = false;
    let replaceDir = false;
    try {
      const st = await lstat(dest);
      exists = true;
      if (st.isSymbolicLink()) existing = await readlink(dest);
      else if (st.isDirectory()) {
        if (!(await isEmptyDir(dest))) return this.conflict(dest, 'symlink');
        replaceDir = true;
      }
    } catch (e) {
      if (e instanceof LcsyncError) throw e;
      if (!this.absent(e)) throw fromSystemError(e, dest);
    }
    const change: Change = existing === target ? 'unchanged' : exists ? 'updated' : 'created';
    if (!this.opts.dryRun && change !== 'unchanged') {
      // Make the link under a temporary name and rename it over: atomic, never follows the old link.
      // A random part in the name: two runs in two PID namespaces can have the same pid.
      const tmp = tempPathFor(dest);
      try {
        await symlink(target, tmp);
        if (replaceDir) await swapIn(tmp, dest);
        else await rename(tmp, dest);
      } catch (e) {
        await rm(tmp, { force: true });
        throw fromSystemError(e, dest);
      }
    }
    if (!this.opts.dryRun) await this.finishMeta(dest, entry.head.meta, true);
    this.opts.onItem?.({ path: dest, type: 'symlink', change });
  }

  /**
   * Sync a directory entry into `dest` (which becomes that directory). With
   * `recursive`, children whose entry hashes the local copy already has are skipped.
   */
  async syncDir(entry: FetchedEntry, dest: string, localHashes: Set<string>): Promise<void> {
    let exists = false;
    /** A file, symlink or special file stands where the source has a directory: replaced (a link is never followed). */
    let replace = false;
    try {
      const st = await lstat(dest);
      if (st.isDirectory()) exists = true;
      else replace = true;
    } catch (e) {
      if (!this.absent(e)) throw fromSystemError(e, dest);
    }
    if (!exists && !this.opts.dryRun) {
      if (replace) {
        const staged = siblingName(dest, 'new');
        try {
          await mkdir(staged, { mode: 0o755 });
          await swapIn(staged, dest);
        } catch (e) {
          await rmdir(staged).catch(() => undefined);
          throw fromSystemError(e, `cannot replace ${dest} with a directory`);
        }
      } else {
        try {
          await mkdir(dest, { mode: 0o755 });
        } catch (e) {
          // Another run into the same destination made it first: fine if it is a directory.
          const now = (e as NodeJS.ErrnoException).code === 'EEXIST' ? await lstat(dest).catch(() => undefined) : undefined;
          if (!now?.isDirectory()) throw fromSystemError(e, `cannot create directory ${dest}`);
        }
      }
    }
    this.opts.onItem?.({ path: dest, type: 'dir', change: exists ? 'unchanged' : replace ? 'updated' : 'created' });
    if (this.opts.flags.recursive) {
      const children = dirChildren(entry.obj.subarray(entry.head.payloadOffset)).filter((h) => !localHashes.has(toHex(h)));
      // Two children under one name would race each other for it (a symlink and a directory
      // made one after the other): the second is refused.
      const taken = new Set<string>();
      // Every child settles before an error goes up: the first failure stops the session (every
      // pending request fails at once), and each file being written removes its temporary copy
      // before the process can exit. Conflicts are not failures: the other children go on.
      await Promise.allSettled(
        children.map(async (h) => {
          try {
            const child = await this.fetchEntry(h);
            const rel = childName(entry.head, child.head);
            if (taken.has(rel)) {
              throw new LcsyncError('INTEGRITY', `refusing directory "${displayName(entry.head.name)}": it lists "${displayName(rel)}" twice`);
            }
            taken.add(rel);
            await this.syncEntry(child, path.join(dest, rel), localHashes);
          } catch (e) {
            this.fail(e);
          }
        }),
      );
      if (this.failure) throw this.failure.error;
    }
    if (!this.opts.dryRun) await this.finishMeta(dest, entry.head.meta, false);
  }

  async syncEntry(entry: FetchedEntry, dest: string, localHashes: Set<string>): Promise<void> {
    this.checkAbort();
    if (entry.head.type === 'file') return this.syncFile(entry, dest);
    if (entry.head.type === 'symlink') return this.syncSymlink(entry, dest);
    return this.syncDir(entry, dest, localHashes);
  }

  /** Apply collected times, deepest paths first is not needed: all writes are done by now. */
  async finish(): Promise<void> {
    if (!this.opts.dryRun && this.times.length > 0) await applyTimes(this.times);
  }

  /** Set when the share said the source changed under this session (receiver.ts gone notices). */
  get sourceChanged(): LcsyncError | undefined {
    return this.rx.gone;
  }

  stats(): { bytesReceived: number; datagrams: number; treeObjectsReceived: number; objectsRejected: number; rejoins: number; seconds: number } {
    return {
      bytesReceived: this.rx.stats.bytes,
      treeObjectsReceived: this.rx.stats.treeObjects,
      datagrams: this.rx.stats.datagrams,
      objectsRejected: this.rx.stats.rejected,
      rejoins: this.rx.stats.rejoins,
      seconds: (Date.now() - this.started) / 1000,
    };
  }
}

/** Sync SOURCE (hash or share name) into DEST: the library form of `lcsync sync` (the C lc_syncfile). */
export async function syncRemote(source: string, dest: string, opts: SyncOptions): Promise<SyncSummary> {
  const spec = parseSource(source);
  const started = Date.now();
  // Transfer counters of attempts given up because the source changed under them.
  const earlier = { bytesReceived: 0, datagrams: 0, treeObjectsReceived: 0, bytesWritten: 0, chunksFetched: 0, chunksReused: 0, objectsRejected: 0, rejoins: 0 };
  for (let attempt = 0; ; attempt++) {
    let session: SyncSession | undefined;
    try {
      const summary = await syncOnce(spec, source, dest, opts, (s) => (session = s));
      const seconds = (Date.now() - started) / 1000;
      const sum = <K extends keyof typeof earlier>(k: K) => summary[k] + earlier[k];
      const bytesWritten = sum('bytesWritten');
      return {
        ...summary,
        bytesReceived: sum('bytesReceived'),
        datagrams: sum('datagrams'),
        treeObjectsReceived: sum('treeObjectsReceived'),
        bytesWritten,
        chunksFetched: sum('chunksFetched'),
        chunksReused: sum('chunksReused'),
        objectsRejected: sum('objectsRejected'),
        rejoins: sum('rejoins'),
        sourceChanges: attempt,
        seconds,
        rate: seconds > 0 ? bytesWritten / seconds : 0,
      };
    } catch (e) {
      // The share said an object of the root being fetched is gone: what is on disk is a mix of
      // complete old files and untouched ones (never a half-written file). By hash there is no
      // newer version to ask for; by name the share's name now leads to its new root.
      const changed = session?.sourceChanged;
      if (!session || !changed) throw e;
      if (spec.name === undefined || attempt >= MAX_SOURCE_CHANGES) throw changed;
      const s = session.stats();
      earlier.bytesReceived += s.bytesReceived;
      earlier.datagrams += s.datagrams;
      earlier.treeObjectsReceived += s.treeObjectsReceived;
      earlier.objectsRejected += s.objectsRejected;
      earlier.rejoins += s.rejoins;
      earlier.bytesWritten += session.summary.bytesWritten;
      earlier.chunksFetched += session.summary.chunksFetched;
      earlier.chunksReused += session.summary.chunksReused;
      opts.onSourceChanged?.(attempt + 1);
    }
  }
}

/** One pass over the source's current root, in a session of its own that it hands to `opened` (syncRemote repeats it when the source changes). */
async function syncOnce(spec: SourceSpec, source: string, dest: string, opts: SyncOptions, opened: (s: SyncSession) => void): Promise<SyncSummary> {
  const session = await SyncSession.open(opts);
  opened(session);
  try {
    const top = await session.fetchEntry(spec.hash, spec.name);
    const rootHash = spec.name === undefined ? spec.hash : rootHashOf(top);
    if (opts.trust) {
      if (spec.name?.includes('/')) {
        throw new LcsyncError('USAGE', `--trust checks a share's root: sync "${spec.name.split('/')[0]}" or its root hash, not a path inside it`);
      }
      await session.checkSignature(rootHash, top.head.name, opts.trust);
    }
    const baseName = path.posix.basename(top.head.name);
    const problem = segmentProblem(baseName);
    if (problem) throw new LcsyncError('INTEGRITY', `refusing unsafe name "${displayName(top.head.name)}": ${problem}`);
    let target: string;
    if (top.head.type === 'dir') {
      if (!opts.flags.recursive) {
        // Like rsync without -r: say so rather than silently doing nothing useful.
        throw new LcsyncError('USAGE', `${source} is a directory: use -r or -a to sync its contents`);
      }
      target = spec.contents ? dest : path.join(dest, baseName);
    } else {
      const st = await lstat(dest).catch(() => undefined);
      target = st?.isDirectory() || dest.endsWith('/') ? path.join(dest, baseName) : dest;
    }
    await checkParent(target);
    let localHashes = new Set<string>();
    if (top.head.type === 'dir') {
      const st = await lstat(target).catch(() => undefined);
      if (st?.isDirectory()) {
        const local = new ShareIndex();
        try {
          // Temporary copies (ours of a killed run, or another live run's) are not part of the tree.
          await local.add(target, { sharePath: top.head.name, skipName: isTempName });
          localHashes = new Set(local.records.map((r) => toHex(r.hash)));
        } catch (e) {
          // Only a shortcut: a file that changed while hashing (another run writing here) means
          // every entry is compared one by one instead. Real errors come back where they matter.
          if (!(e instanceof LcsyncError) || e.code === 'PERMISSION') throw e;
        }
      }
    }
    await session.syncEntry(top, target, localHashes);
    await session.finish();
    const s = session.stats();
    return {
      source,
      dest: target,
      rootHash: toHex(rootHash),
      type: top.head.type,
      ...session.summary,
      bytesReceived: s.bytesReceived,
      datagrams: s.datagrams,
      treeObjectsReceived: s.treeObjectsReceived,
      objectsRejected: s.objectsRejected,
      rejoins: s.rejoins,
      seconds: s.seconds,
      rate: s.seconds > 0 ? session.summary.bytesWritten / s.seconds : 0,
      sourceChanges: 0,
    };
  } finally {
    await session.close();
  }
}

/** The chunk indices grouped by leaf hash: each group is one chunk's bytes, wanted at several places. */
function placesOf(tree: MerkleTree, indices: readonly number[]): Map<string, number[]> {
  const places = new Map<string, number[]>();
  for (const i of indices) {
    const k = tree.leaf(i).toString('hex');
    const list = places.get(k);
    if (list) list.push(i);
    else places.set(k, [i]);
  }
  return places;
}

/** `length` bytes of `file` at `offset`, or undefined when the file is gone or short. */
async function readChunkAt(file: string, offset: number, length: number): Promise<Buffer | undefined> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) return undefined;
      got += bytesRead;
    }
    return buf;
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Whether directory `p` has no entries. */
async function isEmptyDir(p: string): Promise<boolean> {
  const d = await opendir(p);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close().catch(() => undefined);
  }
}

/** A fresh name next to `dest`: `.<name>.lcsync-<pid>-<random>.new` for a staged object, `.old` for one moved aside. */
function siblingName(dest: string, tag: 'new' | 'old'): string {
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

/** The entry hash of a fetched object: what `lcsync index` prints for the same item. */
function rootHashOf(e: FetchedEntry): Hash {
  const { head, obj } = e;
  if (head.type === 'file') return fileEntryHash(head.name, head.size === 0 ? undefined : e.tree!.root, 0, head.meta);
  if (head.type === 'symlink') return symlinkEntryHash(head.name, head.meta);
  const children = dirChildren(obj.subarray(head.payloadOffset));
  // A share's top directory is hashed without its name and stat (depth 0).
  return head.name.includes('/') ? dirEntryHash({ basename: path.posix.basename(head.name), meta: head.meta }, children) : dirEntryHash(undefined, children);
}

async function checkParent(target: string): Promise<void> {
  const parent = path.dirname(path.resolve(target));
  try {
    const st = await lstat(parent);
    if (!st.isDirectory()) throw new LcsyncError('IO', `${parent}: not a directory`);
  } catch (e) {
    if (e instanceof LcsyncError) throw e;
    throw fromSystemError(e, `destination directory ${parent}`);
  }
}


export interface BufferSyncResult {
  /** The remote file's bytes: `local` itself when it already had the right length, else a new buffer. */
  data: Buffer;
  chunksFetched: number;
  chunksReused: number;
  bytesReceived: number;
  seconds: number;
}

/**
 * Sync a memory buffer to the file that `source` names (the C lc_sync): only
 * chunks that differ from `local` are fetched.
 */
export async function syncBuffer(source: string, local: Buffer, opts: Omit<SyncOptions, 'flags'> & { flags?: SyncFlags }): Promise<BufferSyncResult> {
  const spec = parseSource(source);
  const session = await SyncSession.open({ ...opts, flags: opts.flags ?? { recursive: false, perms: false, owner: false, group: false, times: false } });
  try {
    const entry = await session.fetchEntry(spec.hash, spec.name);
    if (entry.head.type !== 'file') throw new LcsyncError('USAGE', `${source} is a ${entry.head.type}, not a file`);
    const tree = entry.tree!;
    const size = entry.head.size;
    const localTree = MerkleTree.fromBuffer(local);
    const needed = tree.diff(localTree);
    const data = local.length === size ? local : Buffer.alloc(size);
    if (data !== local) local.copy(data, 0, 0, Math.min(size, local.length));
    const have = leafIndex(localTree);
    let reused = 0;
    const fetch: number[] = [];
    for (const i of needed) {
      const j = have.get(tree.leaf(i).toString('hex'));
      if (j !== undefined && chunkLength(localTree.size, j) === chunkLength(size, i) && data !== local) {
        local.copy(data, i * CHUNK_SIZE, j * CHUNK_SIZE, j * CHUNK_SIZE + chunkLength(size, i));
        reused++;
      } else fetch.push(i);
    }
    await session.fetchChunksInto(tree, fetch, data);
    const s = session.stats();
    const fetched = session.summary.chunksFetched;
    return { data, chunksFetched: fetched, chunksReused: reused + fetch.length - fetched, bytesReceived: s.bytesReceived, seconds: s.seconds };
  } finally {
    await session.close();
  }
}
