/**
 * Native framing (native/tx_rounds.c through net/txplan.ts) against the TypeScript encoder: for
 * random plans over chunks (no OTI, short last symbols) and objects with an OTI, the datagrams the
 * addon frames are byte-identical to encodeDatagram's; bad plans are refused before anything is
 * written; a Share whose sink frames plans sends datagrams that are exactly the TS encoding of the
 * object's symbols (source and repair) and decode to the object; and the switches turn it off.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadAddon } from '../src/core/base/addon.js';
import { TxPlan, nativeTxAvailable, gsoWanted, type TxTarget } from '../src/core/net/txplan.js';
import { DATAGRAM_LEN, DATAGRAM_OTI_LEN, LARGE_SYMBOL_SIZE, SYMBOL_SIZE, SYMBOL_SIZES, datagramPrefix, decodeDatagram, encodeDatagram } from '../src/core/wire/packet.js';
import { ObjectDecoder, ObjectEncoder } from '../src/core/fec/fec.js';
import { Share } from '../src/core/share/share.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { groupBytes } from '../src/core/wire/address.js';
import { hash } from '../src/core/model/hash.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import { MulticastSender } from '../src/core/net/mcast-sender.js';
import { repo } from './e2e.js';
import { rng } from './rng.js';
import { describeUnless } from './skip.js';
import { useTempDir } from './tmpdir.js';
import { FakeListeners } from './fakelisteners.js';
import { until } from './until.js';

const built = existsSync(path.join(repo, 'build/Release/lcsync.node')) || process.env.CI_REQUIRE_ADDON === '1';
const why = built && nativeTxAvailable() ? undefined : built ? 'the addon lacks tx_rounds or LCSYNC_NO_NATIVE_TX=1' : 'the lcsync addon is not built (npm ci builds it)';

/** What encodeDatagram makes of one plan row: the reference the addon must match byte for byte. */
function reference(oid: Buffer, transferLength: number | undefined, esi: number, buf: Buffer, offset: number, length: number, T = SYMBOL_SIZE): Buffer {
  const symbol = Buffer.alloc(T);
  buf.copy(symbol, 0, offset, offset + length);
  return encodeDatagram({ oid, transferLength, esi, symbol });
}

function bytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

