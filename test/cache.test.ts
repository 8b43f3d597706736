/** The tree cache (src/core/index/cache.ts): hits, misses on any identity change, crash and corruption safety, budget. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TreeStore, busyUntilQuiet, decodeEntry, encodeEntry, defaultCacheDir, BUSY_FLUSH_GAP_MS, CACHE_SUBDIR, TOUCH_AFTER_MS, type FileIdentity } from '../src/core/index/cache.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { toHex } from '../src/core/model/hash.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-cache-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** Write a file with an mtime an hour ago (older than the racy window) and return its identity. */
function oldFile(p: string, data: Buffer): FileIdentity {
  writeFileSync(p, data);
  const t = new Date(Date.now() - 3600_000);
  utimesSync(p, t, t);
  return identity(p);
}

function identity(p: string): FileIdentity {
  const st = statSync(p, { bigint: true });
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ino: st.ino, dev: st.dev };
}

function entryFiles(dir: string): string[] {
  const trees = path.join(dir, CACHE_SUBDIR);
  if (!existsSync(trees)) return [];
  return readdirSync(trees).flatMap((s) => readdirSync(path.join(trees, s)).map((n) => path.join(trees, s, n)));
}

describe('busyUntilQuiet', () => {
  it('stays busy from its creation and from every busy moment until the caller has been quiet for quietMs', () => {
    let t = 1000;
    let sending = false;
    const busy = busyUntilQuiet(() => sending, 500, () => t);
    // A share that just started: receivers that waited for it are about to join.
    expect(busy()).toBe(true);
    t = 1499;
    expect(busy()).toBe(true);
    t = 1500;
    expect(busy()).toBe(false);
    sending = true;
    t = 1600;
    expect(busy()).toBe(true);
    // A gap between a receiver's steps does not count as quiet.
    sending = false;
    t = 1700;
    expect(busy()).toBe(true);
    t = 2099;
    expect(busy()).toBe(true);
    t = 2100;
    expect(busy()).toBe(false);
  });
});

