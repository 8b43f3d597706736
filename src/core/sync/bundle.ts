/**
 * Bundles on the receiving side (docs/protocol.md#bundles): a directory's children, trees and
 * small files' bytes, in one object per part. Only a shortcut: a share without bundles (the C
 * one, or ours with --no-bundles) is synced the normal way, and so is every child a bundle lacks
 * or carries wrong. Nothing in a bundle is trusted that the directory's hash does not cover: each
 * entry must be a child the verified directory lists, its object must hash to that child's entry
 * hash (as a fetched one must), a file's tree must verify against the root that hash covers, and
 * its bytes against the tree's leaves; bytes that do not verify are dropped (fetched as chunks).
 */
import { TurnBudget } from '../base/turns.js';
import { HASH_SIZE, hash, toHex, type Hash } from '../model/hash.js';
import { MerkleTree, CHUNK_SIZE, chunkLength } from '../model/tree.js';
import { decodeNetTreeHead, dirChildren, partCount, type DecodeLimits } from '../wire/nettree.js';
import { bundleKey, decodeBundle, type BundleEntry, type BundlePart } from '../wire/bundle.js';
import { BUNDLE_PART_BUDGET } from '../index/bundles.js';
import { checkFirstPart, fileRootOf, objectMatches, verifiedTree } from '../wire/verify.js';
import type { FetchedEntry } from './context.js';
import type { ObjectReceiver } from './receiver.js';

/** A child taken from a bundle: its verified entry and, for a small file, its verified bytes. */
export interface BundledChild {
  entry: FetchedEntry;
  data?: Buffer;
}

/**
 * Until a share is known to serve bundles, how long a directory that has arrived waits for its
 * bundle (asked for at the same time) before its children go the normal way. A share with
 * bundles starts sending one on the same report as the directory, so it is there by then; a
 * share without costs this once, since the first miss settles that it has none.
 */
const PROBE_WAIT_MS = 300;
/** After PROBE_WAIT_MS, the wait goes on in such steps while tree symbols keep arriving (a bundle being received on a busy link or host). */
const PROBE_STEP_MS = 100;
/**
 * ... and while some tree object is part decoded and its last symbol came within this long. A part
 * of more than 64 symbols is held 300 ms after its source symbols before its repair symbols (the
 * share's costly hold, docs/protocol.md): a receiver that lost some hears nothing meanwhile. With a
 * 100 ms silence the top's bundle of a 5,000-file tree (162 symbols), joined by the last of three
 * receivers in mid-round, was given up for lost in one run in two, and that receiver fetched every
 * file alone: the sender sent 3-4 times the tree.
 */
const PROBE_QUIET_MS = 600;
/** A first bundle request with nothing for this long: the share has no bundles. */
const PROBE_DEADLINE_MS = 3000;
/**
 * Once the share is known to serve bundles, a directory waits for its bundle while tree symbols
 * keep arriving (a busy share sends many bundles side by side; a loaded receiver decodes them
 * slowly), and gives up when none came for this long: its children then go the normal way, and
 * the next directory waits only PROBE_WAIT_MS (a spoofer that made a share without bundles look
 * like one costs one such wait).
 */
const PART_IDLE_MS = 2000;
/** Longest a bundle request stays asked for (its group joined) whatever arrives. */
const PART_DEADLINE_MS = 30_000;
/**
 * Bundle parts fetched at once. Each is up to a MiB held by a decoder: 8 stay well inside the
 * receiver's 32 MiB of tree decoders with room for the tree objects fetched beside them.
 */
export const BUNDLE_FETCHES = 8;
/**
 * ... and fewer while their bytes would not fit in half of a receive buffer. A first sync of 20,000
 * files in 100 directories began with eight parts of 840 KB asked for at once: 6.7 MB in about 60 ms
 * at 900 Mbit/s, while the receiver was busy with the top directory, and its socket (8 MiB of buffer,
 * about 7 MB of 1 KB datagrams) dropped 700-2,500 datagrams; the parts that lost some waited seconds
 * for their repair symbols (5.6-18 s in all, against 4.2-4.7 s with four at once). Until a part has
 * arrived each is taken to be BUNDLE_PART_BUDGET bytes (four at once), then as large as the largest
 * seen (a 5,000-file tree's 420 KB parts: eight).
 */
