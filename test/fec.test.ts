/**
 * RaptorQ layer against the LCRQ 0.2.1 vectors (the FEC of the C lcsync):
 * decoding C-made symbols in every mix, producing byte-identical symbols, and
 * the K' table.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Decoder, Encoder } from 'raptorq/raptorq.js';
import { ObjectDecoder, ObjectEncoder, loadRaptorqWasm } from '../src/core/fec/fec.js';
import { K_PRIME_TABLE, MAX_SOURCE_SYMBOLS, kPrime } from '../src/core/fec/kprime.js';
import { FAST_MAX_K_PRIME, SmallBlockCode } from '../src/core/fec/rfc6330.js';
import { LARGE_SYMBOL_SIZE, MAX_OBJECT, SYMBOL_SIZE, SYMBOL_SIZES } from '../src/core/wire/packet.js';
import { rng } from './rng.js';
import { lcrqSizes, readVector, readVectorText, vectorDir } from './vectors.js';

const PKT = 4 + SYMBOL_SIZE;
// The raptorq package is used directly below: its wasm module must be there first.
loadRaptorqWasm();

interface Packet {
  esi: number;
  symbol: Buffer;
}

interface Vector {
  name: string;
  F: number;
  K: number;
  KP: number;
  data: Buffer;
  src: Packet[];
  rep: Packet[];
}

function packets(...vector: string[]): Packet[] {
  const b = readVector(...vector);
  expect(b.length % PKT).toBe(0);
  const out: Packet[] = [];
  for (let off = 0; off < b.length; off += PKT) {
    const pid = b.readUInt32BE(off);
    expect(pid >>> 24).toBe(0); // SBN
    out.push({ esi: pid & 0xffffff, symbol: b.subarray(off + 4, off + PKT) });
  }
  return out;
}

const loaded = new Map<number, Vector>();

/** The LCRQ vector of an F-byte object, read on first use (by the tests that need it). */
function lcrqVector(size: number): Vector {
  let v = loaded.get(size);
  if (!v) {
    const name = `F${size}`;
    const meta = JSON.parse(readVectorText('lcrq', name, 'meta.json')) as { F: number; K: number; KP: number; T: number };
    expect(meta.T).toBe(SYMBOL_SIZE);
    expect(meta.F).toBe(size);
    v = {
      name,
      F: meta.F,
      K: meta.K,
      KP: meta.KP,
      data: readVector('lcrq', name, 'data.bin'),
      src: packets('lcrq', name, 'src.bin'),
      rep: packets('lcrq', name, 'rep.bin'),
    };
    loaded.set(size, v);
  }
  return v;
}

const vectors = (): Vector[] => lcrqSizes.map(lcrqVector);


function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Feed packets until the decoder returns the object; report how many it took. */
function feed(dec: ObjectDecoder, pkts: Packet[]): { out: Buffer | undefined; used: number } {
  let used = 0;
  for (const p of pkts) {
    used++;
    const out = dec.add(p.esi, p.symbol);
    if (out) return { out, used };
  }
  return { out: undefined, used };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('ObjectDecoder and the small-block code', () => {
  it('decodes an object whose source symbols all came without making its code; the first repair symbol makes it', () => {
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i * 7));
    const enc = new ObjectEncoder(data);
    expect(enc.KP).toBeLessThanOrEqual(FAST_MAX_K_PRIME);
    const source = Array.from({ length: enc.K }, (_, esi) => ({ esi, symbol: enc.sourceSymbol(esi) }));
    const repair = [enc.nextRepair(), enc.nextRepair()];
    const of = vi.spyOn(SmallBlockCode, 'of');
    expect(feed(new ObjectDecoder(data.length), source).out?.equals(data)).toBe(true);
    expect(of).not.toHaveBeenCalled();
    expect(feed(new ObjectDecoder(data.length), [...source.slice(1), ...repair]).out?.equals(data)).toBe(true);
    expect(of).toHaveBeenCalled();
    enc.free();
  });
});

it('has the vectors this test expects, and these are all of them', () => {
  expect(readdirSync(path.join(vectorDir, 'lcrq')).sort()).toEqual(lcrqSizes.map((n) => `F${n}`).sort());
  expect(vectors().map((v) => v.name)).toEqual(expect.arrayContaining(['F1', 'F1000', 'F100000', 'F32767', 'F32768', 'F32808']));
  for (const v of vectors()) {
    expect(v.data.length).toBe(v.F);
    expect(v.src.length).toBe(v.K);
    expect(v.rep.slice(0, 13).map((p) => p.esi)).toEqual([
      ...Array.from({ length: 10 }, (_, i) => v.K + i),
      1000000,
      5000000,
      16777214,
    ]);
  }
});

