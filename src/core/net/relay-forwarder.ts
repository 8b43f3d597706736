/**
 * The relay's data path: datagrams that arrive on the upstream interface for a routed group go out on the
 * group's downstream interfaces, bytes unchanged, to the same group and port, at once. ops/relay.ts decides the
 * routes from MLD; this module moves the bytes, in one of two ways:
 *
 * - native (native/relay_fwd.c): one receive socket with IPV6_RECVPKTINFO (each datagram's group and arrival
 *   interface), recvmmsg in, a route table lookup, sendmmsg out, no JS per datagram;
 * - node:dgram, where the addon is missing or LCSYNC_NO_NATIVE_RELAY=1: a socket per group bound to the group
 *   (net/group-sockets.ts), and the datagrams of one event-loop turn sent in one batch per downstream
 *   interface by a MulticastSender (sendmmsg when the addon's sender is there).
 *
 * Either way nothing is queued without bound: what a downstream send socket (or, on the dgram path, a queue of
 * MAX_QUEUED datagrams) cannot take is dropped and counted; receivers make it up from repair symbols or by
 * re-joining. The sockets sending downstream have multicast loopback off, so nothing the relay sends comes back
 * to it, and only datagrams that arrived on the upstream interface are forwarded.
 */
import dgram from 'node:dgram';
import { loadAddon, type LcsyncAddon, type RelayHandle } from '../base/addon.js';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { LCSYNC_PORT } from '../wire/address.js';
import type { DatagramSink } from './datagram.js';
import { GroupSockets } from './group-sockets.js';
import { validateInterfaces } from './interfaces.js';
import { MulticastSender } from './mcast-sender.js';
import { bindSocket, checkGroup, checkPort, closeSocket } from './udp.js';

/** Datagrams waiting for one downstream interface on the dgram path, at most. */
export const MAX_QUEUED = 8192;
/** Datagrams handed to a sender at once on the dgram path. */
const BATCH_MAX = 64;
/** Downstream interfaces of one relay, at most (the native route mask). */
export const MAX_DOWNSTREAMS = 8;
/** Upstream receive buffer of the native path; the kernel caps it at twice net.core.rmem_max. */
const NATIVE_RECV_BUFFER = 8 << 20;

export interface ForwarderOptions {
  upstream: string;
  downstreams: string[];
  /** Default 4242. */
  port?: number;
  /** 1..255. */
  hopLimit: number;
  /** Routes at once, at most. */
  maxGroups: number;
  /** Dgram path only: where a downstream interface's datagrams go (tests); default a MulticastSender. */
  openSink?: (ifname: string) => Promise<DatagramSink>;
  /**
   * Only join and leave upstream, copy nothing: the kernel forwards (multicast routes, e.g. smcroute's (*,G)),
   * and the relay is the MLD proxy that makes the share upstream send.
   */
  membershipOnly?: boolean;
}

export interface ForwarderStats {
  /** Datagrams and bytes received upstream for routed groups. */
  received: number;
  receivedBytes: number;
  /** Datagrams and bytes sent downstream (once per interface). */
  forwarded: number;
  forwardedBytes: number;
  /** Refused by a full send socket or queue. */
  dropped: number;
  /** Arrived for a group without a route (just left), or from elsewhere than upstream; never forwarded. */
  unrouted: number;
}

export interface GroupCounters {
  datagrams: number;
  bytes: number;
  /** Milliseconds since the group's last datagram (or since its route was set). */
  idleMs: number;
  /** Its datagrams a full downstream socket or queue refused (a datagram refused on two downstreams counts twice). */
  dropped: number;
}

export interface Forwarder {
  /** Whether the C path forwards (else node:dgram). */
  readonly native: boolean;
  /** Forward `group` to `downs` from now on; an empty set removes the route. Throws IO when the table is full. */
  setRoute(group: string, downs: ReadonlySet<string>): void;
  /** Join `group` upstream (system errors reject). */
  join(group: string): Promise<void>;
  /** Leave `group` upstream. */
  leave(group: string): Promise<void>;
  /** Leave and join again upstream: the kernel reports the group afresh. */
  rejoin(group: string): void;
  groupCounters(group: string): GroupCounters | undefined;
  stats(): ForwarderStats;
  close(): Promise<void>;
}

/** Whether the native path can run: the addon has it and LCSYNC_NO_NATIVE_RELAY is not 1. */
export function nativeRelayAvailable(): boolean {
  if (process.env.LCSYNC_NO_NATIVE_RELAY === '1') return false;
  return typeof loadAddon().addon?.relayOpen === 'function';
}

