/**
 * Which bundle objects (wire/bundle.ts) an index publishes for a directory: its children cut, in
 * directory order, into parts of about BUNDLE_PART_BUDGET bytes, each part published under the
 * directory's entry hash and under its alias (a receiver asks for the root by either). Planned at
 * index time from sizes alone; the bytes are made when a receiver joins (share/objects.ts), small
 * files read from disk then and checked against their leaf, so the index holds no file data.
 */
import type { Hash } from '../model/hash.js';
import { CHUNK_SIZE } from '../model/tree.js';
import { MAX_BUNDLE_ENTRY_DATA, MAX_BUNDLE_ENTRY_OBJECT, MAX_BUNDLE_PARTS, bundleEntrySize, bundleKey, BUNDLE_HEADER } from '../wire/bundle.js';
import type { IndexRecord } from './mdex.js';

/**
 * Bytes of entries per bundle part. One part is one RaptorQ object (up to 1,024 symbols): a
 * directory of a hundred small files travels in one round, and a receiver decoding 16 bundles at
 * once stays well inside its 32 MiB of tree decoders.
 */
export const BUNDLE_PART_BUDGET = 1024 * 1024;
/** Files of up to this many bytes (one chunk) travel inside the bundle; larger ones only their tree. */
export const BUNDLE_FILE_MAX = Math.min(CHUNK_SIZE, MAX_BUNDLE_ENTRY_DATA);

/**
 * One child in a bundle: its record and its object (held by the index anyway). What a small file's
 * bytes are checked against is read off the record when the part is sent: a share holds one member
 * per child of every directory, and a member that copied them (an object with the path, the size and
 * a view of the leaf) cost about 150 bytes a file more.
 */
export class BundleMember {
  constructor(
    readonly rec: IndexRecord,
    readonly obj: Buffer,
  ) {}

  get hash(): Hash {
    return this.rec.hash;
  }

  /** A non-empty file of at most BUNDLE_FILE_MAX bytes: read at send time, sent only if it still hashes to `leaf`. */
  get file(): { localPath: string; size: number; leaf: Hash } | undefined {
    const r = this.rec;
    return isBundledFile(r) ? { localPath: r.localPath, size: r.size, leaf: r.tree!.leaf(0) } : undefined;
  }
}

/** Whether a child travels with its bytes in its directory's bundle. */
function isBundledFile(r: IndexRecord): boolean {
  return r.type === 'file' && r.size > 0 && r.size <= BUNDLE_FILE_MAX;
}

/** Part `part` of `parts` of a directory's bundle, under `hash` = bundleKey(dirKey, part). */
export interface BundleObject {
  kind: 'bundle';
  hash: Hash;
  /** The directory. */
  record: IndexRecord;
  dirKey: Hash;
  part: number;
  parts: number;
  members: readonly Pick<BundleMember, 'hash' | 'obj' | 'file'>[];
}

/**
 * The bundle parts of directory `dir` (keys: its entry hash and its alias) over its `children`
 * (records with their objects). Children whose object is too big for a bundle (a file of more
 * than one tree part, a directory of more than about 1,000 entries) are left out: a receiver
 * fetches them alone. A directory with no children has no bundle.
 */
export function bundleObjects(dir: IndexRecord, aliasKey: Hash, children: readonly { rec: IndexRecord; obj: Buffer }[]): BundleObject[] {
  const parts: BundleMember[][] = [];
  let current: BundleMember[] = [];
  let size = BUNDLE_HEADER;
  for (const { rec, obj } of children) {
    if (obj.length > MAX_BUNDLE_ENTRY_OBJECT || (rec.partHashes?.length ?? 1) > 1) continue;
    const small = isBundledFile(rec);
    const m = new BundleMember(rec, obj);
    const add = bundleEntrySize(obj.length, small ? rec.size : 0);
    if (current.length > 0 && size + add > BUNDLE_PART_BUDGET) {
      parts.push(current);
      current = [];
      size = BUNDLE_HEADER;
    }
    current.push(m);
    size += add;
  }
  if (current.length > 0) parts.push(current);
  if (parts.length === 0 || parts.length > MAX_BUNDLE_PARTS) return [];
  const out: BundleObject[] = [];
  for (const dirKey of [dir.hash, aliasKey]) {
    parts.forEach((members, part) => out.push({ kind: 'bundle', hash: bundleKey(dirKey, part), record: dir, dirKey, part, parts: parts.length, members }));
  }
  return out;
}
