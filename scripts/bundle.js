/**
 * Bundles the CLI (part of `npm run build`, after tsc): dist/bundle/ holds oclif and lcsync's command code in a
 * few files, so that a run reads and compiles those instead of resolving and loading about 200 modules one by
 * one (about a third of the start-up CPU of every lcsync run; bench/startup-bench.js measures it).
 *
 * Entries, from tsc's output in dist/ to the same path under dist/bundle/:
 * - cli/main.js, what bin/run.js imports (oclif's execute());
 * - each command under the package's oclif.commands, its help class and its hooks: oclif imports them by path
 *   (from package.json and oclif.manifest.json), one command per run;
 * - core/index/hashpool.js, whose own file the hash workers load: as an entry it is a chunk of its own, so a
 *   worker evaluates the hashing code only.
 * Shared code goes to dist/bundle/chunks/; every dynamic import() stays one, in its own chunk, so what a run
 * loads lazily (libsodium only with a key, the raptorq wasm only when decoding needs it, the share's and the
 * sync's engines only for their commands) stays lazy. Packages with files found at run time (wasm, the native
 * addon through node-gyp-build), and those only imported lazily, stay external and are loaded from
 * node_modules as before; so do `typescript` and `semver`, which oclif requires only for development (auto
 * transpiling, off here) and for the engine check lcsync skips.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';
import { parseSync } from 'rolldown/utils';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
const out = path.join(dist, 'bundle');

/** An oclif path of package.json (./dist/bundle/x.js) as an entry name (x) and its tsc output (dist/x.js). */
function entryOf(configured) {
  const rel = path.relative(out, path.resolve(repo, configured));
  if (rel.startsWith('..') || !rel.endsWith('.js')) throw new Error(`bundle: ${configured} is not a .js file under dist/bundle`);
  return [rel.slice(0, -3), path.join(dist, rel)];
}

const oclif = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).oclif;
const input = Object.fromEntries([
  ['cli/main', path.join(dist, 'cli', 'main.js')],
  ['core/index/hashpool', path.join(dist, 'core', 'index', 'hashpool.js')],
  entryOf(oclif.helpClass),
  ...Object.values(oclif.hooks).flat().map(entryOf),
]);
const commandsRel = path.relative(out, path.resolve(repo, oclif.commands));
for (const f of readdirSync(path.join(dist, commandsRel), { recursive: true, encoding: 'utf8' })) {
  if (f.endsWith('.js')) input[path.join(commandsRel, f.slice(0, -3))] = path.join(dist, commandsRel, f);
}

const external = [
  ...builtinModules.flatMap((m) => [m, `node:${m}`]),
  'node-gyp-build', 'raptorq', /^raptorq\//, 'hash-wasm', 'libsodium-wrappers-sumo', 'ora', 'typescript', 'semver',
];

/**
 * oclif sorts the plugin's commands with `localeCompare` on every run (Plugin.load), which makes V8 build an ICU
 * collator: about 2.4 MiB of ICU's data and code paged into every lcsync process (its peak RSS) for a sort of a
 * few ASCII command ids. Those sort the same by UTF-16 code units, so the bundle compares them that way.
 * A plain rewrite of one expression; if oclif's source changes, the build fails here rather than silently
 * paging ICU in again (test/lazyload.root.test.ts checks that no collator is made).
 */
const OCLIF_SORT = 'a.id.localeCompare(b.id)';
const noCollatorInOclif = {
  name: 'lcsync-no-collator-in-oclif',
  transform(code, id) {
    if (!id.replaceAll('\\', '/').endsWith('/@oclif/core/lib/config/plugin.js')) return null;
    if (!code.includes(OCLIF_SORT)) throw new Error(`bundle: ${OCLIF_SORT} not found in ${id} (oclif changed: see scripts/bundle.js)`);
    return { code: code.replace(OCLIF_SORT, '(a.id < b.id ? -1 : a.id > b.id ? 1 : 0)'), map: null };
  },
};

