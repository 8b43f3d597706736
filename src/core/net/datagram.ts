/**
 * The seams between the data plane and the sides above it. The sync side takes a
 * DatagramSource and the share side DatagramSinks, so a test (or another data plane, such as a
 * native receive path) plugs in without casts. MulticastReceiver and MulticastSender
 * (mcast-receiver.ts, mcast-sender.ts) are the implementations on real sockets.
 */

import type { TxPlan } from './txplan.js';

/** Datagrams arriving on the multicast groups joined. */
export interface DatagramSource {
  /**
   * Start receiving a group's datagrams (idempotent). `bytes`, when the caller has them, are the
   * group's 16 address bytes (what `group` is the text of): they spare a parse per join.
   */
  join(group: string, bytes?: Buffer): void;
  /** Stop receiving a group's datagrams. */
  leave(group: string): void;
  /** Leave and join again at once, so the sender hears a fresh report. */
  rejoin(group: string): void;
  /**
   * Where joins are made later than asked (MulticastReceiver makes changes in bursts), a join the
   * kernel refused then is reported here instead of thrown by join().
   */
  onJoinFailed?(cb: (group: string, err: Error) => void): void;
  /**
   * Tell the sender at once that this host, joined to `groups` (16 bytes each), still lacks symbols of
   * their objects (an MLDv2 report with ALLOW_NEW_SOURCES records and no sources, which changes no
   * router's state; docs/protocol.md#mld-and-when-a-share-sends). Absent, or a no-op, where the source
   * cannot send MLD reports itself.
   */
  reportLacking?(groups: readonly Uint8Array[]): void;
  /** The one consumer of every datagram received, on any group. */
  onDatagram(cb: (buf: Buffer) => void): void;
  /**
   * Present when chunk datagrams can be assembled natively (net/rx-assembler.ts): the consumer
   * registers its chunk requests there and hears once per object; onDatagram then sees only what
   * the assembler does not take (tree objects, gone notices, requests handed over for decoding).
   */
  readonly assembly?: ChunkAssembly;
  /**
   * Datagrams the socket lost so far, where it can tell (with the addon: those its receive buffer
   * had no room for, SO_RXQ_OVFL); absent where it cannot.
   */
  readonly lostDatagrams?: number;
  close(): Promise<void>;
}

/** Chunks assembled below JavaScript (native/rx_assembler.c). */
export interface ChunkAssembly {
  /**
   * Fill `buf` with the chunk whose BLAKE3 is `oid` (`length` bytes, in symbols of `symbolSize`
   * bytes: its datagrams of another size are dropped). Returns the id that names it in
   * reports, or undefined when that OID is registered already (by another consumer of the same source).
   * Without `buf` (only where spare() exists) the request takes a spare when its first source symbol
   * arrives, and the report that ends it carries the buffer (AssemblyReport.buffers).
   */
  register(oid: Uint8Array, length: number, symbolSize: number, buf?: Uint8Array): number | undefined;
  /**
   * Give the assembler a spare buffer for requests registered without one (none: give nothing); returns
   * how many it holds. A request that ends hands its spare to JS with its event; one unregistered
   * before it ends puts it back.
   */
  spare?(buf?: Uint8Array): number;
  /** Forget a request (done, failed or abandoned); nothing happens when it is not registered. */
  unregister(oid: Uint8Array): void;
  /**
   * Hear every report (each consumer ignores ids it did not register). While anyone listens, chunk
   * datagrams nobody registered are dropped below JS. Returns the function that stops listening.
   */
  onAssembled(cb: (r: AssemblyReport) => void): () => void;
  /**
   * Report now what the assembler holds back (progress and counters come with the next report that
   * has events, else only when asked): a consumer asks before it judges progress or reads counts.
   */
  drain?(): void;
}

/** What the assembler did since its last report. */
export interface AssemblyReport {
  /** Datagrams and bytes taken below JS (placed or dropped; onDatagram saw none of them). */
  datagrams: number;
  bytes: number;
  /** Of those, dropped: junk, or chunks nobody asked for. */
  dropped: number;
  /** Ids of requests that got a new symbol. */
  progressed: Uint32Array;
  /**
   * [kind, id] pairs: ASSEMBLY_COMPLETE (verified, in the buffer), ASSEMBLY_REJECTED (did not verify; collecting again),
   * ASSEMBLY_DECODE, ASSEMBLY_LACKING (the last source symbol came with others lost; still collecting).
   */
  events: Uint32Array;
  /** Per ASSEMBLY_DECODE event, in order: source ESIs in the buffer, repair ESIs, repair symbols (1024 bytes each). From then on the request's datagrams come through onDatagram. */
  decodes: [Uint32Array, Uint32Array, Buffer, number][];
  /**
   * Present when an event ended a request registered without a buffer: per event (the index of its pair
   * in `events`, halved), the buffer its bytes are in; undefined for the other events, and for a decode
   * that had no source symbol yet.
   */
  buffers?: (Buffer | undefined)[];
}

export const ASSEMBLY_COMPLETE = 1;
export const ASSEMBLY_REJECTED = 2;
export const ASSEMBLY_DECODE = 3;
export const ASSEMBLY_LACKING = 4;

/** Datagrams sent to multicast groups on one interface. */
export interface DatagramSink {
  /** Send in order; resolves when the datagrams are handed to the kernel (or dropped by it). */
  sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void>;
  /**
   * Whether sendPlan frames natively (net/txplan.ts); a sink without it, or that says false, gets
   * datagrams framed in JS through sendBatch.
   */
  readonly framesPlans?: boolean;
  /** Frame and send a plan's datagrams in order; as sendBatch otherwise. Only when framesPlans. */
  sendPlan?(plan: TxPlan): Promise<void>;
  close(): Promise<void>;
}