describe('kPrime', () => {
  it('matches meta.json of every LCRQ vector', () => {
    for (const v of vectors()) expect(kPrime(v.K), v.name).toBe(v.KP);
  });

  it('gives the values the C tool uses', () => {
    const cases: [number, number][] = [[1, 10], [2, 10], [5, 10], [10, 10], [11, 12], [13, 18], [17, 18], [32, 32], [33, 36], [98, 101], [10120, 10120], [10121, 10241], [56403, 56403]];
    for (const [K, KP] of cases) expect(kPrime(K), `K=${K}`).toBe(KP);
  });

  it('is RFC 6330 table 2: 477 increasing values ending at K\'max', () => {
    expect(K_PRIME_TABLE.length).toBe(477);
    expect(K_PRIME_TABLE[K_PRIME_TABLE.length - 1]).toBe(MAX_SOURCE_SYMBOLS);
    for (let i = 1; i < K_PRIME_TABLE.length; i++) expect(K_PRIME_TABLE[i]!).toBeGreaterThan(K_PRIME_TABLE[i - 1]!);
    // Every table value maps to itself and the next K to the next value.
    for (let i = 0; i < K_PRIME_TABLE.length; i++) {
      expect(kPrime(K_PRIME_TABLE[i]!)).toBe(K_PRIME_TABLE[i]);
      if (i + 1 < K_PRIME_TABLE.length) expect(kPrime(K_PRIME_TABLE[i]! + 1)).toBe(K_PRIME_TABLE[i + 1]);
    }
  });

  it('agrees with the npm encoder, whose first repair id is K\'', () => {
    // A cheap sample; the whole table up to K = 10120 was checked this way once.
    for (const K of [1, 9, 11, 19, 33, 100, 102, 257, 1000]) {
      const enc = Encoder.with_defaults(new Uint8Array(K * SYMBOL_SIZE), SYMBOL_SIZE);
      const pkts = enc.encode(1);
      enc.free();
      const last = pkts[pkts.length - 1]!;
      expect((last[1]! << 16) | (last[2]! << 8) | last[3]!, `K=${K}`).toBe(kPrime(K));
    }
  });

  it('refuses K outside 1..56403', () => {
    for (const K of [0, -1, 56404, 1.5, Number.NaN]) expect(() => kPrime(K)).toThrow(RangeError);
  });
});

