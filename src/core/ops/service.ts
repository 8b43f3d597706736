/**
 * A running share as an operator runs it: the index (with the tree cache, the
 * hash pool and optional signatures), the Share that serves it, the Follower
 * that re-indexes when files change, and the status socket. The share command
 * only parses flags and renders what this reports.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { ShareIndex } from '../index/mdex.js';
import { Share, type ShareOptions } from '../share/share.js';
import type { ShareStatus } from '../share/status.js';
import { HashPool } from '../index/hashpool.js';
import { tierUpLate } from '../base/tiering.js';
import { growOldGenerationSlowly } from '../base/oldgen.js';
import { keepCHeapTrimmed } from '../base/malloctrim.js';
import { TreeStore, busyUntilQuiet } from '../index/cache.js';
import { Follower, rootLines, type ReindexEvent, type RootLine } from './follow.js';
import { serveStatus } from './ipc.js';

/** How long the hash workers stay up after the last file they hashed. */
const POOL_IDLE_MS = 1000;
/** Hash workers of a share (see sharePool()). */
const SHARE_HASH_WORKERS = 1;
/**
 * Files smaller than this a share hashes on its own thread, not on its worker. Starting the worker
 * (a V8 isolate loading the hashing modules) costs about 0.1-0.2 CPU-s, in which this thread hashes
 * a few hundred MiB itself (about 2.5 GB/s with the addon's BLAKE3): for a 64 MiB file the worker
 * was two thirds of the index's CPU (0.3 of 0.45 s over an index taken from the tree cache) and
 * did not make it sooner. Larger files still go to the worker. A smaller file re-hashed while
 * serving shares this thread with the send loop 1 MiB at a time (tree.ts fromHandle: well under a
 * millisecond per block), as every file below the pool's threshold always did.
 */
export const SHARE_POOL_THRESHOLD = 256 * 2 ** 20;
/**
 * The tree cache is pruned this long after the share starts, not at once: pruning stats every
 * entry (0.7 CPU-s for 23,000 entries), which at start competed with the first transfer for the
 * CPU the send loop needs. A share that stops sooner prunes as it stops (still at most hourly).
 */
const PRUNE_DELAY_MS = 60_000;

export interface ServiceOptions extends Omit<ShareOptions, 'logger'> {
  paths: string[];
  /** Tree cache directory; undefined = in memory only. */
  cacheDir?: string;
  /** Watch files with file-system events. */
  follow: boolean;
  rescanSec: number;
  /** Directory for the status socket; undefined = none. */
  runDir?: string;
  /** Sign each root with this Ed25519 key. */
  signKey?: KeyObject;
  logger: { info(m: string): void; warn(m: string): void; verbose(m: string): void };
  /** Publish a bundle per directory (index/bundles.ts); default true. */
  bundles?: boolean;
}

export interface ServiceReindex extends ReindexEvent {
  /** Files hashed again (not taken from the tree cache). */
  rehashed: number;
}

export class ShareService {
  private constructor(
    readonly share: Share,
    private readonly follower: Follower,
    private readonly store: TreeStore,
    private readonly pool: HashPool,
    private readonly ipc: { close(): Promise<void> } | undefined,
    private flushing: Promise<void>,
  ) {
    this.pruneTimer = setTimeout(() => this.prune(), PRUNE_DELAY_MS);
    this.pruneTimer.unref();
    // Chunk buffers come and go with every stream: the C heap's freed pages go back (base/malloctrim.ts).
    this.untrimCHeap = keepCHeapTrimmed();
  }

  private readonly pruneTimer: NodeJS.Timeout;
  private readonly untrimCHeap: () => void;
  private pruned = false;

  private prune(): void {
    if (this.pruned) return;
    this.pruned = true;
    this.flushing = this.flushing.then(() => this.store.prune()).then(() => undefined, () => undefined);
  }

  get roots(): RootLine[] {
    return rootLines(this.share.index);
  }

