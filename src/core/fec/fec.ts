/**
 * RaptorQ (RFC 6330) for one object: T = 1024, one source block, one
 * sub-block, on top of the npm `raptorq` 1.7.24 wasm build.
 *
 * Two facts about that build shape this module (docs/protocol.md#raptorq):
 *  - It numbers repair symbols from K' instead of K (it writes the internal
 *    symbol id where RFC 6330 puts the ESI; fixed upstream in the Rust crate's
 *    2.0). The C tool (LCRQ) follows the RFC. So a received repair ESI e >= K
 *    goes to the wasm decoder as e + (K' - K), and a wasm repair id i >= K'
 *    goes on the wire as i - (K' - K). Source symbols (ESI < K) agree.
 *  - Its objects have no finalizer, so every Encoder/Decoder is freed here by
 *    hand; and a malformed packet makes the Rust code panic and breaks that
 *    decoder for good, so only checked ESIs and 1024-byte symbols reach it.
 *
 * Objects of up to FAST_MAX_K_PRIME symbols (every chunk) do not use wasm at
 * all: rfc6330.ts computes their repair symbols and decodes them from a
 * system solved once per K', several times cheaper than the wasm codec, which
 * re-solves it for every object. Larger objects (big directories) use wasm.
 *
 * Neither codec can tell wrong input from right: with wrong ids, or a forged
 * symbol under a valid header, both return wrong bytes without an error. The
 * caller MUST check every object this module returns against its OID (BLAKE3)
 * and, for chunks and tree parts, its place in the tree.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { initSync, Encoder, Decoder } from 'raptorq/raptorq.js';
import { kPrime } from './kprime.js';
import { FAST_MAX_K_PRIME, SmallBlockCode } from './rfc6330.js';
import { isSymbolSize, MAX_ESI, MAX_OBJECT, SYMBOL_SIZE, SYMBOL_SIZES, sourceSymbols } from '../wire/packet.js';
import { LcsyncError } from '../base/errors.js';

let raptorqLoaded = false;
/**
 * Instantiate the raptorq wasm module, once, when an object first needs it: only objects
 * larger than FAST_MAX_K_PRIME symbols (big directories) do, so most runs never pay for it
 * (its instance: about 0.5 MiB of resident memory, and the wasm compile time). The package is a wasm-bindgen "web" build: its default
 * init() fetch()es a file: URL, which Node cannot do, so hand it the module bytes synchronously.
 */
export function loadRaptorqWasm(): void {
  if (raptorqLoaded) return;
  initSync(readFileSync(createRequire(import.meta.url).resolve('raptorq/raptorq_bg.wasm')));
  raptorqLoaded = true;
}

/** Whether loadRaptorqWasm() has run in this process (tests of lazy loading). */
export function raptorqWasmLoaded(): boolean {
  return raptorqLoaded;
}

/** wasm packets are PID(4) | symbol. */
const PID_LEN = 4;
/** Fewest repair symbols an encoder generates at once. */
const MIN_REPAIR_POOL = 64;
/**
 * An encoder offers up to 8 K' distinct repair symbols before repeating:
 * enough for a receiver that loses most of several passes, while a 32 KiB
 * chunk's pool stays at 256 KiB. Large objects (only directories can be) stop
 * growing at 8192 symbols (8 MiB) but always get at least 2 K'.
 */
const MAX_POOL_FACTOR = 8;
const MAX_POOL_SYMBOLS = 8192;
/** Repair symbols a small-object decoder keeps beyond K (see ObjectDecoder.addRepair). */
const MAX_EXTRA_REPAIRS = 32;

function checkSymbolSize(t: number): void {
  if (!isSymbolSize(t)) throw new RangeError(`symbol size ${t} is not one of ${SYMBOL_SIZES.join(', ')}`);
}

function checkLength(length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_OBJECT) {
    throw new RangeError(`object length ${length} is outside 1..${MAX_OBJECT}`);
  }
}

/**
 * Source and repair symbols of one object, with ESIs as RFC 6330 and the C
 * tool number them. `data` is referenced, not copied: do not change it while
 * the encoder is in use.
 */
