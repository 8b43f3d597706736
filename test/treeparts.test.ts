/**
 * A large file's tree parts travel together: the receiver joins the groups of the parts after the one
 * it is accepting (session.ts, TREE_PARTS_AHEAD), so a 64 MiB file's five parts cost one round trip
 * instead of five, and what arrives early waits, kept, for its turn (receiver.ts, holdTree). Each part
 * is still accepted only once its nodes agree with the parts before it (hostile.test.ts has forged
 * parts against the same code).
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { groupAddress } from '../src/core/wire/address.js';
import { hash } from '../src/core/model/hash.js';
import { fileEntryHash } from '../src/core/model/entry.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { encodeNetTree, splitParts } from '../src/core/wire/nettree.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { SyncSession } from '../src/core/sync/sync.js';
import { FakeNet, sourceDatagrams } from './fakenet.js';

const fileMeta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };

/** A file of `chunks` random leaves: its net_tree object cut into parts, and each part's group. */
function bigFile(chunks: number) {
  const size = chunks * 32768;
  const tree = MerkleTree.blank(size);
  for (let i = 0; i < tree.chunks; i++) randomBytes(32).copy(tree.leaf(i));
  tree.seal();
  const name = 'share/big.bin';
  const obj = encodeNetTree({ type: 'file', size, meta: fileMeta, name, payload: tree.nodes });
  const parts = splitParts(obj).map((p) => Buffer.from(p));
  const keys = parts.map((_, z) => fileEntryHash(name, tree.root, z, fileMeta));
  return { tree, obj, parts, keys, groups: keys.map((k) => groupAddress(k)) };
}

/** A FakeNet that remembers which groups were joined when each group's first datagram went out. */
class WatchedNet extends FakeNet {
  readonly joinedAtFirst = new Map<string, Set<string>>();
  private readonly groupOf = new Map<Buffer, string>();

  serveObject(group: string, datagrams: Buffer[]): void {
    for (const d of datagrams) this.groupOf.set(d, group);
    this.serve(group, datagrams);
  }

  override emit(b: Buffer): void {
    const g = this.groupOf.get(b);
    if (g !== undefined && !this.joinedAtFirst.has(g)) this.joinedAtFirst.set(g, new Set(this.joined));
    super.emit(b);
  }
}

describe('tree parts of a large file', () => {
  it('are joined together: the later parts groups are joined before the first of them arrives', async () => {
    // 2100 chunks: 9 parts (0 and 8 more, as many as are joined ahead).
    const f = bigFile(2100);
    expect(f.parts.length).toBe(9);
    const net = new WatchedNet();
    for (const [z, part] of f.parts.entries()) net.serveObject(f.groups[z]!, sourceDatagrams(part, true));
    const session = await SyncSession.open({
      channel: net,
      ifnames: ['fake0'],
      flags: { recursive: false, perms: false, owner: false, group: false, times: false },
      timeoutSec: 5,
    });
    try {
      const entry = await session.fetchEntry(f.keys[0]!);
      expect(entry.obj.equals(f.obj)).toBe(true);
      expect(entry.tree!.root.equals(f.tree.root)).toBe(true);
      // When part 1 first came, the groups of parts 1-8 were all joined (one after another, only part 1's).
      const atFirst = net.joinedAtFirst.get(f.groups[1]!)!;
      expect(f.groups.slice(1).filter((g) => atFirst.has(g))).toEqual(f.groups.slice(1));
      // Each part's group was joined once: nothing waited for a rejoin.
      for (const g of f.groups) expect(net.joinLog.filter((j) => j === g)).toHaveLength(1);
      // And everything joined was left.
      expect([...net.joined].filter((g) => f.groups.includes(g))).toEqual([]);
    } finally {
      await session.close();
    }
  });

  it('a held part that completes in the same batch as the part being fetched is kept for its fetch', async () => {
    const f = bigFile(1100); // 5 parts
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 60_000, firstSymbolMs: 60_000 });
    try {
      const release = rx.holdTree(f.keys[2]!);
      const other = rx.holdTree(f.keys[2]!);
      expect(net.joined.has(f.groups[2]!)).toBe(true);
      const one = rx.fetchTree(f.keys[1]!, (o) => o.equals(f.parts[1]!));
      // Part 1's datagrams, then part 2's, in one go (one recvmmsg batch): part 1 completes first,
      // and with no request waiting the rest used to be dropped as wanted by nobody.
      for (const d of [...sourceDatagrams(f.parts[1]!, true), ...sourceDatagrams(f.parts[2]!, true)]) net.emit(d);
      expect((await one).equals(f.parts[1]!)).toBe(true);
      // Asked for now, part 2 is answered from what was kept, without a datagram more.
      const two = await Promise.race([rx.fetchTree(f.keys[2]!, (o) => o.equals(f.parts[2]!)), new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000))]);
      expect(two?.equals(f.parts[2]!)).toBe(true);
      expect(hash(two!).equals(hash(f.parts[2]!))).toBe(true);
      release();
      release(); // a release counts once: the other hold keeps the group
      expect(net.joined.has(f.groups[2]!)).toBe(true);
      other();
      expect(net.joined.has(f.groups[2]!)).toBe(false);
    } finally {
      rx.close();
    }
  });
});
