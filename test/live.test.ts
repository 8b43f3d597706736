/**
 * A live mirror (sync/live.ts) against a real Share over the in-memory link (test/memlink.ts), no
 * root needed: the mirror syncs, then each re-index the share is given (setIndex) is announced on
 * the name's watch group and synced pinned to the new root, --exec runs per sync that changed
 * something, the share counts the mirror as a follower, and between syncs the only group the
 * mirror holds is the watch group. An abort ends it normally.
 */
import { expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { groupAddress } from '../src/core/wire/address.js';
import { watchKey } from '../src/core/wire/announce.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { Share } from '../src/core/share/share.js';
import { followRemote, type FollowCycle } from '../src/core/sync/live.js';
import type { HookResult } from '../src/core/sync/hook.js';
import type { DatagramSource } from '../src/core/net/datagram.js';
import { MEM_IF, MemoryLink } from './memlink.js';
import { treeListing } from './e2e.js';
import { useTempDir } from './tmpdir.js';
import { objectCipher } from '../src/core/wire/crypto.js';
import { until as untilEvery } from './until.js';

const tmp = useTempDir('lcsync-live-');

/** Several receivers on one link (a sync session and the mirror's watch): each gets every datagram while open. */
function views(link: MemoryLink): () => DatagramSource {
  const taps = new Set<(b: Buffer) => void>();
  link.source.onDatagram((b) => taps.forEach((t) => t(b)));
  return () => {
    let mine: ((b: Buffer) => void) | undefined;
    return {
      join: (g) => link.source.join(g),
      leave: (g) => link.source.leave(g),
      rejoin: (g) => link.source.rejoin(g),
      onDatagram: (cb) => {
        mine = cb;
        taps.add(cb);
      },
      close: async () => {
        if (mine) taps.delete(mine);
        // A socket's close leaves its groups; the watch group is the mirror's other socket's.
        for (const g of [...link.joined]) if (g !== groupAddress(watchKey('tree'))) link.source.leave(g);
      },
    };
  }
}

const until = (ok: () => boolean, ms: number): Promise<void> => untilEvery(ok, ms, 20);

for (const encrypted of [false, true]) it(`syncs, then each announced root; the hook runs per change; idle, only the watch group is joined${encrypted ? ' (encrypted share: sealed announces)' : ''}`, async () => {
  const cipher = encrypted ? objectCipher(randomBytes(32)) : undefined;
  const base = await tmp.fresh(encrypted ? 'enc' : 'plain');
  const root = path.join(base, 'tree');
  mkdirSync(root);
  writeFileSync(path.join(root, 'a.bin'), randomBytes(50_000));
  writeFileSync(path.join(root, 'b.txt'), 'b\n');
  const dest = path.join(base, 'mirror');
  const link = new MemoryLink();
  const view = views(link);
  const share = await Share.start(await ShareIndex.build([root]), { ifnames: [MEM_IF], listeners: link.listeners, openSink: async () => link.sink, rateBps: 0, cipher });
  const ctl = new AbortController();
  const cycles: FollowCycle[] = [];
  const hooks: HookResult[] = [];
  const same = () => {
    try {
      return treeListing(dest).join('\n') === treeListing(root).join('\n');
    } catch {
      return false;
    }
  };
  try {
    const done = followRemote(
      'tree/',
      dest,
      {
        ifnames: [MEM_IF],
        flags: { recursive: true, perms: true, owner: false, group: false, times: true },
        channel: view(),
        delete: true,
        exec: 'cat > /dev/null',
        onHook: (h) => hooks.push(h),
        signal: ctl.signal,
        cipher,
      },
      { watchChannel: async () => view(), onCycle: (c) => cycles.push(c) },
    );
    await until(() => cycles.length === 1 && same(), 20_000);
    expect(cycles[0]!.reason).toBe('start');
    expect(hooks).toHaveLength(1);
    // Idle: the watch group and nothing else, so no stream of the share keeps trickling.
    await until(() => link.joined.size === 1, 5000);
    expect([...link.joined]).toEqual([groupAddress(watchKey('tree'))]);
    await until(() => share.status().followers.length === 1, 5000);
    expect(share.status().followers).toEqual([{ shareName: 'tree', ifname: MEM_IF, hosts: 1 }]);

    for (const change of [() => appendFileSync(path.join(root, 'a.bin'), randomBytes(40_000)), () => rmSync(path.join(root, 'b.txt'))]) {
      const before = cycles.length;
      change();
      share.setIndex(await ShareIndex.build([root]));
      await until(() => cycles.length === before + 1 && same(), 20_000);
      expect(cycles.at(-1)!.reason).toBe('announce');
      expect(cycles.at(-1)!.summary.rootHash).toBe(share.index.roots[0]!.hash.toString('hex'));
    }
    expect(hooks.map((h) => h.paths)).toEqual([3, 1, 1]);
    expect(share.status().announcesSent).toBeGreaterThanOrEqual(3);
    // The same index again: no announce of a new root, no sync.
    share.setIndex(await ShareIndex.build([root]));
    await new Promise((r) => setTimeout(r, 1500));
    expect(cycles).toHaveLength(3);
    ctl.abort();
    const result = await done;
    expect(result).toMatchObject({ cycles: 3, failures: 0, rootHash: share.index.roots[0]!.hash.toString('hex') });
  } finally {
    ctl.abort();
    await share.stop();
  }
}, 60_000);

it('refuses a root hash and --expect-root', async () => {
  const opts = { ifnames: [MEM_IF], flags: { recursive: true, perms: false, owner: false, group: false, times: false } };
  await expect(followRemote('a'.repeat(64), '/nonexistent', opts)).rejects.toMatchObject({ code: 'USAGE' });
  await expect(followRemote('tree/', '/nonexistent', { ...opts, expectRoot: Buffer.alloc(32) })).rejects.toMatchObject({ code: 'USAGE' });
});
