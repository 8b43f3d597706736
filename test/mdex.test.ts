import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIPv6, prefixOfGroup, GROUP_PREFIX_BYTES } from '../src/core/wire/address.js';
import { aliasHash } from '../src/core/model/entry.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { HashPool } from '../src/core/index/hashpool.js';
import { ShareIndex, objectName, type IndexObject } from '../src/core/index/mdex.js';
import { decodeNetTree } from '../src/core/wire/nettree.js';
import { CHUNK_SIZE, MerkleTree } from '../src/core/model/tree.js';
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
    expect(c.partHashes).toHaveLength(1);
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

describe('objects and lookups', () => {
  const dir = path.join(tmp, 'objs');
  let index: ShareIndex;
  let warnings: string[];

  beforeAll(async () => {
    mkdirSync(path.join(dir, 'd'), { recursive: true });
    // Two files that share chunk 0 (the same 32 KiB), and one big enough for 2 tree parts.
    writeFileSync(path.join(dir, 'one.bin'), Buffer.concat([Buffer.alloc(CHUNK_SIZE, 1), Buffer.alloc(100, 2)]));
    writeFileSync(path.join(dir, 'd', 'two.bin'), Buffer.concat([Buffer.alloc(CHUNK_SIZE, 1), Buffer.alloc(5000, 3)]));
    writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(2000 * CHUNK_SIZE, 4));
    writeFileSync(path.join(dir, 'empty'), '');
    symlinkSync('one.bin', path.join(dir, 'ln'));
    warnings = [];
    index = await ShareIndex.build([dir], { onWarning: (m) => warnings.push(m) });
  });

  const rec = (p: string) => index.records.find((r) => r.sharePath === p)!;

  it('getByPrefix finds a chunk by the 14 bytes of its leaf hash', () => {
    const one = rec('objs/one.bin');
    const o = index.getByPrefix(one.tree!.leaf(1).subarray(0, GROUP_PREFIX_BYTES));
    expect(o).toMatchObject({ kind: 'chunk', localPath: one.localPath, offset: CHUNK_SIZE, length: 100 });
  });

  it('getByPrefix finds a tree object by its entry hash and every part of a multi-part tree', () => {
    const big = rec('objs/big.bin');
    expect(big.partHashes!.length).toBeGreaterThan(1);
    big.partHashes!.forEach((h, z) => {
      const o = index.getByPrefix(h.subarray(0, GROUP_PREFIX_BYTES));
      expect(o?.kind).toBe('tree');
      expect((o as { bytes: Buffer }).bytes.length).toBeLessThanOrEqual(32768);
      expect(o!.hash.equals(h), `part ${z}`).toBe(true);
    });
  });

  it('getByPrefix follows an alias (BLAKE3 of the share path) to the same object', () => {
    for (const p of ['objs', 'objs/one.bin', 'objs/d', 'objs/d/two.bin', 'objs/ln', 'objs/empty']) {
      const viaAlias = index.getByPrefix(aliasHash(p).subarray(0, GROUP_PREFIX_BYTES));
      expect(viaAlias, p).toBeDefined();
      expect(viaAlias!.hash.equals(rec(p).hash)).toBe(true);
      expect(index.get(aliasHash(p))).toBe(viaAlias);
    }
  });

  it('unknown prefixes find nothing', () => {
    expect(index.getByPrefix(Buffer.alloc(GROUP_PREFIX_BYTES))).toBeUndefined();
    expect(index.get(hash(Buffer.from('not in the share')))).toBeUndefined();
  });

  it('identical chunks anywhere in the share are one object', () => {
    const one = rec('objs/one.bin');
    const two = rec('objs/d/two.bin');
    expect(one.tree!.leaf(0).equals(two.tree!.leaf(0))).toBe(true);
    const big = rec('objs/big.bin');
    // big.bin is 2000 identical chunks: one object for all of them.
    const chunkKeys = new Set<string>();
    for (const r of index.records) if (r.tree && r.size > 0) for (let i = 0; i < r.tree.chunks; i++) chunkKeys.add(toHex(r.tree.leaf(i)));
    expect(chunkKeys.size).toBe(4);
    const treeObjects = index.records.reduce((n, r) => n + (r.partHashes?.length ?? 1), 0);
    expect(index.objectCount).toBe(chunkKeys.size + treeObjects);
    expect(big.tree!.chunks).toBe(2000);
  });

  it('an empty file has a tree object and no chunk', () => {
    const e = rec('objs/empty');
    expect(e.size).toBe(0);
    expect(e.tree!.root.equals(Buffer.alloc(32))).toBe(true);
    expect(index.get(e.hash)?.kind).toBe('tree');
    expect(warnings).toEqual([]);
  });

  it('the worker pool gives the same index', async () => {
    const pool = new HashPool({ size: 2, threshold: 1 });
    try {
      const pooled = await ShareIndex.build([dir], { leafHasher: pool });
      expect(pooled.roots[0]!.hash.equals(index.roots[0]!.hash)).toBe(true);
      expect(pooled.objectCount).toBe(index.objectCount);
    } finally {
      await pool.close();
    }
  });
});

