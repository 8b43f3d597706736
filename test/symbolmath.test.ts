/**
 * The symbol arithmetic in the addon (native/gf256.c: its SIMD and its portable C) and in wasm SIMD
 * (native/gf256.wat) against the JavaScript table walk, and the committed module against its source.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAddon } from '../src/core/base/addon.js';
import { gfMul, mulAdd } from '../src/core/fec/rfc6330.js';
import { combine, combineConsecutive, forceSymbolMath, symbolMathEngine } from '../src/core/fec/symbolmath.js';

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
  afterEach(() => {
    forceSymbolMath('native');
  });

  it('runs in the addon on Node 20 where it is built, and wasm SIMD is there for the fallback', () => {
    expect(symbolMathEngine()).toBe('native');
    expect(forceSymbolMath('wasm')).toBe(true);
    expect(symbolMathEngine()).toBe('wasm');
  });

  for (const engine of ['native', 'wasm', 'js'] as const) {
    describe(engine, () => {
      beforeEach(() => {
        expect(forceSymbolMath(engine)).toBe(true);
        expect(symbolMathEngine()).toBe(engine);
      });

      it('combine() equals the JavaScript multiply-adds, for every factor', () => {
        const syms = Array.from({ length: 256 }, (_, j) => bytes(1024, j + 1));
        const w = Uint8Array.from({ length: 256 }, (_, j) => j); // 0 (skipped) .. 255
        const init = bytes(1024, 999);
        const combined = Uint8Array.from(init);
        const fetched: number[] = [];
        combine(combined, 256, (j) => (fetched.push(j), syms[j]!), w, mulAdd);
        const viaJs = Uint8Array.from(init);
        for (let j = 0; j < 256; j++) mulAdd(viaJs, syms[j]!, w[j]!);
        expect(Buffer.from(combined).equals(Buffer.from(viaJs))).toBe(true);
        // A symbol of weight 0 is never asked for (sym() may be costly: a decoder's residuals).
        expect(fetched).not.toContain(0);
        expect(fetched).toHaveLength(255);
        // And byte by byte against the field itself.
        const one = new Uint8Array(1024);
        combine(one, 1, () => syms[7]!, [0x8e], mulAdd);
        for (let i = 0; i < 1024; i++) expect(one[i]).toBe(gfMul(syms[7]![i]!, 0x8e));
      });

      it('combines many symbols of the larger size (1368 bytes, not a multiple of 16) as the JavaScript multiply-adds do', () => {
        const syms = Array.from({ length: 200 }, (_, j) => bytes(1368, j + 7));
        const w = Uint8Array.from({ length: 200 }, (_, j) => (j * 37 + 1) & 255);
        const init = bytes(1368, 4242);
        const combined = Uint8Array.from(init);
        combine(combined, 200, (j) => syms[j]!, w, mulAdd);
        const viaJs = Uint8Array.from(init);
        for (let j = 0; j < 200; j++) mulAdd(viaJs, syms[j]!, w[j]!);
        expect(Buffer.from(combined).equals(Buffer.from(viaJs))).toBe(true);
      });

      it('takes symbols of odd sizes and offsets, and weights in a plain array', () => {
        for (const len of [1, 15, 17, 31, 33, 1000, 1040, 1368, 1376, 1377]) {
          const backing = bytes(len + 3, len);
          const a = backing.subarray(3); // an odd byte offset
          const b = bytes(len, len + 1);
          const out = bytes(len, 5);
          const expected = Uint8Array.from(out);
          mulAdd(expected, a, 0x53);
          mulAdd(expected, b, 0xff);
          combine(out, 2, (j) => (j === 0 ? a : b), [0x53, 0xff], mulAdd);
          expect(Buffer.from(out).equals(Buffer.from(expected))).toBe(true);
        }
      });

      it('combineConsecutive() equals combine() on views, in a buffer at an odd offset', () => {
        for (const [len, count] of [[1024, 32], [1024, 64], [16, 3], [1000, 5], [1024, 0], [1024, 65]]) {
          const backing = bytes(len * count + 7, len + count);
          const data = backing.subarray(5, 5 + len * count);
          const w = Uint8Array.from({ length: count }, (_, j) => (j * 91 + 3) & 255);
          const a = bytes(len, 9);
          const b = Uint8Array.from(a);
          combine(a, count, (j) => data.subarray(j * len, (j + 1) * len), w, mulAdd);
          combineConsecutive(b, data, count, w, mulAdd);
          expect(Buffer.from(b).equals(Buffer.from(a)), `${count} symbols of ${len}`).toBe(true);
        }
        expect(() => combineConsecutive(new Uint8Array(1024), new Uint8Array(2047), 2, new Uint8Array(2), mulAdd)).toThrow(RangeError);
      });

      it('lets sym() itself combine (a decoder computes its residuals on demand)', () => {
        const s = Array.from({ length: 8 }, (_, j) => bytes(1024, 50 + j));
        const inner = (j: number): Uint8Array => {
          const v = Uint8Array.from(s[j]!);
          combine(v, 8, (k) => s[k]!, Uint8Array.from({ length: 8 }, (_, k) => (k === j ? 0 : k + 1)), mulAdd);
          return v;
        };
        const out = new Uint8Array(1024);
        combine(out, 8, inner, Uint8Array.from([3, 0, 7, 1, 9, 200, 0, 255]), mulAdd);
        const expected = new Uint8Array(1024);
        [3, 0, 7, 1, 9, 200, 0, 255].forEach((f, j) => {
          const v = Uint8Array.from(s[j]!);
          for (let k = 0; k < 8; k++) if (k !== j) mulAdd(v, s[k]!, k + 1);
          mulAdd(expected, v, f);
        });
        expect(Buffer.from(out).equals(Buffer.from(expected))).toBe(true);
      });
    });
  }

  it("the addon refuses a symbol outside its buffer or shorter than out, and weights short of count", () => {
    const addon = loadAddon().addon!;
    const tables = new Uint8Array(8192);
    const out = new Uint8Array(1024);
    const w = Uint8Array.from([1, 1]);
    expect(() => addon.gf256CombineAt!(out, new Uint8Array(2048), Uint32Array.from([0, 1025]), w, 2, tables)).toThrow(RangeError);
    expect(() => addon.gf256CombineAt!(out, new Uint8Array(2048), Uint32Array.from([0, 1024]), w, 3, tables)).toThrow(RangeError);
    expect(() => addon.gf256CombineAt!(out, new Uint8Array(2048), Uint32Array.from([0, 1024]), w, 2, new Uint8Array(100))).toThrow(TypeError);
    expect(() => addon.gf256Combine!(out, [new Uint8Array(1024), new Uint8Array(1023)], w, 2, tables)).toThrow(RangeError);
    expect(() => addon.gf256Combine!(out, [new Uint8Array(1024)], w, 2, tables)).toThrow(RangeError);
    // A symbol of weight 0 is not looked at at all.
    addon.gf256CombineAt!(out, new Uint8Array(2048), Uint32Array.from([0, 99999]), Uint8Array.from([1, 0]), 2, tables);
    addon.gf256CombineAt!(out, new Uint8Array(2048), Uint32Array.from([0, 1024]), w, 2, tables);
  });

  it("the addon's SIMD paths equal its portable C and the wasm module (children with LCSYNC_GF256_ISA)", () => {
    // The built modules (npm test builds first), in a child: the engine is chosen once per process.
    const dist = (m: string): string => JSON.stringify(pathToFileURL(path.resolve(`dist/core/fec/${m}.js`)).href);
    const script = `
      import { combine, symbolMathEngine } from ${dist('symbolmath')};
      import { mulAdd } from ${dist('rfc6330')};
      const out = new Uint8Array(1040);
      const syms = Array.from({ length: 64 }, (_, j) => Uint8Array.from({ length: 1040 }, (_, i) => (i * 31 + j * 7 + ((i * j) >> 3)) & 255));
      combine(out, 64, (j) => syms[j], Uint8Array.from({ length: 64 }, (_, j) => (j * 37 + 1) & 255), mulAdd);
      process.stdout.write(symbolMathEngine() + ' ' + Buffer.from(out).toString('hex'));
    `;
    const run = (env: NodeJS.ProcessEnv): string =>
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
    const simd = run({});
    const portable = run({ LCSYNC_GF256_ISA: 'portable' });
    const wasmRun = run({ LCSYNC_NO_NATIVE_GF256: '1' });
    expect(simd.startsWith('native ')).toBe(true);
    expect(wasmRun.startsWith('wasm ')).toBe(true);
    expect(portable).toBe(simd);
    // On x86-64 the 16-byte path too (the default there is AVX2 where the CPU has it).
    if (process.arch === 'x64') expect(run({ LCSYNC_GF256_ISA: 'ssse3' })).toBe(simd);
    expect(wasmRun.slice(5)).toBe(simd.slice(7));
  });

  it('the committed module is what native/gf256.wat compiles to', () => {
    // Throws (non-zero exit) when src/core/fec/gf256-wasm.ts is out of date.
    execFileSync(process.execPath, ['scripts/build-wasm.js', '--check'], { stdio: 'pipe' });
  });
});
