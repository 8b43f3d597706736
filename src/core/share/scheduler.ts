/**
 * The share's send policy (docs/protocol.md#mld-and-when-a-share-sends), pure: no sockets, no timers,
 * no disk. Every call takes the time; share.ts feeds it listener events and asks it, datagram by
 * datagram, what to send next and when to ask again.
 *
 * A join for a group that names an object starts one stream per (group, interface). Each new
 * listener is granted a round at full speed (the K source symbols first, then repair symbols with
 * fresh ESIs, enough for a lossy link), after which the stream trickles until MLD says nobody
 * listens any more. Streams are served in the order receivers walk the share (walkPosition), the
 * first ACTIVE_WINDOW with a round left side by side, and every listened stream gets at least its
 * trickle, so nothing starves. With no listener the wire is silent.
 */
import { kPrime } from '../fec/kprime.js';
import { FAST_MAX_K_PRIME } from '../fec/rfc6330.js';
import { COSTLY_REPAIR_GRACE_MS, GRACE_MAX_MS, GRACE_MIN_MS, ScheduledStream, TRICKLE_MS, type SymbolChoice } from './stream.js';

export { ScheduledStream, type RoundOutcome, type SymbolChoice } from './stream.js';

/**
 * Streams served side by side at the front of the order. Interleaving them means
 * each advances slowly enough that a receiver's leave (which the kernel may
 * delay by tens of milliseconds) stops a stream soon after its last useful symbol.
 */
export const ACTIVE_WINDOW = 32;
/** The leave latency assumed before any has been measured. */
const INITIAL_LEAVE_LATENCY_MS = 50;
/** A stream whose listeners all left lingers (silent) this long in case one re-joins for more. */
export const LINGER_MS = 500;
/**
 * A stream still trickling this long after its round, to a listener that never left, has its
 * listeners asked whether they still listen (SchedulerOptions.onProbe), and again as often while
 * it goes on. MLD reports cross the same lossy links as the data: a receiver's leave (the kernel
 * sends it twice) is lost now and then, in the 3-receiver benchmark at 5% loss for dozens of
 * chunks in one run in two, and each such stream trickled a datagram every TRICKLE_MS until the
 * listener timer ran out (50 s): a tenth of all datagrams sent. A listener still there answers and
 * keeps its trickle (and re-asks if it stalls); a lost leave now costs about two seconds of trickle.
 */
export const PROBE_AFTER_MS = 1000;
/** How often lingering streams are looked at (there may be hundreds: not at every pick). */
export const SWEEP_MS = LINGER_MS / 5;
/**
 * A chunk stream started by one receiver waits for the others that are working
 * through the same share but have not reached that chunk yet, so that one round
 * serves them all. Without it a receiver a little ahead gets each chunk alone and
 * the one behind asks for it again later: in the 3-receiver benchmark a sixth of
 * the chunks went out two or three times, and with a fixed 300 ms wait still an
 * eighth in one run in five. Only receivers in the same file (or still reading
 * the index) are waited for, and only while they are coming:
 * - one still reading the index, while it keeps joining (GATHER_IDLE_MS) and at
 *   most GATHER_MAX_MS: how far it is from the chunk is not known yet;
 * - one behind in the file, while it keeps moving: its furthest join advanced
 *   within GATHER_IDLE_MS, or it listens to a stream of ours that still has a
 *   round to send (it is waiting for the share, not stalled); at most
 *   GATHER_LIMIT_MS.
 * A receiver with many chunks in flight is so held about its window ahead of one
 * with few (128 chunks ahead of one with 4: 1.3 s on the quiet 100 Mbit/s lab,
 * several seconds on a loaded host, where the one behind gets little CPU). A bound
 * of 2 s let go of the whole window whenever the one behind slowed a little, and
 * from then on the one ahead ran alone; judging by the pace of the one behind was
 * tried too, but that pace is low precisely while the streams let go compete with
 * its own. A stream that has sent nothing yet when a receiver shows up waits for
 * it as if opened then, so what is held does not depend on how quickly the share
 * read the chunks. The one behind is not held back meanwhile (its chunks are not
 * waiting for anyone), so it catches up at full rate and then all move together.
 */
