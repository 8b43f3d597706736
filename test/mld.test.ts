import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  decodeMaxRespCode,
  decodeMld,
  decodeQqic,
  encodeMaxRespCode,
  encodeQqic,
  encodeQuery,
  encodeReport,
  isJoinRecord,
  MAX_REPORT_RECORDS,
  RecordType,
  isLeaveRecord,
  listenerEvents,
  type MldMessage,
} from '../src/core/wire/mld.js';
import { formatIPv6, parseIPv6 } from '../src/core/wire/address.js';
import { once, readVectorJsonl } from './vectors.js';

interface Capture {
  t: number;
  src: string;
  dst: string;
  hopbyhop: string;
  icmp6: string;
}
/** The captured MLD traffic (read on first use). */
const captures = once(() => readVectorJsonl<Capture>('captures', 'mld.jsonl'));

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const addr = (b: Buffer) => formatIPv6(b);

describe('decodeMld on the captured MLD traffic of a C lcsync sync', () => {
  it('has the vectors', () => {
    expect(captures().length).toBe(44);
  });

  it('decodes every report into TO_EX joins and TO_IN leaves of ff1e groups', () => {
    const joined = new Set<string>();
    const left = new Set<string>();
    let records = 0;
    for (const c of captures().filter((x) => x.dst === 'ff02::16')) {
      const m = decodeMld(hex(c.icmp6));
      expect(m?.type, c.icmp6).toBe('v2report');
      if (m?.type !== 'v2report') continue;
      // Independent count: the header says how many records there are, and each has no sources or aux data.
      expect(m.records.length).toBe(hex(c.icmp6).readUInt16BE(6));
      expect(8 + 20 * m.records.length).toBe(hex(c.icmp6).length);
      for (const r of m.records) {
        records++;
        expect(r.group.length).toBe(16);
        expect(addr(r.group)).toMatch(/^ff1e:/);
        expect(r.sources).toEqual([]);
        expect([3, 4]).toContain(r.recordType);
        if (r.recordType === 4) {
          expect(isJoinRecord(4, 0)).toBe(true);
          joined.add(addr(r.group));
        } else {
          expect(isLeaveRecord(3, 0)).toBe(true);
          left.add(addr(r.group));
        }
      }
      const events = listenerEvents(m);
      expect(events.map((e) => [e.kind, addr(e.group)])).toEqual(
        m.records.map((r) => [r.recordType === 4 ? 'join' : 'leave', addr(r.group)]),
      );
    }
    expect(records).toBeGreaterThanOrEqual(28);
    expect(joined.size).toBe(14);
    // Every group the client joined it also left.
    expect([...left].sort()).toEqual([...joined].sort());
  });

  it('decodes every query from the C share as an address-specific MLDv2 query for its destination group', () => {
    const queries = captures().filter((x) => x.dst !== 'ff02::16');
    expect(queries.length).toBe(28);
    const leaveTimes = new Map<string, number>();
    for (const c of captures()) {
      const m = decodeMld(hex(c.icmp6));
      if (m?.type === 'v2report') {
        for (const r of m.records) if (r.recordType === 3) leaveTimes.set(addr(r.group), c.t);
        continue;
      }
      expect(m?.type).toBe('query');
      if (m?.type !== 'query') continue;
      expect(m.version).toBe(2);
      expect(addr(m.group)).toBe(c.dst);
      expect(m.maxRespMs).toBe(10000);
      expect(m.qqicSec).toBe(125);
      expect(m.sources).toEqual([]);
      // The C share queries in answer to a leave it has just seen.
      expect(leaveTimes.get(c.dst)).toBeLessThanOrEqual(c.t);
      expect(listenerEvents(m)).toEqual([]);
    }
  });
});

