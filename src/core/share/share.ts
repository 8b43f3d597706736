/**
 * The share (docs/protocol.md#mld-and-when-a-share-sends): index + listener events -> datagrams.
 *
 * Share drives the send policy (scheduler.ts): it hands it the listener events (MLD, or push.ts),
 * reads an object when a join asks for it (objects.ts), and sends, in batches per interface, the
 * datagrams the policy picks, each encoded from the stream's object. It also answers joins for
 * objects a re-index dropped with gone notices, and reports its status (status.ts).
 *
 * Sockets come in through two seams, so a test builds a Share without root: DatagramSinks
 * (net/datagram.ts; default a MulticastSender per interface) and a ListenerSource (net/push.ts;
 * default the MLD watcher, or PushSource in push mode).
 */
import { randomBytes } from 'node:crypto';
import { LcsyncError } from '../base/errors.js';
import { EventEmitter } from 'node:events';
import { GROUP_PREFIX_BYTES, parseIPv6, prefixOfGroup } from '../wire/address.js';
import { toHex, type Hash } from '../model/hash.js';
import { objectName, type ChunkObject, type IndexObject, type ShareIndex } from '../index/mdex.js';
import { ObjectEncoder } from '../fec/fec.js';
import { CURSOR_IDLE, LARGE_SYMBOL_SIZE, MAX_DATAGRAM_LEN, SYMBOL_SIZE, SYMBOL_SIZES, datagramPrefix, isSymbolSize, encodeCursor, encodeDatagram, encodeGoneNotice, goneNoticeKey } from '../wire/packet.js';
import { MulticastSender } from '../net/mcast-sender.js';
import type { DatagramSink } from '../net/datagram.js';
import { Pacer } from '../net/pacer.js';
import { AutoRate, type AutoRateOptions, type AutoRateWindow } from '../net/autorate.js';
import { TxPlan, type TxTarget } from '../net/txplan.js';
import { groupTextOf } from '../net/listeners.js';
import { MldWatcher, type MldEvent } from '../net/mldsocket.js';
import { PushSource, type ListenerSource } from '../net/push.js';
import type { ObjectCipher } from '../wire/crypto.js';
import { SendScheduler, type ScheduledStream, type SymbolChoice } from './scheduler.js';
import { ChunkBuffers, WalkPositions, followsInFile, loadChunkRun, loadObject, objectId, sentKind } from './objects.js';
import { ChunkFiles } from './chunkfiles.js';
import { RateMeter, type ShareStatus } from './status.js';
import { Cooperation } from './cooperation.js';
import { DEFAULT_HEARTBEAT_SEC, RootAnnouncer } from './announce.js';

export interface ShareLogger {
  info(msg: string): void;
  warn(msg: string): void;
  verbose(msg: string): void;
  /** Whether lines of `level` are printed (the CLI's logger says; absent: assumed so). */
  enabled?(level: 'verbose'): boolean;
}

export interface ShareOptions {
  ifnames: string[];
  /** Let receivers on this host hear us (IPV6_MULTICAST_LOOP). */
  loopback?: boolean;
  /** IPv6 hop limit of the data (--hops), 1..255; default 255 as the C tool. Above 1 lets routers carry it further. */
  hopLimit?: number;
  /**
   * RaptorQ symbol size T: 1024 (the default, the C protocol) or LARGE_SYMBOL_SIZE (1368: a chunk
   * in 24 datagrams instead of 32; C receivers cannot take it). --symbol-size.
   */
  symbolSize?: number;
  /** Total send rate in bits per second; 0 = unlimited. Ignored with autoRate. */
  rateBps?: number;
  /**
   * --bwlimit auto: start at a safe rate and follow what the receivers can take, judged from their
   * re-asks (net/autorate.ts). Steers the default senders' pacer only (not an openSink's).
   */
  autoRate?: boolean | AutoRateOptions;
  /** Act as MLD querier when no better querier exists. */
  querier?: boolean;
  queryIntervalSec?: number;
  logger?: ShareLogger;
  /** Encrypt every object as the C tool does (secretbox before RaptorQ). */
  cipher?: ObjectCipher;
  /**
   * --gather: hold each new cohort's chunks this many milliseconds after its first chunk join,
   * so receivers that start within it share one pass (scheduler.ts GATHER_WINDOW_MAX_MS).
   */
  gatherMs?: number;
  /** No MLD: send every object a round every pushPeriodSec (see push.ts). */
  push?: boolean;
  pushPeriodSec?: number;
  /** Where each interface's datagrams go; default: a MulticastSender on it, all paced together at rateBps. */
  openSink?: (ifname: string) => Promise<DatagramSink>;
  /**
   * What reports listeners ('join', 'part' and 'leave' MldEvents on ifnames); default: the MLD
   * watcher, or a PushSource with `push`. The share closes it when it stops.
   */
  listeners?: ListenerSource;
  /**
   * Cooperate with other shares of the same content on the link (cooperation.ts): send only the
   * groups this share owns, take over those of a share that dies. Default: on with MLD (not in push
   * mode, nor with injected listeners).
   */
  cooperate?: boolean;
  /** What co-serving shares must also agree on besides the index (the signer's public key). */
  offerExtra?: Buffer;
  /** Seconds between root announces to the mirrors following a name (announce.ts); 0: only on joins and changes. Default 30. */
  announceHeartbeatSec?: number;
}

/** Let I/O (MLD reports above all) in at least this often (datagrams) while sending. */
const YIELD_EVERY = 16;
/**
 * Datagrams handed to a sender at once: one pacer charge and, with the sendmmsg addon, one
 * system call instead of a dgram send, a callback and a promise each. Small enough that a
 * batch leaves in well under a millisecond, so MLD reports still get in promptly.
 */
