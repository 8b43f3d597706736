/**
 * The relay (`lcsync relay`): carries shares from one link to others, as an application-level MLD proxy
 * (docs/protocol.md#beyond-one-link).
 *
 * - Downstream it watches MLD as a share does (querier included, net/mldsocket.ts). A group with a listener on
 *   some downstream interface is wanted.
 * - Upstream it joins every wanted group, so the kernel reports it there and a share, or the relay one tier up,
 *   starts sending; it leaves when the last downstream listener has left.
 * - Every datagram that arrives upstream goes out at once, bytes unchanged, on each downstream interface that has
 *   a listener for its group, with the relay's own hop limit: objects are content-addressed and datagrams
 *   self-describing, so forwarding them as they are is right for encrypted shares too, and a file is forwarded
 *   while it is still in transit. The bytes move in C where the addon is built (recvmmsg, a route table,
 *   sendmmsg: net/relay-forwarder.ts, native/relay_fwd.c), through node:dgram otherwise.
 * - Upstream the relay is one listener for all the hosts below, while a share grants each new listener a round
 *   of its own. So the relay re-joins upstream (leave and join: a fresh report) when another host joins a group
 *   already under way, and when one of several listeners left and joins again, as a stalled receiver does (the
 *   only listener's leave and join pass through as they are); a C share sends only on such fresh reports. Mere
 *   refreshes (answers to queries) are not passed on: the relay's own kernel answers the upstream querier.
 * - Upstream joins and leaves are made in bursts with quiet gaps between them (net/membership.ts), as a receiver
 *   makes them: Linux sends a state-change report only some jiffies after an interface's LAST membership change,
 *   so a relay that changed memberships report by report as they come kept postponing its own reports; the
 *   share then heard the joins of the tiers below late, streamed each object once for the near tier and again
 *   for the far one, and heard the leaves late.
 *
 * Loops: nothing is ever sent upstream; only datagrams that arrived on the upstream interface are forwarded, and
 * the sockets that send have multicast loopback off. Chains: a relay one tier down is a listener like any other, so each link
 * carries each datagram once, whatever the number of listeners and tiers. Memory: at most maxGroups groups, and
 * no unbounded queue (net/relay-forwarder.ts: what a downstream socket cannot take is dropped and counted, as a
 * full socket buffer would; receivers recover it from the repair symbols or by re-joining).
 */
import { LcsyncError } from '../base/errors.js';
import { formatIPv6 as formatGroup, parseIPv6 } from '../wire/address.js';
import { DEFAULT_MAX_GROUPS } from '../net/group-sockets.js';
import type { DatagramSink } from '../net/datagram.js';
import { MldWatcher, type MldEvent } from '../net/mldsocket.js';
import type { ListenerSource } from '../net/push.js';
import { BATCH_MS, MembershipBatch, type MembershipChange } from '../net/membership.js';
import { openForwarder, type Forwarder } from '../net/relay-forwarder.js';

/**
 * A report within this long of a 'part' (one of several listeners left) is that listener re-joining, as a
 * receiver does when its group went silent: the relay re-joins upstream then, at most this often per group.
 */
const REJOIN_WINDOW_MS = 1000;
/** Fresh reports upstream for one group, at most one per this long. */
const NEW_LISTENER_MS = 100;
/** A new downstream listener is announced upstream only once this many datagrams of its group went past. */
const NEW_LISTENER_MIN_DATAGRAMS = 8;

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
  /** Where a downstream interface's datagrams go (forces the node:dgram path); default a MulticastSender. */
  openSink?: (ifname: string) => Promise<DatagramSink>;
  /** Be the MLD proxy only: join and leave upstream, copy nothing (the kernel forwards by its multicast routes). */
  kernelForwarding?: boolean;
}