/**
 * oclif's libraries loaded when first used, not when oclif loads (lcsync's start-up, see bench/README.md).
 * oclif's compiled modules require every package they might need at their top: ejs (help templates), wrap-ansi
 * and string-width (error and help layout), tinyglobby and minimatch (finding commands without a manifest),
 * lilconfig, the help classes... A run of a command with its manifest uses few of them, yet each is loaded
 * and evaluated on every run. Here each such top-level `const x = [__importDefault(]require("pkg")[)];` in
 * @oclif/core/lib (a package, or oclif's own help modules) becomes an object that requires the module on its
 * first property access; oclif only ever reads properties of these bindings (`(0, x.default)(...)`, `x.Help`).
 * If oclif's source no longer has such lines, nothing is rewritten and the build fails (a start-up cost
 * would come back silently otherwise).
 */
const LAZY_REQUIRE = /^(const|var) (\w+) = (__importDefault\(|__importStar\()?require\("((?:[a-z@][^"]*)|(?:\.\.?\/(?:help)(?:\/index)?))"\)(\)?);$/gm;
// Each load is also noted in globalThis.__lcsyncLazyLoaded (a Set of the specifiers), for the start-up test.
const LAZY_HELPER =
  'function __lcsyncLazy(spec, load) { let m; const get = () => (m ??= ((globalThis.__lcsyncLazyLoaded ??= new Set()).add(spec), load())); return new Proxy({}, { get: (_, k) => get()[k], has: (_, k) => k in get(), ownKeys: () => Reflect.ownKeys(get()), getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(get(), k); if (d) d.configurable = true; return d; } }); }\n';
let lazyRewrites = 0;
const lazyOclifRequires = {
  name: 'lcsync-lazy-oclif-requires',
  transform(code, id) {
    if (!/\/@oclif\/core\/lib\/.*\.js$/.test(id.replaceAll('\\', '/'))) return null;
    let n = 0;
    const rewritten = code.replace(LAZY_REQUIRE, (line, kind, name, wrap, spec, close) => {
      if (spec.startsWith('node:') || (wrap && !close) || (!wrap && close)) return line;
      n++;
      return `${kind} ${name} = __lcsyncLazy(${JSON.stringify(spec)}, () => ${wrap ?? ''}require("${spec}")${close ?? ''});`;
    });
    if (n === 0) return null;
    lazyRewrites += n;
    return { code: LAZY_HELPER + rewritten, map: null };
  },
};

/**
 * Output in ASCII: each non-ASCII character of a chunk written as a \\u escape (a surrogate pair above U+FFFF).
 * Why: V8 keeps a module's source text for as long as the module lives, as one-byte (Latin-1) characters if
 * it can and as two bytes per character otherwise; oclif's spinner and box characters made its 570 KB chunk a
 * 1.1 MiB string on every run's heap. The escapes mean the same in string, template and regular expression
 * literals (a surrogate pair is one code point in a `u` regular expression) and in comments; not in the raw
 * text of a tagged template (String.raw), so such a template with non-ASCII text fails the build.
 */
function taggedTemplateRanges(node, found = []) {
  if (Array.isArray(node)) {
    for (const n of node) taggedTemplateRanges(n, found);
  } else if (node && typeof node === 'object') {
    if (node.type === 'TaggedTemplateExpression') found.push([node.quasi.start, node.quasi.end]);
    for (const k in node) if (k !== 'parent') taggedTemplateRanges(node[k], found);
  }
  return found;
}
const NON_ASCII = /[^\0-\x7f]/g;
const asciiOutput = {
  name: 'lcsync-ascii-output',
  renderChunk(code, chunk) {
    if (!/[^\0-\x7f]/.test(code)) return null;
    const parsed = parseSync(chunk.fileName, code);
    if (parsed.errors.length) throw new Error(`bundle: ${chunk.fileName} does not parse: ${parsed.errors[0].message}`);
    for (const [start, end] of taggedTemplateRanges(parsed.program)) {
      if (/[^\0-\x7f]/.test(code.slice(start, end))) throw new Error(`bundle: non-ASCII text in a tagged template in ${chunk.fileName} at ${start}`);
    }
    return { code: code.replace(NON_ASCII, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), map: null };
  },
};