export class ObjectEncoder {
  /** F, the object length in bytes. */
  readonly length: number;
  /** Source symbols: ceil(F / T). */
  readonly K: number;
  /** T, the symbol size: 1024 (the C protocol) or LARGE_SYMBOL_SIZE. */
  readonly T: number;
  /** K' from RFC 6330 table 2. */
  readonly KP: number;
  /** The most distinct repair symbols nextRepair() goes through before it repeats. */
  readonly maxRepairPool: number;
  private readonly data: Uint8Array;
  /** The small-block code for K' <= FAST_MAX_K_PRIME (no wasm, no pool). */
  private readonly code: SmallBlockCode | undefined;
  /** The last source symbol zero-padded, when it is short (small-block code only). */
  private paddedLast: Buffer | undefined;
  /** Repair symbols for wire ESIs K, K+1, ... (views into the packets wasm returned). */
  private pool: Buffer[] = [];
  private next = 0;
  private freed = false;

  constructor(data: Uint8Array, symbolSize = SYMBOL_SIZE) {
    checkLength(data.length);
    checkSymbolSize(symbolSize);
    this.data = data;
    this.length = data.length;
    this.T = symbolSize;
    this.K = sourceSymbols(data.length, symbolSize);
    this.KP = kPrime(this.K);
    this.maxRepairPool = Math.max(MIN_REPAIR_POOL, 2 * this.KP, Math.min(MAX_POOL_FACTOR * this.KP, MAX_POOL_SYMBOLS));
    this.code = this.KP <= FAST_MAX_K_PRIME ? SmallBlockCode.of(this.KP) : undefined;
  }

  /** Repair symbols wasm has generated so far (0 until the first nextRepair(), always 0 for small objects). */
  get repairPoolSize(): number {
    return this.pool.length;
  }

  /**
   * Source symbol `esi` (0 <= esi < K): T bytes, the last zero-padded. Full
   * symbols are views into the data; the last, when short, is a padded copy.
   */
  sourceSymbol(esi: number): Buffer {
    this.checkLive();
    if (!Number.isInteger(esi) || esi < 0 || esi >= this.K) throw new RangeError(`source ESI ${esi} is outside 0..${this.K - 1}`);
    const start = esi * this.T;
    const end = start + this.T;
    if (end <= this.data.length) return Buffer.from(this.data.buffer, this.data.byteOffset + start, this.T);
    const sym = Buffer.alloc(this.T);
    sym.set(this.data.subarray(start), 0);
    return sym;
  }

  /**
   * The next repair symbol and its wire ESI (>= K). Every call gives a new ESI
   * until maxRepairPool symbols have gone out, then they repeat in the same
   * order. C receivers drop duplicate ESIs and need K'+5 distinct symbols once
   * a source symbol is lost, so a stream must keep offering new ones.
   *
   * The npm binding can only produce the first n repair symbols, so the pool
   * is made on first use (objects that only go out as source symbols never
   * touch wasm), with max(64, 2K') symbols, and regenerated at twice the size
   * whenever it runs out, up to maxRepairPool.
   */
  nextRepair(into?: Buffer): { esi: number; symbol: Buffer } {
    this.checkLive();
    if (this.code) {
      const i = this.next;
      this.next = (this.next + 1) % this.maxRepairPool;
      // Small objects compute the symbol here, so a caller that copies it at once can lend a buffer.
      const symbol = into && into.length === this.T ? into : Buffer.alloc(this.T);
      // Wire ESI K + i is internal symbol K' + i (see the top of this file).
      const full = Math.floor(this.length / this.T);
      this.code.encodeFrom(this.KP + i, this.K, this.data, full, full < this.K ? this.paddedSource(this.K - 1) : undefined, symbol);
      return { esi: this.K + i, symbol };
    }
    if (this.next === this.pool.length) {
      if (this.pool.length < this.maxRepairPool) {
        const want = this.pool.length === 0 ? Math.max(MIN_REPAIR_POOL, 2 * this.KP) : 2 * this.pool.length;
        this.pool = this.makePool(Math.min(want, this.maxRepairPool));
      } else {
        this.next = 0;
      }
    }
    const i = this.next++;
    return { esi: this.K + i, symbol: this.pool[i]! };
  }

  /**
   * Where the repair cycle stands: the next repair symbol goes out with wire ESI K + repairCursor.
   * Small objects only (the small-block code keeps no pool), so that an encoder made again for the
   * same bytes (share.ts, a chunk read again after its buffer was lent out) goes on with fresh ESIs.
   */
  get repairCursor(): number {
    return this.next;
  }

