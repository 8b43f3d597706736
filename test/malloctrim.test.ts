/**
 * The C heap's trim while a sync runs (src/core/base/malloctrim.ts, native/memtrim.c): Buffers' bytes
 * freed between live ones stay resident in glibc's brk heap until malloc_trim hands their pages back.
 * A child node (fixtures/malloc-fragments.mjs) frees every other one of 1,280 32 KiB Buffers and
 * measures the heap before and after a tick of the trim; LCSYNC_NO_MALLOC_TRIM=1 switches it off.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../src/core/base/addon.js';
import { cHeapTrims, trimCHeapNow } from '../src/core/base/malloctrim.js';

const REPO = path.resolve(import.meta.dirname, '..');
const BUILT = path.join(REPO, 'dist', 'core', 'base', 'malloctrim.js');
const FRAGMENTS = path.join(REPO, 'test', 'fixtures', 'malloc-fragments.mjs');

function fragments(trim: boolean): { before: number; after: number; trims: number } {
  const r = spawnSync(process.execPath, ['--expose-gc', FRAGMENTS, pathToFileURL(BUILT).href], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: '', LCSYNC_NO_MALLOC_TRIM: trim ? '0' : '1' },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { before: number; after: number; trims: number };
}

// glibc only (musl's malloc returns freed memory itself; mallocTrim is then false and does nothing).
const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime !== undefined;

describe.skipIf(!glibc || !loadAddon().addon?.mallocTrim)('C heap trim', () => {
  it('hands freed pages between live Buffers back; switched off, they stay resident', () => {
    if (!existsSync(BUILT)) throw new Error('dist/ is not built: run `npm run build` before this test');
    const on = fragments(true);
    const off = fragments(false);
    expect(on.trims).toBeGreaterThan(0);
    expect(off.trims).toBe(0);
    // 640 freed Buffers of 32 KiB are 20 MiB: most of it leaves the heap with the trim.
    expect(on.before - on.after).toBeGreaterThan(10 * 1024);
    expect(off.before - off.after).toBeLessThan(2 * 1024);
  });

  it('trims once now (a live mirror between syncs), and not with LCSYNC_NO_MALLOC_TRIM=1', () => {
    const before = cHeapTrims();
    expect(trimCHeapNow({ LCSYNC_NO_MALLOC_TRIM: '1' })).toBe(false);
    expect(cHeapTrims()).toBe(before);
    expect(trimCHeapNow({})).toBe(true);
    expect(cHeapTrims()).toBe(before + 1);
  });
});