export const GATHER_MAX_MS = 2000;
export const GATHER_IDLE_MS = 300;
export const GATHER_LIMIT_MS = 5000;
/**
 * A bundle part (an lcsync extension: one per directory, up to a MiB) is wanted by every receiver
 * of the tree, in about the same order, but not at the same moment: receivers started together
 * drift apart by more than the few milliseconds a part takes to send, and each new listener of a
 * running part costs a whole round. With three receivers at 5% loss the share sent 2.5 times
 * every part's symbols. So a new part's first round waits for the receivers active on the
 * interface that have not asked for it yet, until they join or JOIN_GATHER_MAX_MS (receivers
 * starved of CPU were seen 300-400 ms apart); one that has not joined anything for
 * JOIN_GATHER_IDLE_MS is not waited for. While held, the part trickles its source symbols (one
 * every TRICKLE_MS, out of its round): a receiver that does not yet know whether the share has
 * bundles waits for one only while tree symbols arrive (sync/bundle.ts PROBE_WAIT_MS). The one
 * ahead is held, so the others catch up and then all join each part within a few milliseconds.
 */
export const JOIN_GATHER_MAX_MS = 2000;
export const JOIN_GATHER_IDLE_MS = 600;
/** A running part's first round is held for a receiver that shows up while this share of its source symbols is still owed (holdPartsFor). */
export const HOLD_RUNNING_PART_OWED = 1 / 4;
/**
 * `share --gather DUR` (opt-in, for fleets that start from cron within a known spread): the first
 * chunk join on an interface where no chunk stream is alive opens a cohort window of DUR, and
 * every chunk stream opened on that interface until it closes holds its first round until then.
 * Receivers that start within the window fetch the metadata (never held) and join their first
 * chunks meanwhile, so one pass of the file serves all of them. Costs the first receiver up to DUR.
 */
export const GATHER_WINDOW_MAX_MS = 60_000;
/** Objects whose joiners are remembered (so a part is not held for a receiver that had it already). */
const JOINERS_KEPT = 4096;
/** How often held streams are checked for receivers that stopped moving. */
export const GATHER_CHECK_MS = 50;
/** A receiver's frontier not moved for this long is forgotten. */
export const FRONTIER_TTL_MS = 1000;

/** Positions of the chunks of one file: a file's rank times this, plus the chunk's number in the file. */
const FILE_STRIDE = 2 ** 32;
/** The position of metadata (tree parts, directories, symlinks, signatures): a receiver reads it before any chunk. */
export const METADATA_POSITION = -1;

/**
 * Where an object sits in a receiver's walk of the share: metadata first (METADATA_POSITION), then
 * chunks by file (its rank in the index's records) and by chunk number within the file.
 */
export function walkPosition(fileRank: number, chunkNumber: number): number {
  return fileRank * FILE_STRIDE + chunkNumber;
}

/** The file rank of a chunk's walk position. */
function fileOfPosition(pos: number): number {
  return Math.floor(pos / FILE_STRIDE);
}

export interface SchedulerOptions<T> {
  /** Trickle between rounds (MLD); push mode has no listeners to serve between rounds. */
  trickle: boolean;
  /** Note receivers' frontiers and hold new chunk streams for those behind (MLD; push mode has no receivers to see). */
  gather: boolean;
  /** A stream was dropped because its listeners left and did not come back. */
  onDrop?: (stream: ScheduledStream<T>) => void;
  /**
   * `share --gather DUR` in milliseconds: hold the chunk streams of a new cohort until DUR after
   * its first chunk join (see GATHER_WINDOW_MAX_MS). 0 or absent: no window.
   */
  cohortMs?: number;
  /**
   * Ask MLD who still listens to stream `s` (trickling PROBE_AFTER_MS after its round with a
   * listener that never left): hosts that do not answer come back as part(), and leave() when none does.
   */
  onProbe?: (stream: ScheduledStream<T>) => void;
  /** A join let a held stream go: something is due sooner than wakeAt() said before. */
  onRelease?: () => void;
  /**
   * A listener was granted a round ('listener') or asked for more after one ('reask': a re-join
   * or a repeated report): what --bwlimit auto steers by (net/autorate.ts).
   */
  onAsk?: (kind: 'listener' | 'reask') => void;
  /**
   * How a round's listeners came out of its hold: left in time (`kept`) or still joined at its end
   * (`late`), the faster of --bwlimit auto's signals (stream.ts RoundOutcome).
   */
  onOutcome?: (stream: ScheduledStream<T>, kept: number, late: number) => void;
}

/** Where a receiver is in its walk: the furthest position it has joined lately, when it last joined anything, and when that position last moved. */
interface Frontier {
  pos: number;
  at: number;
  movedAt: number;
  /** When it last joined a bundle part (-Infinity: never): a receiver walking the tree by bundles, coming to the next parts (joinsComing). */
  partAt: number;
}

/** What a join did: served by a running stream, waiting for one being set up, or the caller must set one up. */
export type JoinOutcome = 'joined' | 'waiting' | 'start';

