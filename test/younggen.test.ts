/**
 * The CLI keeps V8's young generation at its initial size (src/core/base/younggen.ts): a run that makes a lot
 * of short-lived garbage does not grow it, also after a hash worker (whose start resets V8's growth factor)
 * has run; and a user's own semi-space flags are left alone. The size comes from a preload
 * (fixtures/younggen-report.mjs) that reports V8's new space at exit.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { keepYoungGenerationSmall } from '../src/core/base/younggen.js';
import { useTempDir } from './tmpdir.js';

const REPO = path.resolve(import.meta.dirname, '..');
const RUN = path.join(REPO, 'bin', 'run.js');
const PRELOAD = pathToFileURL(path.join(REPO, 'test', 'fixtures', 'younggen-report.mjs')).href;
const tmp = useTempDir('lcsync-younggen-');
/** New space with two 1 MiB semi-spaces, as V8 starts; a grown one is 4-32 MiB. */
const INITIAL_MIB = 2;

/** Run node with the report preload; the young generation's size at exit in MiB. */
function youngAtExit(argv: string[], nodeOptions = ''): { status: number | null; stderr: string; mib: number } {
  const log = path.join(tmp.dir(), `young-${Math.random().toString(36).slice(2)}`);
  const r = spawnSync(process.execPath, argv, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, LCSYNC_DEBUG: '', NODE_OPTIONS: `${nodeOptions} --import "${PRELOAD}"`.trim(), LCSYNC_YOUNGGEN_LOG: log },
  });
  return { status: r.status, stderr: r.stderr, mib: existsSync(log) ? Number(readFileSync(log, 'utf8')) : NaN };
}

/** A tree of many small files: indexing it makes tens of MiB of short-lived garbage. */
function smallFiles(n: number): string {
  const dir = path.join(tmp.dir(), `small-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir);
  for (let i = 0; i < n; i++) writeFileSync(path.join(dir, `f${i}`), `file ${i}\n`.repeat(1 + (i % 7)));
  return dir;
}

beforeAll(() => {
  if (!existsSync(path.join(REPO, 'dist', 'bundle', 'cli', 'main.js'))) {
    throw new Error('dist/ is not built: run `npm run build` before this test');
  }
});

describe('young generation of the CLI', () => {
  it('stays at its initial size through a run that makes much garbage', () => {
    const r = youngAtExit([RUN, 'index', smallFiles(3000)]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.mib).toBe(INITIAL_MIB);
  });

  it('a user who sizes it keeps their size', () => {
    const r = youngAtExit([RUN, 'index', smallFiles(3000)], '--max-semi-space-size=4');
    expect(r.status, r.stderr).toBe(0);
    expect(r.mib).toBeGreaterThan(INITIAL_MIB);
    expect(keepYoungGenerationSmall({ NODE_OPTIONS: '--max_semi_space_size=4' }, [])).toBe(false);
    expect(keepYoungGenerationSmall({}, ['--semi-space-growth-factor=3'])).toBe(false);
  });

  it('stays small after a hash worker has started (its heap resets the growth factor)', () => {
    const file = path.join(tmp.dir(), 'data.bin');
    writeFileSync(file, Buffer.alloc(1 << 20, 7));
    const dist = (p: string) => pathToFileURL(path.join(REPO, 'dist', p)).href;
    const script = `
      import { open } from 'node:fs/promises';
      import { keepYoungGenerationSmall } from ${JSON.stringify(dist('core/base/younggen.js'))};
      import { HashPool } from ${JSON.stringify(dist('core/index/hashpool.js'))};
      if (!keepYoungGenerationSmall()) throw new Error('not applied');
      const pool = new HashPool({ size: 1, threshold: 0 });
      const fh = await open(${JSON.stringify(file)});
      await pool.treeFromHandle(fh, (await fh.stat()).size);
      await fh.close();
      await pool.close();
      let keep = [];
      for (let i = 0; i < 2e6; i++) { keep.push({ i, a: [i] }); if (keep.length > 1000) keep = []; }
    `;
    const main = path.join(tmp.dir(), 'pool.mjs');
    writeFileSync(main, script);
    const r = youngAtExit([main]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.mib).toBe(INITIAL_MIB);
  });
});