export const FETCH_BYTES = 4 * 1024 * 1024;
/**
 * ... and fewer again while the socket loses datagrams: a part that finishes after the socket lost
 * some halves the number (not below MIN_BUNDLE_FETCHES); every RAISE_AFTER parts finished without a
 * loss add one back. Loss in the network does not count, only what the receiver's own socket dropped
 * (DatagramSource.lostDatagrams): a receiver slowed by other work.
 */
export const MIN_BUNDLE_FETCHES = 2;
const RAISE_AFTER = 8;
/**
 * A directory's bundle is asked for only when at least this many of its children are missing
 * locally, and at least a quarter of them: one changed file in a directory of a hundred costs its
 * tree and chunk, not the whole bundle.
 */
const MIN_WANTED = 4;
/**
 * Bytes of bundles held at once: arrived, and not yet released by the directory they came for
 * (its files written from them). A new directory's bundle is asked for only while less is held
 * (and in flight, each taken to be as large as the largest bundle seen). Every subdirectory's
 * bundle is asked for as soon as its parent is listed, and bundles arrive faster than their files
 * are written: a first sync of 100,000 files in 100 directories held 280 MB of bundles at its peak
 * (the tree's bytes), its receiver 530-680 MiB. The directories holding bundles keep every entry
 * slot busy long before this fills. A directory whose bundle alone is larger is still taken whole.
 */
export const HOLD_BYTES = 24 * 1024 * 1024;

/** A directory's bundle, verified: its children, and the release of the bytes they pin (once). */
export interface HeldBundle {
  children: Map<string, BundledChild>;
  release(): void;
}

/** The parts of one directory's bundle and the bytes they hold (their objects). */
interface ArrivedBundle {
  parts: BundlePart[];
  bytes: number;
}

export interface BundleStats {
  /** Bundle parts that arrived. */
  parts: number;
  /** Children taken from bundles (not fetched alone). */
  entries: number;
  /** Of those, files whose bytes came in the bundle too. */
  files: number;
  /** Entries or file bytes in bundles that did not verify (fetched the normal way instead). */
  rejected: number;
}

export class BundleFetcher {
  /** Whether the share serves bundles: unknown until the first one arrives or the first wait for one runs out. */
  private state: 'unknown' | 'yes' | 'no';
  private readonly pending = new Map<string, Promise<ArrivedBundle | undefined>>();
  /** Parts being fetched, the number the socket's losses allow (MIN_BUNDLE_FETCHES), and the fetches waiting for a turn. */
  private fetching = 0;
  private fetchLimit = BUNDLE_FETCHES;
  /** The largest part seen so far (FETCH_BYTES); undefined until one has arrived. */
  private partBytes: number | undefined;
  private readonly fetchTurns: (() => void)[] = [];
  /**
   * HOLD_BYTES: bytes of bundles arrived and not released, bundles asked for and not arrived, the
   * largest bundle seen, and the directories (by key) waiting for room, each with its turn.
   */
  private heldBytes = 0;
  private fetchingBundles = 0;
  private bundleBytes = BUNDLE_PART_BUDGET;
  private readonly roomTurns: { key: string; turn: () => void }[] = [];
  /** When bytes were last let go of or a bundle last arrived (waiting in children()). */
  private roomMadeAt = Date.now();
  /** The socket's loss count when last looked at, and the parts finished without a loss since the limit last changed. */
  private lostSeen = 0;
  private cleanParts = 0;
  readonly stats: BundleStats = { parts: 0, entries: 0, files: 0, rejected: 0 };

  constructor(
    private readonly rx: ObjectReceiver,
    private readonly limits: DecodeLimits,
    enabled: boolean,
    /** Verifying a part's entries hands the event loop back between them (base/turns.ts). */
    private readonly turns: TurnBudget = new TurnBudget(),
  ) {
    this.state = enabled ? 'unknown' : 'no';
  }