describeUnless(why, 'native framing from a symbol plan', () => {
  it('frames random plans byte-identical to encodeDatagram (chunks, OTI objects, short symbols, repair buffers, both symbol sizes)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const streams = Array.from({ length: 1 + Math.floor(r() * 6) }, (_, i) => {
        const withOti = r() < 0.4;
        const length = 1 + Math.floor(r() * (withOti ? 5000 : 32768));
        const oid = bytes(r, 32);
        const data = bytes(r, length);
        const transferLength = withOti ? length : undefined;
        const T = SYMBOL_SIZES[Math.floor(r() * SYMBOL_SIZES.length)]!;
        const target: TxTarget = { prefix: datagramPrefix(oid, transferLength, T), group: groupBytes(oid), symbolSize: T };
        return { i, oid, data, transferLength, target, T };
      });
      const rows = 1 + Math.floor(r() * 64);
      const plan = new TxPlan(64);
      const expected: Buffer[] = [];
      for (let k = 0; k < rows; k++) {
        const s = streams[Math.floor(r() * streams.length)]!;
        const K = Math.ceil(s.data.length / s.T);
        if (r() < 0.7) {
          // A source symbol: a view of the data, the last one short.
          const esi = Math.floor(r() * K);
          const off = esi * s.T;
          const len = Math.min(s.T, s.data.length - off);
          plan.add(s.target, esi, s.data, off, len);
          expected.push(reference(s.oid, s.transferLength, esi, s.data, off, len, s.T));
        } else {
          // A repair symbol computed into the plan's space, with an ESI up to the 24-bit limit.
          const sym = plan.repairSymbol(s.T);
          expect(sym.length).toBe(s.T);
          bytes(r, s.T).copy(sym);
          const esi = r() < 0.1 ? 0xffffff : K + Math.floor(r() * 1000);
          plan.add(s.target, esi, sym, 0, s.T);
          expected.push(reference(s.oid, s.transferLength, esi, sym, 0, s.T, s.T));
        }
      }
      const want = Buffer.concat(expected);
      expect(plan.payloadBytes).toBe(want.length);
      const out = Buffer.alloc(want.length + 100, 0xaa);
      const wrote = plan.frameInto(out);
      expect(wrote, `seed ${seed}`).toBe(want.length);
      expect(out.subarray(0, wrote).equals(want), `seed ${seed}`).toBe(true);
      // Nothing past the datagrams is touched.
      expect(out.subarray(wrote).every((b) => b === 0xaa)).toBe(true);
      for (let k = 0; k < plan.count; k++) expect(plan.rowBytes(k)).toBe(expected[k]!.length);
    }
  });

  it('refuses plans it cannot frame before writing anything', () => {
    const a = loadAddon().addon!;
    const oid = Buffer.alloc(32, 1);
    const prefix = datagramPrefix(oid);
    const data = Buffer.alloc(2048, 2);
    const out = Buffer.alloc(4 * DATAGRAM_OTI_LEN, 0x55);
    const row = (slot: number, esi: number, buf: number, off: number, len: number, T = SYMBOL_SIZE) => Uint32Array.of(slot, esi, buf, off, len, T);
    const bad: [Buffer[], Buffer[], Uint32Array, Buffer, RegExp][] = [
      [[prefix], [data], row(1, 0, 0, 0, 1024), out, /slot/],
      [[prefix], [data], row(0, 0x1000000, 0, 0, 1024), out, /ESI/],
      [[prefix], [data], row(0, 0, 1, 0, 1024), out, /buf/],
      [[prefix], [data], row(0, 0, 0, 1500, 1024), out, /past the end/],
      [[prefix], [data], row(0, 0, 0, 0, 0), out, /length/],
      [[prefix], [data], row(0, 0, 0, 0, 1025), out, /length/],
      [[prefix], [data], row(0, 0, 0, 0, 1369, LARGE_SYMBOL_SIZE), out, /length/],
      [[prefix], [data], row(0, 0, 0, 0, 1024, 1025), out, /symbol size/],
      [[prefix], [data], row(0, 0, 0, 0, 1024, 0), out, /symbol size/],
      [[Buffer.alloc(33)], [data], row(0, 0, 0, 0, 1024), out, /prefixes\[0\]/],
      [[prefix], [data], Uint32Array.of(0, 0, 0, 0, 1024), out, /words per datagram/],
      [[prefix], [data], row(0, 0, 0, 0, 1024), Buffer.alloc(DATAGRAM_LEN - 1), /out has/],
    ];
    for (const [prefixes, bufs, plan, o, msg] of bad) {
      expect(() => a.txFrame!(prefixes, bufs, plan, o)).toThrow(msg);
    }
    expect(out.every((b) => b === 0x55)).toBe(true);
    expect(() => a.txFrame!([prefix], [data], row(0, 0, 0, 0, 1024), out)).not.toThrow();
  });

  it('a plan holds what it is given: capacity, repair space, slots and buffers shared', () => {
    const plan = new TxPlan(2);
    const t: TxTarget = { prefix: datagramPrefix(Buffer.alloc(32, 3)), group: groupBytes(Buffer.alloc(32, 3)), symbolSize: SYMBOL_SIZE };
    const data = Buffer.alloc(4096, 9);
    plan.add(t, 0, data, 0, 1024);
    plan.add(t, 1, data, 1024, 1024);
    expect(plan.full).toBe(true);
    expect(plan.prefixes).toHaveLength(1);
    expect(plan.bufs).toHaveLength(1);
    expect(plan.addrs.equals(t.group)).toBe(true);
    expect(() => plan.add(t, 2, data, 2048, 1024)).toThrow(/full/);
    plan.repairSymbol(SYMBOL_SIZE);
    plan.repairSymbol(LARGE_SYMBOL_SIZE);
    expect(() => plan.repairSymbol(SYMBOL_SIZE)).toThrow(/repair space/);
    plan.reset();
    expect(plan.count).toBe(0);
    expect(plan.payloadBytes).toBe(0);
    expect(() => new TxPlan(0)).toThrow(RangeError);
    expect(() => new TxPlan(1025)).toThrow(RangeError);
  });
});

