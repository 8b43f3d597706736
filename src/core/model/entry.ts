/**
 * Entry hashes: the formulas of docs/protocol.md#entry-hashes that name files, tree
 * parts, symlinks and directories. Pure functions over bytes; the index decides
 * what to feed them.
 */
import { hashConcat, type Hash } from './hash.js';
import { encodeStatFields, type FileMeta } from './meta.js';
import { nameToBytes } from '../base/names.js';

/** Share path minus its first segment (`music/a/b.ogg` -> `/a/b.ogg`); the whole path when it has no `/`. */
export function relativeSharePath(sharePath: string): string {
  const i = sharePath.indexOf('/');
  return i < 0 ? sharePath : sharePath.slice(i);
}

/** Hash of file tree part `part` (part 0 is the file's entry hash). */
export function fileEntryHash(sharePath: string, root: Hash | undefined, part: number, meta: FileMeta): Hash {
  const parts: Uint8Array[] = [nameToBytes(relativeSharePath(sharePath))];
  if (root) {
    const z = Buffer.alloc(8);
    z.writeBigUInt64LE(BigInt(part));
    parts.push(root, z);
  }
  parts.push(encodeStatFields(meta));
  return hashConcat(parts);
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
