/**
 * Makes oclif's code cache for the CLI bundle, the last step of `npm run build` (src/cli/codecache.ts says why).
 * A warm-up run of `lcsync index -q` on a small directory, in this process and through bin/run.js exactly as a
 * user's run goes (the same V8 flags: V8 refuses a cache made under others), compiles what a command's run calls;
 * then the cache of everything compiled in oclif's file is written beside it (dist/bundle/oclif.cjs.v8cache).
 * A run with another Node or V8 finds the cache refused and compiles as before.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(path.join(tmpdir(), 'lcsync-codecache-'));
try {
  for (let i = 0; i < 3; i++) writeFileSync(path.join(work, `f${i}`), Buffer.alloc(1000 * (i + 1), i));
  process.argv = [process.argv[0], path.join(repo, 'bin', 'run.js'), 'index', '-q', work];
  await import(pathToFileURL(path.join(repo, 'bin', 'run.js')).href);
  if (process.exitCode) throw new Error(`codecache: the warm-up run failed (exit ${process.exitCode})`);
  // Set by src/cli/oclif-core.ts when the run loaded oclif.
  const oclif = globalThis.__lcsyncOclif;
  if (!oclif) throw new Error('codecache: the warm-up run did not load oclif through src/cli/oclif-core.ts');
  oclif.writeCache();
  console.log(`codecache: ${path.relative(repo, oclif.cacheFile)} (${statSync(oclif.cacheFile).size} bytes)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
