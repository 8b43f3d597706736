/**
 * One sync session: a receiver on the share's groups, the objects it fetches and verifies, the
 * chunk source that makes equal chunks travel once, and what it reports (items, conflicts,
 * progress, the first failure). Writing entries is walk.ts's (and file.ts's, symlink.ts's).
 */
import { TurnBudget } from '../base/turns.js';
import path from 'node:path';
import { chmod, lstat, readdir, rm } from '../base/bytefs.js';
import { LcsyncError } from '../base/errors.js';
import { Limiter } from '../base/limit.js';
import { baselineOnly, tierUpLate } from '../base/tiering.js';
import { growOldGenerationSlowly, trimOldGeneration } from '../base/oldgen.js';
import { keepCHeapTrimmed } from '../base/malloctrim.js';
import { toHex, type Hash } from '../model/hash.js';
import { fileEntryHash } from '../model/entry.js';
import type { FileMeta } from '../model/meta.js';
import { MerkleTree, CHUNK_SIZE, chunkLength } from '../model/tree.js';
import { DEFAULT_LIMITS, decodeNetTreeHead, partCount, type DecodeLimits, type NetTreeHead } from '../wire/nettree.js';
import { checkFirstPart, fileRootOf, objectMatches, treePartLength, verifiedTree } from '../wire/verify.js';
import { TreePartChain } from '../wire/partchain.js';
import type { Manifest } from '../wire/manifest.js';
import { manifestProblem } from './trust.js';
import { MulticastReceiver } from '../net/mcast-receiver.js';
import type { DatagramSource } from '../net/datagram.js';
import { ChunkSource, placesOf } from './chunks.js';
import { dirConflict } from './conflicts.js';
import type { FetchedEntry, SessionSummary, SyncContext } from './context.js';
import { applyOwnership, applyTimes, type TimeStamp } from './fsmeta.js';
import { ObjectReceiver } from './receiver.js';
import { BundleFetcher } from './bundle.js';
import type { SyncItem, SyncOptions } from './types.js';
import type { LocalTreeCache } from './localtrees.js';
import type { LocalHashes } from './local.js';
import { DeferredSync, TempListing, isTempName, processUmask } from './writer.js';
import { PathFilter } from './filter.js';
import { SmallFileWriter } from './smallfiles.js';
import { syncDir, syncEntry } from './walk.js';
import { syncFile } from './file.js';
import { syncSymlink } from './symlink.js';

export type { FetchedEntry } from './context.js';

/**
 * Tree objects fetched at once. Each costs a group membership (net.core.optmem_max bounds them per
 * socket: 2,340 at the default 131072, measured; a join refused for want of memory waits for a
 * leave, see mcast-receiver.ts) and, when the receiver is slow to leave, rounds and trickles the
 * share sends for nothing. Measured on the lab (5,000 small files, one receiver): 16 left the
 * receiver idle a third of the time, 256 doubled the datagrams sent for the same tree; 64 was fastest.
 */
const TREE_FETCHES = 64;

/**
 * A large file's tree parts joined at once (the one being accepted and those after it, completeEntry):
 * a 64 MiB file has 5 parts, each a round trip of 25-50 ms when fetched one after another. Early
 * parts wait in the receiver's kept objects (64 objects, 8 MiB), so this stays well under those.
 */
const TREE_PARTS_AHEAD = 8;

/**
 * Children of directories in progress at once, session-wide (walk.ts): each costs a task, its
 * entry, and for a small file its bytes. Unbounded, every child of the tree started at once (about
 * 3 KiB a file: 300 MiB for 100,000 files). Far more than the tree fetches and chunk groups in
 * flight (TREE_FETCHES, --parallel), so that those stay busy.
 */
const ENTRY_SLOTS = 1024;

