/**
 * Receivers that choose and react (issue 15), whole syncs between a real Share and the real client
 * over an in-memory link (test/memlink.ts): --include/--exclude never join an excluded file's
 * groups (its tree parts and chunks; with bundles not even the part that names it), --delete
 * removes exactly what left the source and nothing excluded, and the --exec hook gets the
 * changed paths while its failure leaves the mirror intact.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { groupAddress } from '../src/core/wire/address.js';
import { bundleKey } from '../src/core/wire/bundle.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { Share } from '../src/core/share/share.js';
import { syncRemote, type SyncItem, type SyncOptions, type SyncSummary } from '../src/core/sync/sync.js';
import type { HookResult } from '../src/core/sync/hook.js';
import { MEM_IF, MemoryLink } from './memlink.js';
import { treeListing } from './e2e.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-choose-');
const flags = { recursive: true, perms: true, owner: false, group: false, times: true };

/** A tree with files to keep and files and a directory the rules below exclude (all distinct bytes). */
async function makeTree(name: string): Promise<string> {
  const root = path.join(await tmp.fresh(name), 'tree');
  for (const d of ['', 'keep', 'keep/deep', 'skip', 'skip/inner']) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'c.txt'), randomBytes(3000));
  writeFileSync(path.join(root, 'keep', 'a.txt'), randomBytes(5000));
  writeFileSync(path.join(root, 'keep', 'big.bin'), randomBytes(3 * 32768 + 7));
  writeFileSync(path.join(root, 'keep', 'deep', 'b.txt'), randomBytes(700));
  writeFileSync(path.join(root, 'x.log'), randomBytes(4 * 32768 + 1));
  writeFileSync(path.join(root, 'keep', 'deep', 'y.log'), randomBytes(2 * 32768 + 3));
  writeFileSync(path.join(root, 'keep', 'small.log'), randomBytes(900));
  writeFileSync(path.join(root, 'skip', 'big.bin'), randomBytes(3 * 32768 + 11));
  writeFileSync(path.join(root, 'skip', 'inner', 'z.txt'), randomBytes(400));
  return root;
}

const EXCLUDE = [{ include: false, pattern: '*.log' }, { include: false, pattern: '/skip/' }];

interface Run {
  summary?: SyncSummary;
  error?: unknown;
  link: MemoryLink;
  index: ShareIndex;
  items: SyncItem[];
  hooks: HookResult[];
}

async function run(root: string, dest: string, opts: { bundles: boolean } & Partial<SyncOptions>): Promise<Run> {
  const index = await ShareIndex.build([root], { bundles: opts.bundles });
  const link = new MemoryLink();
  const share = await Share.start(index, { ifnames: [MEM_IF], listeners: link.listeners, openSink: async () => link.sink, rateBps: 0 });
  const items: SyncItem[] = [];
  const hooks: HookResult[] = [];
  try {
    const summary = await syncRemote('tree/', dest, {
      ifnames: [MEM_IF],
      flags,
      channel: link.source,
      timeoutSec: 20,
      ...opts,
      onItem: (it) => items.push(it),
      onHook: (h) => hooks.push(h),
    });
    return { summary, link, index, items, hooks };
  } catch (error) {
    return { error, link, index, items, hooks };
  } finally {
    await share.stop();
  }
}

/** The groups of the shared entry at `sharePath`: its tree parts, its chunks, and for a directory its bundle's first part. */
function groupsOf(index: ShareIndex, sharePath: string): { parts: string[]; rest: string[] } {
  const r = index.records.find((x) => x.sharePath === sharePath);
  if (!r) throw new Error(`no record ${sharePath}`);
  const parts = (r.partHashes ?? [r.hash]).map(groupAddress);
  const leaves = r.tree ? Array.from({ length: r.tree.chunks }, (_, i) => groupAddress(r.tree!.leaf(i))) : [];
  const bundle = r.type === 'dir' ? [groupAddress(bundleKey(r.hash, 0))] : [];
  return { parts, rest: [...parts.slice(1), ...leaves, ...bundle] };
}

