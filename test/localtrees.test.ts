/**
 * The receiver's local tree cache (src/core/sync/localtrees.ts): a hit only for the exact identity (size, mtime,
 * ctime, inode, device, each varied alone with a made-up stat), --checksum trusts nothing, a damaged or foreign
 * cache file is a miss for every entry, and only entries whose files still show the expected identity are saved.
 * End to end in a lab: test/tree-sync.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LocalTreeCache, cacheFileFor, decodeCacheFile, identityOf, type LocalIdentity } from '../src/core/sync/localtrees.js';
import { localEntryHashes } from '../src/core/sync/local.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { toHex } from '../src/core/model/hash.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-localtrees-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A destination with `n` files (older than the racy window when the cache saves) and a cache directory. */
async function setup(name: string, n = 3): Promise<{ dest: string; cacheDir: string; files: string[] }> {
  const base = await tmp.fresh(name);
  const dest = path.join(base, 'dest');
  const cacheDir = path.join(base, 'cache');
  mkdirSync(path.join(dest, 'sub'), { recursive: true });
  const files = Array.from({ length: n }, (_, i) => path.join(dest, i % 2 ? 'sub' : '', `f${i}`));
  for (const f of files) writeFileSync(f, randomBytes(300 + 1000 * files.indexOf(f)));
  await sleep(80);
  return { dest, cacheDir, files };
}

function idOf(p: string): LocalIdentity {
  return identityOf(statSync(p, { bigint: true }));
}