describe('decodeMld on hand-built messages', () => {
  const g1 = parseIPv6('ff1e::1');
  const g2 = parseIPv6('ff1e::2');
  const s1 = parseIPv6('fd00::1');
  const s2 = parseIPv6('fd00::2');

  it('steps over sources and aux data of every record', () => {
    const rec = (type: number, group: Uint8Array, sources: Uint8Array[], auxWords: number) => {
      const b = Buffer.alloc(20 + 16 * sources.length + 4 * auxWords, 0xee);
      b[0] = type;
      b[1] = auxWords;
      b.writeUInt16BE(sources.length, 2);
      Buffer.from(group).copy(b, 4);
      sources.forEach((s, i) => Buffer.from(s).copy(b, 20 + 16 * i));
      return b;
    };
    const head = Buffer.from([143, 0, 0, 0, 0, 0, 0, 4]);
    const msg = Buffer.concat([
      head,
      rec(5, g1, [s1, s2], 2),
      rec(9, g2, [s1], 1), // unknown type: skipped, not fatal
      rec(6, g2, [s2], 0),
      rec(2, parseIPv6('ff02::1:ff00:1'), [], 3),
    ]);
    const m = decodeMld(msg) as Extract<MldMessage, { type: 'v2report' }>;
    expect(m.type).toBe('v2report');
    expect(m.records.map((r) => [r.recordType, addr(r.group), r.sources.map(addr)])).toEqual([
      [5, 'ff1e::1', ['fd00::1', 'fd00::2']],
      [6, 'ff1e::2', ['fd00::2']],
      [2, 'ff02::1:ff00:1', []],
    ]);
    // ALLOW is a join, BLOCK asks for a query, link-scope groups are dropped.
    expect(listenerEvents(m).map((e) => [e.kind, addr(e.group)])).toEqual([
      ['join', 'ff1e::1'],
      ['leave', 'ff1e::2'],
    ]);
    expect(listenerEvents(m).some((e) => e.lacking)).toBe(false);
    // ALLOW with no sources adds nothing (an RFC 3810 router changes no state): an lcsync receiver's "still
    // here, lacking symbols", a join marked lacking.
    const lack = decodeMld(encodeReport([{ recordType: RecordType.ALLOW_NEW_SOURCES, group: g1 }, { recordType: RecordType.CHANGE_TO_EXCLUDE, group: g2 }]))!;
    expect(listenerEvents(lack)).toEqual([
      { kind: 'join', group: Buffer.from(g1), lacking: true },
      { kind: 'join', group: Buffer.from(g2) },
    ]);
    // One byte short anywhere in the last record: rejected.
    expect(decodeMld(msg.subarray(0, msg.length - 1))).toBeUndefined();
    // A record count larger than the message: rejected.
    const lying = Buffer.from(msg);
    lying.writeUInt16BE(5, 6);
    expect(decodeMld(lying)).toBeUndefined();
  });

  it('decodes MLDv1 reports, dones and queries', () => {
    const v1 = (type: number, group: Uint8Array, delay = 0) => {
      const b = Buffer.alloc(24);
      b[0] = type;
      b.writeUInt16BE(delay, 4);
      Buffer.from(group).copy(b, 8);
      return b;
    };
    expect(decodeMld(v1(131, g1))).toEqual({ type: 'v1report', group: Buffer.from(g1) });
    expect(decodeMld(v1(132, g1))).toEqual({ type: 'v1done', group: Buffer.from(g1) });
    expect(decodeMld(v1(130, new Uint8Array(16), 10000))).toEqual({
      type: 'query',
      version: 1,
      group: Buffer.alloc(16),
      maxRespMs: 10000,
    });
    expect(decodeMld(v1(131, g1).subarray(0, 23))).toBeUndefined();
    // 25..27 bytes is neither an MLDv1 nor an MLDv2 query.
    expect(decodeMld(Buffer.concat([v1(130, g1), Buffer.alloc(2)]))).toBeUndefined();
    expect(listenerEvents(decodeMld(v1(131, g1))!)).toEqual([{ kind: 'join', group: Buffer.from(g1) }]);
    expect(listenerEvents(decodeMld(v1(132, g1))!)).toEqual([{ kind: 'leave', group: Buffer.from(g1) }]);
    expect(listenerEvents(decodeMld(v1(131, parseIPv6('ff02::fb')))!)).toEqual([]);
  });

  it('rejects other ICMPv6 messages and tiny inputs', () => {
    expect(decodeMld(new Uint8Array(0))).toBeUndefined();
    expect(decodeMld(Buffer.from([143, 0, 0]))).toBeUndefined();
    expect(decodeMld(Buffer.from([128, 0, 0, 0, 0, 1, 0, 1]))).toBeUndefined(); // echo request
    expect(decodeMld(Buffer.from([143, 0, 0, 0, 0, 0, 0, 0]))).toEqual({ type: 'v2report', records: [] });
  });

  it('classifies record types as docs/protocol.md#mld-and-when-a-share-sends says', () => {
    expect([1, 2, 3, 4, 5, 6].map((t) => isJoinRecord(t, 0))).toEqual([false, true, false, true, true, false]);
    expect([1, 2, 3, 4, 5, 6].map((t) => isLeaveRecord(t, 0))).toEqual([true, false, true, false, false, true]);
    // INCLUDE with sources still listens (source-specific); it is no leave.
    expect(isLeaveRecord(3, 1)).toBe(false);
    expect(isJoinRecord(3, 1)).toBe(true);
  });
});