/** The source's listing without what EXCLUDE leaves out. */
function wantedListing(root: string): string[] {
  return treeListing(root, { times: true }).filter((l) => !/^(skip[/ ]|[^ ]*\.log )/.test(l));
}

describe('--include/--exclude', () => {
  for (const bundles of [true, false]) {
    it(`never joins an excluded file's groups (share ${bundles ? 'with' : 'without'} bundles)`, async () => {
      const root = await makeTree(`excl-${bundles}`);
      const dest = path.join(path.dirname(root), 'out');
      const r = await run(root, dest, { bundles, filter: EXCLUDE });
      expect(r.error).toBeUndefined();
      expect(treeListing(dest, { times: true })).toEqual(wantedListing(root));
      const joined = new Set(r.link.joinLog);
      for (const p of ['tree/x.log', 'tree/keep/deep/y.log', 'tree/keep/small.log', 'tree/skip']) {
        const g = groupsOf(r.index, p);
        // Without bundles, the first part is what names an entry (a directory lists only hashes).
        for (const group of bundles ? [...g.parts, ...g.rest] : g.rest) expect(joined.has(group), `${p} ${group}`).toBe(false);
      }
      // Nothing under an excluded directory is looked at, not even the part that names it.
      for (const p of ['tree/skip/big.bin', 'tree/skip/inner', 'tree/skip/inner/z.txt']) {
        const g = groupsOf(r.index, p);
        for (const group of [...g.parts, ...g.rest]) expect(joined.has(group), `${p} ${group}`).toBe(false);
      }
      // The wanted big file's chunks were joined (the check above can fail).
      for (const group of groupsOf(r.index, 'tree/keep/big.bin').rest) expect(joined.has(group)).toBe(true);
      // Fewer joins than the same sync without rules.
      const all = await run(root, path.join(path.dirname(root), 'out-all'), { bundles });
      expect(all.error).toBeUndefined();
      expect(r.summary!.joins).toBeLessThan(all.summary!.joins);
      expect(r.summary!.joins).toBe(r.link.joinLog.length - r.summary!.rejoins);
      console.log(`bundles ${bundles}: joins with rules ${r.summary!.joins}, without ${all.summary!.joins}; bytes received ${r.summary!.bytesReceived} vs ${all.summary!.bytesReceived}`);
    }, 60_000);
  }

  it('an include before a catch-all exclude keeps only what it names (and the directories on the way)', async () => {
    const root = await makeTree('incl');
    const dest = path.join(path.dirname(root), 'out');
    const r = await run(root, dest, { bundles: true, filter: [{ include: true, pattern: '*/' }, { include: true, pattern: '*.txt' }, { include: false, pattern: '*' }] });
    expect(r.error).toBeUndefined();
    expect(treeListing(dest).map((l) => l.split(' ')[0])).toEqual(['c.txt', 'keep', 'keep/a.txt', 'keep/deep', 'keep/deep/b.txt', 'skip', 'skip/inner', 'skip/inner/z.txt']);
  }, 60_000);
});

