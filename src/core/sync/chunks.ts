/**
 * Where the bytes of a chunk come from, so that equal chunks travel once per session: all-zero
 * chunks are known without asking; a chunk already written in this session is read back from
 * there (and verified); a chunk another file is fetching is waited for; anything else is fetched.
 */
import { open } from '../base/bytefs.js';
import { readFull } from '../base/readfull.js';
import { HASH_SIZE, hash, toHex, type Hash } from '../model/hash.js';
import { HashTable } from '../model/hashtable.js';
import type { MerkleTree } from '../model/tree.js';
import type { ObjectReceiver } from './receiver.js';

/**
 * Chunks whose bytes were written in this session, remembered by leaf so that equal chunks of
 * other files are copied from there (read back and verified) rather than fetched again. Bounded:
 * past it, equal chunks are fetched again, which costs bytes but never correctness.
 */
const MAX_CHUNK_HOMES = 131072;

/**
 * How long a receiver waits for the share's cursor before it starts a file's chunks at the first.
 * Our share answers within a round trip, but on a busy host (2 cores, 9 lcsync processes) answers
 * were seen 60-300 ms after the ask; a C share never answers, and costs this at most
 * CURSOR_GIVE_UP times per session.
 */
export const CURSOR_WAIT_MS = 150;
/** Cursor asks unanswered in a row after which the share is taken not to answer them (a C share). */
const CURSOR_GIVE_UP = 2;
/** Cursor asks made ahead and kept for the file's chunks at most. */
const MAX_CURSOR_ASKS = 64;

/** Where a verified copy of a chunk lies: a file (its temporary name until committed) and offset. */
interface ChunkHome {
  file: { path: string };
  offset: number;
}

/** Entries a ChunkHomes makes room for at first; it doubles up to its bound. */
const HOMES_INITIAL = 1024;

/**
 * Where chunks written in this session lie, by leaf, for at most `bound` chunks: past it the
 * oldest entry makes room. The leaves are copied into one slab and the offsets kept in a typed
 * array, entry by entry in a ring; only the file objects (one per file, shared by its chunks) are
 * JavaScript objects.
 */
export class ChunkHomes {
  private leaves = Buffer.alloc(0);
  private offsets = new Float64Array(0);
  private readonly files: ({ path: string } | undefined)[] = [];
  /** Entries ever added: the next goes to slot added % bound. */
  private added = 0;
  private readonly table = new HashTable(() => this.leaves, (slot) => slot * HASH_SIZE);

  constructor(private readonly bound = MAX_CHUNK_HOMES) {}

  get size(): number {
    return this.table.size;
  }

  get(leaf: Hash): ChunkHome | undefined {
    const slot = this.table.get(leaf);
    return slot < 0 ? undefined : { file: this.files[slot]!, offset: this.offsets[slot]! };
  }

  has(leaf: Hash): boolean {
    return this.table.get(leaf) >= 0;
  }

  delete(leaf: Hash): void {
    const slot = this.table.get(leaf);
    if (slot < 0) return;
    this.table.delete(slot);
    this.files[slot] = undefined;
  }

  /** Remember that a copy of `leaf` lies in `file` at `offset` (a leaf already here is left as it is). */
  add(leaf: Hash, file: { path: string }, offset: number): void {
    if (this.has(leaf)) return;
    const slot = this.added++ % this.bound;
    if (this.files[slot] !== undefined) {
      this.table.delete(slot);
      this.files[slot] = undefined;
    }
    if ((slot + 1) * HASH_SIZE > this.leaves.length) this.grow();
    leaf.copy(this.leaves, slot * HASH_SIZE, 0, HASH_SIZE);
    this.files[slot] = file;
    this.offsets[slot] = offset;
    this.table.set(slot);
  }

  private grow(): void {
    const entries = Math.min(this.bound, Math.max(HOMES_INITIAL, 2 * this.offsets.length));
    const leaves = Buffer.alloc(entries * HASH_SIZE);
    this.leaves.copy(leaves);
    this.leaves = leaves;
    const offsets = new Float64Array(entries);
    offsets.set(this.offsets);
    this.offsets = offsets;
  }
}

