/**
 * The root announce (lcsync only, not in the C protocol; docs/protocol.md#live-mirrors): a tiny
 * datagram a share sends on a share name's watch group to say which root the name has now, so a
 * mirror that follows the name (`sync --follow`) learns a new root as soon as the share
 * re-indexes, without staying joined to any object's group (a joined object group keeps a stream
 * trickling). The watch group is `ff1e:` + the first 14 bytes of watchKey(name); no C peer joins
 * it, and the name's own group (its alias) is answered exactly as before.
 *
 *   off  size  field (integers BE)
 *    0    8    magic "LCSYROOT"
 *    8    1    version 1
 *    9    1    flags: 0x01 = the body is sealed with the share's key (any other bit is refused)
 *   10    ...  body, or the body sealed (ciphertext + 16-byte tag + 24-byte nonce):
 *                0   32  the name's root hash now
 *               32    2  heartbeat: seconds until the share sends the next announce unasked (0 = none)
 *               34    2  name length n, 1..255
 *               36    n  the share name's bytes (as hashed: UTF-8, or raw bytes where the name has them)
 *
 * At most 10 + 36 + 255 + 40 = 341 bytes: never the length of a datagram (1060, 1072, 1404, 1416) or a
 * gone notice (40, 80), so no decoder mistakes one for another on the shared port.
 */
import { hashConcat, HASH_SIZE, type Hash } from '../model/hash.js';
import { nameFromBytes, nameToBytes } from '../base/names.js';

const MAGIC = Buffer.from('LCSYROOT', 'latin1');
const VERSION = 1;
const FLAG_SEALED = 0x01;
const HEAD_LEN = MAGIC.length + 2;
const BODY_FIXED = HASH_SIZE + 2 + 2;
/** A share name is a file's basename: at most 255 bytes on Linux. */
export const MAX_ANNOUNCE_NAME = 255;
/** What sealing adds (crypto.ts SEAL_OVERHEAD). */
const SEAL_EXTRA = 16 + 24;
export const MAX_ANNOUNCE_LEN = HEAD_LEN + BODY_FIXED + MAX_ANNOUNCE_NAME + SEAL_EXTRA;
const WATCH_DOMAIN = Buffer.from('lcsync watch v1\0', 'latin1');

export interface RootAnnounce {
  root: Hash;
  /** Seconds until the next unasked announce (0: the share sends none). */
  heartbeatSec: number;
  name: string;
}

/** The hash whose group carries root announces for share name `name` (the first segment of a SOURCE). */
export function watchKey(name: string): Hash {
  return hashConcat([WATCH_DOMAIN, nameToBytes(name)]);
}

/** The datagram for `a`; with `seal`, its body sealed with the share's key. Throws RangeError on fields out of range. */
export function encodeAnnounce(a: RootAnnounce, seal?: (plain: Uint8Array) => Buffer): Buffer {
  if (a.root.length !== HASH_SIZE) throw new RangeError(`announce root must be ${HASH_SIZE} bytes, got ${a.root.length}`);
  if (!Number.isInteger(a.heartbeatSec) || a.heartbeatSec < 0 || a.heartbeatSec > 0xffff) throw new RangeError(`announce heartbeat out of range: ${a.heartbeatSec}`);
  const name = nameToBytes(a.name);
  if (name.length < 1 || name.length > MAX_ANNOUNCE_NAME) throw new RangeError(`announce name must be 1..${MAX_ANNOUNCE_NAME} bytes, got ${name.length}`);
  const body = Buffer.alloc(BODY_FIXED + name.length);
  a.root.copy(body, 0);
  body.writeUInt16BE(a.heartbeatSec, HASH_SIZE);
  body.writeUInt16BE(name.length, HASH_SIZE + 2);
  name.copy(body, BODY_FIXED);
  const head = Buffer.from([...MAGIC, VERSION, seal ? FLAG_SEALED : 0]);
  return Buffer.concat([head, seal ? seal(body) : body]);
}

/**
 * The announce in `buf`, or undefined for anything else (another datagram, a bad field, a sealed
 * body without `open` or that `open` refuses, a plaintext one when `open` is given: an encrypted
 * share's mirror believes only sealed announces). Never throws.
 */
export function decodeAnnounce(buf: Uint8Array, open?: (sealed: Uint8Array) => Buffer): RootAnnounce | undefined {
  if (!(buf instanceof Uint8Array) || buf.length < HEAD_LEN + BODY_FIXED + 1 || buf.length > MAX_ANNOUNCE_LEN) return undefined;
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC) || b[MAGIC.length] !== VERSION) return undefined;
  const flags = b[MAGIC.length + 1]!;
  if ((flags & ~FLAG_SEALED) !== 0) return undefined;
  const sealed = (flags & FLAG_SEALED) !== 0;
  if (sealed !== (open !== undefined)) return undefined;
  let body: Buffer;
  if (sealed) {
    try {
      body = open!(b.subarray(HEAD_LEN));
    } catch {
      return undefined;
    }
  } else body = b.subarray(HEAD_LEN);
  if (body.length < BODY_FIXED + 1) return undefined;
  const n = body.readUInt16BE(HASH_SIZE + 2);
  if (n < 1 || n > MAX_ANNOUNCE_NAME || body.length !== BODY_FIXED + n) return undefined;
  const name = nameFromBytes(body.subarray(BODY_FIXED));
  return { root: Buffer.from(body.subarray(0, HASH_SIZE)), heartbeatSec: body.readUInt16BE(HASH_SIZE), name };
}
