/**
 * The relay (`lcsync relay`): carries shares from one link to others, as an application-level MLD proxy
 * (docs/protocol.md#beyond-one-link).
 *
 * - Downstream it watches MLD as a share does (querier included, net/mldsocket.ts). A group with a listener on
 *   some downstream interface is wanted.
 * - Upstream it joins every wanted group (net/group-sockets.ts), so the kernel reports it there and a share, or
 *   the relay one tier up, starts sending; it leaves when the last downstream listener has left.
 * - Every datagram that arrives upstream goes out at once, bytes unchanged, on each downstream interface that has
 *   a listener for its group, with the relay's own hop limit: objects are content-addressed and datagrams
 *   self-describing, so forwarding them as they are is right for encrypted shares too, and a file is forwarded
 *   while it is still in transit. Datagrams that arrive together leave in one sendmmsg batch where the addon is
 *   built (net/mcast-sender.ts), through node:dgram otherwise.
 * - A receiver that stalls re-joins (a fresh report); when its group has been silent for a while the relay
 *   re-joins upstream too, passing the cue on to the sender.
 *
 * Loops: nothing is ever sent upstream; datagrams from this host's own addresses are dropped; groups are joined
 * on the upstream interface only. Chains: a relay one tier down is a listener like any other, so each link
 * carries each datagram once, whatever the number of listeners and tiers. Memory: at most maxGroups groups, and
 * at most MAX_QUEUED datagrams waiting per downstream interface (more are dropped and counted, as a full socket
 * buffer would; receivers recover them from the repair symbols or by re-joining).
 */
import { LcsyncError } from '../base/errors.js';
import { formatIPv6 as formatGroup, parseIPv6 } from '../wire/address.js';
import { DEFAULT_MAX_GROUPS, GroupSockets } from '../net/group-sockets.js';
import type { DatagramSink } from '../net/datagram.js';
import { MldWatcher, type MldEvent } from '../net/mldsocket.js';
import { MulticastSender } from '../net/mcast-sender.js';
import type { ListenerSource } from '../net/push.js';

/** Datagrams waiting for one downstream interface, at most. */
export const MAX_QUEUED = 8192;
/** A refresh for a group silent this long is a stalled receiver: re-join upstream (at most this often, too). */
const STALL_MS = 1000;
/** Datagrams handed to a sender at once. */
const BATCH_MAX = 64;

export interface RelayLogger {
  info(msg: string): void;
  verbose(msg: string): void;
  warn(msg: string): void;
}

export interface RelayOptions {
  upstream: string;
  downstreams: string[];
  /** Default 4242. */
  port?: number;
  /** Hop limit of forwarded datagrams, 1..255; default 255. */
  hopLimit?: number;
  /** Act as MLD querier downstream (default true). */
  querier?: boolean;
  queryIntervalSec?: number;
  maxGroups?: number;
  logger?: RelayLogger;
  /** What reports downstream listeners; default an MldWatcher on the downstream interfaces. Closed on stop. */
  listeners?: ListenerSource;
  /** Where a downstream interface's datagrams go; default a MulticastSender with hopLimit. */
  openSink?: (ifname: string) => Promise<DatagramSink>;
}

export interface RelayGroupStatus {
  group: string;
  downstreams: string[];
  datagrams: number;
  bytes: number;
}

export interface RelayStatus {
  upstream: string;
  downstreams: string[];
  hopLimit: number;
  uptimeSec: number;
  /** Datagrams and bytes received upstream. */
  received: { datagrams: number; bytes: number };
  /** Datagrams and bytes sent downstream (a datagram sent on two interfaces counts twice). */
  forwarded: { datagrams: number; bytes: number };
  /** Datagrams dropped: queue full, or sent by this host. */
  dropped: number;
  own: number;
  /** Upstream joins and leaves so far, and re-joins for stalled receivers. */
  joins: number;
  leaves: number;
  rejoins: number;
  groups: RelayGroupStatus[];
}

interface GroupState {
  /** Downstream interfaces with a listener. */
  downs: Set<string>;
  datagrams: number;
  bytes: number;
  lastDatagramAt: number;
  lastRejoinAt: number;
}

