/**
 * Linear combinations of symbols over GF(256), the one operation RaptorQ
 * encoding and decoding spend their time in (rfc6330.ts).
 *
 * Done in the addon (native/gf256.c: AVX2, SSSE3 or NEON byte shuffles on the
 * symbols where they lie) when it is there, else in a small WebAssembly module
 * with 128-bit SIMD (native/gf256.wat, compiled into gf256-wasm.ts by
 * scripts/build-wasm.js): a repair symbol of a 32 KiB chunk takes 11 us in
 * wasm instead of 95 us with the JavaScript table walk, which stays as the
 * fallback for a runtime without either and for symbols wasm does not take.
 * Why the addon first: compiling the wasm module paged V8's wasm decoder and
 * optimizing compiler into every receiver that decoded a chunk (4.5 MiB of
 * peak RSS at 5% loss), and the wasm path copies each symbol in and the
 * result out. LCSYNC_NO_NATIVE_GF256=1 keeps to wasm (to measure both).
 */
import { loadAddon } from '../base/addon.js';
import { GF256_WASM_BASE64 } from './gf256-wasm.js';

/** dst ^= c * src in JavaScript (set by rfc6330.ts, which owns the field tables). */
export type MulAdd = (dst: Uint8Array, src: Uint8Array, c: number) => void;

// The WebAssembly global, as far as it is used here (tsconfig's lib has no DOM, where its types live).
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
};

interface Gf256Exports {
  memory: { buffer: ArrayBuffer };
  mulAdd(dst: number, src: number, len: number, c: number): void;
  combine(dst: number, base: number, count: number, len: number, w: number): void;
}

/** Largest symbol the wasm path takes: symbols are 1024 or 1368 bytes on the wire, 1376 rounded up to 16. */
const MAX_LEN = 1376;
const TABLES = 0;
const OUT = 8192;
const WEIGHTS = OUT + 1536;
const SYMBOLS = WEIGHTS + 1024;

let wasm: { x: Gf256Exports; mem: Uint8Array; maxSymbols: number } | undefined;

/** The addon's combine, with the nibble tables it is handed at each call (made once from the field's mul). */
let native: { combine: NativeCombine; combineAt: NativeCombineAt; tables: Uint8Array } | undefined;
type NativeCombine = (out: Uint8Array, symbols: Uint8Array[], weights: Uint8Array, count: number, tables: Uint8Array) => void;
type NativeCombineAt = (out: Uint8Array, base: Uint8Array, offsets: Uint32Array, weights: Uint8Array, count: number, tables: Uint8Array) => void;

/** 32 bytes per factor c: c * 0..15, then c * 0x00, 0x10, .., 0xf0 (the layout of native/gf256.c and .wat). */
function nibbleTables(mul: (c: number, x: number) => number): Uint8Array {
  const t = new Uint8Array(256 * 32);
  for (let c = 0; c < 256; c++) {
    for (let n = 0; n < 16; n++) {
      t[c * 32 + n] = mul(c, n);
      t[c * 32 + 16 + n] = mul(c, n << 4);
    }
  }
  return t;
}

/** Use the addon's combine when it has one (and LCSYNC_NO_NATIVE_GF256 is not 1); whether it does. */
function initNative(mul: (c: number, x: number) => number): boolean {
  if (process.env.LCSYNC_NO_NATIVE_GF256 === '1') return false;
  const addon = loadAddon().addon;
  if (!addon?.gf256Combine || !addon.gf256CombineAt) return false;
  native = { combine: addon.gf256Combine, combineAt: addon.gf256CombineAt, tables: nibbleTables(mul) };
  return true;
}

/** Load the module and fill its nibble tables from `mul` (mul(c, x) = c * x); false when wasm SIMD is missing. */
export function initSymbolMath(mul: (c: number, x: number) => number): boolean {
  if (process.env.LCSYNC_NO_WASM_SIMD === '1') return false;
  try {
    const mod = new WebAssembly.Module(Buffer.from(GF256_WASM_BASE64, 'base64'));
    const x = new WebAssembly.Instance(mod).exports as unknown as Gf256Exports;
    const mem = new Uint8Array(x.memory.buffer);
    mem.set(nibbleTables(mul), TABLES);
    wasm = { x, mem, maxSymbols: Math.min(SYMBOLS - WEIGHTS, Math.floor((mem.length - SYMBOLS) / MAX_LEN)) };
    return true;
  } catch {
    // No WebAssembly SIMD here (or no memory): the JavaScript path does the same work.
    wasm = undefined;
    return false;
  }
}

/** The multiplication deferSymbolMath() was given, until the module is loaded on first use. */
let deferredMul: ((c: number, x: number) => number) | undefined;

/**
 * Choose the addon or load the wasm module (initSymbolMath) only when combine() is first called: a run
 * that never makes or uses a repair symbol (a receiver on a clean link) pays for neither (the wasm
 * instance and its compilation: about 5 MiB of resident memory).
 */
export function deferSymbolMath(mul: (c: number, x: number) => number): void {
  deferredMul = mul;
  lastMul = mul;
}

/** The multiplication last given (forceSymbolMath chooses again with it). */
let lastMul: ((c: number, x: number) => number) | undefined;

function loadDeferred(): void {
  if (deferredMul === undefined) return;
  const mul = deferredMul;
  deferredMul = undefined;
  if (!initNative(mul)) initSymbolMath(mul);
}

/** Where combine() runs: 'native' (the addon), 'wasm' or 'js' (choosing if deferred). */
export function symbolMathEngine(): 'native' | 'wasm' | 'js' {
  loadDeferred();
  return native ? 'native' : wasm ? 'wasm' : 'js';
}