describe('the walk: small files read synchronously, large ones with promises', () => {
  it('files on both sides of the small-file limit get the trees MerkleTree.fromFile computes', async () => {
    const dir = path.join(tmp, 'sizes');
    mkdirSync(dir);
    const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE - 1, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 3];
    for (const n of sizes) writeFileSync(path.join(dir, `f${n}`), Buffer.alloc(n, n % 251));
    const index = await ShareIndex.build([dir]);
    for (const n of sizes) {
      const rec = index.records.find((r) => r.sharePath === `sizes/f${n}`)!;
      const want = await MerkleTree.fromFile(path.join(dir, `f${n}`));
      expect(rec.tree!.equals(want), `${n} bytes`).toBe(true);
    }
  });

  it('lets the event loop run while it walks many small files', async () => {
    // One directory, so that no readdir in the middle of the walk lets timers run anyway.
    const dir = path.join(tmp, 'many');
    mkdirSync(dir);
    for (let i = 0; i < 5000; i++) writeFileSync(path.join(dir, `f${i}`), Buffer.alloc(2048, i));
    let turns = 0;
    let longest = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      turns++;
    }, 1);
    const t0 = performance.now();
    try {
      await ShareIndex.build([dir]);
      longest = Math.max(longest, performance.now() - last);
    } finally {
      clearInterval(timer);
    }
    const took = performance.now() - t0;
    // A walk that never yields runs no timer while it hashes, so the longest gap is most of the
    // walk; one that yields every few ms keeps the gaps short.
    expect(turns, `${turns} timer turns in a ${took.toFixed(0)} ms walk`).toBeGreaterThanOrEqual(3);
    expect(longest, `longest gap ${longest.toFixed(0)} ms in a ${took.toFixed(0)} ms walk`).toBeLessThan(took / 2);
  });
});

