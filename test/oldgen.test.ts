/**
 * The old-generation trim (src/core/base/oldgen.ts): with it, garbage that V8 promotes is collected as the heap
 * grows by a step, so the heap in use stays near the live size; without it (LCSYNC_NO_OLDGEN_TRIM=1) the same
 * work ends with a much larger heap. A share instead holds V8's own limit to slow growth (growOldGenerationSlowly).
 * Each arm runs in a child node (fixtures/oldgen-churn.mjs) with the CLI's
 * small young generation, against the built module.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MIN_STEP_BYTES, collectAt, growOldGenerationSlowly } from '../src/core/base/oldgen.js';

const REPO = path.resolve(import.meta.dirname, '..');
const BUILT = path.join(REPO, 'dist', 'core', 'base', 'oldgen.js');
const CHURN = path.join(REPO, 'test', 'fixtures', 'oldgen-churn.mjs');

function churn(trim: boolean, grow = false): { peakMiB: number; collections: number } {
  const r = spawnSync(process.execPath, ['--max-semi-space-size=1', CHURN, pathToFileURL(BUILT).href], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '', LCSYNC_NO_OLDGEN_TRIM: trim ? '0' : '1', OLDGEN_GROW: grow ? '1' : '0' },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { peakMiB: number; collections: number };
}

describe('old-generation trim', () => {
  it('collects at the live size plus a step of at least 2 MiB, a quarter of the live heap above 8 MiB', () => {
    expect(collectAt(0)).toBe(MIN_STEP_BYTES);
    expect(collectAt(4 * 2 ** 20)).toBe(6 * 2 ** 20);
    expect(collectAt(40 * 2 ** 20)).toBe(50 * 2 ** 20);
  });

  it('keeps promoted garbage from piling up; switched off, the same work grows the heap', () => {
    if (!existsSync(BUILT)) throw new Error('dist/ is not built: run `npm run build` before this test');
    const on = churn(true);
    const off = churn(false);
    expect(on.collections).toBeGreaterThan(0);
    expect(off.collections).toBe(0);
    // Live: about 0.5 MiB of ring plus node's own few MiB; measured 6.4 against 15.6 MiB (14 collections).
    expect(on.peakMiB).toBeLessThan(12.5);
    expect(off.peakMiB - on.peakMiB).toBeGreaterThan(2.5);
  });

  it('held to slow growth (a share), V8 collects the same garbage sooner by itself; LCSYNC_NO_OLDGEN_TRIM=1 switches that off too', () => {
    if (!existsSync(BUILT)) throw new Error('dist/ is not built: run `npm run build` before this test');
    const slow = churn(true, true);
    const v8Alone = churn(false, true);
    // Measured 12.5-12.7 MiB against 15.1-15.6: V8's own limit, 8 MiB above the live heap at least.
    expect(slow.collections).toBe(0);
    expect(v8Alone.peakMiB - slow.peakMiB).toBeGreaterThan(1.5);
  });

  it('leaves a heap growth the user set alone', () => {
    expect(growOldGenerationSlowly({}, ['--heap-growing-percent=50'])).toBe(false);
    expect(growOldGenerationSlowly({}, ['--heap_growing_percent=50'])).toBe(false);
    expect(growOldGenerationSlowly({ LCSYNC_NO_OLDGEN_TRIM: '1' }, [])).toBe(false);
  });
});