/** Leaf hashes of all-zero chunks by length: such chunks are known without asking anyone. */
const zeroLeaves = new Map<number, { hex: string; bytes: Hash }>();

function zeroLeafOf(length: number): { hex: string; bytes: Hash } {
  let z = zeroLeaves.get(length);
  if (z === undefined) {
    const bytes = hash(Buffer.alloc(length));
    zeroLeaves.set(length, (z = { hex: toHex(bytes), bytes }));
  }
  return z;
}

/** The leaf hash (hex) of `length` zero bytes. */
export function zeroLeaf(length: number): string {
  return zeroLeafOf(length).hex;
}

/** Whether `leaf` is the leaf hash of `length` zero bytes (compared as bytes: no hex string per chunk). */
export function isZeroLeaf(leaf: Hash, length: number): boolean {
  return leaf.equals(zeroLeafOf(length).bytes);
}

/**
 * The chunks of one file still to fetch, grouped by leaf hash: each group is one chunk's bytes,
 * wanted at one or more places (zeros in a disk image, repeated blocks). Groups keep the order in
 * which their first chunk was added. Kept in typed arrays (a few bytes a chunk: 2.5 MiB for the
 * 131,072 chunks of a 4 GiB file, against 21 MiB as a map from hex leaf to an array each); a
 * group's list of chunk indices is made only when it is asked for, i.e. while it is in flight.
 */
export class ChunkPlaces {
  /** The first chunk of each group, in order. */
  private heads: Int32Array;
  /** The last chunk of each group (where the next equal one is linked). */
  private tails: Int32Array;
  /** For each chunk index: the next chunk of its group, or -1. */
  private readonly next: Int32Array;
  private groups = 0;
  private readonly byLeaf: HashTable;

  /** Places of chunks `indices` of `tree`. */
  constructor(
    private readonly tree: MerkleTree,
    indices: Iterable<number> = [],
  ) {
    this.next = new Int32Array(tree.chunks);
    const expected = Array.isArray(indices) ? (indices as number[]).length : 0;
    this.heads = new Int32Array(Math.max(expected, 16));
    this.tails = new Int32Array(this.heads.length);
    const leafAt = (tree.base - 1) * HASH_SIZE;
    this.byLeaf = new HashTable(() => tree.nodes, (g) => leafAt + this.heads[g]! * HASH_SIZE, expected);
    for (const i of indices) this.add(i);
  }

  /** Distinct chunks (groups). */
  get size(): number {
    return this.groups;
  }

  /** Want chunk `i` too (each index at most once): into the group of its leaf, or a new last group. */
  add(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.tree.chunks) throw new RangeError(`no chunk ${i} in a tree of ${this.tree.chunks}`);
    this.next[i] = -1;
    const g = this.byLeaf.get(this.tree.nodes, (this.tree.base - 1 + i) * HASH_SIZE);
    if (g >= 0) {
      this.next[this.tails[g]!] = i;
      this.tails[g] = i;
      return;
    }
    if (this.groups === this.heads.length) {
      const heads = new Int32Array(this.heads.length * 2);
      heads.set(this.heads);
      this.heads = heads;
      const tails = new Int32Array(heads.length);
      tails.set(this.tails);
      this.tails = tails;
    }
    this.heads[this.groups] = i;
    this.tails[this.groups] = i;
    this.byLeaf.set(this.groups++);
  }

  /** The chunk indices of group `g`, its first first. */
  at(g: number): number[] {
    const out: number[] = [];
    for (let i = this.heads[g]!; i >= 0; i = this.next[i]!) out.push(i);
    return out;
  }

  /** The groups from..to-1 (all by default), each made when the caller gets to it. */
  *values(from = 0, to = this.groups): IterableIterator<number[]> {
    for (let g = from; g < to && g < this.groups; g++) yield this.at(g);
  }

  /** The group whose first chunk is the first at or after chunk `cursor` (-1: none). */
  firstAtOrAfter(cursor: number): number {
    for (let g = 0; g < this.groups; g++) if (this.heads[g]! >= cursor) return g;
    return -1;
  }
}

