/** The datagram format of docs/protocol.md#datagrams: one encoder, one validating decoder. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DATAGRAM_LEN,
  DATAGRAM_OTI_LEN,
  LARGE_SYMBOL_SIZE,
  MAX_DATAGRAM_LEN,
  MAX_OBJECT,
  SYMBOL_SIZE,
  decodeDatagram,
  datagramPrefix,
  encodeDatagram,
} from '../src/core/wire/packet.js';
import { lcrqSizes, readVectorJsonl, readVectorText } from './vectors.js';

const oid = Buffer.from('19e19c998a7586f79e9b6d2ca1f1c0d6e4f74c260b48eaefae2db6e6e415474c', 'hex');
const symbol = Buffer.alloc(SYMBOL_SIZE);
for (let i = 0; i < SYMBOL_SIZE; i++) symbol[i] = (i * 7 + 3) & 0xff;

/** A valid 1072-byte datagram to corrupt one field at a time. */
function otiDatagram(F = 12345, esi = 17): Buffer {
  return encodeDatagram({ oid, transferLength: F, esi, symbol });
}

describe('constants', () => {
  it('fit the 1280-byte IPv6 minimum MTU', () => {
    expect(SYMBOL_SIZE).toBe(1024);
    expect(DATAGRAM_LEN).toBe(1060);
    expect(DATAGRAM_OTI_LEN).toBe(1072);
    expect(DATAGRAM_OTI_LEN + 40 + 8).toBeLessThanOrEqual(1280);
    expect(MAX_OBJECT).toBe(10_362_880);
    // The larger size: 24 symbols per 32 KiB chunk, under a 1500-byte MTU with IPv6 and UDP headers.
    expect(LARGE_SYMBOL_SIZE).toBe(1368);
    expect(Math.ceil(32768 / LARGE_SYMBOL_SIZE)).toBe(24);
    expect(Math.ceil(32768 / (LARGE_SYMBOL_SIZE - 4))).toBe(25);
    expect(MAX_DATAGRAM_LEN + 40 + 8).toBeLessThanOrEqual(1500);
    expect(LARGE_SYMBOL_SIZE % 4).toBe(0);
  });
});

describe('encodeDatagram', () => {
  it('lays out a chunk datagram as OID | PID | symbol', () => {
    const b = encodeDatagram({ oid, esi: 0x123456, symbol });
    expect(b.length).toBe(1060);
    expect(b.subarray(0, 32).equals(oid)).toBe(true);
    expect(b.subarray(32, 36).toString('hex')).toBe('00123456');
    expect(b.subarray(36).equals(symbol)).toBe(true);
  });

  it('writes OTI and scheme exactly as the C tool does (LCRQ vectors meta.json)', () => {
    for (const F of lcrqSizes) {
      const meta = JSON.parse(readVectorText('lcrq', `F${F}`, 'meta.json')) as { oti: string; scheme: string };
      const b = encodeDatagram({ oid, transferLength: F, esi: 5, symbol });
      expect(b.length).toBe(1072);
      expect(b.subarray(32, 40).toString('hex')).toBe(meta.oti);
      expect(b.subarray(40, 44).toString('hex')).toBe(meta.scheme);
      expect(b.subarray(44, 48).toString('hex')).toBe('00000005');
      expect(b.subarray(48).equals(symbol)).toBe(true);
    }
  });

  it('reproduces the first datagram of the lcshare capture byte for byte', () => {
    const first = readVectorJsonl<{ payload: string }>('captures', 'lcshare-udp.jsonl')[0]!;
    const raw = Buffer.from(first.payload, 'hex');
    const d = decodeDatagram(raw)!;
    expect(d).toBeDefined();
    expect(encodeDatagram(d).equals(raw)).toBe(true);
  });

  it('refuses what cannot go on the wire', () => {
    expect(() => encodeDatagram({ oid: oid.subarray(0, 31), esi: 0, symbol })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, esi: 0, symbol: symbol.subarray(1) })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, esi: -1, symbol })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, esi: 1 << 24, symbol })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, esi: 1.5, symbol })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, transferLength: 0, esi: 0, symbol })).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, transferLength: MAX_OBJECT + 1, esi: 0, symbol })).toThrow(RangeError);
  });
});