  set repairCursor(i: number) {
    if (!this.code) throw new LcsyncError('INTERNAL', 'repairCursor is only movable with the small-block code');
    if (!Number.isInteger(i) || i < 0 || i >= this.maxRepairPool) throw new RangeError(`repair cursor ${i} is outside 0..${this.maxRepairPool - 1}`);
    this.next = i;
  }

  /** Whether repairCursor can be moved (the small-block code, every chunk). */
  get stateless(): boolean {
    return this.code !== undefined;
  }

  /** Release the repair pool. The encoder cannot be used afterwards. */
  free(): void {
    this.freed = true;
    this.pool = [];
    this.paddedLast = undefined;
  }

  /** sourceSymbol() without the copy of a short last symbol on every call. */
  private paddedSource(esi: number): Buffer {
    if (esi === this.K - 1 && this.length % this.T !== 0) return (this.paddedLast ??= this.sourceSymbol(esi));
    return this.sourceSymbol(esi);
  }

  /** The first n repair symbols. */
  private makePool(n: number): Buffer[] {
    loadRaptorqWasm();
    const enc = Encoder.with_defaults(this.data, this.T);
    let packets: Uint8Array[];
    try {
      packets = enc.encode(n);
    } finally {
      // The packets are JS copies, so the wasm encoder can go at once.
      enc.free();
    }
    if (packets.length !== this.K + n) {
      throw new LcsyncError('INTERNAL', `raptorq returned ${packets.length} packets, expected ${this.K + n}`);
    }
    const pool: Buffer[] = [];
    for (let j = 0; j < n; j++) {
      const p = packets[this.K + j]!;
      const npmId = (p[1]! << 16) | (p[2]! << 8) | p[3]!;
      // Repair ids come in order from K' (npm numbering); wire ESI = id - (K' - K)
      // = K + j, which nextRepair() relies on. Anything else means the binding
      // is not the one this translation was measured on.
      if (p.length !== PID_LEN + this.T || p[0] !== 0 || npmId !== this.KP + j) {
        throw new LcsyncError('INTERNAL', `raptorq repair packet ${j} has an unexpected header`);
      }
      pool.push(Buffer.from(p.buffer, p.byteOffset + PID_LEN, this.T));
    }
    return pool;
  }

  private checkLive(): void {
    if (this.freed) throw new LcsyncError('INTERNAL', 'ObjectEncoder used after free()');
  }
}

/**
 * Room for K source symbols of T bytes. Not zeroed: every byte of it is written (a whole symbol per source
 * slot, by add() or by the small-block code's decode) before the object is returned, and a tree
 * object's zeroing was a megabyte of memset per bundle part. Never a slice of Node's shared pool:
 * the object returned is a view of it, kept for the life of the object.
 */
function sourceSpace(bytes: number): Buffer {
  return Buffer.allocUnsafeSlow(bytes);
}

/**
 * Collects symbols of one object of known length and returns the object once
 * it can be rebuilt. All K source symbols are simply concatenated; the wasm
 * decoder is only created when a repair symbol arrives, and freed as soon as
 * it has produced the object or free() is called.
 *
 * The result is NOT verified: check it against the OID (and the tree) before
 * use. A failed check means a forged or corrupt symbol was among those fed;
 * start over with a new decoder.
 */
export class ObjectDecoder {
  /** F, the object length in bytes. */
  readonly length: number;
  /** Source symbols: ceil(F / T). */
  readonly K: number;
  /** T, the symbol size: 1024 (the C protocol) or LARGE_SYMBOL_SIZE. */
  readonly T: number;
  /** K' from RFC 6330 table 2. */
  readonly KP: number;
  /** Source symbols kept here, so that a complete set needs no wasm (allocated on first source symbol). */
  private source: Buffer | undefined;
  private readonly haveSource: Uint8Array;
  private sourceCount = 0;
  /** Made with a space of its own (the constructor's `space`): addAssembled() may be used. */
  private readonly spaced: boolean;
  private readonly repairSeen = new Set<number>();
  /**
   * Whether K' <= FAST_MAX_K_PRIME, so the small-block code decodes (SmallBlockCode.of, made at the
   * first repair symbol: an object whose source symbols all come never needs it, and the first
   * code a process makes costs tens of milliseconds), and the repair symbols kept for it by internal id.
   */
  private readonly small: boolean;
  private readonly repairs = new Map<number, Uint8Array>();
  private wasm: Decoder | undefined;
  /** One packet buffer, reused: wasm copies it into its own memory on every call. */
  private readonly packet: Buffer;
  private finished = false;

