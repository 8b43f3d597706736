/**
 * What a following share watches (ops/follow.ts): one watch per directory of a shared tree, not
 * per file (Node's recursive watch keeps a watcher and a Stats object for every file, which at a
 * hundred thousand files is the share's largest cost), and a change in a directory made after
 * the share started is noticed once the re-index that its creation caused has watched it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { ShareIndex } from '../src/core/index/mdex.js';
import { Follower, type ReindexEvent } from '../src/core/ops/follow.js';

class FakeShare extends EventEmitter {
  constructor(public index: ShareIndex) {
    super();
  }

  setIndex(index: ShareIndex): void {
    this.index = index;
  }
}

describe('Follower watches', () => {
  let root: string;
  beforeEach(() => {
    root = path.join(realpathSync(mkdtempSync(path.join(tmpdir(), 'lcsync-watch-'))), 'tree');
    for (let d = 0; d < 3; d++) {
      mkdirSync(path.join(root, `d${d}`), { recursive: true });
      for (let f = 0; f < 40; f++) writeFileSync(path.join(root, `d${d}`, `f${f}`), `file ${d}/${f}`);
    }
  });
  afterEach(() => rmSync(path.dirname(root), { recursive: true, force: true }));

  it('one watch per directory, not per file; a file in a directory made later is noticed', { timeout: 20_000 }, async () => {
    const build = () => ShareIndex.build([root]);
    const share = new FakeShare(await build());
    const events: ReindexEvent[] = [];
    const waiters: (() => void)[] = [];
    const follower = await Follower.start(share, {
      paths: [root],
      build,
      rescanSec: 0,
      debounceMs: 50,
      onReindex: (ev) => {
        events.push(ev);
        for (const w of waiters.splice(0)) w();
      },
    });
    const nextReindex = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no re-index ${n} (got ${events.length})`)), 8000);
        const check = () => (events.length >= n ? (clearTimeout(t), resolve()) : waiters.push(check));
        check();
      });
    try {
      // The tree and its three directories: 4 watches for 120 files.
      expect(follower.watching).toBe(4);
      mkdirSync(path.join(root, 'later'));
      await nextReindex(1);
      await follower.idle();
      expect(follower.watching).toBe(5);
      const before = share.index.roots[0]!.hash;
      writeFileSync(path.join(root, 'later', 'new'), 'new bytes');
      await nextReindex(2);
      await follower.idle();
      expect(events.at(-1)!.changed).toBe(true);
      expect(share.index.roots[0]!.hash.equals(before)).toBe(false);
      expect(share.index.records.some((r) => r.localPath === path.join(root, 'later', 'new'))).toBe(true);
      // A directory removed is no longer watched.
      rmSync(path.join(root, 'd2'), { recursive: true });
      await nextReindex(3);
      await follower.idle();
      expect(follower.watching).toBe(4);
    } finally {
      await follower.close();
    }
  });
});
