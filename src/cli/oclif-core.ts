/**
 * `@oclif/core` as the CLI bundle gives it: scripts/bundle.js makes oclif one CommonJS file (dist/bundle/oclif.cjs)
 * and resolves every import of `@oclif/core` in the bundle to this module, which loads that file with the code
 * cache the build made for it (codecache.ts). One instance of oclif serves the CLI, its commands, help class and
 * hook. Outside the bundle (tests, the library's dist/) `@oclif/core` is the package itself.
 */
import type * as Oclif from '@oclif/core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireWithCodeCache, type CodeCachedModule } from './codecache.js';

/**
 * dist/bundle/, found from this module's file: the bundler puts this module in whichever of the bundle's chunks
 * suits it (dist/bundle/chunks/ or an entry's own file), so the nearest directory named `bundle` in `dist`.
 */
function bundleDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!(path.basename(dir) === 'bundle' && path.basename(path.dirname(dir)) === 'dist')) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`lcsync: ${fileURLToPath(import.meta.url)} is not in a CLI bundle (dist/bundle/)`);
    dir = up;
  }
  return dir;
}

const file = path.join(bundleDir(), 'oclif.cjs');
const loaded = requireWithCodeCache(file, `${file}.v8cache`, (specifier) => import(specifier));
/**
 * For the build (scripts/codecache.js writes the cache through it after a warm-up run) and the start-up test's
 * recorder (test/fixtures/loadlog.mjs: whether the run used the cache).
 */
(globalThis as { __lcsyncOclif?: { cache: CodeCachedModule['cache']; cacheFile: string; writeCache(): void } }).__lcsyncOclif = {
  cache: loaded.cache,
  cacheFile: `${file}.v8cache`,
  writeCache: () => loaded.writeCache(`${file}.v8cache`),
};
const oclif = loaded.exports as typeof Oclif;

export const { Args, Command, Errors, Flags, Help, execute, loadHelpClass, settings } = oclif;
