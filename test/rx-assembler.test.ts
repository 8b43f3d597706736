/**
 * The native receive path (native/rx_assembler.c through src/core/net/rx-assembler.ts) against the
 * TypeScript reference: the same header verdicts as decodeDatagram on random and mutated input, and
 * the same objects, byte for byte, as the JS receive path under loss, duplication, reordering,
 * junk and forged symbols (in memory, through the feed entry that the socket loop also runs).
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { hash, type Hash } from '../src/core/model/hash.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { DATAGRAM_LEN, DATAGRAM_OTI_LEN, LARGE_SYMBOL_SIZE, MAX_OBJECT, SYMBOL_SIZE, SYMBOL_SIZES, decodeDatagram, encodeDatagram, encodeGoneNotice } from '../src/core/wire/packet.js';
import { ASSEMBLY_COMPLETE, ASSEMBLY_DECODE, ASSEMBLY_LACKING, ASSEMBLY_REJECTED, type AssemblyReport, type DatagramSource } from '../src/core/net/datagram.js';
import { groupBytes } from '../src/core/wire/address.js';
import { NativeAssembler, nativeParse, nativeRxAvailable } from '../src/core/net/rx-assembler.js';
import { MulticastReceiver } from '../src/core/net/mcast-receiver.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { rng } from './rng.js';
import { describeUnless } from './skip.js';

/** Datagram lengths at the larger symbol size: without and with OTI. */
const LARGE_DATAGRAM_LEN = DATAGRAM_LEN - SYMBOL_SIZE + LARGE_SYMBOL_SIZE;
const LARGE_DATAGRAM_OTI_LEN = DATAGRAM_OTI_LEN - SYMBOL_SIZE + LARGE_SYMBOL_SIZE;

const why = nativeRxAvailable() ? undefined : 'the lcsync addon with rx_assembler is not built (or LCSYNC_NO_NATIVE_RX=1)';

/** An in-memory DatagramSource: JS path, or native assembly fed in batches as the socket loop feeds it. */
class MemSource implements DatagramSource {
  private cb: ((b: Buffer) => void) | undefined;
  readonly assembly?: NativeAssembler;
  /** Datagrams fed, and those that reached JS (all of them on the JS path). */
  fed = 0;
  upToJs = 0;
  readonly joined = new Set<string>();
  constructor(native: boolean) {
    if (native)
      this.assembly = new NativeAssembler((b) => {
        this.upToJs++;
        this.cb?.(b);
      });
  }
  onDatagram(cb: (b: Buffer) => void): void {
    this.cb = cb;
  }
  join(g: string): void {
    this.joined.add(g);
  }
  leave(g: string): void {
    this.joined.delete(g);
  }
  rejoin(): void {}
  async close(): Promise<void> {}
  /** Groups reportLacking was asked to report, in order. */
  readonly lacking: string[] = [];
  lackingReports = 0;
  reportLacking(groups: readonly Uint8Array[]): void {
    this.lackingReports++;
    for (const g of groups) this.lacking.push(Buffer.from(g).toString('hex'));
  }
  /** One recvmmsg's worth. */
  batch(datagrams: Buffer[]): void {
    this.fed += datagrams.length;
    if (this.assembly) this.assembly.feed(datagrams);
    else
      for (const d of datagrams) {
        this.upToJs++;
        this.cb?.(Buffer.from(d));
      }
  }
}

function chunkDatagrams(data: Buffer, oid: Hash, repairs: number, T = SYMBOL_SIZE): Buffer[] {
  const enc = new ObjectEncoder(data, T);
  const out: Buffer[] = [];
  for (let esi = 0; esi < enc.K; esi++) out.push(encodeDatagram({ oid, esi, symbol: enc.sourceSymbol(esi) }));
  for (let i = 0; i < repairs; i++) {
    const r = enc.nextRepair();
    out.push(encodeDatagram({ oid, esi: r.esi, symbol: Buffer.from(r.symbol) }));
  }
  enc.free?.();
  return out;
}

