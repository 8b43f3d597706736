/**
 * Batched multicast sends: a typed wrapper over the sendmmsg half of the lcsync addon
 * (native/udp_batch.c, loaded by addon.ts) that hands the kernel many datagrams in one sendmmsg(2) call.
 *
 * node:dgram costs a DNS-lookup tick, a SendWrap and a completion callback per datagram; at
 * ~100k datagrams/s that is most of a sender's CPU. The addon ships prebuilt or is built at install
 * and may be missing: batchSendAvailable() says whether it loaded,
 * and callers fall back to node:dgram. LCSYNC_NO_SENDMMSG=1 forces the fallback, so both paths
 * can be tested and measured.
 *
 * The addon also receives: node:dgram costs a 64 KiB buffer, an ArrayBuffer, a Buffer and a JS
 * callback per received datagram (and the GC of them all). BatchReceiver takes up to 64 datagrams
 * per recvmmsg(2) call and hands them to JS in one callback. batchRecvAvailable() says whether it
 * can be used; LCSYNC_NO_RECVMMSG=1 forces the node:dgram receiver.
 */
import { loadAddon, type LcsyncAddon } from '../base/addon.js';
import type { TxPlan } from './txplan.js';

/**
 * One recvmmsg call's worth: `buf` holds `count` datagrams back to back, `lengths[i]` the size of
 * the i-th; `errors` counts datagrams lost since the previous call (longer than
 * MAX_BATCH_RECV_PAYLOAD, so cut by the kernel and dropped, or a failed receive call). `buf` is
 * fresh for every call: views into it stay valid.
 */
export type BatchHandler = (buf: Buffer, lengths: Uint32Array, count: number, errors: number) => void;

/** The largest payload the addon (and node:dgram over IPv6) sends. */
export const MAX_BATCH_PAYLOAD = 65507;
/** The largest datagram BatchReceiver delivers (the addon's slot size); longer ones count as errors. */
export const MAX_BATCH_RECV_PAYLOAD = 2048;

type UdpBatch = LcsyncAddon;

function load(): UdpBatch | undefined {
  return loadAddon().addon;
}

function disabled(): boolean {
  return process.env.LCSYNC_NO_SENDMMSG === '1';
}

/** Whether batched sends are possible now (the addon loaded and LCSYNC_NO_SENDMMSG is not 1). */
export function batchSendAvailable(): boolean {
  return !disabled() && load() !== undefined;
}

/** Why batched sends are not available, or undefined when they are. */
export function batchSendUnavailableReason(): string | undefined {
  if (disabled()) return 'LCSYNC_NO_SENDMMSG=1';
  return load() ? undefined : loadAddon().error;
}

export interface BatchSocketOptions {
  /** Interface the datagrams leave by (IPV6_MULTICAST_IF). */
  ifname: string;
  /** IPv6 hop limit, 1..255. */
  hopLimit: number;
  /** Deliver to this host's own members too (IPV6_MULTICAST_LOOP). */
  loopback: boolean;
}

/** A non-blocking UDP socket bound to [::]:0 that sends batches to IPv6 multicast groups. */
export class BatchSocket {
  private fd: number;

  private constructor(
    private readonly native: UdpBatch,
    fd: number,
    readonly ifindex: number,
  ) {
    this.fd = fd;
  }