  /**
   * `space`: where to keep the source symbols and decode the object (at least K * T bytes;
   * contents need not be zero, and may already hold symbols that add() is then given in place), so
   * that a receiver assembling chunks in its own buffer decodes there instead of into a new one.
   */
  constructor(length: number, space?: Buffer, symbolSize = SYMBOL_SIZE) {
    checkLength(length);
    checkSymbolSize(symbolSize);
    this.length = length;
    this.T = symbolSize;
    this.K = sourceSymbols(length, symbolSize);
    this.packet = Buffer.alloc(PID_LEN + symbolSize);
    this.spaced = space !== undefined && space.length >= this.K * this.T;
    if (this.spaced) this.source = space!.subarray(0, this.K * this.T);
    this.KP = kPrime(this.K);
    this.haveSource = new Uint8Array(this.K);
    this.small = this.KP <= FAST_MAX_K_PRIME;
  }

  /** Distinct symbols accepted so far. */
  get received(): number {
    return this.sourceCount + this.repairSeen.size;
  }

  /** True once the object has been returned or the decoder freed; add() then ignores everything. */
  get done(): boolean {
    return this.finished;
  }

  /**
   * Add the symbol with wire ESI `esi`. Returns the object (exactly F bytes,
   * unverified) on the call that completes it, else undefined. Duplicate ESIs
   * are ignored; a repair ESI whose translated id would not fit in 24 bits is
   * dropped (chance about (K'-K) / 2^24). Throws RangeError when `esi` is not
   * a 24-bit number or `symbol` is not T bytes: such input must have been
   * refused by decodeDatagram.
   */
  add(esi: number, symbol: Uint8Array): Buffer | undefined {
    if (!Number.isInteger(esi) || esi < 0 || esi > MAX_ESI) throw new RangeError(`ESI ${esi} is not a 24-bit number`);
    if (symbol.length !== this.T) throw new RangeError(`symbol must be ${this.T} bytes, got ${symbol.length}`);
    if (this.finished) return undefined;
    if (esi < this.K) return this.addSource(esi, symbol);
    return this.addRepair(esi, symbol);
  }

  /**
   * add() for what a receiver's native assembler handed over: the source symbols `sourceEsis` are
   * already in place in the `space` this decoder was made with (nothing is copied), and
   * `repair` holds the repair symbols `repairEsis` one after another. `repair` is kept, not copied:
   * it must not change while the decoder lives. Tries to decode once, after all of them; returns
   * the object as add() does. Needs a decoder made with a space (throws otherwise).
   */
  addAssembled(sourceEsis: ArrayLike<number>, repairEsis: ArrayLike<number>, repair: Buffer): Buffer | undefined {
    if (!this.spaced) throw new RangeError('addAssembled: the decoder has no space of its own');
    if (repair.length < repairEsis.length * this.T) throw new RangeError(`addAssembled: ${repairEsis.length} repair symbols in ${repair.length} bytes`);
    if (this.finished) return undefined;
    for (let i = 0; i < sourceEsis.length; i++) {
      const esi = sourceEsis[i]!;
      if (!Number.isInteger(esi) || esi < 0 || esi >= this.K) throw new RangeError(`source ESI ${esi} of ${this.K}`);
      if (this.haveSource[esi]) continue;
      this.haveSource[esi] = 1;
      this.sourceCount++;
    }
    if (!this.small) {
      // The wasm decoder takes its symbols one by one (rare: chunks are small-block objects).
      let out: Buffer | undefined;
      for (let i = 0; i < repairEsis.length && !out; i++) out = this.add(repairEsis[i]!, repair.subarray(i * this.T, (i + 1) * this.T));
      return out ?? (this.sourceCount === this.K ? this.complete() : undefined);
    }
    for (let i = 0; i < repairEsis.length; i++) {
      const esi = repairEsis[i]!;
      if (!Number.isInteger(esi) || esi < this.K || esi > MAX_ESI) throw new RangeError(`repair ESI ${esi} of ${this.K}`);
      this.keepRepair(esi, repair.subarray(i * this.T, (i + 1) * this.T), false);
    }
    if (this.sourceCount === this.K) return this.complete();
    return this.repairs.size > 0 ? this.solve() : undefined;
  }