/**
 * Streams, their order, the receivers' frontiers and the measured leave latency. `T` is whatever
 * the caller sends a stream with (share.ts: the object's encoder and counters).
 */
export class SendScheduler<T> {
  private readonly streams = new Map<string, ScheduledStream<T>>();
  /** Streams being set up (the caller is reading the object), with the other receivers that joined meanwhile. */
  private readonly starting = new Map<string, Set<string>>();
  /**
   * Streams in the order receivers walk the share: metadata first, then chunks
   * by file and offset, and the first one with a round left is served. This is
   * what lets receivers that started at different times converge: the one
   * behind gets its (earlier) chunks at full speed while the one ahead waits,
   * trickled, until the laggard reaches the streams the leader is still on and
   * both are served by the same datagrams. Within one receiver its oldest
   * request comes first, so nothing it waits for starves. Lingering streams (silent, everyone
   * left) are not in it but in `lingering` until a join brings them back: at line rate a few hundred
   * of them sit before the streams with rounds, and every pick walked past them.
   */
  private order: ScheduledStream<T>[] = [];
  /** The ready streams of one pick (its slots are reused; cleared after each pick). */
  private readonly front: (ScheduledStream<T> | undefined)[] = new Array<ScheduledStream<T> | undefined>(ACTIVE_WINDOW).fill(undefined);
  private cursor = 0;
  private nextTrickleScan = 0;
  private readonly lingering = new Set<ScheduledStream<T>>();
  /** Smoothed time from a stream's last source symbol to its listener's leave. */
  private leaveLatencyMs = INITIAL_LEAVE_LATENCY_MS;
  /** Per interface, per receiver: its frontier (see Frontier). */
  private readonly frontiers = new Map<string, Map<string, Frontier>>();
  /** When held streams are next checked for receivers that stopped moving; undefined: nothing is held. */
  private gatherCheckAt: number | undefined;
  /** When lingering streams are next looked at. */
  private nextSweepAt = 0;
  /** Per interface: when the current cohort window (--gather) closes. */
  private readonly cohortUntil = new Map<string, number>();
  /** Cohort windows not yet closed (checked in housekeep): interface -> end. */
  private readonly cohortOpen = new Map<string, number>();
  /** Who joined each object gathered by joins lately (oldest first, at most JOINERS_KEPT): not waited for again. */
  private readonly joiners = new Map<string, Set<string>>();

  constructor(private readonly opts: SchedulerOptions<T>) {}

  /** The hold after the source symbols: 1.5 times the measured leave latency, bounded. */
  get graceMs(): number {
    return Math.min(GRACE_MAX_MS, Math.max(GRACE_MIN_MS, 1.5 * this.leaveLatencyMs));
  }

  get size(): number {
    return this.streams.size;
  }

  /** The items of every stream, oldest first. */
  items(): T[] {
    return [...this.streams.values()].map((s) => s.item);
  }

  get(key: string): ScheduledStream<T> | undefined {
    return this.streams.get(key);
  }

  /**
   * Host `from` joined the group of stream `key` on `ifname`, for an object at `position`. A
   * running stream serves it ('joined'; a report while paused means someone still listens after a
   * leave: carry on); while the stream is being set up it is one more listener ('waiting');
   * otherwise the caller reads the object and calls open() ('start'). `lacking`: the host said it lacks
   * symbols (ScheduledStream.joined).
   */
  join(key: string, ifname: string, from: string, position: number, now: number, answer = false, lacking = false): JoinOutcome {
    // Tree joins count too (position -1): a receiver still reading the index is about to start on the chunks.
    // A lacking report is no step of the receiver's walk (it joined that group before).
    if (this.opts.gather && !lacking) this.noteFrontier(ifname, from, position, now);
    const existing = this.streams.get(key);
    if (existing) {
      if (existing.gatherBy === 'joins' && !lacking) {
        this.noteJoiner(existing, from);
        this.notePartJoin(ifname, from, now);
      }
      existing.paused = false;
      this.relist(existing);
      const { listener, reask, repeat } = existing.asks;
      // A lacking report ends a lone listener's hold only while no other receiver is walking the share on
      // this interface: one behind may join during the hold, and the margin would go out twice.
      existing.joined(from, now, answer, lacking && !this.othersWalking(ifname, from, now));
      if (existing.asks.listener !== listener) this.opts.onAsk?.('listener');
      else if (existing.asks.reask !== reask || existing.asks.repeat !== repeat) this.opts.onAsk?.('reask');
      return 'joined';
    }
    const waiting = this.starting.get(key);
    if (waiting) {
      waiting.add(from);
      return 'waiting';
    }
    this.starting.set(key, new Set());
    return 'start';
  }

