/**
 * The share (docs/protocol.md#mld-and-when-a-share-sends): index + MLD events -> send streams.
 *
 * A join for a group that names an object starts one stream per (group,
 * interface). Each new listener is granted a round at full speed (the K source
 * symbols first, then repair symbols with fresh ESIs, enough for a lossy link),
 * after which the stream trickles until MLD says nobody listens any more. The
 * most recently granted round is served first, and every listened stream gets
 * at least its trickle, so nothing starves. With no listener the wire is silent.
 *
 * Chunk bytes are read from the shared file when a stream starts and checked
 * against the leaf hash first: a file that changed after indexing is never sent
 * under its old hash.
 */
import { EventEmitter } from 'node:events';
import { open } from '../base/bytefs.js';
import { GROUP_PREFIX_BYTES, formatIPv6, prefixOfGroup } from '../wire/address.js';
import { hash, toHex, type Hash } from '../model/hash.js';
import type { IndexObject, ShareIndex } from '../index/mdex.js';
import { ObjectEncoder } from '../fec/fec.js';
import { DATAGRAM_OTI_LEN, SYMBOL_SIZE, encodeDatagram, encodeGoneNotice, goneNoticeKey } from '../wire/packet.js';
import { MulticastSender } from '../net/mcast-sender.js';
import { Pacer } from '../net/pacer.js';
import { MldWatcher, type MldEvent } from '../net/mldsocket.js';
import { PushSource, type ListenerSource } from '../net/push.js';
import type { ObjectCipher } from '../wire/crypto.js';

export interface ShareLogger {
  info(msg: string): void;
  warn(msg: string): void;
  verbose(msg: string): void;
}

export interface ShareOptions {
  ifnames: string[];
  /** Let receivers on this host hear us (IPV6_MULTICAST_LOOP). */
  loopback?: boolean;
  /** Total send rate in bits per second; 0 = unlimited. */
  rateBps?: number;
  /** Act as MLD querier when no better querier exists. */
  querier?: boolean;
  queryIntervalSec?: number;
  logger?: ShareLogger;
  /** Encrypt every object as the C tool does (secretbox before RaptorQ). */
  cipher?: ObjectCipher;
  /** No MLD: send every object a round every pushPeriodSec (see push.ts). */
  push?: boolean;
  pushPeriodSec?: number;
}

export interface StreamStatus {
  group: string;
  ifname: string;
  kind: 'chunk' | 'tree';
  name: string;
  datagrams: number;
  bytes: number;
  startedAt: number;
}

export interface ShareStatus {
  pid: number;
  startedAt: number;
  uptimeSec: number;
  interfaces: string[];
  roots: { path: string; shareName: string; type: string; hash: string }[];
  objects: number;
  listeners: { group: string; ifname: string }[];
  streams: StreamStatus[];
  datagrams: number;
  bytes: number;
  streamsStarted: number;
  /** Gone notices sent to receivers still fetching objects a re-index dropped. */
  noticesSent: number;
  /** Bytes per second over the last few seconds and since start. */
  rateNow: number;
  rateAvg: number;
}

/**
 * Datagrams a stream sends at full speed for a new listener: K plus a small
 * margin. A bigger round costs every receiver on every chunk, because the
 * kernel delays leave reports by tens of milliseconds and rounds mostly run out
 * before the leave arrives; a receiver that lost more asks again (re-joins) and
 * gets a repair round (below), and the trickle serves listeners that never ask.
 */
export function roundSize(K: number): number {
  return K + Math.ceil(K / 20) + 1;
}

/** Datagrams granted when a listener asks again after a round: it is missing a few symbols, not all. */
export function repairRoundSize(K: number): number {
  return Math.max(4, Math.ceil(K / 8));
}

/** After its round a stream keeps trickling at this interval, so no listener is ever left without symbols. */
const TRICKLE_MS = 60;
/**
 * Streams served side by side at the front of the order. Interleaving them means
 * each advances slowly enough that a receiver's leave (which the kernel may
 * delay by tens of milliseconds) stops a stream soon after its last useful symbol.
 */
