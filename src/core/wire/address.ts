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

/**
 * The RFC 5952 text of an IPv6 address. Called for every MLD event a share handles (thousands a
 * second at line rate), so it builds the string directly rather than through arrays of words.
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
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (i > 0 && i !== best + bestLen) out += ':';
    out += ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16);
  }
  return out;
}

/** Parse an IPv6 address (no zone) into 16 bytes. */
export function parseIPv6(s: string): Buffer {
  const fail = () => new LcsyncError('USAGE', `not an IPv6 address: ${s}`);
  const zone = s.indexOf('%');
  const text = zone >= 0 ? s.slice(0, zone) : s;
  const halves = text.split('::');
  if (halves.length > 2) throw fail();
  const parse = (part: string) => (part === '' ? [] : part.split(':'));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw fail();
  const words = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  const b = Buffer.alloc(16);
  words.forEach((w, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) throw fail();
    b.writeUInt16BE(parseInt(w, 16), i * 2);
  });
  return b;
}
