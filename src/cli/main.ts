/**
 * The CLI's entry: bin/run.js imports this module's bundled form (dist/bundle/cli/main.js, made by
 * scripts/bundle.js), which runs oclif on lcsync's package (found from here: the nearest package.json above).
 */
import { baselineOnly } from '../core/base/tiering.js';
import { keepYoungGenerationSmall } from '../core/base/younggen.js';

// Before anything else allocates: loading oclif alone would grow the young generation (see younggen.ts).
keepYoungGenerationSmall();

// oclif checks on load that node satisfies @oclif/core's own engines field, loading all of semver
// (48 modules, about 0.05-0.09 CPU-s of every run) for it; lcsync's package.json states what it
// needs. Skipped unless the user asked for it (and not passed on to --exec hooks). The variable must be
// set before oclif's code runs, hence the dynamic import.
const engineCheck = process.env.OCLIF_DISABLE_ENGINE_WARNING;
if (engineCheck === undefined) process.env.OCLIF_DISABLE_ENGINE_WARNING = '1';
const { execute, settings } = await import('@oclif/core');
if (engineCheck === undefined) delete process.env.OCLIF_DISABLE_ENGINE_WARNING;
// A sync runs V8's baseline code only (tiering.ts). Set before oclif runs the command: its start-up makes
// V8 optimize a few functions, which pages in the optimizing compiler (4.5 MiB of a receiver's peak RSS)
// anyway. Not before oclif is loaded: V8 takes a code cache only under the flags it was made with.
if (process.argv[2] === 'sync') baselineOnly();

// Always run the compiled commands: never look for TypeScript sources (that
// would load the TypeScript compiler, ~0.3 s, whenever NODE_ENV=test or development).
settings.enableAutoTranspile = false;
await execute({ dir: import.meta.url });
