/**
 * Property test without a lab: files built from a two-chunk alphabet (long runs of equal chunks,
 * equal files, equal subdirectories) shared by an in-memory network that serves exactly what a
 * share would on each joined group. Every sync must finish, come out identical, and fetch every
 * distinct chunk and tree object exactly once. Before the fix for equal tree parts (one OID under
 * several groups) a second equal part was never delivered and the sync timed out.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseIPv6, prefixOfGroup } from '../src/core/wire/address.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { encodeDatagram } from '../src/core/wire/packet.js';
import { syncRemote } from '../src/core/sync/sync.js';
import { ChunkSource } from '../src/core/sync/chunks.js';
import { MerkleTree, chunkLength } from '../src/core/model/tree.js';
import { decodeNetTree, encodeNetTree } from '../src/core/wire/nettree.js';
import { OutputFile } from '../src/core/sync/writer.js';
import type { DatagramSource } from '../src/core/net/datagram.js';
import { rng } from './rng.js';

const CHUNK = 32768;

function bytesFrom(next: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
  return b;
}

/**
 * A share in memory: a join of a group that names an object delivers the object's source
 * symbols to the receiver (a rejoin delivers them again), as an lcsync share does for a new
 * listener; nothing arrives on a group not joined.
 */
class MemoryNet implements DatagramSource {
  private readonly listeners: ((b: Buffer) => void)[] = [];
  private readonly joined = new Set<string>();
  /** Objects served per OID: equal content under several groups is served on each. */
  readonly served = new Map<string, number>();

  constructor(private readonly index: ShareIndex) {}

  onDatagram(cb: (b: Buffer) => void): void {
    this.listeners.push(cb);
  }

  join(group: string): void {
    this.joined.add(group);
    const obj = this.index.getByPrefix(prefixOfGroup(parseIPv6(group))!);
    if (obj) setImmediate(() => this.send(group, obj));
  }

  leave(group: string): void {
    this.joined.delete(group);
  }

  rejoin(group: string): void {
    this.leave(group);
    this.join(group);
  }

  async close(): Promise<void> {
    this.joined.clear();
  }

  private send(group: string, obj: IndexObject): void {
    if (obj.kind === 'bundle') throw new Error('this fake share serves an index without bundles');
    const data = obj.kind === 'chunk' ? readChunk(obj.localPath, obj.offset, obj.length) : obj.bytes;
    const oid = obj.kind === 'tree' ? hash(data) : obj.hash;
    this.served.set(toHex(oid), (this.served.get(toHex(oid)) ?? 0) + 1);
    const enc = new ObjectEncoder(data);
    try {
      for (let esi = 0; esi < enc.K && this.joined.has(group); esi++) {
        const d = encodeDatagram({ oid, transferLength: obj.kind === 'tree' ? data.length : undefined, esi, symbol: enc.sourceSymbol(esi) });
        for (const cb of this.listeners) cb(d);
      }
    } finally {
      enc.free();
    }
  }
}

