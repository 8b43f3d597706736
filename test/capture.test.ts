/**
 * Every UDP payload a C lcshare sent while a C lcsync fetched share.tar's
 * directory (vectors/captures/lcshare-udp.jsonl) must pass our datagram
 * decoder, decode with our FEC into objects whose BLAKE3 is their OID, and
 * arrive on the group our addressing gives the object's key. That our own index
 * of the extracted tarball serves the same objects (needs root):
 * test/capture.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { groupAddress } from '../src/core/wire/address.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../src/core/model/entry.js';
import { ObjectDecoder } from '../src/core/fec/fec.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { dirChildren, type NetTree } from '../src/core/wire/nettree.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { SHARE_HASH, byOid, captured, decodeAll, decodeObject, type DecodedObject } from './capture.js';

/** Entry hash of a tree object, computed from the object alone. */
function entryHashOf(t: NetTree): Buffer {
  switch (t.type) {
    case 'file':
      return fileEntryHash(t.name, t.size === 0 ? undefined : MerkleTree.fromNodes(t.size, t.payload).root, 0, t.meta);
    case 'symlink':
      return symlinkEntryHash(t.name, t.meta);
    case 'dir': {
      const slash = t.name.lastIndexOf('/');
      // The shared top directory (no `/` in its share path) hashes only its children.
      const top = slash < 0 ? undefined : { basename: t.name.slice(slash + 1), meta: t.meta };
      return dirEntryHash(top, dirChildren(t.payload));
    }
  }
}

describe('the C lcshare capture', () => {
  const objects = (): Map<string, DecodedObject> => decodeAll();

  it('is made of valid datagrams only', () => {
    expect(captured().length).toBe(346);
    expect(byOid().size).toBe(objects().size);
  });

  it('decodes every object to bytes whose BLAKE3 is its OID', () => {
    for (const o of objects().values()) expect(toHex(hash(o.bytes)), `${o.kind} ${o.tree?.name ?? ''}`).toBe(o.oid);
  });

  it('decodes every object again with source symbols lost, from the C sender\'s random repair ESIs', () => {
    let repairOnly = 0;
    for (const o of objects().values()) {
      const pkts = byOid().get(o.oid)!;
      const K = new ObjectDecoder(o.bytes.length).K;
      const repair = pkts.filter((p) => p.d.esi >= K);
      // Lose as many leading source symbols as the repair symbols can stand in for, keeping one spare.
      const lost = Math.min(K, repair.length - 1);
      expect(lost, `${o.oid} has repair symbols`).toBeGreaterThan(0);
      const kept = pkts.filter((p) => p.d.esi >= lost);
      const out = decodeObject(kept, o.bytes.length);
      expect(out?.equals(o.bytes), `${o.kind} ${o.oid}`).toBe(true);
      if (lost === K) repairOnly++;
    }
    // Every tree object and every one-symbol chunk came back from repair symbols alone.
    expect(repairOnly).toBeGreaterThanOrEqual(10);
  });

  it('holds the tree objects of the whole share', () => {
    const names = [...objects().values()].filter((o) => o.kind === 'tree').map((o) => `${o.tree!.name} (${o.tree!.type})`);
    console.log(`capture: ${objects().size} objects; tree objects: ${names.sort().join(', ')}`);
    expect(names.sort()).toEqual(
      [
        'share (dir)',
        'share/a.bin (file)',
        'share/link (symlink)',
        'share/sub (dir)',
        'share/sub/c.bin (file)',
        'share/sub/empty (file)',
        'share/sub/deeper (dir)',
        'share/sub/deeper/note.txt (file)',
      ].sort(),
    );
    const byName = new Map([...objects().values()].filter((o) => o.tree).map((o) => [o.tree!.name, o.tree!]));
    expect(byName.get('share/link')!.payload.toString()).toBe('a.bin');
    expect(byName.get('share/a.bin')!.size).toBe(1000);
    expect(byName.get('share/sub/c.bin')!.size).toBe(100000);
    expect(byName.get('share/sub/empty')!.size).toBe(0);
    expect(byName.get('share/sub/deeper/note.txt')!.size).toBe(13);
    // Chunks: one for a.bin, four for c.bin, one for note.txt.
    expect([...objects().values()].filter((o) => o.kind === 'chunk').length).toBe(6);
  });

  it('holds the share directory whose hash the C tool prints, linked to the rest by entry hashes', () => {
    const trees = new Map([...objects().values()].filter((o) => o.tree).map((o) => [o.tree!.name, o.tree!]));
    const share = trees.get('share')!;
    expect(toHex(entryHashOf(share))).toBe(SHARE_HASH);
    // Every directory lists exactly the entry hashes of the objects named below it.
    for (const dir of [...trees.values()].filter((t) => t.type === 'dir')) {
      const kids = [...trees.values()].filter((t) => t.name.startsWith(`${dir.name}/`) && !t.name.slice(dir.name.length + 1).includes('/'));
      expect(dirChildren(dir.payload).map(toHex).sort(), dir.name).toEqual(kids.map((k) => toHex(entryHashOf(k))).sort());
    }
  });

  it('sends every datagram on the group of its key: leaf hash, entry hash or alias', () => {
    for (const o of objects().values()) {
      expect(o.groups.size, `${o.oid} arrived on one group`).toBe(1);
      const [group] = [...o.groups];
      if (o.kind === 'chunk') {
        expect(group).toBe(groupAddress(Buffer.from(o.oid, 'hex')));
      } else {
        const t = o.tree!;
        expect([groupAddress(entryHashOf(t)), groupAddress(aliasHash(t.name))], t.name).toContain(group);
      }
    }
  });
});
