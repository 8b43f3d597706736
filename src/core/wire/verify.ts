/**
 * Every check of an object that came off the network, before anything trusts it: that it is the
 * object its hash (or share path) names, that tree parts agree with their parents, that a file's
 * whole tree verifies, that names are safe to create, that a symlink target is a valid one; and
 * the rule both the index and the receiver hash directories by: a share's top directory is hashed
 * without its name. Pure functions over decoded objects (nettree.ts decodes them); the sync side
 * calls them, the index uses the same top-directory rule.
 */
import path from 'node:path';
import { LcsyncError } from '../base/errors.js';
import { displayName, nameFromBytes, nameToBytes } from '../base/names.js';
import { HASH_SIZE, hashPair, hashPairs, type Hash } from '../model/hash.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../model/entry.js';
import type { FileMeta } from '../model/meta.js';
import { MerkleTree } from '../model/tree.js';
import { decodeNetTreeHead, dirChildren, TREE_PART_SIZE, type DecodeLimits, type NetTreeHead } from './nettree.js';

/** Whether a share path names the top of a share (its first segment, no `/`). */
export function isShareTop(sharePath: string): boolean {
  return !sharePath.includes('/');
}

/**
 * Entry hash of a directory: a share's top directory (`top`) is hashed without its name and stat
 * (depth 0), so a copy of the shared directory under another name has the same root hash; every
 * other directory with its basename and stat.
 */
export function shareDirHash(sharePath: string, meta: FileMeta, children: readonly Hash[], top: boolean): Hash {
  return dirEntryHash(top ? undefined : { basename: path.posix.basename(sharePath), meta }, children);
}

/** The hashes an object can be named by, worked out once per object (see objectMatches). */
type ObjectNames = { limits: DecodeLimits; name: string; hashes: Hash[] } | { limits: DecodeLimits; error: unknown };
const namesOfObject = new WeakMap<Buffer, ObjectNames>();

/**
 * The entry hashes that name `obj` (a decoded object, or a file's first part): a file's or
 * symlink's one, a directory's two (as a child, and as a share's root). A receiver with many
 * requests in flight offers each decoded object to every one of them, so the hashes are
 * computed once per object Buffer, not once per request: with 128 tree requests in flight that
 * was most of the receiver's time.
 */
function objectNames(obj: Buffer, limits: DecodeLimits): { name: string; hashes: Hash[] } {
  let c = namesOfObject.get(obj);
  if (c === undefined || c.limits !== limits) {
    try {
      c = { limits, ...computeObjectNames(obj, limits) };
    } catch (error) {
      c = { limits, error };
    }
    namesOfObject.set(obj, c);
  }
  if ('error' in c) throw c.error;
  return c;
}

function computeObjectNames(obj: Buffer, limits: DecodeLimits): { name: string; hashes: Hash[] } {
  const head = decodeNetTreeHead(obj, limits);
  const name = head.name;
  if (head.type === 'file') {
    if (head.size === 0) return { name, hashes: obj.length === head.objectLength ? [fileEntryHash(head.name, undefined, 0, head.meta)] : [] };
    if (obj.length < head.payloadOffset + HASH_SIZE) return { name, hashes: [] };
    return { name, hashes: [fileEntryHash(head.name, fileRootOf(head, obj), 0, head.meta)] };
  }
  if (obj.length !== head.objectLength) return { name, hashes: [] };
  if (head.type === 'symlink') return { name, hashes: [symlinkEntryHash(head.name, head.meta)] };
  // A key names a directory either way: as a child (with its name) or as a share's root (without).
  const children = dirChildren(obj.subarray(head.payloadOffset));
  return { name, hashes: [shareDirHash(head.name, head.meta, children, false), shareDirHash(head.name, head.meta, children, true)] };
}

/** Check that a decoded object (or first part) is the one `key` names; `alias` names it by share path. */
export function objectMatches(obj: Buffer, key: Hash, alias: string | undefined, limits: DecodeLimits): boolean {
  const { name, hashes } = objectNames(obj, limits);
  if (alias !== undefined) return name === alias && aliasHash(name).equals(key);
  return hashes.some((h) => h.equals(key));
}

/** The entry hash of a verified object: what `lcsync index` prints for the same item. */
export function rootHashOf(head: NetTreeHead, obj: Buffer, tree: MerkleTree | undefined): Hash {
  if (head.type === 'file') return fileEntryHash(head.name, head.size === 0 ? undefined : tree!.root, 0, head.meta);
  if (head.type === 'symlink') return symlinkEntryHash(head.name, head.meta);
  return shareDirHash(head.name, head.meta, dirChildren(obj.subarray(head.payloadOffset)), isShareTop(head.name));
}

/** The root of a non-empty file's tree, as its first part carries it (named by the file's entry hash). */
export function fileRootOf(head: NetTreeHead, first: Buffer): Hash {
  return first.subarray(head.payloadOffset, head.payloadOffset + HASH_SIZE);
}

/** Bytes that tree part `z` of the file object `head` must have. */
export function treePartLength(head: NetTreeHead, z: number): number {
  return Math.min(TREE_PART_SIZE, head.objectLength - z * TREE_PART_SIZE);
}