/**
 * The groups of `places` in two passes: from the first whose chunk is at or after `cursor` to the
 * end, then the ones before it. A receiver that starts a file where the share is sending it shares
 * those datagrams with the receivers already there, and asks for what they had before only once
 * they are done: chunks of its second pass, asked for at once, would come first in the share's
 * walk order and hold back the receivers ahead.
 */
export function fromCursor(places: ChunkPlaces, cursor: number | undefined): [Iterable<number[]>, Iterable<number[]>] {
  const at = cursor === undefined ? -1 : places.firstAtOrAfter(cursor);
  return at <= 0 ? [places.values(), []] : [places.values(at), places.values(0, at)];
}

/** The chunk indices of `tree` grouped by leaf hash (see ChunkPlaces). */
export function placesOf(tree: MerkleTree, indices: Iterable<number>): ChunkPlaces {
  return new ChunkPlaces(tree, indices);
}

export class ChunkSource {
  /** Distinct chunks wanted so far (for progress). */
  wanted = 0;
  /** Chunk fetches in flight, by leaf: a second file wanting the same chunk waits for the first. */
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly homes = new ChunkHomes();
  /** Whether chunks stored are remembered in `homes` (not in a session of one file: oneFile()). */
  private keepHomes = true;
  /** Callers of get() holding the bytes of a fetch, by leaf (the fetcher and those that waited for it). */
  private readonly users = new Map<string, { n: number; bytes?: Buffer }>();
  /** Cursor asks the share left unanswered in a row (see cursor()). */
  private cursorUnanswered = 0;
  /** Cursor asks made ahead (askCursor), by root (hex), until the file's chunks start (cursor()). */
  private readonly cursorAsks = new Map<string, Promise<number | undefined>>();
  /** Verified bytes of chunks that came another way (a directory's bundle, bundle.ts), by leaf. */
  private readonly provided = new Map<string, Buffer>();

  /** `counts.chunksFetched` counts the chunks that travelled (a session's summary). */
  constructor(
    private readonly rx: ObjectReceiver,
    private readonly counts: { chunksFetched: number },
  ) {}

  /**
   * The bytes of the chunk named `leaf`, verified: all zeros when that is what it names; else
   * from a copy already written in this session; else from the fetch another file started;
   * else fetched now. `fetched` says whether this call made it travel (counted in `counts`).
   * A fetch stays "in flight" for other files until the caller has stored it (stored()).
   */
  async get(leaf: Hash, length: number): Promise<{ bytes: Buffer; fetched: boolean }> {
    const k = toHex(leaf);
    const given = this.provided.get(k);
    if (given && given.length === length) {
      // It travelled, inside a bundle, and was checked against this leaf there.
      this.counts.chunksFetched++;
      return { bytes: given, fetched: true };
    }
    if (k === zeroLeaf(length)) return { bytes: Buffer.alloc(length), fetched: false };
    const inflight = this.inflight.get(k);
    if (inflight) {
      const u = this.users.get(k);
      if (u) u.n++;
      return { bytes: await inflight, fetched: false };
    }
    const home = this.homes.get(leaf);
    if (home) {
      const at = home.file.path;
      let copy = await readChunkAt(at, home.offset, length);
      // Renamed while we read (the output was committed): read it where it is now.
      if (!copy && home.file.path !== at) copy = await readChunkAt(home.file.path, home.offset, length);
      if (copy && hash(copy).equals(leaf)) return { bytes: copy, fetched: false };
      // Gone (an aborted output) or overwritten since: fetch it.
      this.homes.delete(leaf);
    }
    const p = this.rx.fetchChunk(leaf, length);
    this.inflight.set(k, p);
    const u = { n: 1, bytes: undefined as Buffer | undefined };
    this.users.set(k, u);
    let bytes: Buffer;
    try {
      bytes = await p;
    } catch (e) {
      this.inflight.delete(k);
      this.users.delete(k);
      throw e;
    }
    u.bytes = bytes;
    this.counts.chunksFetched++;
    return { bytes, fetched: true };
  }

