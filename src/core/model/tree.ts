/**
 * BLAKE3 Merkle trees over 32 KiB chunks, in heap order, as the C lcsync lays
 * them out (docs/protocol.md#hashes-and-trees): node 0 is the root, the children of n are
 * 2n+1 and 2n+2, leaf i is node base-1+i, padding leaves are 32 zero bytes and
 * an empty file has a one-node tree of zeros.
 *
 * Tree logic only: no sockets. Building from a file reads it in bounded blocks.
 */
import { open, type FileHandle } from '../base/bytefs.js';
import { readFull } from '../base/readfull.js';
import { HASH_SIZE, hashLeaves, hashPairs, isZero, type Hash } from './hash.js';
import { LcsyncError } from '../base/errors.js';
import { HashTable } from './hashtable.js';

export const CHUNK_SIZE = 32768;
/** Read size when hashing files: many chunks per read, bounded memory. */
const READ_BLOCK = 1 << 20;
/** Trees up to this many bytes of nodes (files up to 2 chunks) are allocated from the buffer pool. */
const SMALL_TREE = 3 * 32;

export function chunkCount(size: number): number {
  return Math.max(Math.ceil(size / CHUNK_SIZE), 1);
}

export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export function nodeCount(size: number): number {
  return 2 * nextPow2(chunkCount(size)) - 1;
}

/** Byte length of chunk i of a file of `size` bytes. */
export function chunkLength(size: number, i: number): number {
  return Math.max(0, Math.min(CHUNK_SIZE, size - i * CHUNK_SIZE));
}

export class MerkleTree {
  /** Length in bytes of the data the tree covers. */
  readonly size: number;
  readonly chunks: number;
  readonly base: number;
  /** nodes x 32 bytes, heap order. */
  readonly nodes: Buffer;

  private constructor(size: number, nodes: Buffer) {
    this.size = size;
    this.chunks = chunkCount(size);
    this.base = nextPow2(this.chunks);
    this.nodes = nodes;
  }

  get nodeCount(): number {
    return 2 * this.base - 1;
  }

  node(n: number): Buffer {
    return this.nodes.subarray(n * HASH_SIZE, (n + 1) * HASH_SIZE);
  }

  get root(): Buffer {
    return this.node(0);
  }

  leaf(i: number): Buffer {
    return this.node(this.base - 1 + i);
  }

  /** Whether leaf `i` starts with the first `len` bytes of `key` (compared in place: no view of the leaf is made). */
  leafStartsWith(i: number, key: Uint8Array, len: number): boolean {
    const at = (this.base - 1 + i) * HASH_SIZE;
    return len <= HASH_SIZE && len <= key.length && this.nodes.compare(key, 0, len, at, at + len) === 0;
  }

