/**
 * BLAKE3-256, the one hash of the protocol. Nothing else in the code base calls
 * the hash primitive directly.
 *
 * Two implementations give the same digests (test/blake3.test.ts compares them):
 *  - native: the official C code with its SIMD paths, compiled into lcsync's
 *    addon (native/blake3_napi.c), used when the addon loads;
 *  - wasm: the hash-wasm package, when the addon is missing or
 *    LCSYNC_NO_NATIVE_BLAKE3=1 (so both paths can be tested on one machine).
 * Chosen once at load; `blake3Impl` says which. hashLeaves and hashPairs hash
 * many inputs per call, which is where the native path gains most: one call
 * per read block of leaves or per tree level instead of one per node.
 */
import { loadAddon } from '../base/addon.js';

export const HASH_SIZE = 32;

export type Hash = Buffer;

/** What both implementations provide; every output goes into a caller's buffer at an offset. */
export interface Blake3 {
  readonly name: 'native' | 'wasm';
  hashInto(data: Uint8Array, out: Uint8Array, outOffset: number): void;
  /** BLAKE3 of the concatenation of `parts`, without building it. */
  hashPartsInto(parts: readonly Uint8Array[], out: Uint8Array, outOffset: number): void;
  /** Digests of data cut into leafSize-byte pieces (the last may be short), back to back into out; returns their count. */
  leavesInto(data: Uint8Array, leafSize: number, out: Uint8Array, outOffset: number): number;
  /** For i < count: out[outOffset + 32i] = BLAKE3(src[srcOffset + 64i, +64)). The ranges must not overlap. */
  pairsInto(src: Uint8Array, srcOffset: number, count: number, out: Uint8Array, outOffset: number): void;
}

interface Blake3Addon {
  blake3HashInto(data: Uint8Array, out: Uint8Array, outOffset: number): void;
  blake3Leaves(data: Uint8Array, leafSize: number, out: Uint8Array, outOffset: number): number;
  blake3Pairs(src: Uint8Array, srcOffset: number, count: number, out: Uint8Array, outOffset: number): void;
  blake3Hasher(): object;
  blake3Update(hasher: object, data: Uint8Array): void;
  blake3Final(hasher: object, out: Uint8Array, outOffset: number): void;
}

/** Inputs up to this many bytes in parts are copied into one buffer: cheaper than a hasher object. */
const CONCAT_MAX = 1 << 16;

/** The native implementation, or why it is not available. */
export function loadNativeBlake3(): Blake3 | string {
  const { addon: loaded, error } = loadAddon();
  if (!loaded) return error ?? 'cannot load the lcsync addon';
  const a = loaded as unknown as Partial<Blake3Addon>;
  if (typeof a.blake3HashInto !== 'function' || typeof a.blake3Leaves !== 'function' || typeof a.blake3Pairs !== 'function' ||
    typeof a.blake3Hasher !== 'function' || typeof a.blake3Update !== 'function' || typeof a.blake3Final !== 'function') {
    return 'the lcsync addon has no BLAKE3 functions (rebuild it: npm rebuild lcsync)';
  }
  const addon = a as Blake3Addon;
  return {
    name: 'native',
    hashInto: (data, out, off) => addon.blake3HashInto(data, out, off),
    hashPartsInto(parts, out, off) {
      let total = 0;
      for (const p of parts) total += p.length;
      if (total <= CONCAT_MAX) {
        addon.blake3HashInto(parts.length === 1 ? parts[0]! : Buffer.concat(parts, total), out, off);
        return;
      }
      const h = addon.blake3Hasher();
      for (const p of parts) addon.blake3Update(h, p);
      addon.blake3Final(h, out, off);
    },
    leavesInto: (data, leafSize, out, off) => addon.blake3Leaves(data, leafSize, out, off),
    pairsInto: (src, srcOff, count, out, off) => addon.blake3Pairs(src, srcOff, count, out, off),
  };
}

/**
 * The wasm implementation. hash-wasm's hasher is synchronous once made, and
 * every call here runs init..digest without yielding, so one instance serves
 * all callers of this thread.
 */