  /** Release the wasm decoder and buffers. */
  free(): void {
    this.finished = true;
    this.source = undefined;
    this.repairSeen.clear();
    this.repairs.clear();
    this.dropWasm();
  }

  private addSource(esi: number, symbol: Uint8Array): Buffer | undefined {
    if (this.haveSource[esi]) return undefined;
    this.haveSource[esi] = 1;
    this.sourceCount++;
    const src = (this.source ??= sourceSpace(this.K * this.T));
    src.set(symbol, esi * this.T);
    if (this.sourceCount === this.K) return this.complete();
    if (this.small) return this.repairs.size > 0 ? this.solve() : undefined;
    return this.wasm ? this.feed(esi, symbol) : undefined;
  }

  private addRepair(esi: number, symbol: Uint8Array): Buffer | undefined {
    if (this.small) return this.keepRepair(esi, symbol, true) ? this.solve() : undefined;
    const id = esi + (this.KP - this.K);
    if (id > MAX_ESI || this.repairSeen.has(esi)) return undefined;
    this.repairSeen.add(esi);
    if (!this.wasm) {
      loadRaptorqWasm();
      this.wasm = Decoder.with_defaults(BigInt(this.length), this.T);
      // Catch the new decoder up on the source symbols held so far. It cannot
      // complete with fewer than K symbols, so the results are not needed.
      if (this.source) {
        for (let s = 0; s < this.K; s++) {
          if (this.haveSource[s]) this.feed(s, this.source.subarray(s * this.T, (s + 1) * this.T));
        }
      }
    }
    return this.feed(id, symbol);
  }

  /**
   * Small-block code: keep repair symbol `esi` for solve() (a copy with `copy`, else the caller's bytes, which
   * must not change); false when it is a duplicate, its id does not fit, or enough are held already.
   */
  private keepRepair(esi: number, symbol: Uint8Array, copy: boolean): boolean {
    const id = esi + (this.KP - this.K);
    if (id > MAX_ESI || this.repairSeen.has(esi)) return false;
    // Enough to replace every source symbol twice over; more can only come from a
    // sender gone wrong, and must not grow without bound.
    if (this.repairs.size >= this.K + MAX_EXTRA_REPAIRS) return false;
    this.repairSeen.add(esi);
    this.repairs.set(id, copy ? Buffer.from(symbol) : symbol);
    return true;
  }

  /** Small-block code: the object, once the repair symbols held determine the missing source symbols. */
  private solve(): Buffer | undefined {
    if (this.sourceCount + this.repairs.size < this.K) return undefined;
    const code = SmallBlockCode.of(this.KP);
    const src = (this.source ??= sourceSpace(this.K * this.T));
    if (!code.decode(this.K, (j) => this.haveSource[j] === 1, src, this.repairs)) return undefined;
    const out = src.subarray(0, this.length);
    this.finish();
    return out;
  }

  /** Every source symbol is in: systematic code, they are the object itself. */
  private complete(): Buffer {
    const out = this.source!.subarray(0, this.length);
    this.finish();
    return out;
  }

  /** Hand one packet (npm id numbering) to wasm; return the object if that completed it. */
  private feed(npmId: number, symbol: Uint8Array): Buffer | undefined {
    const w = this.wasm;
    if (!w) return undefined;
    const p = this.packet;
    p.writeUInt32BE(npmId, 0); // SBN 0, 24-bit id (checked by the callers)
    p.set(symbol, PID_LEN);
    let out: Uint8Array | undefined;
    try {
      out = w.decode(p);
    } catch (e) {
      // A panic leaves this decoder unusable; nothing more can come of it.
      this.finished = true;
      this.wasm = undefined; // freeing a panicked object throws again; its memory is lost
      throw new LcsyncError('INTERNAL', `raptorq decoder failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    if (out === undefined) return undefined;
    if (out.length !== this.length) {
      this.finish();
      throw new LcsyncError('INTERNAL', `raptorq decoded ${out.length} bytes, expected ${this.length}`);
    }
    this.finish();
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  private finish(): void {
    this.finished = true;
    this.source = undefined;
    this.repairs.clear();
    this.dropWasm();
  }

  private dropWasm(): void {
    const w = this.wasm;
    this.wasm = undefined;
    w?.free();
  }
}