const ACTIVE_WINDOW = 32;
/**
 * A stream holds after its source symbols for about as long as leaves take to
 * arrive (measured: the kernel delays reports, and busy receivers answer late),
 * within these bounds. On a clean link every listener has what it needs by then
 * and leaves, so no repair symbol is made or sent; one that lost some gets the
 * rest of the round after the hold.
 */
const GRACE_MIN_MS = 30;
const GRACE_MAX_MS = 150;
/** A stream whose listeners all left lingers (silent) this long in case one re-joins for more. */
const LINGER_MS = 500;
/** A join this soon after the same host left is a re-ask. */
const REJOIN_MS = 2000;
/** Let I/O (MLD reports above all) in at least this often (datagrams) while sending. */
const YIELD_EVERY = 16;
/**
 * Datagrams handed to a sender at once: one pacer charge and, with the sendmmsg addon, one
 * system call instead of a dgram send, a callback and a promise each. Small enough that a
 * batch leaves in well under a millisecond, so MLD reports still get in promptly.
 */
const BATCH_MAX = 32;
/**
 * A chunk stream started by one receiver waits for the others that are working
 * through the same share but have not reached that chunk yet, so that one round
 * serves them all: as long as each of them keeps moving (its furthest join
 * advanced within GATHER_IDLE_MS), and at most GATHER_MAX_MS. Without it a
 * receiver a little ahead gets each chunk alone and the one behind asks for it
 * again later: in the 3-receiver benchmark a sixth of the chunks went out two or
 * three times, and with a fixed 300 ms wait still an eighth in one run in five.
 * Only receivers in the same file (or still reading the index) are waited for.
 * The one behind is not held back meanwhile (its chunks are not waiting for
 * anyone), so it catches up at full rate and then all move together.
 */
const GATHER_MAX_MS = 2000;
const GATHER_IDLE_MS = 300;
/** How often held streams are checked for receivers that stopped moving. */
const GATHER_CHECK_MS = 50;
const FRONTIER_TTL_MS = 1000;

/**
 * Objects a re-index dropped are remembered this long (and at most this many, newest kept), so
 * that receivers still fetching the old version hear that it is gone (packet.ts, gone notice).
 */
const RETIRED_TTL_MS = 15 * 60_000;
const MAX_RETIRED = 1 << 18;
/** Notices sent per join of a notice group: a lost one is made up by the receiver's next re-join. */
const NOTICE_COPIES = 2;

/** Where small objects' repair symbols are computed before they are copied into their datagram. */
const repairScratch = Buffer.alloc(SYMBOL_SIZE);

class SendStream {
  readonly startedAt = Date.now();
  datagrams = 0;
  bytes = 0;
  /** A listener left and we are asking whether anyone else still listens: hold off until we know. */
  paused = false;
  /** Datagrams still to send at full speed; then one every TRICKLE_MS. */
  budget: number;
  nextTrickleAt = 0;
  /** After the source symbols the stream holds for GRACE_MS: leaves arrive then, and on a clean link nothing more is needed. */
  holdUntil = 0;
  /** When the last owed source symbol went out, and datagrams sent since (for measuring how long leaves take). */
  sourceDoneAt = 0;
  sentSinceSourceDone = 0;
  /** Hosts whose join this stream is serving. */
  readonly reporters = new Set<string>();
  /** Hosts that left, and when: one that joins again soon is asking for more, not starting over. */
  readonly departed = new Map<string, number>();
  /** After the last listener left: when the stream is dropped unless someone joins again. */
  lingerUntil = 0;
  /** Receivers behind this chunk that the first round waits for (until gatherUntil); undefined: none. */
  waitingFor: Set<string> | undefined;
  gatherUntil = 0;
  readonly round: number;
  readonly repairRound: number;
  /** Why rounds were given: new listeners, re-asks (leave and join), repeated reports after a round. */
  readonly asks = { listener: 0, reask: 0, repeat: 0 };
  /** Next source symbol, cycling: a listener that joins late gets the ones it missed after the rest. */
  private sourceCursor = 0;
  /** Source symbols still owed to the newest listener; repair symbols come only after them. */
  private sourceOwed: number;
  private readonly encoder: ObjectEncoder;