  /** Whether a receiver other than `host` has joined anything on `ifname` within FRONTIER_TTL_MS (gather only). */
  private othersWalking(ifname: string, host: string, now: number): boolean {
    const hosts = this.frontiers.get(ifname);
    if (!hosts) return false;
    for (const [h, f] of hosts) if (h !== host && now - f.at < FRONTIER_TTL_MS) return true;
    return false;
  }

  /** Whether stream `key` is still wanted (no leave came since join() said 'start'). */
  isStarting(key: string): boolean {
    return this.starting.has(key);
  }

  /** Setting stream `key` up failed or was given up. */
  abandon(key: string): void {
    this.starting.delete(key);
  }

  /**
   * Start stream `key` (after join() said 'start') for `starter`, who joined at `joinedAt`, and
   * for whoever joined while it was set up. A chunk stream (`gather` true: by walk position) holds
   * its first round for receivers not far behind; a bundle part (`gather` 'joins') for the active
   * receivers that have not joined it yet (JOIN_GATHER_MAX_MS).
   */
  open(key: string, spec: { ifname: string; position: number; K: number; gather: boolean | 'joins'; item: T }, starter: string, joinedAt: number): ScheduledStream<T> {
    // A bundle part's repair symbols beyond the small-block code cost an encoder (fec.ts): hold
    // longer for the leaves. Parts go in a pipeline (8 in flight), so a lossy receiver's later
    // margin costs little; a file's tree, which its chunks wait for, keeps the measured hold.
    const costly = spec.gather === 'joins' && kPrime(spec.K) > FAST_MAX_K_PRIME;
    const grace = costly ? () => Math.max(this.graceMs, COSTLY_REPAIR_GRACE_MS) : () => this.graceMs;
    const s = new ScheduledStream(key, spec.ifname, spec.position, spec.K, spec.item, this.opts.trickle, grace, this.opts.onOutcome);
    s.joined(starter, joinedAt);
    for (const other of this.starting.get(key) ?? []) s.joined(other, joinedAt);
    for (let i = 0; i < s.asks.listener; i++) this.opts.onAsk?.('listener');
    this.starting.delete(key);
    if (spec.gather === 'joins' && this.opts.gather) {
      for (const host of s.reporters) this.notePartJoin(spec.ifname, host, joinedAt);
      this.gatherJoins(s, joinedAt);
    }
    else if (spec.gather && this.opts.gather) this.gather(s, starter, joinedAt);
    if (spec.gather === true && this.opts.cohortMs) s.holdUntil = Math.max(s.holdUntil, this.cohortWindow(spec.ifname, joinedAt));
    this.streams.set(key, s);
    this.insertByPosition(s);
    return s;
  }

  /**
   * A listener left stream `key`; MLD is now asking whether others remain. Sending on meanwhile
   * would mostly feed nobody, so the stream pauses until a report answers (join) or the check ends
   * (leave) — unless others whose joins we saw still listen.
   */
  part(key: string, from: string, now: number): void {
    const s = this.streams.get(key);
    if (!s) return;
    if (this.opts.gather) this.noteLeaver(s.ifname, from, now);
    // Only a leave during the hold measures the latency: one after repair symbols went out says
    // the listener needed them, not that leaves are slow.
    if (s.sourceDoneAt > 0 && s.sentSinceSourceDone === 0 && s.reporters.size === 1) {
      const sample = now - s.sourceDoneAt;
      this.leaveLatencyMs += (Math.min(sample, GRACE_MAX_MS) - this.leaveLatencyMs) / 16;
    }
    s.left(from, now);
    if (s.reporters.size === 0) s.paused = true;
  }

  /**
   * Nobody listens to `key` any more: silent at once. The stream itself lingers a moment, because a
   * receiver that re-joins to ask for more (leave, then join) should get a repair round, not the whole object.
   */
  leave(key: string, now: number): void {
    this.starting.delete(key);
    const s = this.streams.get(key);
    if (!s) return;
    s.paused = true;
    s.lingerUntil = now + LINGER_MS;
    if (this.lingering.has(s)) return;
    this.lingering.add(s);
    this.unlist(s);
    // Nobody to gather for: one who joins again is asking for more, and is served at once.
    s.waitingFor = undefined;
  }

  /** Take stream `key` out at once (its object is gone); the caller frees its item. */
  remove(key: string): ScheduledStream<T> | undefined {
    const s = this.streams.get(key);
    if (!s) return undefined;
    this.streams.delete(key);
    if (!this.lingering.delete(s)) this.unlist(s);
    return s;
  }