describe('--delete', () => {
  it('removes exactly what left the source, keeps excluded paths, never follows a link out', async () => {
    const root = await makeTree('delete');
    const dest = path.join(path.dirname(root), 'out');
    const outside = path.join(path.dirname(root), 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'precious'), 'x');
    expect((await run(root, dest, { bundles: true, filter: EXCLUDE })).error).toBeUndefined();
    // Local additions: some the source does not have, some the rules exclude.
    writeFileSync(path.join(dest, 'old.txt'), 'gone from the source');
    mkdirSync(path.join(dest, 'keep', 'olddir', 'sub'), { recursive: true });
    writeFileSync(path.join(dest, 'keep', 'olddir', 'sub', 'f'), 'f');
    symlinkSync(outside, path.join(dest, 'keep', 'deep', 'link-out'));
    writeFileSync(path.join(dest, 'local.log'), 'excluded: kept');
    mkdirSync(path.join(dest, 'skip'));
    writeFileSync(path.join(dest, 'skip', 'mine'), 'excluded directory: kept');
    // And a file the source loses.
    rmSync(path.join(root, 'keep', 'a.txt'));
    const r = await run(root, dest, { bundles: true, filter: EXCLUDE, delete: true });
    expect(r.error).toBeUndefined();
    const deleted = r.items.filter((i) => i.change === 'deleted').map((i) => path.relative(dest, i.path)).sort();
    expect(deleted).toEqual(['keep/a.txt', 'keep/deep/link-out', 'keep/olddir', 'old.txt']);
    expect(r.summary!.deleted).toBe(4);
    expect(readFileSync(path.join(outside, 'precious'), 'utf8')).toBe('x');
    expect(existsSync(path.join(dest, 'local.log'))).toBe(true);
    expect(existsSync(path.join(dest, 'skip', 'mine'))).toBe(true);
    expect(treeListing(dest, { times: true }).filter((l) => !/^(skip|local\.log)/.test(l))).toEqual(wantedListing(root));
  }, 60_000);

  it('is off by default, and a dry run only reports', async () => {
    const root = await makeTree('nodelete');
    const dest = path.join(path.dirname(root), 'out');
    mkdirSync(dest);
    writeFileSync(path.join(dest, 'extra'), 'e');
    expect((await run(root, dest, { bundles: true })).error).toBeUndefined();
    expect(existsSync(path.join(dest, 'extra'))).toBe(true);
    const dry = await run(root, dest, { bundles: true, delete: true, dryRun: true });
    expect(dry.summary!.deleted).toBe(1);
    expect(existsSync(path.join(dest, 'extra'))).toBe(true);
  }, 60_000);
});

describe('--exec', () => {
  it('gets the changed paths on stdin; a failing hook is reported and the mirror is intact; no change, no hook', async () => {
    const root = await makeTree('exec');
    const dest = path.join(path.dirname(root), 'out');
    const got = path.join(path.dirname(root), 'hook.out');
    const r = await run(root, dest, { bundles: true, filter: EXCLUDE, exec: `cat > '${got}'; pwd >> '${got}'; exit 3` });
    expect(r.error).toBeUndefined();
    expect(treeListing(dest, { times: true })).toEqual(wantedListing(root));
    const lines = readFileSync(got, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.pop()).toBe(dest);
    expect(lines.sort()).toEqual(['.', 'c.txt', 'keep', 'keep/a.txt', 'keep/big.bin', 'keep/deep', 'keep/deep/b.txt']);
    expect(r.summary!.hook).toMatchObject({ exitCode: 3, paths: 7 });
    expect(r.hooks).toHaveLength(1);
    // One file changes, one leaves: the hook hears of exactly those, NUL-separated with execNul.
    writeFileSync(path.join(root, 'c.txt'), 'new bytes');
    rmSync(path.join(root, 'keep', 'deep', 'b.txt'));
    const r2 = await run(root, dest, { bundles: true, filter: EXCLUDE, delete: true, exec: `cat > '${got}'`, execNul: true });
    expect(r2.error).toBeUndefined();
    const names = readFileSync(got, 'latin1').split('\0');
    expect(names.pop()).toBe('');
    expect(names.sort()).toEqual(['c.txt', 'keep/deep/b.txt']);
    expect(r2.summary!.hook).toMatchObject({ exitCode: 0, paths: 2 });
    // Nothing changed: no hook.
    rmSync(got);
    const r3 = await run(root, dest, { bundles: true, filter: EXCLUDE, delete: true, exec: `cat > '${got}'` });
    expect(r3.error).toBeUndefined();
    expect(r3.summary!.hook).toBeUndefined();
    expect(existsSync(got)).toBe(false);
  }, 60_000);
});