describe('decodeDatagram', () => {
  it('round-trips chunk datagrams', () => {
    for (const esi of [0, 1, 31, 32, 1000000, 0xffffff]) {
      const d = decodeDatagram(encodeDatagram({ oid, esi, symbol }))!;
      expect(d).toBeDefined();
      expect(d.oid.equals(oid)).toBe(true);
      expect(d.esi).toBe(esi);
      expect(d.symbol.equals(symbol)).toBe(true);
      expect('transferLength' in d).toBe(false);
    }
  });

  it('round-trips OTI datagrams', () => {
    for (const F of [1, 289, 32768, 32808, MAX_OBJECT]) {
      const d = decodeDatagram(otiDatagram(F, 3))!;
      expect(d).toBeDefined();
      expect(d.transferLength).toBe(F);
      expect(d.esi).toBe(3);
      expect(d.oid.equals(oid)).toBe(true);
      expect(d.symbol.equals(symbol)).toBe(true);
    }
  });

  it('returns views of the input, and accepts plain Uint8Arrays', () => {
    const b = encodeDatagram({ oid, esi: 9, symbol });
    const d = decodeDatagram(b)!;
    expect(d.symbol.buffer).toBe(b.buffer);
    b[40] ^= 0xff;
    expect(d.symbol[4]).toBe(b[40]);
    const u = new Uint8Array(2000);
    u.set(b, 500);
    const d2 = decodeDatagram(u.subarray(500, 500 + b.length))!;
    expect(Buffer.isBuffer(d2.symbol)).toBe(true);
    expect(d2.esi).toBe(9);
    expect(d2.symbol.equals(b.subarray(36))).toBe(true);
  });

  it('accepts any Al, as the C receiver does', () => {
    const b = otiDatagram();
    b[43] = 8; // npm raptorq's default alignment
    expect(decodeDatagram(b)?.transferLength).toBe(12345);
  });

  it('round-trips datagrams of the larger symbol size, T in the OTI', () => {
    const big = Buffer.alloc(LARGE_SYMBOL_SIZE, 7);
    const c = encodeDatagram({ oid, esi: 9, symbol: big });
    expect(c.length).toBe(1404);
    const dc = decodeDatagram(c)!;
    expect(dc.symbol.equals(big)).toBe(true);
    expect(dc.transferLength).toBeUndefined();
    const o = encodeDatagram({ oid, transferLength: 5000, esi: 2, symbol: big });
    expect(o.length).toBe(1416);
    expect(o.readUInt16BE(38)).toBe(LARGE_SYMBOL_SIZE);
    const d = decodeDatagram(o)!;
    expect(d.transferLength).toBe(5000);
    expect(d.symbol.length).toBe(LARGE_SYMBOL_SIZE);
    // The OTI's T must say what the length says.
    const lie = Buffer.from(o);
    lie.writeUInt16BE(SYMBOL_SIZE, 38);
    expect(decodeDatagram(lie)).toBeUndefined();
    const lie2 = otiDatagram();
    lie2.writeUInt16BE(LARGE_SYMBOL_SIZE, 38);
    expect(decodeDatagram(lie2)).toBeUndefined();
    expect(datagramPrefix(oid, 5000, LARGE_SYMBOL_SIZE).readUInt16BE(38)).toBe(LARGE_SYMBOL_SIZE);
    expect(() => datagramPrefix(oid, 5000, 1400)).toThrow(RangeError);
    expect(() => encodeDatagram({ oid, esi: 0, symbol: Buffer.alloc(1400) })).toThrow(RangeError);
  });

  it('rejects every other length', () => {
    for (const n of [0, 1, 36, 1059, 1061, 1071, 1073, 1403, 1405, 1415, 1417, 1500, 65507]) {
      expect(decodeDatagram(Buffer.alloc(n)), `length ${n}`).toBeUndefined();
    }
    // A valid datagram with one byte more or less.
    const b = otiDatagram();
    expect(decodeDatagram(b.subarray(0, b.length - 1))).toBeUndefined();
    expect(decodeDatagram(Buffer.concat([b, Buffer.alloc(1)]))).toBeUndefined();
    const c = encodeDatagram({ oid, esi: 0, symbol });
    expect(decodeDatagram(c.subarray(0, c.length - 1))).toBeUndefined();
  });

  const corrupt: [string, (b: Buffer) => void][] = [
    ['T = 1023', (b) => b.writeUInt16BE(1023, 38)],
    ['T = 0', (b) => b.writeUInt16BE(0, 38)],
    ['T = 1280', (b) => b.writeUInt16BE(1280, 38)],
    ['reserved OTI byte set', (b) => (b[37] = 1)],
    ['F = 0', (b) => b.writeUIntBE(0, 32, 5)],
    ['F = MAX_OBJECT + 1', (b) => b.writeUIntBE(MAX_OBJECT + 1, 32, 5)],
    ['F = 2^40 - 1', (b) => b.writeUIntBE(2 ** 40 - 1, 32, 5)],
    ['Z = 0', (b) => (b[40] = 0)],
    ['Z = 2', (b) => (b[40] = 2)],
    ['N = 0', (b) => b.writeUInt16BE(0, 41)],
    ['N = 2', (b) => b.writeUInt16BE(2, 41)],
    ['N = 257', (b) => b.writeUInt16BE(257, 41)],
    ['SBN = 1', (b) => (b[44] = 1)],
    ['SBN = 255', (b) => (b[44] = 255)],
  ];

  it.each(corrupt)('rejects an OTI datagram with %s', (_, f) => {
    const b = otiDatagram();
    expect(decodeDatagram(b)).toBeDefined();
    f(b);
    expect(decodeDatagram(b)).toBeUndefined();
  });

  it('rejects a chunk datagram with SBN != 0', () => {
    for (const sbn of [1, 0x80, 0xff]) {
      const b = encodeDatagram({ oid, esi: 5, symbol });
      b[32] = sbn;
      expect(decodeDatagram(b)).toBeUndefined();
    }
  });

  it('never throws and accepts only 1060-, 1072-, 1404- and 1416-byte inputs (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 1500 }), (bytes) => {
        const d = decodeDatagram(bytes);
        if (d) {
          expect([DATAGRAM_LEN, DATAGRAM_OTI_LEN, 1404, 1416]).toContain(bytes.length);
          expect(d.oid.length).toBe(32);
          expect(d.symbol.length).toBe(bytes.length <= DATAGRAM_OTI_LEN ? SYMBOL_SIZE : LARGE_SYMBOL_SIZE);
          expect(d.esi).toBeGreaterThanOrEqual(0);
          expect(d.esi).toBeLessThan(2 ** 24);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('survives fuzzed valid-looking datagrams and agrees with the field rules', () => {
    const header = fc.record({
      F: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 0, max: MAX_OBJECT + 2 })),
      reserved: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
      T: fc.oneof(fc.constant(1024), fc.integer({ min: 0, max: 0xffff })),
      Z: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 255 })),
      N: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffff })),
      Al: fc.integer({ min: 0, max: 255 }),
      sbn: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
      esi: fc.integer({ min: 0, max: 0xffffff }),
      withOti: fc.boolean(),
    });
    fc.assert(
      fc.property(header, (h) => {
        const b = Buffer.alloc(h.withOti ? DATAGRAM_OTI_LEN : DATAGRAM_LEN, 0xa5);
        let off = 32;
        if (h.withOti) {
          b.writeUIntBE(h.F, 32, 5);
          b[37] = h.reserved;
          b.writeUInt16BE(h.T, 38);
          b[40] = h.Z;
          b.writeUInt16BE(h.N, 41);
          b[43] = h.Al;
          off = 44;
        }
        b[off] = h.sbn;
        b.writeUIntBE(h.esi, off + 1, 3);
        const valid =
          h.sbn === 0 &&
          (!h.withOti || (h.F >= 1 && h.F <= MAX_OBJECT && h.reserved === 0 && h.T === 1024 && h.Z === 1 && h.N === 1));
        const d = decodeDatagram(b);
        expect(d !== undefined).toBe(valid);
        if (d) {
          expect(d.esi).toBe(h.esi);
          expect(d.transferLength).toBe(h.withOti ? h.F : undefined);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('returns undefined for things that are not byte arrays', () => {
    for (const x of [undefined, null, 5, 'x'.repeat(1060), {}, [], new ArrayBuffer(1060)]) {
      expect(decodeDatagram(x as unknown as Uint8Array)).toBeUndefined();
    }
  });
});