  /** Forget every stream (the share stops); returns them for the caller to free. */
  clear(): ScheduledStream<T>[] {
    const all = [...this.streams.values()];
    this.streams.clear();
    this.starting.clear();
    this.lingering.clear();
    this.order = [];
    this.gatherCheckAt = undefined;
    this.cohortUntil.clear();
    this.cohortOpen.clear();
    return all;
  }

  /**
   * The next stream to serve: now and then one whose round ran out and is due a
   * trickle (so listeners that never ask again, like the C client, still get
   * symbols), otherwise round-robin over the first ACTIVE_WINDOW with a round left.
   * The caller sends it a datagram with take(), now or (stillDue) a little later.
   */
  pick(now: number): ScheduledStream<T> | undefined {
    this.housekeep(now);
    if (now >= this.nextTrickleScan) {
      this.nextTrickleScan = now + TRICKLE_MS / 4;
      const t = this.order.find((x) => x.trickleDue(now));
      if (t) return t;
    }
    // Indexed, and into slots kept from pick to pick: pick runs every few datagrams, often before
    // V8 has optimized it, where for-of allocates a result per step and an emptied array a new
    // backing store at its next push (together the largest part of a share's garbage).
    const front = this.front;
    const order = this.order;
    let ready = 0;
    for (let i = 0; i < order.length && ready < ACTIVE_WINDOW; i++) {
      const x = order[i]!;
      if (x.ready(now)) front[ready++] = x;
    }
    if (ready > 0) {
      const s = front[this.cursor++ % ready]!;
      // No stream outlives its turn here (a dropped one is not kept from the collector).
      front.fill(undefined, 0, ready);
      return s;
    }
    return this.order.find((x) => x.trickleDue(now));
  }

  /** Whether a stream picked earlier may still send now (it was not dropped, paused or served meanwhile). */
  stillDue(s: ScheduledStream<T>, now: number): boolean {
    return this.streams.get(s.key) === s && (s.ready(now) || s.trickleDue(now));
  }

  /** Pick and take in one: the next datagram to send now, or undefined when nothing is due (see wakeAt). */
  next(now: number): { stream: ScheduledStream<T>; symbol: SymbolChoice } | undefined {
    const stream = this.pick(now);
    return stream && { stream, symbol: stream.take(now) };
  }

  /**
   * When to ask again, with nothing due now: the next trickle, hold end or gather check; at the
   * latest TRICKLE_MS from now while there are streams (a minute without), never sooner than 1 ms.
   * Joins and leaves in between are the caller's to wake on.
   */
  wakeAt(now: number): number {
    let wait = this.streams.size === 0 ? 60_000 : TRICKLE_MS;
    for (const s of this.streams.values()) wait = Math.min(wait, Math.max(1, s.wakeAt() - now));
    if (this.gatherCheckAt !== undefined) wait = Math.min(wait, Math.max(1, this.gatherCheckAt - now));
    return now + wait;
  }

  /** Drop lingering streams whose time is up, and check held streams when it is time. */
  private housekeep(now: number): void {
    for (const [ifname, end] of this.cohortOpen) if (now >= end) this.closeCohort(ifname, now);
    if (this.gatherCheckAt !== undefined && now >= this.gatherCheckAt) this.checkGathering(now);
    if (now >= this.nextSweepAt) {
      this.nextSweepAt = now + SWEEP_MS;
      if (this.lingering.size > 0) this.sweepLingering(now);
      if (this.opts.onProbe && this.opts.trickle) this.probeTrickling(now);
    }
  }

  /** Ask about the listeners of streams trickling PROBE_AFTER_MS after their round (see PROBE_AFTER_MS). */
  private probeTrickling(now: number): void {
    for (const s of this.order) {
      if (s.paused || s.budget > 0 || s.reporters.size === 0 || s.roundDoneAt === 0) continue;
      if (now - Math.max(s.roundDoneAt, s.probedAt) < PROBE_AFTER_MS) continue;
      s.probedAt = now;
      this.opts.onProbe!(s);
    }
  }

  /** Drop streams whose listeners left and did not come back. */
  private sweepLingering(now: number): void {
    for (const s of this.lingering) {
      if (s.reporters.size > 0 || !s.paused) {
        this.relist(s);
        continue;
      }
      if (now < s.lingerUntil) continue;
      if (this.streams.get(s.key) !== s) {
        this.lingering.delete(s);
        continue;
      }
      this.remove(s.key);
      this.opts.onDrop?.(s);
    }
  }

