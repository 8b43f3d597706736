/**
 * Share presence (docs/protocol.md#redundant-shares, an lcsync extension): the heartbeat that shares
 * of the same content on one link send each other so that they split the sending instead of doubling
 * it. No receiver, C or ours, ever joins the presence group or binds its port.
 *
 * A heartbeat (integers BE):
 *
 *   0   6   "LCPRS1"
 *   6   1   version 1
 *   7   1   flags: 0x01 = bye (the share is stopping); any other bit is refused
 *   8   16  share id (random per run)
 *   24  32  offer digest: what the share serves (share/peers.ts offerDigest)
 *   56  8   key tag: crypto.ts keyTag of the share's key, or 8 zero bytes for plaintext
 *   64  2   heartbeat interval in ms (MIN_INTERVAL_MS..MAX_INTERVAL_MS)
 *   66  1   root count r (0..MAX_ROOTS: the first r of its roots; the digest covers them all)
 *   67  1   address count a (0..MAX_ADDRESSES)
 *   68  32r root hashes
 *   .   16a the share's IPv6 addresses on its interfaces
 *
 * and nothing after. `decodeHeartbeat` is the only reader; it checks every field and length.
 */
import { hash, HASH_SIZE, type Hash } from '../model/hash.js';
import { GROUP_PREFIX_BYTES } from './address.js';

const MAGIC = Buffer.from('LCPRS1', 'ascii');
const VERSION = 1;
export const FLAG_BYE = 0x01;
export const SHARE_ID_SIZE = 16;
export const KEY_TAG_SIZE = 8;
export const MAX_ROOTS = 16;
export const MAX_ADDRESSES = 16;
export const MIN_INTERVAL_MS = 50;
export const MAX_INTERVAL_MS = 10_000;
const HEADER = 68;
/** The largest heartbeat: well inside the IPv6 minimum MTU. */
export const MAX_HEARTBEAT = HEADER + MAX_ROOTS * HASH_SIZE + MAX_ADDRESSES * 16;

/** UDP port of the presence group: not lcsync's data port, so no receiver's socket ever gets a heartbeat. */
export const PRESENCE_PORT = 4243;

/** The presence group: ff1e followed by the first 14 bytes of BLAKE3("lcsync-presence"). */
export const PRESENCE_GROUP: Buffer = Buffer.concat([Buffer.from([0xff, 0x1e]), hash(Buffer.from('lcsync-presence', 'ascii')).subarray(0, GROUP_PREFIX_BYTES)]);

export interface Heartbeat {
  bye: boolean;
  shareId: Buffer;
  digest: Hash;
  keyTag: Buffer;
  intervalMs: number;
  roots: Hash[];
  /** 16 bytes each. */
  addresses: Buffer[];
}

export function encodeHeartbeat(hb: Heartbeat): Buffer {
  if (hb.shareId.length !== SHARE_ID_SIZE) throw new RangeError('share id must be 16 bytes');
  if (hb.digest.length !== HASH_SIZE) throw new RangeError('offer digest must be 32 bytes');
  if (hb.keyTag.length !== KEY_TAG_SIZE) throw new RangeError('key tag must be 8 bytes');
  if (!Number.isInteger(hb.intervalMs) || hb.intervalMs < MIN_INTERVAL_MS || hb.intervalMs > MAX_INTERVAL_MS) throw new RangeError('heartbeat interval out of range');
  const roots = hb.roots.slice(0, MAX_ROOTS);
  const addresses = hb.addresses.slice(0, MAX_ADDRESSES);
  const out = Buffer.alloc(HEADER + roots.length * HASH_SIZE + addresses.length * 16);
  MAGIC.copy(out, 0);
  out[6] = VERSION;
  out[7] = hb.bye ? FLAG_BYE : 0;
  hb.shareId.copy(out, 8);
  hb.digest.copy(out, 24);
  hb.keyTag.copy(out, 56);
  out.writeUInt16BE(hb.intervalMs, 64);
  out[66] = roots.length;
  out[67] = addresses.length;
  let off = HEADER;
  for (const r of roots) {
    if (r.length !== HASH_SIZE) throw new RangeError('root hash must be 32 bytes');
    off += r.copy(out, off);
  }
  for (const a of addresses) {
    if (a.length !== 16) throw new RangeError('address must be 16 bytes');
    off += a.copy(out, off);
  }
  return out;
}

/** A heartbeat, or undefined for anything that is not exactly one (wrong magic, version, flags, lengths, counts). */
export function decodeHeartbeat(buf: Uint8Array): Heartbeat | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER || b.length > MAX_HEARTBEAT) return undefined;
  if (!b.subarray(0, 6).equals(MAGIC) || b[6] !== VERSION) return undefined;
  const flags = b[7]!;
  if ((flags & ~FLAG_BYE) !== 0) return undefined;
  const intervalMs = b.readUInt16BE(64);
  if (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS) return undefined;
  const r = b[66]!;
  const a = b[67]!;
  if (r > MAX_ROOTS || a > MAX_ADDRESSES) return undefined;
  if (b.length !== HEADER + r * HASH_SIZE + a * 16) return undefined;
  const roots: Hash[] = [];
  let off = HEADER;
  for (let i = 0; i < r; i++, off += HASH_SIZE) roots.push(Buffer.from(b.subarray(off, off + HASH_SIZE)));
  const addresses: Buffer[] = [];
  for (let i = 0; i < a; i++, off += 16) addresses.push(Buffer.from(b.subarray(off, off + 16)));
  return {
    bye: (flags & FLAG_BYE) !== 0,
    shareId: Buffer.from(b.subarray(8, 24)),
    digest: Buffer.from(b.subarray(24, 56)),
    keyTag: Buffer.from(b.subarray(56, 64)),
    intervalMs,
    roots,
    addresses,
  };
}
