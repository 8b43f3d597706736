/**
 * Every UDP payload a C lcshare sent while a C lcsync fetched share.tar's
 * directory (vectors/captures/lcshare-udp.jsonl) must pass our datagram
 * decoder, decode with our FEC into objects whose BLAKE3 is their OID, and
 * arrive on the group our addressing gives the object's key. As root, the
 * objects must also equal what our own index of the extracted tarball serves.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupAddress, parseIPv6, prefixOfGroup } from '../src/core/wire/address.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../src/core/model/entry.js';
import { ObjectDecoder } from '../src/core/fec/fec.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { decodeNetTree, dirChildren, type NetTree } from '../src/core/wire/nettree.js';
import { decodeDatagram, type Datagram } from '../src/core/wire/packet.js';
import { MerkleTree, chunkLength } from '../src/core/model/tree.js';
import { describeUnless } from './skip.js';
import { once, readVectorJsonl, shareTarSkip, vectorPath } from './vectors.js';

/** From test/vectors/README.md: what `lcsync --hex share` of the C tool prints for the extracted tarball. */
const SHARE_HASH = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';
/** atime seconds and nanoseconds in the net_tree header. */
const ATIME_START = 24;
const ATIME_END = 40;

interface Captured {
  dst: string;
  d: Datagram;
}

interface DecodedObject {
  oid: string;
  kind: 'tree' | 'chunk';
  bytes: Buffer;
  /** Groups its datagrams arrived on. */
  groups: Set<string>;
  tree?: NetTree;
}

/** The captured datagrams, decoded (read on first use, by the tests that need them). */
const captured = once((): Captured[] =>
  readVectorJsonl<{ dst: string; dport: number; payload: string }>('captures', 'lcshare-udp.jsonl').map((j) => {
    expect(j.dport).toBe(4242);
    const d = decodeDatagram(Buffer.from(j.payload, 'hex'));
    if (!d) throw new Error(`capture line does not decode: ${j.payload.slice(0, 120)}`);
    return { dst: j.dst, d };
  }),
);

/** OID hex -> its datagrams, in capture order. */
const byOid = once((): Map<string, Captured[]> => {
  const m = new Map<string, Captured[]>();
  for (const c of captured()) {
    const k = toHex(c.d.oid);
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(c);
  }
  return m;
});

function decodeObject(pkts: Captured[], length: number): Buffer | undefined {
  const dec = new ObjectDecoder(length);
  try {
    for (const p of pkts) {
      const out = dec.add(p.d.esi, p.d.symbol);
      if (out) return out;
    }
    return undefined;
  } finally {
    dec.free();
  }
}

/** Tree objects carry their length in the OTI; chunk lengths come from the file trees. */
const decodeAll = once((): Map<string, DecodedObject> => {
  const objects = new Map<string, DecodedObject>();
  for (const [oid, pkts] of byOid()) {
    const F = pkts[0]!.d.transferLength;
    if (F === undefined) continue;
    // Every datagram of one object must agree on its length.
    for (const p of pkts) expect(p.d.transferLength).toBe(F);
    const bytes = decodeObject(pkts, F);
    expect(bytes, `tree object ${oid}`).toBeDefined();
    objects.set(oid, { oid, kind: 'tree', bytes: bytes!, groups: new Set(pkts.map((p) => p.dst)), tree: decodeNetTree(bytes!) });
  }
  // Leaf hash -> chunk length, from every file tree received.
  const chunkLen = new Map<string, number>();
  for (const o of objects.values()) {
    if (o.tree?.type !== 'file' || o.tree.size === 0) continue;
    const t = MerkleTree.fromNodes(o.tree.size, o.tree.payload);
    expect(t.verify(), `tree of ${o.tree.name}`).toBe(true);
    for (let i = 0; i < t.chunks; i++) chunkLen.set(toHex(t.leaf(i)), chunkLength(t.size, i));
  }
  for (const [oid, pkts] of byOid()) {
    if (pkts[0]!.d.transferLength !== undefined) continue;
    for (const p of pkts) expect(p.d.transferLength).toBeUndefined();
    const len = chunkLen.get(oid);
    expect(len, `chunk ${oid} is a leaf of one of the captured file trees`).toBeDefined();
    const bytes = decodeObject(pkts, len!);
    expect(bytes, `chunk ${oid}`).toBeDefined();
    objects.set(oid, { oid, kind: 'chunk', bytes: bytes!, groups: new Set(pkts.map((p) => p.dst)) });
  }
  return objects;
});

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

describeUnless(shareTarSkip, 'the capture against our index of share.tar (needs root)', () => {
  let dir: string;
  let index: ShareIndex;
  const objects = (): Map<string, DecodedObject> => decodeAll();

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-capture-'));
    execFileSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', dir]);
    index = await ShareIndex.build([path.join(dir, 'share')]);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('builds the index the C tool built', () => {
    expect(toHex(index.roots[0]!.hash)).toBe(SHARE_HASH);
  });

  it('serves, on each captured group, exactly the captured object', async () => {
    for (const o of objects().values()) {
      for (const group of o.groups) {
        const prefix = prefixOfGroup(parseIPv6(group));
        expect(prefix, group).toBeDefined();
        const obj = index.getByPrefix(prefix!);
        expect(obj, `index has an object for ${group}`).toBeDefined();
        expect(obj!.kind).toBe(o.kind);
        let served: Buffer;
        if (obj!.kind !== 'chunk') {
          served = obj!.bytes;
        } else {
          served = Buffer.alloc(obj!.length);
          const fh = await open(obj!.localPath, 'r');
          try {
            const { bytesRead } = await fh.read(served, 0, obj!.length, obj!.offset);
            expect(bytesRead).toBe(obj!.length);
          } finally {
            await fh.close();
          }
        }
        if (obj!.kind === 'tree') {
          // The atime in the header (bytes 24..39) is when each side extracted the
          // tarball; it is not hashed into any key. Everything else must match.
          expect(served.length).toBe(o.bytes.length);
          const mask = (b: Buffer) => Buffer.concat([b.subarray(0, ATIME_START), b.subarray(ATIME_END)]);
          expect(mask(served).equals(mask(o.bytes)), `tree on ${group}`).toBe(true);
        } else {
          expect(served.equals(o.bytes), `chunk on ${group}`).toBe(true);
        }
        // A chunk's key is its leaf hash, which is also its OID.
        if (obj!.kind === 'chunk') expect(toHex(obj!.hash)).toBe(o.oid);
      }
    }
  });
});