/**
 * oclif itself: one CommonJS file, dist/bundle/oclif.cjs, which the CLI loads with V8's code cache (src/cli/codecache.ts;
 * scripts/codecache.js makes the cache once the build is done). Node 20 has no code cache for ES modules, and compiling
 * oclif was about 30 ms of every run. Every `import ... from '@oclif/core'` of the bundle resolves to
 * src/cli/oclif-core.ts, which loads it.
 */
const OCLIF_ENTRY = path.join(dist, 'cli', 'oclif-core.js');
const oclifThroughCodeCache = {
  name: 'lcsync-oclif-through-code-cache',
  resolveId(id, importer) {
    if (id === '@oclif/core' && importer !== undefined && !importer.includes('node_modules')) return OCLIF_ENTRY;
    return null;
  },
};

/**
 * oclif's dynamic import() calls (of command, hook and help files, which are ES modules) made calls of a function the
 * loader passes in (`__lcsyncImport`, src/cli/codecache.ts): V8 drops a script's dynamic-import host options from its
 * code cache, so an import() inside a script compiled from the cache fails ("A dynamic import callback was not
 * specified"). The calls are found by parsing the chunk, not by a text pattern.
 */
const IMPORT_FUNCTION = '__lcsyncImport';
function importExpressions(node, found = []) {
  if (Array.isArray(node)) {
    for (const n of node) importExpressions(n, found);
  } else if (node && typeof node === 'object') {
    if (node.type === 'ImportExpression') found.push(node);
    for (const k in node) if (k !== 'parent') importExpressions(node[k], found);
  }
  return found;
}
let importRewrites = 0;
const importThroughLoader = {
  name: 'lcsync-import-through-loader',
  renderChunk(code, chunk) {
    const parsed = parseSync(chunk.fileName, code);
    if (parsed.errors.length) throw new Error(`bundle: ${chunk.fileName} does not parse: ${parsed.errors[0].message}`);
    const calls = importExpressions(parsed.program).sort((a, b) => b.start - a.start);
    let rewritten = code;
    for (const call of calls) {
      if (call.options) throw new Error(`bundle: an import() with options in ${chunk.fileName} at ${call.start}`);
      rewritten = `${rewritten.slice(0, call.start)}${IMPORT_FUNCTION}(${code.slice(call.source.start, call.source.end)})${rewritten.slice(call.end)}`;
    }
    importRewrites += calls.length;
    return calls.length ? { code: rewritten, map: null } : null;
  },
};

rmSync(out, { recursive: true, force: true });
await build({
  cwd: repo,
  input: { oclif: createRequire(import.meta.url).resolve('@oclif/core') },
  platform: 'node',
  external: [...builtinModules.flatMap((m) => [m, `node:${m}`]), 'typescript', 'semver'],
  plugins: [noCollatorInOclif, lazyOclifRequires, importThroughLoader, asciiOutput],
  logLevel: 'warn',
  output: { dir: out, format: 'cjs', entryFileNames: '[name].cjs', codeSplitting: false, minify: false },
});
await build({
  cwd: repo,
  input,
  platform: 'node',
  external,
  plugins: [oclifThroughCodeCache, asciiOutput],
  logLevel: 'warn',
  output: {
    dir: out,
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: 'chunks/[name]-[hash].js',
    // Not minified: lcsync (src/cli/base.ts) and oclif tell some errors apart by their class names, which a
    // minifier renames, and minifying saved no measurable start-up time (within 0.02 CPU-s, at load 7).
    minify: false,
  },
});
// oclif's module loader imports commands, hooks and the help class with import() (three calls in it).
if (importRewrites < 3) throw new Error(`bundle: only ${importRewrites} import() calls in oclif's file (oclif changed: see scripts/bundle.js)`);
if (lazyRewrites < 10) throw new Error(`bundle: only ${lazyRewrites} of oclif's requires made lazy (oclif changed: see scripts/bundle.js)`);