export class SyncSession implements SyncContext {
  private readonly rx: ObjectReceiver;
  private readonly limits: DecodeLimits;
  readonly chunkLimit: Limiter;
  readonly entrySlots = new Limiter(ENTRY_SLOTS);
  readonly turns = new TurnBudget();
  private readonly treeLimit: Limiter;
  private readonly times: TimeStamp[] = [];
  private readonly started = Date.now();
  readonly summary: SessionSummary = {
    dryRun: false,
    bytesReceived: 0,
    datagrams: 0,
    bytesWritten: 0,
    chunksFetched: 0,
    chunksReused: 0,
    treeObjectsReceived: 0,
    objectsRejected: 0,
    rejoins: 0,
    lackingReported: 0,
    joins: 0,
    bundleEntries: 0,
    bundleFiles: 0,
    files: { created: 0, updated: 0, unchanged: 0, metadata: 0 },
    deleted: 0,
    conflicts: [],
  };
  readonly opts: SyncOptions;
  private readonly filter: PathFilter;
  /**
   * Where the transfer root is on disk and what it is called in rules ('' for a directory's
   * contents; with SOURCE "music", "music"): paths the rules see are relative to it. Set by sync.ts.
   */
  transferRoot?: { dir: string; prefix: string };
  /** Local paths' entry hashes (resolved paths), for --delete. Set by sync.ts. */
  localPaths: { get(p: string): string | undefined } = new Map<string, string>();
  /** Directories --delete looks at once everything is in place: what to keep in each. */
  private readonly deletePlans: { dir: string; names: ReadonlySet<string>; hashes: ReadonlySet<string> }[] = [];
  /** Destination paths this session created, updated or removed (for --exec), in order. */
  readonly changed: string[] = [];
  readonly chunks: ChunkSource;
  private readonly bundles: BundleFetcher;
  /** Set by the caller before anything is synced (sync.ts). */
  localTrees?: LocalTreeCache;
  readonly deferredSync = new DeferredSync();
  readonly smallFiles = new SmallFileWriter(this.deferredSync);
  readonly temps = new TempListing();

  private constructor(
    private readonly channel: DatagramSource,
    opts: SyncOptions,
  ) {
    // Every item reported (walk, file, symlink) is also noted here when it changed something.
    this.opts = {
      ...opts,
      onItem: (it) => {
        if (it.change !== 'unchanged') this.changed.push(it.path);
        opts.onItem?.(it);
      },
    };
    this.filter = new PathFilter(opts.flags.recursive ? (opts.filter ?? []) : []);
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.rx = new ObjectReceiver(channel, {
      cipher: opts.cipher,
      stallMs: opts.stallMs,
      idleTimeoutMs: opts.timeoutSec ? opts.timeoutSec * 1000 : undefined,
      onBug: opts.onBug,
    });
    this.chunks = new ChunkSource(this.rx, this.summary);
    this.bundles = new BundleFetcher(this.rx, this.limits, opts.bundles !== false, this.turns);
    this.chunkLimit = new Limiter(opts.parallel ?? 128);
    // An abort must also end waits for objects that may never come (no sender yet). Removed again on close():
    // a live mirror (live.ts) passes each sync a signal composed with its own, and node keeps a composed
    // signal that has an abort listener (and so the listener's session, with its buffers) for as long as
    // its sources live, which for the mirror's own signal is the mirror's life.
    this.closeOnAbort = () => this.rx.close();
    opts.signal?.addEventListener('abort', this.closeOnAbort, { once: true });
    this.treeLimit = new Limiter(TREE_FETCHES);
    this.summary.dryRun = !!opts.dryRun;
    // What a transfer promotes dies in the old generation: collect it as it grows (base/oldgen.ts).
    this.untrim = trimOldGeneration();
    growOldGenerationSlowly();
    // And the C heap's free pages, which hold Buffers' bytes (base/malloctrim.ts).
    this.untrimCHeap = keepCHeapTrimmed();
  }

  private readonly untrim: () => void;
  private readonly untrimCHeap: () => void;
  private readonly closeOnAbort: () => void;

  static async open(opts: SyncOptions): Promise<SyncSession> {
    // A receiver's JavaScript runs per object, not per datagram: baseline code, reached late, is enough (base/tiering.ts).
    tierUpLate();
    baselineOnly();
    const channel = opts.channel ?? (await MulticastReceiver.open({ ifnames: opts.ifnames }));
    return new SyncSession(channel, opts);
  }

