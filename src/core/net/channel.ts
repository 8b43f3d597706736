/**
 * Multicast I/O over node:dgram: a receiver that joins groups on chosen interfaces and a
 * paced sender. This module knows sockets and interfaces, nothing about packets.
 *
 * Facts it is built on:
 * - dgram wants an interface as '::%ifname'; a bare name is EINVAL, and an unknown name is
 *   silently accepted (scope id 0, the kernel picks a route), so names are checked first.
 * - setMulticastTTL sets the IPv6 hop limit (0..255).
 * - A veth gives no back-pressure, so the sender paces itself and bounds its sends in flight.
 * - dgram costs a DNS-lookup tick, a SendWrap and a callback per datagram, so the sender sends
 *   batches with sendmmsg(2) through a small addon (batchsock.ts) when it is built.
 * - dgram's receive side costs a 64 KiB buffer, an ArrayBuffer, a Buffer and a JS callback per
 *   datagram, so the receiver takes them in batches with recvmmsg(2) through the same addon when
 *   it is built (LCSYNC_NO_RECVMMSG=1 forces dgram); listeners see the same Buffers either way.
 * - Linux delivers a group's datagrams to every socket bound to the port on a host where any
 *   socket joined it (IPV6_MULTICAST_ALL defaults to on and dgram cannot clear it), so
 *   callers demultiplex by content (the OID), never by socket.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { LCSYNC_PORT, parseIPv6 } from '../wire/address.js';
import { BatchReceiver, BatchSocket, MAX_BATCH_PAYLOAD, batchRecvAvailable, batchSendAvailable } from './batchsock.js';
import type { Pacer } from './pacer.js';
import type { DatagramSink } from './datagram.js';

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_MULTICAST = 0x1000;
/** What the receiver asks for; the kernel caps it at rmem_max (and doubles it). */
const DEFAULT_RECV_BUFFER = 8 << 20;
const DEFAULT_MAX_IN_FLIGHT = 64;
const DEFAULT_HOP_LIMIT = 255;
/** IPv6 (40) + UDP (8) header bytes: the pacer charges for what goes on the wire. */
const HEADER_BYTES = 48;
/** Parsed groups remembered by a sender: parsing every datagram's group would cost more than the send. */
const GROUP_CACHE_MAX = 4096;
/**
 * A batch the kernel will not take (socket buffer full) is retried every millisecond, at most
 * this many times in a row without progress (about 2 s); what is left then counts as errors.
 */
const BATCH_RETRY_MS = 1;
const BATCH_MAX_STALLS = 2000;

function isIPv6(family: string | number): boolean {
  // Node 18.0-18.3 reported the family as a number.
  return family === 'IPv6' || family === 6;
}

/** Interface flags from sysfs, or undefined when they cannot be read. */
function sysFlags(ifname: string): number | undefined {
  if (!/^[^/\0]+$/.test(ifname) || ifname === '.' || ifname === '..') return undefined;
  try {
    const text = readFileSync(`/sys/class/net/${ifname}/flags`, 'utf8').trim();
    const v = Number.parseInt(text, 16);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The interfaces a share or sync uses when none are named: those with an IPv6 address that
 * are not loopback and, where sysfs tells, are up and multicast-capable. Sorted by name.
 */
export function multicastInterfaces(): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (!addrs || !addrs.some((a) => isIPv6(a.family))) continue;
    if (addrs.some((a) => a.internal)) continue;
    const flags = sysFlags(name);
    if (flags !== undefined) {
      if (flags & IFF_LOOPBACK) continue;
      if ((flags & (IFF_UP | IFF_MULTICAST)) !== (IFF_UP | IFF_MULTICAST)) continue;
    }
    out.push(name);
  }
  return out.sort();
}

/** Throw a USAGE error naming the first interface this host does not have. */
export function validateInterfaces(names: string[]): void {
  if (names.length === 0) throw new LcsyncError('USAGE', 'no network interface to use (name one with --interface)');
  const known = Object.keys(os.networkInterfaces()).sort();
  for (const name of names) {
    if (!known.includes(name)) {
      const list = known.length > 0 ? known.join(', ') : 'none';
      throw new LcsyncError('USAGE', `unknown interface "${name}" (available: ${list})`);
    }
  }
}