  /** Fetches whose bytes some caller of get() has not yet said done() with (0 once a sync has settled). */
  get holding(): number {
    return this.users.size;
  }

  /**
   * Every caller of get() says when it is done with the bytes it got (after stored()): the last
   * user of fetched bytes hands them back to the receiver for reuse (ObjectReceiver.release).
   */
  done(leaf: Hash, bytes: Buffer): void {
    const k = toHex(leaf);
    const u = this.users.get(k);
    // Bytes that came another way (zeros, a copy read back, a bundle) are not the receiver's.
    if (!u || u.bytes !== bytes) return;
    if (--u.n > 0) return;
    this.users.delete(k);
    this.rx.release(bytes);
  }

  /**
   * Where the share is in the file whose Merkle root is `root` (packet.ts, the cursor): the chunk
   * it is sending now, or undefined when it sends none of the file, did not answer in time, or
   * never answers (after CURSOR_GIVE_UP silent asks this session, it is not asked again).
   */
  cursor(root: Hash): Promise<number | undefined> {
    const k = toHex(root);
    const asked = this.cursorAsks.get(k);
    this.cursorAsks.delete(k);
    return asked ?? this.ask(root);
  }

  /**
   * Ask for the cursor of the file whose Merkle root is `root` now, so that the answer is in by
   * the time its chunks start (the session asks as soon as a large file's first tree part is in,
   * while the other parts travel): cursor() then takes it.
   */
  askCursor(root: Hash): void {
    const k = toHex(root);
    if (this.cursorAsks.has(k)) return;
    // Bounded like the session's tree fetches; an ask nobody took is simply dropped.
    if (this.cursorAsks.size >= MAX_CURSOR_ASKS) this.cursorAsks.delete(this.cursorAsks.keys().next().value!);
    this.cursorAsks.set(k, this.ask(root));
  }

  private async ask(root: Hash): Promise<number | undefined> {
    if (this.cursorUnanswered >= CURSOR_GIVE_UP) return undefined;
    const chunk = await this.rx.askCursor(root, CURSOR_WAIT_MS);
    this.cursorUnanswered = chunk === undefined ? this.cursorUnanswered + 1 : 0;
    return chunk;
  }

  /** Bytes of the chunk `leaf`, already verified against it, that get() hands out instead of fetching them. */
  provide(leaf: Hash, bytes: Buffer): void {
    this.provided.set(toHex(leaf), bytes);
  }

  /**
   * The provided bytes of `leaf` (see provide), if it has them at `length`, counted as fetched as
   * get() counts them: get() without a promise, for a caller that has nothing else to wait for.
   */
  takeProvided(leaf: Hash, length: number): Buffer | undefined {
    const given = this.provided.get(toHex(leaf));
    if (!given || given.length !== length) return undefined;
    this.counts.chunksFetched++;
    return given;
  }

  /** Forget provided bytes (the directory they came for is done). */
  withdraw(leaf: Hash): void {
    this.provided.delete(toHex(leaf));
  }

  /**
   * The chunk `leaf` is stored (in `file` at `offset` when given): later requests read it from
   * there. Until now a fetch of it counted as in flight, so no other file fetched it meanwhile.
   * `file` is held by reference: its path may change (a temporary name, then the destination).
   */
  stored(leaf: Hash, file?: { path: string }, offset = 0): void {
    this.inflight.delete(toHex(leaf));
    if (file && this.keepHomes) this.homes.add(leaf, file, offset);
  }

  /**
   * The session syncs one file: no other file will ask for its chunks, and equal chunks within it
   * travel once anyway (ChunkPlaces), so where they were written is not remembered (for a 4 GiB
   * file that was 7 MiB: leaf copies, offsets, the hash table, a file reference each).
   */
  oneFile(): void {
    this.keepHomes = false;
  }
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
    return (await readFull(fh, buf, length, offset)) === length ? buf : undefined;
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}