describe('TreeStore', () => {
  it('flush writes every entry in batches; while the caller is busy, a batch every BUSY_FLUSH_GAP_MS at most', async () => {
    const cdir = path.join(work, 'cache');
    const s = new TreeStore({ dir: cdir, racyMs: 0 });
    const data = randomBytes(5000);
    const tree = MerkleTree.fromBuffer(data);
    const files: [string, FileIdentity][] = [];
    for (let i = 0; i < 40; i++) {
      const f = path.join(work, `f${i}`);
      files.push([f, oldFile(f, data)]);
    }
    for (const [f, id] of files) s.set(f, id, tree);
    const asked: number[] = [];
    const t0 = performance.now();
    // Busy for the first two batches, then not.
    await s.flush(() => asked.push(performance.now()) <= 2);
    // 40 entries in batches of 16: three batches, each preceded by a look at busy().
    expect(asked).toHaveLength(3);
    expect(asked[2]! - t0).toBeGreaterThanOrEqual(2 * BUSY_FLUSH_GAP_MS - 5);
    expect(s.stats.writes).toBe(40);
    expect(entryFiles(cdir)).toHaveLength(40);
    const fresh = new TreeStore({ dir: cdir });
    for (const [f, id] of files) expect(fresh.get(f, id)?.equals(tree)).toBe(true);
  });

  it('misses, then hits in memory and from disk in a new process-like store, with an identical tree', async () => {
    const f = path.join(work, 'a.bin');
    const data = randomBytes(100_000);
    const id = oldFile(f, data);
    const tree = MerkleTree.fromBuffer(data);
    const cdir = path.join(work, 'cache');
    const s1 = new TreeStore({ dir: cdir });
    expect(s1.get(f, id)).toBeUndefined();
    s1.set(f, id, tree);
    await s1.flush();
    expect(s1.get(f, id)?.equals(tree)).toBe(true);
    expect(s1.stats).toMatchObject({ hits: 1, misses: 1, writes: 1 });
    const s2 = new TreeStore({ dir: cdir });
    const again = s2.get(f, id);
    expect(again?.equals(tree)).toBe(true);
    expect(s2.stats.hits).toBe(1);
    // Owner-only: trees tell which files hold which content.
    expect(statSync(path.join(cdir, CACHE_SUBDIR)).mode & 0o777).toBe(0o700);
    expect(statSync(entryFiles(cdir)[0]!).mode & 0o777).toBe(0o600);
  });

  it('misses when size, mtime, inode or device differ', async () => {
    const f = path.join(work, 'b.bin');
    const data = randomBytes(40_000);
    const id = oldFile(f, data);
    const s = new TreeStore({ dir: path.join(work, 'cache') });
    s.set(f, id, MerkleTree.fromBuffer(data));
    await s.flush();
    expect(s.get(f, id)).toBeDefined();
    expect(s.get(f, { ...id, size: id.size + 1 })).toBeUndefined();
    expect(s.get(f, { ...id, mtimeNs: id.mtimeNs + 1n })).toBeUndefined();
    expect(s.get(f, { ...id, ino: id.ino + 1n })).toBeUndefined();
    expect(s.get(f, { ...id, dev: id.dev + 1n })).toBeUndefined();
    // And the disk entry says the same to a fresh store.
    const s2 = new TreeStore({ dir: path.join(work, 'cache') });
    expect(s2.get(f, { ...id, mtimeNs: id.mtimeNs + 1n })).toBeUndefined();
    expect(s2.get(path.join(work, 'other'), id)).toBeUndefined();
  });

  it('does not cache a file modified within the racy window, or one that changed while it was hashed', async () => {
    const fresh = path.join(work, 'fresh.bin');
    writeFileSync(fresh, randomBytes(1000));
    const s = new TreeStore({ dir: path.join(work, 'cache') });
    const idFresh = identity(fresh);
    s.set(fresh, idFresh, MerkleTree.fromBuffer(readFileSync(fresh)));
    expect(s.get(fresh, idFresh)).toBeUndefined();
    const moved = path.join(work, 'moved.bin');
    const id = oldFile(moved, randomBytes(1000));
    const tree = MerkleTree.fromBuffer(readFileSync(moved));
    oldFile(moved, randomBytes(1001));
    s.set(moved, id, tree);
    await s.flush();
    expect(s.get(moved, id)).toBeUndefined();
    expect(entryFiles(path.join(work, 'cache'))).toEqual([]);
  });

  it('ignores and deletes corrupt or truncated entries', async () => {
    const f = path.join(work, 'c.bin');
    const data = randomBytes(200_000);
    const id = oldFile(f, data);
    const cdir = path.join(work, 'cache');
    const w = new TreeStore({ dir: cdir });
    w.set(f, id, MerkleTree.fromBuffer(data));
    await w.flush();
    const [entry] = entryFiles(cdir);
    const good = readFileSync(entry!);
    // One flipped bit in the last node (a leaf): the parents no longer match.
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 1;
    writeFileSync(entry!, bad);
    const s = new TreeStore({ dir: cdir });
    expect(s.get(f, id)).toBeUndefined();
    expect(s.stats.corrupt).toBe(1);
    expect(existsSync(entry!)).toBe(false);
    // Truncated (a torn write): wrong node count.
    writeFileSync(entry!, good.subarray(0, good.length - 10));
    expect(new TreeStore({ dir: cdir }).get(f, id)).toBeUndefined();
    // Not an entry at all.
    writeFileSync(entry!, 'hello');
    expect(new TreeStore({ dir: cdir }).get(f, id)).toBeUndefined();
    expect(existsSync(entry!)).toBe(false);
  });

  it('decodes what it encodes and rejects headers out of range', () => {
    const t = MerkleTree.fromBuffer(randomBytes(70_000));
    const id: FileIdentity = { size: 70_000, mtimeNs: 1_700_000_000_123_456_789n, ino: 2n ** 63n + 5n, dev: 77n };
    const e = decodeEntry(encodeEntry('/x/y', id, t))!;
    expect(e.path).toBe('/x/y');
    expect(e.id).toEqual(id);
    expect(e.nodes.equals(t.nodes)).toBe(true);
    const enc = encodeEntry('/x/y', id, t);
    const longPath = Buffer.from(enc);
    longPath.writeUInt32BE(0xffffffff, 40);
    expect(decodeEntry(longPath)).toBeUndefined();
    expect(decodeEntry(enc.subarray(0, 20))).toBeUndefined();
    const magic = Buffer.from(enc);
    magic[0] = 0;
    expect(decodeEntry(magic)).toBeUndefined();
  });

  it('forget() and sweep() drop entries', async () => {
    const cdir = path.join(work, 'cache');
    const s = new TreeStore({ dir: cdir });
    const a = path.join(work, 'a');
    const b = path.join(work, 'b');
    const ida = oldFile(a, randomBytes(100));
    const idb = oldFile(b, randomBytes(100));
    s.set(a, ida, MerkleTree.fromBuffer(readFileSync(a)));
    s.set(b, idb, MerkleTree.fromBuffer(readFileSync(b)));
    await s.flush();
    expect(entryFiles(cdir).length).toBe(2);
    s.forget(a);
    expect(s.get(a, ida)).toBeUndefined();
    expect(entryFiles(cdir).length).toBe(1);
    // Memory-only store: an entry not used during a run is dropped at its end.
    const m = new TreeStore();
    m.set(a, ida, MerkleTree.fromBuffer(readFileSync(a)));
    m.set(b, idb, MerkleTree.fromBuffer(readFileSync(b)));
    m.sweep();
    expect(m.get(b, idb)).toBeDefined();
    m.sweep();
    expect(m.get(a, ida)).toBeUndefined();
    expect(m.get(b, idb)).toBeDefined();
  });

  it('marks a hit on disk as recently used only when its mark is older than TOUCH_AFTER_MS', async () => {
    const cdir = path.join(work, 'touch-cache');
    const f = path.join(work, 'touched.bin');
    const data = randomBytes(40_000);
    const id = oldFile(f, data);
    const s = new TreeStore({ dir: cdir });
    s.set(f, id, MerkleTree.fromBuffer(data));
    await s.flush();
    const [e] = entryFiles(cdir);
    const recent = new Date(Date.now() - TOUCH_AFTER_MS / 2);
    utimesSync(e!, recent, recent);
    // A fresh store reads the entry from disk: a hit, and its mark stays.
    expect(new TreeStore({ dir: cdir }).get(f, id)).toBeDefined();
    expect(Math.round(statSync(e!).mtimeMs)).toBe(recent.getTime());
    const old = new Date(Date.now() - TOUCH_AFTER_MS - 60_000);
    utimesSync(e!, old, old);
    expect(new TreeStore({ dir: cdir }).get(f, id)).toBeDefined();
    expect(Date.now() - statSync(e!).mtimeMs).toBeLessThan(60_000);
  });

  it('prunes least recently used entries down to the budget', async () => {
    const cdir = path.join(work, 'cache');
    const s = new TreeStore({ dir: cdir, maxBytes: 5000 });
    const files: string[] = [];
    for (let i = 0; i < 10; i++) {
      const f = path.join(work, `f${i}`);
      const id = oldFile(f, randomBytes(32768 * 16)); // 31 nodes: about 1 KiB per entry
      s.set(f, id, MerkleTree.fromBuffer(readFileSync(f)));
      files.push(f);
    }
    await s.flush();
    // Make the entries' ages distinct and known: f0 oldest.
    const entries = files.map((f) => ({ f, e: entryFiles(cdir).find((p) => decodeEntry(readFileSync(p))!.path === f)! }));
    entries.forEach(({ e }, i) => utimesSync(e, new Date(1e12 + i * 1000), new Date(1e12 + i * 1000)));
    const r = await s.prune();
    expect(r.bytes).toBeLessThanOrEqual(4500);
    expect(r.removed).toBeGreaterThan(0);
    const left = new Set(entryFiles(cdir));
    expect(left.has(entries[0]!.e)).toBe(false);
    expect(left.has(entries[9]!.e)).toBe(true);
    // Once an hour at most: a second prune right away does not walk the cache again.
    expect((await s.prune()).skipped).toBe(true);
    expect((await s.prune(0)).skipped).toBeUndefined();
  });

  it('lets ShareIndex.build skip hashing unchanged files, with the same root, and re-hash only a changed one', async () => {
    const src = path.join(work, 'src');
    mkdirSync(path.join(src, 'd'), { recursive: true });
    for (let i = 0; i < 20; i++) oldFile(path.join(src, i % 2 ? 'd' : '', `f${i}`), randomBytes(1000 + i * 5000));
    const cdir = path.join(work, 'cache');
    const cold = new TreeStore({ dir: cdir });
    const i1 = await ShareIndex.build([src], { treeCache: cold });
    expect(cold.stats).toMatchObject({ hits: 0, misses: 20, writes: 0 });
    await cold.flush();
    expect(cold.stats.writes).toBe(20);
    const warm = new TreeStore({ dir: cdir });
    const i2 = await ShareIndex.build([src], { treeCache: warm });
    expect(warm.stats).toMatchObject({ hits: 20, misses: 0 });
    expect(toHex(i2.roots[0]!.hash)).toBe(toHex(i1.roots[0]!.hash));
    oldFile(path.join(src, 'd', 'f3'), randomBytes(999));
    const again = new TreeStore({ dir: cdir });
    const i3 = await ShareIndex.build([src], { treeCache: again });
    expect(again.stats).toMatchObject({ hits: 19, misses: 1 });
    const plain = await ShareIndex.build([src]);
    expect(toHex(i3.roots[0]!.hash)).toBe(toHex(plain.roots[0]!.hash));
    expect(toHex(i3.roots[0]!.hash)).not.toBe(toHex(i1.roots[0]!.hash));
  });

  it('chooses /var/cache/lcsync for root, else XDG_CACHE_HOME, else ~/.cache', () => {
    expect(defaultCacheDir({}, 0)).toBe('/var/cache/lcsync');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/c' }, 1000)).toBe('/c/lcsync');
    expect(defaultCacheDir({ HOME: '/home/u' }, 1000)).toBe('/home/u/.cache/lcsync');
    expect(defaultCacheDir({ LCSYNC_CACHE_DIR: '/x', XDG_CACHE_HOME: '/c' }, 0)).toBe('/x');
  });
});