/** Bits of the flags column of /proc/net/ipv6_route. */
const RTF_UP = 0x0001;
const RTF_REJECT = 0x0200;
/**
 * Where lcsync sends: every object and signature group is in ff1e::/16. (MLD reports need no route:
 * the kernel sends them straight on the device.)
 */
const NEEDED_GROUPS = ['ff1e::'];

/** The command that gives `lo` what it lacks (see loopbackRoutesMulticast). */
export const LOOPBACK_ROUTE_COMMAND = 'ip -6 route add local ff00::/8 dev lo';

/**
 * Whether the IPv6 routing table (the text of /proc/net/ipv6_route, every table) lets multicast
 * travel on the loopback interface `ifname`. Linux gives lo no ff00::/8 route (other interfaces get
 * one in table local), so every send there fails with ENETUNREACH, while MLD reports, which the
 * kernel sends on the device without a route, still reach the share: it would see its listeners and
 * "send" to them in vain. Linux also turns every route via lo into a reject route unless the route
 * is of type local, so `ip -6 route add multicast ff00::/8 dev lo` silently drops what it carries. A
 * `local` route for ff00::/8 on lo works: datagrams loop back through lo to the sockets that joined
 * the group there, and the share sees its local listeners by MLD as on any link.
 * Pure: true when non-reject routes on `ifname` cover the object groups (ff1e::/16).
 */
export function loopbackRoutesMulticast(ipv6Route: string, ifname: string): boolean {
  const routes: { prefix: Buffer; len: number }[] = [];
  for (const line of ipv6Route.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] !== ifname || !/^[0-9a-f]{32}$/i.test(f[0]!)) continue;
    const flags = Number.parseInt(f[8]!, 16);
    const len = Number.parseInt(f[1]!, 16);
    if (!Number.isFinite(flags) || !(flags & RTF_UP) || flags & RTF_REJECT || !(len >= 0 && len <= 128)) continue;
    routes.push({ prefix: Buffer.from(f[0]!, 'hex'), len });
  }
  return NEEDED_GROUPS.every((g) => {
    const addr = parseIPv6(g);
    return routes.some((r) => prefixCovers(r.prefix, r.len, addr));
  });
}

function prefixCovers(prefix: Buffer, len: number, addr: Buffer): boolean {
  for (let bit = 0; bit < len; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((prefix[bit >> 3]! & mask) !== (addr[bit >> 3]! & mask)) return false;
  }
  return true;
}

/**
 * Why `ifname` cannot carry lcsync's multicast, as a one-line message, or undefined when it can
 * (or is no loopback interface: other links get their multicast route from the kernel).
 */
export function loopbackMulticastProblem(ifname: string): string | undefined {
  const flags = sysFlags(ifname);
  const loopback = flags !== undefined ? (flags & IFF_LOOPBACK) !== 0 : (os.networkInterfaces()[ifname] ?? []).some((a) => a.internal);
  if (!loopback) return undefined;
  let routes: string;
  try {
    routes = readFileSync('/proc/net/ipv6_route', 'utf8');
  } catch {
    // No routing table to read (IPv6 off, or not Linux): the join or send will say what is wrong.
    return undefined;
  }
  if (loopbackRoutesMulticast(routes, ifname)) return undefined;
  return `${ifname} carries no IPv6 multicast until it has a route for it: run "${LOOPBACK_ROUTE_COMMAND.replace(/ lo$/, ` ${ifname}`)}" once as root, or share and sync over a veth pair (see "Try it on one machine" in the README)`;
}

/** Check that `group` is an IPv6 multicast address (no zone); return its 16 bytes. */
function checkGroup(group: string): Buffer {
  let bytes: Buffer;
  try {
    if (group.includes('%')) throw new Error('zone');
    bytes = parseIPv6(group);
  } catch {
    throw new LcsyncError('USAGE', `not an IPv6 multicast group: ${group}`);
  }
  if (bytes[0] !== 0xff) throw new LcsyncError('USAGE', `not an IPv6 multicast group: ${group}`);
  return bytes;
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LcsyncError('USAGE', `invalid UDP port ${port}`);
  return port;
}

/** Bind `sock` and wait until it listens or fails. */
function bindSocket(sock: dgram.Socket, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      sock.off('listening', onListening);
      try {
        sock.close();
      } catch {
        // Not running: nothing to close.
      }
      reject(fromSystemError(err, what));
    };
    const onListening = () => {
      sock.off('error', onError);
      resolve();
    };
    sock.once('error', onError);
    sock.once('listening', onListening);
    sock.bind(port, '::');
  });
}

