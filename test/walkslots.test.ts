/**
 * A sync of a tree keeps a bounded number of children in progress (walk.ts, the session's entry
 * slots): before, every child of every directory was started at once, each an async task waiting
 * for its entry (about 3 KiB a file: 300 MiB of a receiver's heap for 100,000 files). Counted
 * here as entry fetches in progress at once, on a tree of nested directories (a directory child
 * gives its slot back before its own children take theirs, so depth never waits on itself).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { groupAddress } from '../src/core/wire/address.js';
import { fileEntryHash } from '../src/core/model/entry.js';
import { shareDirHash } from '../src/core/wire/verify.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { encodeNetTree } from '../src/core/wire/nettree.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { SyncSession } from '../src/core/sync/sync.js';
import { FakeNet, sourceDatagrams as datagrams } from './fakenet.js';

const meta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };
const dirMeta: FileMeta = { ...meta, mode: 0o40755 };

function serveFile(net: FakeNet, name: string, data: Buffer): Buffer {
  const tree = MerkleTree.fromBuffer(data);
  const obj = encodeNetTree({ type: 'file', size: data.length, meta, name, payload: tree.nodes });
  net.serve(groupAddress(fileEntryHash(name, tree.root, 0, meta)), datagrams(obj, true));
  net.serve(groupAddress(tree.leaf(0)), datagrams(data, false));
  return fileEntryHash(name, tree.root, 0, meta);
}

function serveDir(net: FakeNet, name: string, children: Buffer[], top: boolean): Buffer {
  const obj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name, payload: Buffer.concat(children) });
  const key = shareDirHash(name, dirMeta, children, top);
  net.serve(groupAddress(key), datagrams(obj, true));
  return key;
}

describe('a sync of many small files', () => {
  it('has at most 1,024 children in progress at once, and completes a nested tree', { timeout: 60_000 }, async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'lcsync-slots-'));
    try {
      const net = new FakeNet();
      const files: [string, Buffer][] = [];
      // A chain of nested directories, each with a few files; the top has 2,500 files besides.
      let below: Buffer[] = [];
      for (let d = 6; d >= 1; d--) {
        const dir = `share${'/d'.repeat(d)}`;
        const kids = [...below];
        for (let f = 0; f < 3; f++) {
          const data = Buffer.from(`${dir}/f${f}`);
          files.push([`${dir}/f${f}`, data]);
          kids.push(serveFile(net, `${dir}/f${f}`, data));
        }
        below = [serveDir(net, dir, kids, false)];
      }
      const top: Buffer[] = [...below];
      for (let f = 0; f < 2500; f++) {
        const data = Buffer.from(`top file ${f}`);
        files.push([`share/t${f}`, data]);
        top.push(serveFile(net, `share/t${f}`, data));
      }
      const topKey = serveDir(net, 'share', top, true);
      const session = await SyncSession.open({
        channel: net,
        ifnames: ['fake0'],
        flags: { recursive: true, perms: false, owner: false, group: false, times: false },
        timeoutSec: 20,
        bundles: false,
      });
      let inProgress = 0;
      let most = 0;
      const fetchEntryIf = session.fetchEntryIf.bind(session);
      session.fetchEntryIf = async (key, want) => {
        most = Math.max(most, ++inProgress);
        try {
          return await fetchEntryIf(key, want);
        } finally {
          inProgress--;
        }
      };
      try {
        const entry = await session.fetchEntry(topKey);
        await session.syncEntry(entry, dest, new Set());
      } finally {
        await session.close();
      }
      expect(most).toBeGreaterThan(100);
      expect(most).toBeLessThanOrEqual(1024);
      for (const [name, data] of files) expect(readFileSync(path.join(dest, name.slice('share/'.length))).equals(data)).toBe(true);
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });
});
