/**
 * Group addresses: every object lives on `ff1e:` followed by the first 14 bytes
 * of its key hash, UDP port 4242 (the C lc_hashtoaddr with default flags).
 */
import { LcsyncError } from '../base/errors.js';

export const GROUP_PREFIX_BYTES = 14;
export const LCSYNC_PORT = 4242;
/** Flags and scope byte: transient (1), global scope (e). */
const GROUP_FLAGS = 0x1e;

/** The 16 address bytes of the group for `hash`. */
export function groupBytes(hash: Uint8Array): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0xff;
  b[1] = GROUP_FLAGS;
  b.set(hash.subarray(0, GROUP_PREFIX_BYTES), 2);
  return b;
}

/** The group address for `hash`, in the text form dgram wants. */
export function groupAddress(hash: Uint8Array): string {
  return formatIPv6(groupBytes(hash));
}

/** The hash prefix a group carries, or undefined when the group is not one of ours. */
export function prefixOfGroup(group: Uint8Array): Buffer | undefined {
  if (group.length !== 16 || group[0] !== 0xff || group[1] !== GROUP_FLAGS) return undefined;
  return Buffer.from(group.subarray(2, 16));
}

/** '0'..'9', 'a'..'f' as character codes. */
const HEX_CODES = Buffer.from('0123456789abcdef', 'latin1');
const COLON_CODE = 0x3a;
/** The characters of one address are written here and read out as one string (at most 39 of them). */
const textScratch = Buffer.alloc(40);

/**
 * The RFC 5952 text of an IPv6 address. Called for every MLD event a share handles and every
 * chunk a receiver joins (thousands a second at line rate), so its characters go into a scratch
 * buffer that becomes one string: built by concatenation it made eight word strings and a chain
 * of partial ones each time, the largest part of a share's garbage.
 */
export function formatIPv6(b: Uint8Array): string {
  if (b.length !== 16) throw new RangeError('an IPv6 address is 16 bytes');
  // RFC 5952: compress the longest run (of two or more) of zero words, the first of equal runs.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if ((b[2 * i]! | b[2 * i + 1]!) !== 0) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < 8 && (b[2 * j]! | b[2 * j + 1]!) === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const out = textScratch;
  let n = 0;
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out[n++] = COLON_CODE;
      out[n++] = COLON_CODE;
      i += bestLen - 1;
      continue;
    }
    if (i > 0 && i !== best + bestLen) out[n++] = COLON_CODE;
    // Lower-case hex without leading zeros.
    const w = (b[2 * i]! << 8) | b[2 * i + 1]!;
    if (w >= 0x1000) out[n++] = HEX_CODES[w >> 12]!;
    if (w >= 0x100) out[n++] = HEX_CODES[(w >> 8) & 15]!;
    if (w >= 0x10) out[n++] = HEX_CODES[(w >> 4) & 15]!;
    out[n++] = HEX_CODES[w & 15]!;
  }
  return out.toString('latin1', 0, n);
}

/** Parse an IPv6 address (no zone) into 16 bytes. */
export function parseIPv6(s: string): Buffer {
  // One pass over the characters: a receiver parses a group for every chunk it joins, and splitting
  // into arrays of strings made a tenth of its garbage.
  const end = s.indexOf('%') >= 0 ? s.indexOf('%') : s.length;
  const words = new Uint16Array(8);
  let n = 0;
  /** Where '::' stands among the words (-1: none). */
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === COLON && s.charCodeAt(1) === COLON) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let word = 0;
    let digits = 0;
    for (; i < end && digits <= 4; i++, digits++) {
      const v = hexValue(s.charCodeAt(i));
      if (v < 0) break;
      word = word * 16 + v;
    }
    if (digits === 0 || digits > 4 || n === 8) throw notIPv6(s);
    words[n++] = word;
    if (i === end) break;
    if (s.charCodeAt(i) !== COLON) throw notIPv6(s);
    i++;
    if (s.charCodeAt(i) === COLON && i < end) {
      if (gap >= 0) throw notIPv6(s);
      gap = n;
      i++;
    } else if (i === end) throw notIPv6(s);
  }
  if (gap < 0 ? n !== 8 : n > 7) throw notIPv6(s);
  const b = Buffer.alloc(16);
  const tail = gap < 0 ? 0 : n - gap;
  // Bytes by hand: writeUInt16BE checks its arguments through helpers that allocate on every call.
  for (let w = 0; w < n; w++) {
    const at = (w < n - tail ? w : 8 - n + w) * 2;
    b[at] = words[w]! >> 8;
    b[at + 1] = words[w]! & 0xff;
  }
  return b;
}

const COLON = 0x3a;

function notIPv6(s: string): LcsyncError {
  return new LcsyncError('USAGE', `not an IPv6 address: ${s}`);
}

/** The value of a hex digit's character code, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
