/**
 * File names are bytes: how lcsync carries them in JavaScript strings.
 *
 * Linux names are any bytes but `/` and NUL; they need not be UTF-8. A name travels inside
 * lcsync as a string in which every byte that is not part of valid UTF-8 stands as the lone
 * surrogate U+DC80..U+DCFF (0x80..0xFF; the "surrogateescape" of Python's PEP 383). Valid UTF-8
 * never decodes to a lone surrogate, so the mapping is one to one: nameToBytes(nameFromBytes(b))
 * is b for every byte string, and for a UTF-8 name the string is the usual one (so hashes of
 * UTF-8 names are unchanged). Strings stay usable with path.join, split('/') and friends, since
 * `/`, `.` and NUL are ASCII and map to themselves.
 *
 * The edges convert: fs calls take fsPath(s) (see bytefs.ts), hashes and the wire take
 * nameToBytes(s), the network gives nameFromBytes(b). People see displayName(s), JSON carries
 * jsonNames(doc).
 */
import { isUtf8 } from 'node:buffer';

const ESCAPE_BASE = 0xdc00;
/** Any UTF-16 surrogate: only strings holding one need the slow paths. */
const SURROGATE = /[\uD800-\uDFFF]/;
/** A surrogate that stands for a raw byte (not part of a pair). */
const ESCAPED_BYTE = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;

/** The string form of a name read as bytes (from readdir, readlink or the wire). */
export function nameFromBytes(bytes: Uint8Array): string {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(b)) return b.toString('utf8');
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = validSequenceLength(b, i);
    if (n === 0) {
      out += String.fromCharCode(ESCAPE_BASE + b[i]!);
      i++;
    } else {
      out += b.toString('utf8', i, i + n);
      i += n;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence at b[i] (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), else 0. */
function validSequenceLength(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** The bytes of a name (or path) in string form: what is hashed, sent and given to the kernel. */
export function nameToBytes(name: string): Buffer {
  if (!SURROGATE.test(name)) return Buffer.from(name, 'utf8');
  const out: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < name.length; i++) {
    const u = name.charCodeAt(i);
    if (u >= 0xd800 && u <= 0xdbff && i + 1 < name.length) {
      const v = name.charCodeAt(i + 1);
      if (v >= 0xdc00 && v <= 0xdfff) {
        i++;
        continue; // A pair: ordinary UTF-8.
      }
    }
    if (u >= 0xdc80 && u <= 0xdcff) {
      if (i > run) out.push(Buffer.from(name.slice(run, i), 'utf8'));
      out.push(Buffer.of(u - ESCAPE_BASE));
      run = i + 1;
    }
    // Any other lone surrogate cannot come from nameFromBytes; Buffer.from makes it U+FFFD, as Node does.
  }
  if (run < name.length) out.push(Buffer.from(name.slice(run), 'utf8'));
  return Buffer.concat(out);
}

/** Whether the name holds bytes that are not UTF-8 (so plain string APIs would change it). */
export function hasRawBytes(name: string): boolean {
  return SURROGATE.test(name) && ESCAPED_BYTE.test(name);
}

/** What to hand an fs call: the string itself when it is plain UTF-8, else its exact bytes. */
export function fsPath(p: string): string | Buffer {
  return hasRawBytes(p) ? nameToBytes(p) : p;
}

/**
 * A name as people read it in logs, errors and listings: each byte that is not UTF-8, and
 * each control character (newline, tab, DEL...), is written `\xHH` (two upper-case hex
 * digits, as `ls -b` and rsync do); everything else is printed as it is. Exact bytes are in
 * the JSON output (jsonNames).
 */
export function displayName(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]|(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/g, (c) => {
    const u = c.charCodeAt(0);
    const byte = u >= 0xdc80 ? u - ESCAPE_BASE : u;
    return `\\x${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  });
}

/** The name with every byte that is not UTF-8 replaced by U+FFFD: well-formed Unicode for JSON. */
export function wellFormedName(s: string): string {
  return hasRawBytes(s) ? nameToBytes(s).toString('utf8') : s;
}

/**
 * Prepare a JSON document whose strings may hold names: every string field `k` whose value
 * has bytes that are not UTF-8 becomes well-formed (U+FFFD for each bad sequence) and gets a
 * sibling `kBase64` with the exact bytes in base64. Plain names are left as they are, so
 * documents of UTF-8 trees do not change.
 */
export function jsonNames(value: unknown): unknown {
  if (typeof value === 'string') return wellFormedName(value);
  if (Array.isArray(value)) return value.map(jsonNames);
  if (!value || typeof value !== 'object' || Buffer.isBuffer(value) || value instanceof Uint8Array) return value;
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string' && hasRawBytes(v)) {
      out[k] = wellFormedName(v);
      out[`${k}Base64`] = nameToBytes(v).toString('base64');
    } else out[k] = jsonNames(v);
  }
  return out;
}
