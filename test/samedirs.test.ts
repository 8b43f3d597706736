/**
 * Directories with equal entry hashes in different places. A directory's entry hash covers its
 * basename, stat fields and children, not its path, so two empty directories `a/logs` and
 * `b/logs` made by one tar extraction (same mode, owner and whole-second mtime) have the same
 * hash. A re-sync that finds `a/logs` locally must still make a missing `b/logs` (it once took it
 * for present), with and without the local tree cache, and with the share's bundles or without.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ShareIndex } from '../src/core/index/mdex.js';
import { Share } from '../src/core/share/share.js';
import { syncRemote, type SyncOptions } from '../src/core/sync/sync.js';
import { MEM_IF, MemoryLink } from './memlink.js';
import { treeListing } from './e2e.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-samedirs-');
const flags = { recursive: true, perms: true, owner: false, group: false, times: true };
const T = new Date('2024-05-01T12:00:00Z');

/** a/logs, b/logs, b/c/logs: empty, equal mode and mtime; a file beside them so the parents differ. */
function makeTree(root: string): void {
  for (const d of ['a/logs', 'b/logs', 'b/c/logs', 'b/c/empty/deeper', 'a/empty/deeper']) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'a', 'f.txt'), 'a');
  writeFileSync(path.join(root, 'b', 'f.txt'), 'bb');
  // Deepest first: setting a directory's times after its children were made.
  for (const d of ['a/empty/deeper', 'b/c/empty/deeper', 'a/empty', 'b/c/empty', 'a/logs', 'b/logs', 'b/c/logs', 'b/c', 'a', 'b', '']) {
    utimesSync(path.join(root, d), T, T);
  }
}

async function sync(root: string, dest: string, opts: { bundles: boolean } & Partial<SyncOptions>): Promise<void> {
  const index = await ShareIndex.build([root], { bundles: opts.bundles });
  const link = new MemoryLink();
  const share = await Share.start(index, { ifnames: [MEM_IF], listeners: link.listeners, openSink: async () => link.sink, rateBps: 0 });
  try {
    await syncRemote('tree/', dest, { ifnames: [MEM_IF], flags, channel: link.source, timeoutSec: 20, ...opts });
  } finally {
    await share.stop();
  }
}

describe('directories with the same entry hash in different places', () => {
  for (const bundles of [false, true]) {
    for (const cache of [false, true]) {
      it(`a missing one is made though its twin exists (bundles ${bundles ? 'on' : 'off'}, cache ${cache ? 'on' : 'off'})`, async () => {
        const base = await tmp.fresh(`b${+bundles}c${+cache}`);
        const root = path.join(base, 'tree');
        makeTree(root);
        const index = await ShareIndex.build([root], { bundles: false });
        const hashOf = (p: string) => index.records.find((r) => r.sharePath === `tree/${p}`)!.hash.toString('hex');
        // The premise: twins in different directories hash alike.
        expect(hashOf('a/logs')).toBe(hashOf('b/logs'));
        expect(hashOf('a/empty')).toBe(hashOf('b/c/empty'));
        const dest = path.join(base, 'dest');
        const opts = { bundles, ...(cache ? { cacheDir: path.join(base, 'cache') } : {}) };
        await sync(root, dest, opts);
        expect(treeListing(dest)).toEqual(treeListing(root));
        for (const gone of ['b/logs', 'b/c/empty', 'a/empty/deeper']) {
          rmSync(path.join(dest, gone), { recursive: true });
          expect(existsSync(path.join(dest, gone))).toBe(false);
          await sync(root, dest, opts);
          expect(existsSync(path.join(dest, gone)), `${gone} made again`).toBe(true);
          expect(treeListing(dest)).toEqual(treeListing(root));
        }
      });
    }
  }
});