  constructor(
    readonly key: string,
    readonly group: string,
    readonly ifname: string,
    readonly object: IndexObject,
    private readonly data: Buffer,
    private readonly oid: Buffer,
    /** Push mode has no listeners to serve between rounds. */
    private readonly trickle: boolean,
    /** How long to hold after the source symbols (see Share.grace). */
    private readonly grace: () => number,
  ) {
    this.encoder = new ObjectEncoder(this.data);
    this.round = roundSize(this.encoder.K);
    this.repairRound = repairRoundSize(this.encoder.K);
    this.budget = this.round;
    this.sourceOwed = this.encoder.K;
  }

  /**
   * A join report from `from`. A new listener gets a full round (it has seen
   * nothing yet): the K source symbols from where the cycle stands, so those
   * already listening lose nothing, then the margin; one asking again after the
   * round ran out (it lost some) gets a repair round; a repeated report while a
   * round is still going (the kernel sends each change twice) changes nothing.
   */
  joined(from: string, now: number): void {
    const left = this.departed.get(from);
    if (left !== undefined && now - left < REJOIN_MS) {
      // Left and joined again: a receiver asking for more after losing some.
      this.departed.delete(from);
      this.budget = Math.max(this.budget, this.repairRound);
      this.asks.reask++;
    } else if (!this.reporters.has(from)) {
      this.budget = Math.max(this.budget, this.round);
      this.sourceOwed = this.encoder.K;
      this.asks.listener++;
    } else if (this.budget === 0) {
      this.budget = this.repairRound;
      this.asks.repeat++;
    }
    this.reporters.add(from);
  }

  /** Whether the stream has a round to send now. */
  ready(now: number): boolean {
    return !this.paused && this.budget > 0 && now >= this.holdUntil && (this.waitingFor === undefined || now >= this.gatherUntil);
  }

  /** Whether the stream's round is over and it is due a trickle datagram. */
  trickleDue(now: number): boolean {
    return !this.paused && this.budget === 0 && now >= this.nextTrickleAt;
  }

  /** When this stream next wants to send, if it is waiting. */
  wakeAt(): number {
    if (this.paused) return Infinity;
    if (this.budget === 0) return this.nextTrickleAt;
    return this.waitingFor ? Math.max(this.holdUntil, this.gatherUntil) : this.holdUntil;
  }

  /**
   * The next datagram: source symbols (cycling) while a listener is owed them,
   * then repair symbols with fresh ESIs. Source symbols need no RaptorQ work at
   * all, so on a clean link no encoder is ever built, however late listeners join.
   */
  next(now: number, into?: Buffer): Buffer {
    let trickling = false;
    if (this.budget > 0) this.budget--;
    else {
      this.nextTrickleAt = this.trickle ? now + TRICKLE_MS : Infinity;
      trickling = true;
    }
    const withOti = this.object.kind === 'tree' ? this.data.length : undefined;
    // A trickle is a fresh repair symbol: whatever a listener still lacks, each one is worth a lost
    // symbol to it (a cycled source symbol would only help the listener that lost that one).
    if (this.sourceOwed > 0 && !trickling) {
      const esi = this.sourceCursor;
      this.sourceCursor = (this.sourceCursor + 1) % this.encoder.K;
      this.sentSinceSourceDone++;
      if (--this.sourceOwed === 0) {
        this.sourceDoneAt = now;
        this.sentSinceSourceDone = 0;
        if (this.budget > 0) this.holdUntil = now + this.grace();
      }
      return encodeDatagram({ oid: this.oid, transferLength: withOti, esi, symbol: this.encoder.sourceSymbol(esi) }, into);
    }
    this.sentSinceSourceDone++;
    const r = this.encoder.nextRepair(repairScratch);
    return encodeDatagram({ oid: this.oid, transferLength: withOti, esi: r.esi, symbol: r.symbol }, into);
  }

  free(): void {
    this.encoder.free();
  }
}