  /** An empty tree of the right shape whose leaves the caller fills, then calls seal(). */
  static blank(size: number): MerkleTree {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad tree size ${size}`);
    const bytes = nodeCount(size) * HASH_SIZE;
    // Small trees (most files) come from Node's buffer pool: an ArrayBuffer of their own per
    // file costs more to make and collect than hashing the file's leaf.
    return new MerkleTree(size, bytes <= SMALL_TREE ? Buffer.allocUnsafe(bytes).fill(0) : Buffer.alloc(bytes));
  }

  /**
   * Wrap node hashes received from elsewhere; call verify() before trusting them. The nodes are
   * copied, unless `shared`: then the tree is a view of them, and the caller must never change
   * them (a large file's tree object, whose payload would otherwise be held twice).
   */
  static fromNodes(size: number, nodes: Uint8Array, shared = false): MerkleTree {
    const expect = nodeCount(size) * HASH_SIZE;
    if (nodes.length !== expect) {
      throw new LcsyncError('INTEGRITY', `tree of a ${size}-byte file needs ${expect} bytes of nodes, got ${nodes.length}`);
    }
    return new MerkleTree(size, shared ? Buffer.from(nodes.buffer, nodes.byteOffset, nodes.length) : Buffer.from(nodes));
  }

  static fromBuffer(data: Uint8Array): MerkleTree {
    const t = MerkleTree.blank(data.length);
    if (data.length === 0) return t;
    // Leaves are contiguous in heap order: hash them straight into place.
    hashLeaves(data, CHUNK_SIZE, t.nodes, (t.base - 1) * HASH_SIZE);
    t.seal();
    return t;
  }

  /** Hash a file without holding more than READ_BLOCK bytes of it in memory. */
  static async fromFile(path: string, size?: number): Promise<MerkleTree> {
    const fh = await open(path, 'r');
    try {
      return await MerkleTree.fromHandle(fh, size ?? (await fh.stat()).size);
    } finally {
      await fh.close();
    }
  }

  /**
   * Reads are double-buffered: the next block is read (on libuv's thread pool)
   * while this one is hashed, so a file costs about the larger of the two.
   */
  static async fromHandle(fh: FileHandle, size: number, onBytes?: (n: number) => void): Promise<MerkleTree> {
    const t = MerkleTree.blank(size);
    if (size === 0) return t;
    const block = Math.min(READ_BLOCK, size);
    const bufs = [Buffer.allocUnsafe(block), size > block ? Buffer.allocUnsafe(block) : Buffer.alloc(0)];
    const start = (i: number, pos: number) => {
      const p = readFull(fh, bufs[i & 1]!, Math.min(block, size - pos), pos);
      // Awaited below; this only keeps a failure from being unhandled if hashing throws first.
      p.catch(() => {});
      return p;
    };
    let next = start(0, 0);
    for (let i = 0, pos = 0; pos < size; i++) {
      const want = Math.min(block, size - pos);
      const got = await next;
      if (got < want) {
        // The file shrank under us: the tree must describe `size` bytes, so this is an error.
        throw new LcsyncError('IO', `file changed while hashing (expected ${size} bytes, ended at ${pos + got})`);
      }
      if (pos + got < size) next = start(i + 1, pos + got);
      hashLeaves(bufs[i & 1]!.subarray(0, got), CHUNK_SIZE, t.nodes, (t.base - 1 + pos / CHUNK_SIZE) * HASH_SIZE);
      pos += got;
      onBytes?.(got);
    }
    t.seal();
    return t;
  }

  setLeaf(i: number, h: Uint8Array): void {
    this.nodes.set(h.subarray(0, HASH_SIZE), (this.base - 1 + i) * HASH_SIZE);
  }

  /**
   * Compute every parent from the leaves. An empty file keeps its zero root.
   * Level by level: the `width` nodes of a level start at node width-1 and
   * their children are the 2*width nodes right after them, pair by pair.
   */
  seal(): void {
    if (this.size === 0) return;
    for (let width = this.base >> 1; width >= 1; width >>= 1) {
      hashPairs(this.nodes, (2 * width - 1) * HASH_SIZE, width, this.nodes, (width - 1) * HASH_SIZE);
    }
  }

  /**
   * Check that every parent is the hash of its children and every padding leaf
   * is zero. Stricter than the C mtree_verify, which does not look at padding.
   */
  verify(): boolean {
    if (this.size === 0) return isZero(this.node(0));
    for (let i = this.chunks; i < this.base; i++) if (!isZero(this.leaf(i))) return false;
    const level = Buffer.allocUnsafe((this.base >> 1) * HASH_SIZE);
    for (let width = this.base >> 1; width >= 1; width >>= 1) {
      const bytes = width * HASH_SIZE;
      hashPairs(this.nodes, (2 * width - 1) * HASH_SIZE, width, level, 0);
      if (!level.subarray(0, bytes).equals(this.nodes.subarray((width - 1) * HASH_SIZE, (2 * width - 1) * HASH_SIZE))) return false;
    }
    return true;
  }

  /**
   * Chunk indices of this tree whose bytes `local` does not already hold at the
   * same index. Files that grew or shrank compare leaf by leaf: a short last
   * chunk hashes differently from a full one, so it is always fetched.
   */
  diff(local: MerkleTree | undefined): number[] {
    const out: number[] = [];
    if (this.size === 0) return out;
    if (local && local.size === this.size && local.root.equals(this.root)) return out;
    for (let i = 0; i < this.chunks; i++) {
      if (!local || i >= local.chunks || local.size === 0 || !local.leaf(i).equals(this.leaf(i))) out.push(i);
    }
    return out;
  }

  equals(other: MerkleTree): boolean {
    return this.size === other.size && this.nodes.equals(other.nodes);
  }

  /** `index: hex` lines, root first, as `lcsync --hex` of the C tool prints them. */
  hexDump(): string {
    const lines: string[] = [];
    for (let n = 0; n < this.nodeCount; n++) {
      lines.push(`${String(n).padStart(8, '0')}: ${this.node(n).toString('hex')}`);
    }
    return lines.join('\n') + '\n';
  }
}

/** Leaf hash -> chunk index in `tree` (the first of equal ones), for reusing chunks a local file already has elsewhere. */
export interface LeafLookup {
  /** The first chunk of the tree whose leaf is `leaf`, or undefined. */
  get(leaf: Uint8Array): number | undefined;
}

/** A LeafLookup over `tree`'s own nodes (HashTable: a few bytes a chunk, no string per leaf). */
export function leafIndex(tree: MerkleTree): LeafLookup {
  const leafAt = (tree.base - 1) * HASH_SIZE;
  const table = new HashTable(() => tree.nodes, (i) => leafAt + i * HASH_SIZE, tree.size === 0 ? 0 : tree.chunks);
  // Of equal leaves the last entered stays: enter them backwards so the first one is found.
  if (tree.size > 0) for (let i = tree.chunks - 1; i >= 0; i--) table.set(i);
  return {
    get(leaf) {
      const i = table.get(leaf);
      return i < 0 ? undefined : i;
    },
  };
}

export type { Hash };