interface Outbox {
  sink: DatagramSink;
  queue: { group: string; payload: Buffer }[];
  busy: boolean;
}

/** Whether a relay carries `group`: transient (flag T) and wider than link scope, as lcsync's ff1e:: groups are. */
export function relayable(group: string): boolean {
  let b: Buffer;
  try {
    b = parseIPv6(group);
  } catch {
    return false;
  }
  return b[0] === 0xff && (b[1]! & 0x10) !== 0 && (b[1]! & 0x0f) > 2;
}

export class Relay {
  private readonly groups = new Map<string, GroupState>();
  private readonly outboxes = new Map<string, Outbox>();
  private readonly startedAt = Date.now();
  private readonly counts = { received: 0, receivedBytes: 0, forwarded: 0, forwardedBytes: 0, dropped: 0, joins: 0, leaves: 0, rejoins: 0 };
  private stopped = false;
  private readonly hopLimit: number;

  private constructor(
    private readonly opts: RelayOptions,
    private readonly watcher: ListenerSource,
    private readonly upstream: GroupSockets,
  ) {
    this.hopLimit = opts.hopLimit ?? 255;
  }

  /** Open the upstream sockets, the downstream senders and the MLD watcher; throws USAGE for bad options. */
  static async start(opts: RelayOptions): Promise<Relay> {
    const downs = [...new Set(opts.downstreams)];
    if (downs.length === 0) throw new LcsyncError('USAGE', 'a relay needs at least one --downstream interface');
    if (downs.includes(opts.upstream)) throw new LcsyncError('USAGE', `${opts.upstream} cannot be upstream and downstream at once (the relay would loop)`);
    const hop = opts.hopLimit ?? 255;
    if (!Number.isInteger(hop) || hop < 1 || hop > 255) throw new LcsyncError('USAGE', `invalid hop limit ${hop} (1..255)`);
    let relay: Relay | undefined;
    const upstream = GroupSockets.open({
      ifname: opts.upstream,
      port: opts.port,
      maxGroups: opts.maxGroups ?? DEFAULT_MAX_GROUPS,
      onDatagram: (group, buf) => relay?.forward(group, buf),
    });
    const openSink = opts.openSink ?? ((ifname: string) => MulticastSender.open({ ifname, port: opts.port, hopLimit: hop }));
    const sinks = new Map<string, DatagramSink>();
    let listeners: ListenerSource | undefined;
    try {
      for (const d of downs) sinks.set(d, await openSink(d));
      listeners =
        opts.listeners ??
        (await MldWatcher.open({ ifnames: downs, querier: opts.querier ?? true, queryIntervalSec: opts.queryIntervalSec, logger: opts.logger }));
    } catch (err) {
      for (const s of sinks.values()) await s.close();
      throw err;
    }
    relay = new Relay({ ...opts, downstreams: downs }, listeners, upstream);
    for (const [d, sink] of sinks) relay.outboxes.set(d, { sink, queue: [], busy: false });
    listeners.on('join', (e: MldEvent) => relay.onJoin(e));
    listeners.on('leave', (e: MldEvent) => relay.onLeave(e));
    // Listeners already known (a ListenerSource handed in may have some).
    for (const g of listeners.activeGroups()) relay.onJoin({ kind: 'join', group: parseIPv6(g.group), ifname: g.ifname, from: '' });
    return relay;
  }

  status(): RelayStatus {
    const c = this.counts;
    return {
      upstream: this.opts.upstream,
      downstreams: [...this.opts.downstreams],
      hopLimit: this.hopLimit,
      uptimeSec: (Date.now() - this.startedAt) / 1000,
      received: { datagrams: c.received, bytes: c.receivedBytes },
      forwarded: { datagrams: c.forwarded, bytes: c.forwardedBytes },
      dropped: c.dropped + this.upstream.stats.own,
      own: this.upstream.stats.own,
      joins: c.joins,
      leaves: c.leaves,
      rejoins: c.rejoins,
      groups: [...this.groups].map(([group, g]) => ({ group, downstreams: [...g.downs], datagrams: g.datagrams, bytes: g.bytes })),
    };
  }