export class Share extends EventEmitter {
  private readonly streams = new Map<string, SendStream>();
  /** Streams being set up (the object is being read), with the other receivers that joined meanwhile. */
  private readonly starting = new Map<string, Set<string>>();
  private readonly senders = new Map<string, MulticastSender>();
  /**
   * Streams in the order receivers walk the share: metadata first, then chunks
   * by file and offset, and the first one with a round left is served. This is
   * what lets receivers that started at different times converge: the one
   * behind gets its (earlier) chunks at full speed while the one ahead waits,
   * trickled, until the laggard reaches the streams the leader is still on and
   * both are served by the same datagrams. Within one receiver its oldest
   * request comes first, so nothing it waits for starves.
   */
  private order: SendStream[] = [];
  private cursor = 0;
  private nextTrickleScan = 0;
  private readonly lingering = new Set<SendStream>();
  /** Keys of objects earlier indexes served and the current one does not, by the 14-byte prefix of their notice key. */
  private readonly retired = new Map<string, { key: Hash; at: number }>();
  /** Gone notices sent (status and tests). */
  noticesSent = 0;
  /** Files already reported as changed or unreadable under the current index. */
  private readonly warnedStale = new Set<string>();
  /** Smoothed time from a stream's last source symbol to its listener's leave. */
  private leaveLatencyMs = 50;
  private readonly rank = new Map<object, number>();
  /** Per interface, per receiver: the furthest chunk position it has joined lately, and when. */
  private readonly frontiers = new Map<string, Map<string, { pos: number; at: number; movedAt: number }>>();
  private gatherCheck?: NodeJS.Timeout;
  private wake?: () => void;
  private stopped = false;
  private pump?: Promise<void>;
  private readonly startedAt = Date.now();
  private datagrams = 0;
  private bytes = 0;
  private streamsStarted = 0;
  private readonly rateWindow: { t: number; bytes: number }[] = [];
  /** Where run() encodes each batch of datagrams. */
  private batchSpace = Buffer.allocUnsafe(BATCH_MAX * DATAGRAM_OTI_LEN);
  private sampler?: NodeJS.Timeout;
  private sweeper?: NodeJS.Timeout;

  private constructor(
    private index_: ShareIndex,
    private readonly opts: ShareOptions,
    private readonly watcher: ListenerSource,
  ) {
    super();
  }

  get index(): ShareIndex {
    return this.index_;
  }

  /**
   * Serve a new index from now on (after a re-index). Streams whose object is
   * not in the new index stop at once, so nothing is sent under a stale hash.
   */
  setIndex(index: ShareIndex): void {
    this.retire(this.index_, index);
    this.index_ = index;
    this.warnedStale.clear();
    this.rank.clear();
    for (const s of [...this.streams.values()]) {
      const now = index.get(s.object.hash);
      // An alias names a path, not content: the same key may now stand for other bytes.
      const otherBytes = now?.kind === 'tree' && s.object.kind === 'tree' && !now.bytes.equals(s.object.bytes);
      if (!now || now.kind !== s.object.kind || otherBytes) {
        this.streams.delete(s.key);
        this.order = this.order.filter((x) => x !== s);
        s.free();
        this.log('verbose', `dropped stale ${s.object.kind} ${s.object.record.sharePath} on ${s.key}`);
      }
    }
  }

  /** Remember what `before` served and `after` does not, for gone notices. */
  private retire(before: ShareIndex, after: ShareIndex): void {
    const now = Date.now();
    for (const key of before.hashes()) {
      if (after.get(key)) continue;
      const slot = goneNoticeKey(key).subarray(0, GROUP_PREFIX_BYTES).toString('hex');
      this.retired.delete(slot);
      this.retired.set(slot, { key: Buffer.from(key), at: now });
    }
    for (const [slot, r] of this.retired) {
      if (this.retired.size <= MAX_RETIRED && now - r.at < RETIRED_TTL_MS) break;
      this.retired.delete(slot);
    }
  }

  /**
   * A join of a group that names no current object: when it is the notice group of an object an
   * earlier index served, tell the receivers there that it is gone (it never comes back under
   * that key unless the file changes back, which the current index would show).
   */
  private answerGone(e: MldEvent, prefix: Buffer): void {
    const r = this.retired.get(prefix.toString('hex'));
    if (!r || Date.now() - r.at >= RETIRED_TTL_MS || this.index.get(r.key)) return;
    const sender = this.senders.get(e.ifname);
    if (!sender) return;
    const group = formatIPv6(e.group);
    const notice = encodeGoneNotice(this.opts.cipher ? this.opts.cipher.seal(r.key) : r.key);
    this.noticesSent += NOTICE_COPIES;
    this.log('verbose', `told ${group}%${e.ifname} that object ${toHex(r.key).slice(0, 16)} is gone (the source changed)`);
    void sender.sendBatch(Array.from({ length: NOTICE_COPIES }, () => ({ group, payload: notice }))).catch((err: Error) => {
      this.log('warn', `send on ${e.ifname} failed: ${err.message}`);
    });
  }