export interface RelayGroupStatus {
  group: string;
  downstreams: string[];
  /** Hosts listening downstream now, on all its downstream interfaces (by MLD report). */
  listeners: number;
  /** Datagrams and bytes of the group received upstream and sent on to each of its downstreams. */
  datagrams: number;
  bytes: number;
  /** Milliseconds since its last datagram (or since it was first routed). */
  idleMs: number;
  /** Its datagrams a full downstream socket or queue refused. */
  dropped: number;
}

export interface RelayStatus {
  upstream: string;
  downstreams: string[];
  hopLimit: number;
  /** Whether the bytes move in C (native/relay_fwd.c) or through node:dgram (false too when the kernel forwards). */
  native: boolean;
  /** Whether the relay only joins upstream and the kernel forwards. */
  kernelForwarding: boolean;
  uptimeSec: number;
  /** Datagrams and bytes received upstream for relayed groups. */
  received: { datagrams: number; bytes: number };
  /** Datagrams and bytes sent downstream (a datagram sent on two interfaces counts twice). */
  forwarded: { datagrams: number; bytes: number };
  /** Datagrams a full downstream socket or queue refused. */
  dropped: number;
  /** Datagrams not forwarded: for a group just left, or not from upstream. */
  unrouted: number;
  /** Upstream joins and leaves so far, and re-joins for stalled receivers. */
  joins: number;
  leaves: number;
  rejoins: number;
  groups: RelayGroupStatus[];
}