  /**
   * Receiver `host` joined the object at `pos`: move its frontier, and stop holding
   * streams for it that it has now reached (joined) or passed (it has that chunk).
   */
  private noteFrontier(ifname: string, host: string, pos: number, now: number): void {
    let hosts = this.frontiers.get(ifname);
    if (!hosts) this.frontiers.set(ifname, (hosts = new Map()));
    const f = hosts.get(host);
    const fresh = f !== undefined && now - f.at < FRONTIER_TTL_MS;
    const at = fresh ? Math.max(f.pos, pos) : pos;
    // Updated in place: a frontier moves with every join.
    if (f) {
      f.movedAt = fresh && at === f.pos ? f.movedAt : now;
      f.pos = at;
      f.at = now;
    } else hosts.set(host, { pos: at, at: now, movedAt: now, partAt: -Infinity });
    if (!fresh) {
      this.gatherUnsent(ifname, host, at, now);
      this.holdPartsFor(ifname, host, now);
    }
    // Nothing held: nothing to let go (this is every join: not a walk of every stream for nothing).
    if (this.gatherCheckAt === undefined) return;
    for (const s of this.order) {
      if (!s.waitingFor?.has(host) || s.ifname !== ifname || s.position > at || s.gatherBy === 'joins') continue;
      s.waitingFor.delete(host);
      if (s.waitingFor.size === 0) {
        s.waitingFor = undefined;
        this.opts.onRelease?.();
      }
    }
  }

  /** Receiver `host` joined a bundle part on `ifname` (its frontier was noted by the join). */
  private notePartJoin(ifname: string, host: string, now: number): void {
    const f = this.frontiers.get(ifname)?.get(host);
    if (f) f.partAt = now;
  }

  /**
   * Receiver `host` left a group on `ifname`. Reports cross the same lossy links as the data: a
   * receiver whose first joins were lost (both copies of the kernel's report, one in a few hundred)
   * is first seen leaving the top it did get. Not known, it was not waited for: the first parts
   * went out with the others as it joined them, and it cost each a round of its own (a quarter of
   * the sender's bytes in one run). Seen leaving, it is a receiver at work, as if it had joined
   * (holdPartsFor); one already known keeps its frontier (a receiver finishing leaves a lot).
   */
  private noteLeaver(ifname: string, host: string, now: number): void {
    let hosts = this.frontiers.get(ifname);
    if (!hosts) this.frontiers.set(ifname, (hosts = new Map()));
    const f = hosts.get(host);
    if (f !== undefined && now - f.at < FRONTIER_TTL_MS) return;
    hosts.set(host, { pos: f?.pos ?? METADATA_POSITION, at: now, movedAt: now, partAt: f?.partAt ?? -Infinity });
    this.holdPartsFor(ifname, host, now);
  }

  /**
   * Receiver `host` showed up on `ifname` at `pos`: the chunk streams there that have sent nothing
   * yet wait for it as if they opened now (gather), so what a newcomer finds held does not depend
   * on how soon the share had read the chunks the others asked for.
   */
  private gatherUnsent(ifname: string, host: string, pos: number, now: number): void {
    for (const s of this.order) {
      if (s.ifname !== ifname || s.position < 0 || s.gatherBy === 'joins' || s.sent > 0 || s.position <= pos || s.reporters.has(host)) continue;
      if (pos >= 0 && fileOfPosition(pos) !== fileOfPosition(s.position)) continue;
      if (!s.waitingFor) {
        s.waitingFor = new Set();
        s.gatherSince = now;
        s.gatherUntil = now + GATHER_LIMIT_MS;
      }
      s.waitingFor.add(host);
      this.gatherCheckAt ??= now + GATHER_CHECK_MS;
    }
  }

  /**
   * Receiver `host` showed up on `ifname` (its first join, or the first after a pause): the bundle
   * parts held there for other receivers wait for it too, within their hold. Receivers started
   * together come up a few hundred milliseconds apart on a loaded host; a part opened before the
   * last one had joined anything did not wait for it, and it then cost a round of its own.
   * So do the parts whose first round already goes but still owes at least a quarter of its source
   * symbols (HOLD_RUNNING_PART_OWED): the newcomer, which will join them, would otherwise need all K again
   * for what was sent before it came. In the 3-receiver benchmark at 5% loss, the third receiver
   * (200 ms late on a loaded host) came while the first eight parts were in mid-round, and each cost
   * twice its symbols: a third of the sender's bytes in one run in three. Held, they cost what they
   * sent before it showed up; the others wait the newcomer's way to the parts (100-300 ms), once.
   */
  private holdPartsFor(ifname: string, host: string, now: number): void {
    for (const s of this.order) {
      if (s.gatherBy !== 'joins' || s.ifname !== ifname || now >= s.gatherUntil || s.reporters.has(host)) continue;
      if (this.joiners.get(s.key)?.has(host)) continue;
      if (s.waitingFor) s.waitingFor.add(host);
      else if (s.roundDoneAt === 0 && !s.paused && s.sourceLeft >= s.K * HOLD_RUNNING_PART_OWED) {
        s.waitingFor = new Set([host]);
        this.gatherCheckAt ??= now + GATHER_CHECK_MS;
      }
    }
  }

