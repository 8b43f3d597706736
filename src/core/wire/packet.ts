/**
 * The lcsync datagram (docs/protocol.md#datagrams): one UDP payload carries one
 * RaptorQ symbol of one object.
 *
 *   off  size  field
 *    0    32   OID      BLAKE3 of the whole object
 *   [32    8   OTI      u64 BE (F << 24) | T: F = object length (40 bits), 8 reserved zero bits, T
 *    40    4   scheme   u32 BE (Z << 24) | (N << 8) | Al: Z = 1, N = 1, Al = 4]
 *   32|44  4   PID      u32 BE (SBN << 24) | ESI, SBN = 0
 *   36|48  T   symbol
 *
 * The bracketed OTI and scheme are present on file-tree, directory and symlink
 * objects (1072-byte datagrams at T = 1024) and absent on chunks (1060 bytes), whose length
 * the receiver knows from the tree. One encoder and one decoder; the decoder is
 * the only place that reads these fields from the network.
 *
 * The symbol size T is 1024, as in the C lcsync, or LARGE_SYMBOL_SIZE (1368, an lcsync
 * extension a share turns on with --symbol-size 1368): datagrams of 1404 and 1416 bytes, a 32 KiB
 * chunk in 24 symbols instead of 32. A datagram's length says which (the four lengths differ);
 * with an OTI its T field must say the same. An object's symbols all have one size.
 */

import { hashConcat, HASH_SIZE, type Hash } from '../model/hash.js';

export const OID_LEN = 32;
/** RaptorQ symbol size T of the C protocol, and the default. */
export const SYMBOL_SIZE = 1024;
/**
 * The larger symbol size (an lcsync extension): the smallest multiple of 4 (Al) that carries a
 * 32 KiB chunk in 24 symbols. A datagram with an OTI is then 1416 bytes, 1464 with IPv6 and UDP
 * headers, under a 1500-byte MTU with room for a tunnel's headers.
 */
export const LARGE_SYMBOL_SIZE = 1368;
/** The symbol sizes a datagram may have. */
export const SYMBOL_SIZES: readonly number[] = [SYMBOL_SIZE, LARGE_SYMBOL_SIZE];
const OTI_LEN = 8;
const SCHEME_LEN = 4;
const PID_LEN = 4;
/** Datagram without OTI (chunks), at T = 1024. */
export const DATAGRAM_LEN = OID_LEN + PID_LEN + SYMBOL_SIZE;
/** Datagram with OTI and scheme (tree, directory and symlink objects), at T = 1024. */
export const DATAGRAM_OTI_LEN = OID_LEN + OTI_LEN + SCHEME_LEN + PID_LEN + SYMBOL_SIZE;
/** The longest datagram: with OTI, at LARGE_SYMBOL_SIZE. */
export const MAX_DATAGRAM_LEN = OID_LEN + OTI_LEN + SCHEME_LEN + PID_LEN + LARGE_SYMBOL_SIZE;
/** Whether `t` is a symbol size lcsync sends and accepts. */
export function isSymbolSize(t: number): boolean {
  return t === SYMBOL_SIZE || t === LARGE_SYMBOL_SIZE;
}
/** ESIs are 24 bits. */
export const MAX_ESI = 0xffffff;
/**
 * Largest object we send or accept: 10120 symbols, the most that the npm
 * raptorq 1.7 codec keeps in one sub-block (N = 1; see
 * docs/protocol.md#raptorq). Above it that codec switches to N = 2 and stops being
 * wire-compatible with the C tool, which always uses N = 1. lcsync objects are
 * at most 32 KiB except directory objects, which would need ~323k entries to
 * reach this.
 */
export const MAX_OBJECT = 10120 * SYMBOL_SIZE;

/** The FEC parameters the C tool writes and that we require: Z = 1, N = 1, Al = 4. */
const SCHEME_Z = 1;
const SCHEME_N = 1;
const SCHEME_AL = 4;

export interface Datagram {
  oid: Buffer;
  /** F from the OTI; present only on datagrams that carry an OTI. */
  transferLength?: number;
  esi: number;
  symbol: Buffer;
}

