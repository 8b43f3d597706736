/**
 * What `--trust` adds to the checks of every object: the signed manifest (../wire/manifest.ts)
 * covers what no entry hash does, so an object that the hash accepts but the manifest contradicts
 * (a swapped symlink target, another stat on the share's top directory) is refused like a forged
 * one: dropped, and the genuine object awaited; when only contradicting ones come, the sync fails
 * with the reason (session.ts fetchObject). And the share's root is resolved and walked down to a
 * path inside it, so that `--trust` covers a path too.
 */
import { LcsyncError } from '../base/errors.js';
import { displayName } from '../base/names.js';
import type { Hash } from '../model/hash.js';
import { fileEntryHash, symlinkEntryHash } from '../model/entry.js';
import { decodeNetTreeHead, dirChildren, type DecodeLimits, type NetTreeHead } from '../wire/nettree.js';
import { headerMeta, type Manifest } from '../wire/manifest.js';
import { childName, fileRootOf, isShareTop, shareDirHash, symlinkTarget } from '../wire/verify.js';
import type { FetchedEntry } from './context.js';

/** Why the verified object `o` contradicts `manifest`, or undefined when it agrees. */
export function manifestProblem(manifest: Manifest, o: Buffer, limits: DecodeLimits): string | undefined {
  const head = decodeNetTreeHead(o, limits);
  if (head.type === 'symlink') {
    const link = manifest.links.get(head.name);
    if (!link) return `refusing symlink "${displayName(head.name)}": the signed manifest does not list it`;
    const target = symlinkTarget(head, o);
    if (target !== link.target) {
      return `refusing symlink "${displayName(head.name)}": its target "${displayName(target)}" is not the signed one "${displayName(link.target)}"`;
    }
    return undefined;
  }
  if (head.type === 'dir' && isShareTop(head.name) && manifest.topMeta && !headerMeta(o).equals(manifest.topMeta)) {
    return `refusing directory "${displayName(head.name)}": its mode, owner or times are not the signed ones`;
  }
  return undefined;
}

/** The entry hash of an object (a file's first part will do): what names it as the top of a sync. */
export function entryHashOf(o: Buffer, limits: DecodeLimits): Hash {
  const head = decodeNetTreeHead(o, limits);
  if (head.type === 'file') return fileEntryHash(head.name, head.size === 0 ? undefined : fileRootOf(head, o), 0, head.meta);
  if (head.type === 'symlink') return symlinkEntryHash(head.name, head.meta);
  return shareDirHash(head.name, head.meta, dirChildren(o.subarray(head.payloadOffset)), isShareTop(head.name));
}

/** What walking down needs of a session. */
export interface WalkContext {
  fetchObject(key: Hash): Promise<Buffer | undefined>;
  fetchEntry(key: Hash): Promise<FetchedEntry>;
}

/**
 * Walk from the verified top directory `top` down to the share path `target` (inside it), each
 * step through the children that the directory above lists: the entry reached is covered by the
 * root hash, whatever answers for the path's own name.
 */
export async function walkDown(ctx: WalkContext, top: FetchedEntry, target: string, limits: DecodeLimits): Promise<FetchedEntry> {
  let cur = top;
  while (cur.head.name !== target) {
    if (cur.head.type !== 'dir') throw new LcsyncError('NOT_FOUND', `"${displayName(target)}" is not in the share: "${displayName(cur.head.name)}" is a ${cur.head.type}`);
    const next = target.slice(cur.head.name.length + 1).split('/')[0]!;
    const children = dirChildren(cur.obj.subarray(cur.head.payloadOffset));
    const heads = await Promise.all(
      children.map(async (h): Promise<[Hash, NetTreeHead]> => [h, decodeNetTreeHead((await ctx.fetchObject(h))!, limits)]),
    );
    const found = heads.find(([, head]) => childName(cur.head, head) === next);
    if (!found) throw new LcsyncError('NOT_FOUND', `"${displayName(target)}" is not in the share (no "${displayName(next)}" in "${displayName(cur.head.name)}")`);
    cur = await ctx.fetchEntry(found[0]);
  }
  return cur;
}

/** The manifest's symlinks at or below `sharePath`. */
export function linksUnder(manifest: Manifest, sharePath: string): Hash[] {
  const out: Hash[] = [];
  for (const l of manifest.links.values()) if (l.path === sharePath || l.path.startsWith(`${sharePath}/`)) out.push(l.hash);
  return out;
}
