/**
 * A CommonJS file loaded with V8's code cache: the bytecode of its functions, made by the build (scripts/codecache.js)
 * and kept beside it, so that a run deserializes what it would otherwise parse and compile.
 *
 * Why: every lcsync run loads oclif (about 570 KB of JavaScript in the bundle); parsing and compiling it, and
 * compiling lazily the functions a run calls, was about 30 ms of each run's start-up CPU (bench/README.md,
 * "start-up ... fourteenth session"). Node 20 has no compile cache of its own (`module.enableCompileCache` came in
 * Node 22) and none for ES modules; `vm.Script` takes V8's cached data for a script, hence oclif as a CommonJS
 * file (scripts/bundle.js).
 *
 * Safety: V8 checks the cache against its own version and flags and the source's length only, and rejects
 * it otherwise (the file is then compiled as usual). The cache file therefore starts with the SHA-1 of the
 * source it was made from; any other source, of whatever length, ignores it. A cache missing, unreadable,
 * made for another source or rejected by V8 costs nothing but the compile it would have saved.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Module, createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const DIGEST = 'sha1';
const DIGEST_BYTES = 20;

export interface CodeCachedModule {
  /** The file's module.exports. */
  readonly exports: unknown;
  /** 'used' (V8 took the cache), 'rejected' (V8 refused it: another V8 or other flags) or 'none' (no cache for this source). */
  readonly cache: 'used' | 'rejected' | 'none';
  /** Write the code cache of everything compiled so far in this process (the build calls it after a warm-up run). */
  writeCache(cacheFile: string): void;
}

/** The bytes V8 accepts from `cacheFile` for `source`, or undefined when it holds none for this source. */
function cachedDataFor(source: Buffer, cacheFile: string): Buffer | undefined {
  let data: Buffer;
  try {
    data = readFileSync(cacheFile);
  } catch {
    return undefined;
  }
  if (data.length <= DIGEST_BYTES) return undefined;
  const digest = createHash(DIGEST).update(source).digest();
  return digest.equals(data.subarray(0, DIGEST_BYTES)) ? data.subarray(DIGEST_BYTES) : undefined;
}

/** What the bundle's CommonJS file calls where its source had import() (scripts/bundle.js). */
export type DynamicImport = (specifier: string) => Promise<unknown>;

/** The parameters of the function a CommonJS file's code becomes: node's five, then the bundle's import(). */
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname, __lcsyncImport) { ';
const WRAPPER_TAIL = '\n});';

/** The file's code compiled, with its cache where there is one. In a function of its own so that neither the file's bytes nor the cache's stay referenced. */
function compile(file: string, cacheFile: string): { script: vm.Script; cache: CodeCachedModule['cache'] } {
  const source = readFileSync(file);
  const cachedData = cachedDataFor(source, cacheFile);
  const script = new vm.Script(WRAPPER_HEAD + source.toString('utf8') + WRAPPER_TAIL, { filename: file, cachedData });
  return { script, cache: cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'used' };
}

/**
 * Load the CommonJS file `file` as `require` would (its own module, require, __filename and __dirname, in node's
 * module cache), with the code cache in `cacheFile` when one was made for it. The file's dynamic imports are calls
 * of `__lcsyncImport`, given here as `dynamicImport`: V8 keeps no import() host options in a code cache, so an
 * import() in a script compiled from one would fail.
 */
export function requireWithCodeCache(file: string, cacheFile: string, dynamicImport: DynamicImport): CodeCachedModule {
  const { script, cache } = compile(file, cacheFile);
  // A module as node's loader makes it, in its cache: a later require(file) gets this one, not a second copy.
  const mod = new Module(file);
  mod.filename = file;
  mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  (Module as unknown as { _cache: Record<string, Module> })._cache[file] = mod;
  const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string, dynamicImport: DynamicImport) => void;
  wrapper.call(mod.exports, mod.exports, createRequire(file), mod, file, path.dirname(file), dynamicImport);
  mod.loaded = true;
  return {
    exports: mod.exports,
    cache,
    writeCache(to: string) {
      writeFileSync(to, Buffer.concat([createHash(DIGEST).update(readFileSync(file)).digest(), script.createCachedData()]));
    },
  };
}
