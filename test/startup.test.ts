/**
 * A run starts from the CLI bundle (dist/bundle/, made by scripts/bundle.js in `npm run build`): oclif and the
 * command come from a few bundled files, not module by module from node_modules and dist/ (about 200 files
 * opened before). The load recorder (fixtures/loadlog.mjs, through NODE_OPTIONS) lists every ES module a run
 * loads. And what the bundle must still find at run time works from it: oclif's manifest, help class and
 * hook, and the hash workers, which load their own chunk. oclif itself is one CommonJS file loaded with the code cache
 * the build made (src/cli/codecache.ts), refused by V8 under other flags. The bundle is ASCII (V8 then keeps its source text at
 * a byte per character), and no run made oclif's command sort build an ICU collator (test/lazyload.root.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ShareIndex } from '../src/core/index/mdex.js';
import { DEFAULT_POOL_THRESHOLD } from '../src/core/index/hashpool.js';
import { toHex } from '../src/core/model/hash.js';
import { useTempDir } from './tmpdir.js';

const REPO = path.resolve(import.meta.dirname, '..');
const RUN = path.join(REPO, 'bin', 'run.js');
const BUNDLE = pathToFileURL(path.join(REPO, 'dist', 'bundle')).href + '/';
const tmp = useTempDir('lcsync-startup-');

/** Run the CLI with the load recorder; its exit status, output and the ES module URLs it loaded. */
function recorded(args: string[], nodeOptions = ''): { status: number | null; stdout: string; stderr: string; modules: string[]; lazy: string[]; codeCache: string[] } {
  const log = path.join(tmp.dir(), `load-${Math.random().toString(36).slice(2)}.log`);
  const preload = pathToFileURL(path.join(REPO, 'test', 'fixtures', 'loadlog.mjs')).href;
  const r = spawnSync(process.execPath, [RUN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, LCSYNC_DEBUG: '', NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${nodeOptions} --import "${preload}"`.trim(), LCSYNC_LOAD_LOG: log },
  });
  const lines = existsSync(log) ? readFileSync(log, 'utf8').split('\n') : [];
  const modules = [...new Set(lines.filter((l) => l.startsWith('module ')).map((l) => l.slice(7)))];
  const lazy = lines.filter((l) => l.startsWith('lazy ')).map((l) => l.slice(5));
  const codeCache = lines.filter((l) => l.startsWith('codecache ')).map((l) => l.slice(10));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, modules, lazy, codeCache };
}

/** The ES modules a run loaded besides node's own and bin/run.js: each must be a file of the bundle. */
const outsideBundle = (modules: string[]) =>
  modules.filter((m) => !m.startsWith('node:') && m !== pathToFileURL(RUN).href && !m.startsWith(BUNDLE));

beforeAll(() => {
  if (!existsSync(path.join(REPO, 'dist', 'bundle', 'cli', 'main.js'))) {
    throw new Error('dist/bundle/ is not built: run `npm run build` before this test');
  }
});

describe('start-up from the CLI bundle', () => {
  it('--version, sync --help and the unknown-command hook load bundled files only, a few of them', () => {
    const version = recorded(['--version']);
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/^lcsync\/\d+\.\d+\.\d+ /);
    expect(outsideBundle(version.modules)).toEqual([]);
    const bundled = version.modules.filter((m) => m.startsWith(BUNDLE)).length;
    expect(bundled).toBeGreaterThan(0);
    expect(bundled).toBeLessThanOrEqual(8);

    // lcsync's help class, from the bundle; the command's flags come from the manifest, no command file loads.
    const help = recorded(['sync', '--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/--bwlimit|--timeout/);
    expect(outsideBundle(help.modules)).toEqual([]);
    expect(help.modules).toContain(`${BUNDLE}cli/help.js`);
    expect(help.modules.filter((m) => m.includes('/commands/'))).toEqual([]);

    // The command_not_found hook: one line, exit 2.
    const typo = recorded(['idnex']);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/^lcsync: unknown command "idnex"\. Did you mean "index"\?/);
    expect(outsideBundle(typo.modules)).toEqual([]);
  });

  it("oclif's libraries load on first use: a command's run loads none of its help, layout or command-finding ones", () => {
    writeFileSync(path.join(tmp.dir(), 'lazy-file'), 'x');
    const run = recorded(['index', path.join(tmp.dir(), 'lazy-file')]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^[0-9a-f]{64} {2}lazy-file/);
    // What oclif loaded at its top before, now on first use only: none of these for a plain run.
    for (const spec of ['ejs', 'wrap-ansi', 'indent-string', 'clean-stack', 'tinyglobby', 'minimatch', 'lilconfig', 'widest-line', 'string-width']) {
      expect(run.lazy, spec).not.toContain(spec);
    }
    // Usage errors and help still get them, through the same lazy bindings.
    const help = recorded(['index', '--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/USAGE/);
    expect(help.lazy.length).toBeGreaterThan(0);
    const bad = recorded(['index', '--no-such-flag']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^lcsync: Nonexistent flag: --no-such-flag/);
  });

  it("oclif comes from the bundle's CommonJS file with the code cache the build made (scripts/codecache.js)", () => {
    expect(existsSync(path.join(REPO, 'dist', 'bundle', 'oclif.cjs.v8cache'))).toBe(true);
    for (const args of [['--version'], ['sync', '--help'], ['index', path.join(REPO, 'package.json')]]) {
      const r = recorded(args);
      expect(r.status, r.stderr).toBe(0);
      expect(r.codeCache, args.join(' ')).toEqual(['used']);
    }
    // Other V8 flags: V8 refuses the cache, and the run compiles oclif as before.
    const other = recorded(['--version'], '--stack-trace-limit=21');
    expect(other.status, other.stderr).toBe(0);
    expect(other.stdout).toMatch(/^lcsync\/\d+\.\d+\.\d+ /);
    expect(other.codeCache).toEqual(['rejected']);
  });

  it('the bundle is ASCII (scripts/bundle.js writes other characters as escapes)', () => {
    const dir = path.join(REPO, 'dist', 'bundle');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js') || f.endsWith('.cjs'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(/[^\0-\x7f]/.test(readFileSync(path.join(dir, f), 'utf8')), f).toBe(false);
  });

  it('index of a file large enough for the hash workers: the workers run from the bundle, same root as the library', async () => {
    const file = path.join(tmp.dir(), 'big.bin');
    const big = Buffer.alloc(DEFAULT_POOL_THRESHOLD + 3 * 32768 + 17);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 255;
    writeFileSync(file, big);
    expect(statSync(file).size).toBeGreaterThanOrEqual(DEFAULT_POOL_THRESHOLD);
    const r = recorded(['index', file]);
    expect(r.status, r.stderr).toBe(0);
    const lib = await ShareIndex.build([file]);
    expect(r.stdout.split(/\s+/)[0]).toBe(toHex(lib.roots[0]!.hash));
    // Modules from node_modules may load lazily (hash-wasm without the addon); lcsync's own come from the bundle.
    expect(outsideBundle(r.modules).filter((m) => !m.includes('/node_modules/'))).toEqual([]);
    expect(r.modules.filter((m) => m.includes('/chunks/hashpool-')).length).toBeGreaterThan(0);
  });
});