const BATCH_MAX = 32;
/**
 * Datagrams per plan when the sink frames natively (net/txplan.ts): no JS object per datagram, so
 * a batch may be larger; still well under a millisecond at gigabit rates.
 */
const PLAN_MAX = 64;
/**
 * Datagrams a stream sends back to back within a plan while its round lasts: under UDP GSO such a
 * run leaves as one message. Small against a round (35 for a full chunk), and a plan leaves in
 * well under a millisecond, so leaves still stop streams as promptly as one at a time.
 */
const RUN_MAX = 8;
/**
 * How many joined groups get their stream opened (the object read and checked) between two batches
 * sent. A receiver's report names dozens of new groups at once (72 in one report is common, 128 at
 * a sync's start), and reading and checking all their chunks in the turn the report arrives kept
 * the share from sending for 3 ms at a time and 30 ms at a start: long enough for the socket's
 * buffer, and then the link, to run dry. Between batches they are read a few at a time, ahead of
 * the streams being sent, since new joins go to the back of the walk order anyway.
 */
const OPENS_PER_BATCH = 4;
/** How often the byte count is sampled for the current rate. */
const RATE_SAMPLE_MS = 1000;
/** How often --bwlimit auto is asked whether a window is over (its rounds windows last 50 ms and more). */
const AUTO_TICK_MS = 20;

/**
 * Objects a re-index dropped are remembered this long (and at most this many, newest kept), so
 * that receivers still fetching the old version hear that it is gone (packet.ts, gone notice).
 */
const RETIRED_TTL_MS = 15 * 60_000;
const MAX_RETIRED = 1 << 18;
/** Notices sent per join of a notice group: a lost one is made up by the receiver's next re-join. */
const NOTICE_COPIES = 2;

/** Where small objects' repair symbols are computed before they are copied into their datagram, per symbol size. */
const repairScratch = { [SYMBOL_SIZE]: Buffer.alloc(SYMBOL_SIZE), [LARGE_SYMBOL_SIZE]: Buffer.alloc(LARGE_SYMBOL_SIZE) } as Record<number, Buffer>;

/** A join whose stream run() is to open: the event, its object and group, and when it came. */
interface PendingOpen {
  e: MldEvent;
  obj: IndexObject;
  key: string;
  group: string;
  joinedAt: number;
}

/** What a stream sends with: its object coded for the wire, and what it has sent (for status). */
class Outgoing {
  readonly startedAt = Date.now();
  datagrams = 0;
  bytes = 0;
  private encoder: ObjectEncoder;
  /**
   * The pooled buffer was lent back while nobody listens (lend()): the stream stays paused until
   * restore() gives it the chunk's bytes again. `reloading` while they are being read.
   */
  private lent = false;
  reloading = false;
  /** Objects with OTI carry their length in every datagram; chunks (always CHUNK_SIZE or the file's tail) do not. */
  private readonly transferLength: number | undefined;

  private freed = false;
  /** Built on first use by a native-framing sink: the header before the PID, and the group's bytes. */
  private target_: TxTarget | undefined;

  constructor(
    readonly key: string,
    readonly group: string,
    readonly ifname: string,
    readonly object: IndexObject,
    /** The bytes coded: the object, sealed when encrypting. */
    private coded: Buffer,
    private readonly oid: Buffer,
    readonly groupBytes: Buffer,
    /** T of this stream's symbols (ShareOptions.symbolSize). */
    readonly symbolSize: number,
    /** Takes back the pooled buffer `coded` is, when it is one (see free()). */
    private readonly recycle?: (buf: Buffer) => void,
  ) {
    this.encoder = new ObjectEncoder(coded, symbolSize);
    this.transferLength = object.kind === 'chunk' ? undefined : coded.length;
  }

  private get target(): TxTarget {
    return (this.target_ ??= { prefix: datagramPrefix(this.oid, this.transferLength, this.symbolSize), group: this.groupBytes, symbolSize: this.symbolSize });
  }

  /**
   * Add the datagram carrying `symbol` to `plan`; returns its size. A source symbol is a view of
   * the coded bytes (the last zero-padded by the framer), a repair symbol is computed into the
   * plan's repair space: nothing is copied or allocated per datagram here.
   */
  plan(symbol: SymbolChoice, plan: TxPlan): number {
    this.checkHeld();
    const target = this.target;
    const T = this.symbolSize;
    if ('source' in symbol) {
      const off = symbol.source * T;
      plan.add(target, symbol.source, this.coded, off, Math.min(T, this.coded.length - off));
    } else {
      const r = this.encoder.nextRepair(plan.repairSymbol(T));
      plan.add(target, r.esi, r.symbol, 0, T);
    }
    return target.prefix.length + 4 + T;
  }

  get K(): number {
    return this.encoder.K;
  }

  /** The datagram carrying `symbol`, encoded into `into` when given. */
  encode(symbol: SymbolChoice, into?: Buffer): Buffer {
    this.checkHeld();
    if ('source' in symbol) {
      return encodeDatagram({ oid: this.oid, transferLength: this.transferLength, esi: symbol.source, symbol: this.encoder.sourceSymbol(symbol.source) }, into);
    }
    const r = this.encoder.nextRepair(repairScratch[this.symbolSize]);
    return encodeDatagram({ oid: this.oid, transferLength: this.transferLength, esi: r.esi, symbol: r.symbol }, into);
  }

  /** Done with the stream: release the encoder, and hand a pooled buffer back (share.ts recycles it once no batch refers to it). */
  free(): void {
    if (this.freed) return;
    // Once only: a buffer handed back twice would be given to two streams at once.
    this.freed = true;
    this.encoder.free();
    if (!this.lent) this.recycle?.(this.coded);
  }