describe.each(lcrqSizes)('LCRQ vector F%i', (size) => {
  let v: Vector;
  beforeAll(() => {
    v = lcrqVector(size);
  });

  it('decodes from all source symbols without wasm', () => {
    const spy = vi.spyOn(Decoder, 'with_defaults');
    const dec = new ObjectDecoder(v.F);
    expect(dec.K).toBe(v.K);
    const { out, used } = feed(dec, shuffle(v.src, rng(1)));
    expect(used).toBe(v.K);
    expect(out?.equals(v.data)).toBe(true);
    expect(spy).not.toHaveBeenCalled();
    expect(dec.done).toBe(true);
    dec.free();
  });

  it('decodes from a random half of the source symbols plus repair symbols', () => {
    for (const seed of [2, 3, 4]) {
      const rand = rng(seed);
      const src = shuffle(v.src, rand).slice(0, Math.floor(v.K / 2));
      // Only the random-ESI repair symbols, like a C sender's burst.
      const rep = shuffle(v.rep.slice(13), rand);
      const dec = new ObjectDecoder(v.F);
      const { out, used } = feed(dec, shuffle([...src, ...rep.slice(0, v.K - src.length + 2)], rand));
      expect(out, `seed ${seed}`).toBeDefined();
      expect(out!.equals(v.data), `seed ${seed}`).toBe(true);
      expect(used).toBeLessThanOrEqual(v.K + 2);
      dec.free();
    }
  });

  it('decodes from repair symbols only, the high ESIs first', () => {
    const dec = new ObjectDecoder(v.F);
    const high = v.rep.slice(10, 13);
    const rest = shuffle([...v.rep.slice(0, 10), ...v.rep.slice(13)], rng(5));
    const shift = v.KP - v.K;
    let expectReceived = 0;
    let out: Buffer | undefined;
    for (const p of [...high, ...rest]) {
      out = dec.add(p.esi, p.symbol);
      // A repair ESI that does not fit in 24 bits after translation is dropped.
      if (p.esi + shift <= 0xffffff) expectReceived++;
      if (out) break;
      expect(dec.received).toBe(expectReceived);
    }
    expect(out?.equals(v.data)).toBe(true);
  });

  it('decodes from repair symbols ESI K..K+9 and the random ones, in order', () => {
    const dec = new ObjectDecoder(v.F);
    const { out } = feed(dec, [...v.rep.slice(0, 10), ...v.rep.slice(13)]);
    expect(out?.equals(v.data)).toBe(true);
  });

  it('ignores duplicate ESIs, even with other bytes', () => {
    const dec = new ObjectDecoder(v.F);
    const garbage = Buffer.alloc(SYMBOL_SIZE, 0x55);
    if (v.K > 1) {
      expect(dec.add(0, v.src[0]!.symbol)).toBeUndefined();
      expect(dec.add(0, garbage)).toBeUndefined();
      expect(dec.received).toBe(1);
    }
    const first = dec.add(v.rep[0]!.esi, v.rep[0]!.symbol);
    if (v.K <= 2) {
      // K distinct symbols are (almost always) enough: this one completed the object.
      expect(first?.equals(v.data)).toBe(true);
      expect(dec.add(v.rep[0]!.esi, garbage)).toBeUndefined(); // done: nothing more is taken
      return;
    }
    expect(first).toBeUndefined();
    expect(dec.add(v.rep[0]!.esi, garbage)).toBeUndefined();
    expect(dec.received).toBe(2);
    const { out } = feed(dec, [...v.src.slice(1), ...v.rep.slice(1)]);
    expect(out?.equals(v.data)).toBe(true);
  });

  it('encodes the same source symbols as LCRQ', () => {
    const enc = new ObjectEncoder(v.data);
    expect([enc.length, enc.K, enc.KP]).toEqual([v.F, v.K, v.KP]);
    for (const p of v.src) expect(enc.sourceSymbol(p.esi).equals(p.symbol), `ESI ${p.esi}`).toBe(true);
    expect(enc.repairPoolSize).toBe(0); // no wasm for source symbols
    enc.free();
  });

  it('encodes repair symbols byte-identical to LCRQ under the same wire ESI', () => {
    const enc = new ObjectEncoder(v.data);
    const byEsi = new Map(v.rep.map((p) => [p.esi, p.symbol]));
    let compared = 0;
    for (let i = 0; i < enc.maxRepairPool; i++) {
      const r = enc.nextRepair();
      expect(r.esi).toBe(v.K + i);
      expect(r.symbol.length).toBe(SYMBOL_SIZE);
      const lcrq = byEsi.get(r.esi);
      if (lcrq) {
        expect(r.symbol.equals(lcrq), `ESI ${r.esi}`).toBe(true);
        compared++;
      }
    }
    expect(compared).toBeGreaterThanOrEqual(10);
    enc.free();
  });
});

