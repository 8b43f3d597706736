/**
 * The C lcshare capture (vectors/captures/lcshare-udp.jsonl) decoded into objects, for test/capture.test.ts and
 * test/capture.root.test.ts: read and decoded on first use, once per file.
 */
import { expect } from 'vitest';
import { ObjectDecoder } from '../src/core/fec/fec.js';
import { toHex } from '../src/core/model/hash.js';
import { MerkleTree, chunkLength } from '../src/core/model/tree.js';
import { decodeNetTree, type NetTree } from '../src/core/wire/nettree.js';
import { decodeDatagram, type Datagram } from '../src/core/wire/packet.js';
import { once, readVectorJsonl } from './vectors.js';

/** From test/vectors/README.md: what `lcsync --hex share` of the C tool prints for the extracted tarball. */
export const SHARE_HASH = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';
/** atime seconds and nanoseconds in the net_tree header. */
export const ATIME_START = 24;
export const ATIME_END = 40;

export interface Captured {
  dst: string;
  d: Datagram;
}

export interface DecodedObject {
  oid: string;
  kind: 'tree' | 'chunk';
  bytes: Buffer;
  /** Groups its datagrams arrived on. */
  groups: Set<string>;
  tree?: NetTree;
}

/** The captured datagrams, decoded (read on first use, by the tests that need them). */
export const captured = once((): Captured[] =>
  readVectorJsonl<{ dst: string; dport: number; payload: string }>('captures', 'lcshare-udp.jsonl').map((j) => {
    expect(j.dport).toBe(4242);
    const d = decodeDatagram(Buffer.from(j.payload, 'hex'));
    if (!d) throw new Error(`capture line does not decode: ${j.payload.slice(0, 120)}`);
    return { dst: j.dst, d };
  }),
);

/** OID hex -> its datagrams, in capture order. */
export const byOid = once((): Map<string, Captured[]> => {
  const m = new Map<string, Captured[]>();
  for (const c of captured()) {
    const k = toHex(c.d.oid);
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(c);
  }
  return m;
});

export function decodeObject(pkts: Captured[], length: number): Buffer | undefined {
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
export const decodeAll = once((): Map<string, DecodedObject> => {
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