describeUnless(why, 'native header parser (fuzz against packet.ts decodeDatagram)', () => {
  /** The native verdict in decodeDatagram's terms. */
  function same(buf: Buffer): void {
    const ref = decodeDatagram(buf);
    const nat = nativeParse(buf);
    if (!ref) {
      expect(nat).toBeUndefined();
      return;
    }
    expect(nat).toBeDefined();
    const [oidOff, F, esi, symOff, T] = nat!;
    expect(oidOff).toBe(ref.oid.byteOffset - buf.byteOffset);
    expect(F === 0 ? undefined : F).toBe(ref.transferLength);
    expect(esi).toBe(ref.esi);
    expect(symOff).toBe(ref.symbol.byteOffset - buf.byteOffset);
    expect(T).toBe(ref.symbol.length);
  }

  it('gives the same verdict and fields on random bytes of any length', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2100 }),
          ...[DATAGRAM_LEN, DATAGRAM_OTI_LEN, LARGE_DATAGRAM_LEN, LARGE_DATAGRAM_OTI_LEN].map((n) => fc.uint8Array({ minLength: n, maxLength: n })),
        ),
        (u) => {
          same(Buffer.from(u));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('gives the same verdict and fields on valid datagrams with header bytes mutated', () => {
    const symbols = SYMBOL_SIZES.map((t) => randomBytes(t));
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.integer({ min: 0, max: SYMBOL_SIZES.length - 1 }),
        fc.integer({ min: 1, max: MAX_OBJECT + 2 }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 51 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        (oti, t, F, esi, mutations) => {
          const symbol = symbols[t]!;
          const b = encodeDatagram({ oid: randomBytes(32), esi, symbol, ...(oti ? { transferLength: Math.min(F, MAX_OBJECT) } : {}) });
          // Mutate the header (OID, OTI, scheme, PID) only: the symbol is never checked.
          for (const [at, v] of mutations) if (at < b.length - symbol.length) b[at] = v;
          if (oti && F > MAX_OBJECT) b.writeUIntBE(F, 32, 5);
          same(b);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('gives the same verdict at every boundary of F, T, Z, N and SBN, at both symbol sizes', () => {
    for (const T of SYMBOL_SIZES) {
      const base = encodeDatagram({ oid: randomBytes(32), transferLength: 5000, esi: 3, symbol: randomBytes(T) });
      for (const F of [0, 1, MAX_OBJECT, MAX_OBJECT + 1, 2 ** 40 - 1]) {
        const b = Buffer.from(base);
        b.writeUIntBE(F, 32, 5);
        same(b);
      }
      // [38, 39] is T: 0x0400 (1024) and 0x0558 (1368), each also put in the other's datagram.
      for (const [off, v] of [[37, 1], [38, 0], [39, 0], [38, 4], [39, 0x58], [38, 5], [40, 2], [40, 0], [41, 1], [42, 2], [43, 9], [44, 1]] as const) {
        const b = Buffer.from(base);
        b[off] = v;
        same(b);
      }
      same(base.subarray(0, base.length - 1));
      same(Buffer.concat([base, Buffer.alloc(1)]));
      // A chunk datagram cut or grown to the other size's OTI length, and the reverse.
      same(Buffer.concat([base.subarray(0, 36), randomBytes(T === SYMBOL_SIZE ? LARGE_SYMBOL_SIZE + 12 : SYMBOL_SIZE + 12)]));
    }
  });
});

describeUnless(why, 'native chunk assembly against the JS receive path', () => {
  const receivers: ObjectReceiver[] = [];
  afterEach(() => {
    for (const r of receivers.splice(0)) r.close();
  });

  function pair(): { js: MemSource; nat: MemSource; rjs: ObjectReceiver; rnat: ObjectReceiver } {
    const js = new MemSource(false);
    const nat = new MemSource(true);
    const rjs = new ObjectReceiver(js, { stallMs: 60_000, firstSymbolMs: 60_000 });
    const rnat = new ObjectReceiver(nat, { stallMs: 60_000, firstSymbolMs: 60_000 });
    receivers.push(rjs, rnat);
    return { js, nat, rjs, rnat };
  }

  /**
   * Have both receivers verify a tree object sent in symbols of T bytes: what tells a receiver the
   * share's symbol size, which its chunk requests then take.
   */
  async function teachSymbolSize(js: MemSource, nat: MemSource, rjs: ObjectReceiver, rnat: ObjectReceiver, T: number): Promise<void> {
    const obj = randomBytes(3000);
    const enc = new ObjectEncoder(obj, T);
    const dgs = Array.from({ length: enc.K }, (_, esi) => encodeDatagram({ oid: hash(obj), transferLength: obj.length, esi, symbol: enc.sourceSymbol(esi) }));
    const got = Promise.all([rjs.fetchTree(hash(obj), () => true), rnat.fetchTree(hash(obj), () => true)]);
    js.batch(dgs);
    nat.batch(dgs);
    for (const o of await got) expect(o.equals(obj)).toBe(true);
  }

  it.each(SYMBOL_SIZES)('delivers the same bytes under loss, duplication, reordering, junk and forged symbols (seeded), symbols of %i bytes', async (T) => {
    const other = T === SYMBOL_SIZE ? LARGE_SYMBOL_SIZE : SYMBOL_SIZE;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const rand = rng(seed);
      const { js, nat, rjs, rnat } = pair();
      if (T !== SYMBOL_SIZE) await teachSymbolSize(js, nat, rjs, rnat, T);
      const lengths = [1, 1023, 1024, 1025, 4096, 32 * 1024, 32 * 1024 - 1, 20_000, 100_000];
      const objects = lengths.map((n) => {
        const data = randomBytes(n);
        return { data, oid: hash(data) };
      });
      const pjs = objects.map((o) => rjs.fetchChunk(o.oid, o.data.length));
      const pnat = objects.map((o) => rnat.fetchChunk(o.oid, o.data.length));
      let stream: Buffer[] = [];
      for (const o of objects) {
        const K = Math.ceil(o.data.length / T);
        for (const d of chunkDatagrams(o.data, o.oid, K + 8, T)) {
          if (rand() < 0.2) continue; // loss
          stream.push(d);
          if (rand() < 0.2) stream.push(Buffer.from(d)); // duplication
        }
        // A forged source symbol under a genuine OID, arriving first for some objects.
        if (rand() < 0.3) {
          const f = encodeDatagram({ oid: o.oid, esi: 0, symbol: randomBytes(T) });
          stream.unshift(f);
        }
        // Symbols of the other size under the genuine OID, first: ignored (the chunk was asked for in T).
        if (rand() < 0.3) stream.unshift(...chunkDatagrams(o.data, o.oid, 2, other).slice(0, 3));
      }
      // Junk and unasked chunks.
      for (let i = 0; i < 200; i++) {
        const kind = Math.floor(rand() * 3);
        if (kind === 0) stream.push(randomBytes(Math.floor(rand() * 1500)));
        else if (kind === 1) stream.push(encodeDatagram({ oid: randomBytes(32), esi: Math.floor(rand() * 50), symbol: randomBytes(SYMBOL_SIZE) }));
        else stream.push(encodeGoneNotice(randomBytes(32)));
      }
      // Reordering: a random shuffle of everything.
      for (let i = stream.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [stream[i], stream[j]] = [stream[j]!, stream[i]!];
      }
      // The source symbols again at the end, as a next round would bring them: every object can complete.
      for (const o of objects) stream.push(...chunkDatagrams(o.data, o.oid, 0, T));
      while (stream.length > 0) {
        const n = 1 + Math.floor(rand() * 64);
        const b = stream.slice(0, n);
        stream = stream.slice(n);
        js.batch(b);
        nat.batch(b);
      }
      const [a, b] = await Promise.all([Promise.all(pjs), Promise.all(pnat)]);
      for (const [i, o] of objects.entries()) {
        expect(a[i]!.equals(o.data), `seed ${seed} js object ${i}`).toBe(true);
        expect(b[i]!.equals(o.data), `seed ${seed} native object ${i}`).toBe(true);
      }
      expect(rnat.stats.objects).toBe(rjs.stats.objects);
      // The native side really did the work: most datagrams never reached JS there.
      expect(js.upToJs).toBe(js.fed);
      expect(nat.upToJs).toBeLessThan(nat.fed / 2);
      // Counts the assembler held back (no events since) are taken in before stats are read.
      rnat.catchUp();
      expect(rnat.stats.datagrams).toBe(rjs.stats.datagrams);
      expect(rnat.stats.bytes).toBe(rjs.stats.bytes);
      // Nothing left registered: a late datagram of a finished chunk is dropped and counted.
      const before = rnat.stats.ignored;
      nat.batch(chunkDatagrams(objects[0]!.data, objects[0]!.oid, 0, T).slice(0, 1));
      rnat.catchUp();
      expect(rnat.stats.ignored).toBe(before + 1);
    }
  });

  it.each(SYMBOL_SIZES)('reuses released chunk buffers (complete and RaptorQ-decoded in place), never one a second waiter shares, symbols of %i bytes', async (T) => {
    const { js, nat, rjs, rnat } = pair();
    if (T !== SYMBOL_SIZE) await teachSymbolSize(js, nat, rjs, rnat, T);
    const chunk = () => {
      const data = randomBytes(32 * 1024);
      return { data, oid: hash(data) };
    };
    // One at a time, complete from their source symbols or decoded with repair symbols (source symbols 3 and
    // 17 lost), each released once used (twice: the second is ignored, not pooled twice): the buffers come back.
    const seen = new Set<ArrayBufferLike>();
    let reused = 0;
    for (let i = 0; i < 8; i++) {
      const x = chunk();
      const p = rnat.fetchChunk(x.oid, x.data.length);
      nat.batch(i % 2 === 0 ? chunkDatagrams(x.data, x.oid, 0, T) : chunkDatagrams(x.data, x.oid, 4, T).filter((_, k) => k !== 3 && k !== 17));
      const got = await p;
      expect(got.equals(x.data)).toBe(true);
      expect(got.length).toBe(32 * 1024);
      if (seen.has(got.buffer)) reused++;
      seen.add(got.buffer);
      rnat.release(got);
      rnat.release(got);
    }
    expect(reused).toBeGreaterThanOrEqual(4);
    // Two waiters on one fetch share its bytes: released by one, they are never reused.
    const c = chunk();
    const pc1 = rnat.fetchChunk(c.oid, c.data.length);
    const pc2 = rnat.fetchChunk(c.oid, c.data.length);
    nat.batch(chunkDatagrams(c.data, c.oid, 0, T));
    const [c1, c2] = await Promise.all([pc1, pc2]);
    expect(c1).toBe(c2);
    rnat.release(c1);
    for (let i = 0; i < 20; i++) {
      const d = chunk();
      const e = chunk();
      const pd = rnat.fetchChunk(d.oid, d.data.length);
      const pe = rnat.fetchChunk(e.oid, e.data.length);
      nat.batch([...chunkDatagrams(d.data, d.oid, 0, T), ...chunkDatagrams(e.data, e.oid, 0, T)]);
      const [bd, be] = await Promise.all([pd, pe]);
      expect(bd.buffer).not.toBe(c1.buffer);
      expect(be.buffer).not.toBe(c1.buffer);
      expect(bd.buffer).not.toBe(be.buffer);
      expect(bd.equals(d.data) && be.equals(e.data)).toBe(true);
      rnat.release(bd);
      rnat.release(be);
    }
    expect(c2.equals(c.data)).toBe(true);
  });

  it('reports complete, rejected and decode events once per object, and hands a decoding request over to JS', () => {
    const reports: AssemblyReport[] = [];
    const passed: Buffer[] = [];
    const asm = new NativeAssembler((b) => passed.push(Buffer.from(b)));
    asm.onAssembled((r) => reports.push(r));
    const data = randomBytes(5000);
    const oid = hash(data);
    const buf = Buffer.alloc(5000);
    expect(asm.register(oid, 5000, 1024, buf)).toBe(1);
    const all = chunkDatagrams(data, oid, 4);
    // Forged symbol 0, then the other sources: all K arrive, the hash fails: REJECTED, collecting again.
    asm.feed([encodeDatagram({ oid, esi: 0, symbol: randomBytes(SYMBOL_SIZE) }), ...all.slice(1, 5)]);
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_REJECTED, 1]);
    expect(Array.from(reports.at(-1)!.progressed)).toEqual([1]);
    // Source 1..3 and two repairs: K = 5 symbols, not all source: DECODE with what was kept.
    asm.feed([all[1]!, all[2]!, all[3]!, all[5]!, all[6]!]);
    const r = reports.at(-1)!;
    expect(Array.from(r.events)).toEqual([ASSEMBLY_DECODE, 1]);
    expect(Array.from(r.decodes[0]![0])).toEqual([1, 2, 3]);
    expect(Array.from(r.decodes[0]![1])).toEqual([5, 6]);
    expect(r.decodes[0]![2].equals(Buffer.concat([all[5]!, all[6]!].map((d) => d.subarray(36))))).toBe(true);
    expect(buf.subarray(1024, 4096).equals(data.subarray(1024, 4096))).toBe(true);
    // Handed over: its datagrams now come up to JS.
    asm.feed([all[0]!]);
    expect(passed.length).toBe(1);
    expect(passed[0]!.equals(all[0]!)).toBe(true);
    asm.unregister(oid);

    // A second object whose sources all arrive: COMPLETE, verified, in the caller's buffer.
    const d2 = randomBytes(3000);
    const o2 = hash(d2);
    const b2 = Buffer.alloc(3000);
    expect(asm.register(o2, 3000, 1024, b2)).toBe(2);
    asm.feed(chunkDatagrams(d2, o2, 0));
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_COMPLETE, 2]);
    expect(b2.equals(d2)).toBe(true);
    // Forgotten once complete: its datagrams are now unasked, dropped (counted, reported when asked).
    const before = reports.length;
    asm.feed(chunkDatagrams(d2, o2, 0));
    expect(reports.length).toBe(before);
    asm.drain();
    expect(reports.at(-1)!.dropped).toBe(3);
  });

  it('holds progress and counts back until a report has events or the consumer drains (no call into JS per batch of placed symbols)', () => {
    const reports: AssemblyReport[] = [];
    const asm = new NativeAssembler(() => undefined);
    asm.onAssembled((r) => reports.push(r));
    const data = randomBytes(5000);
    const oid = hash(data);
    const id = asm.register(oid, 5000, 1024, Buffer.alloc(5000))!;
    const all = chunkDatagrams(data, oid, 0);
    // Symbols placed, nothing complete: no report, in two batches.
    asm.feed([all[0]!, all[1]!]);
    asm.feed([all[2]!, randomBytes(100)]);
    expect(reports).toEqual([]);
    asm.drain();
    expect(reports.length).toBe(1);
    expect(Array.from(reports[0]!.progressed)).toEqual([id]);
    expect(reports[0]!.datagrams).toBe(4);
    expect(reports[0]!.dropped).toBe(1);
    // Nothing held back any more: drain reports nothing.
    asm.drain();
    expect(reports.length).toBe(1);
    // The rest completes it: a report at once, with the progress since the drain.
    asm.feed([all[3]!, all[4]!]);
    expect(reports.length).toBe(2);
    expect(Array.from(reports[1]!.events)).toEqual([ASSEMBLY_COMPLETE, id]);
    expect(Array.from(reports[1]!.progressed)).toEqual([id]);
    expect(reports[1]!.datagrams).toBe(2);
  });

  it('passes every datagram up unchanged until a consumer claims the assembler', () => {
    const passed: Buffer[] = [];
    const asm = new NativeAssembler((b) => passed.push(Buffer.from(b)));
    const data = randomBytes(2048);
    const stream = [...chunkDatagrams(data, hash(data), 1), randomBytes(77), encodeGoneNotice(randomBytes(32))];
    asm.feed(stream);
    expect(passed.length).toBe(stream.length);
    for (const [i, d] of stream.entries()) expect(passed[i]!.equals(d)).toBe(true);
  });

  it('passes tree datagrams (with OTI) and gone notices up, drops junk and unasked chunks', () => {
    const passed: Buffer[] = [];
    const reports: AssemblyReport[] = [];
    const asm = new NativeAssembler((b) => passed.push(Buffer.from(b)));
    asm.onAssembled((r) => reports.push(r));
    const tree = encodeDatagram({ oid: randomBytes(32), transferLength: 900, esi: 0, symbol: randomBytes(SYMBOL_SIZE) });
    const notice = encodeGoneNotice(randomBytes(32));
    const junk = [randomBytes(1060), randomBytes(10), randomBytes(1072), encodeDatagram({ oid: randomBytes(32), esi: 0, symbol: randomBytes(SYMBOL_SIZE) })];
    junk[0]![36] = 1; // SBN != 0
    junk[2]![40] = 0; // Z = 0
    asm.feed([tree, ...junk, notice]);
    expect(passed.map((p) => p.toString('hex'))).toEqual([tree, notice].map((p) => p.toString('hex')));
    expect(reports.at(-1)!.dropped).toBe(4);
    expect(reports.at(-1)!.datagrams).toBe(4);
  });

  it('splits UDP GRO coalesced messages by their segment size', () => {
    const reports: AssemblyReport[] = [];
    const passed: Buffer[] = [];
    const asm = new NativeAssembler((b) => passed.push(Buffer.from(b)));
    asm.onAssembled((r) => reports.push(r));
    const data = randomBytes(3 * 1024 + 5);
    const oid = hash(data);
    const buf = Buffer.alloc(data.length);
    asm.register(oid, data.length, 1024, buf);
    const dgs = chunkDatagrams(data, oid, 0);
    const tree = encodeDatagram({ oid: randomBytes(32), transferLength: 900, esi: 0, symbol: randomBytes(SYMBOL_SIZE) });
    // Two coalesced messages of chunk datagrams, one plain message; the kernel coalesces equal sizes only.
    asm.feed([Buffer.concat(dgs.slice(0, 3)), dgs[3]!, tree], [DATAGRAM_LEN, 0, 0]);
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_COMPLETE, 1]);
    expect(buf.equals(data)).toBe(true);
    expect(passed.length).toBe(1);
    // A last segment shorter than the rest is a datagram of its own length (here: junk, dropped).
    asm.feed([Buffer.concat([tree, tree.subarray(0, 100)])], [DATAGRAM_OTI_LEN]);
    expect(passed.length).toBe(2);
    expect(reports.at(-1)!.dropped).toBe(1);
  });

  it('refuses bad registrations with a TypeError or RangeError, never a crash', () => {
    const asm = new NativeAssembler(() => {});
    expect(() => asm.register(Buffer.alloc(31), 10, 1024, Buffer.alloc(10))).toThrow(RangeError);
    expect(() => asm.register(Buffer.alloc(32), 0, 1024, Buffer.alloc(10))).toThrow(RangeError);
    expect(() => asm.register(Buffer.alloc(32), MAX_OBJECT + 1, 1024, Buffer.alloc(10))).toThrow(RangeError);
    expect(() => asm.register(Buffer.alloc(32), 11, 1024, Buffer.alloc(10))).toThrow(RangeError);
    expect(() => asm.register(Buffer.alloc(32), 10, 1024, 'x' as unknown as Buffer)).toThrow(TypeError);
    expect(asm.register(Buffer.alloc(32), 10, 1024, Buffer.alloc(10))).toBeDefined();
    // The same OID twice: the second caller is told, nothing is replaced.
    expect(asm.register(Buffer.alloc(32), 10, 1024, Buffer.alloc(10))).toBeUndefined();
    asm.unregister(Buffer.alloc(32));
    asm.unregister(Buffer.alloc(32));
    expect(asm.register(Buffer.alloc(32), 10, 1024, Buffer.alloc(10))).toBeDefined();
  });

  it('gives a chunk registered without a buffer a spare at its first source symbol, handed to JS with the event that ends it', () => {
    const reports: AssemblyReport[] = [];
    const passed: Buffer[] = [];
    const asm = new NativeAssembler((b) => passed.push(Buffer.from(b)));
    asm.onAssembled((r) => reports.push(r));
    const last = () => reports.at(-1)!;
    const spareA = Buffer.alloc(32 * 1024);
    expect(asm.spare(spareA)).toBe(1);
    expect(asm.spare()).toBe(1);

    // Complete: registered lazily, the spare is taken only when its first source symbol arrives.
    const a = randomBytes(5000);
    const oa = hash(a);
    const ida = asm.register(oa, a.length, 1024)!;
    const da = chunkDatagrams(a, oa, 0);
    expect(asm.spare()).toBe(1);
    asm.feed([da[2]!]);
    expect(asm.spare()).toBe(0);
    // A request with a buffer of its own, completed in the same batch: no buffer reported for it.
    const b = randomBytes(3000);
    const ob = hash(b);
    const bufB = Buffer.alloc(3000);
    const idb = asm.register(ob, b.length, 1024, bufB)!;
    asm.feed([...da.filter((_, i) => i !== 2), ...chunkDatagrams(b, ob, 0)]);
    expect(Array.from(last().events)).toEqual([ASSEMBLY_COMPLETE, ida, ASSEMBLY_COMPLETE, idb]);
    expect(last().buffers?.[0]).toBe(spareA);
    expect(last().buffers?.[1]).toBeUndefined();
    expect(spareA.subarray(0, a.length).equals(a)).toBe(true);
    expect(bufB.equals(b)).toBe(true);

    // Decode: source symbols 1..3 in the spare, handed over with the repair symbols.
    expect(asm.spare(spareA)).toBe(1);
    const c = randomBytes(5000);
    const oc = hash(c);
    const idc = asm.register(oc, c.length, 1024)!;
    const dc = chunkDatagrams(c, oc, 4);
    asm.feed([dc[1]!, dc[2]!, dc[3]!, dc[5]!, dc[6]!]);
    expect(Array.from(last().events)).toEqual([ASSEMBLY_DECODE, idc]);
    expect(last().buffers?.[0]).toBe(spareA);
    expect(spareA.subarray(1024, 4096).equals(c.subarray(1024, 4096))).toBe(true);
    asm.feed([dc[0]!]);
    expect(passed.at(-1)!.equals(dc[0]!)).toBe(true);
    asm.unregister(oc);

    // Decode from repair symbols alone: no buffer was taken, none is reported, the spare stays.
    expect(asm.spare(spareA)).toBe(1);
    const d = randomBytes(5000);
    const od = hash(d);
    const idd = asm.register(od, d.length, 1024)!;
    asm.feed(chunkDatagrams(d, od, 5).slice(5));
    expect(Array.from(last().events)).toEqual([ASSEMBLY_DECODE, idd]);
    expect(last().buffers?.[0]).toBeUndefined();
    expect(asm.spare()).toBe(1);
    asm.unregister(od);

    // Unregistered before it ends: the spare it took goes back to the pool.
    const e = randomBytes(5000);
    const oe = hash(e);
    asm.register(oe, e.length, 1024);
    asm.feed([chunkDatagrams(e, oe, 0)[0]!]);
    expect(asm.spare()).toBe(0);
    asm.unregister(oe);
    expect(asm.spare()).toBe(1);

    // Too short a spare is not taken; with none that fits, a buffer of its own comes up with the event.
    const f = randomBytes(5000);
    const of = hash(f);
    const tiny = new NativeAssembler(() => {});
    const treports: AssemblyReport[] = [];
    tiny.onAssembled((r) => treports.push(r));
    expect(tiny.spare(Buffer.alloc(4000))).toBe(1);
    const idf = tiny.register(of, f.length, 1024)!;
    tiny.feed(chunkDatagrams(f, of, 0));
    expect(Array.from(treports.at(-1)!.events)).toEqual([ASSEMBLY_COMPLETE, idf]);
    const own = treports.at(-1)!.buffers?.[0];
    expect(own?.equals(f)).toBe(true);
    expect(tiny.spare()).toBe(1);
    expect(() => tiny.spare(Buffer.alloc(0))).toThrow(RangeError);
    expect(() => tiny.spare('x' as unknown as Buffer)).toThrow(TypeError);
  });

  it('a receiver with 100 chunks in flight holds buffers for the chunks under way, not for every request', async () => {
    const { nat, rnat } = pair();
    const objs = Array.from({ length: 100 }, () => {
      const data = randomBytes(32 * 1024);
      return { data, oid: hash(data) };
    });
    const before = process.memoryUsage().arrayBuffers;
    const pending = objs.map((o) => rnat.fetchChunk(o.oid, o.data.length));
    // The assembler's spares (a few dozen at most), not 100 x 32 KiB (3.2 MiB).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(40 * 32 * 1024);
    // Sent one after the other, as a share sends them, each released once written: all arrive whole,
    // in a few buffers used again and again.
    const buffers = new Set<ArrayBufferLike>();
    for (const [i, o] of objs.entries()) {
      nat.batch(chunkDatagrams(o.data, o.oid, 0));
      const got = await pending[i]!;
      expect(got.equals(o.data)).toBe(true);
      buffers.add(got.buffer);
      rnat.release(got);
    }
    expect(buffers.size).toBeLessThan(40);
  });

  it('says LACKING once when the last source symbol comes with others lost, and the receiver has its source report the group', async () => {
    const reports: AssemblyReport[] = [];
    const asm = new NativeAssembler(() => undefined);
    asm.onAssembled((r) => reports.push(r));
    const data = randomBytes(5000); // K = 5
    const oid = hash(data);
    expect(asm.register(oid, 5000, 1024, Buffer.alloc(5000))).toBe(1);
    const all = chunkDatagrams(data, oid, 3);
    // 0, 1, 3 and then the last (4): symbol 2 was lost.
    asm.feed([all[0]!, all[1]!, all[3]!]);
    expect(reports).toHaveLength(0);
    asm.feed([all[4]!]);
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_LACKING, 1]);
    // Once per request: the last symbol again, or a repeat of the pass, says nothing more.
    const n = reports.length;
    asm.feed([all[4]!, all[0]!]);
    expect(reports.slice(n).flatMap((r) => Array.from(r.events))).toEqual([]);
    // The lost one comes after all: complete.
    asm.feed([all[2]!]);
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_COMPLETE, 1]);

    // Every source symbol but one, the last arriving after enough repair symbols: a decode, not a lack.
    const d2 = randomBytes(5000);
    const o2 = hash(d2);
    expect(asm.register(o2, 5000, 1024, Buffer.alloc(5000))).toBe(2);
    const a2 = chunkDatagrams(d2, o2, 2);
    asm.feed([a2[5]!, a2[0]!, a2[1]!, a2[2]!]);
    asm.feed([a2[4]!]);
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_DECODE, 2]);
    // A whole pass: complete, no lack.
    const d3 = randomBytes(5000);
    const o3 = hash(d3);
    expect(asm.register(o3, 5000, 1024, Buffer.alloc(5000))).toBe(3);
    asm.feed(chunkDatagrams(d3, o3, 0));
    expect(Array.from(reports.at(-1)!.events)).toEqual([ASSEMBLY_COMPLETE, 3]);

    // Through a receiver: its source is asked to report the chunks' groups a moment later (LACKING_REPORT_MS),
    // those of all batches read meanwhile in one report, and the count says so.
    const { nat, rnat } = pair();
    const d4 = randomBytes(32 * 1024);
    const o4 = hash(d4);
    const d5 = randomBytes(32 * 1024);
    const o5 = hash(d5);
    const got = rnat.fetchChunk(o4, d4.length);
    const got5 = rnat.fetchChunk(o5, d5.length);
    const a4 = chunkDatagrams(d4, o4, 4);
    const a5 = chunkDatagrams(d5, o5, 4);
    nat.batch([...a4.slice(0, 7), ...a4.slice(8, 32)]); // symbol 7 lost, 31 the last
    nat.batch([...a5.slice(1, 32)]); // symbol 0 lost
    expect(nat.lacking).toEqual([]);
    const g4 = groupBytes(o4).toString('hex');
    const g5 = groupBytes(o5).toString('hex');
    await vi.waitFor(() => expect(nat.lacking.length).toBeGreaterThanOrEqual(2), { timeout: 2000, interval: 1 });
    expect(nat.lacking.slice(0, 2)).toEqual([g4, g5]);
    expect(nat.lackingReports).toBeGreaterThanOrEqual(1);
    // Still lacking once the share's answer had time to come (LACKING_RECHECK_MS): both again, in one report.
    await vi.waitFor(() => expect(nat.lacking.length).toBeGreaterThanOrEqual(4), { timeout: 2000, interval: 1 });
    expect(nat.lacking.slice(0, 4)).toEqual([g4, g5, g4, g5]);
    // One completes (a repair symbol): only the other is reported again, up to LACKING_REPORTS times in all.
    nat.batch(a4.slice(32, 33));
    expect((await got).equals(d4)).toBe(true);
    await vi.waitFor(() => expect(nat.lacking.filter((g) => g === g5)).toHaveLength(4), { timeout: 2000, interval: 1 });
    await new Promise((r) => setTimeout(r, 60));
    expect(nat.lacking.filter((g) => g === g5)).toHaveLength(4);
    expect(nat.lacking.filter((g) => g === g4).length).toBeLessThanOrEqual(3);
    expect(rnat.stats.lackingReported).toBe(nat.lacking.length);
    nat.batch(a5.slice(32, 33));
    expect((await got5).equals(d5)).toBe(true);
    const reported = nat.lacking.length;
    await new Promise((r) => setTimeout(r, 40));
    expect(nat.lacking).toHaveLength(reported);
  });

  it('keeps many requests apart (table growth and removal)', () => {
    const reports: AssemblyReport[] = [];
    const asm = new NativeAssembler(() => {});
    asm.onAssembled((r) => reports.push(r));
    const objs = Array.from({ length: 500 }, (_, i) => {
      const data = randomBytes(1 + (i % 3000));
      return { data, oid: hash(data), buf: Buffer.alloc(data.length) };
    });
    const ids = objs.map((o) => asm.register(o.oid, o.data.length, 1024, o.buf)!);
    // Forget every other one: their datagrams are then dropped.
    for (let i = 0; i < objs.length; i += 2) asm.unregister(objs[i]!.oid);
    asm.feed(objs.flatMap((o) => chunkDatagrams(o.data, o.oid, 0)));
    const done = new Set<number>();
    for (const r of reports) for (let i = 0; i < r.events.length; i += 2) if (r.events[i] === ASSEMBLY_COMPLETE) done.add(r.events[i + 1]!);
    expect(done.size).toBe(250);
    for (const [i, id] of ids.entries()) expect(done.has(id)).toBe(i % 2 === 1);
    for (const [i, o] of objs.entries()) if (i % 2 === 1) expect(o.buf.equals(o.data)).toBe(true);
  });
});