function readChunk(p: string, offset: number, length: number): Buffer {
  const fd = openSync(p, 'r');
  try {
    const b = Buffer.alloc(length);
    if (readSync(fd, b, 0, length, offset) !== length) throw new Error(`short read of ${p}`);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** One file: a word over {0, 1} as runs, each letter a whole chunk, and a short tail of letter 0's bytes. */
interface FileSpec {
  runs: { letter: 0 | 1; count: number }[];
  tail: number;
}

/** Write `spec` with the two chunks `alphabet`; an all-zero letter stays a hole. */
function writeSpec(p: string, spec: FileSpec, alphabet: [Buffer, Buffer]): void {
  const fd = openSync(p, 'w');
  try {
    let i = 0;
    for (const r of spec.runs) {
      const c = alphabet[r.letter];
      const zero = c.every((x) => x === 0);
      for (let k = 0; k < r.count; k++, i++) if (!zero) writeSync(fd, c, 0, CHUNK, i * CHUNK);
    }
    ftruncateSync(fd, i * CHUNK + spec.tail);
    if (spec.tail > 0) writeSync(fd, alphabet[0], 0, spec.tail, i * CHUNK);
  } finally {
    closeSync(fd);
  }
}

/** Distinct chunks a receiver must fetch (all-zero chunks it knows) and distinct tree objects of the share. */
function mustTravel(idx: ShareIndex): { chunks: number; trees: number } {
  const chunks = new Set<string>();
  const trees = new Set<string>();
  for (const r of idx.records) {
    if (r.type === 'file' && r.size > 0) {
      for (let i = 0; i < r.tree!.chunks; i++) {
        const len = Math.min(CHUNK, r.size - i * CHUNK);
        const leaf = r.tree!.leaf(i);
        if (!leaf.equals(hash(Buffer.alloc(len)))) chunks.add(toHex(leaf));
      }
    }
    for (const key of r.partHashes ?? [r.hash]) {
      const o = idx.get(key);
      if (o?.kind === 'tree') trees.add(toHex(hash(o.bytes)));
    }
  }
  return { chunks: chunks.size, trees: trees.size };
}

const flags = { recursive: true, perms: false, owner: false, group: false, times: false };

describe('equal content in one file, one tree and across files (in-memory share)', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-repprop-'));
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  // 513+ chunks make a tree of more than one 32 KiB part; runs make parts repeat at several levels.
  const run = fc.record({ letter: fc.constantFrom<0 | 1>(0, 1), count: fc.integer({ min: 1, max: 450 }) });
  const file = fc.record({ runs: fc.array(run, { minLength: 1, maxLength: 4 }), tail: fc.integer({ min: 0, max: 3 * 1024 }) });
  const share = fc.record({
    files: fc.array(file, { minLength: 1, maxLength: 2 }),
    /** A copy of the first file next to it, and a copy of the whole set in a second subdirectory. */
    twinFile: fc.boolean(),
    twinDir: fc.boolean(),
    /** Letter 1 is all zeros (a sparse image) or random bytes. */
    zeroLetter: fc.boolean(),
  });

  it('syncs every share byte for byte, fetching each distinct chunk and tree object once', async () => {
    let n = 0;
    const random = rng(18);
    await fc.assert(
      fc.asyncProperty(share, async (s) => {
        const dir = path.join(work, `case${n++}`);
        const src = path.join(dir, 'share');
        const alphabet: [Buffer, Buffer] = [bytesFrom(random, CHUNK), s.zeroLetter ? Buffer.alloc(CHUNK) : bytesFrom(random, CHUNK)];
        const subs = s.twinDir ? ['one', 'two'] : ['one'];
        const names: string[] = [];
        for (const sub of subs) {
          mkdirSync(path.join(src, sub), { recursive: true });
          s.files.forEach((f, i) => {
            writeSpec(path.join(src, sub, `f${i}.bin`), f, alphabet);
            names.push(`${sub}/f${i}.bin`);
          });
          if (s.twinFile) {
            writeSpec(path.join(src, sub, 'twin.bin'), s.files[0]!, alphabet);
            names.push(`${sub}/twin.bin`);
          }
        }
        try {
          const idx = await ShareIndex.build([src]);
          const net = new MemoryNet(idx);
          const dest = path.join(dir, 'out');
          const summary = await syncRemote(toHex(idx.roots[0]!.hash), dest, {
            ifnames: [],
            flags,
            timeoutSec: 5,
            stallMs: 200,
            channel: net,
          });
          for (const name of names) {
            expect(statSync(path.join(dest, name)).size, name).toBe(statSync(path.join(src, name)).size);
            expect(readFileSync(path.join(dest, name)).equals(readFileSync(path.join(src, name))), name).toBe(true);
          }
          const want = mustTravel(idx);
          expect(summary.chunksFetched).toBe(want.chunks);
          expect(summary.treeObjectsReceived).toBe(want.trees);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 10, seed: 18, endOnFailure: true },
    );
  }, 240_000);

  it('a session of one file does not remember where its chunks went; one of a directory does', async () => {
    const dir = path.join(work, 'onefile');
    const random = rng(19);
    const a = bytesFrom(random, CHUNK);
    const b = bytesFrom(random, CHUNK);
    // Equal chunks inside the one file travel once without homes (ChunkPlaces groups them).
    const data = Buffer.concat([a, b, a, a, b, bytesFrom(random, 1000)]);
    mkdirSync(path.join(dir, 'tree'), { recursive: true });
    writeFileSync(path.join(dir, 'tree', 'x.bin'), data);
    writeFileSync(path.join(dir, 'tree', 'y.bin'), data);
    const oneFile = vi.spyOn(ChunkSource.prototype, 'oneFile');
    try {
      for (const [src, recursive] of [[path.join(dir, 'tree', 'x.bin'), false], [path.join(dir, 'tree'), true]] as const) {
        oneFile.mockClear();
        const idx = await ShareIndex.build([src]);
        const net = new MemoryNet(idx);
        const dest = path.join(dir, recursive ? 'outdir' : 'out.bin');
        const summary = await syncRemote(toHex(idx.roots[0]!.hash), dest, { ifnames: [], flags: { ...flags, recursive }, timeoutSec: 5, stallMs: 200, channel: net });
        // a, b and the tail: once each, in the directory too (y's chunks are read back from x).
        expect(summary.chunksFetched).toBe(3);
        expect(oneFile).toHaveBeenCalledTimes(recursive ? 0 : 1);
        for (const f of recursive ? ['x.bin', 'y.bin'] : ['']) expect(readFileSync(path.join(dest, f)).equals(data)).toBe(true);
      }
      // The chunk source's own rule: with oneFile() a stored chunk's place is not kept.
      const fetchChunk = vi.fn(async (_leaf: Buffer, length: number) => Buffer.alloc(length, 7));
      const source = new ChunkSource({ fetchChunk, release: () => {} } as unknown as ConstructorParameters<typeof ChunkSource>[0], { chunksFetched: 0 });
      const home = path.join(dir, 'home.bin');
      writeFileSync(home, a);
      const leaf = hash(a);
      source.stored(leaf, { path: home }, 0);
      expect((await source.get(leaf, CHUNK)).fetched).toBe(false);
      source.oneFile();
      const other = hash(b);
      writeFileSync(home, b);
      source.stored(other, { path: home }, 0);
      expect((await source.get(other, CHUNK)).fetched).toBe(true);
      expect(fetchChunk).toHaveBeenCalledTimes(1);
    } finally {
      oneFile.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('files above 4 GiB', () => {
  const G4 = 2 ** 32;
  const size = 5 * 2 ** 30 + 12345;

  it('the tree and its wire object carry sizes and chunk positions past 2^32', () => {
    const tree = MerkleTree.blank(size);
    expect(tree.chunks).toBe(Math.ceil(size / CHUNK));
    const zero = hash(Buffer.alloc(CHUNK));
    for (let i = 0; i < tree.chunks - 1; i++) tree.setLeaf(i, zero);
    tree.setLeaf(tree.chunks - 1, hash(Buffer.alloc(chunkLength(size, tree.chunks - 1))));
    // The chunk just past 4 GiB differs: its leaf, and only its path to the root, change.
    const marked = Buffer.alloc(CHUNK);
    marked.write('after-4GiB', 0);
    tree.setLeaf(G4 / CHUNK, hash(marked));
    tree.seal();
    expect(tree.verify()).toBe(true);
    expect(chunkLength(size, tree.chunks - 1)).toBe(12345);
    const meta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1n, mtimeNsec: 2n, atimeSec: 3n, atimeNsec: 4n };
    const obj = encodeNetTree({ type: 'file', size, meta, name: 'huge.bin', payload: tree.nodes });
    const back = decodeNetTree(obj);
    expect(back.size).toBe(size);
    const again = MerkleTree.fromNodes(back.size, back.payload);
    expect(again.root.equals(tree.root)).toBe(true);
    expect(again.leaf(G4 / CHUNK).equals(hash(marked))).toBe(true);
    expect(again.diff(undefined).length).toBe(tree.chunks);
  });

  it('the writer puts bytes past 2^32 where they belong and leaves the rest of a new file as holes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lcsync-rep4g-'));
    try {
      const dest = path.join(dir, 'huge.bin');
      const out = await OutputFile.open(dest, size);
      expect(out.fresh).toBe(true);
      await out.write(G4 - 4, Buffer.from('across4G'));
      await out.write(size - 5, Buffer.from('end!!'));
      await out.commit();
      const st = statSync(dest);
      expect(st.size).toBe(size);
      expect(st.blocks * 512).toBeLessThan(1 << 20);
      const fd = openSync(dest, 'r');
      try {
        const b = Buffer.alloc(8);
        readSync(fd, b, 0, 8, G4 - 4);
        expect(b.toString()).toBe('across4G');
        readSync(fd, b, 0, 5, size - 5);
        expect(b.subarray(0, 5).toString()).toBe('end!!');
      } finally {
        closeSync(fd);
      }
      // Replacing an existing file seeds the temporary copy with it: not fresh, zeros must be written.
      const small = path.join(dir, 'small.bin');
      writeFileSync(small, 'old');
      const over = await OutputFile.open(small, 100);
      expect(over.fresh).toBe(false);
      await over.abort();
      const inplace = await OutputFile.open(small, 100, { inplace: true });
      expect(inplace.fresh).toBe(false);
      await inplace.abort();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