  /** Ask for the bundle of the directory asked for by `dirKey` now (when the directory itself is asked for). */
  prefetch(dirKey: Hash): void {
    if (this.state === 'no') return;
    const k = toHex(dirKey);
    if (!this.pending.has(k)) this.pending.set(k, this.fetchParts(dirKey));
  }

  /**
   * Ask now for the bundle of the verified directory `dir` (asked for by `dirKey`) that the local
   * copy lacks entirely (all its children are missing, so children() will want it), if it has
   * enough children for one. A parent asks for its new subdirectories' bundles in its own order:
   * asked for as each subdirectory's lstat and mkdir happened to finish, the order differed from
   * receiver to receiver, and a share serving several receivers at once sent a part again for
   * each receiver that came to it late.
   */
  prefetchMissingDir(dir: FetchedEntry, dirKey: Hash): void {
    if (dir.obj.subarray(dir.head.payloadOffset).length / HASH_SIZE >= MIN_WANTED) this.prefetch(dirKey);
  }

  /**
   * The children of the verified directory `dir` (asked for by `dirKey`) that its bundle carries,
   * each verified, by entry hash (hex). Empty when the share has no bundle or it did not come in
   * time, or when only `wanted` of its children are missing locally and that is too few (MIN_WANTED).
   */
  async children(dir: FetchedEntry, dirKey: Hash, wanted: number): Promise<HeldBundle> {
    const none: HeldBundle = { children: new Map(), release: () => undefined };
    const total = dir.obj.subarray(dir.head.payloadOffset).length / HASH_SIZE;
    const k = toHex(dirKey);
    if (this.state === 'no' || wanted < MIN_WANTED || wanted * 4 < total) {
      // A bundle asked for with the directory goes on until it arrives or times out; nobody waits for it.
      this.drop(k);
      return none;
    }
    this.prefetch(dirKey);
    const p = this.pending.get(k)!;
    // Waiting for room (HOLD_BYTES) is not a share that is slow or has no bundles: it ends as
    // directories before it are written (while none has been for PART_DEADLINE_MS, it goes the
    // normal way rather than wait on a directory that never lets go).
    const waiting = () => this.roomTurns.some((r) => r.key === k) && Date.now() - this.roomMadeAt < PART_DEADLINE_MS;
    let got: ArrivedBundle | undefined | 'late' = 'late';
    if (this.state !== 'yes') {
      got = await within(p, PROBE_WAIT_MS);
      // Nothing else is being fetched for this directory while it waits: symbols that keep coming
      // are its bundle's (a busy share or receiver), so wait on while they do, or while the object
      // they began is still being decoded and may be in the share's hold (PROBE_QUIET_MS). Once a
      // first part has arrived the share is known to serve bundles, and the rest is waited for as
      // below: a directory of 20,000 files has a bundle of 84 parts, which took longer than
      // PROBE_DEADLINE_MS, and its files were then fetched one by one (2.8 times the tree sent).
      const until = Date.now() + PROBE_DEADLINE_MS;
      while (got === 'late' && !this.serves() && ((this.rx.treeHeardWithin(PROBE_QUIET_MS, true) && Date.now() < until) || waiting())) {
        got = await within(p, PROBE_STEP_MS);
      }
      // Settled for the rest of the session unless this one still turns up (fetchParts).
      if (got === 'late' && this.state === 'unknown') this.state = 'no';
    }
    if (got === 'late' && this.serves()) {
      got = await within(p, PART_IDLE_MS);
      while (got === 'late' && (this.rx.treeHeardWithin(PART_IDLE_MS) || waiting())) got = await within(p, PROBE_STEP_MS);
      // Expected and not there: ask again as if nothing were known (a short wait from now on).
      if (got === 'late' && this.serves()) this.state = 'unknown';
    }
    const arrived = got === 'late' ? undefined : got;
    if (!arrived) {
      this.drop(k);
      return none;
    }
    this.pending.delete(k);
    let released = false;
    const release = () => {
      if (!released) this.unhold(arrived.bytes);
      released = true;
    };
    try {
      return { children: await this.verify(dir, arrived.parts), release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Whether the share is known to serve bundles (a method: the state changes while children() waits). */
  private serves(): boolean {
    return this.state === 'yes';
  }

  /** Nobody takes the bundle of `k`: its bytes are not held once it arrives (or now, if it has). */
  private drop(k: string): void {
    const p = this.pending.get(k);
    this.pending.delete(k);
    void p?.then((a) => a && this.unhold(a.bytes));
  }

  /** Bytes of an arrived bundle are no longer held: directories waiting for room may go on. */
  private unhold(bytes: number): void {
    this.heldBytes -= bytes;
    this.roomMadeAt = Date.now();
    this.giveRoom();
  }

  /**
   * Whether a new directory's bundle must wait (HOLD_BYTES); the first never does. One being
   * fetched counts as the largest seen, up to a quarter of HOLD_BYTES: after one huge directory,
   * the bundles of small ones still travel a few at a time.
   */
  private get full(): boolean {
    const each = Math.min(this.bundleBytes, HOLD_BYTES / 4);
    return this.heldBytes + this.fetchingBundles * each >= HOLD_BYTES && this.heldBytes + this.fetchingBundles > 0;
  }

  private giveRoom(): void {
    while (this.roomTurns.length > 0 && !this.full) {
      this.fetchingBundles++;
      this.roomTurns.shift()!.turn();
    }
  }

  /** Wait until a new bundle fits (HOLD_BYTES); counts it as being fetched from then on. */
  private async room(key: string): Promise<void> {
    if (!this.full && this.roomTurns.length === 0) {
      this.fetchingBundles++;
      return;
    }
    await new Promise<void>((turn) => this.roomTurns.push({ key, turn }));
  }

  /** Bytes of bundles arrived and not released (HOLD_BYTES), for tests. */
  get held(): number {
    return this.heldBytes;
  }

  private async fetchParts(dirKey: Hash): Promise<ArrivedBundle | undefined> {
    await this.room(toHex(dirKey));
    let arrived: ArrivedBundle | undefined;
    try {
      arrived = await this.fetchAllParts(dirKey);
      return arrived;
    } finally {
      // Counted as held from arrival until released: children() hands its release to the
      // directory, or drops it.
      this.fetchingBundles--;
      this.roomMadeAt = Date.now();
      if (arrived) {
        this.heldBytes += arrived.bytes;
        this.bundleBytes = Math.max(this.bundleBytes, arrived.bytes);
      }
      this.giveRoom();
    }
  }

  private async fetchAllParts(dirKey: Hash): Promise<ArrivedBundle | undefined> {
    let bytes = 0;
    const one = async (z: number, deadlineMs: number) => {
      await this.fetchTurn();
      try {
        const obj = await this.rx.fetchTree(bundleKey(dirKey, z), (o) => isPart(o, dirKey, z), { deadlineMs });
        this.stats.parts++;
        this.partBytes = Math.max(this.partBytes ?? 0, obj.length);
        bytes += obj.length;
        return bundleOf(obj)!;
      } finally {
        this.fetched();
      }
    };
    let first: BundlePart;
    try {
      first = await one(0, this.state === 'yes' ? PART_DEADLINE_MS : PROBE_DEADLINE_MS);
    } catch {
      // Timed out, interrupted, or the session failed: the normal path says which.
      return undefined;
    }
    this.state = 'yes';
    const rest = await Promise.all(Array.from({ length: first.parts - 1 }, (_, i) => one(i + 1, PART_DEADLINE_MS).catch(() => undefined)));
    return { parts: [first, ...rest.filter((p): p is BundlePart => p !== undefined)], bytes };
  }

  /** Bundle parts fetched at once now: BUNDLE_FETCHES, fewer for big parts (FETCH_BYTES) and while the socket loses datagrams. */
  get fetchesAllowed(): number {
    const byBytes = Math.floor(FETCH_BYTES / Math.max(1, this.partBytes ?? BUNDLE_PART_BUDGET));
    return Math.max(MIN_BUNDLE_FETCHES, Math.min(this.fetchLimit, byBytes));
  }

  private async fetchTurn(): Promise<void> {
    if (this.fetching < this.fetchesAllowed && this.fetchTurns.length === 0) this.fetching++;
    else await new Promise<void>((turn) => this.fetchTurns.push(turn));
  }

  /** A part fetch ended (arrived, timed out or failed): adjust the limit to the socket's losses, then hand out turns. */
  private fetched(): void {
    this.fetching--;
    const lost = this.rx.lostDatagrams;
    if (lost > this.lostSeen) {
      this.lostSeen = lost;
      this.fetchLimit = Math.max(MIN_BUNDLE_FETCHES, this.fetchLimit >> 1);
      this.cleanParts = 0;
    } else if (this.fetchLimit < BUNDLE_FETCHES && ++this.cleanParts >= RAISE_AFTER) {
      this.fetchLimit++;
      this.cleanParts = 0;
    }
    while (this.fetching < this.fetchesAllowed && this.fetchTurns.length > 0) {
      this.fetching++;
      this.fetchTurns.shift()!();
    }
  }

  /** The entries of `parts` that are children of `dir`, each checked as a fetched entry would be. */
  private async verify(dir: FetchedEntry, parts: readonly BundlePart[]): Promise<Map<string, BundledChild>> {
    const listed = new Set(dirChildren(dir.obj.subarray(dir.head.payloadOffset)).map((h) => toHex(h)));
    const out = new Map<string, BundledChild>();
    for (const part of parts) {
      for (const e of part.entries) {
        const turn = this.turns.pause();
        if (turn) await turn;
        const k = toHex(e.hash);
        if (!listed.has(k) || out.has(k)) {
          this.stats.rejected++;
          continue;
        }
        const child = verifyBundleEntry(e, this.limits);
        if (!child) {
          this.stats.rejected++;
          continue;
        }
        if (e.data && !child.data) this.stats.rejected++;
        out.set(k, child);
        this.stats.entries++;
        if (child.data) this.stats.files++;
      }
    }
    return out;
  }
}

/** What `p` resolves to, or 'late' after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Decoded bundles by object: the receiver offers every decoded object to every waiting request,
 * so each is decoded once, not once per bundle request (null: not a bundle).
 */
const decoded = new WeakMap<Buffer, BundlePart | null>();

function bundleOf(obj: Buffer): BundlePart | null {
  let b = decoded.get(obj);
  if (b === undefined) {
    try {
      b = decodeBundle(obj);
    } catch {
      b = null;
    }
    decoded.set(obj, b);
  }
  return b;
}

/** Whether `obj` is part `z` of the bundle of `dirKey` and decodes whole (a request takes nothing less). */
function isPart(obj: Buffer, dirKey: Hash, z: number): boolean {
  const b = bundleOf(obj);
  return b !== null && b.part === z && b.key.equals(dirKey);
}

/**
 * One bundle entry as the entry its hash names, or undefined when it is not: the object must
 * hash to `e.hash` (objectMatches, as for a fetched entry), a file must be one tree part whose
 * tree verifies, and a file's bytes must match its leaves (else the entry comes without them).
 */
export function verifyBundleEntry(e: BundleEntry, limits: DecodeLimits): BundledChild | undefined {
  try {
    if (!objectMatches(e.obj, e.hash, undefined, limits)) return undefined;
    const obj = e.obj;
    const head = decodeNetTreeHead(obj, limits);
    if (head.type !== 'file') return { entry: { head, obj, key: e.hash } };
    if (head.size === 0) return { entry: { head, obj, key: e.hash, tree: MerkleTree.blank(0) } };
    if (partCount(head.objectLength) !== 1) return undefined;
    checkFirstPart(head, obj);
    const tree = verifiedTree(head, obj, fileRootOf(head, obj));
    const entry: FetchedEntry = { head, obj, key: e.hash, tree };
    const data = e.data;
    if (!data || data.length !== head.size) return { entry };
    for (let i = 0; i < tree.chunks; i++) {
      if (!hash(data.subarray(i * CHUNK_SIZE, i * CHUNK_SIZE + chunkLength(head.size, i))).equals(tree.leaf(i))) return { entry };
    }
    return { entry, data };
  } catch {
    return undefined;
  }
}
