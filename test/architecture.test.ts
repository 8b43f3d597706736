/**
 * The layering rule of docs/architecture.md, read from the imports of every source file:
 * a layer of src/core imports only its own layer and those below it; the share side and the
 * sync side never import each other; src/core never imports the CLI. A new file in a folder
 * this test does not know fails it, so the rule and the folders cannot drift apart.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(repo, 'src');

/** Layers of src/core, lowest first; a layer may import those of a lower rank and its own. */
const CORE_RANK: Record<string, number> = {
  base: 0,
  model: 1,
  wire: 2,
  fec: 3,
  net: 4,
  index: 5,
  share: 6,
  sync: 6,
  ops: 7,
};
/** Outside src/core: the CLI sits above every core layer; commands above the CLI. */
const TOP_RANK: Record<string, number> = { cli: 8, hooks: 9, commands: 9, 'index.ts': 9 };

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const full = path.join(dir, d.name);
    if (d.isDirectory()) return sourceFiles(full);
    return d.name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative imports, static and dynamic, of a TypeScript source. */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)) found.push(m[1]!);
  return found;
}

/** Where a file stands: its layer name and rank. */
function placeOf(file: string): { layer: string; rank: number } {
  const rel = path.relative(src, file).split(path.sep);
  if (rel[0] === 'core') {
    const layer = rel[1]!;
    if (rel.length !== 3 || !(layer in CORE_RANK)) throw new Error(`${path.relative(repo, file)}: not in a known layer folder of src/core (see docs/architecture.md)`);
    return { layer: `core/${layer}`, rank: CORE_RANK[layer]! };
  }
  const top = rel[0]!;
  if (!(top in TOP_RANK)) throw new Error(`${path.relative(repo, file)}: not in a known folder of src`);
  return { layer: top, rank: TOP_RANK[top]! };
}

describe('architecture: which layer may import which', () => {
  const files = sourceFiles(src);

  it('every source file sits in a known layer', () => {
    expect(files.length).toBeGreaterThan(30);
    for (const f of files) expect(() => placeOf(f)).not.toThrow();
  });

  it('imports only run down (or stay within a layer); share and sync never import each other', () => {
    const broken: string[] = [];
    for (const f of files) {
      const from = placeOf(f);
      for (const spec of importsOf(readFileSync(f, 'utf8'))) {
        const target = path.resolve(path.dirname(f), spec).replace(/\.js$/, '.ts');
        const to = placeOf(target);
        const sideways = (from.layer === 'core/share' && to.layer === 'core/sync') || (from.layer === 'core/sync' && to.layer === 'core/share');
        if (to.rank > from.rank || sideways || (to.layer === 'commands' && from.layer !== 'commands')) {
          broken.push(`${path.relative(repo, f)} (${from.layer}) imports ${spec} (${to.layer})`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('the rule reads imports of every form (a check of the checker)', () => {
    const text = [
      "import { a } from '../model/hash.js';",
      "import type { B } from './b.js';",
      "export { c } from '../wire/c.js';",
      "const d = await import('../net/d.js');",
      "import './side-effect.js';",
      "import x from 'node:fs';",
    ].join('\n');
    expect(importsOf(text)).toEqual(['../model/hash.js', './b.js', '../wire/c.js', '../net/d.js', './side-effect.js']);
  });
});
