/**
 * One tree-cache directory per test run: every lcsync process the tests start (share and sync,
 * through the inherited environment) keeps its caches there rather than in the user's or root's
 * cache directory, and the run removes it at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lcsync-test-cache-'));
  process.env.LCSYNC_CACHE_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