/** Open the native forwarder where it can run, else the node:dgram one. */
export async function openForwarder(opts: ForwarderOptions): Promise<Forwarder> {
  validateInterfaces([opts.upstream, ...opts.downstreams]);
  checkPort(opts.port ?? LCSYNC_PORT);
  if (opts.downstreams.length < 1 || opts.downstreams.length > MAX_DOWNSTREAMS) {
    throw new LcsyncError('USAGE', `a relay takes 1..${MAX_DOWNSTREAMS} downstream interfaces`);
  }
  if (opts.membershipOnly) return MembershipOnly.open(opts);
  if (nativeRelayAvailable() && !opts.openSink) return NativeForwarder.open(opts);
  return DgramForwarder.open(opts);
}

class NativeForwarder implements Forwarder {
  readonly native = true;
  private readonly st = new Float64Array(7);
  private readonly gst = new Float64Array(4);
  /** Groups joined upstream. */
  private readonly joined = new Set<string>();
  private closed = false;

  private constructor(
    private readonly addon: Required<Pick<LcsyncAddon, 'relayRoute' | 'relayJoin' | 'relayLeave' | 'relayStats' | 'relayGroupStats' | 'relayClose'>>,
    private readonly handle: RelayHandle,
    private readonly downs: string[],
  ) {}

  static open(opts: ForwarderOptions): NativeForwarder {
    const addon = loadAddon().addon!;
    const index = (name: string) => {
      const i = addon.ifindex(name);
      if (i === 0) throw new LcsyncError('USAGE', `no network interface ${name}`);
      return i;
    };
    const downs = Uint32Array.from(opts.downstreams.map(index));
    let handle: RelayHandle;
    try {
      handle = addon.relayOpen!(index(opts.upstream), opts.port ?? LCSYNC_PORT, NATIVE_RECV_BUFFER, downs, opts.hopLimit, opts.maxGroups, () => {
        // A failed poll of the receive socket: nothing more will arrive, and nothing in JS can mend it.
      });
    } catch (err) {
      throw fromSystemError(err, `relay sockets on ${opts.upstream}`);
    }
    return new NativeForwarder(addon as NativeForwarder['addon'], handle, [...opts.downstreams]);
  }

  setRoute(group: string, downs: ReadonlySet<string>): void {
    if (this.closed) return;
    let mask = 0;
    this.downs.forEach((d, i) => {
      if (downs.has(d)) mask |= 1 << i;
    });
    try {
      this.addon.relayRoute(this.handle, checkGroup(group), mask);
    } catch (err) {
      throw err instanceof RangeError ? new LcsyncError('IO', `cannot route ${group}: ${err.message}`) : err;
    }
  }

  join(group: string): Promise<void> {
    if (this.closed || this.joined.has(group)) return Promise.resolve();
    try {
      this.addon.relayJoin(this.handle, checkGroup(group));
    } catch (err) {
      return Promise.reject(fromSystemError(err, `join ${group}`));
    }
    this.joined.add(group);
    return Promise.resolve();
  }

  leave(group: string): Promise<void> {
    if (!this.closed && this.joined.delete(group)) {
      try {
        this.addon.relayLeave(this.handle, checkGroup(group));
      } catch {
        // Not joined after all: nothing to leave.
      }
    }
    return Promise.resolve();
  }

  rejoin(group: string): void {
    if (this.closed || !this.joined.has(group)) return;
    const bytes = checkGroup(group);
    try {
      this.addon.relayLeave(this.handle, bytes);
    } catch {
      // Not joined: the join below reports it anyway.
    }
    try {
      this.addon.relayJoin(this.handle, bytes);
    } catch {
      // Out of memberships for a moment: the group's next refresh tries again.
    }
  }

  groupCounters(group: string): GroupCounters | undefined {
    if (this.closed || !this.addon.relayGroupStats(this.handle, checkGroup(group), this.gst)) return undefined;
    return { datagrams: this.gst[0]!, bytes: this.gst[1]!, idleMs: this.gst[2]!, dropped: this.gst[3]! };
  }

  stats(): ForwarderStats {
    if (!this.closed) this.addon.relayStats(this.handle, this.st);
    const s = this.st;
    return { received: s[0]!, receivedBytes: s[1]!, forwarded: s[2]!, forwardedBytes: s[3]!, dropped: s[4]!, unrouted: s[5]! + s[6]! };
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.stats();
      this.closed = true;
      this.addon.relayClose(this.handle);
    }
    return Promise.resolve();
  }
}

interface Outbox {
  sink: DatagramSink;
  queue: { group: string; payload: Buffer }[];
  busy: boolean;
}

interface DgramRoute {
  downs: Set<string>;
  datagrams: number;
  bytes: number;
  lastAt: number;
  dropped: number;
}

class DgramForwarder implements Forwarder {
  readonly native = false;
  private readonly routes = new Map<string, DgramRoute>();
  private readonly outboxes = new Map<string, Outbox>();
  private readonly counts: ForwarderStats = { received: 0, receivedBytes: 0, forwarded: 0, forwardedBytes: 0, dropped: 0, unrouted: 0 };
  private upstream!: GroupSockets;
  private closed = false;