  /**
   * Open a socket on `ifname`. Throws when batching is unavailable (check batchSendAvailable()
   * first), when this network namespace has no such interface (Error with code ENODEV), or
   * with the system error of socket/bind/setsockopt.
   */
  static open(opts: BatchSocketOptions): BatchSocket {
    const native = batchSendAvailable() ? load() : undefined;
    if (!native) throw new Error(`batched sends unavailable: ${batchSendUnavailableReason()}`);
    const ifindex = native.ifindex(opts.ifname);
    if (ifindex === 0) {
      throw Object.assign(new Error(`no interface ${opts.ifname}`), { code: 'ENODEV' });
    }
    return new BatchSocket(native, native.open(ifindex, opts.hopLimit, opts.loopback), ifindex);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /**
   * Send payloads[i] to port on the group in groups[16 i .. 16 i + 16). Returns how many
   * datagrams the kernel took from the front: fewer than asked when its buffer is full
   * (EAGAIN/ENOBUFS; try the rest later). Any other failure throws an Error with `code`
   * and `errno` after the datagrams before the failing one went out; the caller decides
   * whether to skip that one and go on. Bad arguments throw TypeError/RangeError.
   */
  send(port: number, groups: Uint8Array, payloads: Uint8Array[]): number {
    if (this.fd < 0) throw Object.assign(new Error('batch socket is closed'), { code: 'EBADF' });
    return this.native.sendBatch(this.fd, port, groups, payloads);
  }

  /** Whether this kernel takes UDP_SEGMENT (GSO) on this socket; false when the addon cannot send plans. */
  gsoAvailable(): boolean {
    if (this.fd < 0 || typeof this.native.txGsoAvailable !== 'function') return false;
    return this.native.txGsoAvailable(this.fd);
  }

  /**
   * Frame and send the plan's rows from `from` on (native/tx_rounds.c txSend); with `gso`, runs of
   * one stream go as UDP GSO messages. Returns how many datagrams the kernel took from the front,
   * as send() does, and fills info: [0] messages handed to the kernel, [1] 1 when it refused GSO.
   */
  sendPlan(port: number, plan: TxPlan, from: number, gso: boolean, info: Uint32Array): number {
    if (this.fd < 0) throw Object.assign(new Error('batch socket is closed'), { code: 'EBADF' });
    if (typeof this.native.txSend !== 'function') throw new Error('the lcsync addon cannot send plans (rebuild it)');
    return this.native.txSend(this.fd, port, plan.prefixes, plan.addrs, plan.bufs, plan.rows(from), gso, info);
  }

  /** Close the socket. Safe to call twice. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.native.close(fd);
  }
}

function recvDisabled(): boolean {
  return process.env.LCSYNC_NO_RECVMMSG === '1';
}

/** Whether batched receives are possible now (the addon loaded and LCSYNC_NO_RECVMMSG is not 1). */
export function batchRecvAvailable(): boolean {
  if (recvDisabled()) return false;
  return load() !== undefined;
}

/** Why batched receives are not available, or undefined when they are. */
export function batchRecvUnavailableReason(): string | undefined {
  if (recvDisabled()) return 'LCSYNC_NO_RECVMMSG=1';
  return load() ? undefined : loadAddon().error;
}

export interface BatchReceiverOptions {
  /** UDP port to bind on [::], 1..65535 (shared with other sockets: SO_REUSEADDR). */
  port: number;
  /** SO_RCVBUF to ask for, in bytes (the kernel caps it at net.core.rmem_max and doubles it). */
  recvBufferBytes: number;
  /** Called on the event loop once per recvmmsg call; see BatchHandler. An exception it throws is uncaught. */
  onBatch: BatchHandler;
}

function systemError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * A non-blocking UDP socket bound to [::]:port that receives datagrams in batches (recvmmsg).
 * While open it keeps the event loop alive, as a bound dgram socket does.
 */
export class BatchReceiver {
  private fd: number;

  private constructor(
    private readonly native: UdpBatch,
    fd: number,
  ) {
    this.fd = fd;
  }

  /**
   * Bind and start receiving. Throws when batching is unavailable (check batchRecvAvailable()
   * first), TypeError/RangeError for bad options, or the system error of socket/setsockopt/bind
   * (an Error with `code`, `errno` and `syscall`).
   */
  static open(opts: BatchReceiverOptions): BatchReceiver {
    const native = batchRecvAvailable() ? load() : undefined;
    if (!native) throw new Error(`batched receives unavailable: ${batchRecvUnavailableReason()}`);
    if (typeof opts?.onBatch !== 'function') throw new TypeError('onBatch must be a function');
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
      throw new RangeError(`port must be an integer in 1..65535, not ${String(opts.port)}`);
    }
    if (!Number.isInteger(opts.recvBufferBytes) || opts.recvBufferBytes < 1 || opts.recvBufferBytes > 0x7fffffff) {
      throw new RangeError(`recvBufferBytes must be an integer in 1..2147483647, not ${String(opts.recvBufferBytes)}`);
    }
    return new BatchReceiver(native, native.recvOpen(opts.port, opts.recvBufferBytes, opts.onBatch));
  }

  /** The index of interface `name` in this network namespace, 0 when there is none. */
  static ifindex(name: string): number {
    const native = load();
    if (!native) throw new Error(`lcsync addon unavailable: ${loadAddon().error}`);
    return native.ifindex(name);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** Kernel receive buffer actually granted (SO_RCVBUF as getsockopt reports it). */
  get recvBufferBytes(): number {
    this.ensureOpen();
    return this.native.recvBufferSize(this.fd);
  }

  /** Join the group (16 bytes, ff00::/8) on interface `ifindex`; system errors throw with `code`. */
  join(group: Uint8Array, ifindex: number): void {
    this.ensureOpen();
    this.native.recvJoin(this.fd, group, ifindex);
  }

  /** Leave the group on interface `ifindex` (EADDRNOTAVAIL when it was not joined there). */
  leave(group: Uint8Array, ifindex: number): void {
    this.ensureOpen();
    this.native.recvLeave(this.fd, group, ifindex);
  }

  /** Stop receiving and close the socket; no onBatch call follows. Safe to call twice, also from onBatch. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.native.recvClose(fd);
  }

  private ensureOpen(): void {
    if (this.fd < 0) throw systemError('batch receiver is closed', 'EBADF');
  }
}
