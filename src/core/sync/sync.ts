/**
 * The sync client (docs/protocol.md#the-receiver): resolve the source, fetch and verify
 * its object, then for a file fetch only the chunks the local copy lacks and
 * write them atomically; for a directory recurse into the children whose entry
 * hashes the local copy lacks. Every object is verified against the hash that
 * named it before anything touches the destination. A sync by share name starts
 * over on the name's new root when the source changes under it.
 *
 * The parts: source.ts (SOURCE), session.ts (fetching), walk.ts, file.ts and
 * symlink.ts (writing entries), chunks.ts (equal chunks once), conflicts.ts (type
 * conflicts), local.ts (what stands at a path); ../wire/verify.ts checks objects.
 */
import { lstat } from '../base/bytefs.js';
import path from 'node:path';
import { LcsyncError } from '../base/errors.js';
import { toHex } from '../model/hash.js';
import { MerkleTree, CHUNK_SIZE, chunkLength, leafIndex } from '../model/tree.js';
import { rootHashOf, topName } from '../wire/verify.js';
import { checkParent, localEntries } from './local.js';
import { runHook } from './hook.js';
import { resolveTop } from './resolve.js';
import { isEmptyDir } from './conflicts.js';
import { SyncSession } from './session.js';
import { LocalTreeCache } from './localtrees.js';
import { parseSource, type SourceSpec } from './source.js';
import type { SyncFlags, SyncOptions, SyncSummary } from './types.js';

export type { Change, SyncConflict, SyncFlags, SyncItem, SyncOptions, SyncProgress, SyncSummary } from './types.js';
export { SyncSession } from './session.js';

/** How often a sync by share name starts over on a new root before it gives up (the source keeps changing). */
const MAX_SOURCE_CHANGES = 5;

/** Sync SOURCE (hash or share name) into DEST: the library form of `lcsync sync` (the C lc_syncfile). */
export async function syncRemote(source: string, dest: string, opts: SyncOptions): Promise<SyncSummary> {
  const spec = parseSource(source);
  const started = Date.now();
  // Transfer counters of attempts given up because the source changed under them.
  const earlier = { bytesReceived: 0, datagrams: 0, treeObjectsReceived: 0, bytesWritten: 0, chunksFetched: 0, chunksReused: 0, objectsRejected: 0, rejoins: 0, lackingReported: 0 };
  // Destination paths changed, by attempts given up too (what they wrote is in place).
  const changed: string[] = [];
  for (let attempt = 0; ; attempt++) {
    let session: SyncSession | undefined;
    try {
      const summary = await syncOnce(spec, source, dest, opts, (s) => (session = s));
      changed.push(...session!.changed);
      const hook = await afterSync(dest, changed, opts);
      const seconds = (Date.now() - started) / 1000;
      const sum = <K extends keyof typeof earlier>(k: K) => summary[k] + earlier[k];
      const bytesWritten = sum('bytesWritten');
      return {
        ...summary,
        bytesReceived: sum('bytesReceived'),
        datagrams: sum('datagrams'),
        treeObjectsReceived: sum('treeObjectsReceived'),
        bytesWritten,
        chunksFetched: sum('chunksFetched'),
        chunksReused: sum('chunksReused'),
        objectsRejected: sum('objectsRejected'),
        rejoins: sum('rejoins'),
        lackingReported: sum('lackingReported'),
        sourceChanges: attempt,
        ...(hook ? { hook } : {}),
        seconds,
        rate: seconds > 0 ? bytesWritten / seconds : 0,
      };
    } catch (e) {
      // The share said an object of the root being fetched is gone: what is on disk is a mix of
      // complete old files and untouched ones (never a half-written file). By hash there is no
      // newer version to ask for; by name the share's name now leads to its new root.
      const gone = session?.sourceChanged;
      if (!session || !gone) throw e;
      if (spec.name === undefined || attempt >= MAX_SOURCE_CHANGES) throw gone;
      changed.push(...session.changed);
      const s = session.stats();
      earlier.bytesReceived += s.bytesReceived;
      earlier.datagrams += s.datagrams;
      earlier.treeObjectsReceived += s.treeObjectsReceived;
      earlier.objectsRejected += s.objectsRejected;
      earlier.rejoins += s.rejoins;
      earlier.lackingReported += s.lackingReported;
      earlier.bytesWritten += session.summary.bytesWritten;
      earlier.chunksFetched += session.summary.chunksFetched;
      earlier.chunksReused += session.summary.chunksReused;
      opts.onSourceChanged?.(attempt + 1);
    }
  }
}

/**
 * The --exec hook after a sync that changed something (not a dry run): the changed paths
 * relative to DEST (DEST itself is "."), each once, in order.
 */
async function afterSync(dest: string, changed: readonly string[], opts: SyncOptions) {
  if (opts.exec === undefined || opts.dryRun || changed.length === 0) return undefined;
  const rel = [...new Set(changed.map((p) => path.relative(dest, p) || '.'))];
  // Run in DEST when it is a directory, so the paths it reads name files from where it stands.
  const cwd = (await lstat(dest).catch(() => undefined))?.isDirectory() ? dest : undefined;
  const result = await runHook(opts.exec, rel, { nul: !!opts.execNul, cwd });
  opts.onHook?.(result);
  return result;
}