describe('ObjectEncoder', () => {
  it('gives distinct repair ESIs over 3*K\' calls, then repeats only after maxRepairPool', () => {
    for (const F of [1, 32768, 32808, 100000]) {
      const enc = new ObjectEncoder(Buffer.alloc(F, 1));
      const seen = new Set<number>();
      for (let i = 0; i < 3 * enc.KP; i++) {
        const { esi } = enc.nextRepair();
        expect(esi).toBeGreaterThanOrEqual(enc.K);
        expect(seen.has(esi), `F=${F} call ${i}`).toBe(false);
        seen.add(esi);
      }
      expect(enc.maxRepairPool).toBeGreaterThanOrEqual(Math.max(64, 2 * enc.KP));
      for (let i = seen.size; i < enc.maxRepairPool; i++) {
        const { esi } = enc.nextRepair();
        expect(seen.has(esi)).toBe(false);
        seen.add(esi);
      }
      expect(seen.size).toBe(enc.maxRepairPool);
      expect(enc.nextRepair().esi).toBe(enc.K); // the pool starts over
      enc.free();
      expect(() => enc.nextRepair()).toThrow();
    }
  });

  it('never uses wasm for objects of up to FAST_MAX_K_PRIME symbols (every chunk)', () => {
    const encNew = vi.spyOn(Encoder, 'with_defaults');
    const decNew = vi.spyOn(Decoder, 'with_defaults');
    const data = Buffer.alloc(32768);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    const enc = new ObjectEncoder(data);
    expect(enc.KP).toBeLessThanOrEqual(FAST_MAX_K_PRIME);
    const dec = new ObjectDecoder(data.length);
    for (let esi = 3; esi < enc.K; esi++) expect(dec.add(esi, enc.sourceSymbol(esi))).toBeUndefined();
    let out: Buffer | undefined;
    for (let i = 0; i < 6 && !out; i++) {
      const r = enc.nextRepair();
      out = dec.add(r.esi, r.symbol);
    }
    expect(out?.equals(data)).toBe(true);
    expect(encNew).not.toHaveBeenCalled();
    expect(decNew).not.toHaveBeenCalled();
    enc.free();
  });

  it('creates no wasm encoder until a repair symbol is asked for', () => {
    const spy = vi.spyOn(Encoder, 'with_defaults');
    const enc = new ObjectEncoder(Buffer.alloc(100000, 3)); // K' = 101: above the small-block code
    for (let i = 0; i < enc.K; i++) enc.sourceSymbol(i);
    expect(spy).not.toHaveBeenCalled();
    enc.nextRepair();
    expect(spy).toHaveBeenCalledTimes(1);
    enc.free();
  });

  it('frees every wasm object it creates', () => {
    const encFree = vi.spyOn(Encoder.prototype, 'free');
    const decFree = vi.spyOn(Decoder.prototype, 'free');
    const encNew = vi.spyOn(Encoder, 'with_defaults');
    const decNew = vi.spyOn(Decoder, 'with_defaults');
    const data = Buffer.alloc(100000, 9); // K' = 101: the wasm codec
    const enc = new ObjectEncoder(data);
    for (let i = 0; i < enc.maxRepairPool; i++) enc.nextRepair(); // several pool generations
    const dec = new ObjectDecoder(data.length);
    dec.add(enc.K + 1, enc.nextRepair().symbol); // ESI K: the pool started over
    const dec2 = new ObjectDecoder(data.length);
    dec2.add(0, enc.sourceSymbol(0));
    dec2.add(enc.K, enc.nextRepair().symbol); // created, then abandoned
    dec2.free();
    dec.free();
    enc.free();
    expect(encNew.mock.calls.length).toBeGreaterThan(1);
    expect(encFree).toHaveBeenCalledTimes(encNew.mock.calls.length);
    expect(decNew).toHaveBeenCalledTimes(2);
    expect(decFree).toHaveBeenCalledTimes(2);
  });

  it('MAX_OBJECT is the largest object npm raptorq codes with one sub-block, as the C tool does', () => {
    // With N = 1 the source packets are plain slices of the data; from N = 2 on they are not.
    const data = Buffer.alloc(MAX_OBJECT + SYMBOL_SIZE);
    const rand = rng(7);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(Math.floor(rand() * 2 ** 32), i);
    const firstSymbolPlain = (F: number) => {
      const enc = Encoder.with_defaults(data.subarray(0, F), SYMBOL_SIZE);
      try {
        const p = enc.encode(0)[0]!;
        return Buffer.from(p.subarray(4)).equals(data.subarray(0, SYMBOL_SIZE));
      } finally {
        enc.free();
      }
    };
    expect(firstSymbolPlain(MAX_OBJECT)).toBe(true);
    expect(firstSymbolPlain(MAX_OBJECT + 1)).toBe(false);
  });

  it('refuses empty and oversized objects', () => {
    expect(() => new ObjectEncoder(new Uint8Array(0))).toThrow(RangeError);
    expect(() => new ObjectDecoder(0)).toThrow(RangeError);
    expect(() => new ObjectDecoder(MAX_OBJECT + 1)).toThrow(RangeError);
    expect(() => new ObjectDecoder(1.5)).toThrow(RangeError);
  });
});