  /** Whether the stream's bytes are lent out (see lend()). */
  get isLent(): boolean {
    return this.lent;
  }

  /**
   * Nobody listens any more: hand the pooled buffer back now rather than when the stream is
   * dropped. A silent stream lingers (scheduler.ts LINGER_MS) in case a listener asks again, and at
   * line rate the lingering streams' chunks were most of the share's memory (tens of MiB); a
   * re-ask now reads the chunk again (restore()). Only a plain pooled chunk whose repair symbols
   * need no state is lent; returns whether this one was.
   */
  lend(): boolean {
    if (this.lent || this.freed || !this.recycle || !this.encoder.stateless) return false;
    this.lent = true;
    this.recycle(this.coded);
    return true;
  }

  /** The chunk's bytes again after lend(), checked against its hash as read: the repair symbols go on with fresh ESIs. */
  restore(data: Buffer): void {
    const cursor = this.encoder.repairCursor;
    this.encoder.free();
    this.coded = data;
    this.encoder = new ObjectEncoder(data, this.symbolSize);
    this.encoder.repairCursor = cursor;
    this.lent = false;
  }

  /** A lent stream is paused: planning from its buffer would send another stream's bytes. */
  private checkHeld(): void {
    if (this.lent) throw new LcsyncError('INTERNAL', `stream ${this.key} planned while its buffer is lent`);
  }
}

export class Share extends EventEmitter {
  private readonly scheduler: SendScheduler<Outgoing>;
  private readonly sinks = new Map<string, DatagramSink>();
  private positions: WalkPositions;
  /** Keys of objects earlier indexes served and the current one does not, by the 14-byte prefix of their notice key. */
  private readonly retired = new Map<string, { key: Hash; at: number }>();
  /** Gone notices sent (status and tests). */
  noticesSent = 0;
  /** Files already reported as changed or unreadable under the current index. */
  private readonly warnedStale = new Set<string>();
  private wake?: () => void;
  /** Joins that need a stream opened (see OPENS_PER_BATCH), oldest first; run() opens them. */
  private toOpen: PendingOpen[] = [];
  private stopped = false;
  private pump?: Promise<void>;
  private readonly startedAt = Date.now();
  private datagrams = 0;
  private bytes = 0;
  private streamsStarted = 0;
  private readonly rate = new RateMeter(this.startedAt);
  /** T of every stream's symbols (ShareOptions.symbolSize). */
  get symbolSize(): number {
    return this.opts.symbolSize ?? SYMBOL_SIZE;
  }
  /** Where run() encodes each batch of datagrams. */
  private batchSpace = Buffer.allocUnsafe(BATCH_MAX * MAX_DATAGRAM_LEN);
  /** Where run() plans each batch for sinks that frame natively; made on first use. */
  private txPlan: TxPlan | undefined;
  /** Buffers chunks are read into, reused once their stream is gone. */
  private readonly chunkBuffers = new ChunkBuffers();
  /** Files chunks are read from, kept open while their chunks are sent. */
  private readonly chunkFiles = new ChunkFiles();
  /**
   * Buffers of streams freed since the batch in flight was planned: a plan refers to chunk bytes
   * until it is sent, so they go back to chunkBuffers only after it (recycleFreed).
   */
  private freed: Buffer[] = [];
  private sampler?: NodeJS.Timeout;
  /** --bwlimit auto: the controller, the pacer it steers and its timer. */
  private auto?: { rate: AutoRate; pacer: Pacer; timer: NodeJS.Timeout };
  /** Rounds whose listeners were still joined when their stream sent again, judged after this turn's I/O (judgeRound). */
  private lateRounds: { stream: ScheduledStream<Outgoing>; hosts: string[]; startedAt: number }[] = [];
  /** The default senders' pacer (not an openSink's): its rate is split among co-servers. */
  private pacer?: Pacer;
  /** Redundant shares: presence, peers and group ownership; undefined when not cooperating. */
  private coop?: Cooperation;
  /** Joins that came while cooperation was still discovering peers: answered once it is done. */
  private heldJoins: MldEvent[] = [];
  /** Joins left to a co-serving share that owns their group (status and tests). */
  joinsDeferred = 0;
  /** Tells the mirrors that follow a name its root (announce.ts). */
  private readonly announcer: RootAnnouncer;

  private constructor(
    private index_: ShareIndex,
    private readonly opts: ShareOptions,
    private readonly watcher: ListenerSource,
  ) {
    super();
    this.positions = new WalkPositions(index_);
    // A host stops counting as a follower when MLD would drop it: robustness 2 x query interval + response interval.
    const qiSec = opts.queryIntervalSec ?? 20;
    this.announcer = new RootAnnouncer(index_, {
      ifnames: opts.ifnames,
      heartbeatSec: opts.announceHeartbeatSec ?? DEFAULT_HEARTBEAT_SEC,
      hostTtlMs: (2 * qiSec + 10) * 1000,
      cipher: opts.cipher,
      always: opts.push,
      send: (ifname, group, payload) => {
        const sink = this.sinks.get(ifname);
        if (!sink || this.stopped) return;
        void sink.sendBatch([{ group, payload }]).catch((err: Error) => this.log('warn', `send on ${ifname} failed: ${err.message}`));
      },
      verbose: (msg) => this.log('verbose', msg),
    });
    this.scheduler = new SendScheduler<Outgoing>({
      trickle: !opts.push,
      gather: !opts.push,
      cohortMs: opts.push ? 0 : opts.gatherMs,
      onRelease: () => this.wake?.(),
      onProbe: (s) => this.watcher.probe?.(s.ifname, s.item.groupBytes),
      onAsk: (kind) => {
        if (kind === 'listener') this.auto?.rate.round();
        else this.auto?.rate.reask();
      },
      onOutcome: (s, kept, late) => this.judgeRound(s, kept, late),
      onDrop: (s) => {
        s.item.free();
        this.log('verbose', `stopped ${sentKind(s.item.object)} ${objectName(s.item.object)} on ${s.key} after ${s.item.datagrams} datagrams for ${s.K} source symbols (rounds: ${s.asks.listener} listeners, ${s.asks.reask} re-asks, ${s.asks.repeat} repeats, ${s.asks.lacking} lacking reports answered; trickled ${s.trickled.held} held, ${s.trickled.after} after)`);
      },
    });
  }