  async close(): Promise<void> {
    this.opts.signal?.removeEventListener('abort', this.closeOnAbort);
    this.untrim();
    this.untrimCHeap();
    this.rx.close();
    await this.channel.close();
  }

  private firstFailure: { error: unknown } | undefined;

  /** The first error that ended the session; later ones (requests failed because of it) are its echoes. */
  get failure(): { error: unknown } | undefined {
    return this.firstFailure;
  }

  fail(error: unknown): void {
    if (this.firstFailure) return;
    // A share that said the source changed wins over what that did to other requests.
    this.firstFailure = { error: this.rx.gone ?? error };
    this.rx.close();
  }

  checkAbort(): void {
    if (this.opts.signal?.aborted) throw new LcsyncError('INTERRUPTED', 'interrupted');
  }

  progress(): void {
    this.opts.onProgress?.({ bytesReceived: this.rx.stats.bytes, chunksFetched: this.summary.chunksFetched, chunksWanted: this.chunks.wanted });
  }

  /** The signed manifest checked by checkSignature: objects that contradict it are refused from then on. */
  private manifest: Manifest | undefined;
  /** Why objects offered for a key were refused by the manifest (the last reason), by key. */
  private readonly refusals = new Map<string, string>();

  /** Whether `o` agrees with the signed manifest (always, without one); records why not under `key`. */
  private agrees(key: Hash, o: Buffer): boolean {
    if (!this.manifest) return true;
    const why = manifestProblem(this.manifest, o, this.limits);
    if (why === undefined) return true;
    this.refusals.set(toHex(key), why);
    return false;
  }

  /**
   * The first object (a file's first part) that `key` names and `also` accepts, or with `waitMs`
   * undefined when none came that long. A TIMEOUT after objects were refused by the signed
   * manifest becomes the INTEGRITY error that says why.
   */
  async fetchObject(key: Hash, alias?: string, opts: { also?: (o: Buffer) => boolean; waitMs?: number } = {}): Promise<Buffer | undefined> {
    this.checkAbort();
    const accept = (o: Buffer) => objectMatches(o, key, alias, this.limits) && this.agrees(key, o) && (opts.also?.(o) ?? true);
    try {
      return await this.treeLimit.run(() => this.rx.fetchTree(key, accept, { deadlineMs: opts.waitMs }));
    } catch (e) {
      if (!(e instanceof LcsyncError) || e.code !== 'TIMEOUT') throw e;
      const why = this.refusals.get(toHex(key));
      if (why !== undefined) throw new LcsyncError('INTEGRITY', why);
      if (opts.waitMs !== undefined) return undefined;
      throw e;
    }
  }

  /** Fetch and verify the object `key` names, with all its tree parts. */
  async fetchEntry(key: Hash, alias?: string, also?: (o: Buffer) => boolean): Promise<FetchedEntry> {
    this.checkAbort();
    const first = (await this.fetchObject(key, alias, { also }))!;
    return this.completeEntry(key, first, decodeNetTreeHead(first, this.limits));
  }

  async fetchEntryIf(key: Hash, want: (head: NetTreeHead) => boolean): Promise<FetchedEntry | undefined> {
    this.checkAbort();
    const first = (await this.fetchObject(key))!;
    const head = decodeNetTreeHead(first, this.limits);
    return want(head) ? this.completeEntry(key, first, head) : undefined;
  }

