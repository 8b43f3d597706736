/**
 * ops/service.ts sharePool(): a share hashes files below SHARE_POOL_THRESHOLD on its own thread
 * (starting the worker cost more CPU than hashing them), larger ones on its worker, and both give
 * the index a plain build gives. Sparse files: the bytes are zeros, read from no disk.
 */
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_POOL_THRESHOLD } from '../src/core/index/hashpool.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { SHARE_POOL_THRESHOLD, sharePool } from '../src/core/ops/service.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-sharepool-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function sparse(name: string, size: number): string {
  const p = path.join(tmp, name);
  writeFileSync(p, '');
  truncateSync(p, size);
  return p;
}

describe("a share's hash pool", () => {
  it('hashes a 64 MiB file (above the generic pool threshold) without starting its worker', async () => {
    expect(64 * 2 ** 20).toBeGreaterThan(DEFAULT_POOL_THRESHOLD);
    const file = sparse('64m.bin', 64 * 2 ** 20);
    const pool = sharePool();
    try {
      const idx = await ShareIndex.build([file], { leafHasher: pool });
      expect(pool.workers).toBe(0);
      const plain = await ShareIndex.build([file]);
      expect(idx.roots[0]!.hash.equals(plain.roots[0]!.hash)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('hashes a file of SHARE_POOL_THRESHOLD bytes or more on its worker, to the same index', async () => {
    const file = sparse('big.bin', SHARE_POOL_THRESHOLD + 1024);
    const pool = sharePool();
    try {
      const idx = await ShareIndex.build([file], { leafHasher: pool });
      expect(pool.workers).toBe(1);
      const plain = await ShareIndex.build([file]);
      expect(idx.roots[0]!.hash.equals(plain.roots[0]!.hash)).toBe(true);
    } finally {
      await pool.close();
    }
  }, 60_000);
});
