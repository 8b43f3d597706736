/**
 * The small-block RaptorQ code (src/core/fec/rfc6330.ts) against the npm raptorq
 * encoder: every K' it serves gives byte-identical repair symbols, and decodes
 * every loss pattern tried. The LCRQ vectors (test/fec.test.ts) cover the C side.
 */
import { describe, expect, it } from 'vitest';
import { Encoder } from 'raptorq/raptorq.js';
import { loadRaptorqWasm } from '../src/core/fec/fec.js';
import { K_PRIME_TABLE, kPrime } from '../src/core/fec/kprime.js';
import { RAND_TABLES, SYSTEMATIC_TABLE } from '../src/core/fec/rfc6330-tables.js';
import { FAST_MAX_K_PRIME, SmallBlockCode, blockParameters, degree, gfInv, gfMul, mulAdd, rand } from '../src/core/fec/rfc6330.js';
import { rng } from './rng.js';

const T = 1024;
// The raptorq package is used directly below: its wasm module must be there first.
loadRaptorqWasm();


function randomData(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const d = new Uint8Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.floor(r() * 256);
  return d;
}

/** K values whose K' the small-block code serves: the first and last K of each. */
const smallKs: number[] = [];
for (let K = 1; kPrime(K) <= FAST_MAX_K_PRIME; K++) if (K === 1 || kPrime(K) !== kPrime(K - 1) || kPrime(K + 1) !== kPrime(K)) smallKs.push(K);

describe('tables', () => {
  it('table 2 has 477 rows whose K\' column is K_PRIME_TABLE', () => {
    expect(SYSTEMATIC_TABLE.length).toBe(477 * 5);
    for (let i = 0; i < 477; i++) expect(SYSTEMATIC_TABLE[i * 5]).toBe(K_PRIME_TABLE[i]);
    expect(blockParameters(32)).toMatchObject({ KP: 32, J: 860, S: 11, H: 10, W: 43, L: 53, P: 10, P1: 11, B: 32 });
    expect(() => blockParameters(33)).toThrow(RangeError);
  });

  it('V0..V3 start with the values of RFC 6330 section 5.5', () => {
    expect(RAND_TABLES.length).toBe(1024);
    expect([RAND_TABLES[0], RAND_TABLES[256], RAND_TABLES[512], RAND_TABLES[768]]).toEqual([251291136, 807385413, 1629829892, 1191369816]);
    expect(rand(0, 0, 2 ** 20)).toBe((251291136 ^ 807385413 ^ 1629829892 ^ 1191369816) >>> 0 & 0xfffff);
  });

  it('degree() follows the distribution of section 5.3.5.2, capped at W-2', () => {
    expect(degree(0, 100)).toBe(1);
    expect(degree(5242, 100)).toBe(1);
    expect(degree(5243, 100)).toBe(2);
    expect(degree(1048575, 100)).toBe(30);
    expect(degree(1048575, 17)).toBe(15);
  });

  it('GF(256) multiplies and inverts', () => {
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    expect(gfMul(2, 128)).toBe(0x1d); // x^8 = x^4 + x^3 + x^2 + 1
    const src = randomData(T, 1);
    for (const off of [0, 1]) {
      // Aligned (word at a time) and unaligned (byte loop) give the same result.
      const backing = new Uint8Array(T + 4);
      const dst = backing.subarray(off, off + T);
      mulAdd(dst, src, 0x53);
      for (let i = 0; i < T; i += 97) expect(dst[i]).toBe(gfMul(src[i]!, 0x53));
      mulAdd(dst, src, 0x53);
      expect(dst.every((b) => b === 0)).toBe(true);
    }
  });
});