  /** The entry whose first part is `first`: a file's further tree parts fetched and the whole tree verified. */
  private async completeEntry(key: Hash, first: Buffer, head: NetTreeHead): Promise<FetchedEntry> {
    if (head.type !== 'file') return { head, obj: first, key };
    if (head.size === 0) return { head, obj: first, key, tree: MerkleTree.blank(0) };
    const root = fileRootOf(head, first);
    const n = partCount(head.objectLength);
    checkFirstPart(head, first);
    // A file longer than the chunks joined at once starts where the share is sending it (the
    // cursor, file.ts): ask now, so that the answer comes while the other tree parts travel.
    if (n > 1 && !this.opts.dryRun && head.size > (this.opts.parallel ?? 128) * CHUNK_SIZE) this.chunks.askCursor(root);
    // Parts are accepted in order, each only if its node hashes agree with the parts before it,
    // which tells apart parts of equal length (ours, another file's, or a spoofer's) before
    // anything trusts them; a part's last nodes are checked with the part after it, so each part
    // stays open to equal-looking candidates until then (wire/partchain.ts). They travel
    // TREE_PARTS_AHEAD at a time: the groups of the parts after the one being asked for are joined
    // too, and what arrives early waits, kept, for its turn. A part's group is left once the part
    // after it settled it.
    //
    // A part found among the objects kept from earlier (a sparse file's tree repeats most of its
    // parts) joins nothing and moves the window on by nothing: each join makes the share send a
    // round, and holding ahead every part of a sparse 5 GiB file's tree had nearly every one of
    // its 513 parts sent though a few dozen are distinct. The window moves when a part has to be
    // waited for, and then also holds the part before it, whose tail the waited-for part settles.
    const chain = new TreePartChain(first, head.payloadOffset, (z) => treePartLength(head, z), n);
    const keyOf = (z: number) => fileEntryHash(head.name, root, z, head.meta);
    const held = new Map<number, () => void>();
    const hold = (a: number) => {
      if (a >= 1 && a < n && !held.has(a)) held.set(a, this.rx.holdTree(keyOf(a)));
    };
    try {
      for (let z = 1; z < n; z++) {
        const accept = (o: Buffer) => chain.next === z && chain.offer(o);
        if (!this.rx.takeKept(accept)) {
          for (let a = z - 1; a < z + TREE_PARTS_AHEAD; a++) hold(a);
          await this.treeLimit.run(() => this.rx.fetchTree(keyOf(z), accept));
        }
        held.get(z - 1)?.();
        held.delete(z - 1);
      }
    } finally {
      for (const release of held.values()) release();
    }
    const obj = Buffer.concat(chain.buffers());
    return { head, obj, key, tree: verifiedTree(head, obj, root) };
  }

  /** Ask for the bundle of the directory `key` may name, together with the entry itself (bundle.ts). */
  prefetchBundle(key: Hash): void {
    this.bundles.prefetch(key);
  }

  prefetchMissingDir(dir: FetchedEntry): void {
    if (dir.key) this.bundles.prefetchMissingDir(dir, dir.key);
  }

  async bundleChildren(dir: FetchedEntry, wanted: number): Promise<{ children: Map<string, FetchedEntry>; release(): void }> {
    const children = new Map<string, FetchedEntry>();
    const given: Hash[] = [];
    let held = () => {};
    if (dir.key) {
      const bundle = await this.bundles.children(dir, dir.key, wanted);
      held = bundle.release;
      for (const [k, c] of bundle.children) {
        children.set(k, c.entry);
        if (c.data) {
          const leaf = c.entry.tree!.leaf(0);
          this.chunks.provide(leaf, c.data);
          given.push(leaf);
        }
      }
    }
    this.summary.bundleEntries = this.bundles.stats.entries;
    this.summary.bundleFiles = this.bundles.stats.files;
    return {
      children,
      release: () => {
        given.forEach((leaf) => this.chunks.withdraw(leaf));
        held();
      },
    };
  }

  /** Fetch chunks `indices` of `tree` into `buf` at their offsets (memory sync); equal chunks travel once. */
  async fetchChunksInto(tree: MerkleTree, indices: readonly number[], buf: Buffer): Promise<void> {
    await this.chunkLimit.each(placesOf(tree, indices).values(), async (at) => {
      this.checkAbort();
      const leaf = tree.leaf(at[0]!);
      const { bytes } = await this.chunks.get(leaf, chunkLength(tree.size, at[0]!));
      for (const i of at) bytes.copy(buf, i * CHUNK_SIZE);
      this.chunks.stored(leaf);
      this.chunks.done(leaf, bytes);
    });
  }

  /**
   * Fetch the signature object published next to `root` and check it against
   * the trusted key, then the manifest it vouches for, before anything is written.
   * A share that publishes none (within the wait) is refused too. Returns the
   * manifest and when it was signed; enforce() makes it count.
   */
  async checkSignature(root: Hash, name: string, trusted: Uint8Array): Promise<{ manifest: Manifest; timestamp: number }> {
    const signed = await this.verifiedSignature(root, name, trusted);
    const manifest = await this.fetchManifest(root, signed.manifest);
    return { manifest, timestamp: signed.timestamp };
  }

