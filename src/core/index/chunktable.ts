/**
 * The chunks of a share's files, findable by hash or by the 14-byte prefix a group address carries,
 * in memory proportional to a few bytes per chunk.
 *
 * A chunk's hash is already in its file's Merkle tree (a leaf), and everything else about it (file,
 * offset, length) follows from its file and number. So instead of one object and two map entries
 * with hex-string keys per chunk (about 800 bytes: 100 MiB for a 4 GiB file), the table numbers the
 * chunks of all files consecutively and keeps an open-addressing hash table of those numbers in a
 * Uint32Array, probed from the first four bytes of the hash (BLAKE3 output: uniform). The chunk
 * object a lookup returns is made on the spot from the file's record.
 */
import { CHUNK_SIZE, chunkLength } from '../model/tree.js';
import type { ChunkObject, IndexRecord } from './mdex.js';

/** Bytes of a hash a group address carries (address.ts GROUP_PREFIX_BYTES; kept here to stay in this layer). */
const PREFIX_BYTES = 14;
const INITIAL_SLOTS = 1024;

export class ChunkTable {
  /** Files with chunks, and the number of each one's first chunk (ascending). */
  private readonly files: IndexRecord[] = [];
  private readonly firstChunk: number[] = [];
  private numbered = 0;
  /** Chunk number + 1 per slot; 0: empty. At most half full. */
  private slots = new Uint32Array(INITIAL_SLOTS);
  private distinct = 0;

  /** Distinct chunks (identical chunks anywhere in the share are one). */
  get size(): number {
    return this.distinct;
  }

  /** Add every chunk of file `rec` (which has a tree and a size > 0). Of identical chunks the last added wins, as in the C mdex. */
  add(rec: IndexRecord): void {
    const tree = rec.tree!;
    const first = this.numbered;
    this.files.push(rec);
    this.firstChunk.push(first);
    this.numbered += tree.chunks;
    for (let i = 0; i < tree.chunks; i++) {
      if ((this.distinct + 1) * 2 > this.slots.length) this.grow();
      this.insert(first + i, tree.leaf(i));
    }
  }

  /** The chunk whose hash is `hash`. */
  get(hash: Uint8Array): ChunkObject | undefined {
    const n = this.find(hash, hash.length);
    return n === undefined ? undefined : this.object(n);
  }

  /** The chunk whose hash starts with the 14 bytes of `prefix`. */
  getByPrefix(prefix: Uint8Array): ChunkObject | undefined {
    if (prefix.length < PREFIX_BYTES) return undefined;
    const n = this.find(prefix, PREFIX_BYTES);
    return n === undefined ? undefined : this.object(n);
  }

  /** The hash of every distinct chunk. */
  *hashes(): Iterable<Buffer> {
    for (const s of this.slots) if (s !== 0) yield Buffer.from(this.hashOf(s - 1));
  }

  private insert(n: number, hash: Buffer): void {
    const mask = this.slots.length - 1;
    for (let i = hash.readUInt32LE(0) & mask; ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) {
        this.slots[i] = n + 1;
        this.distinct++;
        return;
      }
      if (this.hashOf(s - 1).equals(hash)) {
        this.slots[i] = n + 1;
        return;
      }
    }
  }

  /** The number of the chunk whose hash starts with the first `len` bytes of `key`. */
  private find(key: Uint8Array, len: number): number | undefined {
    if (this.distinct === 0 || key.length < 4) return undefined;
    const mask = this.slots.length - 1;
    const start = (key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)) >>> 0;
    for (let i = start & mask; ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) return undefined;
      // Compared in the tree itself: a probe made a view of a leaf for every join a share heard.
      const n = s - 1;
      const f = this.fileOf(n);
      if (this.files[f]!.tree!.leafStartsWith(n - this.firstChunk[f]!, key, len)) return n;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.distinct = 0;
    for (const s of old) if (s !== 0) this.insert(s - 1, this.hashOf(s - 1));
  }

  /** Which file chunk `n` belongs to (binary search over firstChunk). */
  private fileOf(n: number): number {
    let lo = 0;
    let hi = this.firstChunk.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firstChunk[mid]! <= n) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private hashOf(n: number): Buffer {
    const f = this.fileOf(n);
    return this.files[f]!.tree!.leaf(n - this.firstChunk[f]!);
  }

  private object(n: number): ChunkObject {
    const f = this.fileOf(n);
    const rec = this.files[f]!;
    const i = n - this.firstChunk[f]!;
    return { kind: 'chunk', hash: rec.tree!.leaf(i), localPath: rec.localPath, offset: i * CHUNK_SIZE, length: chunkLength(rec.size, i), record: rec };
  }
}