describe('encodeQuery', () => {
  it('encodes a general query byte for byte', () => {
    const q = encodeQuery({ maxRespMs: 1000, qrv: 2, qqicSec: 125 });
    expect(q.toString('hex')).toBe('820000000' + '3e80000' + '00'.repeat(16) + '027d0000');
  });

  it('encodes what the C share sends for an address-specific query', () => {
    const c = captures().find((x) => x.dst.startsWith('ff1e:'))!;
    const m = decodeMld(hex(c.icmp6)) as Extract<MldMessage, { type: 'query' }>;
    const q = encodeQuery({ group: m.group, maxRespMs: 10000, qrv: 0, qqicSec: 125 });
    // Same bytes apart from the checksum, which the kernel writes.
    const expected = hex(c.icmp6);
    expected.writeUInt16BE(0, 2);
    expect(q.equals(expected)).toBe(true);
  });

  it('round-trips through decodeMld', () => {
    fc.assert(
      fc.property(
        fc.option(fc.uint8Array({ minLength: 16, maxLength: 16 }), { nil: undefined }),
        fc.array(fc.uint8Array({ minLength: 16, maxLength: 16 }), { maxLength: 5 }),
        fc.integer({ min: 0, max: 0x7fff }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 0, max: 127 }),
        fc.boolean(),
        (group, sources, maxRespMs, qrv, qqicSec, sFlag) => {
          const q = encodeQuery({ group, sources, maxRespMs, qrv, qqicSec, sFlag });
          expect(q.length).toBe(28 + 16 * sources.length);
          expect(decodeMld(q)).toEqual({
            type: 'query',
            version: 2,
            group: group ? Buffer.from(group) : Buffer.alloc(16),
            maxRespMs,
            qrv,
            sFlag,
            qqicSec,
            sources: sources.map((s) => Buffer.from(s)),
          });
        },
      ),
    );
  });

  it('encodes large delays and intervals in the exponential form', () => {
    // RFC 3810 5.1.3: 0x8000 | exp<<12 | mant means (mant | 0x1000) << (exp + 3).
    expect(decodeMaxRespCode(0x8000)).toBe(0x1000 << 3);
    expect(decodeMaxRespCode(0xffff)).toBe(0x1fff << 10);
    expect(decodeQqic(0x80)).toBe(0x10 << 3);
    expect(decodeQqic(0xff)).toBe(0x1f << 10);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x1fff << 10 }), (ms) => {
        const back = decodeMaxRespCode(encodeMaxRespCode(ms));
        expect(back).toBeLessThanOrEqual(ms);
        expect(back).toBeGreaterThan(ms - ms / 256 - 8); // 12-bit mantissa: at most 1/4096 low, plus rounding
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x1f << 10 }), (sec) => {
        const back = decodeQqic(encodeQqic(sec));
        expect(back).toBeLessThanOrEqual(sec);
        expect(back).toBeGreaterThan(sec - sec / 16 - 8);
      }),
    );
    expect(() => encodeQuery({ group: new Uint8Array(4), maxRespMs: 1, qrv: 2, qqicSec: 1 })).toThrow(RangeError);
  });
});

describe('decodeMld fuzz', () => {
  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        decodeMld(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  it('never throws on mutated real messages, and whatever it returns is consistent', () => {
    const seeds = captures().map((c) => hex(c.icmp6));
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(200),
        (seed, edits, cut) => {
          const b = Buffer.from(seed);
          for (const [i, v] of edits) if (i < b.length) b[i] = v;
          const m = decodeMld(b.subarray(0, Math.min(b.length, cut)));
          if (m?.type === 'v2report') for (const r of m.records) expect(r.group.length).toBe(16);
          if (m) listenerEvents(m);
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe('encodeReport', () => {
  it('writes a join report byte for byte as the kernel does (captured), checksum left to the kernel', () => {
    const kernel = hex(captures()[0]!.icmp6);
    const mine = encodeReport([{ recordType: RecordType.CHANGE_TO_EXCLUDE, group: kernel.subarray(12, 28) }]);
    expect(mine.length).toBe(kernel.length);
    expect(mine.readUInt16BE(2)).toBe(0);
    expect(Buffer.concat([mine.subarray(0, 2), mine.subarray(4)])).toEqual(Buffer.concat([kernel.subarray(0, 2), kernel.subarray(4)]));
  });

  it('decodes back to the same records, up to the most that fit in 1232 bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.uint8Array({ minLength: 15, maxLength: 15 })), { minLength: 1, maxLength: MAX_REPORT_RECORDS }),
        (recs) => {
          const records = recs.map(([t, g]) => ({ recordType: t as 1 | 2 | 3 | 4 | 5 | 6, group: Buffer.concat([Buffer.from([0xff]), g]) }));
          const b = encodeReport(records);
          expect(b.length).toBeLessThanOrEqual(1232);
          const m = decodeMld(b) as Extract<MldMessage, { type: 'v2report' }>;
          expect(m.type).toBe('v2report');
          expect(m.records.map((r) => [r.recordType, r.group, r.sources.length])).toEqual(records.map((r) => [r.recordType, r.group, 0]));
        },
      ),
    );
  });

  it('refuses what it cannot write', () => {
    const g = parseIPv6('ff1e::1');
    expect(() => encodeReport([])).toThrow(RangeError);
    expect(() => encodeReport(Array.from({ length: MAX_REPORT_RECORDS + 1 }, () => ({ recordType: 4 as const, group: g })))).toThrow(RangeError);
    expect(() => encodeReport([{ recordType: 4, group: parseIPv6('fe80::1') }])).toThrow(/multicast/);
    expect(() => encodeReport([{ recordType: 4, group: g.subarray(0, 15) }])).toThrow(/16-byte/);
    expect(() => encodeReport([{ recordType: 7 as 4, group: g }])).toThrow(/1\.\.6/);
  });
});