  /** From now on refuse every object that contradicts `manifest` (see agrees). */
  enforce(manifest: Manifest): void {
    this.manifest = manifest;
  }

  /** Fetch the manifest object whose BLAKE3 the signature carries. */
  private async fetchManifest(root: Hash, digest: Hash | undefined): Promise<Manifest> {
    const { manifestKey, decodeManifest } = await import('../wire/manifest.js');
    const { hash } = await import('../model/hash.js');
    if (!digest) {
      throw new LcsyncError('INTEGRITY', `root ${toHex(root)} is signed without a manifest: symlink targets and the top directory's stat are not vouched for (the share's lcsync is too old for --trust)`);
    }
    const waitSec = this.opts.signatureWaitSec ?? this.opts.timeoutSec ?? 10;
    let obj: Buffer;
    try {
      obj = await this.rx.fetchTree(manifestKey(root), (o) => hash(o).equals(digest), { deadlineMs: waitSec * 1000 });
    } catch (e) {
      if (e instanceof LcsyncError && e.code === 'TIMEOUT') {
        throw new LcsyncError('INTEGRITY', `root ${toHex(root)} is signed but its manifest did not arrive within ${waitSec} s`);
      }
      throw e;
    }
    const manifest = decodeManifest(obj);
    if (!manifest.root.equals(root)) throw new LcsyncError('INTEGRITY', `the signed manifest is for another root (${toHex(manifest.root)})`);
    return manifest;
  }

  private async verifiedSignature(root: Hash, name: string, trusted: Uint8Array) {
    const { signatureKey, decodeSignature, verifySignedRoot } = await import('../wire/signature.js');
    const waitSec = this.opts.signatureWaitSec ?? this.opts.timeoutSec ?? 10;
    const key = signatureKey(root);
    let sig: Buffer;
    try {
      sig = await this.rx.fetchTree(
        key,
        (o) => {
          try {
            return decodeSignature(o).root.equals(root);
          } catch {
            return false;
          }
        },
        { deadlineMs: waitSec * 1000 },
      );
    } catch (e) {
      if (e instanceof LcsyncError && e.code === 'TIMEOUT') {
        throw new LcsyncError('INTEGRITY', `root ${toHex(root)} is not signed: no signature arrived within ${waitSec} s (the share needs --sign)`);
      }
      throw e;
    }
    return verifySignedRoot(sig, { root, name: name.includes('/') ? undefined : name, trusted });
  }

  get filtering(): boolean {
    return this.filter.active;
  }

  wants(dest: string, isDir: boolean): boolean {
    if (!this.filter.active || !this.transferRoot) return true;
    const rel = path.relative(this.transferRoot.dir, dest).split(path.sep).join('/');
    return this.filter.wants(this.transferRoot.prefix ? `${this.transferRoot.prefix}/${rel}` : rel, isDir);
  }

  planDelete(dir: string, names: ReadonlySet<string>, hashes: ReadonlySet<string>): void {
    if (this.opts.delete) this.deletePlans.push({ dir, names, hashes });
  }

  /**
   * --delete, once everything else is in place: in each directory the source has (and the rules
   * did not exclude), remove what the source does not have. Kept: the source's names, local
   * entries equal to one of its children, excluded paths (as rsync without --delete-excluded),
   * and temporary copies (another run's). Only names listed in a destination directory are
   * removed, so nothing outside the destination is touched (a symlink is removed, never followed).
   */
  async deleteExtraneous(): Promise<void> {
    for (const plan of this.deletePlans) {
      this.checkAbort();
      const names = await readdir(plan.dir).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return [] as string[];
        throw e;
      });
      for (const name of names.sort()) {
        if (plan.names.has(name) || isTempName(name)) continue;
        const p = path.join(plan.dir, name);
        const h = this.localPaths.get(path.resolve(p));
        if (h !== undefined && plan.hashes.has(h)) continue;
        const st = await lstat(p).catch(() => undefined);
        if (!st) continue;
        const isDir = st.isDirectory();
        if (!this.wants(p, isDir)) continue;
        if (!this.opts.dryRun) await rm(p, { recursive: true, force: true });
        this.summary.deleted++;
        this.opts.onItem?.({ path: p, type: isDir ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file', change: 'deleted' });
      }
    }
  }

