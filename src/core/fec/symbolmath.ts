/**
 * Linear combinations of symbols over GF(256), the one operation RaptorQ
 * encoding and decoding spend their time in (rfc6330.ts).
 *
 * Done in a small WebAssembly module with 128-bit SIMD (native/gf256.wat,
 * compiled into gf256-wasm.ts by scripts/build-wasm.js): a repair symbol of
 * a 32 KiB chunk takes 11 us instead of 95 us with the JavaScript table walk,
 * which stays as the fallback for a runtime without wasm SIMD and for symbols
 * the module does not take.
 */
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

const TABLES = 0;
const OUT = 8192;
const WEIGHTS = 9216;
const SYMBOLS = 10240;
/** Largest symbol the wasm path takes; symbols are 1024 bytes on the wire. */
const MAX_LEN = 1024;

let wasm: { x: Gf256Exports; mem: Uint8Array; maxSymbols: number } | undefined;

/** Load the module and fill its nibble tables from `mul` (mul(c, x) = c * x); false when wasm SIMD is missing. */
export function initSymbolMath(mul: (c: number, x: number) => number): boolean {
  if (process.env.LCSYNC_NO_WASM_SIMD === '1') return false;
  try {
    const mod = new WebAssembly.Module(Buffer.from(GF256_WASM_BASE64, 'base64'));
    const x = new WebAssembly.Instance(mod).exports as unknown as Gf256Exports;
    const mem = new Uint8Array(x.memory.buffer);
    for (let c = 0; c < 256; c++) {
      for (let n = 0; n < 16; n++) {
        mem[TABLES + c * 32 + n] = mul(c, n);
        mem[TABLES + c * 32 + 16 + n] = mul(c, n << 4);
      }
    }
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
 * Load the module (initSymbolMath) only when combine() is first called: a run that never makes or
 * uses a repair symbol (a receiver on a clean link) does not pay for its instance (about 5 MiB of
 * resident memory).
 */
export function deferSymbolMath(mul: (c: number, x: number) => number): void {
  deferredMul = mul;
}

function loadDeferred(): void {
  if (deferredMul === undefined) return;
  const mul = deferredMul;
  deferredMul = undefined;
  initSymbolMath(mul);
}

/** Whether combine() runs in wasm SIMD (loading the module if deferred). */
export function symbolMathInWasm(): boolean {
  loadDeferred();
  return wasm !== undefined;
}

/**
 * out ^= sum over j < count of w[j] * sym(j). All symbols are out.length
 * bytes. `jsMulAdd` does the work when the wasm module cannot.
 */
export function combine(out: Uint8Array, count: number, sym: (j: number) => Uint8Array, w: ArrayLike<number>, jsMulAdd: MulAdd): void {
  if (deferredMul !== undefined) loadDeferred();
  const len = out.length;
  const m = wasm;
  if (!m || len > MAX_LEN || len % 16 !== 0) {
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
      mem.set(picked[start + i]!, SYMBOLS + i * len);
      mem[WEIGHTS + i] = factors[start + i]!;
    }
    m.x.combine(OUT, SYMBOLS, n, len, WEIGHTS);
  }
  out.set(mem.subarray(OUT, OUT + len));
}