function closeSocket(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve(); // Already closed.
    }
  });
}

export interface ReceiverOptions {
  ifnames: string[];
  /** Default 4242. */
  port?: number;
  /** Default 8 MiB; the kernel caps it at twice net.core.rmem_max. */
  recvBufferBytes?: number;
}

/** What MulticastReceiver needs of a socket: a node:dgram one or the addon's batch receiver. */
interface RecvSocket {
  readonly batching: boolean;
  recvBufferBytes(): number;
  /** Throw the system error (an Error with `code`) when the kernel refuses. */
  join(group: string, bytes: Buffer, ifname: string): void;
  leave(group: string, bytes: Buffer, ifname: string): void;
  close(): Promise<void>;
}

/** Where a socket hands what it receives: one datagram, or a count of lost ones. */
interface RecvSink {
  deliver(buf: Buffer): void;
  lost(n: number): void;
  /** Whether datagrams still in hand (the rest of a batch) should be dropped. */
  readonly closed: boolean;
}

/** Bind [::]:port with node:dgram: one 'message' event per datagram. */
async function openDgramSocket(port: number, recvBufferSize: number, sink: RecvSink): Promise<RecvSocket> {
  const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, recvBufferSize });
  sock.on('message', (buf: Buffer) => sink.deliver(buf));
  // A receiving socket reports no per-datagram errors; count anything else rather than crash.
  sock.on('error', () => sink.lost(1));
  await bindSocket(sock, port, `bind [::]:${port}`);
  return {
    batching: false,
    recvBufferBytes: () => sock.getRecvBufferSize(),
    join: (group, _bytes, ifname) => sock.addMembership(group, `::%${ifname}`),
    leave: (group, _bytes, ifname) => sock.dropMembership(group, `::%${ifname}`),
    close: () => closeSocket(sock),
  };
}

/** Bind [::]:port with the recvmmsg addon: up to 64 datagrams per callback, each a view into one fresh Buffer. */
function openBatchSocket(port: number, recvBufferBytes: number, sink: RecvSink): RecvSocket {
  let rx: BatchReceiver;
  try {
    rx = BatchReceiver.open({
      port,
      recvBufferBytes,
      onBatch: (buf, lengths, count, errors) => {
        if (errors > 0) sink.lost(errors);
        let off = 0;
        // In arrival order, synchronously; a listener that closes the receiver ends the batch,
        // as closing a dgram socket ends its 'message' events.
        for (let i = 0; i < count && !sink.closed; i++) {
          const len = lengths[i]!;
          sink.deliver(buf.subarray(off, off + len));
          off += len;
        }
      },
    });
  } catch (err) {
    throw fromSystemError(err, `bind [::]:${port}`);
  }
  // Resolved per call, as dgram resolves '::%name' per call: an interface may come and go.
  const index = (ifname: string): number => {
    const i = BatchReceiver.ifindex(ifname);
    if (i === 0) throw Object.assign(new Error(`no interface ${ifname}`), { code: 'ENODEV' });
    return i;
  };
  return {
    batching: true,
    recvBufferBytes: () => rx.recvBufferBytes,
    join: (_group, bytes, ifname) => rx.join(bytes, index(ifname)),
    leave: (_group, bytes, ifname) => rx.leave(bytes, index(ifname)),
    close: () => {
      rx.close();
      return Promise.resolve();
    },
  };
}

export class MulticastReceiver {
  readonly ifnames: readonly string[];
  readonly port: number;
  readonly stats = { datagrams: 0, bytes: 0, errors: 0 };
  /** Joined groups and their 16 bytes. */
  private readonly groups = new Map<string, Buffer>();
  private readonly groupNames = new Set<string>();
  private readonly listeners: ((buf: Buffer) => void)[] = [];
  private closed = false;
  /** Set by open() right after construction: the socket needs the sink this object is. */
  private sock!: RecvSocket;

  private constructor(ifnames: string[], port: number) {
    this.ifnames = [...ifnames];
    this.port = port;
  }