  /** Start serving `index` (the C lc_share). */
  static async start(index: ShareIndex, opts: ShareOptions): Promise<Share> {
    const pacer = new Pacer({ bitsPerSecond: opts.rateBps ?? 0 });
    let share: Share;
    const watcher: ListenerSource = opts.push
      ? new PushSource(opts.ifnames, () => share.index.hashes(), opts.pushPeriodSec ?? 10)
      : await MldWatcher.open({
          ifnames: opts.ifnames,
          querier: opts.querier ?? true,
          queryIntervalSec: opts.queryIntervalSec,
          loopback: opts.loopback,
          logger: opts.logger,
        });
    share = new Share(index, opts, watcher);
    try {
      for (const ifname of opts.ifnames) {
        share.senders.set(ifname, await MulticastSender.open({ ifname, loopback: opts.loopback, pacer }));
      }
    } catch (e) {
      await share.stop();
      throw e;
    }
    watcher.on('join', (e: MldEvent) => void share.onJoin(e));
    watcher.on('leave', (e: MldEvent) => share.onLeave(e));
    watcher.on('part', (e: MldEvent) => share.onPart(e));
    share.pump = share.run();
    share.sampler = setInterval(() => share.sampleRate(), 1000);
    share.sweeper = setInterval(() => share.sweepLingering(), LINGER_MS / 5);
    share.sweeper.unref();
    share.sampler.unref();
    return share;
  }

  private log(level: keyof ShareLogger, msg: string): void {
    this.opts.logger?.[level](msg);
  }

  private async onJoin(e: MldEvent): Promise<void> {
    if (this.stopped) return;
    const prefix = prefixOfGroup(e.group);
    if (!prefix) return;
    const obj = this.index.getByPrefix(prefix);
    if (!obj) {
      if (this.retired.size > 0) this.answerGone(e, prefix);
      return;
    }
    const group = formatIPv6(e.group);
    const key = `${group}%${e.ifname}`;
    const now = Date.now();
    // Tree joins count too (position -1): a receiver still reading the index is about to start on the chunks.
    if (!this.opts.push) this.noteFrontier(e.ifname, e.from, this.positionOf(obj), now);
    const existing = this.streams.get(key);
    if (existing) {
      // A report while paused means someone still listens after a leave: carry on.
      existing.paused = false;
      existing.joined(e.from, Date.now());
      this.wake?.();
      return;
    }
    if (!this.senders.has(e.ifname)) return;
    const waiting = this.starting.get(key);
    if (waiting) {
      // Another receiver joined while the object is being read: it listens too.
      waiting.add(e.from);
      return;
    }
    this.starting.set(key, new Set());
    try {
      const data = await loadObject(obj);
      if (!data) {
        // One line per file per index: every join of each of its chunks ends here until a re-index.
        if (!this.warnedStale.has(obj.record.localPath)) {
          this.warnedStale.add(obj.record.localPath);
          this.log('warn', `${obj.record.localPath} changed since it was indexed; not sending its old chunks`);
        }
        this.emit('stale', obj);
        return;
      }
      // The join may have been answered by a leave while we read the file.
      if (this.stopped || !this.starting.has(key)) return;
      // The OID names the plaintext; what is coded (and so F) is the sealed object when encrypting.
      const oid = obj.kind === 'chunk' ? obj.hash : hash(data);
      const coded = this.opts.cipher ? this.opts.cipher.seal(data) : data;
      const s = new SendStream(key, group, e.ifname, obj, coded, oid, !this.opts.push, () => this.graceMs);
      s.joined(e.from, Date.now());
      for (const other of this.starting.get(key) ?? []) s.joined(other, Date.now());
      if (obj.kind === 'chunk' && !this.opts.push) this.gather(s, e.from, now);
      this.streams.set(key, s);
      this.insertByPosition(s);
      this.streamsStarted++;
      this.log('verbose', `sending ${obj.kind} ${obj.record.sharePath} on ${group}%${e.ifname}`);
      this.wake?.();
    } catch (err) {
      // Vanished or unreadable: as stale as changed, so whoever follows the files re-indexes now.
      if (!this.warnedStale.has(obj.record.localPath)) {
        this.warnedStale.add(obj.record.localPath);
        this.log('warn', `cannot read ${obj.record.localPath}: ${(err as Error).message}`);
      }
      this.emit('stale', obj);
    } finally {
      this.starting.delete(key);
    }
  }

