/**
 * One tree-cache directory per test run: every lcsync process the tests start (share and sync,
 * through the inherited environment) keeps its caches there rather than in the user's or root's
 * cache directory, and the run removes it at the end.
 *
 * And the CLI that tests run (bin/run.js) is the bundle in dist/bundle/, which `npm run build` makes from
 * tsc's output: after a plain `tsc -p .` it would still hold the old code, and tests would run that. Refuse.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const repo = path.resolve(import.meta.dirname, '..');

export default function setup(): () => void {
  const bundled = path.join(repo, 'dist', 'bundle', 'cli', 'main.js');
  const compiled = path.join(repo, 'dist', 'cli', 'main.js');
  if (existsSync(bundled) && existsSync(compiled) && statSync(bundled).mtimeMs < statSync(compiled).mtimeMs) {
    throw new Error('dist/bundle/ is older than dist/ (tsc ran without the bundler): run npm run build');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lcsync-test-cache-'));
  process.env.LCSYNC_CACHE_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