/** A sink that frames plans with the addon (the same code the real sender sends with) and keeps every datagram. */
class PlanSink implements DatagramSink {
  readonly framesPlans = true;
  readonly sent: { group: Buffer; payload: Buffer }[] = [];
  batches = 0;
  closed = false;
  async sendBatch(): Promise<void> {
    throw new Error('a plan sink is never sent batches');
  }
  async sendPlan(plan: TxPlan): Promise<void> {
    this.batches++;
    const out = Buffer.alloc(plan.payloadBytes);
    plan.frameInto(out);
    let off = 0;
    for (let i = 0; i < plan.count; i++) {
      const len = plan.rowBytes(i);
      const slot = plan.rows(i)[0]!;
      this.sent.push({ group: Buffer.from(plan.addrs.subarray(16 * slot, 16 * slot + 16)), payload: Buffer.from(out.subarray(off, off + len)) });
      off += len;
    }
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

describeUnless(why, 'Share over a sink that frames plans natively', () => {
  const tmp = useTempDir('lcsync-txplan-');
  let index: ShareIndex;
  // Two full chunks and a short tail: the last source symbol of the tail is zero-padded by the framer.
  const content = Buffer.alloc(2 * 32768 + 1500);
  for (let i = 0; i < content.length; i++) content[i] = (i * 13 + (i >> 10)) & 0xff;

  beforeAll(async () => {
    writeFileSync(path.join(tmp.dir(), 'file.bin'), content);
    index = await ShareIndex.build([path.join(tmp.dir(), 'file.bin')]);
  });

  it.each(SYMBOL_SIZES)('sends each chunk as the TS encoder would, source and repair symbols, and the object decodes (symbols of %i bytes)', async (T) => {
    const sink = new PlanSink();
    const listeners = new FakeListeners();
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners, symbolSize: T });
    try {
      const chunks = [...index.hashes()].map((h) => index.get(h)!).filter((o): o is Extract<IndexObject, { kind: 'chunk' }> => o.kind === 'chunk');
      expect(chunks.length).toBe(3);
      for (const c of chunks) listeners.report('join', c.hash, 'fe80::1');
      // Every round (K + margin) and some trickle: repair symbols are in there.
      await until(() => chunks.every((c) => sink.sent.filter((s) => s.group.equals(groupBytes(c.hash))).length >= Math.ceil(c.length / T) + 4));
      for (const c of chunks) {
        const data = content.subarray(c.offset, c.offset + c.length);
        const enc = new ObjectEncoder(data, T);
        const repairs = new Map<number, Buffer>();
        const dec = new ObjectDecoder(c.length, undefined, T);
        let got: Buffer | undefined;
        const mine = sink.sent.filter((s) => s.group.equals(groupBytes(c.hash)));
        for (const s of mine) {
          const d = decodeDatagram(s.payload)!;
          expect(d).toBeDefined();
          expect(d.oid.equals(c.hash)).toBe(true);
          expect(d.transferLength).toBeUndefined();
          expect(d.symbol.length).toBe(T);
          let symbol: Buffer;
          if (d.esi < enc.K) symbol = enc.sourceSymbol(d.esi);
          else {
            while (!repairs.has(d.esi)) {
              const r = enc.nextRepair();
              repairs.set(r.esi, Buffer.from(r.symbol));
            }
            symbol = repairs.get(d.esi)!;
          }
          expect(s.payload.equals(encodeDatagram({ oid: c.hash, esi: d.esi, symbol }))).toBe(true);
          got ??= dec.add(d.esi, d.symbol);
        }
        enc.free();
        dec.free();
        expect(mine.some((s) => decodeDatagram(s.payload)!.esi >= Math.ceil(c.length / T))).toBe(true);
        expect(got && hash(got).equals(c.hash)).toBe(true);
      }
      const st = share.status();
      expect(st.datagrams).toBe(sink.sent.length);
      expect(st.bytes).toBe(sink.sent.reduce((a, s) => a + s.payload.length, 0));
      // Whole batches, not one call per datagram.
      expect(sink.batches).toBeLessThan(sink.sent.length);
    } finally {
      await share.stop();
    }
  });

  it.each(SYMBOL_SIZES)('serves an object with OTI (the tree) through the plan with its length and T in every datagram (symbols of %i bytes)', async (T) => {
    const sink = new PlanSink();
    const listeners = new FakeListeners();
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners, symbolSize: T });
    try {
      const root = index.roots[0]!;
      const tree = index.get(root.hash)!;
      if (tree.kind !== 'tree') throw new Error('root is not a tree object');
      listeners.report('join', root.hash, 'fe80::2');
      await until(() => sink.sent.length >= 2);
      for (const s of sink.sent) {
        const d = decodeDatagram(s.payload)!;
        expect(s.payload.length).toBe(DATAGRAM_OTI_LEN - SYMBOL_SIZE + T);
        expect(s.payload.readUInt16BE(38)).toBe(T);
        expect(d.transferLength).toBe(tree.bytes.length);
        expect(d.oid.equals(hash(tree.bytes))).toBe(true);
      }
    } finally {
      await share.stop();
    }
  });
});

describe('native framing switches', () => {
  it('LCSYNC_NO_NATIVE_TX=1 turns native framing off, LCSYNC_NO_GSO=1 turns GSO off', async () => {
    const saved = { tx: process.env.LCSYNC_NO_NATIVE_TX, gso: process.env.LCSYNC_NO_GSO };
    try {
      process.env.LCSYNC_NO_NATIVE_TX = '1';
      process.env.LCSYNC_NO_GSO = '1';
      expect(nativeTxAvailable()).toBe(false);
      expect(gsoWanted()).toBe(false);
      // A sender on lo (nothing is sent): it frames in JS and never asks for GSO.
      const tx = await MulticastSender.open({ ifname: 'lo' });
      try {
        expect(tx.framesPlans).toBe(false);
        expect(tx.gso).toBe(false);
        await expect(tx.sendPlan(new TxPlan(1))).rejects.toThrow(/cannot frame plans/);
      } finally {
        await tx.close();
      }
      delete process.env.LCSYNC_NO_GSO;
      expect(gsoWanted()).toBe(true);
    } finally {
      for (const [k, v] of [['LCSYNC_NO_NATIVE_TX', saved.tx], ['LCSYNC_NO_GSO', saved.gso]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
