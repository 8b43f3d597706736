/**
 * The multicast sender: datagrams to groups on one interface, paced, through sendmmsg(2) batches when the
 * addon is built (the DatagramSink of datagram.ts). Knows sockets and interfaces, nothing about packets.
 *
 * Facts it is built on:
 * - dgram wants an interface as '::%ifname'; a bare name is EINVAL, and an unknown name is
 *   silently accepted (scope id 0, the kernel picks a route), so names are checked first.
 * - setMulticastTTL sets the IPv6 hop limit (0..255).
 * - A veth gives no back-pressure, so the sender paces itself and bounds its sends in flight.
 * - dgram costs a DNS-lookup tick, a SendWrap and a callback per datagram, so the sender sends
 *   batches with sendmmsg(2) through a small addon (batchsock.ts) when it is built.
 */
import dgram from 'node:dgram';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { LCSYNC_PORT } from '../wire/address.js';
import { BatchSocket, MAX_BATCH_PAYLOAD, batchSendAvailable } from './batchsock.js';
import type { DatagramSink } from './datagram.js';
import { validateInterfaces } from './interfaces.js';
import type { Pacer } from './pacer.js';
import { gsoWanted, nativeTxAvailable, type TxPlan } from './txplan.js';
import { bindSocket, checkGroup, checkPort, closeSocket } from './udp.js';

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

export interface MulticastSenderOptions {
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
  /** What went through sendPlan: datagrams, and the messages that carried them (one per GSO run, else one per datagram). */
  readonly planStats = { datagrams: 0, messages: 0 };
  /** Whether sendPlan asks for UDP GSO: the socket supports it, LCSYNC_NO_GSO is not 1, and the kernel has not refused it. */
  gso = false;
  private readonly planInfo = new Uint32Array(2);
  /** nativeTxAvailable() when opened: asked per batch, reading the environment showed up in profiles. */
  private readonly nativeTx = nativeTxAvailable();
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
    opts: MulticastSenderOptions,
    port: number,
    maxInFlight: number,
  ) {
    this.ifname = opts.ifname;
    this.port = port;
    this.pacer = opts.pacer;
    this.maxInFlight = maxInFlight;
    this.gso = batch !== undefined && this.nativeTx && gsoWanted() && batch.gsoAvailable();
    sock.on('error', () => {
      this.stats.errors++;
    });
  }

  static async open(opts: MulticastSenderOptions): Promise<MulticastSender> {
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

  /** Whether sendPlan frames natively: the addon sends plans and batching is on. */
  get framesPlans(): boolean {
    return this.batch !== undefined && this.nativeTx;
  }

  /**
   * Frame and send a plan's datagrams in order (native/tx_rounds.c), as sendBatch sends: the
   * pacer charged once for all of them, a full socket buffer retried every millisecond, a datagram
   * the kernel refuses counted in stats.errors. With `gso`, each run of one stream leaves as one
   * UDP GSO message; if the kernel refuses GSO, this sender stops asking for it. Only when
   * framesPlans (throws otherwise); rejects when the sender is or gets closed.
   */
  async sendPlan(plan: TxPlan): Promise<void> {
    this.ensureOpen();
    if (!this.framesPlans) throw new Error('this sender cannot frame plans natively');
    const n = plan.count;
    if (n === 0) return;
    const wait = this.pacer?.take(plan.payloadBytes + HEADER_BYTES * n);
    if (wait) {
      await wait;
      this.ensureOpen();
    }
    let off = 0;
    let stalls = 0;
    const info = this.planInfo;
    while (off < n) {
      let sent: number;
      try {
        sent = this.batch!.sendPlan(this.port, plan, off, this.gso, info);
      } catch (err) {
        // As in sendNative: a system error for the datagram at `off` is counted and skipped.
        if (typeof (err as NodeJS.ErrnoException).errno !== 'number') throw err;
        this.stats.errors++;
        off++;
        stalls = 0;
        continue;
      }
      if (info[1] === 1) this.gso = false;
      this.planStats.messages += info[0]!;
      this.planStats.datagrams += sent;
      this.stats.datagrams += sent;
      if (off === 0 && sent === n) this.stats.bytes += plan.payloadBytes;
      else for (let i = off; i < off + sent; i++) this.stats.bytes += plan.rowBytes(i);
      off += sent;
      if (off === n) break;
      stalls = sent > 0 ? 1 : stalls + 1;
      if (stalls > BATCH_MAX_STALLS) {
        this.stats.errors += n - off;
        break;
      }
      await new Promise<void>((r) => setTimeout(r, BATCH_RETRY_MS));
      this.ensureOpen();
    }
  }

  /** The group's 16 bytes; throws USAGE unless it is an IPv6 multicast address. */
  private groupBytesOf(group: string): Buffer {
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
    this.groupBytesOf(group);
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
      const bytes = this.groupBytesOf(group);
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
