/**
 * The index on cases that need root: share.tar extracted with its owners (the hashes the C tool printed cover
 * them), and a file made unreadable to a CLI run without CAP_DAC_OVERRIDE. The rest: test/mdex.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIPv6, prefixOfGroup } from '../src/core/wire/address.js';
import { toHex } from '../src/core/model/hash.js';
import { ShareIndex, objectName, type IndexObject } from '../src/core/index/mdex.js';
import { decodeNetTree } from '../src/core/wire/nettree.js';
import { isRoot } from './lab.js';
import { describeUnless, itUnless } from './skip.js';
import { readVectorJsonl, shareTarSkip, vectorPath } from './vectors.js';

const ROOT_HASH = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';
const SUB_HASH = '60a5ad2e141430561b2e9e66c3dca52e0e5daa786adc255836a671cde7d1cef4';
const REPO = path.resolve(import.meta.dirname, '..');

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-mdex-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describeUnless(shareTarSkip, 'share.tar (needs root to restore owners)', () => {
  const dir = path.join(tmp, 'tar');
  let index: ShareIndex;

  beforeAll(async () => {
    mkdirSync(dir);
    const r = spawnSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
    index = await ShareIndex.build([path.join(dir, 'share')]);
  });

  it('gives the directory hashes of vectors/README.md, with or without a trailing slash', async () => {
    expect(toHex(index.roots[0]!.hash)).toBe(ROOT_HASH);
    expect(index.roots[0]!.shareName).toBe('share');
    const again = await ShareIndex.build([path.join(dir, 'share') + '/', path.join(dir, 'share', 'sub')]);
    expect(again.roots.map((r) => toHex(r.hash))).toEqual([ROOT_HASH, SUB_HASH]);
    expect(again.roots[1]!.shareName).toBe('sub');
  });

  it('answers for every group the C client joined in the capture; chunk OIDs are the chunk keys', () => {
    const groups = new Map<string, IndexObject>();
    for (const p of readVectorJsonl<{ dst: string; payload: string }>('captures', 'lcshare-udp.jsonl')) {
      const o = index.getByPrefix(prefixOfGroup(parseIPv6(p.dst))!);
      expect(o, p.dst).toBeDefined();
      groups.set(p.dst, o!);
      if (o!.kind === 'chunk') expect(Buffer.from(p.payload, 'hex').subarray(0, 32).equals(o!.hash)).toBe(true);
    }
    expect(groups.size).toBe(14);
    const kinds = [...groups.values()].map((o) => `${o.kind}:${objectName(o)}`).sort();
    expect(kinds).toContain('tree:share'); // reached through the alias of "share"
    expect(kinds.filter((k) => k.startsWith('chunk:'))).toHaveLength(6);
  });

  it('records files, directories and symlinks with their stat fields', () => {
    const byPath = new Map(index.records.map((r) => [r.sharePath, r]));
    expect([...byPath.keys()].sort()).toEqual([
      'share',
      'share/a.bin',
      'share/link',
      'share/sub',
      'share/sub/c.bin',
      'share/sub/deeper',
      'share/sub/deeper/note.txt',
      'share/sub/empty',
    ]);
    const c = byPath.get('share/sub/c.bin')!;
    expect(c.type).toBe('file');
    expect(c.size).toBe(100000);
    expect(c.meta).toMatchObject({ mode: 0o100644, uid: 0, gid: 0, mtimeNsec: 987654321n });
    expect(c.tree!.chunks).toBe(4);
    expect(c.partHashes).toBeUndefined(); // one tree part: its hash is the entry hash
    expect(byPath.get('share/sub/empty')!.meta.mode).toBe(0o100600);
    expect(byPath.get('share/link')!.type).toBe('symlink');
    expect(byPath.get('share/sub')!.type).toBe('dir');
    // The tree object of a file decodes back to its tree.
    const obj = index.get(c.hash)!;
    expect(obj.kind).toBe('tree');
    const t = decodeNetTree((obj as { bytes: Buffer }).bytes);
    expect(t.name).toBe('share/sub/c.bin');
    expect(t.payload.equals(c.tree!.nodes)).toBe(true);
  });
});

describe('unreadable files', () => {
  const lockedWhy = !isRoot
    ? 'needs root to drop the read overrides with setpriv'
    : spawnSync('setpriv', ['--version']).status !== 0
      ? 'needs setpriv (util-linux)'
      : undefined;
  itUnless(lockedWhy, 'an unreadable file is a one-line PERMISSION error naming the path (CLI run without CAP_DAC_OVERRIDE)', () => {
    if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'index', 'index.js'))) throw new Error('dist/ is not built: run `npm run build` before this test');
    // root reads any file; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH mode 000 really is
    // unreadable, while the checkout (owned by root) stays readable wherever it was cloned.
    const dir = path.join(tmp, 'locked');
    mkdirSync(dir);
    chmodSync(tmp, 0o755);
    chmodSync(dir, 0o755);
    writeFileSync(path.join(dir, 'ok'), 'fine');
    const secret = path.join(dir, 'secret');
    writeFileSync(secret, 'hidden');
    chmodSync(secret, 0o000);
    const r = spawnSync(
      'setpriv',
      ['--bounding-set', '-dac_override,-dac_read_search', '--inh-caps', '-dac_override,-dac_read_search', '--', process.execPath, path.join(REPO, 'bin', 'run.js'), 'index', dir],
      // HOME: oclif looks for plugins under $HOME, and nobody may not read /root.
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, XDG_CACHE_HOME: dir } },
    );
    expect(r.status).toBe(5);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(`lcsync: cannot read ${secret}: permission denied (EACCES)`);
  });
});
