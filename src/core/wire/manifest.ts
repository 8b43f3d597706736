/**
 * The signed manifest (an lcsync extension, published only with `share --sign`): what the C wire
 * format leaves out of every hash, so that `sync --trust` can check it too. Entry hashes cover a
 * symlink's name and stat but not its target, and a share's top directory is hashed without its
 * stat (verify.ts shareDirHash); both are listed here, and the root's signature object carries
 * BLAKE3 of this object (signature.ts, flag 0x01), so the key holder vouches for them.
 *
 * The manifest object (integers big-endian):
 *
 *   off   size  field
 *    0     6    magic    "LCMAN1" (ASCII)
 *    6     1    version  1
 *    7     1    flags    0x01: the root is a directory and its stat follows; no other bit is defined
 *    8    32    root     the root hash this manifest belongs to
 *   40    42    topmeta  (flag 0x01 only) bytes 8..49 of the top directory's net_tree header as
 *                        the share sends it: mtime s, mtime ns, atime s, atime ns, uid, gid, mode
 *    .     4    count    u32, number of symlinks
 *   then count entries, in strictly increasing byte order of their paths:
 *          32   hash     the symlink's entry hash (model/entry.ts symlinkEntryHash)
 *           2   pathlen  u16, then the share path (bytes of names.ts, as in net_tree)
 *           2   tgtlen   u16, then the target (its exact bytes, no NUL)
 *
 * Nothing may follow the last entry. Every symlink of the share is listed, the root itself when it
 * is one. The object travels like the signature: an ordinary lcsync object (OID = BLAKE3 of it,
 * which is the digest the signature carries) on the group groupAddress(manifestKey(root)),
 *
 *   manifestKey(root) = BLAKE3("lcsync-manifest" || root)   (15 ASCII bytes, then 32)
 *
 * a group no C peer uses.
 */
import { LcsyncError } from '../base/errors.js';
import { nameFromBytes, nameToBytes } from '../base/names.js';
import { HASH_SIZE, hashConcat, type Hash } from '../model/hash.js';
import { NET_TREE_HEADER } from './nettree.js';

export const MANIFEST_MAGIC = Buffer.from('LCMAN1', 'ascii');
export const MANIFEST_VERSION = 1;
const FLAG_TOP_META = 0x01;
/** Stat bytes of a net_tree header that the manifest repeats: [8, 50). */
export const TOP_META_START = 8;
export const TOP_META_SIZE = 42;
const HEAD_SIZE = MANIFEST_MAGIC.length + 2 + HASH_SIZE; // 40
/** Largest manifest object accepted (the limit of any lcsync object, packet.ts MAX_OBJECT). */
export const MAX_MANIFEST = 10 * 2 ** 20;
const GROUP_TAG = Buffer.from('lcsync-manifest', 'ascii');

export interface ManifestLink {
  hash: Hash;
  /** Share path (string form of names.ts). */
  path: string;
  /** Target (string form of names.ts). */
  target: string;
}

export interface Manifest {
  root: Hash;
  /** The top directory's stat bytes (net_tree header bytes 8..49); absent when the root is not a directory. */
  topMeta?: Buffer;
  /** Symlinks by share path. */
  links: Map<string, ManifestLink>;
}

/** The hash whose group carries the manifest object of `root`. */
export function manifestKey(root: Uint8Array): Hash {
  if (root.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `root hash must be ${HASH_SIZE} bytes, got ${root.length}`);
  return hashConcat([GROUP_TAG, root]);
}

/** The stat bytes of a net_tree header that a manifest's topmeta repeats. */
export function headerMeta(netTree: Uint8Array): Buffer {
  if (netTree.length < NET_TREE_HEADER) throw new LcsyncError('INTEGRITY', 'net_tree header too short');
  return Buffer.from(netTree.subarray(TOP_META_START, TOP_META_START + TOP_META_SIZE));
}

