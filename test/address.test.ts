import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GROUP_PREFIX_BYTES, LCSYNC_PORT, formatIPv6, groupAddress, groupBytes, parseIPv6, prefixOfGroup } from '../src/core/wire/address.js';
import { aliasHash } from '../src/core/model/entry.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { hash, parseHex } from '../src/core/model/hash.js';

describe('group addresses', () => {
  it('the alias of "share" is the first group the C client joined in the capture', () => {
    // vectors/captures/lcshare-udp.jsonl: the first datagram went to this group.
    expect(groupAddress(aliasHash('share'))).toBe('ff1e:45c1:56db:ba18:5676:7371:2bab:46cf');
  });

  it('a directory root hash from vectors/README.md', () => {
    const h = parseHex('e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1')!;
    expect(groupAddress(h)).toBe('ff1e:e22f:a191:ac4:6d05:5cb6:9f71:cba5');
  });

  it('is ff1e followed by the first 14 hash bytes; prefixOfGroup gives them back', () => {
    const h = hash(Buffer.from('anything'));
    const g = groupBytes(h);
    expect(g.length).toBe(16);
    expect([g[0], g[1]]).toEqual([0xff, 0x1e]);
    expect(g.subarray(2).equals(h.subarray(0, GROUP_PREFIX_BYTES))).toBe(true);
    expect(prefixOfGroup(g)!.equals(h.subarray(0, GROUP_PREFIX_BYTES))).toBe(true);
    expect(prefixOfGroup(parseIPv6(groupAddress(h)))!.equals(h.subarray(0, 14))).toBe(true);
    expect(LCSYNC_PORT).toBe(4242);
  });

  it('prefixOfGroup ignores groups that are not ours', () => {
    expect(prefixOfGroup(parseIPv6('ff02::16'))).toBeUndefined();
    expect(prefixOfGroup(parseIPv6('ff0e::1'))).toBeUndefined();
    expect(prefixOfGroup(Buffer.alloc(15, 0xff))).toBeUndefined();
  });
});

describe('IPv6 text form (RFC 5952)', () => {
  it.each([
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    // Only runs of two or more zero words are compressed.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    // The longest run wins; between equal runs, the first.
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    // Lower case, no leading zeros.
    ['FF1E:00AB:0000:0000:0000:0000:0000:0001', 'ff1e:ab::1'],
  ])('%s -> %s', (text, canonical) => {
    expect(formatIPv6(parseIPv6(text))).toBe(canonical);
  });

  it('parses and drops a zone', () => {
    expect(formatIPv6(parseIPv6('fe80::1%veth0'))).toBe('fe80::1');
  });

  it('round-trips any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.boolean(), (b, sparse) => {
        const bytes = Buffer.from(b);
        // Sparse addresses exercise the zero-run compression.
        if (sparse) for (let i = 0; i < 16; i++) if (b[i]! < 160) bytes[i] = 0;
        const text = formatIPv6(bytes);
        expect(text).not.toMatch(/:::|[A-F]/);
        // The canonical form: what the WHATWG URL parser (RFC 5952 compression) makes of it.
        expect(new URL(`http://[${text}]/`).hostname).toBe(`[${text}]`);
        expect(parseIPv6(text).equals(bytes)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it.each([':::', '1::2::3', 'g::1', '12345::', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::', '', 'ff1e'])(
    'rejects %j with a USAGE error',
    (text) => {
      let caught: unknown;
      try {
        parseIPv6(text);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(LcsyncError);
      expect((caught as LcsyncError).code).toBe('USAGE');
    },
  );

  it('accepts and rejects what the split-based parser it replaced did, with the same bytes (fuzz)', () => {
    /** The parser before the one-pass one, kept as the reference. */
    const reference = (s: string): Buffer | undefined => {
      const text = s.includes('%') ? s.slice(0, s.indexOf('%')) : s;
      const halves = text.split('::');
      if (halves.length > 2) return undefined;
      const parse = (part: string) => (part === '' ? [] : part.split(':'));
      const head = parse(halves[0]!);
      const tail = halves.length === 2 ? parse(halves[1]!) : [];
      const missing = 8 - head.length - tail.length;
      if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
      const words = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
      if (!words.every((w) => /^[0-9a-fA-F]{1,4}$/.test(w))) return undefined;
      const b = Buffer.alloc(16);
      words.forEach((w, i) => b.writeUInt16BE(parseInt(w, 16), i * 2));
      return b;
    };
    const ours = (s: string): Buffer | undefined => {
      try {
        return parseIPv6(s);
      } catch (e) {
        expect(e).toBeInstanceOf(LcsyncError);
        return undefined;
      }
    };
    const piece = fc.constantFrom('0', '1', 'a', 'F', 'ff1e', '12345', 'g', ':', '::', ':::', '%', 'e0', 'dead', 'BEEF');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 20 }), (pieces) => {
        const s = pieces.join('');
        const want = reference(s);
        const got = ours(s);
        expect(got === undefined).toBe(want === undefined);
        if (want) expect(got!.equals(want)).toBe(true);
      }),
      { numRuns: 20_000 },
    );
    // Every 16 bytes' canonical text, with a zone or not.
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const text = formatIPv6(b);
        expect(ours(`${text}%e0`)!.equals(reference(text)!)).toBe(true);
      }),
    );
  });

  it('formatIPv6 refuses anything but 16 bytes', () => {
    expect(() => formatIPv6(Buffer.alloc(4))).toThrow(RangeError);
  });
});
