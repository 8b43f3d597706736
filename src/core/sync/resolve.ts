/**
 * Which entry a sync writes: the object its root hash names, or what answers for its share name.
 * A name is not a hash: anyone on the link can answer for it. So a sync by name listens on for a
 * moment after the first answer, and two different roots for one name stop it (INTEGRITY, naming
 * both) unless `--trust` picks the one signed by the key or `--expect-root` pins one. With either,
 * a path inside a share is reached from the share's root, down the directories it lists, so the
 * entry written is covered by that root. With `--trust` the signed manifest is checked before
 * anything is written: the top directory's stat, and every symlink target below the entry.
 */
import { LcsyncError } from '../base/errors.js';
import { displayName } from '../base/names.js';
import { toHex, type Hash } from '../model/hash.js';
import { aliasHash } from '../model/entry.js';
import { DEFAULT_LIMITS } from '../wire/nettree.js';
import type { Manifest } from '../wire/manifest.js';
import type { FetchedEntry } from './context.js';
import type { SyncSession } from './session.js';
import type { SourceSpec } from './source.js';
import { entryHashOf, linksUnder, walkDown } from './trust.js';
import type { SyncOptions } from './types.js';

/**
 * How long a sync by name keeps listening for another root after the first answered. Every share
 * answers the same join at once, so a second one's object follows the first within a round trip
 * and a few datagrams on a link; this is the price of every sync by name without --expect-root.
 */
export const NAME_SETTLE_MS = 500;

/** The verified entry to write, and the hash that names it. */
export async function resolveTop(session: SyncSession, spec: SourceSpec, opts: SyncOptions): Promise<FetchedEntry> {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  if (spec.name === undefined) {
    if (opts.expectRoot && !spec.hash.equals(opts.expectRoot)) throw new LcsyncError('USAGE', '--expect-root pins a share name; SOURCE is already another root hash');
    const top = await session.fetchEntry(spec.hash);
    if (!opts.trust) return top;
    const { manifest } = await session.checkSignature(spec.hash, top.head.name, opts.trust);
    return checked(session, spec.hash, top.head.name, manifest);
  }
  const shareName = spec.name.split('/')[0]!;
  const pinned = opts.trust !== undefined || opts.expectRoot !== undefined;
  // Pinned, a path is reached from its share's root; otherwise its own name is asked for.
  const asked = pinned ? shareName : spec.name;
  const key = aliasHash(asked);
  const rootOf = (o: Buffer) => entryHashOf(o, limits);
  let roots: Hash[];
  if (opts.expectRoot) {
    const expected = Buffer.from(opts.expectRoot);
    const others = new Set<string>();
    const obj = await session.fetchObject(key, asked, {
      also: (o) => {
        const r = rootOf(o);
        if (!r.equals(expected)) others.add(toHex(r));
        return r.equals(expected);
      },
      waitMs: (opts.timeoutSec ?? 10) * 1000,
    });
    if (!obj) {
      if (others.size > 0) {
        throw new LcsyncError('INTEGRITY', `share "${displayName(asked)}" is answered by root ${[...others].join(', ')}, not the expected ${toHex(expected)}`);
      }
      throw new LcsyncError('TIMEOUT', `no share answered for "${displayName(asked)}" with root ${toHex(expected)} within ${opts.timeoutSec ?? 10} s`);
    }
    roots = [expected];
  } else {
    const first = rootOf((await session.fetchObject(key, asked))!);
    const second = await session.fetchObject(key, asked, { also: (o) => !rootOf(o).equals(first), waitMs: NAME_SETTLE_MS });
    roots = second ? [first, rootOf(second)] : [first];
  }
  let root = roots[0]!;
  let manifest: Manifest | undefined;
  if (opts.trust) {
    const trusted = opts.trust;
    const results = await Promise.allSettled(roots.map((r) => session.checkSignature(r, shareName, trusted)));
    let best: { root: Hash; manifest: Manifest; timestamp: number } | undefined;
    for (const [i, r] of results.entries()) {
      // Both signed by the key (two versions on two shares): the later signature wins.
      if (r.status === 'fulfilled' && (!best || r.value.timestamp > best.timestamp)) best = { root: roots[i]!, ...r.value };
    }
    if (!best) {
      const first = results[0] as PromiseRejectedResult;
      if (roots.length === 1) throw first.reason;
      throw new LcsyncError('INTEGRITY', `two roots answer for share "${displayName(shareName)}" and neither is signed by the trusted key: ${roots.map(toHex).join(' and ')}`);
    }
    root = best.root;
    manifest = best.manifest;
  } else if (roots.length > 1) {
    throw new LcsyncError(
      'INTEGRITY',
      `two roots answer for share "${displayName(asked)}": ${toHex(roots[0]!)} and ${toHex(roots[1]!)} (pick one with --expect-root, or the signed one with --trust)`,
    );
  }
  if (manifest) return checked(session, root, spec.name, manifest);
  // The name's own object (kept from the wait above, so no round trip) under the name's key: what was
  // asked for by that key, such as the top's bundle (session.prefetchBundle), then belongs to it.
  if (spec.name === asked) return session.fetchEntry(key, asked, (o) => rootOf(o).equals(root));
  return walkDown(session, await session.fetchEntry(root), spec.name, limits);
}

/**
 * Enforce `manifest` and fetch, before anything is written, the entry `target` of root `root`
 * (its top directory as signed) and every symlink the manifest lists below it: any of them that
 * only a contradicting object answers for fails the sync here.
 */
async function checked(session: SyncSession, root: Hash, target: string, manifest: Manifest): Promise<FetchedEntry> {
  session.enforce(manifest);
  let top = await session.fetchEntry(root);
  if (top.head.name !== target && target.includes('/')) top = await walkDown(session, top, target, session.opts.limits ?? DEFAULT_LIMITS);
  await Promise.all(linksUnder(manifest, top.head.name).map((h) => session.fetchObject(h)));
  return top;
}