describeUnless(why, 'the native socket counts what its receive buffer had no room for', () => {
  it('reports datagrams the kernel dropped for a full receive buffer as lost (SO_RXQ_OVFL), once each', async () => {
    const asm = new NativeAssembler(() => undefined);
    let lost = 0;
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    // A small buffer (the kernel doubles it and keeps a floor): a few dozen datagrams fit.
    const sock = asm.openSocket(port, 16_384, false, (n) => (lost += n), () => false);
    try {
      // Unicast on lo. This process's loop is blocked inside spawnSync while the child sends, so
      // nothing reads: the buffer fills and the kernel drops the rest.
      const send = (n: number) =>
        spawnSync(process.execPath, ['-e', `
          const s = require('node:dgram').createSocket('udp6');
          let i = 0; const b = Buffer.alloc(1000, 7);
          const next = () => (i++ < ${n} ? s.send(b, ${port}, '::1', next) : s.close());
          next();`], { timeout: 20_000 });
      expect(send(1).status).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(lost).toBe(0);
      expect(send(2000).status).toBe(0);
      // Drained now; the drops are told with the next datagram queued after them.
      await new Promise((r) => setTimeout(r, 100));
      expect(send(1).status).toBe(0);
      await new Promise((r) => setTimeout(r, 200));
      expect(lost).toBeGreaterThan(1000);
      expect(lost).toBeLessThan(2000);
      const before = lost;
      expect(send(3).status).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(lost).toBe(before);
    } finally {
      sock.close();
    }
  }, 60_000);
});