  /** Leave every group upstream, let queued datagrams go, close everything. Safe to call twice. */
  async stop(): Promise<RelayStatus> {
    if (!this.stopped) {
      this.stopped = true;
      await this.watcher.close();
      await this.upstream.close();
      for (const box of this.outboxes.values()) {
        while (box.busy) await new Promise((r) => setTimeout(r, 5));
        await box.sink.close();
      }
    }
    return this.status();
  }

  // -------------------------------------------------------------------------------------------------------

  private log(level: 'info' | 'verbose' | 'warn', msg: string): void {
    this.opts.logger?.[level](`relay: ${msg}`);
  }

  private onJoin(e: MldEvent): void {
    if (this.stopped || !this.outboxes.has(e.ifname)) return;
    const group = formatGroup(e.group);
    if (!relayable(group)) return;
    const now = Date.now();
    let g = this.groups.get(group);
    if (!g) {
      if (this.groups.size >= (this.opts.maxGroups ?? DEFAULT_MAX_GROUPS)) {
        this.log('warn', `${this.groups.size} groups relayed already, ignoring ${group}`);
        return;
      }
      g = { downs: new Set(), datagrams: 0, bytes: 0, lastDatagramAt: now, lastRejoinAt: now };
      this.groups.set(group, g);
      this.counts.joins++;
      this.log('verbose', `${group}: listener on ${e.ifname}, joining on ${this.opts.upstream}`);
      this.upstream.join(group).catch((err: Error) => {
        this.log('warn', `cannot join ${group} on ${this.opts.upstream}: ${err.message}`);
        this.groups.delete(group);
      });
    } else if (e.refresh && now - g.lastDatagramAt >= STALL_MS && now - g.lastRejoinAt >= STALL_MS) {
      // A receiver re-joined a silent group: it waits for something. Ask upstream afresh.
      g.lastRejoinAt = now;
      this.counts.rejoins++;
      this.log('verbose', `${group}: silent for ${now - g.lastDatagramAt} ms and re-joined on ${e.ifname}, re-joining on ${this.opts.upstream}`);
      this.upstream.rejoin(group);
    }
    g.downs.add(e.ifname);
  }

  private onLeave(e: MldEvent): void {
    const group = formatGroup(e.group);
    const g = this.groups.get(group);
    if (!g) return;
    g.downs.delete(e.ifname);
    if (g.downs.size > 0) return;
    this.groups.delete(group);
    this.counts.leaves++;
    this.log('verbose', `${group}: no listener left downstream, leaving on ${this.opts.upstream} (${g.datagrams} datagrams forwarded)`);
    void this.upstream.leave(group);
  }

  private forward(group: string, payload: Buffer): void {
    this.counts.received++;
    this.counts.receivedBytes += payload.length;
    const g = this.groups.get(group);
    if (!g || this.stopped) return;
    g.lastDatagramAt = Date.now();
    for (const d of g.downs) {
      const box = this.outboxes.get(d)!;
      if (box.queue.length >= MAX_QUEUED) {
        this.counts.dropped++;
        continue;
      }
      box.queue.push({ group, payload });
      g.datagrams++;
      g.bytes += payload.length;
      if (!box.busy) {
        box.busy = true;
        // Let the rest of this receive burst arrive first, so it leaves in one batch.
        setImmediate(() => void this.drain(d, box));
      }
    }
  }

  private async drain(ifname: string, box: Outbox): Promise<void> {
    try {
      while (box.queue.length > 0) {
        const batch = box.queue.splice(0, BATCH_MAX);
        await box.sink.sendBatch(batch);
        this.counts.forwarded += batch.length;
        for (const it of batch) this.counts.forwardedBytes += it.payload.length;
      }
    } catch (err) {
      if (!this.stopped) this.log('warn', `send on ${ifname} failed: ${(err as Error).message}`);
      this.counts.dropped += box.queue.length;
      box.queue.length = 0;
    } finally {
      box.busy = false;
    }
  }
}
