/**
 * The wasm SIMD symbol arithmetic (native/gf256.wat) against the JavaScript
 * table walk, and the committed module against its source.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { gfMul, mulAdd } from '../src/core/fec/rfc6330.js';
import { combine, symbolMathInWasm } from '../src/core/fec/symbolmath.js';

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('symbolmath', () => {
  it('runs in wasm SIMD on Node 20', () => {
    expect(symbolMathInWasm()).toBe(true);
  });

  it('combine() equals the JavaScript multiply-adds, for every factor', () => {
    const syms = Array.from({ length: 256 }, (_, j) => bytes(1024, j + 1));
    const w = Uint8Array.from({ length: 256 }, (_, j) => j); // 0 (skipped) .. 255
    const init = bytes(1024, 999);
    const viaWasm = Uint8Array.from(init);
    combine(viaWasm, 256, (j) => syms[j]!, w, mulAdd);
    const viaJs = Uint8Array.from(init);
    for (let j = 0; j < 256; j++) mulAdd(viaJs, syms[j]!, w[j]!);
    expect(Buffer.from(viaWasm).equals(Buffer.from(viaJs))).toBe(true);
    // And byte by byte against the field itself.
    const one = new Uint8Array(1024);
    combine(one, 1, () => syms[7]!, [0x8e], mulAdd);
    for (let i = 0; i < 1024; i += 61) expect(one[i]).toBe(gfMul(syms[7]![i]!, 0x8e));
  });

  it('takes symbols of other sizes through the JavaScript path', () => {
    const a = bytes(1000, 3);
    const out = new Uint8Array(1000);
    combine(out, 1, () => a, [1], mulAdd);
    expect(Buffer.from(out).equals(Buffer.from(a))).toBe(true);
  });

  it('the committed module is what native/gf256.wat compiles to', () => {
    // Throws (non-zero exit) when src/core/fec/gf256-wasm.ts is out of date.
    execFileSync(process.execPath, ['scripts/build-wasm.js', '--check'], { stdio: 'pipe' });
  });
});