describe('fallback to the JS receive path', () => {
  it('LCSYNC_NO_NATIVE_RX=1 turns the native path off, and the receiver then offers no assembly', async () => {
    const saved = process.env.LCSYNC_NO_NATIVE_RX;
    process.env.LCSYNC_NO_NATIVE_RX = '1';
    try {
      expect(nativeRxAvailable()).toBe(false);
      const rx = await MulticastReceiver.open({ ifnames: ['lo'], port: 40000 + Math.floor(Math.random() * 20000) });
      try {
        expect(rx.native).toBe(false);
        expect(rx.assembly).toBeUndefined();
      } finally {
        await rx.close();
      }
    } finally {
      if (saved === undefined) delete process.env.LCSYNC_NO_NATIVE_RX;
      else process.env.LCSYNC_NO_NATIVE_RX = saved;
    }
  });

  it('a closed receiver releases the assembler: a later one on the same source claims it again', async () => {
    if (!nativeRxAvailable()) return;
    const src = new MemSource(true);
    const first = new ObjectReceiver(src);
    expect(src.assembly!.claimed).toBe(true);
    first.close();
    expect(src.assembly!.claimed).toBe(false);
    const second = new ObjectReceiver(src);
    try {
      const data = randomBytes(4000);
      const p = second.fetchChunk(hash(data), data.length);
      src.batch(chunkDatagrams(data, hash(data), 0));
      expect((await p).equals(data)).toBe(true);
      expect(src.upToJs).toBe(0);
    } finally {
      second.close();
    }
  });

  it('an encrypted receiver keeps the JS path: it never claims the assembler', () => {
    if (!nativeRxAvailable()) return;
    const src = new MemSource(true);
    const cipher = { overhead: 40, open: (b: Buffer) => b, seal: (b: Buffer) => b } as never;
    const r = new ObjectReceiver(src, { cipher });
    try {
      expect(src.assembly!.claimed).toBe(false);
    } finally {
      r.close();
    }
  });

  it.skipIf(!nativeRxAvailable())('with the addon, a receiver assembles natively', async () => {
    const rx = await MulticastReceiver.open({ ifnames: ['lo'], port: 40000 + Math.floor(Math.random() * 20000) });
    try {
      expect(rx.native).toBe(true);
      expect(rx.assembly).toBeDefined();
    } finally {
      await rx.close();
    }
  });
});