describe('ObjectDecoder input checks', () => {
  it('refuses bad ESIs and symbol sizes instead of handing them to wasm', () => {
    const dec = new ObjectDecoder(5000);
    expect(() => dec.add(-1, Buffer.alloc(SYMBOL_SIZE))).toThrow(RangeError);
    expect(() => dec.add(1 << 24, Buffer.alloc(SYMBOL_SIZE))).toThrow(RangeError);
    expect(() => dec.add(0, Buffer.alloc(SYMBOL_SIZE - 1))).toThrow(RangeError);
    expect(() => dec.add(7, Buffer.alloc(SYMBOL_SIZE + 1))).toThrow(RangeError);
    // A decoder takes symbols of its own size only.
    expect(() => dec.add(0, Buffer.alloc(LARGE_SYMBOL_SIZE))).toThrow(RangeError);
    const large = new ObjectDecoder(5000, undefined, LARGE_SYMBOL_SIZE);
    expect(() => large.add(0, Buffer.alloc(SYMBOL_SIZE))).toThrow(RangeError);
    expect(large.add(0, Buffer.alloc(LARGE_SYMBOL_SIZE))).toBeUndefined();
    expect(dec.received).toBe(0);
    dec.free();
    large.free();
    // Only the sizes the wire has.
    for (const T of [0, 1023, 1025, 1367, 1400]) {
      expect(() => new ObjectDecoder(5000, undefined, T)).toThrow(RangeError);
      expect(() => new ObjectEncoder(Buffer.alloc(5000), T)).toThrow(RangeError);
    }
  });
});

describe('round trip encoder -> decoder', () => {
  const sizes = [1, 1023, 1024, 1025, 12345, 32767, 32768, 32808, 100000, 300001];

  it.each(sizes.flatMap((F) => SYMBOL_SIZES.map((T) => [F, T])))('F=%i in symbols of %i bytes survives 30 percent random loss', (F, T) => {
    const rand = rng(F + T);
    const data = Buffer.alloc(F);
    for (let i = 0; i < F; i++) data[i] = Math.floor(rand() * 256);
    for (let trial = 0; trial < 5; trial++) {
      const enc = new ObjectEncoder(data, T);
      const dec = new ObjectDecoder(F, undefined, T);
      expect(enc.K).toBe(Math.ceil(F / T));
      let out: Buffer | undefined;
      // Like a stream: the source symbols, then repair symbols, each lost with probability 0.3.
      for (let i = 0; i < enc.K + enc.maxRepairPool && !out; i++) {
        const { esi, symbol } = i < enc.K ? { esi: i, symbol: enc.sourceSymbol(i) } : enc.nextRepair();
        if (rand() < 0.3) continue;
        out = dec.add(esi, symbol);
      }
      expect(out, `trial ${trial}`).toBeDefined();
      expect(out!.equals(data)).toBe(true);
      // With loss and K > 1, some repair symbol was needed (or all source survived).
      enc.free();
      dec.free();
    }
  });

  it('decodes the encrypted-chunk size (F=32808, K=33, K\'=36) from repair symbols only', () => {
    const data = Buffer.alloc(32808);
    const rand = rng(99);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
    const enc = new ObjectEncoder(data);
    expect([enc.K, enc.KP]).toEqual([33, 36]);
    const dec = new ObjectDecoder(data.length);
    let out: Buffer | undefined;
    let fed = 0;
    while (!out && fed < 60) {
      const r = enc.nextRepair();
      out = dec.add(r.esi, r.symbol);
      fed++;
    }
    expect(out?.equals(data)).toBe(true);
    expect(fed).toBeLessThanOrEqual(35);
    enc.free();
  });

  it('returns wrong bytes without error when ids are wrong, which is why callers verify', () => {
    // Feed npm-numbered repair ids as if they were wire ESIs: the object "decodes" to garbage.
    const data = Buffer.alloc(5000, 0);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    const enc = new ObjectEncoder(data);
    const dec = new ObjectDecoder(data.length);
    let out: Buffer | undefined;
    for (let i = 0; i < 30 && !out; i++) {
      const r = enc.nextRepair();
      out = dec.add(r.esi + (enc.KP - enc.K), r.symbol);
    }
    expect(out).toBeDefined();
    expect(out!.equals(data)).toBe(false);
    enc.free();
  });
});