  /**
   * A listener sent a leave; MLD is now asking whether others remain. Sending
   * on meanwhile would mostly feed nobody, so the stream pauses until a report
   * answers (join) or the check ends (leave).
   */
  /** The hold after the source symbols: 1.5 times the measured leave latency, bounded. */
  get graceMs(): number {
    return Math.min(GRACE_MAX_MS, Math.max(GRACE_MIN_MS, 1.5 * this.leaveLatencyMs));
  }

  private onPart(e: MldEvent): void {
    const s = this.streams.get(`${formatIPv6(e.group)}%${e.ifname}`);
    if (!s) return;
    // Only a leave during the hold measures the latency: one after repair symbols went out says
    // the listener needed them, not that leaves are slow.
    if (s.sourceDoneAt > 0 && s.sentSinceSourceDone === 0 && s.reporters.size === 1) {
      const sample = Date.now() - s.sourceDoneAt;
      this.leaveLatencyMs += (Math.min(sample, GRACE_MAX_MS) - this.leaveLatencyMs) / 16;
    }
    s.reporters.delete(e.from);
    s.departed.set(e.from, Date.now());
    // Others whose joins we saw still listen: no reason to wait for the query's answer.
    if (s.reporters.size === 0) s.paused = true;
  }

  private onLeave(e: MldEvent): void {
    const key = `${formatIPv6(e.group)}%${e.ifname}`;
    this.starting.delete(key);
    const s = this.streams.get(key);
    if (!s) return;
    // Nobody listens: silent at once. The stream itself lingers a moment, because a receiver that
    // re-joins to ask for more (leave, then join) should get a repair round, not the whole object.
    s.paused = true;
    s.lingerUntil = Date.now() + LINGER_MS;
    this.lingering.add(s);
  }

  /** Drop streams whose listeners left and did not come back. */
  private sweepLingering(): void {
    const now = Date.now();
    for (const s of this.lingering) {
      if (s.reporters.size > 0 || !s.paused) {
        this.lingering.delete(s);
        continue;
      }
      if (now < s.lingerUntil) continue;
      this.lingering.delete(s);
      this.drop(s);
    }
  }

  private drop(s: SendStream): void {
    if (this.streams.get(s.key) !== s) return;
    this.streams.delete(s.key);
    this.order = this.order.filter((x) => x !== s);
    s.free();
    this.log('verbose', `stopped ${s.object.kind} ${s.object.record.sharePath} on ${s.key} after ${s.datagrams} datagrams (rounds: ${s.asks.listener} listeners, ${s.asks.reask} re-asks, ${s.asks.repeat} repeats)`);
  }

  /** Where a stream's object sits in a receiver's walk: trees before chunks, chunks by file and offset. */
  private position(s: SendStream): number {
    return this.positionOf(s.object);
  }

  private positionOf(o: IndexObject): number {
    if (this.rank.size === 0) this.index.records.forEach((r, i) => this.rank.set(r, i));
    if (o.kind === 'tree') return -1;
    return (this.rank.get(o.record) ?? 0) * 2 ** 32 + o.offset / 32768;
  }

  /**
   * Receiver `host` joined the chunk at `pos`: move its frontier, and stop holding
   * streams for it that it has now reached (joined) or passed (it has that chunk).
   */
  private noteFrontier(ifname: string, host: string, pos: number, now: number): void {
    let hosts = this.frontiers.get(ifname);
    if (!hosts) this.frontiers.set(ifname, (hosts = new Map()));
    const f = hosts.get(host);
    const fresh = f !== undefined && now - f.at < FRONTIER_TTL_MS;
    const at = fresh ? Math.max(f.pos, pos) : pos;
    hosts.set(host, { pos: at, at: now, movedAt: fresh && at === f.pos ? f.movedAt : now });
    for (const s of this.order) {
      if (!s.waitingFor?.has(host) || s.ifname !== ifname || this.position(s) > at) continue;
      s.waitingFor.delete(host);
      if (s.waitingFor.size === 0) {
        s.waitingFor = undefined;
        this.wake?.();
      }
    }
  }

