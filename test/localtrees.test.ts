/**
 * The receiver's local tree cache (src/core/sync/localtrees.ts): a hit only for the exact identity (size, mtime,
 * ctime, inode, device, each varied alone with a made-up stat), --checksum trusts nothing, a damaged or foreign
 * cache file is a miss for every entry, and only entries whose files still show the expected identity are saved.
 * End to end in a lab: test/tree-sync.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { LocalTreeCache, cacheFileFor, decodeCacheFile, encodeCacheFile, identityOf, listingsSavedAsDrafted, type LocalIdentity } from '../src/core/sync/localtrees.js';
import { localEntries, localEntryHashes } from '../src/core/sync/local.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { hash, toHex } from '../src/core/model/hash.js';
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

  it('a cache file over 4 MiB (a large file\'s tree) is hashed part by part, to the hash of its bytes', () => {
    for (const size of [1000, 5 * 2 ** 20]) {
      const parts = encodeCacheFile('/dest', [randomBytes(size), randomBytes(100)]);
      expect(parts.at(-1)!.equals(hash(Buffer.concat(parts.slice(0, -1)))), String(size)).toBe(true);
    }
  });

  it('a damaged, truncated or foreign cache file is a miss for every entry', async () => {
    const { dest, cacheDir, files } = await setup('damaged');
    const first = await LocalTreeCache.open({ dir: cacheDir, dest });
    await localEntryHashes(dest, 'dest', first);
    await first.save();
    const file = cacheFileFor(cacheDir, dest);
    const good = readFileSync(file);
    expect(decodeCacheFile(good, dest)).toBeDefined();
    expect((await LocalTreeCache.open({ dir: cacheDir, dest })).size).toBe(files.length);
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
    // A file of the format before directory listings is a miss for every entry, not a damaged one.
    writeFileSync(file, Buffer.concat([Buffer.from('LCDEST1\n', 'latin1'), good.subarray(8)]));
    const old = await LocalTreeCache.open({ dir: cacheDir, dest });
    expect(old.stats.corrupt).toBe(false);
    expect(old.size).toBe(0);
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

  it('given the run\'s durability to wait for, writes the cache file only once that settles, resolved or rejected', async () => {
    for (const outcome of ['resolves', 'rejects']) {
      const { dest, cacheDir, files } = await setup(`after-${outcome}`);
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      await localEntryHashes(dest, 'dest', c);
      let settle!: () => void;
      const durable = new Promise<void>((resolve, reject) => (settle = outcome === 'resolves' ? resolve : () => reject(new Error('EIO'))));
      const saving = c.save(durable);
      await sleep(200);
      expect(existsSync(cacheFileFor(cacheDir, dest))).toBe(false);
      settle();
      await saving;
      const again = await LocalTreeCache.open({ dir: cacheDir, dest });
      await localEntryHashes(dest, 'dest', again);
      expect(again.stats).toMatchObject({ hits: files.length, misses: 0 });
    }
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
    // Each save after a change (a save that finds everything unchanged only touches its file).
    const saveOne = async (change: string) => {
      writeFileSync(path.join(one.dest, change), 'x');
      await sleep(80);
      const c = await LocalTreeCache.open({ dir: cacheDir, dest: one.dest });
      await localEntryHashes(one.dest, 'dest', c);
      await c.save();
    };
    // The directory was swept by the saves above: not again within the hour (a sweep lstats every
    // cache file), so the stale file is still there; an hour later it goes.
    const mark = `${path.dirname(stale)}.pruned`;
    expect(existsSync(mark)).toBe(true);
    await saveOne('new-file');
    expect(existsSync(stale)).toBe(true);
    utimesSync(mark, new Date(Date.now() - 3_601_000), new Date(Date.now() - 3_601_000));
    await saveOne('newer-file');
    expect(existsSync(stale)).toBe(false);
    rmSync(path.join(one.dest, 'new-file'));
    rmSync(path.join(one.dest, 'newer-file'));
    for (const { dest, files } of [one, two]) {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      await localEntryHashes(dest, 'dest', c);
      expect(c.stats).toMatchObject({ hits: files.length, misses: 0 });
    }
  });
  it('after many written files, lists directories while their changes settle and keeps a listing only if nothing changed meanwhile', async () => {
    const { dest, cacheDir } = await setup('drafts', 0);
    const dirs = ['a', 'b', 'c'];
    for (const d of dirs) mkdirSync(path.join(dest, d));
    // More written files than the save lets go unsettled (REHASH_FILES), so it waits: 3 x 100 files.
    const written = dirs.flatMap((d) => Array.from({ length: 100 }, (_, i) => path.join(dest, d, `f${i}`)));
    const run = async (during?: () => void) => {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      for (const f of written) {
        if (!existsSync(f)) writeFileSync(f, randomBytes(200 + (written.indexOf(f) % 50)));
        const st = statSync(f, { bigint: true });
        c.wrote(f, await MerkleTree.fromFile(f), { size: Number(st.size), ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs });
      }
      const before = listingsSavedAsDrafted();
      // The listings are made when save() is called; what changes after must not be saved as listed then.
      const saving = c.save();
      during?.();
      await saving;
      return listingsSavedAsDrafted() - before;
    };
    const next = async () => {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      const hashes = [...(await localEntryHashes(dest, 'dest', c))].sort();
      expect(hashes).toEqual([...(await localEntryHashes(dest, 'dest'))].sort());
      return c.stats;
    };
    // Nothing changed while the save waited: each of the four listings (., a, b, c) is saved as made.
    expect(await run()).toBe(4);
    expect(await next()).toMatchObject({ hits: 300, misses: 0, listed: 4 });
    // While it waits: a file added to b, and one of c's rewritten with its size and mtime kept.
    const f5 = path.join(dest, 'c', 'f5');
    const saved = await run(() => {
      writeFileSync(path.join(dest, 'b', 'new'), 'x');
      const st = statSync(f5);
      writeFileSync(f5, randomBytes(st.size));
      utimesSync(f5, st.atime, st.mtime);
    });
    // a's listing as made; the top's was made again (its record holds b's stat, which changed), b's and c's too.
    expect(saved).toBe(1);
    await sleep(80);
    // b and c are walked (listed again after the wait they were not listable: b has a file the run did
    // not write, c one changed too lately to trust), and the rewritten file is hashed again.
    expect(await next()).toMatchObject({ listed: 2, misses: 2, hits: 299 });
  });

  it('takes an unchanged directory from its listing, and after any change to it gives the walk\'s own answer', async () => {
    const { dest, cacheDir } = await setup('listing', 0);
    for (const d of ['a', 'a/deep', 'b']) mkdirSync(path.join(dest, d), { recursive: true });
    const names = ['a/1', 'a/2', 'a/deep/3', 'b/4', 'b/5', 'top'];
    for (const n of names) writeFileSync(path.join(dest, n), randomBytes(500 + n.length));
    await sleep(80);
    /** One run: open, compare (as a sync does), save; the answer and the stats. */
    const run = async () => {
      const c = await LocalTreeCache.open({ dir: cacheDir, dest });
      const hashes = [...(await localEntryHashes(dest, 'dest', c))].sort();
      await c.save();
      return { hashes, stats: c.stats };
    };
    const truth = async () => [...(await localEntryHashes(dest, 'dest'))].sort();
    expect((await run()).stats).toMatchObject({ hits: 0, misses: names.length, listed: 0 });
    // Every directory listed by the save: nothing is looked at file by file.
    const again = await run();
    expect(again.hashes).toEqual(await truth());
    expect(again.stats).toMatchObject({ hits: names.length, misses: 0, listed: 5 });
    const changes: [string, () => void, number][] = [
      // What changed, and how many directories are then taken from their listings (of ., sub, a, a/deep, b).
      ['content, size and mtime kept (ctime differs)', () => {
        const f = path.join(dest, 'a/deep/3');
        const st = lstatSync(f);
        writeFileSync(f, randomBytes(st.size));
        expect(spawnSync('touch', ['-d', `@${st.mtimeMs / 1000}`, f]).status).toBe(0);
      }, 4],
      ['a file added', () => writeFileSync(path.join(dest, 'b/new'), 'x'), 4],
      ['a file removed', () => rmSync(path.join(dest, 'a/1')), 4],
      ['a file renamed', () => renameSync(path.join(dest, 'b/4'), path.join(dest, 'b/4x')), 4],
      ['a mode changed', () => chmodSync(path.join(dest, 'top'), 0o600), 4],
      ['a symlink added (a directory with one is never listed)', () => symlinkSync('top', path.join(dest, 'a/link')), 4],
      ['a file replaced by a directory', () => {
        rmSync(path.join(dest, 'b/5'));
        mkdirSync(path.join(dest, 'b/5'));
      }, 3],
      // a (which holds the symlink) is walked each time now; b/5, new, was listed by the last save.
      ['a subdirectory removed', () => rmSync(path.join(dest, 'a/deep'), { recursive: true }), 4],
    ];
    for (const [what, change, listed] of changes) {
      change();
      await sleep(80);
      const r = await run();
      expect(r.hashes, what).toEqual(await truth());
      // The changed directory is walked; the others still come from their listings.
      expect(r.stats.listed, what).toBe(listed);
    }
    // A path inside a share hashes its entries under more of its path: no listing is used for it.
    const inside = await LocalTreeCache.open({ dir: cacheDir, dest });
    expect([...(await localEntryHashes(dest, 'share/sub', inside))].sort()).toEqual([...(await localEntryHashes(dest, 'share/sub'))].sort());
    expect(inside.stats.listed).toBe(0);
    // A directory entry's lookups (a sync comparing one directory, --delete asking for a path) see the unchanged directories' files.
    const c = await LocalTreeCache.open({ dir: cacheDir, dest });
    const local = await localEntries(dest, 'dest', c);
    const all = await truth();
    expect(c.stats.listed).toBeGreaterThan(0);
    for (const h of all) expect(local.hashes.has(h, path.join(dest, 'b')) || local.hashes.has(h), h).toBe(true);
    expect(local.hashes.has('00'.repeat(32), path.join(dest, 'b'))).toBe(false);
    const plain = await localEntries(dest, 'dest');
    for (const n of ['top', 'b/4x', 'b/new', 'a/2']) expect(local.byPath.get(path.join(dest, n)), n).toBe(plain.byPath.get(path.join(dest, n)));
  });
});