  /**
   * Bind [::]:port with SO_REUSEADDR, so several receivers on one host can share the port.
   * Receives with recvmmsg through the addon when batchRecvAvailable(), else with node:dgram.
   */
  static async open(opts: ReceiverOptions): Promise<MulticastReceiver> {
    validateInterfaces(opts.ifnames);
    const port = checkPort(opts.port ?? LCSYNC_PORT);
    const recvBufferSize = opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER;
    if (!Number.isInteger(recvBufferSize) || recvBufferSize <= 0 || recvBufferSize > 0x7fffffff) {
      throw new LcsyncError('USAGE', `invalid receive buffer size ${recvBufferSize}`);
    }
    const rx = new MulticastReceiver(opts.ifnames, port);
    // The one path for stats and listeners, whichever socket receives.
    const sink: RecvSink = {
      deliver: (buf) => {
        rx.stats.datagrams++;
        rx.stats.bytes += buf.length;
        for (const cb of rx.listeners) cb(buf);
      },
      lost: (n) => {
        rx.stats.errors += n;
      },
      get closed() {
        return rx.closed;
      },
    };
    rx.sock = batchRecvAvailable() ? openBatchSocket(port, recvBufferSize, sink) : await openDgramSocket(port, recvBufferSize, sink);
    return rx;
  }

  /** Whether datagrams arrive in recvmmsg batches through the addon (else through node:dgram). */
  get batching(): boolean {
    return this.sock.batching;
  }

  get joined(): ReadonlySet<string> {
    return this.groupNames;
  }

  /** Kernel receive buffer actually granted. */
  get recvBufferBytes(): number {
    return this.sock.recvBufferBytes();
  }

  /** Join `group` on every interface; a second join of the same group does nothing. */
  join(group: string): void {
    this.ensureOpen();
    const bytes = checkGroup(group);
    if (this.groups.has(group)) return;
    const done: string[] = [];
    try {
      for (const ifname of this.ifnames) {
        this.sock.join(group, bytes, ifname);
        done.push(ifname);
      }
    } catch (err) {
      // All or nothing: a group joined on some interfaces only would confuse leave().
      for (const ifname of done) this.drop(group, bytes, ifname);
      throw fromSystemError(err, `join ${group}`);
    }
    this.groups.set(group, bytes);
    this.groupNames.add(group);
  }

  /** Leave `group` on every interface; leaving a group not joined does nothing. */
  leave(group: string): void {
    this.ensureOpen();
    const bytes = this.groups.get(group);
    if (bytes === undefined) return;
    this.groups.delete(group);
    this.groupNames.delete(group);
    for (const ifname of this.ifnames) this.drop(group, bytes, ifname);
  }

  /**
   * Leave and join again: the kernel sends a fresh leave and join report, which is how a
   * stalled transfer asks a C sender (which sends only on a new report) to send again.
   */
  rejoin(group: string): void {
    this.leave(group);
    this.join(group);
  }

  /**
   * Call `cb` with every datagram, in arrival order. With the addon `buf` is a view into a
   * batch's Buffer (fresh per batch, so it may be kept); an exception `cb` throws is uncaught
   * either way, and with the addon the rest of that batch is not delivered.
   */
  onDatagram(cb: (buf: Buffer) => void): void {
    this.listeners.push(cb);
  }

  /** Leave every group and close the socket. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const g of [...this.groups.keys()]) this.leave(g);
    this.closed = true;
    await this.sock.close();
  }

  private drop(group: string, bytes: Buffer, ifname: string): void {
    try {
      this.sock.leave(group, bytes, ifname);
    } catch {
      // The interface may have gone away; the kernel dropped the membership with it.
    }
  }

  private ensureOpen(): void {
    if (this.closed) throw new LcsyncError('INTERNAL', 'multicast receiver is closed');
  }
}

export interface SenderOptions {
  ifname: string;
  /** Deliver to receivers on this host too (IPV6_MULTICAST_LOOP). Default false. */
  loopback?: boolean;
  /** Destination port; default 4242. */
  port?: number;
  /** Shared rate limit; none means unpaced. Each datagram is charged its size plus 48 header bytes. */
  pacer?: Pacer;
  /** Sends handed to libuv but not yet completed (node:dgram sends only); default 64. */
  maxInFlight?: number;
  /** IPv6 hop limit, 1..255; default 255 like the C tool. */
  hopLimit?: number;
}