/** Refuse a first tree part of the wrong length. */
export function checkFirstPart(head: NetTreeHead, first: Buffer): void {
  if (first.length !== treePartLength(head, 0)) {
    throw new LcsyncError('INTEGRITY', `tree part 0 of ${head.name} has ${first.length} bytes, expected ${treePartLength(head, 0)}`);
  }
}

/** Trees of at least this many bytes of nodes stay in the object they came in (verifiedTree). */
const SHARED_TREE_BYTES = 1 << 16;

/** The Merkle tree of a whole file object (all parts joined), checked against the root its entry hash covers. */
export function verifiedTree(head: NetTreeHead, obj: Buffer, root: Hash): MerkleTree {
  if (obj.length !== head.objectLength) {
    throw new LcsyncError('INTEGRITY', `tree object of ${head.name} should be ${head.objectLength} bytes, got ${obj.length}`);
  }
  // No decodeNetTree copy in between (a 5 GiB file has 10 MiB of nodes). A large tree is a view of
  // the object (held with the entry anyway) rather than a second copy; a small one is copied, so
  // that a tree kept after its entry (the receiver's tree cache) does not keep the object too.
  const payload = obj.subarray(head.payloadOffset);
  const tree = MerkleTree.fromNodes(head.size, payload, payload.length >= SHARED_TREE_BYTES);
  if (!tree.root.equals(root) || !tree.verify()) {
    throw new LcsyncError('INTEGRITY', `tree of ${head.name} does not verify`);
  }
  return tree;
}

/**
 * Whether `part`, appended to the object bytes known so far, keeps the tree
 * consistent: every sibling pair that ends inside the new bytes hashes to its
 * parent (in heap order a parent always comes before its children, so it is
 * known). The pair that straddles into the next part is checked with that part,
 * and the whole tree is verified once complete.
 */
export function partAgrees(prefix: Buffer, part: Buffer, payloadOffset: number): boolean {
  return partAgreesWith(new Joined([prefix]), part, payloadOffset);
}

/** partAgrees over parts kept apart: joining them for every new part would copy a big tree quadratically. */
export function partAgreesWith(known: Joined, part: Buffer, payloadOffset: number): boolean {
  const firstNew = Math.floor(Math.max(0, known.length - payloadOffset) / HASH_SIZE);
  known.push(part);
  try {
    const complete = Math.floor(Math.max(0, known.length - payloadOffset) / HASH_SIZE);
    // Left children are odd; start with the pair that holds the first new node. The pairs c, c + 1
    // from there on lie side by side, and so do their parents (c - 1) / 2: one run of pair hashes,
    // compared at once (hashed a pair at a time, a 64 MiB file's tree made 2 MiB of garbage).
    const first = firstNew % 2 === 1 ? firstNew : Math.max(1, firstNew - 1);
    if (first + 1 >= complete) return complete - firstNew < 2;
    const pairs = Math.floor((complete - first) / 2);
    const children = known.slice(payloadOffset + first * HASH_SIZE, 2 * pairs * HASH_SIZE);
    const parents = known.slice(payloadOffset + ((first - 1) / 2) * HASH_SIZE, pairs * HASH_SIZE);
    const hashed = pairScratch(pairs * HASH_SIZE);
    hashPairs(children, 0, pairs, hashed, 0);
    return parents.compare(hashed, 0, pairs * HASH_SIZE) === 0;
  } finally {
    known.pop();
  }
}

let scratch = Buffer.alloc(0);
/** A buffer of at least `bytes` for pair hashes, reused (its contents are only read right after they are written). */
function pairScratch(bytes: number): Buffer {
  if (scratch.length < bytes) scratch = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * scratch.length));
  return scratch;
}

/**
 * Whether `part`, placed at byte `at` of the object, could be the genuine one there, judged by the
 * sibling pairs wholly inside it whose parent is wholly inside `known` (bytes 0 .. known.length of
 * the object, checked already): each must hash to that parent. Weaker than partAgreesWith (pairs
 * whose parent is not known yet, and the pairs across its ends, are left out), so it can be asked
 * before the part just before this one is settled; junk, and other places' parts, fail it.
 */
export function partFitsAt(known: Joined, part: Buffer, at: number, payloadOffset: number): boolean {
  // Node indices wholly inside the part.
  const first = Math.max(0, Math.ceil((at - payloadOffset) / HASH_SIZE));
  const end = Math.floor((at + part.length - payloadOffset) / HASH_SIZE);
  const node = (i: number) => part.subarray(payloadOffset + i * HASH_SIZE - at, payloadOffset + (i + 1) * HASH_SIZE - at);
  for (let c = first % 2 === 1 ? first : first + 1; c + 1 < end; c += 2) {
    const p = (c - 1) / 2;
    if (payloadOffset + (p + 1) * HASH_SIZE > known.length) break; // parents only grow from here on
    if (!hashPair(node(c), node(c + 1)).equals(known.slice(payloadOffset + p * HASH_SIZE, HASH_SIZE))) return false;
  }
  return true;
}