/**
 * Build one datagram, in a new buffer or at the start of `into` (a sender encodes a whole batch
 * into one buffer instead of allocating one per datagram). Returns the datagram's bytes. Throws
 * RangeError on arguments that cannot be put on the wire, or when `into` is too short.
 */
export function encodeDatagram(d: { oid: Uint8Array; transferLength?: number; esi: number; symbol: Uint8Array }, into?: Buffer): Buffer {
  const T = d.symbol.length;
  if (!isSymbolSize(T)) throw new RangeError(`symbol must be ${SYMBOL_SIZES.join(' or ')} bytes, got ${T}`);
  const len = datagramPrefixLength(d.transferLength !== undefined) + PID_LEN + T;
  if (into && into.length < len) throw new RangeError(`datagram needs ${len} bytes, buffer has ${into.length}`);
  const b = into ? into.subarray(0, len) : Buffer.allocUnsafe(len);
  b.set(d.symbol, writeHeader(b, d.oid, d.transferLength, d.esi, T));
  return b;
}

/**
 * Write a datagram's header (OID, OTI and scheme when there is a transfer length, PID) at the start
 * of `b`, which the caller sized; returns where the symbol goes. The one writer of these fields.
 */
function writeHeader(b: Buffer, oid: Uint8Array, transferLength: number | undefined, esi: number, T: number): number {
  if (oid.length !== OID_LEN) throw new RangeError(`OID must be ${OID_LEN} bytes, got ${oid.length}`);
  if (!Number.isInteger(esi) || esi < 0 || esi > MAX_ESI) throw new RangeError(`ESI ${esi} is not a 24-bit number`);
  const withOti = transferLength !== undefined;
  const F = transferLength ?? 0;
  if (withOti && (!Number.isInteger(F) || F < 1 || F > MAX_OBJECT)) {
    throw new RangeError(`transfer length ${F} is outside 1..${MAX_OBJECT}`);
  }
  b.set(oid, 0);
  let off = OID_LEN;
  if (withOti) {
    // (F << 24) | T as a big-endian u64: 5 bytes of F, one reserved zero byte, 2 bytes of T.
    b.writeUIntBE(F, off, 5);
    b[off + 5] = 0;
    b.writeUInt16BE(T, off + 6);
    off += OTI_LEN;
    b.writeUInt32BE(((SCHEME_Z << 24) | (SCHEME_N << 8) | SCHEME_AL) >>> 0, off);
    off += SCHEME_LEN;
  }
  // SBN is always 0: one source block.
  b.writeUInt32BE(esi, off);
  return off + PID_LEN;
}

/** Bytes of a datagram before its PID: the OID, and with a transfer length the OTI and scheme (32 or 44). */
export function datagramPrefixLength(withOti: boolean): number {
  return withOti ? OID_LEN + OTI_LEN + SCHEME_LEN : OID_LEN;
}

/**
 * The part of an object's datagrams that does not change from symbol to symbol (OID, OTI,
 * scheme), as encodeDatagram writes it: what a native framer (net/txplan.ts) puts in front of
 * each PID and symbol, so the header format keeps this one encoder.
 */
export function datagramPrefix(oid: Uint8Array, transferLength?: number, symbolSize = SYMBOL_SIZE): Buffer {
  if (!isSymbolSize(symbolSize)) throw new RangeError(`symbol size must be ${SYMBOL_SIZES.join(' or ')}, got ${symbolSize}`);
  // Written as encodeDatagram writes a header, into a small buffer (from node's pool) with room for
  // the PID, which is not part of the prefix. A share makes one per chunk it sends, and encoding a
  // whole zeroed datagram to cut the prefix from it was a noticeable part of its work per chunk.
  const len = datagramPrefixLength(transferLength !== undefined);
  const b = Buffer.allocUnsafe(len + PID_LEN);
  writeHeader(b, oid, transferLength, 0, symbolSize);
  return b.subarray(0, len);
}