interface GroupState {
  /** Downstream interfaces with a listener. */
  downs: Set<string>;
  /** The hosts listening downstream ('ifname|address'): a new one asks the sender for a round of its own. */
  hosts: Set<string>;
  /** When a listener of several last left (a 'part'), which host it was, and when the relay last re-joined upstream. */
  partAt: number;
  partFrom: string;
  lastRejoinAt: number;
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
  /** When it started (ms since the epoch). */
  readonly startedAt = Date.now();
  private readonly counts = { joins: 0, leaves: 0, rejoins: 0 };
  private stopped = false;
  /** The status at stop, once the forwarder's counters are gone. */
  private final: RelayStatus | undefined;
  private readonly hopLimit: number;
  private readonly maxGroups: number;
  private readonly membership = new MembershipBatch(BATCH_MS);
  private burstTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly opts: RelayOptions,
    private readonly watcher: ListenerSource,
    private readonly forwarder: Forwarder,
  ) {
    this.hopLimit = opts.hopLimit ?? 255;
    this.maxGroups = opts.maxGroups ?? DEFAULT_MAX_GROUPS;
  }

  /** Open the forwarder (upstream and downstream sockets) and the MLD watcher; throws USAGE for bad options. */
  static async start(opts: RelayOptions): Promise<Relay> {
    const downs = [...new Set(opts.downstreams)];
    if (downs.length === 0) throw new LcsyncError('USAGE', 'a relay needs at least one --downstream interface');
    if (downs.includes(opts.upstream)) throw new LcsyncError('USAGE', `${opts.upstream} cannot be upstream and downstream at once (the relay would loop)`);
    const hop = opts.hopLimit ?? 255;
    if (!Number.isInteger(hop) || hop < 1 || hop > 255) throw new LcsyncError('USAGE', `invalid hop limit ${hop} (1..255)`);
    const maxGroups = opts.maxGroups ?? DEFAULT_MAX_GROUPS;
    const forwarder = await openForwarder({ upstream: opts.upstream, downstreams: downs, port: opts.port, hopLimit: hop, maxGroups, openSink: opts.openSink, membershipOnly: opts.kernelForwarding });
    let listeners: ListenerSource;
    try {
      listeners =
        opts.listeners ??
        (await MldWatcher.open({ ifnames: downs, querier: opts.querier ?? true, queryIntervalSec: opts.queryIntervalSec, logger: opts.logger }));
    } catch (err) {
      await forwarder.close();
      // The watcher's own message is written for the share (it suggests --push, which a relay has not).
      if (err instanceof LcsyncError && err.code === 'PERMISSION') {
        throw new LcsyncError('PERMISSION', 'lcsync relay needs CAP_NET_RAW and the lcsync addon to watch MLD downstream: run it as root, or under systemd with AmbientCapabilities=CAP_NET_RAW', { cause: err });
      }
      throw err;
    }
    const relay = new Relay({ ...opts, downstreams: downs }, listeners, forwarder);
    relay.log('verbose', opts.kernelForwarding ? 'joining upstream only: the kernel forwards' : `forwarding ${forwarder.native ? 'in C (recvmmsg/sendmmsg)' : 'through node:dgram'}`);
    listeners.on('join', (e: MldEvent) => relay.onJoin(e));
    listeners.on('leave', (e: MldEvent) => relay.onLeave(e));
    listeners.on('part', (e: MldEvent) => relay.onPart(e));
    // Listeners already known (a ListenerSource handed in may have some).
    for (const g of listeners.activeGroups()) relay.onJoin({ kind: 'join', group: parseIPv6(g.group), ifname: g.ifname, from: '' });
    return relay;
  }

  status(): RelayStatus {
    const f = this.forwarder.stats();
    return {
      upstream: this.opts.upstream,
      downstreams: [...this.opts.downstreams],
      hopLimit: this.hopLimit,
      native: this.forwarder.native,
      kernelForwarding: this.opts.kernelForwarding === true,
      uptimeSec: (Date.now() - this.startedAt) / 1000,
      received: { datagrams: f.received, bytes: f.receivedBytes },
      forwarded: { datagrams: f.forwarded, bytes: f.forwardedBytes },
      dropped: f.dropped,
      unrouted: f.unrouted,
      joins: this.counts.joins,
      leaves: this.counts.leaves,
      rejoins: this.counts.rejoins,
      groups: [...this.groups].map(([group, g]) => {
        const c = this.forwarder.groupCounters(group);
        return { group, downstreams: [...g.downs], listeners: g.hosts.size, datagrams: c?.datagrams ?? 0, bytes: c?.bytes ?? 0, idleMs: c?.idleMs ?? 0, dropped: c?.dropped ?? 0 };
      }),
    };
  }

  /** Stop watching, leave every group upstream, close the sockets. Safe to call twice. */
  async stop(): Promise<RelayStatus> {
    if (!this.stopped) {
      this.stopped = true;
      clearTimeout(this.burstTimer);
      await this.watcher.close();
      const st = this.status();
      await this.forwarder.close();
      this.final = st;
    }
    return this.final!;
  }

  // -------------------------------------------------------------------------------------------------------

  private log(level: 'info' | 'verbose' | 'warn', msg: string): void {
    this.opts.logger?.[level](`relay: ${msg}`);
  }

  private onJoin(e: MldEvent): void {
    if (this.stopped || !this.opts.downstreams.includes(e.ifname)) return;
    const group = formatGroup(e.group);
    if (!relayable(group)) return;
    const now = Date.now();
    let g = this.groups.get(group);
    if (!g) {
      if (this.groups.size >= this.maxGroups) {
        this.log('warn', `${this.groups.size} groups relayed already, ignoring ${group}`);
        return;
      }
      g = { downs: new Set([e.ifname]), hosts: new Set([`${e.ifname}|${e.from}`]), partAt: -Infinity, partFrom: '', lastRejoinAt: -Infinity };
      this.groups.set(group, g);
      this.counts.joins++;
      this.log('verbose', `${group}: listener on ${e.ifname}, joining on ${this.opts.upstream}`);
      this.route(group, g);
      return;
    }
    if (!g.downs.has(e.ifname)) {
      g.downs.add(e.ifname);
      this.route(group, g);
    }
    const host = `${e.ifname}|${e.from}`;
    // A listener that comes while the stream has hardly begun gets its round anyway: no need to ask.
    const newHost = !g.hosts.has(host) && (this.forwarder.groupCounters(group)?.datagrams ?? 0) >= NEW_LISTENER_MIN_DATAGRAMS;
    const back = e.from === g.partFrom && now - g.partAt <= REJOIN_WINDOW_MS;
    g.hosts.add(host);
    if ((newHost || back) && now - g.lastRejoinAt >= NEW_LISTENER_MS) {
      // Upstream the relay is one listener for all of them: a sender grants each new listener (and each that
      // left and joined again, as a stalled receiver does) a round of its own, so tell it with a fresh report.
      g.partAt = -Infinity;
      g.lastRejoinAt = now;
      this.counts.rejoins++;
      this.log('verbose', `${group}: ${newHost ? 'another listener' : 'a listener re-joined'} on ${e.ifname}, re-joining on ${this.opts.upstream}`);
      this.rejoin(group);
    }
  }

  private onPart(e: MldEvent): void {
    const g = this.groups.get(formatGroup(e.group));
    if (!g || !g.downs.has(e.ifname)) return;
    g.partAt = Date.now();
    g.partFrom = e.from;
    g.hosts.delete(`${e.ifname}|${e.from}`);
  }

  private onLeave(e: MldEvent): void {
    const group = formatGroup(e.group);
    const g = this.groups.get(group);
    if (!g || !g.downs.delete(e.ifname)) return;
    for (const h of g.hosts) if (h.startsWith(`${e.ifname}|`)) g.hosts.delete(h);
    if (g.downs.size > 0) {
      this.route(group, g);
      return;
    }
    const c = this.forwarder.groupCounters(group);
    this.groups.delete(group);
    this.counts.leaves++;
    this.log('verbose', `${group}: no listener left downstream, leaving on ${this.opts.upstream} (${c?.datagrams ?? 0} datagrams forwarded)`);
    this.route(group, g);
  }

  /** Forward to the group's downstreams from now on, and join or leave upstream with the next burst. */
  private route(group: string, g: GroupState): void {
    try {
      this.forwarder.setRoute(group, g.downs);
    } catch (err) {
      this.log('warn', `cannot relay ${group}: ${(err as Error).message}`);
      if (this.groups.get(group) === g) this.groups.delete(group);
      return;
    }
    if (g.downs.size > 0) this.membership.join(group);
    else this.membership.leave(group);
    this.changed();
  }

  private rejoin(group: string): void {
    this.membership.rejoin(group);
    this.changed();
  }

  /** Make the waiting membership changes now if the last burst was long enough ago, else with the next one. */
  private changed(): void {
    if (this.burstTimer || !this.membership.pending || this.stopped) return;
    const now = Date.now();
    const due = this.membership.dueAt();
    if (now >= due) this.burst(now);
    else this.armBurst(due - now);
  }

  private armBurst(delayMs: number): void {
    this.burstTimer = setTimeout(() => {
      this.burstTimer = undefined;
      if (!this.stopped) this.burst(Date.now());
    }, delayMs);
  }

  private burst(now: number): void {
    for (const c of this.membership.burst(now)) void this.apply(c);
    if (this.membership.pending) this.armBurst(BATCH_MS);
  }

  private async apply(c: MembershipChange): Promise<void> {
    try {
      if (c.op === 'leave') await this.forwarder.leave(c.group);
      else if (c.op === 'rejoin') this.forwarder.rejoin(c.group);
      else await this.forwarder.join(c.group);
      this.membership.done(c);
    } catch (err) {
      const code = (err as { cause?: NodeJS.ErrnoException }).cause?.code ?? (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOBUFS' || code === 'ENOMEM') && this.membership.inKernel.size > 0) {
        this.membership.retry(c.group);
        this.changed();
        return;
      }
      this.membership.refused(c.group);
      this.log('warn', `cannot join ${c.group} on ${this.opts.upstream}: ${(err as Error).message}`);
      const g = this.groups.get(c.group);
      if (g) {
        this.groups.delete(c.group);
        this.forwarder.setRoute(c.group, new Set());
      }
    }
  }
}
