/**
 * The share (PROTOCOL.md section 5): index + MLD events -> send streams.
 *
 * A join for a group that names an object starts one stream per (group,
 * interface): the K source symbols, then fresh repair symbols, until MLD says
 * nobody listens any more. Streams share the send rate round-robin, so one big
 * transfer cannot starve a small one. With no listener the wire stays silent.
 *
 * Chunk bytes are read from the shared file when a stream starts and checked
 * against the leaf hash first: a file that changed after indexing is never sent
 * under its old hash.
 */
import { EventEmitter } from 'node:events';
import { open } from 'node:fs/promises';
import { formatIPv6, prefixOfGroup } from './address.js';
import { hash, toHex } from './hash.js';
import type { IndexObject, ShareIndex } from './mdex.js';
import { ObjectEncoder } from './fec.js';
import { encodeDatagram } from './packet.js';
import { MulticastSender } from './channel.js';
import { Pacer } from './pacer.js';
import { MldWatcher, type MldEvent } from './mldsocket.js';

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
  /** Bytes per second over the last few seconds and since start. */
  rateNow: number;
  rateAvg: number;
}

class SendStream {
  readonly startedAt = Date.now();
  datagrams = 0;
  bytes = 0;
  /** A listener left and we are asking whether anyone else still listens: hold off until we know. */
  paused = false;
  private nextSource = 0;
  private encoder?: ObjectEncoder;

  constructor(
    readonly key: string,
    readonly group: string,
    readonly ifname: string,
    readonly object: IndexObject,
    private readonly data: Buffer,
    private readonly oid: Buffer,
  ) {}

  /** The next datagram: source symbols in order first, then repair symbols with fresh ESIs. */
  next(): Buffer {
    this.encoder ??= new ObjectEncoder(this.data);
    const withOti = this.object.kind === 'tree' ? this.data.length : undefined;
    if (this.nextSource < this.encoder.K) {
      const esi = this.nextSource++;
      return encodeDatagram({ oid: this.oid, transferLength: withOti, esi, symbol: this.encoder.sourceSymbol(esi) });
    }
    const r = this.encoder.nextRepair();
    return encodeDatagram({ oid: this.oid, transferLength: withOti, esi: r.esi, symbol: r.symbol });
  }

  free(): void {
    this.encoder?.free();
    this.encoder = undefined;
  }
}

export class Share extends EventEmitter {
  private readonly streams = new Map<string, SendStream>();
  private readonly starting = new Set<string>();
  private readonly senders = new Map<string, MulticastSender>();
  private order: string[] = [];
  private cursor = 0;
  private wake?: () => void;
  private stopped = false;
  private pump?: Promise<void>;
  private readonly startedAt = Date.now();
  private datagrams = 0;
  private bytes = 0;
  private streamsStarted = 0;
  private readonly rateWindow: { t: number; bytes: number }[] = [];

  private constructor(
    readonly index: ShareIndex,
    private readonly opts: ShareOptions,
    private readonly watcher: MldWatcher,
  ) {
    super();
  }

  /** Start serving `index` (the C lc_share). */
  static async start(index: ShareIndex, opts: ShareOptions): Promise<Share> {
    const pacer = new Pacer({ bitsPerSecond: opts.rateBps ?? 0 });
    const watcher = await MldWatcher.open({
      ifnames: opts.ifnames,
      querier: opts.querier ?? true,
      queryIntervalSec: opts.queryIntervalSec,
      loopback: opts.loopback,
      logger: opts.logger,
    } as Parameters<typeof MldWatcher.open>[0]);
    const share = new Share(index, opts, watcher);
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
    if (!obj) return;
    const group = formatIPv6(e.group);
    const key = `${group}%${e.ifname}`;
    const existing = this.streams.get(key);
    if (existing) {
      // A report while paused: someone still listens after a leave, so carry on.
      if (existing.paused) {
        existing.paused = false;
        this.wake?.();
      }
      return;
    }
    if (this.starting.has(key) || !this.senders.has(e.ifname)) return;
    this.starting.add(key);
    try {
      const data = await loadObject(obj);
      if (!data) {
        this.log('warn', `${obj.record.localPath} changed since it was indexed; not sending its old chunk ${toHex(obj.hash).slice(0, 16)}`);
        this.emit('stale', obj);
        return;
      }
      // The join may have been answered by a leave while we read the file.
      if (this.stopped || !this.starting.has(key)) return;
      const oid = obj.kind === 'chunk' ? obj.hash : hash(data);
      const s = new SendStream(key, group, e.ifname, obj, data, oid);
      this.streams.set(key, s);
      this.order.push(key);
      this.streamsStarted++;
      this.log('verbose', `sending ${obj.kind} ${obj.record.sharePath} on ${group}%${e.ifname}`);
      this.wake?.();
    } catch (err) {
      this.log('warn', `cannot read ${obj.record.localPath}: ${(err as Error).message}`);
    } finally {
      this.starting.delete(key);
    }
  }

  /**
   * A listener sent a leave; MLD is now asking whether others remain. Sending
   * on meanwhile would mostly feed nobody, so the stream pauses until a report
   * answers (join) or the check ends (leave).
   */
  private onPart(e: MldEvent): void {
    const s = this.streams.get(`${formatIPv6(e.group)}%${e.ifname}`);
    if (s) s.paused = true;
  }

  private onLeave(e: MldEvent): void {
    const key = `${formatIPv6(e.group)}%${e.ifname}`;
    this.starting.delete(key);
    const s = this.streams.get(key);
    if (!s) return;
    this.streams.delete(key);
    this.order = this.order.filter((k) => k !== key);
    s.free();
    this.log('verbose', `stopped ${s.object.kind} ${s.object.record.sharePath} on ${key} after ${s.datagrams} datagrams`);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.order.length === 0) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
        continue;
      }
      let s: SendStream | undefined;
      for (let tries = 0; tries < this.order.length && !s; tries++) {
        this.cursor = this.cursor % this.order.length;
        const candidate = this.streams.get(this.order[this.cursor++]!);
        if (candidate && !candidate.paused) s = candidate;
      }
      if (!s) {
        // Every stream is paused: wait for a report, a leave or a new join.
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, 250).unref();
        });
        this.wake = undefined;
        continue;
      }
      const dgram = s.next();
      try {
        await this.senders.get(s.ifname)!.send(s.group, dgram);
      } catch (err) {
        if (this.stopped) break;
        this.log('warn', `send on ${s.ifname} failed: ${(err as Error).message}`);
      }
      s.datagrams++;
      s.bytes += dgram.length;
      this.datagrams++;
      this.bytes += dgram.length;
    }
  }

  status(): ShareStatus {
    const now = Date.now();
    this.rateWindow.push({ t: now, bytes: this.bytes });
    while (this.rateWindow.length > 2 && now - this.rateWindow[0]!.t > 5000) this.rateWindow.shift();
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
      rateNow: dt > 0 ? (this.bytes - first.bytes) / dt : 0,
      rateAvg: uptime > 0 ? this.bytes / uptime : 0,
    };
  }

  /** Stop sending, leave MLD, close sockets (the C lc_unshare). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
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