/** One pass over the source's current root, in a session of its own that it hands to `opened` (syncRemote repeats it when the source changes). */
async function syncOnce(spec: SourceSpec, source: string, dest: string, opts: SyncOptions, opened: (s: SyncSession) => void): Promise<SyncSummary> {
  const session = await SyncSession.open(opts);
  opened(session);
  try {
    // Into a fresh destination, the top's bundle is asked for together with the top (bundle.ts);
    // into an existing one, only once the top shows that enough of it is missing.
    if (opts.flags.recursive && (await isEmptyDir(dest).catch((e: NodeJS.ErrnoException) => e.code === 'ENOENT'))) session.prefetchBundle(spec.hash);
    // Before anything is written: the entry, verified, and with --trust the signed manifest.
    const top = await resolveTop(session, spec, opts);
    const rootHash = spec.name === undefined ? spec.hash : rootHashOf(top.head, top.obj, top.tree);
    const baseName = topName(top.head);
    let target: string;
    if (top.head.type === 'dir') {
      if (!opts.flags.recursive) {
        // Like rsync without -r: say so rather than silently doing nothing useful.
        throw new LcsyncError('USAGE', `${source} is a directory: use -r or -a to sync its contents`);
      }
      target = spec.contents ? dest : path.join(dest, baseName);
    } else {
      const st = await lstat(dest).catch(() => undefined);
      target = st?.isDirectory() || dest.endsWith('/') ? path.join(dest, baseName) : dest;
      session.chunks.oneFile();
    }
    await checkParent(target);
    const localTrees = opts.cacheDir === undefined ? undefined : await LocalTreeCache.open({ dir: opts.cacheDir, dest: target, checksum: opts.checksum, onWarning: opts.onWarning });
    session.localTrees = localTrees;
    let saving: Promise<void> | undefined;
    try {
      const local = top.head.type === 'dir' ? await localEntries(target, top.head.name, localTrees) : undefined;
      // Rules see paths as rsync does: "music" transfers the directory itself, "music/" and a hash its contents.
      session.transferRoot = { dir: target, prefix: spec.name !== undefined && !spec.contents && top.head.type === 'dir' ? baseName : '' };
      if (local) session.localPaths = local.byPath;
      await session.syncEntry(top, target, local?.hashes ?? new Set<string>());
      await session.deleteExtraneous();
      await session.applyTimes();
      // The cache's save lists what the run wrote while the files reach the disk (a syncfs can take
      // a while), and writes the cache file only after them.
      const durable = session.makeDurable();
      if (localTrees && !opts.dryRun) saving = localTrees.save(durable);
      await durable;
    } finally {
      // Also after a failure or an interrupt: what was checked or written is known, and speeds the next run.
      if (localTrees && !opts.dryRun) await (saving ?? localTrees.save());
    }
    const s = session.stats();
    return {
      source,
      dest: target,
      rootHash: toHex(rootHash),
      type: top.head.type,
      ...session.summary,
      bytesReceived: s.bytesReceived,
      datagrams: s.datagrams,
      treeObjectsReceived: s.treeObjectsReceived,
      objectsRejected: s.objectsRejected,
      rejoins: s.rejoins,
      lackingReported: s.lackingReported,
      joins: s.joins,
      seconds: s.seconds,
      rate: s.seconds > 0 ? session.summary.bytesWritten / s.seconds : 0,
      sourceChanges: 0,
      ...(localTrees ? { localTrees: { ...localTrees.stats } } : {}),
    };
  } finally {
    await session.close();
  }
}

export interface BufferSyncResult {
  /** The remote file's bytes: `local` itself when it already had the right length, else a new buffer. */
  data: Buffer;
  chunksFetched: number;
  chunksReused: number;
  bytesReceived: number;
  seconds: number;
}

/**
 * Sync a memory buffer to the file that `source` names (the C lc_sync): only
 * chunks that differ from `local` are fetched.
 */
export async function syncBuffer(source: string, local: Buffer, opts: Omit<SyncOptions, 'flags'> & { flags?: SyncFlags }): Promise<BufferSyncResult> {
  const spec = parseSource(source);
  const session = await SyncSession.open({ ...opts, flags: opts.flags ?? { recursive: false, perms: false, owner: false, group: false, times: false } });
  try {
    const entry = await session.fetchEntry(spec.hash, spec.name);
    if (entry.head.type !== 'file') throw new LcsyncError('USAGE', `${source} is a ${entry.head.type}, not a file`);
    const tree = entry.tree!;
    const size = entry.head.size;
    const localTree = MerkleTree.fromBuffer(local);
    const needed = tree.diff(localTree);
    const data = local.length === size ? local : Buffer.alloc(size);
    if (data !== local) local.copy(data, 0, 0, Math.min(size, local.length));
    const have = leafIndex(localTree);
    let reused = 0;
    const fetch: number[] = [];
    for (const i of needed) {
      const j = have.get(tree.leaf(i));
      if (j !== undefined && chunkLength(localTree.size, j) === chunkLength(size, i) && data !== local) {
        local.copy(data, i * CHUNK_SIZE, j * CHUNK_SIZE, j * CHUNK_SIZE + chunkLength(size, i));
        reused++;
      } else fetch.push(i);
    }
    await session.fetchChunksInto(tree, fetch, data);
    const s = session.stats();
    const fetched = session.summary.chunksFetched;
    return { data, chunksFetched: fetched, chunksReused: reused + fetch.length - fetched, bytesReceived: s.bytesReceived, seconds: s.seconds };
  } finally {
    await session.close();
  }
}