  /**
   * When the cohort window on `ifname` closes (--gather): the open one's end, or, when no chunk
   * stream is alive there (a new cohort), now + cohortMs.
   */
  private cohortWindow(ifname: string, now: number): number {
    const until = this.cohortUntil.get(ifname);
    if (until !== undefined && now < until) return until;
    for (const x of this.streams.values()) if (x.ifname === ifname && x.position >= 0) return now;
    const end = now + Math.min(this.opts.cohortMs ?? 0, GATHER_WINDOW_MAX_MS);
    this.cohortUntil.set(ifname, end);
    this.cohortOpen.set(ifname, end);
    return end;
  }

  /**
   * A cohort window closed: its streams that have not started wait on, as a stream opened now
   * would (gather), for the receivers that are still reading the index or behind them in the
   * file and moving, so that one that started near the end of the window (a slow start-up) is not
   * left to a pass of its own.
   */
  private closeCohort(ifname: string, now: number): void {
    this.cohortOpen.delete(ifname);
    for (const s of this.order) {
      if (s.ifname !== ifname || s.position < 0 || s.sent > 0 || s.waitingFor !== undefined) continue;
      const starter = s.reporters.values().next().value;
      if (starter !== undefined) this.gather(s, starter, now);
    }
  }

  /**
   * Where the share is in file `fileRank` on `ifname` now, for a receiver about to start the file
   * (the cursor, packet.ts): the lowest chunk among that file's streams with a listener, undefined
   * when none runs. (Pointing past the streams in mid-round, whose rounds a join lengthens by what
   * they sent before it, was tried: the late receiver then fetched those chunks at the end, alone
   * when it was the only late one, and the lab tests sent 5-10% more.)
   */
  cursorOf(ifname: string, fileRank: number): number | undefined {
    for (const s of this.order) {
      if (s.ifname !== ifname || s.position < 0 || fileOfPosition(s.position) !== fileRank || s.reporters.size === 0) continue;
      return s.position - fileRank * FILE_STRIDE;
    }
    return undefined;
  }

  /** Hold a new chunk stream's first round for the active receivers that have not reached it yet. */
  private gather(s: ScheduledStream<T>, starter: string, now: number): void {
    const pos = s.position;
    const file = fileOfPosition(pos);
    const behind = new Set<string>();
    const hosts = this.frontiers.get(s.ifname);
    for (const [host, f] of hosts ?? []) {
      if (now - f.at >= FRONTIER_TTL_MS) hosts!.delete(host);
      // Only a receiver in the same file, or still reading the index, is expected here soon: one
      // working on another file may be syncing another part of the share and never come.
      else if (host !== starter && f.pos < pos && (f.pos < 0 || fileOfPosition(f.pos) === file) && !s.reporters.has(host)) behind.add(host);
    }
    if (behind.size === 0) return;
    s.waitingFor = behind;
    s.gatherSince = now;
    s.gatherUntil = now + GATHER_LIMIT_MS;
    this.gatherCheckAt ??= now + GATHER_CHECK_MS;
  }

  /**
   * Hold a new bundle part's first round for the receivers active on its interface (a join within
   * JOIN_GATHER_IDLE_MS) that have not joined it: each will, soon (see JOIN_GATHER_MAX_MS).
   */
  private gatherJoins(s: ScheduledStream<T>, now: number): void {
    s.gatherBy = 'joins';
    const seen = this.joiners.get(s.key) ?? new Set<string>();
    this.joiners.delete(s.key);
    this.joiners.set(s.key, seen);
    if (this.joiners.size > JOINERS_KEPT) this.joiners.delete(this.joiners.keys().next().value!);
    for (const host of s.reporters) seen.add(host);
    // The hold's bound holds for receivers that show up later too (holdPartsFor).
    s.gatherSince = now;
    s.gatherUntil = now + JOIN_GATHER_MAX_MS;
    const behind = new Set<string>();
    let listening: Set<string> | undefined;
    for (const [host, f] of this.frontiers.get(s.ifname) ?? []) {
      if (!seen.has(host) && this.joinsComing(host, f, now, (listening ??= this.listeningHosts(s.ifname)))) behind.add(host);
    }
    if (behind.size === 0) return;
    s.waitingFor = behind;
    this.gatherCheckAt ??= now + GATHER_CHECK_MS;
  }