  static async open(opts: ForwarderOptions): Promise<DgramForwarder> {
    const f = new DgramForwarder();
    f.upstream = GroupSockets.open({
      ifname: opts.upstream,
      port: opts.port,
      maxGroups: opts.maxGroups,
      onDatagram: (group, buf) => f.forward(group, buf),
    });
    const openSink = opts.openSink ?? ((ifname: string) => MulticastSender.open({ ifname, port: opts.port, hopLimit: opts.hopLimit }));
    try {
      for (const d of opts.downstreams) f.outboxes.set(d, { sink: await openSink(d), queue: [], busy: false });
    } catch (err) {
      await f.close();
      throw err;
    }
    return f;
  }

  setRoute(group: string, downs: ReadonlySet<string>): void {
    if (this.closed) return;
    if (downs.size === 0) {
      this.routes.delete(group);
      return;
    }
    const r = this.routes.get(group);
    if (r) r.downs = new Set(downs);
    else this.routes.set(group, { downs: new Set(downs), datagrams: 0, bytes: 0, lastAt: Date.now(), dropped: 0 });
  }

  join(group: string): Promise<void> {
    return this.closed ? Promise.resolve() : this.upstream.join(group);
  }

  leave(group: string): Promise<void> {
    return this.upstream.leave(group);
  }

  rejoin(group: string): void {
    this.upstream.rejoin(group);
  }

  groupCounters(group: string): GroupCounters | undefined {
    const r = this.routes.get(group);
    return r && { datagrams: r.datagrams, bytes: r.bytes, idleMs: Date.now() - r.lastAt, dropped: r.dropped };
  }

  stats(): ForwarderStats {
    return { ...this.counts, unrouted: this.counts.unrouted + this.upstream.stats.own };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.upstream?.close();
    for (const box of this.outboxes.values()) {
      while (box.busy) await new Promise((r) => setTimeout(r, 5));
      await box.sink.close();
    }
  }

  private forward(group: string, payload: Buffer): void {
    const r = this.routes.get(group);
    if (!r || this.closed) {
      this.counts.unrouted++;
      return;
    }
    this.counts.received++;
    this.counts.receivedBytes += payload.length;
    r.datagrams++;
    r.bytes += payload.length;
    r.lastAt = Date.now();
    for (const d of r.downs) {
      const box = this.outboxes.get(d);
      if (!box) continue;
      if (box.queue.length >= MAX_QUEUED) {
        this.counts.dropped++;
        r.dropped++;
        continue;
      }
      box.queue.push({ group, payload });
      if (!box.busy) {
        box.busy = true;
        // Let the rest of this receive burst arrive first, so that it leaves in one batch.
        setImmediate(() => void this.drain(box));
      }
    }
  }

  private async drain(box: Outbox): Promise<void> {
    try {
      while (box.queue.length > 0) {
        const batch = box.queue.splice(0, BATCH_MAX);
        await box.sink.sendBatch(batch);
        this.counts.forwarded += batch.length;
        for (const it of batch) this.counts.forwardedBytes += it.payload.length;
      }
    } catch {
      // Closed while sending: what is left is dropped.
      this.counts.dropped += box.queue.length;
      box.queue.length = 0;
    } finally {
      box.busy = false;
    }
  }
}

/**
 * Joins and leaves upstream, nothing else: a socket bound to an ephemeral port, so the kernel hands it none of
 * the datagrams it forwards by its own multicast routes.
 */
class MembershipOnly implements Forwarder {
  readonly native = false;
  private readonly joined = new Set<string>();
  private closed = false;

  private constructor(
    private readonly sock: dgram.Socket,
    private readonly upstream: string,
  ) {}

  static async open(opts: ForwarderOptions): Promise<MembershipOnly> {
    const sock = dgram.createSocket({ type: 'udp6' });
    await bindSocket(sock, 0, 'bind membership socket');
    return new MembershipOnly(sock, opts.upstream);
  }

  setRoute(): void {}

  join(group: string): Promise<void> {
    if (this.closed || this.joined.has(group)) return Promise.resolve();
    try {
      this.sock.addMembership(group, `::%${this.upstream}`);
    } catch (err) {
      return Promise.reject(fromSystemError(err, `join ${group}`));
    }
    this.joined.add(group);
    return Promise.resolve();
  }

  leave(group: string): Promise<void> {
    if (!this.closed && this.joined.delete(group)) {
      try {
        this.sock.dropMembership(group, `::%${this.upstream}`);
      } catch {
        // Gone with the interface.
      }
    }
    return Promise.resolve();
  }

  rejoin(group: string): void {
    if (this.closed || !this.joined.has(group)) return;
    void this.leave(group).then(() => this.join(group)).catch(() => undefined);
  }

  groupCounters(): GroupCounters | undefined {
    return undefined;
  }

  stats(): ForwarderStats {
    return { received: 0, receivedBytes: 0, forwarded: 0, forwardedBytes: 0, dropped: 0, unrouted: 0 };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeSocket(this.sock);
  }
}