function comparePaths(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

/** Build the manifest object of `root`; `links` in any order (sorted here). */
export function encodeManifest(m: { root: Uint8Array; topMeta?: Uint8Array; links: readonly ManifestLink[] }): Buffer {
  if (m.root.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `root hash must be ${HASH_SIZE} bytes`);
  if (m.topMeta !== undefined && m.topMeta.length !== TOP_META_SIZE) throw new LcsyncError('INTERNAL', `top stat must be ${TOP_META_SIZE} bytes`);
  const links = m.links
    .map((l) => ({ hash: l.hash, path: nameToBytes(l.path), target: nameToBytes(l.target) }))
    .sort((a, b) => comparePaths(a.path, b.path));
  const parts: Buffer[] = [];
  const head = Buffer.alloc(HEAD_SIZE);
  MANIFEST_MAGIC.copy(head, 0);
  head[6] = MANIFEST_VERSION;
  head[7] = m.topMeta ? FLAG_TOP_META : 0;
  head.set(m.root, 8);
  parts.push(head);
  if (m.topMeta) parts.push(Buffer.from(m.topMeta));
  const count = Buffer.alloc(4);
  count.writeUInt32BE(links.length, 0);
  parts.push(count);
  for (const [i, l] of links.entries()) {
    if (i > 0 && comparePaths(links[i - 1]!.path, l.path) === 0) throw new LcsyncError('INTERNAL', `symlink ${l.path.toString()} listed twice`);
    if (l.path.length > 0xffff || l.target.length > 0xffff) throw new LcsyncError('USAGE', `symlink path or target too long to sign: ${l.path.toString()}`);
    const e = Buffer.alloc(HASH_SIZE + 2);
    e.set(l.hash, 0);
    e.writeUInt16BE(l.path.length, HASH_SIZE);
    const t = Buffer.alloc(2);
    t.writeUInt16BE(l.target.length, 0);
    parts.push(e, l.path, t, l.target);
  }
  const out = Buffer.concat(parts);
  if (out.length > MAX_MANIFEST) throw new LcsyncError('USAGE', `manifest of ${out.length} bytes is larger than ${MAX_MANIFEST} (too many symlinks to sign)`);
  return out;
}

function malformed(why: string): LcsyncError {
  return new LcsyncError('INTEGRITY', `malformed manifest: ${why}`);
}

/** Parse a manifest object, checking every length and the order of its entries; throws only INTEGRITY. */
export function decodeManifest(buf: Uint8Array): Manifest {
  if (buf.length < HEAD_SIZE + 4) throw malformed(`${buf.length} bytes, at least ${HEAD_SIZE + 4} needed`);
  if (buf.length > MAX_MANIFEST) throw malformed(`${buf.length} bytes, at most ${MAX_MANIFEST} allowed`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, MANIFEST_MAGIC.length).equals(MANIFEST_MAGIC)) throw malformed('bad magic');
  if (b[6] !== MANIFEST_VERSION) throw malformed(`unsupported version ${b[6]}`);
  const flags = b[7]!;
  if ((flags & ~FLAG_TOP_META) !== 0) throw malformed(`unknown flags 0x${flags.toString(16).padStart(2, '0')}`);
  const root = Buffer.from(b.subarray(8, 8 + HASH_SIZE));
  let off = HEAD_SIZE;
  const need = (n: number, what: string) => {
    if (off + n > b.length) throw malformed(`${what} runs past the end`);
  };
  let topMeta: Buffer | undefined;
  if (flags & FLAG_TOP_META) {
    need(TOP_META_SIZE, 'top stat');
    topMeta = Buffer.from(b.subarray(off, off + TOP_META_SIZE));
    off += TOP_META_SIZE;
  }
  need(4, 'count');
  const count = b.readUInt32BE(off);
  off += 4;
  const links = new Map<string, ManifestLink>();
  let prev: Buffer | undefined;
  for (let i = 0; i < count; i++) {
    need(HASH_SIZE + 2, `entry ${i}`);
    const hash = Buffer.from(b.subarray(off, off + HASH_SIZE));
    const pathLen = b.readUInt16BE(off + HASH_SIZE);
    off += HASH_SIZE + 2;
    need(pathLen + 2, `entry ${i}`);
    const pathBytes = b.subarray(off, off + pathLen);
    const targetLen = b.readUInt16BE(off + pathLen);
    off += pathLen + 2;
    need(targetLen, `entry ${i}`);
    const target = b.subarray(off, off + targetLen);
    off += targetLen;
    if (prev && comparePaths(prev, pathBytes) >= 0) throw malformed(`entry ${i} is out of order`);
    if (target.includes(0)) throw malformed(`entry ${i}: target holds a NUL byte`);
    prev = pathBytes;
    const path = nameFromBytes(pathBytes);
    links.set(path, { hash, path, target: nameFromBytes(target) });
  }
  if (off !== b.length) throw malformed(`${b.length - off} bytes after the last entry`);
  return { root, topMeta, links };
}
