/**
 * oclif's CommonJS file loaded with V8's code cache (src/cli/codecache.ts): the cache is used for the source it was
 * made from and for no other, even of the same length (V8 itself checks only the length); a cache V8 refuses, or
 * none, costs the compile only. The file's import() calls go through the function given (the bundle rewrites
 * them, scripts/bundle.js), with and without a cache.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireWithCodeCache } from '../src/cli/codecache.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-codecache-');

/** A CommonJS file as the bundle makes them: node's module variables, and import() as __lcsyncImport. */
const source = (answer: number) => `'use strict';
const path = require('node:path');
exports.answer = ${answer};
exports.where = [__filename, __dirname];
exports.join = (a, b) => path.join(a, b);
exports.load = async (spec) => (await __lcsyncImport(spec)).sep;
exports.self = () => module;
`;

async function load(dir: string, answer: number | undefined, cacheFile: string) {
  const file = path.join(dir, 'lib.cjs');
  if (answer !== undefined) writeFileSync(file, source(answer));
  const imported: string[] = [];
  const m = requireWithCodeCache(file, cacheFile, (spec) => (imported.push(spec), import(spec)));
  const e = m.exports as { answer: number; where: string[]; join(a: string, b: string): string; load(s: string): Promise<string>; self(): unknown };
  expect(e.where).toEqual([file, dir]);
  expect(e.join('a', 'b')).toBe(path.join('a', 'b'));
  expect(await e.load('node:path')).toBe(path.sep);
  expect(imported).toEqual(['node:path']);
  // In node's module cache: a require of the same file gets this module, not a second copy.
  expect(createRequire(file)(file)).toBe(e);
  return { m, answer: e.answer };
}

describe('requireWithCodeCache', () => {
  it('loads without a cache, writes one, and uses it next time', async () => {
    const dir = await tmp.fresh('plain');
    const cacheFile = path.join(dir, 'lib.cjs.v8cache');
    const first = await load(dir, 42, cacheFile);
    expect(first.m.cache).toBe('none');
    expect(first.answer).toBe(42);
    first.m.writeCache(cacheFile);
    const data = readFileSync(cacheFile);
    expect(data.subarray(0, 20)).toEqual(createHash('sha1').update(readFileSync(path.join(dir, 'lib.cjs'))).digest());
    const again = await load(dir, undefined, cacheFile);
    expect(again.m.cache).toBe('used');
    expect(again.answer).toBe(42);
  });

  it('ignores a cache made for another source of the same length', async () => {
    const dir = await tmp.fresh('other');
    const cacheFile = path.join(dir, 'lib.cjs.v8cache');
    (await load(dir, 42, cacheFile)).m.writeCache(cacheFile);
    // Same length, other code: V8 alone would take the cache (it checks the length) and run the old bytecode.
    expect(source(43).length).toBe(source(42).length);
    const other = await load(dir, 43, cacheFile);
    expect(other.m.cache).toBe('none');
    expect(other.answer).toBe(43);
  });

  it('compiles as usual when V8 refuses the cache, or the cache file is short or missing', async () => {
    const dir = await tmp.fresh('bad');
    const cacheFile = path.join(dir, 'lib.cjs.v8cache');
    writeFileSync(path.join(dir, 'lib.cjs'), source(7));
    const digest = createHash('sha1').update(readFileSync(path.join(dir, 'lib.cjs'))).digest();
    writeFileSync(cacheFile, Buffer.concat([digest, Buffer.alloc(4096, 0x5a)]));
    const refused = await load(dir, undefined, cacheFile);
    expect(refused.m.cache).toBe('rejected');
    expect(refused.answer).toBe(7);
    writeFileSync(cacheFile, digest.subarray(0, 12));
    expect((await load(dir, undefined, cacheFile)).m.cache).toBe('none');
    expect((await load(dir, undefined, path.join(dir, 'missing'))).m.cache).toBe('none');
  });
});