  /** Leave a non-empty directory where the source has a file or symlink, and say so (rsync without --delete does the same). */
  conflict(dest: string, source: 'file' | 'symlink'): void {
    const c = dirConflict(dest, source);
    this.summary.conflicts.push(c);
    this.opts.onConflict?.(c);
  }

  item(it: SyncItem): void {
    if (it.type === 'file' && it.change !== 'deleted') this.summary.files[it.change]++;
    this.opts.onItem?.(it);
  }

  /** Apply the archive flags; returns whether anything differed. New files without -p get mode & ~umask, as rsync does. */
  async finishMeta(p: string, meta: FileMeta, isLink: boolean, created = false): Promise<boolean> {
    const f = this.opts.flags;
    const st = await lstat(p, { bigint: true });
    let changed = false;
    if (f.perms && !isLink && Number(st.mode & 0o7777n) !== (meta.mode & 0o7777)) changed = true;
    if (f.owner && Number(st.uid) !== meta.uid) changed = true;
    if (f.group && Number(st.gid) !== meta.gid) changed = true;
    if (f.times && (st.mtimeNs / 1_000_000_000n !== meta.mtimeSec || st.mtimeNs % 1_000_000_000n !== meta.mtimeNsec)) changed = true;
    await applyOwnership(p, meta, f, isLink, { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) });
    const umasked = meta.mode & 0o777 & ~processUmask();
    if (created && !f.perms && !isLink && Number(st.mode & 0o7777n) !== umasked) {
      await chmod(p, umasked);
    }
    if (f.times) this.times.push({ path: p, meta });
    return changed;
  }

  deferTimes(p: string, meta: FileMeta): void {
    if (this.opts.flags.times) this.times.push({ path: p, meta });
  }

  /** Sync a verified file entry into `dest`. */
  syncFile(entry: FetchedEntry, dest: string): Promise<void> {
    return syncFile(this, entry, dest);
  }

  syncSymlink(entry: FetchedEntry, dest: string): Promise<void> {
    return syncSymlink(this, entry, dest);
  }

  /**
   * Sync a directory entry into `dest` (which becomes that directory). With
   * `recursive`, children whose entry hashes the local copy already has are skipped.
   */
  syncDir(entry: FetchedEntry, dest: string, localHashes: LocalHashes): Promise<void> {
    return syncDir(this, entry, dest, localHashes);
  }

  syncEntry(entry: FetchedEntry, dest: string, localHashes: LocalHashes): Promise<void> {
    return syncEntry(this, entry, dest, localHashes);
  }

  /** Apply collected times (in any order: all writes are done by now). */
  async applyTimes(): Promise<void> {
    if (!this.opts.dryRun && this.times.length > 0) await applyTimes(this.times);
  }

  /** Make the small files written without an fsync of their own durable (writer.ts DeferredSync). */
  makeDurable(): Promise<void> {
    return this.deferredSync.flush();
  }

  /** Set when the share said the source changed under this session (receiver.ts gone notices). */
  get sourceChanged(): LcsyncError | undefined {
    return this.rx.gone;
  }

  stats(): { bytesReceived: number; datagrams: number; treeObjectsReceived: number; objectsRejected: number; rejoins: number; lackingReported: number; joins: number; seconds: number } {
    this.rx.catchUp();
    return {
      bytesReceived: this.rx.stats.bytes,
      treeObjectsReceived: this.rx.stats.treeObjects,
      datagrams: this.rx.stats.datagrams,
      objectsRejected: this.rx.stats.rejected,
      rejoins: this.rx.stats.rejoins,
      lackingReported: this.rx.stats.lackingReported,
      joins: this.rx.stats.joins,
      seconds: (Date.now() - this.started) / 1000,
    };
  }
}