  /** Hold a new chunk stream's first round for the active receivers that have not reached it yet. */
  private gather(s: SendStream, starter: string, now: number): void {
    const pos = this.position(s);
    const file = Math.floor(pos / 2 ** 32);
    const behind = new Set<string>();
    for (const [host, f] of this.frontiers.get(s.ifname) ?? []) {
      if (now - f.at >= FRONTIER_TTL_MS) this.frontiers.get(s.ifname)!.delete(host);
      // Only a receiver in the same file, or still reading the index, is expected here soon: one
      // working on another file may be syncing another part of the share and never come.
      else if (host !== starter && f.pos < pos && (f.pos < 0 || Math.floor(f.pos / 2 ** 32) === file) && !s.reporters.has(host)) behind.add(host);
    }
    if (behind.size === 0) return;
    s.waitingFor = behind;
    s.gatherUntil = now + GATHER_MAX_MS;
    this.gatherCheck ??= setInterval(() => this.checkGathering(), GATHER_CHECK_MS).unref();
  }

  /** Stop waiting for receivers that stopped moving; stop the check when nothing waits. */
  private checkGathering(): void {
    const now = Date.now();
    let holding = false;
    for (const s of this.order) {
      const w = s.waitingFor;
      if (!w) continue;
      const hosts = this.frontiers.get(s.ifname);
      for (const host of w) {
        const f = hosts?.get(host);
        if (!f || now - f.movedAt >= GATHER_IDLE_MS) w.delete(host);
      }
      if (w.size === 0 || now >= s.gatherUntil) {
        s.waitingFor = undefined;
        this.wake?.();
      } else holding = true;
    }
    if (!holding) {
      clearInterval(this.gatherCheck);
      this.gatherCheck = undefined;
    }
  }