export async function loadWasmBlake3(): Promise<Blake3> {
  const { createBLAKE3 } = await import('hash-wasm');
  const h = await createBLAKE3();
  const hashInto = (data: Uint8Array, out: Uint8Array, off: number) => {
    h.init();
    h.update(data);
    out.set(h.digest('binary'), off);
  };
  return {
    name: 'wasm',
    hashInto,
    hashPartsInto(parts, out, off) {
      h.init();
      for (const p of parts) h.update(p);
      out.set(h.digest('binary'), off);
    },
    leavesInto(data, leafSize, out, off) {
      const n = Math.ceil(data.length / leafSize);
      if (off + n * HASH_SIZE > out.length) throw new RangeError('out is too small for the leaves');
      for (let i = 0; i < n; i++) hashInto(data.subarray(i * leafSize, Math.min((i + 1) * leafSize, data.length)), out, off + i * HASH_SIZE);
      return n;
    },
    pairsInto(src, srcOff, count, out, off) {
      if (srcOff + count * 2 * HASH_SIZE > src.length || off + count * HASH_SIZE > out.length) {
        throw new RangeError('pairs out of range');
      }
      for (let i = 0; i < count; i++) {
        const s = srcOff + i * 2 * HASH_SIZE;
        hashInto(src.subarray(s, s + 2 * HASH_SIZE), out, off + i * HASH_SIZE);
      }
    },
  };
}

async function choose(): Promise<Blake3> {
  if (process.env.LCSYNC_NO_NATIVE_BLAKE3 === '1') return loadWasmBlake3();
  const native = loadNativeBlake3();
  return typeof native === 'string' ? loadWasmBlake3() : native;
}

const impl = await choose();

/** Which implementation this process hashes with. */
export const blake3Impl: Blake3['name'] = impl.name;

/** BLAKE3-256 of one byte string. */
export function hash(data: Uint8Array): Hash {
  const out = Buffer.allocUnsafe(HASH_SIZE);
  impl.hashInto(data, out, 0);
  return out;
}

/** BLAKE3-256 of the concatenation of `parts`, without building it when it is large. */
export function hashConcat(parts: readonly Uint8Array[]): Hash {
  const out = Buffer.allocUnsafe(HASH_SIZE);
  impl.hashPartsInto(parts, out, 0);
  return out;
}

/** Parent node of a Merkle tree: BLAKE3(left || right). */
export function hashPair(left: Uint8Array, right: Uint8Array): Hash {
  const buf = Buffer.allocUnsafe(HASH_SIZE * 3);
  buf.set(left.subarray(0, HASH_SIZE), 0);
  buf.set(right.subarray(0, HASH_SIZE), HASH_SIZE);
  impl.pairsInto(buf, 0, 1, buf, 2 * HASH_SIZE);
  return buf.subarray(2 * HASH_SIZE);
}

/**
 * Hash `data` in consecutive `leafSize`-byte leaves (the last may be shorter;
 * none when data is empty), writing the digests back to back into `out` at
 * byte `outOffset`. Returns the number of leaves.
 */
export function hashLeaves(data: Uint8Array, leafSize: number, out: Uint8Array, outOffset: number): number {
  return impl.leavesInto(data, leafSize, out, outOffset);
}

/**
 * One level of Merkle parents: for i < count, the hash of the 64 bytes at
 * src[srcOffset + 64i] goes to out[outOffset + 32i]. The ranges must not overlap.
 */
export function hashPairs(src: Uint8Array, srcOffset: number, count: number, out: Uint8Array, outOffset: number): void {
  impl.pairsInto(src, srcOffset, count, out, outOffset);
}

export function toHex(h: Uint8Array): string {
  // A Buffer (nearly every hash) formats itself; a view made for it would be garbage, made several
  // times for every chunk a receiver fetches (its maps are keyed by hex).
  return h instanceof Buffer ? h.toString('hex') : Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** Parse 64 hex digits into a hash, or return undefined when `s` is not one. */
export function parseHex(s: string): Hash | undefined {
  return HEX64.test(s) ? Buffer.from(s, 'hex') : undefined;
}

export function isZero(h: Uint8Array): boolean {
  for (let i = 0; i < h.length; i++) if (h[i] !== 0) return false;
  return true;
}