describe('LocalTreeCache', () => {
  it('hits only for the same size, mtime, ctime, inode and device, each changed alone', async () => {
    const { dest, cacheDir, files } = await setup('fields');
    const first = await LocalTreeCache.open({ dir: cacheDir, dest });
    for (const f of files) {
      expect(first.get(f, idOf(f))).toBeUndefined();
      first.set(f, idOf(f), await MerkleTree.fromFile(f));
    }
    await first.save();
    expect(first.stats.saved).toBe(files.length);

    const c = await LocalTreeCache.open({ dir: cacheDir, dest });
    expect(c.size).toBe(files.length);
    const f = files[1]!;
    const id = idOf(f);
    const tree = c.get(f, id);
    expect(tree?.root.equals((await MerkleTree.fromFile(f)).root)).toBe(true);
    const changed: [string, LocalIdentity][] = [
      ['size', { ...id, size: id.size + 1 }],
      ['mtime', { ...id, mtimeNs: id.mtimeNs + 1n }],
      ['ctime', { ...id, ctimeNs: id.ctimeNs + 1n }],
      ['inode', { ...id, ino: id.ino + 1n }],
      ['device', { ...id, dev: id.dev + 1n }],
    ];
    for (const [field, other] of changed) expect(c.get(f, other), field).toBeUndefined();
    expect(c.stats).toMatchObject({ hits: 1, misses: 5 });
    // A path outside the destination is never answered.
    expect(c.get(path.join(path.dirname(dest), 'elsewhere'), id)).toBeUndefined();
  });

  it('with --checksum trusts no entry but still saves what was hashed', async () => {
    const { dest, cacheDir, files } = await setup('checksum');
    const first = await LocalTreeCache.open({ dir: cacheDir, dest });
    await localEntryHashes(dest, 'dest', first);
    expect(first.stats).toMatchObject({ hits: 0, misses: files.length });
    await first.save();
    const again = await LocalTreeCache.open({ dir: cacheDir, dest });
    await localEntryHashes(dest, 'dest', again);
    expect(again.stats).toMatchObject({ hits: files.length, misses: 0 });
    const forced = await LocalTreeCache.open({ dir: cacheDir, dest, checksum: true });
    const hashes = await localEntryHashes(dest, 'dest', forced);
    expect(forced.stats).toMatchObject({ hits: 0, misses: files.length });
    // The walk's answer does not depend on the cache, and is what a share of the same tree serves.
    expect([...hashes].sort()).toEqual([...(await localEntryHashes(dest, 'dest'))].sort());
    const served = new ShareIndex();
    await served.add(dest, { sharePath: 'dest' });
    expect([...hashes].sort()).toEqual(served.records.map((r) => toHex(r.hash)).sort());
    await forced.save();
    expect(forced.stats.saved).toBe(files.length);
  });

  it('a damaged, truncated or foreign cache file is a miss for every entry', async () => {
    const { dest, cacheDir, files } = await setup('damaged');
    const first = await LocalTreeCache.open({ dir: cacheDir, dest });
    await localEntryHashes(dest, 'dest', first);
    await first.save();
    const file = cacheFileFor(cacheDir, dest);
    const good = readFileSync(file);
    expect(decodeCacheFile(good, dest)?.size).toBe(files.length);
    expect(decodeCacheFile(good, dest + 'x')).toBeUndefined();
    for (const damage of [
      (b: Buffer) => b.subarray(0, b.length - 7),
      (b: Buffer) => Buffer.concat([b, Buffer.of(0)]),
      (b: Buffer) => {
        const c = Buffer.from(b);
        c[c.length >> 1]! ^= 0x10;
        return c;
      },
      () => Buffer.alloc(3),
    ]) {
      writeFileSync(file, damage(good));
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      expect(c.stats.corrupt).toBe(true);
      expect(c.size).toBe(0);
      await localEntryHashes(dest, 'dest', c);
      expect(c.stats).toMatchObject({ hits: 0, misses: files.length });
    }
  });

  it('saves a written file only while it shows the expected inode, size and mtime; a file changed since is a miss', async () => {
    const { dest, cacheDir, files } = await setup('wrote');
    const c = await LocalTreeCache.open({ dir: cacheDir, dest });
    await localEntryHashes(dest, 'dest', c);
    const [a, b, d] = files as [string, string, string];
    const st = statSync(a, { bigint: true });
    // Named relative to the working directory, as a destination given relative is.
    c.wrote(path.relative(process.cwd(), a), await MerkleTree.fromFile(a), { size: Number(st.size), ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs });
    // Expected a different mtime (as -t would set): not saved.
    const sb = statSync(b, { bigint: true });
    c.wrote(b, await MerkleTree.fromFile(b), { size: Number(sb.size), ino: sb.ino, dev: sb.dev, mtimeNs: sb.mtimeNs + 1n });
    // Changed after the walk saw it (ctime moves): not saved.
    chmodSync(d, 0o600);
    await c.save();
    const again = await LocalTreeCache.open({ dir: cacheDir, dest });
    expect(again.get(a, idOf(a))).toBeDefined();
    expect(again.get(b, idOf(b))).toBeUndefined();
    expect(again.get(d, idOf(d))).toBeUndefined();
  });

  it('keeps one file per destination: a sync to another destination does not touch it', async () => {
    const one = await setup('one');
    const two = await setup('two');
    const cacheDir = one.cacheDir;
    for (const { dest } of [one, two]) {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      await localEntryHashes(dest, 'dest', c);
      await c.save();
    }
    expect(cacheFileFor(cacheDir, one.dest)).not.toBe(cacheFileFor(cacheDir, two.dest));
    // A destination not synced for over 30 days loses its cache file when another one saves.
    const stale = cacheFileFor(cacheDir, '/nowhere/any-more');
    writeFileSync(stale, 'old');
    utimesSync(stale, new Date(Date.now() - 31 * 86_400_000), new Date(Date.now() - 31 * 86_400_000));
    writeFileSync(path.join(one.dest, 'new-file'), 'x');
    await sleep(80);
    const c = await LocalTreeCache.open({ dir: cacheDir, dest: one.dest });
    await localEntryHashes(one.dest, 'dest', c);
    await c.save();
    expect(existsSync(stale)).toBe(false);
    rmSync(path.join(one.dest, 'new-file'));
    for (const { dest, files } of [one, two]) {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      await localEntryHashes(dest, 'dest', c);
      expect(c.stats).toMatchObject({ hits: files.length, misses: 0 });
    }
  });
});
