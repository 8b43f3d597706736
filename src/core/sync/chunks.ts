/**
 * Where the bytes of a chunk come from, so that equal chunks travel once per session: all-zero
 * chunks are known without asking; a chunk already written in this session is read back from
 * there (and verified); a chunk another file is fetching is waited for; anything else is fetched.
 */
import { open } from '../base/bytefs.js';
import { readFull } from '../base/readfull.js';
import { hash, toHex, type Hash } from '../model/hash.js';
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

/** Leaf hashes of all-zero chunks by length: such chunks are known without asking anyone. */
const zeroLeaves = new Map<number, string>();

/** The leaf hash (hex) of `length` zero bytes. */
export function zeroLeaf(length: number): string {
  let k = zeroLeaves.get(length);
  if (k === undefined) zeroLeaves.set(length, (k = toHex(hash(Buffer.alloc(length)))));
  return k;
}

/**
 * The groups of `places` (placesOf, in chunk order) in two passes: from the first whose chunk is
 * at or after `cursor` to the end, then the ones before it. A receiver that starts a file where the
 * share is sending it shares those datagrams with the receivers already there, and asks for what
 * they had before only once they are done: chunks of its second pass, asked for at once, would come
 * first in the share's walk order and hold back the receivers ahead.
 */
export function fromCursor(places: Map<string, number[]>, cursor: number | undefined): [number[][], number[][]] {
  const all = [...places.values()];
  const at = cursor === undefined ? -1 : all.findIndex((p) => p[0]! >= cursor);
  return at <= 0 ? [all, []] : [all.slice(at), all.slice(0, at)];
}

/** The chunk indices grouped by leaf hash: each group is one chunk's bytes, wanted at several places. */
export function placesOf(tree: MerkleTree, indices: readonly number[]): Map<string, number[]> {
  const places = new Map<string, number[]>();
  for (const i of indices) {
    const k = tree.leaf(i).toString('hex');
    const list = places.get(k);
    if (list) list.push(i);
    else places.set(k, [i]);
  }
  return places;
}

export class ChunkSource {
  /** Distinct chunks wanted so far (for progress). */
  wanted = 0;
  /** Chunk fetches in flight, by leaf: a second file wanting the same chunk waits for the first. */
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly homes = new Map<string, ChunkHome>();
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
    const home = this.homes.get(k);
    if (home) {
      const at = home.file.path;
      let copy = await readChunkAt(at, home.offset, length);
      // Renamed while we read (the output was committed): read it where it is now.
      if (!copy && home.file.path !== at) copy = await readChunkAt(home.file.path, home.offset, length);
      if (copy && hash(copy).equals(leaf)) return { bytes: copy, fetched: false };
      // Gone (an aborted output) or overwritten since: fetch it.
      this.homes.delete(k);
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
    const k = toHex(leaf);
    this.inflight.delete(k);
    if (!file || this.homes.has(k)) return;
    if (this.homes.size >= MAX_CHUNK_HOMES) this.homes.delete(this.homes.keys().next().value!);
    this.homes.set(k, { file, offset });
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
