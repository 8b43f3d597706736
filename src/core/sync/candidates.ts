/**
 * What the local tree cache (localtrees.ts) may save of each file a run looked at or wrote: its
 * tree, the identity lstat must show at save time, whether the run changed it, and its record in
 * the cache file read at open when it is that record unchanged.
 *
 * Packed in columns, one slot a file, not an object graph per file: a first sync of 100,000 small
 * files kept about 600 bytes of objects a file here until its end (a candidate, an identity, three
 * BigInts, a tree and its Buffer), which the collector marked again at every major collection.
 * Trees of one chunk (every file up to 32 KiB) keep their one node in a column; larger ones stay
 * objects. A Candidate is made again when asked for, and lives only as long as its caller needs it.
 */
import { HASH_SIZE } from '../model/hash.js';
import { MerkleTree } from '../model/tree.js';
import type { LocalIdentity } from './destfile.js';

export interface Candidate {
  tree: MerkleTree;
  /** What lstat must show at save time (ctime is compared only when the run did not touch the file). */
  expect: LocalIdentity;
  touched: boolean;
  /** The entry's bytes in the file read at open, when it is that entry unchanged: saved as they are. */
  raw?: Buffer;
}

const INITIAL = 256;
const TOUCHED = 1;
const HAS_RAW = 2;
const ONE_NODE = 4;

export class CandidateTable {
  private readonly slots = new Map<string, number>();
  private used = 0;
  private sizes = new Float64Array(INITIAL);
  private mtimes = new BigInt64Array(INITIAL);
  private ctimes = new BigInt64Array(INITIAL);
  private inos = new BigUint64Array(INITIAL);
  private devs = new BigUint64Array(INITIAL);
  private flags = new Uint8Array(INITIAL);
  /** A raw record's place in `records`: start and length. */
  private rawAt = new Int32Array(2 * INITIAL);
  /** The one node of a one-chunk tree. */
  private nodes = Buffer.alloc(INITIAL * HASH_SIZE);
  private readonly trees = new Map<number, MerkleTree>();

  /** `records`: the cache file read at open, which every raw record given to set() lies in. */
  constructor(private readonly records: Buffer) {}

  get size(): number {
    return this.slots.size;
  }

  keys(): IterableIterator<string> {
    return this.slots.keys();
  }

  /** Each file's key and slot (at() makes its candidate). */
  slotEntries(): IterableIterator<[string, number]> {
    return this.slots.entries();
  }

  get(k: string): Candidate | undefined {
    const slot = this.slots.get(k);
    return slot === undefined ? undefined : this.at(slot);
  }

  /** Whether the file in `slot` was touched by the run, without making its candidate. */
  touched(slot: number): boolean {
    return (this.flags[slot]! & TOUCHED) !== 0;
  }

  /** The expected size of the file in `slot`. */
  sizeAt(slot: number): number {
    return this.sizes[slot]!;
  }

  at(slot: number): Candidate {
    const f = this.flags[slot]!;
    const size = this.sizes[slot]!;
    // A copy of the node, not a view: a tree given out (the local file's, file.ts) must not change
    // when the run then writes the file and sets its slot again.
    const tree = f & ONE_NODE ? MerkleTree.fromNodes(size, this.nodes.subarray(slot * HASH_SIZE, (slot + 1) * HASH_SIZE)) : this.trees.get(slot)!;
    const expect: LocalIdentity = { size, mtimeNs: this.mtimes[slot]!, ctimeNs: this.ctimes[slot]!, ino: this.inos[slot]!, dev: this.devs[slot]! };
    const c: Candidate = { tree, expect, touched: (f & TOUCHED) !== 0 };
    if (f & HAS_RAW) c.raw = this.records.subarray(this.rawAt[2 * slot]!, this.rawAt[2 * slot]! + this.rawAt[2 * slot + 1]!);
    return c;
  }

  set(k: string, c: Candidate): void {
    let slot = this.slots.get(k);
    if (slot === undefined) {
      if (this.used === this.sizes.length) this.grow();
      slot = this.used++;
      this.slots.set(k, slot);
    }
    const e = c.expect;
    this.sizes[slot] = e.size;
    this.mtimes[slot] = e.mtimeNs;
    this.ctimes[slot] = e.ctimeNs;
    this.inos[slot] = e.ino;
    this.devs[slot] = e.dev;
    let f = c.touched ? TOUCHED : 0;
    const raw = c.raw;
    const rec = this.records;
    if (raw && raw.buffer === rec.buffer && raw.byteOffset >= rec.byteOffset && raw.byteOffset + raw.length <= rec.byteOffset + rec.length) {
      f |= HAS_RAW;
      this.rawAt[2 * slot] = raw.byteOffset - rec.byteOffset;
      this.rawAt[2 * slot + 1] = raw.length;
    }
    if (c.tree.nodes.length === HASH_SIZE && c.tree.size === e.size) {
      f |= ONE_NODE;
      c.tree.nodes.copy(this.nodes, slot * HASH_SIZE);
      this.trees.delete(slot);
    } else this.trees.set(slot, c.tree);
    this.flags[slot] = f;
  }

  private grow(): void {
    const n = 2 * this.sizes.length;
    const more = <T extends Float64Array | BigInt64Array | BigUint64Array | Uint8Array | Int32Array>(a: T, make: (n: number) => T, per = 1): T => {
      const b = make(n * per);
      b.set(a as never);
      return b;
    };
    this.sizes = more(this.sizes, (m) => new Float64Array(m));
    this.mtimes = more(this.mtimes, (m) => new BigInt64Array(m));
    this.ctimes = more(this.ctimes, (m) => new BigInt64Array(m));
    this.inos = more(this.inos, (m) => new BigUint64Array(m));
    this.devs = more(this.devs, (m) => new BigUint64Array(m));
    this.flags = more(this.flags, (m) => new Uint8Array(m));
    this.rawAt = more(this.rawAt, (m) => new Int32Array(m), 2);
    const nodes = Buffer.alloc(n * HASH_SIZE);
    this.nodes.copy(nodes);
    this.nodes = nodes;
  }
}
