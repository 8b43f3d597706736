/**
 * Entry hashes: the formulas of docs/protocol.md#entry-hashes that name files, tree
 * parts, symlinks and directories. Pure functions over bytes; the index decides
 * what to feed them.
 */
import { hash, hashConcat, type Hash } from './hash.js';
import { STAT_FIELDS_BYTES, encodeStatFields, writeStatFields, type FileMeta } from './meta.js';
import { nameToBytes } from '../base/names.js';

/** Share path minus its first segment (`music/a/b.ogg` -> `/a/b.ogg`); the whole path when it has no `/`. */
export function relativeSharePath(sharePath: string): string {
  const i = sharePath.indexOf('/');
  return i < 0 ? sharePath : sharePath.slice(i);
}

/** Where fileEntryHash lays out what it hashes (grown for long names): a walk hashes one per file. */
let scratch = Buffer.alloc(1024);

/** Hash of file tree part `part` (part 0 is the file's entry hash). */
export function fileEntryHash(sharePath: string, root: Hash | undefined, part: number, meta: FileMeta): Hash {
  // name || [root || part u64le] || stat fields (encodeStatFields), built in one reused buffer:
  // the four small buffers and the concatenation per file cost more than hashing them.
  const name = nameToBytes(relativeSharePath(sharePath));
  const need = name.length + 32 + 8 + STAT_FIELDS_BYTES;
  if (need > scratch.length) scratch = Buffer.alloc(need * 2);
  const b = scratch;
  let o = name.copy(b, 0);
  if (root) {
    o += root.copy(b, o);
    b.writeUInt32LE(part >>> 0, o);
    b.writeUInt32LE(Math.floor(part / 2 ** 32), o + 4);
    o += 8;
  }
  o = writeStatFields(meta, b, o);
  return hash(b.subarray(0, o));
}

/** Symlink entry hash: relative share path and the link's own (lstat) fields. */
export function symlinkEntryHash(sharePath: string, meta: FileMeta): Hash {
  return fileEntryHash(sharePath, undefined, 0, meta);
}

/**
 * Directory entry hash. `children` are already in hashed order (descending by
 * name). At depth 0 the basename and stat are left out so that a copy of the
 * shared directory under another name has the same root hash.
 */
export function dirEntryHash(top: { basename: string; meta: FileMeta } | undefined, children: readonly Hash[]): Hash {
  const parts: Uint8Array[] = [];
  if (top) parts.push(nameToBytes(top.basename), encodeStatFields(top.meta));
  parts.push(...children);
  return hashConcat(parts);
}

/** Alias: BLAKE3 of the share path, the group a client joins when it asks by name. */
export function aliasHash(sharePath: string): Hash {
  return hashConcat([nameToBytes(sharePath)]);
}