export class MulticastSender implements DatagramSink {
  readonly ifname: string;
  readonly port: number;
  readonly stats = { datagrams: 0, bytes: 0, errors: 0 };
  private readonly pacer: Pacer | undefined;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private readonly slotWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private drained: (() => void) | undefined;
  private readonly groupBytes = new Map<string, Buffer>();
  private closed = false;

  private constructor(
    private readonly sock: dgram.Socket,
    /** sendBatch's socket when the sendmmsg addon is there; node:dgram otherwise. */
    private batch: BatchSocket | undefined,
    opts: SenderOptions,
    port: number,
    maxInFlight: number,
  ) {
    this.ifname = opts.ifname;
    this.port = port;
    this.pacer = opts.pacer;
    this.maxInFlight = maxInFlight;
    sock.on('error', () => {
      this.stats.errors++;
    });
  }

  static async open(opts: SenderOptions): Promise<MulticastSender> {
    validateInterfaces([opts.ifname]);
    const port = checkPort(opts.port ?? LCSYNC_PORT);
    const hopLimit = opts.hopLimit ?? DEFAULT_HOP_LIMIT;
    if (!Number.isInteger(hopLimit) || hopLimit < 1 || hopLimit > 255) {
      throw new LcsyncError('USAGE', `invalid hop limit ${hopLimit} (1..255)`);
    }
    const maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
      throw new LcsyncError('USAGE', `invalid number of sends in flight ${maxInFlight}`);
    }
    // The default send buffer is kept on purpose: a real NIC's qdisc can then push back.
    const sock = dgram.createSocket({ type: 'udp6' });
    await bindSocket(sock, 0, 'bind sender socket');
    try {
      sock.setMulticastInterface(`::%${opts.ifname}`);
      sock.setMulticastLoopback(opts.loopback === true);
      sock.setMulticastTTL(hopLimit);
    } catch (err) {
      await closeSocket(sock);
      throw fromSystemError(err, `multicast on ${opts.ifname}`);
    }
    let batch: BatchSocket | undefined;
    if (batchSendAvailable()) {
      try {
        batch = BatchSocket.open({ ifname: opts.ifname, hopLimit, loopback: opts.loopback === true });
      } catch {
        // The dgram socket above works on this interface, so sendBatch still can: through it.
        batch = undefined;
      }
    }
    return new MulticastSender(sock, batch, opts, port, maxInFlight);
  }

  /** Whether sendBatch hands batches to the kernel with sendmmsg (else it uses node:dgram). */
  get batching(): boolean {
    return this.batch !== undefined;
  }

  /** The group's 16 bytes; throws USAGE unless it is an IPv6 multicast address. */
  private groupAddress(group: string): Buffer {
    let bytes = this.groupBytes.get(group);
    if (bytes === undefined) {
      bytes = checkGroup(group);
      if (this.groupBytes.size >= GROUP_CACHE_MAX) this.groupBytes.clear();
      this.groupBytes.set(group, bytes);
    }
    return bytes;
  }

  /**
   * Send one datagram to `group` (always through node:dgram). Resolves once the kernel has taken
   * it (or refused it: errors such as ENOBUFS are counted in stats.errors, not thrown); waits for
   * the pacer and for a free in-flight slot first. Rejects only when the sender is closed.
   */
  async send(group: string, payload: Buffer): Promise<void> {
    this.ensureOpen();
    this.groupAddress(group);
    const wait = this.pacer?.take(payload.length + HEADER_BYTES);
    if (wait) {
      await wait;
      this.ensureOpen();
    }
    const slot = this.acquireSlot();
    if (slot) await slot;
    await this.dgramSend(group, payload);
  }

  /**
   * Send a batch of datagrams, in order. The pacer is charged once for all of them (each its
   * payload plus 48 header bytes). With the addon, the kernel gets them in sendmmsg calls; when
   * its buffer is full the rest is retried every millisecond, and after about 2 s without
   * progress counted as errors. Without it, they go through node:dgram within the in-flight
   * bound. Either way a datagram the kernel refuses counts in stats.errors and the others still
   * go. Resolves when all were handed over; rejects when the sender is or gets closed (USAGE for
   * a group that is not multicast, RangeError for a payload of 0 or more than 65507 bytes, both
   * before anything is sent).
   */
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    this.ensureOpen();
    const n = items.length;
    if (n === 0) return;
    const addrs = this.batch ? Buffer.allocUnsafe(16 * n) : undefined;
    let wire = 0;
    for (let i = 0; i < n; i++) {
      const { group, payload } = items[i]!;
      const bytes = this.groupAddress(group);
      if (payload.length < 1 || payload.length > MAX_BATCH_PAYLOAD) {
        throw new RangeError(`datagram ${i} has ${payload.length} bytes (1..${MAX_BATCH_PAYLOAD})`);
      }
      if (addrs) bytes.copy(addrs, 16 * i);
      wire += payload.length + HEADER_BYTES;
    }
    const wait = this.pacer?.take(wire);
    if (wait) {
      await wait;
      this.ensureOpen();
    }
    // Still open (checked above), so the batch socket is there whenever addrs is.
    if (addrs && this.batch) await this.sendNative(addrs, items.map((it) => it.payload));
    else await this.sendEach(items);
  }

  private async sendNative(addrs: Buffer, payloads: Buffer[]): Promise<void> {
    const n = payloads.length;
    let off = 0;
    let stalls = 0;
    while (off < n) {
      let sent: number;
      try {
        sent = this.batch!.send(this.port, off === 0 ? addrs : addrs.subarray(16 * off), off === 0 ? payloads : payloads.slice(off));
      } catch (err) {
        // A system error for the datagram at `off` (those before it went): count it, as dgram's
        // callback would, and go on with the next. Anything else is a bug: let it out.
        if (typeof (err as NodeJS.ErrnoException).errno !== 'number') throw err;
        this.stats.errors++;
        off++;
        stalls = 0;
        continue;
      }
      for (let i = off; i < off + sent; i++) {
        this.stats.datagrams++;
        this.stats.bytes += payloads[i]!.length;
      }
      off += sent;
      if (off === n) break;
      // The socket buffer is full: give the kernel a moment to drain it.
      stalls = sent > 0 ? 1 : stalls + 1;
      if (stalls > BATCH_MAX_STALLS) {
        this.stats.errors += n - off;
        break;
      }
      await new Promise<void>((r) => setTimeout(r, BATCH_RETRY_MS));
      this.ensureOpen();
    }
  }

  /** The fallback: every datagram through node:dgram, at most maxInFlight at a time. */
  private async sendEach(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    const done: Promise<void>[] = [];
    for (const { group, payload } of items) {
      const slot = this.acquireSlot();
      if (slot) await slot;
      done.push(this.dgramSend(group, payload));
    }
    await Promise.all(done);
  }

  /** Take an in-flight slot: at once (undefined) or when one is handed over; rejects when closed. */
  private acquireSlot(): Promise<void> | undefined {
    if (this.inFlight < this.maxInFlight && this.slotWaiters.length === 0) {
      this.inFlight++;
      return undefined;
    }
    // The slot is handed over by releaseSlot(), so a newcomer cannot overtake a waiter.
    return new Promise<void>((resolve, reject) => this.slotWaiters.push({ resolve, reject })).then(() => {
      if (this.closed) {
        this.releaseSlot();
        this.ensureOpen();
      }
    });
  }

  /** Hand one datagram to dgram, holding a slot already taken; resolves (never rejects) when done. */
  private dgramSend(group: string, payload: Buffer): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (err: Error | null) => {
        if (err) this.stats.errors++;
        else {
          this.stats.datagrams++;
          this.stats.bytes += payload.length;
        }
        this.releaseSlot();
        resolve();
      };
      try {
        this.sock.send(payload, this.port, group, done);
      } catch (err) {
        done(err as Error);
      }
    });
  }

  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next) return next.resolve();
    this.inFlight--;
    if (this.inFlight === 0) this.drained?.();
  }

  /** Sends currently handed to the kernel and not yet completed. */
  get pending(): number {
    return this.inFlight;
  }

  /** Let the sends in flight complete, then close. Sends still waiting reject. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closedErr = new LcsyncError('INTERRUPTED', 'multicast sender is closed');
    for (const w of this.slotWaiters.splice(0)) w.reject(closedErr);
    // Batch sends are synchronous: none is half way through, and a waiting one checks `closed`.
    this.batch?.close();
    this.batch = undefined;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await closeSocket(this.sock);
  }

  private ensureOpen(): void {
    if (this.closed) throw new LcsyncError('INTERRUPTED', 'multicast sender is closed');
  }
}
