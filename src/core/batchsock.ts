/**
 * Batched multicast sends: a typed wrapper over the optional native addon (native/udp_batch.c)
 * that hands the kernel many datagrams in one sendmmsg(2) call.
 *
 * node:dgram costs a DNS-lookup tick, a SendWrap and a completion callback per datagram; at
 * ~100k datagrams/s that is most of a sender's CPU. The addon is built by `npm ci` (node-gyp
 * with the machine's compiler) and may be missing: batchSendAvailable() says whether it loaded,
 * and callers fall back to node:dgram. LCSYNC_NO_SENDMMSG=1 forces the fallback, so both paths
 * can be tested and measured.
 */
import { createRequire } from 'node:module';

/** What the addon exports (see native/udp_batch.c for the exact checks). */
interface UdpBatch {
  open(ifindex: number, hopLimit: number, loopback: boolean): number;
  sendBatch(fd: number, port: number, addrs: Uint8Array, payloads: Uint8Array[]): number;
  close(fd: number): void;
  ifindex(name: string): number;
}

/** Relative to this module: src/core/ when run from source, dist/core/ when built. */
const ADDON_PATH = '../../build/Release/udp_batch.node';
/** The largest payload the addon (and node:dgram over IPv6) sends. */
export const MAX_BATCH_PAYLOAD = 65507;

let addon: UdpBatch | undefined;
let loadError: string | undefined;
let tried = false;

function load(): UdpBatch | undefined {
  if (!tried) {
    tried = true;
    try {
      const mod = createRequire(import.meta.url)(ADDON_PATH) as Partial<UdpBatch>;
      if (typeof mod.open !== 'function' || typeof mod.sendBatch !== 'function' || typeof mod.close !== 'function' ||
        typeof mod.ifindex !== 'function') {
        throw new Error('it lacks open/sendBatch/close/ifindex');
      }
      addon = mod as UdpBatch;
    } catch (err) {
      loadError = `cannot load ${ADDON_PATH}: ${(err as Error).message.split('\n')[0]}`;
    }
  }
  return addon;
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
  return load() ? undefined : loadError;
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

  /** Close the socket. Safe to call twice. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.native.close(fd);
  }
}
