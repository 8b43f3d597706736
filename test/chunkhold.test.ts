/**
 * Every fetched chunk's bytes are handed back (ChunkSource.done) once the file that took them is
 * written, on the path for new small files (written in one go) as on the usual one: a fetch
 * still counted as held keeps its bytes reachable, which at a hundred thousand small files is
 * the whole tree in memory, and never lets the receiver reuse the buffer.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { groupAddress } from '../src/core/wire/address.js';
import { dirEntryHash, fileEntryHash } from '../src/core/model/entry.js';
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
  const key = fileEntryHash(name, tree.root, 0, meta);
  net.serve(groupAddress(key), datagrams(obj, true));
  for (let i = 0; i < tree.chunks; i++) {
    net.serve(groupAddress(tree.leaf(i)), datagrams(data.subarray(i * 32768, Math.min(data.length, (i + 1) * 32768)), false));
  }
  return key;
}

describe('a directory sync of small files', () => {
  it('writes every file and holds no fetched chunk afterwards (small files written in one go included)', { timeout: 20_000 }, async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'lcsync-hold-'));
    try {
      const net = new FakeNet();
      const small = randomBytes(40_000);
      const files: [string, Buffer][] = [
        ['share/a', small],
        // The same bytes again: its chunks come from a's fetch (in flight or written), not the wire.
        ['share/b', Buffer.from(small)],
        ['share/c', randomBytes(5_000)],
        // Over the small-file limit: the usual path.
        ['share/d', randomBytes(100_000)],
      ];
      const children = files.map(([name, data]) => serveFile(net, name, data));
      const dirObj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name: 'share', payload: Buffer.concat(children) });
      const top = dirEntryHash(undefined, children);
      net.serve(groupAddress(top), datagrams(dirObj, true));
      const session = await SyncSession.open({
        channel: net,
        ifnames: ['fake0'],
        flags: { recursive: true, perms: false, owner: false, group: false, times: false },
        timeoutSec: 10,
      });
      try {
        const entry = await session.fetchEntry(top);
        await session.syncEntry(entry, dest, new Set());
        expect(session.chunks.holding).toBe(0);
      } finally {
        await session.close();
      }
      for (const [name, data] of files) expect(readFileSync(path.join(dest, path.basename(name))).equals(data)).toBe(true);
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });
});
