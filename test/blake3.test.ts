/**
 * The two BLAKE3 implementations of hash.ts (the C code in the addon, hash-wasm as the fallback):
 * both against published BLAKE3 digests, against each other on random inputs of many sizes in every
 * call shape lcsync uses, and whole Merkle trees built through each path. The vector tests
 * (tree, mdex, cli-index, crypto) run on whichever path loads; LCSYNC_NO_NATIVE_BLAKE3=1 runs them
 * on the wasm one.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { blake3Impl, loadNativeBlake3, loadWasmBlake3, HASH_SIZE, type Blake3 } from '../src/core/model/hash.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { rng } from './rng.js';
import { itUnless } from './skip.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(repo, 'build/Release/lcsync.node');
const required = process.env.CI_REQUIRE_ADDON === '1';
const loaded = loadNativeBlake3();
const native = typeof loaded === 'string' ? undefined : loaded;
const wasm = await loadWasmBlake3();
// Without the addon these skip, saying why; with CI_REQUIRE_ADDON=1 they run and fail instead.
const nativeWhy = native || required ? undefined : `native BLAKE3 is not loaded: ${String(loaded)}`;
const impls: Blake3[] = native ? [native, wasm] : [wasm];

/** b3sum of the official BLAKE3 test-vector input (byte i is i % 251) of each length. */
const KNOWN: [number, string][] = [
  [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
  [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'],
  [1023, '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11'],
  [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'],
  [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'],
  [32768, '162183d1f9184474f5a5c9e6224e66720cdb6523f822e52d9b1efa30893f48f9'],
  [32769, 'da589428d9b32c97658a04a21c0c8a38aad2ac402120819d956fd6d62bbfa36e'],
  [1048577, '2f053cd7472cf0cd2f9adaf45c1180255b91b9a865404a63671a0ee5f792ed33'],
];

const SIZES = [0, 1, 2, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 4095, 4096, 16384, 32767, 32768, 32769, 65536 + 7,
  (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 3];

function randomBytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

function digest(impl: Blake3, data: Uint8Array): string {
  const out = Buffer.alloc(HASH_SIZE);
  impl.hashInto(data, out, 0);
  return out.toString('hex');
}

// Room for the largest size at a small offset.
const big = randomBytes(SIZES[SIZES.length - 1]! + 64, 7);

describe('BLAKE3 implementations', () => {
  it('the addon loads when it was built (required with CI_REQUIRE_ADDON=1)', () => {
    if (required || existsSync(ADDON)) expect(loaded, `${loaded}`).not.toBeTypeOf('string');
    expect(blake3Impl).toBe(process.env.LCSYNC_NO_NATIVE_BLAKE3 === '1' || !native ? 'wasm' : 'native');
  });

  it.each(impls.map((i) => [i.name, i] as const))('%s gives the published digests', (_, impl) => {
    for (const [n, want] of KNOWN) {
      const input = Buffer.alloc(n);
      for (let i = 0; i < n; i++) input[i] = i % 251;
      expect(digest(impl, input), `${n} bytes`).toBe(want);
      // At an odd offset inside a larger buffer, with the digest written at an offset.
      const host = Buffer.alloc(n + 3 + 37);
      input.copy(host, 3);
      impl.hashInto(host.subarray(3, 3 + n), host, n + 3 + 5);
      expect(host.subarray(n + 8, n + 8 + HASH_SIZE).toString('hex')).toBe(want);
    }
  });

  itUnless(nativeWhy, 'native and wasm agree on random inputs of every size, whole and in parts', () => {
    const r = rng(99);
    for (const n of SIZES) {
      for (const start of [0, 1, 13]) {
        const d = big.subarray(start, start + n);
        const want = digest(wasm, d);
        expect(digest(native!, d), `${n} bytes at ${start}`).toBe(want);
        // Parts: random cuts, some empty, as hashConcat gets them.
        const parts: Buffer[] = [];
        let off = 0;
        while (off < n) {
          const len = Math.min(n - off, Math.floor(r() * r() * 200000));
          parts.push(d.subarray(off, off + len));
          off += len;
        }
        parts.splice(Math.floor(r() * (parts.length + 1)), 0, Buffer.alloc(0));
        for (const impl of [native!, wasm]) {
          const out = Buffer.alloc(HASH_SIZE);
          impl.hashPartsInto(parts, out, 0);
          expect(out.toString('hex'), `${impl.name}, ${n} bytes in ${parts.length} parts`).toBe(want);
        }
      }
    }
  });

  itUnless(nativeWhy, 'leaves and parent levels agree between native and wasm, and with one call per input', () => {
    for (const n of SIZES) {
      for (const leaf of [32768, 1000]) {
        const d = big.subarray(5, 5 + n);
        const count = Math.ceil(n / leaf);
        const outs = [native!, wasm].map((impl) => {
          const out = Buffer.alloc(7 + count * HASH_SIZE + 9, 0xee);
          expect(impl.leavesInto(d, leaf, out, 7)).toBe(count);
          // Bytes around the digests stay untouched.
          expect(out.subarray(0, 7).every((b) => b === 0xee) && out.subarray(7 + count * HASH_SIZE).every((b) => b === 0xee)).toBe(true);
          return out;
        });
        expect(outs[0]!.equals(outs[1]!), `${n} bytes in ${leaf}-byte leaves`).toBe(true);
        for (let i = 0; i < count; i += Math.max(1, count >> 3)) {
          expect(outs[0]!.subarray(7 + i * HASH_SIZE, 7 + (i + 1) * HASH_SIZE).toString('hex')).toBe(
            digest(wasm, d.subarray(i * leaf, Math.min(n, (i + 1) * leaf))),
          );
        }
      }
    }
    for (const count of [0, 1, 2, 3, 64, 1000]) {
      const src = big.subarray(11, 11 + count * 64 + 64);
      const [a, b] = [native!, wasm].map((impl) => {
        const out = Buffer.alloc(count * HASH_SIZE + 3);
        impl.pairsInto(src, 64, count, out, 3);
        return out;
      });
      expect(a!.equals(b!), `${count} pairs`).toBe(true);
      if (count > 0) expect(a!.subarray(3 + (count - 1) * HASH_SIZE).toString('hex')).toBe(digest(wasm, src.subarray(count * 64, count * 64 + 64)));
    }
  });

  itUnless(nativeWhy, 'the addon refuses bad arguments instead of reading or writing out of bounds', () => {
    const out = Buffer.alloc(64);
    expect(() => native!.leavesInto(Buffer.alloc(3 * 32768), 32768, out, 0)).toThrow(RangeError);
    expect(() => native!.leavesInto(Buffer.alloc(10), 0, out, 0)).toThrow(RangeError);
    expect(() => native!.leavesInto(Buffer.alloc(10), 1.5, out, 0)).toThrow(RangeError);
    expect(() => native!.hashInto(Buffer.alloc(10), out, 33)).toThrow(RangeError);
    expect(() => native!.hashInto(Buffer.alloc(10), out, -1)).toThrow(RangeError);
    expect(() => native!.hashInto('abc' as unknown as Uint8Array, out, 0)).toThrow(TypeError);
    expect(() => native!.hashInto(new Uint16Array(4) as unknown as Uint8Array, out, 0)).toThrow(TypeError);
    expect(() => native!.pairsInto(Buffer.alloc(128), 0, 3, Buffer.alloc(96), 0)).toThrow(RangeError);
    expect(() => native!.pairsInto(Buffer.alloc(128), 0, 2, Buffer.alloc(32), 0)).toThrow(RangeError);
    const shared = Buffer.alloc(256);
    expect(() => native!.pairsInto(shared, 0, 2, shared, 64)).toThrow(/overlap/);
    const addon = createRequireAddon();
    expect(() => addon.blake3Update({}, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => addon.blake3Final(Buffer.alloc(2000), Buffer.alloc(32), 0)).toThrow(TypeError);
  });

  itUnless(nativeWhy, 'Merkle trees built through the wasm path equal those built through the native one', async () => {
    vi.stubEnv('LCSYNC_NO_NATIVE_BLAKE3', '1');
    vi.resetModules();
    const wasmHash = await import('../src/core/model/hash.js');
    const wasmTree = await import('../src/core/model/tree.js');
    expect(wasmHash.blake3Impl).toBe('wasm');
    for (const n of [1, 32768, 32769, 5 * 32768 + 17, (1 << 20) + 1, 5 * (1 << 20) + 3]) {
      const d = big.subarray(0, n);
      const a = MerkleTree.fromBuffer(d);
      const b = wasmTree.MerkleTree.fromBuffer(d);
      expect(a.nodes.equals(b.nodes), `${n} bytes`).toBe(true);
      expect(b.verify()).toBe(true);
      expect(wasmTree.MerkleTree.fromNodes(n, a.nodes).verify()).toBe(true);
    }
  });
});

afterEach(() => {
  vi.unstubAllEnvs();
});

interface HasherCalls {
  blake3Update(h: unknown, d: Uint8Array): void;
  blake3Final(h: unknown, out: Uint8Array, outOffset: number): void;
}

function createRequireAddon(): HasherCalls {
  return createRequire(import.meta.url)(ADDON) as HasherCalls;
}
