/**
 * A batch of datagrams as a symbol plan: for each datagram, which stream (its constant header and
 * its group) and which symbol (ESI, and where its bytes are). The share fills one per batch
 * without making an object per datagram; the addon (native/tx_rounds.c) frames the datagrams from
 * it and sends them, with UDP GSO where the kernel has it. See MulticastSender.sendPlan.
 *
 * LCSYNC_NO_NATIVE_TX=1 turns the native framing off (the share then frames in JS with
 * encodeDatagram and sends through sendBatch, as without the addon); LCSYNC_NO_GSO=1 keeps the
 * native framing but sends one message per datagram (plain sendmmsg), so both can be measured.
 */
import { loadAddon } from '../base/addon.js';
import { LARGE_SYMBOL_SIZE } from '../wire/packet.js';

/** Words per datagram in a plan: slot, ESI, buffer index, offset, length, symbol size (native/tx_rounds.c). */
export const PLAN_WORDS = 6;
/** The most datagrams one plan holds (the addon's limit per call). */
export const MAX_PLAN_ROWS = 1024;

/**
 * What a stream's datagrams share: the header before the PID (wire/packet.ts datagramPrefix), the
 * group's 16 bytes and the symbol size T (1024, or LARGE_SYMBOL_SIZE).
 */
export interface TxTarget {
  readonly prefix: Buffer;
  readonly group: Buffer;
  readonly symbolSize: number;
}

/** Whether the addon can frame and send plans (it loaded, has tx_rounds, and LCSYNC_NO_NATIVE_TX is not 1). */
export function nativeTxAvailable(): boolean {
  if (process.env.LCSYNC_NO_NATIVE_TX === '1') return false;
  const a = loadAddon().addon;
  return typeof a?.txFrame === 'function' && typeof a.txSend === 'function' && typeof a.txGsoAvailable === 'function';
}

/** Whether UDP GSO may be asked for (LCSYNC_NO_GSO is not 1); the socket still has to support it. */
export function gsoWanted(): boolean {
  return process.env.LCSYNC_NO_GSO !== '1';
}

export class TxPlan {
  /** The rows, PLAN_WORDS words each; `count` of them are in use. */
  private readonly words: Uint32Array;
  count = 0;
  /** Per slot: the stream's header prefix; its group is at 16 slot in addrBytes. */
  readonly prefixes: Buffer[] = [];
  private readonly addrBytes: Buffer;
  /** Buffers the rows take symbol bytes from. */
  readonly bufs: Buffer[] = [];
  private readonly slotOf = new Map<TxTarget, number>();
  private readonly bufOf = new Map<Uint8Array, number>();
  /** Where repair symbols of this batch are computed: per symbol size, one view per datagram, made once. */
  private readonly repairViews = new Map<number, Buffer[]>();
  private repairUsed = 0;
  private readonly repairArea: Buffer;
  /** UDP payload bytes of the rows so far. */
  payloadBytes = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_PLAN_ROWS) throw new RangeError(`plan capacity must be 1..${MAX_PLAN_ROWS}`);
    this.words = new Uint32Array(capacity * PLAN_WORDS);
    this.addrBytes = Buffer.alloc(16 * capacity);
    this.repairArea = Buffer.alloc(capacity * LARGE_SYMBOL_SIZE);
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Empty the plan for the next batch (repair symbols handed out before are overwritten from now on). */
  reset(): void {
    this.count = 0;
    this.payloadBytes = 0;
    this.prefixes.length = 0;
    this.bufs.length = 0;
    this.slotOf.clear();
    this.bufOf.clear();
    this.repairUsed = 0;
  }

  /** A buffer of `symbolSize` bytes to compute one repair symbol of this batch into; valid until reset(). */
  repairSymbol(symbolSize: number): Buffer {
    if (this.repairUsed >= this.capacity) throw new RangeError('plan has no repair space left');
    let views = this.repairViews.get(symbolSize);
    if (!views) {
      if (symbolSize < 1 || symbolSize > LARGE_SYMBOL_SIZE) throw new RangeError(`symbol size ${symbolSize} is outside 1..${LARGE_SYMBOL_SIZE}`);
      views = Array.from({ length: this.capacity }, (_, i) => this.repairArea.subarray(i * LARGE_SYMBOL_SIZE, i * LARGE_SYMBOL_SIZE + symbolSize));
      this.repairViews.set(symbolSize, views);
    }
    return views[this.repairUsed++]!;
  }

  /**
   * One datagram to `target`'s group: ESI `esi`, its symbol the `length` (1..T) bytes of `buf`
   * at `offset`, zero-padded to T (target.symbolSize). `buf` is referenced until the plan is sent.
   */
  add(target: TxTarget, esi: number, buf: Buffer, offset: number, length: number): void {
    if (this.full) throw new RangeError('plan is full');
    let slot = this.slotOf.get(target);
    if (slot === undefined) {
      slot = this.prefixes.length;
      this.slotOf.set(target, slot);
      this.prefixes.push(target.prefix);
      target.group.copy(this.addrBytes, 16 * slot);
    }
    let b = this.bufOf.get(buf);
    if (b === undefined) {
      b = this.bufs.length;
      this.bufOf.set(buf, b);
      this.bufs.push(buf);
    }
    const w = this.count++ * PLAN_WORDS;
    this.words[w] = slot;
    this.words[w + 1] = esi;
    this.words[w + 2] = b;
    this.words[w + 3] = offset;
    this.words[w + 4] = length;
    this.words[w + 5] = target.symbolSize;
    this.payloadBytes += target.prefix.length + 4 + target.symbolSize;
  }

  /** The rows in use, from row `from` on (a view). */
  rows(from = 0): Uint32Array {
    return this.words.subarray(from * PLAN_WORDS, this.count * PLAN_WORDS);
  }

  /** The groups of the slots in use, 16 bytes each (a view). */
  get addrs(): Buffer {
    return this.addrBytes.subarray(0, 16 * this.prefixes.length);
  }

  /** Payload bytes of row `i`. */
  rowBytes(i: number): number {
    return this.prefixes[this.words[i * PLAN_WORDS]!]!.length + 4 + this.words[i * PLAN_WORDS + 5]!;
  }

  /**
   * Frame every datagram of the plan into `out`, back to back, exactly as they go on the wire
   * (the addon's txFrame, the same code txSend frames with). Returns the bytes written. Throws
   * when the addon cannot frame (check nativeTxAvailable()).
   */
  frameInto(out: Buffer): number {
    const a = loadAddon().addon;
    if (!a?.txFrame) throw new Error(`native framing unavailable: ${loadAddon().error ?? 'the addon has no txFrame (rebuild it)'}`);
    return a.txFrame(this.prefixes, this.bufs, this.rows(), out);
  }
}