  /** `host` joined bundle part `s`: remember it, and stop holding the part for it. */
  private noteJoiner(s: ScheduledStream<T>, host: string): void {
    this.joiners.get(s.key)?.add(host);
    if (!s.waitingFor?.delete(host) || s.waitingFor.size > 0) return;
    s.waitingFor = undefined;
    this.opts.onRelease?.();
  }

  /** Stop waiting for receivers that are no longer coming; stop checking when nothing waits. */
  private checkGathering(now: number): void {
    let holding = false;
    let served: Set<string> | undefined;
    const listening: Record<string, Set<string>> = {};
    for (const s of this.order) {
      const w = s.waitingFor;
      if (!w) continue;
      const hosts = this.frontiers.get(s.ifname);
      for (const host of w) {
        const f = hosts?.get(host);
        // A receiver fetching metadata joins without moving its walk position: its joins say it is alive.
        const coming =
          f !== undefined &&
          (s.gatherBy === 'joins' ? this.joinsComing(host, f, now, (listening[s.ifname] ??= this.listeningHosts(s.ifname))) : this.coming(s, host, f, now, (served ??= this.servedHosts())));
        if (!coming) w.delete(host);
      }
      if (w.size === 0 || now >= s.gatherUntil) s.waitingFor = undefined;
      else holding = true;
    }
    this.gatherCheckAt = holding ? now + GATHER_CHECK_MS : undefined;
  }

  /** Whether chunk stream `s` should wait on for `host`, whose frontier is `f` (see GATHER_MAX_MS). */
  private coming(s: ScheduledStream<T>, host: string, f: Frontier, now: number, served: Set<string>): boolean {
    if (f.pos < 0) return now - f.at < GATHER_IDLE_MS && now - s.gatherSince < GATHER_MAX_MS;
    return now - f.movedAt < GATHER_IDLE_MS || served.has(`${host}%${s.ifname}`);
  }

  /**
   * Whether a bundle part held by joins should wait on for `host` (frontier `f`): it joined
   * something lately, or it still listens to a stream here. A receiver fetches a few parts at
   * once and joins the next only when one is done; starved of CPU it decodes for seconds without
   * joining anything (seen: 1.3-1.7 s), and each part it then joined after the round had gone
   * cost a round of its own. While it listens it is in the middle of the tree, not done with it.
   * Nor is one that joined a bundle part within JOIN_GATHER_MAX_MS done: it walks the tree by
   * bundles. After the top and its bundle it verifies entries and makes directories, and on a
   * loaded host (3 receivers and the share on 2 CPUs) one was seen to join nothing for more than
   * JOIN_GATHER_IDLE_MS before its first parts, which then went without it and cost a round each
   * for it alone (sender/tree 1.8 instead of 1.35). A receiver that fetches no bundles (nothing
   * changed, or one file) is not waited for past JOIN_GATHER_IDLE_MS, as before.
   */
  private joinsComing(host: string, f: Frontier, now: number, listening: Set<string>): boolean {
    return now - f.at < JOIN_GATHER_IDLE_MS || listening.has(host) || now - f.partAt < JOIN_GATHER_MAX_MS;
  }

  /** Hosts listening to a stream on `ifname` now (one not paused: its listeners have not all left). */
  private listeningHosts(ifname: string): Set<string> {
    const hosts = new Set<string>();
    for (const x of this.order) {
      if (x.ifname !== ifname || x.paused) continue;
      for (const h of x.reporters) hosts.add(h);
    }
    return hosts;
  }

  /** Receivers (host%interface) listening to a stream that still has a round to send: they are waiting for us. */
  private servedHosts(): Set<string> {
    const served = new Set<string>();
    for (const x of this.order) {
      if (x.paused || x.budget === 0) continue;
      for (const h of x.reporters) served.add(`${h}%${x.ifname}`);
    }
    return served;
  }

  private insertByPosition(s: ScheduledStream<T>): void {
    this.order.splice(this.firstAfter(s.position), 0, s);
  }

  /** A lingering stream that someone listens to again goes back into the order. */
  private relist(s: ScheduledStream<T>): void {
    if (this.lingering.delete(s)) this.insertByPosition(s);
  }

  /** Take `s` out of the order (a binary search for its position, not a walk of every stream). */
  private unlist(s: ScheduledStream<T>): void {
    for (let i = this.firstAfter(s.position) - 1; i >= 0 && this.order[i]!.position === s.position; i--) {
      if (this.order[i] === s) {
        this.order.splice(i, 1);
        return;
      }
    }
  }

  /** The index of the first stream in the order whose position is above `p`. */
  private firstAfter(p: number): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid]!.position <= p) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