/**
 * Parse and validate one UDP payload. Returns undefined for anything that is
 * not a well-formed lcsync datagram; never throws. The OID and symbol of the
 * result are views into `buf` (no copy): copy them if `buf` is reused.
 *
 * Checks: length exactly 36 + T or 48 + T for a T of SYMBOL_SIZES (1060, 1072, 1404 or 1416);
 * with an OTI, its T equal to that, reserved byte 0, 1 <= F <= MAX_OBJECT, Z = 1 and N = 1 (any
 * Al: with one sub-block the alignment does not change the symbols); SBN = 0. The symbol's length
 * is T.
 */
export function decodeDatagram(buf: Uint8Array): Datagram | undefined {
  if (!(buf instanceof Uint8Array)) return undefined;
  const len = buf.length;
  // The four lengths differ: the length says whether there is an OTI, and T.
  const withOti = isSymbolSize(len - datagramPrefixLength(true) - PID_LEN);
  const T = len - datagramPrefixLength(withOti) - PID_LEN;
  if (!isSymbolSize(T)) return undefined;
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = OID_LEN;
  let transferLength: number | undefined;
  if (withOti) {
    // 40-bit F fits a double exactly; read it bytewise rather than as a bigint.
    const F = b.readUIntBE(off, 5);
    if (b[off + 5] !== 0) return undefined;
    if (b.readUInt16BE(off + 6) !== T) return undefined;
    if (F < 1 || F > MAX_OBJECT) return undefined;
    off += OTI_LEN;
    if (b[off] !== SCHEME_Z || b.readUInt16BE(off + 1) !== SCHEME_N) return undefined;
    off += SCHEME_LEN;
    transferLength = F;
  }
  if (b[off] !== 0) return undefined; // SBN: one source block only
  const esi = b.readUIntBE(off + 1, 3);
  const d: Datagram = {
    oid: b.subarray(0, OID_LEN),
    esi,
    symbol: b.subarray(off + PID_LEN, off + PID_LEN + T),
  };
  if (transferLength !== undefined) d.transferLength = transferLength;
  return d;
}

/** Number of source symbols K of an object of `length` bytes in symbols of `symbolSize` bytes. */
export function sourceSymbols(length: number, symbolSize = SYMBOL_SIZE): number {
  return Math.ceil(length / symbolSize);
}

/*
 * The gone notice (lcsync only, not in the C protocol). When a share re-indexes, objects of the
 * old index that the new one lacks (chunks that changed, tree parts of the old root) can never be
 * served again. A receiver whose request for such an object stalls also joins the object's
 * notice group, `ff1e:` + the first 14 bytes of goneNoticeKey(key); a share that retired `key`
 * answers a join there with a few notices:
 *
 *   off  size  field
 *    0    8    magic "LCSYGONE"
 *    8   32|72 body: the key (as the receiver asked for it); sealed with the share's key
 *              (ciphertext + 16-byte tag + 24-byte nonce) when the share is encrypted
 *
 * A C client never joins a notice group, so it never sees one; and at 40 or 80 bytes a notice
 * cannot be mistaken for a datagram (1060 to 1416 bytes) by either decoder.
 */
const NOTICE_MAGIC = Buffer.from('LCSYGONE', 'latin1');
const NOTICE_DOMAIN = Buffer.from('lcsync gone notice v1\0', 'latin1');
/** What sealing adds: tag and nonce (crypto.ts SEAL_OVERHEAD). */
const NOTICE_SEAL_EXTRA = 16 + 24;
export const NOTICE_LEN = NOTICE_MAGIC.length + HASH_SIZE;
export const NOTICE_SEALED_LEN = NOTICE_LEN + NOTICE_SEAL_EXTRA;

/** The hash whose group carries gone notices about `key`. */
export function goneNoticeKey(key: Uint8Array): Hash {
  return hashConcat([NOTICE_DOMAIN, key]);
}

/** Build a gone notice around `body`: the key, or the key sealed with the share's key. */
export function encodeGoneNotice(body: Uint8Array): Buffer {
  if (body.length !== HASH_SIZE && body.length !== HASH_SIZE + NOTICE_SEAL_EXTRA) throw new RangeError(`gone notice body must be ${HASH_SIZE} or ${HASH_SIZE + NOTICE_SEAL_EXTRA} bytes, got ${body.length}`);
  return Buffer.concat([NOTICE_MAGIC, body]);
}