/**
 * Use one engine from now on, for tests and benchmarks that compare them: 'native' (false without the
 * addon's function), 'wasm' (false without wasm SIMD) or 'js'. Returns whether it is in use.
 */
export function forceSymbolMath(engine: 'native' | 'wasm' | 'js'): boolean {
  const mul = deferredMul ?? lastMul;
  if (!mul) return false;
  deferredMul = undefined;
  native = undefined;
  wasm = undefined;
  if (engine === 'native') return initNative(mul);
  if (engine === 'wasm') return initSymbolMath(mul);
  return true;
}

/** Symbol lists, offsets and weights handed to the addon, one set per nesting level (sym() may call combine()). */
const nativeSymbols: Uint8Array[][] = [];
const nativeOffsets: Uint32Array[] = [];
const nativeWeights: Uint8Array[] = [];
let nativeDepth = 0;
/** Stands in for the symbols of zero weight, which are never fetched (and never read by the addon). */
const NO_SYMBOL = new Uint8Array(0);

function combineNative(n: NonNullable<typeof native>, out: Uint8Array, count: number, sym: (j: number) => Uint8Array, w: ArrayLike<number>): void {
  const level = nativeDepth++;
  try {
    const symbols = (nativeSymbols[level] ??= []);
    let offsets = nativeOffsets[level];
    if (!offsets || offsets.length < count) offsets = nativeOffsets[level] = new Uint32Array(Math.max(count, 64));
    let weights = w instanceof Uint8Array ? w : nativeWeights[level];
    if (weights !== w) {
      if (!weights || weights.length < count) weights = nativeWeights[level] = new Uint8Array(Math.max(count, 64));
      for (let j = 0; j < count; j++) weights[j] = w[j]!;
    }
    // Symbols in one buffer (an encoder's source symbols: one chunk) go as offsets into it.
    let buffer: ArrayBufferLike | undefined;
    let oneBuffer = true;
    for (let j = 0; j < count; j++) {
      if (weights[j] === 0) {
        symbols[j] = NO_SYMBOL;
        continue;
      }
      const s = sym(j);
      symbols[j] = s;
      offsets[j] = s.byteOffset;
      if (buffer === undefined) buffer = s.buffer;
      else if (s.buffer !== buffer) oneBuffer = false;
    }
    if (buffer !== undefined && oneBuffer) n.combineAt(out, new Uint8Array(buffer), offsets, weights, count, n.tables);
    else n.combine(out, symbols, weights, count, n.tables);
    // Hold no symbol (and so no chunk's buffer) past the call.
    symbols.fill(NO_SYMBOL, 0, count);
  } finally {
    nativeDepth--;
  }
}

/**
 * out ^= sum over j < count of w[j] * symbol j, where symbol j is data[j * T, (j + 1) * T) and
 * T = out.length: combine() for symbols that lie one after another (an encoder's source), without
 * a view per symbol.
 */
export function combineConsecutive(out: Uint8Array, data: Uint8Array, count: number, w: Uint8Array, jsMulAdd: MulAdd): void {
  if (deferredMul !== undefined) loadDeferred();
  const len = out.length;
  if (count * len > data.length || w.length < count) throw new RangeError(`combineConsecutive: ${count} symbols of ${len} bytes in ${data.length}, ${w.length} weights`);
  if (native) {
    const offsets = (consecutiveOffsets[len] ??= Uint32Array.from({ length: MAX_CONSECUTIVE }, (_, j) => j * len));
    if (count <= MAX_CONSECUTIVE) return native.combineAt(out, data, offsets, w, count, native.tables);
  }
  combine(out, count, (j) => data.subarray(j * len, (j + 1) * len), w, jsMulAdd);
}

/** Offsets j * T of consecutive symbols, by T (one symbol size on the wire, so one entry in practice). */
const consecutiveOffsets: Uint32Array[] = [];
/** Most symbols combineConsecutive hands the addon at once (K' <= 64 for the small-block code). */
const MAX_CONSECUTIVE = 64;

/**
 * out ^= sum over j < count of w[j] * sym(j). All symbols are out.length
 * bytes. `jsMulAdd` does the work when neither the addon nor the wasm module can.
 */
export function combine(out: Uint8Array, count: number, sym: (j: number) => Uint8Array, w: ArrayLike<number>, jsMulAdd: MulAdd): void {
  if (deferredMul !== undefined) loadDeferred();
  if (native) return combineNative(native, out, count, sym, w);
  const len = out.length;
  // The module works in 16-byte steps: a symbol whose length is not a multiple of 16 (1368) lies in a
  // slot rounded up, and the bytes past it, whatever they hold, only make bytes of OUT that are not copied out.
  const stride = (len + 15) & ~15;
  const m = wasm;
  if (!m || stride > MAX_LEN) {
    for (let j = 0; j < count; j++) if (w[j] !== 0) jsMulAdd(out, sym(j), w[j]!);
    return;
  }
  // Fetch every symbol before touching the module's memory: sym() may itself call combine().
  const picked: Uint8Array[] = [];
  const factors: number[] = [];
  for (let j = 0; j < count; j++) {
    if (w[j] === 0) continue;
    picked.push(sym(j));
    factors.push(w[j]!);
  }
  const mem = m.mem;
  mem.set(out, OUT);
  for (let start = 0; start < picked.length; start += m.maxSymbols) {
    const n = Math.min(m.maxSymbols, picked.length - start);
    for (let i = 0; i < n; i++) {
      mem.set(picked[start + i]!, SYMBOLS + i * stride);
      mem[WEIGHTS + i] = factors[start + i]!;
    }
    m.x.combine(OUT, SYMBOLS, n, stride, WEIGHTS);
  }
  out.set(mem.subarray(OUT, OUT + len));
}