  /** Index, start serving, following and answering status; `onReindex` hears about every new index. */
  static async start(opts: ServiceOptions, onReindex: (ev: ServiceReindex) => void): Promise<ShareService> {
    const log = opts.logger;
    // A share is one loop that runs for as long as it serves: optimize only what is hot in it (base/tiering.ts).
    tierUpLate();
    // And it collects its old generation before promoted garbage piles up (base/oldgen.ts).
    growOldGenerationSlowly();
    const store = openStore(opts.cacheDir, log);
    const pool = sharePool();
    const sign = opts.signKey ? await signer(opts.signKey) : undefined;
    let rehashed = 0;
    let flushing: Promise<void> = Promise.resolve();
    // Set once serving starts: while it sends and for a second after, the tree cache reaches the disk slowly (index/cache.ts flush).
    let serving: Share | undefined;
    const build = async (verbose: boolean) => {
      const misses = store.stats.misses;
      const index = await ShareIndex.build(opts.paths, {
        onWarning: (m) => log.warn(m),
        onRecord: verbose ? (r) => log.verbose(`indexed ${r.sharePath}`) : undefined,
        treeCache: store,
        leafHasher: pool,
        bundles: opts.bundles !== false,
      });
      sign?.(index);
      store.sweep();
      rehashed = store.stats.misses - misses;
      // Entries reach the disk in the background: serving starts without waiting for them.
      flushing = flushing.then(() => store.flush(busyUntilQuiet(() => serving?.sending ?? false))).catch(() => undefined);
      return index;
    };
    let share: Share;
    try {
      const index = await build(true);
      log.verbose(`hashed ${rehashed} ${rehashed === 1 ? 'file' : 'files'}, ${store.stats.hits} from the tree cache${store.treesDir ? ` (${store.treesDir})` : ''}`);
      // Shares that sign must sign with the same key to co-serve (docs/protocol.md#redundant-shares).
      const offerExtra = opts.signKey ? createPublicKey(opts.signKey).export({ type: 'spki', format: 'der' }) : undefined;
      share = await Share.start(index, { ...opts, offerExtra, logger: log });
      serving = share;
    } catch (e) {
      await pool.close();
      throw e;
    }
    const follower = await Follower.start(share, {
      paths: opts.paths,
      build: () => build(false),
      events: opts.follow,
      rescanSec: opts.rescanSec,
      forget: (p) => store.forget(p),
      onWarning: (m) => log.warn(m),
      onVerbose: (m) => log.verbose(m),
      onReindex: (ev) => {
        log.verbose(`re-indexed (${ev.reason}) in ${ev.seconds.toFixed(2)} s: ${rehashed} ${rehashed === 1 ? 'file' : 'files'} hashed, ${ev.objects} ${ev.objects === 1 ? 'object' : 'objects'}${ev.changed ? '' : ', nothing changed'}`);
        onReindex({ ...ev, rehashed });
      },
    });
    let ipc: { close(): Promise<void> } | undefined;
    if (opts.runDir !== undefined) {
      ipc = await serveStatus(opts.runDir, (): ShareStatus => ({
        ...share.status(),
        follow: { events: opts.follow, rescanSec: opts.rescanSec, reindexes: follower.reindexes, last: follower.last },
        cache: { dir: store.treesDir ?? null, ...store.stats },
      })).catch((e: Error) => {
        log.warn(`no status socket, \`lcsync status\` will not list this share: ${e.message}`);
        return undefined;
      });
    }
    return new ShareService(share, follower, store, pool, ipc, flushing);
  }

  /** Re-index now (SIGHUP). */
  reindex(): void {
    this.follower.trigger('signal', 0);
  }

  /** Stop everything; resolves with the share's final status. */
  async stop(): Promise<ShareStatus> {
    clearTimeout(this.pruneTimer);
    this.untrimCHeap();
    await this.follower.close();
    await this.ipc?.close();
    const st = this.share.status();
    await this.share.stop();
    await this.pool.close();
    this.prune();
    await this.flushing;
    return st;
  }
}

/**
 * Publish next to every root of an index its manifest (what no entry hash covers: symlink targets,
 * the top directory's stat; manifest.ts) and a signature object that binds the root, the share
 * name and the manifest's digest to the key.
 */
async function signer(privateKey: KeyObject): Promise<(index: ShareIndex) => void> {
  const sig = await import('../wire/signature.js');
  const man = await import('../wire/manifest.js');
  const { encodeNetTree } = await import('../wire/nettree.js');
  const { hash } = await import('../model/hash.js');
  return (index) => {
    for (const r of index.roots) {
      const inside = (p: string) => p === r.shareName || p.startsWith(`${r.shareName}/`);
      const records = index.records.filter((rec) => inside(rec.sharePath));
      const top = records.find((rec) => rec.sharePath === r.shareName);
      const topMeta =
        r.type === 'dir' && top ? man.headerMeta(encodeNetTree({ type: 'dir', size: 0, meta: top.meta, name: '', payload: Buffer.alloc(0) })) : undefined;
      const links = records.filter((rec) => rec.type === 'symlink').map((rec) => ({ hash: rec.hash, path: rec.sharePath, target: rec.target! }));
      const manifest = man.encodeManifest({ root: r.hash, topMeta, links });
      index.publishSignature(r, man.manifestKey(r.hash), manifest, 'manifest');
      const bytes = sig.encodeSignature({ root: r.hash, name: r.shareName, timestamp: Date.now(), privateKey, manifest: hash(manifest) });
      index.publishSignature(r, sig.signatureKey(r.hash), bytes);
    }
  };
}

/**
 * The hash pool of a share. It serves re-indexing too, but its worker stops after a second without
 * work (it keeps 13-20 MiB resident) and starts again when a changed big file needs it. One worker:
 * each more raised the share's peak RSS by as much (97 against 84 MiB for a 64 MiB file with two)
 * for an index a share builds once (the tree cache keeps it), and on two cores it was not faster.
 */
export function sharePool(): HashPool {
  return new HashPool({ idleMs: POOL_IDLE_MS, size: SHARE_HASH_WORKERS, threshold: SHARE_POOL_THRESHOLD });
}

/** The tree cache at `dir`, or in memory only when disabled or unusable (a share must not fail for want of a cache). */
function openStore(dir: string | undefined, log: { warn(m: string): void }): TreeStore {
  if (dir === undefined) return new TreeStore({});
  try {
    return new TreeStore({ dir, onWarning: (m) => log.warn(m) });
  } catch (e) {
    log.warn(`${(e as Error).message}; hashing every file at start`);
    return new TreeStore({});
  }
}
