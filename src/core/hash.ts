/**
 * BLAKE3-256, the one hash of the protocol. Nothing else in the code base calls
 * the hash primitive directly.
 *
 * blake3-wasm 3.0.0 has two traps, both handled here:
 *  - its one-shot `hash()` runs out of its 16 MiB wasm heap on large inputs;
 *  - `update()` with more than 1 MiB at once returns a wrong digest silently.
 * So inputs up to SLICE go through the one-shot call (cheapest per call, which
 * matters for 64-byte parent nodes and 32 KiB leaves) and anything larger is fed
 * to an incremental hasher in slices of at most SLICE bytes.
 */
import * as blake3 from 'blake3-wasm';

await blake3.load();

export const HASH_SIZE = 32;
const SLICE = 1 << 20;

export type Hash = Buffer;

/** BLAKE3-256 of one byte string. */
export function hash(data: Uint8Array): Hash {
  if (data.length <= SLICE) return blake3.hash(data);
  const h = blake3.createHash();
  try {
    for (let off = 0; off < data.length; off += SLICE) {
      h.update(data.subarray(off, Math.min(off + SLICE, data.length)));
    }
    return h.digest();
  } finally {
    h.dispose();
  }
}

/** BLAKE3-256 of the concatenation of `parts`, without building it when it is large. */
export function hashConcat(parts: readonly Uint8Array[]): Hash {
  let total = 0;
  for (const p of parts) total += p.length;
  if (total <= SLICE) return blake3.hash(Buffer.concat(parts, total));
  const h = blake3.createHash();
  try {
    for (const p of parts) {
      for (let off = 0; off < p.length; off += SLICE) {
        h.update(p.subarray(off, Math.min(off + SLICE, p.length)));
      }
    }
    return h.digest();
  } finally {
    h.dispose();
  }
}

/** Parent node of a Merkle tree: BLAKE3(left || right). */
export function hashPair(left: Uint8Array, right: Uint8Array): Hash {
  const buf = Buffer.allocUnsafe(HASH_SIZE * 2);
  buf.set(left.subarray(0, HASH_SIZE), 0);
  buf.set(right.subarray(0, HASH_SIZE), HASH_SIZE);
  return blake3.hash(buf);
}

export function toHex(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** Parse 64 hex digits into a hash, or return undefined when `s` is not one. */
export function parseHex(s: string): Hash | undefined {
  return HEX64.test(s) ? Buffer.from(s, 'hex') : undefined;
}

export const ZERO_HASH: Readonly<Hash> = Buffer.alloc(HASH_SIZE);

export function isZero(h: Uint8Array): boolean {
  for (let i = 0; i < h.length; i++) if (h[i] !== 0) return false;
  return true;
}