/** The body of a gone notice (a view into `buf`), or undefined for anything else; never throws. */
export function decodeGoneNotice(buf: Uint8Array): { body: Buffer; sealed: boolean } | undefined {
  if (!(buf instanceof Uint8Array)) return undefined;
  if (buf.length !== NOTICE_LEN && buf.length !== NOTICE_SEALED_LEN) return undefined;
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, NOTICE_MAGIC.length).equals(NOTICE_MAGIC)) return undefined;
  return { body: b.subarray(NOTICE_MAGIC.length), sealed: buf.length === NOTICE_SEALED_LEN };
}

/*
 * The cursor (lcsync only, not in the C protocol): where a share is in a file now, so that a
 * receiver that starts the file while others are fetching it begins there and wraps around
 * (a carousel), and the datagrams already going out serve it too. A receiver about to fetch a
 * file's chunks joins the file's cursor group, `ff1e:` + the first 14 bytes of cursorKey(root),
 * where root is the file's Merkle root (the tree says it); a share answers every join there
 * with one cursor:
 *
 *   off  size  field
 *    0    8    magic "LCSYCURS"
 *    8   28    tag: the first 28 bytes of cursorKey(root) (which file it answers for)
 *   36    4    chunk: the lowest chunk of the file the share is sending now (big-endian),
 *              or 0xffffffff when it sends none
 *
 * The tag is a hash of the entry hash, so a cursor says no more about the file than its group
 * does, encrypted or not. A forged cursor changes only the order the chunks are asked for (each
 * is checked against its leaf). A C client never joins a cursor group. At 40 bytes a cursor is
 * not a datagram (1060 to 1416 bytes); it has the length of an unsealed gone notice, which the
 * native receive path (native/rx_assembler.c) hands up to JS, and is told apart by its magic.
 */
const CURSOR_MAGIC = Buffer.from('LCSYCURS', 'latin1');
const CURSOR_DOMAIN = Buffer.from('lcsync cursor v1\0', 'latin1');
const CURSOR_TAG_LEN = 28;
export const CURSOR_LEN = CURSOR_MAGIC.length + CURSOR_TAG_LEN + 4;
/** The chunk field of a cursor from a share that sends none of the file now. */
export const CURSOR_IDLE = 0xffffffff;

/** The hash whose group carries the cursor of the file whose Merkle root is `root`. */
export function cursorKey(root: Uint8Array): Hash {
  return hashConcat([CURSOR_DOMAIN, root]);
}

/** A cursor for the file whose cursorKey is `key`: the share is at `chunk` (CURSOR_IDLE: nowhere). */
export function encodeCursor(key: Uint8Array, chunk: number): Buffer {
  if (key.length !== HASH_SIZE) throw new RangeError(`cursor key must be ${HASH_SIZE} bytes, got ${key.length}`);
  if (!Number.isInteger(chunk) || chunk < 0 || chunk > CURSOR_IDLE) throw new RangeError(`cursor chunk out of range: ${chunk}`);
  const out = Buffer.alloc(CURSOR_LEN);
  CURSOR_MAGIC.copy(out, 0);
  out.set(key.subarray(0, CURSOR_TAG_LEN), CURSOR_MAGIC.length);
  out.writeUInt32BE(chunk, CURSOR_MAGIC.length + CURSOR_TAG_LEN);
  return out;
}

/** A cursor's tag (hex, to match against the cursorKey asked for) and chunk, or undefined for anything else; never throws. */
export function decodeCursor(buf: Uint8Array): { tag: string; chunk: number } | undefined {
  if (!(buf instanceof Uint8Array) || buf.length !== CURSOR_LEN) return undefined;
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, CURSOR_MAGIC.length).equals(CURSOR_MAGIC)) return undefined;
  return { tag: b.toString('hex', CURSOR_MAGIC.length, CURSOR_MAGIC.length + CURSOR_TAG_LEN), chunk: b.readUInt32BE(CURSOR_MAGIC.length + CURSOR_TAG_LEN) };
}

/** The tag (hex) a cursor for `key` (a cursorKey) carries. */
export function cursorTag(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, CURSOR_TAG_LEN).toString('hex');
}