/** Buffers read as one, without joining them. */
export class Joined {
  private readonly bufs: Buffer[] = [];
  private readonly starts: number[] = [];
  private total = 0;

  constructor(bufs: readonly Buffer[] = []) {
    for (const b of bufs) this.push(b);
  }

  get length(): number {
    return this.total;
  }

  buffers(): readonly Buffer[] {
    return this.bufs;
  }

  push(b: Buffer): void {
    this.bufs.push(b);
    this.starts.push(this.total);
    this.total += b.length;
  }

  pop(): void {
    const b = this.bufs.pop();
    this.starts.pop();
    if (b) this.total -= b.length;
  }

  /** Bytes [off, off + len), cut short at the end; a copy only when they span two buffers. */
  slice(off: number, len: number): Buffer {
    const end = Math.min(this.total, off + len);
    if (off >= end) return Buffer.alloc(0);
    // The last buffer whose start is <= off.
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    const pieces: Buffer[] = [];
    for (let i = lo, at = off; at < end; i++) {
      const b = this.bufs[i]!;
      const from = at - this.starts[i]!;
      const take = Math.min(b.length - from, end - at);
      pieces.push(b.subarray(from, from + take));
      at += take;
    }
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }
}

/** NAME_MAX of Linux and most other systems: a longer segment cannot be created anyway. */
const MAX_SEGMENT_BYTES = 255;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const SLASH = 0x2f;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/**
 * Why `seg` (one segment of a share path from the network, string form of names.ts) must not
 * be created, or undefined when it is safe. Checked on its bytes: any byte but `/` and NUL is
 * a valid name on Linux, UTF-8 or not.
 */
export function segmentProblem(seg: string): string | undefined {
  // Plain ASCII (nearly every name): its bytes are its characters, so no Buffer per segment (a
  // receiver checks every child's path several times). Anything else is checked as bytes.
  if (ASCII.test(seg)) {
    if (seg.length === 0) return 'empty path segment';
    if (seg === '.' || seg === '..') return `"${seg}" segment`;
    if (seg.includes('\0')) return 'NUL byte';
    if (seg.includes('/')) return '"/" inside a segment';
    if (seg.length > MAX_SEGMENT_BYTES) return `segment of ${seg.length} bytes, longer than ${MAX_SEGMENT_BYTES}`;
    return undefined;
  }
  const b = nameToBytes(seg);
  if (b.length === 0) return 'empty path segment';
  if (b.equals(DOT) || b.equals(DOTDOT)) return `"${seg}" segment`;
  if (b.includes(0)) return 'NUL byte';
  if (b.includes(SLASH)) return '"/" inside a segment';
  if (b.length > MAX_SEGMENT_BYTES) return `segment of ${b.length} bytes, longer than ${MAX_SEGMENT_BYTES}`;
  return undefined;
}

/** Why a whole share path is malformed, or undefined. */
export function pathProblem(name: string): string | undefined {
  if (name.startsWith('/')) return 'absolute path';
  for (const seg of name.split('/')) {
    const p = segmentProblem(seg);
    if (p) return p;
  }
  return undefined;
}

/** The name the top object of a sync is created under (the last segment of its share path), or an INTEGRITY error. */
export function topName(top: NetTreeHead): string {
  const base = path.posix.basename(top.name);
  const problem = segmentProblem(base);
  if (problem) throw new LcsyncError('INTEGRITY', `refusing unsafe name "${displayName(top.name)}": ${problem}`);
  return base;
}

/**
 * The name under which the child object `child` of directory object `parent`
 * goes into the parent's destination, or an INTEGRITY error saying why it may
 * not. A file or symlink must be named `<parent>/<one segment>`: its entry hash
 * covers that path, so a mismatch is a lie. A directory's entry hash covers
 * only its basename, so a share that has two equal directories (same basename,
 * stat and contents: empty ones that one tar extraction made, say) under
 * different parents, at any depth, serves one object named after either; only
 * its basename counts, and the rest of its name is not authenticated anyway.
 */
export function childName(parent: NetTreeHead, child: NetTreeHead): string {
  const refuse = (why: string) =>
    new LcsyncError('INTEGRITY', `refusing unsafe name "${displayName(child.name)}" in directory "${displayName(parent.name)}": ${why}`);
  const problem = pathProblem(child.name);
  if (problem) throw refuse(problem);
  const base = path.posix.basename(child.name);
  if (child.type === 'dir') return base;
  if (!child.name.startsWith(parent.name + '/')) throw refuse('not inside that directory');
  if (child.name.slice(parent.name.length + 1) !== base) throw refuse('not a direct child');
  return base;
}

/** The target of a symlink object, its exact bytes (any but NUL, as the C tool sends them), or an INTEGRITY error. */
export function symlinkTarget(head: NetTreeHead, obj: Buffer): string {
  const targetBytes = obj.subarray(head.payloadOffset);
  if (targetBytes.includes(0)) throw new LcsyncError('INTEGRITY', `refusing symlink "${displayName(head.name)}": its target holds a NUL byte`);
  return nameFromBytes(targetBytes);
}