  get index(): ShareIndex {
    return this.index_;
  }

  /** The hold after the source symbols: 1.5 times the measured leave latency, bounded. */
  get graceMs(): number {
    return this.scheduler.graceMs;
  }

  /** Whether any stream is alive (sending, holding or lingering): background work can wait. */
  get sending(): boolean {
    return this.scheduler.size > 0;
  }

  /**
   * Serve a new index from now on (after a re-index). Streams whose object is
   * not in the new index stop at once, so nothing is sent under a stale hash.
   */
  setIndex(index: ShareIndex): void {
    this.retire(this.index_, index);
    this.index_ = index;
    this.announcer.setIndex(index);
    this.warnedStale.clear();
    // Files the new index no longer names need not stay open; the others reopen on their next chunk.
    this.chunkFiles.closeAll();
    this.positions = new WalkPositions(index);
    this.coop?.setIndex(index);
    for (const out of this.scheduler.items()) {
      const now = index.get(out.object.hash);
      // An alias names a path, not content: the same key may now stand for other bytes.
      // A bundle's bytes were read when its stream started: after a re-index it starts afresh.
      const otherBytes =
        now !== undefined && (now.kind === 'bundle' || out.object.kind === 'bundle' ? now !== out.object : now.kind !== 'chunk' && out.object.kind !== 'chunk' && !now.bytes.equals(out.object.bytes));
      if (!now || now.kind !== out.object.kind || otherBytes) {
        this.scheduler.remove(out.key);
        out.free();
        this.log('verbose', `dropped stale ${sentKind(out.object)} ${objectName(out.object)} on ${out.key}`);
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
    const sink = this.sinks.get(e.ifname);
    if (!sink) return;
    const group = groupTextOf(e);
    const notice = encodeGoneNotice(this.opts.cipher ? this.opts.cipher.seal(r.key) : r.key);
    this.noticesSent += NOTICE_COPIES;
    this.log('verbose', `told ${group}%${e.ifname} that object ${toHex(r.key).slice(0, 16)} is gone (the source changed)`);
    void sink.sendBatch(Array.from({ length: NOTICE_COPIES }, () => ({ group, payload: notice }))).catch((err: Error) => {
      this.log('warn', `send on ${e.ifname} failed: ${err.message}`);
    });
  }

  /**
   * A join of a file's cursor group: tell the receiver where this share is in the file now, so
   * it starts its chunks there and shares the datagrams going out (packet.ts, the cursor).
   */
  private answerCursor(e: MldEvent, file: { rank: number; key: Buffer }): void {
    const sink = this.sinks.get(e.ifname);
    if (!sink) return;
    const chunk = this.scheduler.cursorOf(e.ifname, file.rank) ?? CURSOR_IDLE;
    this.log('verbose', `told ${e.from} on ${e.ifname} the cursor of ${this.index.records[file.rank]?.sharePath}: ${chunk === CURSOR_IDLE ? 'idle' : `chunk ${chunk}`}`);
    void sink.sendBatch([{ group: groupTextOf(e), payload: encodeCursor(file.key, chunk) }]).catch((err: Error) => {
      this.log('warn', `send on ${e.ifname} failed: ${(err as Error).message}`);
    });
  }

  /** Start serving `index` (the C lc_share). */
  static async start(index: ShareIndex, opts: ShareOptions): Promise<Share> {
    if (opts.symbolSize !== undefined && !isSymbolSize(opts.symbolSize)) {
      throw new LcsyncError('USAGE', `symbol size must be ${SYMBOL_SIZES.join(' or ')}, not ${opts.symbolSize}`);
    }
    let share: Share;
    const watcher: ListenerSource =
      opts.listeners ??
      (opts.push
        ? new PushSource(opts.ifnames, () => share.index.hashes(), opts.pushPeriodSec ?? 10)
        : await MldWatcher.open({
            ifnames: opts.ifnames,
            querier: opts.querier ?? true,
            queryIntervalSec: opts.queryIntervalSec,
            loopback: opts.loopback,
            logger: opts.logger,
          }));
    share = new Share(index, opts, watcher);
    let openSink = opts.openSink;
    if (!openSink) {
      const auto = opts.autoRate ? new AutoRate(Date.now(), opts.autoRate === true ? {} : opts.autoRate) : undefined;
      const pacer = new Pacer({ bitsPerSecond: auto ? auto.rate : (opts.rateBps ?? 0) });
      share.pacer = pacer;
      if (auto) share.steer(auto, pacer);
      openSink = (ifname) => MulticastSender.open({ ifname, loopback: opts.loopback, pacer, hopLimit: opts.hopLimit });
    }
    try {
      for (const ifname of opts.ifnames) share.sinks.set(ifname, await openSink(ifname));
      if (opts.cooperate ?? (!opts.push && !opts.listeners)) {
        try {
          share.coop = await Cooperation.open({
            ifnames: opts.ifnames,
            index,
            // A cipher without a tag cannot show which key it holds: a random one matches no other share.
            keyTag: opts.cipher ? (opts.cipher.tag ?? randomBytes(8)) : undefined,
            offerExtra: opts.offerExtra,
            symbolSize: share.symbolSize,
            log: (level, msg) => share.log(level, msg),
            // After this turn's I/O: leaves already in the MLD socket beside a peer's bye (receivers
            // that exited just before it stopped) are read first, so their groups get no round.
            onTakeover: (ifnames) => setImmediate(() => share.takeOver(ifnames)),
            onDiscovered: () => share.answerHeld(),
            onPeersChanged: () => share.shareRate(),
          });
        } catch (err) {
          // Serving alone is what a share did before cooperation existed: not a reason to fail.
          share.log('warn', `cannot join the presence group of redundant shares (${(err as Error).message}): serving alone`);
        }
      }
    } catch (e) {
      await share.stop();
      throw e;
    }
    watcher.on('join', (e: MldEvent) => share.onJoin(e));
    watcher.on('leave', (e: MldEvent) => share.onLeave(e));
    watcher.on('part', (e: MldEvent) => share.onPart(e));
    share.pump = share.run();
    share.sampler = setInterval(() => share.rate.sample(Date.now(), share.bytes), RATE_SAMPLE_MS);
    share.sampler.unref();
    return share;
  }

  /**
   * The shares sending on this link now, this one included: co-servers (cooperation.ts) split the
   * rate as they split the groups, so that the link carries about what one share would send.
   */
  private get coServers(): number {
    return this.coop ? 1 + this.coop.peers().length : 1;
  }

  /** Co-servers came or went: this share's part of the rate (--bwlimit, or the auto rate) is 1/coServers of it. */
  private shareRate(): void {
    if (!this.pacer) return;
    const n = this.coServers;
    const total = this.auto ? this.auto.rate.rate : (this.opts.rateBps ?? 0);
    if (total > 0) this.pacer.setRate(total / n);
    this.log('verbose', `${n} ${n === 1 ? 'share' : 'shares'} sending on the link: ${total > 0 ? `${(total / n / 1e6).toFixed(1)} Mbit/s` : 'unlimited'} for this one`);
  }

  /** --bwlimit auto: let `rate` set the pacer, window by window. */
  private steer(rate: AutoRate, pacer: Pacer): void {
    // A line per closed window on stderr: how the rate moved and why (README, "How fast it sends").
    const trace = process.env.LCSYNC_AUTORATE_TRACE === '1';
    // Date.now(): the scheduler's clock, which dates the rounds the controller is told of.
    const t0 = Date.now();
    // The controller is told what went out from this.bytes, the one count both send paths (sendBatch
    // and the native sendPlan) keep: fed per datagram on the batch path only, it saw nothing from the
    // native sender, took every window for one that did not use its rate and never raised it (a 1 GiB
    // file went at 65-78 Mbit/s where --bwlimit 0 went at 210-512).
    let counted = this.bytes;
    const timer = setInterval(() => {
      // Co-servers each send their part: the controller judges the link's total.
      rate.sent((this.bytes - counted) * this.coServers);
      counted = this.bytes;
      const decision = rate.update(Date.now());
      if (trace) for (const w of rate.closed) process.stderr.write(autoRateTraceLine(w, t0));
      if (decision !== 'raise' && decision !== 'backoff') return;
      pacer.setRate(rate.rate / this.coServers);
      this.log('verbose', `bwlimit auto: ${decision === 'raise' ? 'raised' : 'backed off'} to ${(rate.rate / 1e6).toFixed(1)} Mbit/s`);
    }, AUTO_TICK_MS);
    timer.unref();
    this.auto = { rate, pacer, timer };
  }

  /** The send rate now, bits per second: the auto rate, the fixed --bwlimit, or 0 (unlimited; or an injected sink's own). */
  get sendRateBps(): number {
    return this.auto ? this.auto.pacer.bitsPerSecond : this.opts.openSink ? 0 : (this.opts.rateBps ?? 0);
  }

  private log(level: 'info' | 'warn' | 'verbose', msg: string): void {
    this.opts.logger?.[level](msg);
  }

  private onJoin(e: MldEvent): void {
    if (this.stopped) return;
    if (this.coop?.consumes(e)) return;
    const prefix = prefixOfGroup(e.group);
    if (!prefix) return;
    const obj = this.index.getByPrefix(prefix);
    if (!obj) {
      if (this.announcer.onJoin(e, prefix)) return;
      const file = this.positions.cursorFile(prefix);
      if (file) this.answerCursor(e, file);
      else if (this.retired.size > 0) this.answerGone(e, prefix);
      return;
    }
    // Streams exist only on interfaces the share sends on.
    if (!this.sinks.has(e.ifname)) return;
    const group = groupTextOf(e);
    const key = `${group}%${e.ifname}`;
    if (this.coop && !this.scheduler.get(key) && !this.scheduler.isStarting(key)) {
      if (this.coop.holding) {
        this.heldJoins.push(e);
        return;
      }
      // A co-serving share owns this group: it answers. A stream already running (started before
      // the peer was heard) goes on serving its listeners.
      if (!this.coop.owns(e.group, e.ifname)) {
        this.joinsDeferred++;
        return;
      }
    }
    const now = Date.now();
    const outcome = this.scheduler.join(key, e.ifname, e.from, this.positions.of(obj), now, e.answer === true, e.lacking === true);
    if (outcome === 'joined') {
      const s = this.scheduler.get(key);
      if (s && (s.item.isLent || s.item.reloading)) {
        // Its bytes were lent back while nobody listened: hold it until they are read again.
        s.paused = true;
        if (!s.item.reloading) void this.reload(s);
        return;
      }
      this.wake?.();
    }
    if (outcome !== 'start') return;
    this.toOpen.push({ e, obj, key, group, joinedAt: now });
    this.wake?.();
  }

  /** Open streams for the oldest `max` joins waiting (all of them with Infinity). */
  private async openSome(max: number): Promise<void> {
    for (let n = 0; n < max && this.toOpen.length > 0 && !this.stopped; ) {
      const run = this.takeRun(max - n);
      n += run.length;
      if (run.length === 1) {
        await this.open(run[0]!);
        continue;
      }
      let bytes: (Buffer | undefined)[] | undefined;
      try {
        bytes = loadChunkRun(this.chunkFiles, run.map((p) => p.obj as ChunkObject), this.chunkBuffers);
      } catch {
        // Each is read again on its own, and says why it cannot be.
      }
      for (const [i, p] of run.entries()) await this.open(p, bytes ? { bytes: bytes[i] } : undefined);
    }
  }

  /**
   * The oldest joins waiting, at most `max`: one, or chunks that follow each other in one file (a receiver
   * joins a file's chunks in order), read together with one check of the file and one readv (objects.ts).
   */
  private takeRun(max: number): PendingOpen[] {
    const run = [this.toOpen.shift()!];
    let last = run[0]!.obj;
    if (last.kind !== 'chunk' || !this.scheduler.isStarting(run[0]!.key)) return run;
    while (run.length < max && this.toOpen.length > 0) {
      const next = this.toOpen[0]!;
      if (next.obj.kind !== 'chunk' || !followsInFile(last, next.obj) || !this.scheduler.isStarting(next.key)) break;
      run.push(this.toOpen.shift()!);
      last = next.obj;
    }
    return run;
  }

  /**
   * Read the object of a join's group and start its stream, unless a leave came first. `read`: its bytes,
   * read already with the chunks around it (undefined bytes: stale).
   */
  private async open(p: PendingOpen, read?: { bytes: Buffer | undefined }): Promise<void> {
    const { e, obj, key, group, joinedAt } = p;
    // Everyone left before the stream was opened: nothing to read.
    if (!this.scheduler.isStarting(key)) {
      if (read?.bytes) this.chunkBuffers.give(read.bytes);
      return;
    }
    try {
      const data = read ? read.bytes : await loadObject(obj, this.chunkBuffers, this.chunkFiles);
      if (!data) {
        // One line per file per index: every join of each of its chunks ends here until a re-index.
        this.stale(obj, (p) => `${p} changed since it was indexed; not sending its old chunks`);
        return;
      }
      const pooled = obj.kind === 'chunk';
      // The join may have been answered by a leave while we read the file.
      if (this.stopped || !this.scheduler.isStarting(key)) {
        if (pooled) this.chunkBuffers.give(data);
        return;
      }
      // The OID names the plaintext; what is coded (and so F) is the sealed object when encrypting.
      const coded = this.opts.cipher ? this.opts.cipher.seal(data) : data;
      const oid = objectId(obj, data);
      if (pooled && coded !== data) this.chunkBuffers.give(data);
      const recycle = pooled && coded === data ? (b: Buffer) => void this.freed.push(b) : undefined;
      const out = new Outgoing(key, group, e.ifname, obj, coded, oid, Buffer.from(e.group), this.symbolSize, recycle);
      this.scheduler.open(key, { ifname: e.ifname, position: this.positions.of(obj), K: out.K, gather: obj.kind === 'chunk' || (obj.kind === 'bundle' ? 'joins' : false), item: out }, e.from, joinedAt);
      this.streamsStarted++;
      this.log('verbose', `sending ${sentKind(obj)} ${objectName(obj)} on ${key}`);
    } catch (err) {
      // Vanished or unreadable: as stale as changed, so whoever follows the files re-indexes now.
      this.stale(obj, (p) => `cannot read ${p}: ${(err as Error).message}`);
    } finally {
      this.scheduler.abandon(key);
    }
  }

  /** Read the chunk of a stream whose buffer was lent (Outgoing.lend) and let it go on if someone still listens. */
  private async reload(s: ScheduledStream<Outgoing>): Promise<void> {
    const out = s.item;
    out.reloading = true;
    let data: Buffer | undefined;
    let failure: string | undefined;
    try {
      data = await loadObject(out.object, this.chunkBuffers, this.chunkFiles);
    } catch (err) {
      failure = (err as Error).message;
    } finally {
      out.reloading = false;
    }
    if (!data || this.stopped || this.scheduler.get(s.key) !== s) {
      if (data) this.chunkBuffers.give(data);
      else if (this.scheduler.get(s.key) === s) {
        // Changed or unreadable since the stream began: it goes, and its old bytes are never sent again.
        this.scheduler.remove(s.key);
        out.free();
        this.stale(out.object, failure === undefined ? (p) => `${p} changed since it was indexed; not sending its old chunks` : (p) => `cannot read ${p}: ${failure}`);
      }
      return;
    }
    out.restore(data);
    if (s.reporters.size === 0) {
      // Everyone left again while we read.
      out.lend();
      return;
    }
    s.paused = false;
    this.wake?.();
  }

  /** A silent stream (its last listener parted or left) lends its chunk buffer back until someone asks again. */
  private lendIfSilent(key: string): void {
    const s = this.scheduler.get(key);
    if (s && s.paused && s.reporters.size === 0 && !s.item.reloading) s.item.lend();
  }

  /** A chunk's file changed or cannot be read: say so once per file per index, and tell whoever follows the files. */
  private stale(obj: IndexObject, warning: (localPath: string) => string): void {
    // Only chunks are read from disk: objects held in memory are never stale.
    if (obj.kind !== 'chunk') return;
    const p = obj.record.localPath;
    if (!this.warnedStale.has(p)) {
      this.warnedStale.add(p);
      this.log('warn', warning(p));
    }
    this.emit('stale', obj);
  }

  /** Cooperation found its peers (or none): answer the joins that came meanwhile, as if they came now. */
  private answerHeld(): void {
    const held = this.heldJoins;
    this.heldJoins = [];
    // Only groups still listened: a stream started for one whose listener left meanwhile would
    // never hear a leave.
    const active = new Set(this.watcher.activeGroups().map((l) => `${l.group}%${l.ifname}`));
    for (const e of held) if (active.has(`${groupTextOf(e)}%${e.ifname}`)) this.onJoin(e);
  }

  /**
   * A round's outcome for the auto rate. A listener still joined when its stream sends again after the
   * hold was late; but that send can run in a turn of the event loop before the leave, already in the
   * MLD socket, is read (a timer or a send's completion runs before the poll phase has read the other
   * sockets, and a busy share reaches the hold's end late). So late listeners are judged again after
   * this turn's I/O (setImmediate runs after the poll phase): those that left meanwhile kept up.
   */
  private judgeRound(stream: ScheduledStream<Outgoing>, kept: number, late: number): void {
    if (!this.auto) return;
    if (late === 0) {
      this.auto.rate.outcome(kept, 0, stream.K, stream.roundStartedAt);
      return;
    }
    this.lateRounds.push({ stream, hosts: [...stream.reporters], startedAt: stream.roundStartedAt });
    if (this.lateRounds.length === 1) setImmediate(() => this.judgeLateRounds());
  }

  private judgeLateRounds(): void {
    const rounds = this.lateRounds;
    this.lateRounds = [];
    for (const { stream, hosts, startedAt } of rounds) {
      let late = 0;
      for (const h of hosts) if (stream.reporters.has(h)) late++;
      this.auto?.rate.outcome(hosts.length - late, late, stream.K, startedAt);
    }
  }

  /**
   * Co-serving shares died on `ifnames`: every group that still has listeners there, that we now
   * own and do not serve, starts as if its last reporter had just joined (a new listener: a full
   * round), from the listener state MLD keeps, without waiting for the receivers to ask again.
   */
  private takeOver(ifnames: Set<string>): void {
    if (this.stopped) return;
    let started = 0;
    for (const l of this.watcher.activeGroups()) {
      if (!ifnames.has(l.ifname) || !this.sinks.has(l.ifname)) continue;
      let group: Buffer;
      try {
        group = parseIPv6(l.group);
      } catch {
        continue;
      }
      if (this.scheduler.get(`${l.group}%${l.ifname}`)) continue;
      if (!prefixOfGroup(group) || !this.index.getByPrefix(prefixOfGroup(group)!)) continue;
      if (!this.coop?.owns(group, l.ifname)) continue;
      started++;
      this.onJoin({ kind: 'join', group, ifname: l.ifname, from: (l as { lastReporter?: string }).lastReporter ?? 'takeover', refresh: true });
    }
    this.log('info', `took over ${started} ${started === 1 ? 'group' : 'groups'} with listeners`);
  }

  private onPart(e: MldEvent): void {
    if (this.coop?.consumes(e)) return;
    this.announcer.onPart(e);
    const key = `${groupTextOf(e)}%${e.ifname}`;
    this.scheduler.part(key, e.from, Date.now());
    this.lendIfSilent(key);
  }

  private onLeave(e: MldEvent): void {
    if (this.coop?.consumes(e)) return;
    this.announcer.onLeave(e);
    const key = `${groupTextOf(e)}%${e.ifname}`;
    this.scheduler.leave(key, Date.now());
    this.lendIfSilent(key);
  }

  private async run(): Promise<void> {
    let sinceYield = 0;
    // Picked while gathering a batch for another interface: it starts the next batch instead.
    let carried: ScheduledStream<Outgoing> | undefined;
    while (!this.stopped) {
      if (this.toOpen.length > 0) await this.openSome(OPENS_PER_BATCH);
      let now = Date.now();
      let s = carried && this.scheduler.stillDue(carried, now) ? carried : this.scheduler.pick(now);
      carried = undefined;
      if (!s && this.toOpen.length > 0) {
        // Nothing to send until some of them are open.
        await this.openSome(Infinity);
        continue;
      }
      if (!s) {
        this.recycleFreed();
        // Nothing due: every stream is paused, held or trickling (or there are none). Sleep until
        // the scheduler wants to be asked again, a report, a leave or a new join.
        const wait = this.scheduler.wakeAt(now) - now;
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
      const ifname = s.ifname;
      const sink = this.sinks.get(ifname)!;
      if (sink.framesPlans && sink.sendPlan) {
        const planned = await this.sendPlanned(sink, s, now);
        if (planned.stop) break;
        carried = planned.carried;
        sinceYield += planned.count;
        if (sinceYield >= YIELD_EVERY) {
          sinceYield = 0;
          await new Promise<void>((r) => setImmediate(r));
        }
        continue;
      }
      // Gather what the policy picks, datagram by datagram exactly as if each were sent at
      // once, until the batch is full, nothing is due, or a stream on another interface is next.
      const items: { group: string; payload: Buffer }[] = [];
      const from: Outgoing[] = [];
      // Every batch is encoded into the same buffer: the sink is done with the previous batch
      // when sendBatch() resolves (a failed one gets a fresh buffer, see below). A new buffer per
      // datagram made the garbage collector's work one of the share's larger costs.
      const space = this.batchSpace;
      for (;;) {
        const out = s.item;
        items.push({ group: out.group, payload: out.encode(s.take(now), space.subarray(items.length * MAX_DATAGRAM_LEN)) });
        from.push(out);
        if (items.length >= BATCH_MAX) break;
        now = Date.now();
        const n = this.scheduler.pick(now);
        if (!n) break;
        if (n.ifname !== ifname) {
          carried = n;
          break;
        }
        s = n;
      }
      try {
        await this.sinks.get(ifname)!.sendBatch(items);
      } catch (err) {
        // Some of this batch may still be in flight through dgram: leave it its buffer.
        this.batchSpace = Buffer.allocUnsafe(BATCH_MAX * MAX_DATAGRAM_LEN);
        if (this.stopped) break;
        this.log('warn', `send on ${ifname} failed: ${(err as Error).message}`);
      }
      // The JS path copied every symbol into its batch: the freed streams' buffers are free now.
      this.recycleFreed();
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

  /**
   * One batch for a sink that frames natively: plan what the policy picks (as run() does for
   * sendBatch, but a stream's round goes in runs of up to RUN_MAX), send it, count it. Returns
   * the datagrams planned, a stream picked for another interface, and whether the share stopped.
   */
  private async sendPlanned(sink: DatagramSink, first: ScheduledStream<Outgoing>, start: number): Promise<{ count: number; carried?: ScheduledStream<Outgoing>; stop?: boolean }> {
    const plan = (this.txPlan ??= new TxPlan(PLAN_MAX));
    plan.reset();
    const ifname = first.ifname;
    let s = first;
    let now = start;
    let carried: ScheduledStream<Outgoing> | undefined;
    for (;;) {
      const out = s.item;
      let run = 0;
      do {
        const len = out.plan(s.take(now), plan);
        out.datagrams++;
        out.bytes += len;
        this.datagrams++;
        this.bytes += len;
        run++;
      } while (run < RUN_MAX && !plan.full && s.ready(now));
      if (plan.full) break;
      now = Date.now();
      const n = this.scheduler.pick(now);
      if (!n) break;
      if (n.ifname !== ifname) {
        carried = n;
        break;
      }
      s = n;
    }
    try {
      await sink.sendPlan!(plan);
    } catch (err) {
      if (this.stopped) return { count: plan.count, stop: true };
      this.log('warn', `send on ${ifname} failed: ${(err as Error).message}`);
    }
    this.recycleFreed();
    return { count: plan.count, carried };
  }

  /** Hand the buffers of streams freed so far back for reuse: called when no batch refers to them. */
  private recycleFreed(): void {
    if (this.freed.length === 0) return;
    for (const b of this.freed) this.chunkBuffers.give(b);
    this.freed = [];
  }

  status(): ShareStatus {
    const now = Date.now();
    const { rateNow, rateAvg, uptimeSec } = this.rate.rates(now, this.bytes);
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      uptimeSec,
      interfaces: this.opts.ifnames,
      roots: this.index.roots.map((r) => ({ path: r.localPath, shareName: r.shareName, type: r.type, hash: toHex(r.hash) })),
      objects: this.index.objectCount,
      symbolSize: this.symbolSize,
      listeners: this.watcher.activeGroups().map((l) => ({ group: l.group, ifname: l.ifname })),
      streams: this.scheduler.items().map((s) => ({
        group: s.group,
        ifname: s.ifname,
        kind: sentKind(s.object),
        name: objectName(s.object),
        datagrams: s.datagrams,
        bytes: s.bytes,
        startedAt: s.startedAt,
      })),
      datagrams: this.datagrams,
      bytes: this.bytes,
      streamsStarted: this.streamsStarted,
      noticesSent: this.noticesSent,
      followers: this.announcer.followers(),
      announcesSent: this.announcer.sent,
      rateNow,
      rateAvg,
      ...(this.coop
        ? {
            cooperation: {
              id: this.coop.table.id.toString('hex'),
              peers: this.coop.peers().map((p) => ({ id: p.idHex, addresses: p.addresses, ifnames: [...p.ifnames], lastSeenMsAgo: now - p.lastSeen })),
              heartbeatsSent: this.coop.heartbeatsSent,
              joinsDeferred: this.joinsDeferred,
            },
          }
        : {}),
    };
  }

  /** Stop sending, leave MLD, close sockets (the C lc_unshare). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.toOpen = [];
    clearInterval(this.sampler);
    clearInterval(this.auto?.timer);
    this.announcer.stop();
    this.wake?.();
    await this.coop?.close();
    await this.pump?.catch(() => undefined);
    for (const s of this.scheduler.clear()) s.item.free();
    this.chunkFiles.closeAll();
    await this.watcher.close();
    await Promise.all([...this.sinks.values()].map((s) => s.close()));
  }
}

/** One LCSYNC_AUTORATE_TRACE line: seconds since the share started, the window and the decision. */
function autoRateTraceLine(w: AutoRateWindow, t0: number): string {
  const mbit = (bps: number) => (bps / 1e6).toFixed(1);
  const judged = w.smoothed === undefined ? '' : w.signal === 'rounds' ? ` loss ${(100 * w.smoothed).toFixed(2)}% baseline ${(100 * w.baseline!).toFixed(2)}%` : ` smoothed ${w.smoothed.toFixed(2)} baseline ${w.baseline!.toFixed(2)}`;
  const counts = w.signal === 'rounds' ? `kept ${w.kept} late ${w.late}` : `rounds ${w.rounds} reasks ${w.reasks}`;
  return `autorate ${((w.at - t0) / 1000).toFixed(2)}s ${w.signal} ${w.decision} ${mbit(w.rateBefore)}->${mbit(w.rate)} Mbit/s sent ${mbit(w.sentBps)} Mbit/s in ${w.elapsedMs.toFixed(0)} ms ${counts}${judged}\n`;
}
