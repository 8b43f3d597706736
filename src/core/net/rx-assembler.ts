/**
 * The native receive data plane (native/rx_assembler.c): chunk datagrams are parsed with the rules
 * of wire/packet.ts, placed into the buffer of the request they belong to and verified in C, and
 * JS hears once per object (complete, rejected, or needs RaptorQ decoding with these repair
 * symbols) instead of once per datagram. Junk and unasked chunk datagrams are dropped and counted
 * there. Everything JS must still see (tree/directory/symlink datagrams, gone notices, requests
 * handed over for decoding, everything before a consumer claims the assembler) comes up as
 * datagrams, in arrival order.
 *
 * The same code runs on a socket (MulticastReceiver, with recvmmsg and UDP GRO where the kernel
 * has it) and on datagrams fed from memory (feed(), for tests). LCSYNC_NO_NATIVE_RX=1, or an addon
 * without it, keeps the JavaScript path.
 *
 * Progress (which requests got a symbol) and the counters are held back in C until a report has
 * something else (events, datagrams for JS, errors) or the consumer asks with drain(): its stall
 * checks read progress every 100 ms, and a call into JS for every recvmmsg that merely placed symbols
 * was most of a receiver's calls into JS.
 */
import { loadAddon, type LcsyncAddon, type RxAssemblerHandle, type RxBatch, type RxSocketHandle } from '../base/addon.js';
import type { AssemblyReport, ChunkAssembly } from './datagram.js';

type RxAddon = Required<Pick<LcsyncAddon, 'rxasmCreate' | 'rxasmRegister' | 'rxasmSpare' | 'rxasmUnregister' | 'rxasmClaim' | 'rxasmFeed' | 'rxasmDrain' | 'rxParse' | 'rxasmOpen' | 'rxasmGro' | 'rxasmRecvBufferSize' | 'rxasmJoin' | 'rxasmLeave' | 'rxasmClose'>>;

function load(): RxAddon | undefined {
  const a = loadAddon().addon;
  return a && typeof a.rxasmCreate === 'function' && typeof a.rxasmOpen === 'function' && typeof a.rxasmDrain === 'function' && typeof a.rxasmSpare === 'function'
    ? (a as RxAddon)
    : undefined;
}

/** Whether the native receive path is used: the addon has it and LCSYNC_NO_NATIVE_RX (or LCSYNC_NO_RECVMMSG) is not 1. */
export function nativeRxAvailable(): boolean {
  if (process.env.LCSYNC_NO_NATIVE_RX === '1' || process.env.LCSYNC_NO_RECVMMSG === '1') return false;
  return load() !== undefined;
}

/** Whether to ask the kernel for UDP GRO on the native receive socket (LCSYNC_NO_GRO=1 turns it off). */
export function groWanted(): boolean {
  return process.env.LCSYNC_NO_GRO !== '1';
}

/** The native header check alone: [0, F (0 without OTI), ESI, symbol offset, T], or undefined. For tests. */
export function nativeParse(buf: Uint8Array): [number, number, number, number, number] | undefined {
  const a = load();
  if (!a) throw new Error(`native receive path unavailable: ${loadAddon().error ?? 'addon lacks rx_assembler'}`);
  return a.rxParse(buf);
}

/**
 * A chunk assembler. Datagrams it hands back (the ones JS must see) go to `deliver`; reports of
 * what it did natively go to the onAssembled listener.
 */
export class NativeAssembler implements ChunkAssembly {
  readonly handle: RxAssemblerHandle;
  private readonly native: RxAddon;
  private readonly listeners = new Set<(r: AssemblyReport) => void>();
  private nextId = 1;
  /** Received messages that held several datagrams (UDP GRO). */
  coalesced = 0;
  /** Where socket errors in a batch are counted (set by openSocket). */
  private onErrors?: (n: number) => void;
  private closed: () => boolean = () => false;

  /**
   * `deliver` gets the datagrams JS must see; `observe` (if any) every report, consumer or not
   * (the socket's owner counts what never reached JS).
   */
  constructor(
    private readonly deliver: (buf: Buffer) => void,
    private readonly observe?: (r: AssemblyReport) => void,
  ) {
    const a = load();
    if (!a) throw new Error(`native receive path unavailable: ${loadAddon().error ?? 'addon lacks rx_assembler'}`);
    this.native = a;
    this.handle = a.rxasmCreate();
  }