describe('ObjectDecoder with space of its own', () => {
  it('decodes a chunk in the given buffer, whatever it held, with its source symbols already in place', () => {
    const rand = rng(7);
    for (let trial = 0; trial < 20; trial++) {
      const data = Buffer.from(Array.from({ length: 32 * 1024 }, () => Math.floor(rand() * 256)));
      const enc = new ObjectEncoder(data);
      const space = Buffer.from(Array.from({ length: 32 * 1024 }, () => Math.floor(rand() * 256)));
      const lost = new Set(Array.from({ length: 1 + Math.floor(rand() * 6) }, () => Math.floor(rand() * 32)));
      // The assembler put the source symbols that came where they belong.
      for (let esi = 0; esi < 32; esi++) if (!lost.has(esi)) enc.sourceSymbol(esi).copy(space, esi * SYMBOL_SIZE);
      const dec = new ObjectDecoder(data.length, space);
      let out: Buffer | undefined;
      for (let esi = 0; esi < 32; esi++) if (!lost.has(esi)) out ??= dec.add(esi, space.subarray(esi * SYMBOL_SIZE, (esi + 1) * SYMBOL_SIZE));
      for (let i = 0; i < lost.size + 2 && !out; i++) {
        const r = enc.nextRepair();
        out = dec.add(r.esi, Buffer.from(r.symbol));
      }
      expect(out?.equals(data), `trial ${trial}`).toBe(true);
      expect(out!.buffer).toBe(space.buffer);
      enc.free?.();
    }
  });
  it('addAssembled: the source symbols in place and the repair symbols in one buffer decode at once, as add() would', () => {
    const rand = rng(11);
    for (let trial = 0; trial < 30; trial++) {
      // Whole chunks and shorter objects of whole symbols (a file's tail chunk of a multiple of 1 KiB).
      const K = trial % 3 === 0 ? 1 + Math.floor(rand() * 32) : 32;
      const data = Buffer.from(Array.from({ length: K * SYMBOL_SIZE }, () => Math.floor(rand() * 256)));
      const enc = new ObjectEncoder(data);
      const space = Buffer.from(Array.from({ length: K * SYMBOL_SIZE }, () => Math.floor(rand() * 256)));
      const lost = new Set(Array.from({ length: Math.min(K, 1 + Math.floor(rand() * 6)) }, () => Math.floor(rand() * K)));
      const sources = Uint32Array.from({ length: K }, (_, j) => j).filter((j) => !lost.has(j));
      for (const esi of sources) enc.sourceSymbol(esi).copy(space, esi * SYMBOL_SIZE);
      // Sometimes one repair symbol short: the decoder waits, and a later add() completes it.
      const short = trial % 4 === 1 ? 1 : 0;
      const n = short ? lost.size - 1 : lost.size + (trial % 5 === 2 ? 2 : 0);
      const esis = new Uint32Array(n);
      const repair = Buffer.alloc(n * SYMBOL_SIZE);
      for (let i = 0; i < n; i++) {
        const r = enc.nextRepair();
        esis[i] = r.esi;
        r.symbol.copy(repair, i * SYMBOL_SIZE);
      }
      const dec = new ObjectDecoder(data.length, space);
      let out = dec.addAssembled(sources, esis, repair);
      if (short) {
        expect(out, `trial ${trial}: one short`).toBeUndefined();
        // The same symbols again change nothing.
        expect(dec.addAssembled(sources, esis, repair)).toBeUndefined();
        for (let i = 0; i < 3 && !out; i++) {
          const r = enc.nextRepair();
          out = dec.add(r.esi, Buffer.from(r.symbol));
        }
      }
      expect(out?.equals(data), `trial ${trial}`).toBe(true);
      expect(out!.buffer).toBe(space.buffer);
      expect(dec.done).toBe(true);
      enc.free();
    }
  });

  it('addAssembled refuses a decoder without a space, out-of-range ESIs and a short repair buffer', () => {
    const dec = new ObjectDecoder(32 * SYMBOL_SIZE);
    expect(() => dec.addAssembled(new Uint32Array([0]), new Uint32Array(0), Buffer.alloc(0))).toThrow(RangeError);
    const spaced = new ObjectDecoder(32 * SYMBOL_SIZE, Buffer.alloc(32 * SYMBOL_SIZE));
    expect(() => spaced.addAssembled(new Uint32Array([32]), new Uint32Array(0), Buffer.alloc(0))).toThrow(RangeError);
    expect(() => spaced.addAssembled(new Uint32Array([0]), new Uint32Array([5]), Buffer.alloc(SYMBOL_SIZE))).toThrow(RangeError);
    expect(() => spaced.addAssembled(new Uint32Array([0]), new Uint32Array([40, 41]), Buffer.alloc(SYMBOL_SIZE))).toThrow(RangeError);
  });
});