describe('SmallBlockCode', () => {
  it(`covers K = 1..${smallKs.at(-1)} (K' <= ${FAST_MAX_K_PRIME})`, () => {
    expect(smallKs).toContain(32);
    expect(kPrime(smallKs.at(-1)! + 1)).toBeGreaterThan(FAST_MAX_K_PRIME);
    expect(() => SmallBlockCode.of(FAST_MAX_K_PRIME + 1)).toThrow(RangeError);
  });

  it.each(smallKs)('K=%i: repair symbols are byte-identical to npm raptorq', (K) => {
    const KP = kPrime(K);
    const data = randomData(K * T, K);
    const enc = Encoder.with_defaults(data, T);
    const pkts = enc.encode(40);
    enc.free();
    const code = SmallBlockCode.of(KP);
    const out = new Uint8Array(T);
    const source = (j: number) => data.subarray(j * T, (j + 1) * T);
    for (let r = 0; r < 40; r++) {
      const p = pkts[K + r]!;
      const id = (p[1]! << 16) | (p[2]! << 8) | p[3]!;
      expect(id).toBe(KP + r);
      code.encode(id, K, source, out);
      expect(Buffer.from(out).equals(Buffer.from(p.subarray(4))), `K=${K} ISI ${id}`).toBe(true);
    }
    // Source ISIs give back the source symbols (the code is systematic).
    for (const j of [0, K - 1]) {
      code.encode(j, K, source, out);
      expect(Buffer.from(out).equals(Buffer.from(source(j)))).toBe(true);
    }
  });

  it.each([1, 2, 31, 32])('K=%i: encodeFrom (consecutive symbols, a short padded tail) equals encode, within and past the weights cache', (K) => {
    const KP = kPrime(K);
    const code = SmallBlockCode.of(KP);
    for (const length of [K * T, K * T - 1, (K - 1) * T + 1]) {
      const data = randomData(length, K + length);
      const full = Math.floor(length / T);
      const last = full < K ? new Uint8Array(T) : undefined;
      last?.set(data.subarray(full * T));
      const source = (j: number) => (j < full ? data.subarray(j * T, (j + 1) * T) : last!);
      // Repair ISIs in the cached range (K' .. 9 K'), past it, and a source ISI.
      for (const isi of [KP, KP + 1, 9 * KP - 1, 9 * KP, 9 * KP + 17, 0]) {
        const a = new Uint8Array(T);
        const b = new Uint8Array(T).fill(0x5a); // encodeFrom clears its output first
        code.encode(isi, K, source, a);
        code.encodeFrom(isi, K, data, full, last, b);
        expect(Buffer.from(b).equals(Buffer.from(a)), `K=${K} length ${length} ISI ${isi}`).toBe(true);
        // The cached weights are not changed by their users: the same symbol again.
        code.encodeFrom(isi, K, data, full, last, b);
        expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
      }
    }
    expect(() => code.encodeFrom(KP, K, randomData(K * T, 1), K - 1, undefined, new Uint8Array(T))).toThrow(RangeError);
  });

  it.each(smallKs)('K=%i: recovers lost source symbols from as many repair symbols, or says it cannot yet', (K) => {
    const KP = kPrime(K);
    const code = SmallBlockCode.of(KP);
    const data = randomData(K * T, 100 + K);
    const source = (j: number) => data.subarray(j * T, (j + 1) * T);
    const r = rng(K);
    for (const lost of [...new Set([1, 2, 5, K])].filter((n) => n <= K)) {
      const missing = new Set<number>();
      while (missing.size < lost) missing.add(Math.floor(r() * K));
      const repairs = new Map<number, Uint8Array>();
      const got = new Uint8Array(K * T);
      const slot = (j: number) => got.subarray(j * T, (j + 1) * T);
      for (let j = 0; j < K; j++) if (!missing.has(j)) slot(j).set(source(j));
      const have = (j: number) => !missing.has(j);
      let isi = KP + Math.floor(r() * 1000);
      // One fewer repair symbol than lost ones cannot do.
      for (let i = 0; i < lost - 1; i++) {
        const s = new Uint8Array(T);
        code.encode(isi, K, source, s);
        repairs.set(isi++, s);
      }
      const before = Buffer.from(got);
      expect(code.decode(K, have, got, repairs)).toBe(false);
      expect(Buffer.from(got).equals(before), 'nothing written when it cannot decode').toBe(true);
      let ok = false;
      for (let extra = 0; extra < 10 && !ok; extra++) {
        const s = new Uint8Array(T);
        code.encode(isi, K, source, s);
        repairs.set(isi++, s);
        ok = code.decode(K, have, got, repairs);
      }
      expect(ok, `K=${K} lost ${lost}`).toBe(true);
      expect(Buffer.from(got).equals(Buffer.from(data)), `K=${K} lost ${lost}`).toBe(true);
    }
  });
});