  get claimed(): boolean {
    return this.listeners.size > 0;
  }

  register(oid: Uint8Array, length: number, symbolSize: number, buf?: Uint8Array): number | undefined {
    const id = this.nextId;
    try {
      this.native.rxasmRegister(this.handle, id, oid, length, buf ?? null, symbolSize);
    } catch (err) {
      if (err instanceof RangeError && /already registered/.test(err.message)) return undefined;
      throw err;
    }
    this.nextId = (this.nextId % 0xffffffff) + 1;
    return id;
  }

  spare(buf?: Uint8Array): number {
    return this.native.rxasmSpare(this.handle, buf ?? null);
  }

  unregister(oid: Uint8Array): void {
    this.native.rxasmUnregister(this.handle, oid);
  }

  onAssembled(cb: (r: AssemblyReport) => void): () => void {
    this.listeners.add(cb);
    this.native.rxasmClaim(this.handle, true);
    return () => {
      this.listeners.delete(cb);
      // Nobody left to register chunks: every datagram goes up again, as without the assembler.
      if (this.listeners.size === 0) this.native.rxasmClaim(this.handle, false);
    };
  }

  /** Feed datagrams from memory, as the socket loop would: one batch. */
  feed(datagrams: readonly Uint8Array[], gsoSizes?: readonly number[]): void {
    const lengths = Uint32Array.from(datagrams.map((d) => d.length));
    this.feedPacked(Buffer.concat(datagrams), lengths, gsoSizes ? Uint32Array.from(gsoSizes) : undefined);
  }

  /** Feed one batch laid out as recvmmsg fills it: messages back to back in `buf`, `lengths[i]` each. */
  feedPacked(buf: Uint8Array, lengths: Uint32Array, gsoSizes?: Uint32Array): void {
    const b = this.native.rxasmFeed(this.handle, buf, lengths, lengths.length, gsoSizes ?? null);
    if (b) this.take(b);
  }

  /** Report what C held back (progress and counters since the last report), if anything. */
  drain(): void {
    const b = this.native.rxasmDrain(this.handle);
    if (b) this.take(b);
  }

  private take(b: RxBatch): void {
    if (b.errors > 0) this.onErrors?.(b.errors);
    this.coalesced += b.coalesced;
    this.dispatch(b, this.closed);
  }

  /** One batch from C: the report first (a request handed over must have its decoder before its datagrams), then the datagrams. */
  dispatch(b: RxBatch, closed: () => boolean = () => false): void {
    const report: AssemblyReport = {
      datagrams: b.datagrams - b.count,
      bytes: b.bytes - b.buf.length,
      dropped: b.dropped,
      progressed: b.progressed,
      events: b.events,
      decodes: b.decodes,
      buffers: b.buffers,
    };
    this.observe?.(report);
    for (const cb of this.listeners) cb(report);
    let off = 0;
    for (let i = 0; i < b.count && !closed(); i++) {
      const len = b.lengths[i]!;
      this.deliver(b.buf.subarray(off, off + len));
      off += len;
    }
  }

  /** Open the socket whose datagrams go through this assembler. */
  openSocket(port: number, recvBufferBytes: number, gro: boolean, onErrors: (n: number) => void, closed: () => boolean): NativeRxSocket {
    this.onErrors = onErrors;
    this.closed = closed;
    const sock = this.native.rxasmOpen(this.handle, port, recvBufferBytes, gro, (b) => this.take(b));
    return new NativeRxSocket(this.native, sock);
  }
}

/** The socket of a NativeAssembler: [::]:port, SO_REUSEADDR. */
export class NativeRxSocket {
  private open = true;
  constructor(
    private readonly native: RxAddon,
    private readonly sock: RxSocketHandle,
  ) {}

  /** Whether the kernel took UDP_GRO. */
  get gro(): boolean {
    return this.open && this.native.rxasmGro(this.sock);
  }

  get recvBufferBytes(): number {
    return this.native.rxasmRecvBufferSize(this.sock);
  }

  join(group: Uint8Array, ifindex: number): void {
    this.native.rxasmJoin(this.sock, group, ifindex);
  }

  leave(group: Uint8Array, ifindex: number): void {
    this.native.rxasmLeave(this.sock, group, ifindex);
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.native.rxasmClose(this.sock);
  }
}