  private insertByPosition(s: SendStream): void {
    const p = this.position(s);
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.position(this.order[mid]!) <= p) lo = mid + 1;
      else hi = mid;
    }
    this.order.splice(lo, 0, s);
  }

  /**
   * The next stream to serve: now and then one whose round ran out and is due a
   * trickle (so listeners that never ask again, like the C client, still get
   * symbols), otherwise round-robin over the first ACTIVE_WINDOW with a round left.
   */
  private pick(now: number): SendStream | undefined {
    if (now >= this.nextTrickleScan) {
      this.nextTrickleScan = now + TRICKLE_MS / 4;
      const t = this.order.find((x) => x.trickleDue(now));
      if (t) return t;
    }
    const front: SendStream[] = [];
    for (const x of this.order) {
      if (x.ready(now)) {
        front.push(x);
        if (front.length === ACTIVE_WINDOW) break;
      }
    }
    if (front.length > 0) return front[this.cursor++ % front.length];
    return this.order.find((x) => x.trickleDue(now));
  }

  /** Whether a stream picked earlier may still send now (it was not dropped, paused or served meanwhile). */
  private stillDue(s: SendStream, now: number): boolean {
    return this.streams.get(s.key) === s && (s.ready(now) || s.trickleDue(now));
  }

  private async run(): Promise<void> {
    let sinceYield = 0;
    // Picked while gathering a batch for another interface: it starts the next batch instead.
    let carried: SendStream | undefined;
    while (!this.stopped) {
      let now = Date.now();
      let s = carried && this.stillDue(carried, now) ? carried : this.pick(now);
      carried = undefined;
      if (!s) {
        // Nothing due: every stream is paused or trickling (or there are none). Sleep until
        // the next trickle, a report, a leave or a new join.
        let wait = this.order.length === 0 ? 60_000 : TRICKLE_MS;
        for (const st of this.streams.values()) wait = Math.min(wait, Math.max(1, st.wakeAt() - now));
        await new Promise<void>((r) => {
          const t = setTimeout(r, wait);
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
        this.wake = undefined;
        sinceYield = 0;
        continue;
      }
      // Gather what the policy picks, datagram by datagram exactly as if each were sent at
      // once, until the batch is full, nothing is due, or a stream on another interface is next.
      const ifname = s.ifname;
      const items: { group: string; payload: Buffer }[] = [];
      const from: SendStream[] = [];
      // Every batch is encoded into the same buffer: the sender is done with the previous batch
      // when sendBatch() resolves (a failed one gets a fresh buffer, see below). A new buffer per
      // datagram made the garbage collector's work one of the share's larger costs.
      const space = this.batchSpace;
      for (;;) {
        items.push({ group: s.group, payload: s.next(now, space.subarray(items.length * DATAGRAM_OTI_LEN)) });
        from.push(s);
        if (items.length >= BATCH_MAX) break;
        now = Date.now();
        const n = this.pick(now);
        if (!n) break;
        if (n.ifname !== ifname) {
          carried = n;
          break;
        }
        s = n;
      }
      try {
        await this.senders.get(ifname)!.sendBatch(items);
      } catch (err) {
        // Some of this batch may still be in flight through dgram: leave it its buffer.
        this.batchSpace = Buffer.allocUnsafe(BATCH_MAX * DATAGRAM_OTI_LEN);
        if (this.stopped) break;
        this.log('warn', `send on ${ifname} failed: ${(err as Error).message}`);
      }
      for (let i = 0; i < items.length; i++) {
        const len = items[i]!.payload.length;
        from[i]!.datagrams++;
        from[i]!.bytes += len;
        this.datagrams++;
        this.bytes += len;
      }
      // Sends complete synchronously (sendmmsg) or through callbacks that never give the event
      // loop a turn at I/O; without this, MLD reports would wait until the pacer sleeps.
      sinceYield += items.length;
      if (sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
  }

  /** Keep a few seconds of byte counts so that status() can give a current rate at any time. */
  private sampleRate(): void {
    const now = Date.now();
    this.rateWindow.push({ t: now, bytes: this.bytes });
    while (this.rateWindow.length > 2 && now - this.rateWindow[0]!.t > 5000) this.rateWindow.shift();
  }

  status(): ShareStatus {
    this.sampleRate();
    const now = Date.now();
    const first = this.rateWindow[0]!;
    const dt = (now - first.t) / 1000;
    const uptime = (now - this.startedAt) / 1000;
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      uptimeSec: uptime,
      interfaces: this.opts.ifnames,
      roots: this.index.roots.map((r) => ({ path: r.localPath, shareName: r.shareName, type: r.type, hash: toHex(r.hash) })),
      objects: this.index.objectCount,
      listeners: this.watcher.activeGroups().map((l) => ({ group: l.group, ifname: l.ifname })),
      streams: [...this.streams.values()].map((s) => ({
        group: s.group,
        ifname: s.ifname,
        kind: s.object.kind,
        name: s.object.record.sharePath,
        datagrams: s.datagrams,
        bytes: s.bytes,
        startedAt: s.startedAt,
      })),
      datagrams: this.datagrams,
      bytes: this.bytes,
      streamsStarted: this.streamsStarted,
      noticesSent: this.noticesSent,
      rateNow: dt > 0 ? (this.bytes - first.bytes) / dt : 0,
      rateAvg: uptime > 0 ? this.bytes / uptime : 0,
    };
  }

  /** Stop sending, leave MLD, close sockets (the C lc_unshare). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sampler);
    clearInterval(this.sweeper);
    clearInterval(this.gatherCheck);
    this.wake?.();
    await this.pump?.catch(() => undefined);
    for (const s of this.streams.values()) s.free();
    this.streams.clear();
    this.order = [];
    await this.watcher.close();
    await Promise.all([...this.senders.values()].map((s) => s.close()));
  }
}

/** Bytes of an object; for a chunk, read from its file and checked against its leaf hash (undefined when stale). */
async function loadObject(obj: IndexObject): Promise<Buffer | undefined> {
  if (obj.kind === 'tree') return obj.bytes;
  const fh = await open(obj.localPath, 'r');
  try {
    const buf = Buffer.alloc(obj.length);
    let got = 0;
    while (got < obj.length) {
      const { bytesRead } = await fh.read(buf, got, obj.length - got, obj.offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== obj.length || !hash(buf).equals(obj.hash)) return undefined;
    return buf;
  } finally {
    await fh.close();
  }
}