describe('special and unreadable files', () => {
  it('a fifo is skipped with a warning and leaves the directory hash unchanged', async () => {
    const dir = path.join(tmp, 'fifo');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'f'), 'data');
    const r = spawnSync('mkfifo', [path.join(dir, 'pipe')]);
    expect(r.status).toBe(0);
    // Restore the directory mtime that mkfifo changed, so that only the fifo differs.
    const when = new Date('2024-01-02T03:04:05Z');
    utimesSync(dir, when, when);
    const warnings: string[] = [];
    const withFifo = await ShareIndex.build([dir], { onWarning: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(path.join(dir, 'pipe'));
    expect(withFifo.records.map((x) => x.sharePath).sort()).toEqual(['fifo', 'fifo/f']);
    rmSync(path.join(dir, 'pipe'));
    utimesSync(dir, when, when);
    const without = await ShareIndex.build([dir]);
    expect(withFifo.roots[0]!.hash.equals(without.roots[0]!.hash)).toBe(true);
  });

  it('a fifo given as the path itself is a USAGE error', async () => {
    const p = path.join(tmp, 'lonefifo');
    spawnSync('mkfifo', [p]);
    await expect(ShareIndex.build([p])).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('a missing path is NOT_FOUND naming the path', async () => {
    const p = path.join(tmp, 'nope');
    const err = await ShareIndex.build([p]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LcsyncError);
    expect(err).toMatchObject({ code: 'NOT_FOUND' });
    expect((err as Error).message).toContain(p);
  });

  const lockedWhy = !isRoot
    ? 'needs root to drop the read overrides with setpriv'
    : spawnSync('setpriv', ['--version']).status !== 0
      ? 'needs setpriv (util-linux)'
      : undefined;
  itUnless(lockedWhy, 'an unreadable file is a one-line PERMISSION error naming the path (CLI run without CAP_DAC_OVERRIDE)', () => {
    if (!existsSync(path.join(REPO, 'dist', 'commands', 'index', 'index.js'))) throw new Error('dist/ is not built: run `npm run build` before this test');
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

describe('memory', () => {
  /** Peak growth of heap + array buffers and of RSS while `fn` runs, sampled every 10 ms. */
  async function peakGrowth(fn: () => Promise<unknown>): Promise<{ js: number; rss: number }> {
    const base = process.memoryUsage();
    let js = 0;
    let rss = 0;
    const sample = () => {
      const m = process.memoryUsage();
      js = Math.max(js, m.heapUsed + m.arrayBuffers - base.heapUsed - base.arrayBuffers);
      rss = Math.max(rss, m.rss - base.rss);
    };
    const timer = setInterval(sample, 10);
    try {
      await fn();
    } finally {
      clearInterval(timer);
      sample();
    }
    return { js, rss };
  }

  const GiB = 2 ** 30;
  const big = path.join(tmp, 'sparse-1g.bin');
  beforeAll(() => {
    writeFileSync(big, '');
    truncateSync(big, GiB);
    expect(statSync(big).size).toBe(GiB);
  });

  it('a 1 GiB sparse file indexes on the main thread with bounded memory', async () => {
    let idx: ShareIndex | undefined;
    const g = await peakGrowth(async () => {
      idx = await ShareIndex.build([big]);
    });
    console.log(`main thread, 1 GiB: peak heap+buffers growth ${(g.js / 2 ** 20).toFixed(1)} MiB, RSS ${(g.rss / 2 ** 20).toFixed(1)} MiB`);
    expect(idx!.records[0]!.tree!.chunks).toBe(GiB / CHUNK_SIZE);
    // The tree itself is 2 MiB of nodes; the file is 1024 MiB.
    expect(g.js).toBeLessThan(64 * 2 ** 20);
    expect(g.rss).toBeLessThan(256 * 2 ** 20);
  });

  it('a 1 GiB sparse file indexes through the worker pool with bounded memory and the same hash', async () => {
    const plain = await ShareIndex.build([big]);
    const pool = new HashPool({ size: 2 });
    let idx: ShareIndex | undefined;
    try {
      const g = await peakGrowth(async () => {
        idx = await ShareIndex.build([big], { leafHasher: pool });
      });
      console.log(`worker pool, 1 GiB: peak heap+buffers growth ${(g.js / 2 ** 20).toFixed(1)} MiB, RSS ${(g.rss / 2 ** 20).toFixed(1)} MiB`);
      expect(g.js).toBeLessThan(64 * 2 ** 20);
      // RSS includes the workers' isolates and wasm heaps.
      expect(g.rss).toBeLessThan(256 * 2 ** 20);
    } finally {
      await pool.close();
    }
    expect(idx!.roots[0]!.hash.equals(plain.roots[0]!.hash)).toBe(true);
  });
});

describe('a directory that changes while it is indexed (another run writing into it)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-mdex-vanish-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an entry gone between listing and reading is left out, and skipName leaves names out, as if they never were there', async () => {
    const top = path.join(dir, 'share');
    mkdirSync(path.join(top, 'sub'), { recursive: true });
    writeFileSync(path.join(top, 'a.txt'), 'a\n');
    writeFileSync(path.join(top, 'sub', 'b.txt'), 'b\n');
    const plain = await ShareIndex.build([top]);
    writeFileSync(path.join(top, 'gone.txt'), 'renamed away by another run\n');
    mkdirSync(path.join(top, 'gonedir'));
    writeFileSync(path.join(top, '.a.txt.lcsync-1-ab12.tmp'), 'a temp\n');
    const idx = new ShareIndex();
    // skipName runs after the listing: removing entries there is a deterministic "vanished meanwhile".
    await idx.add(top, {
      skipName: (n) => {
        if (n === 'gone.txt' || n === 'gonedir') rmSync(path.join(top, n), { recursive: true });
        return n.endsWith('.tmp');
      },
    });
    expect(idx.records.map((r) => r.sharePath).sort()).toEqual(['share', 'share/a.txt', 'share/sub', 'share/sub/b.txt']);
    // The top directory's own stat is not hashed (depth 0): the root is that of the tree without them.
    expect(idx.roots[0]!.hash.equals(plain.roots[0]!.hash)).toBe(true);
    // A missing top path is still an error.
    await expect(new ShareIndex().add(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
