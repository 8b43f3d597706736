/**
 * Leaf hashing of large files on worker threads.
 *
 * One core hashes at most one core's worth (the C BLAKE3 of the addon: about
 * b3sum's single-thread speed; the wasm fallback: a tenth of it), so a large
 * file is cut into RANGE-byte ranges that workers read by
 * positional reads on the caller's open descriptor (descriptors are shared by
 * all threads of a process). A range is an aligned block of up to 128 leaves,
 * so a worker also computes the parents of its subtree; only those nodes cross
 * threads (64 bytes per 32 KiB), never file data, and each worker holds one
 * RANGE buffer, so memory stays bounded whatever the file size. The calling
 * thread fills in the levels above the subtrees. This relies on the heap
 * layout of tree.ts (docs/protocol.md#hashes-and-trees): level k of a tree with `base`
 * leaves is the run of base>>k nodes starting at node (base>>k) - 1.
 *
 * This file is both the pool (main thread) and the worker body: a worker is
 * started on the compiled dist/core/index/hashpool.js with a tag in workerData, and
 * loads BLAKE3 through hash.ts like every other hashing caller.
 */
import { existsSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { readFull, readFullSync } from '../base/readfull.js';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { LcsyncError } from '../base/errors.js';
import { WORKER_YOUNG_GENERATION_MB, restoreAfterWorkerStart, youngGenerationKeptSmall } from '../base/younggen.js';
import { hashLeaves, hashPair, hashPairs } from '../model/hash.js';
import type { LeafHasher } from './mdex.js';
import { CHUNK_SIZE, MerkleTree } from '../model/tree.js';

/** Leaves per job: a power of two, so each job is one whole subtree. */
const RANGE_LEAVES = 128;
/** Bytes one worker reads and hashes per job (4 MiB): big enough that messages cost nothing. */
export const RANGE_SIZE = RANGE_LEAVES * CHUNK_SIZE;
/**
 * Files smaller than this stay on the calling thread: starting the workers
 * (about 50 ms for two on an idle machine) only pays off from a few tens of MiB.
 */
export const DEFAULT_POOL_THRESHOLD = 32 * 2 ** 20;
/** Jobs queued per worker, so a worker never waits for the main thread between ranges. */
const JOBS_PER_WORKER = 2;
const HASH_SIZE = 32;
const WORKER_TAG = 'lcsync-hash-worker';

interface Job {
  id: number;
  fd: number;
  offset: number;
  length: number;
  /** Leaf slots of the job's subtree (a power of two); slots past `length` are zero padding. */
  slots: number;
}

type Reply =
  /** Sent once, when the worker has loaded and listens for jobs. */
  | { ready: true }
  /** The subtree's nodes level by level: `slots` leaves first, its root last. */
  | { id: number; nodes: Uint8Array }
  | { id: number; short: number }
  | { id: number; error: { code?: string; message: string } };

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void; job: Job }>;
  /** The worker has loaded its modules and said so. */
  ready: boolean;
}

export interface HashPoolOptions {
  /** Number of workers; default min(os.availableParallelism(), 4). */
  size?: number;
  /** See DEFAULT_POOL_THRESHOLD. */
  threshold?: number;
  /**
   * Stop the workers after this many ms without a file to hash (they start again for the next
   * one). Default: never. A share sets it: each idle worker keeps 15-20 MiB resident while the
   * share may not re-index for hours.
   */
  idleMs?: number;
}

/** Worker threads that hash large files; pass one to ShareIndex.build as `leafHasher`. */
export class HashPool implements LeafHasher {
  readonly size: number;
  readonly threshold: number;
  private slots: Slot[] = [];
  private nextId = 1;
  private closed = false;
  private readonly idleMs: number | undefined;
  /** Trees being hashed now; the idle timer stops the workers only when there are none. */
  private active = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(opts: HashPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.size ?? Math.min(os.availableParallelism(), 4)));
    this.threshold = opts.threshold ?? DEFAULT_POOL_THRESHOLD;
    this.idleMs = opts.idleMs;
  }

  /** Workers running now (0 before the first large file, and after idleMs without one). */
  get workers(): number {
    return this.slots.length;
  }

  /**
   * The Merkle tree of the first `size` bytes of an open file. The caller keeps
   * `fh` open until this settles; it settles only after every worker is done
   * with the descriptor, even on failure, so closing it afterwards is safe.
   */
  async treeFromHandle(fh: FileHandle, size: number, onBytes?: (n: number) => void): Promise<MerkleTree> {
    const tree = MerkleTree.blank(size);
    if (size === 0) return tree;
    this.start();
    this.active++;
    try {
      return await this.hashInto(tree, fh, size, onBytes);
    } finally {
      if (--this.active === 0) this.idleSoon();
    }
  }

  private async hashInto(tree: MerkleTree, fh: FileHandle, size: number, onBytes?: (n: number) => void): Promise<MerkleTree> {
    // Small trees are one subtree of `base` leaves; large ones are base/RANGE_LEAVES subtrees.
    const slots = Math.min(tree.base, RANGE_LEAVES);
    const fd = fh.fd;
    const window = this.slots.length * JOBS_PER_WORKER;
    await new Promise<void>((resolve, reject) => {
      let next = 0;
      let inFlight = 0;
      let failure: Error | undefined;
      const settle = () => {
        if (inFlight > 0 || (next < size && !failure)) return;
        if (failure) reject(failure);
        else resolve();
      };
      // Until a worker has loaded (tens of ms on an idle machine, much more on a busy one), this
      // thread hashes ranges too, with promise reads, one at a time, instead of waiting.
      let hereBusy = false;
      let hereBuf: Buffer | undefined;
      const launch = () => {
        while (!failure && next < size) {
          const toWorker = inFlight - (hereBusy ? 1 : 0) < window;
          const here = !toWorker && !hereBusy && !this.slots.some((s) => s.ready);
          if (!toWorker && !here) break;
          const offset = next;
          const length = Math.min(RANGE_SIZE, size - offset);
          next += length;
          inFlight++;
          if (here) hereBusy = true;
          const job = here
            ? hashRangeHere(fh, (hereBuf ??= Buffer.allocUnsafe(RANGE_SIZE)), offset, length, slots).finally(() => {
              hereBusy = false;
            })
            : this.submit(fd, offset, length, slots);
          job.then(
            (nodes) => {
              inFlight--;
              if (!failure) {
                placeSubtree(tree, offset / RANGE_SIZE, slots, nodes);
                onBytes?.(length);
              }
              launch();
              settle();
            },
            (err: Error) => {
              inFlight--;
              failure ??= err;
              settle();
            },
          );
        }
      };
      launch();
    });
    sealAbove(tree, Math.ceil(size / RANGE_SIZE), slots);
    return tree;
  }

  /** Start the workers now (they take tens of ms to load), so that the first file does not wait. */
  warm(): this {
    this.start();
    return this;
  }

  /** With idleMs: stop the workers unless a file comes to hash within it. */
  private idleSoon(): void {
    if (this.idleMs === undefined || this.closed) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.active > 0 || this.closed) return;
      const slots = this.slots;
      this.slots = [];
      for (const s of slots) void s.worker.terminate();
    }, this.idleMs);
    this.idleTimer.unref();
  }

  /** Stop the workers. Jobs still running fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private start(): void {
    if (this.closed) throw new LcsyncError('INTERNAL', 'hash pool used after close()');
    while (this.slots.length < this.size) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const worker = new Worker(workerScript(), {
      workerData: { [WORKER_TAG]: true },
      // A worker's own heap is sized when it starts: as small as the main thread's when the CLI keeps that small.
      ...(youngGenerationKeptSmall() ? { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } } : {}),
    });
    // Starting the worker's heap undid the main thread's young-generation setting (younggen.ts).
    worker.once('online', restoreAfterWorkerStart);
    const slot: Slot = { worker, pending: new Map(), ready: false };
    worker.on('message', (r: Reply) => {
      if ('ready' in r) {
        slot.ready = true;
        return;
      }
      const p = slot.pending.get(r.id);
      if (!p) return;
      slot.pending.delete(r.id);
      if (slot.pending.size === 0) worker.unref();
      if ('nodes' in r) p.resolve(r.nodes);
      else if ('short' in r) {
        // The file shrank under us: the tree must describe `size` bytes, so this is an error.
        p.reject(new LcsyncError('IO', `file changed while hashing (range at ${p.job.offset} ended after ${r.short} of ${p.job.length} bytes)`));
      } else {
        // A system error as Node raises it (message and errno code), for the caller to name the path.
        p.reject(Object.assign(new Error(r.error.message), { code: r.error.code }));
      }
    });
    const fail = (err: Error) => {
      const pending = [...slot.pending.values()];
      slot.pending.clear();
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const p of pending) p.reject(new LcsyncError('INTERNAL', `hash worker failed: ${err.message}`, { cause: err }));
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // An idle pool must not keep the process alive; a busy one must (see submit).
    // After the listeners: adding a 'message' listener refs the worker again.
    worker.unref();
    return slot;
  }

  private submit(fd: number, offset: number, length: number, slots: number): Promise<Uint8Array> {
    this.start();
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const job: Job = { id: this.nextId++, fd, offset, length, slots };
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(job.id, { resolve, reject, job });
      slot.worker.postMessage(job);
    });
  }
}

/** Copy subtree `s` (nodes level by level, leaves first) to its heap positions. */
function placeSubtree(tree: MerkleTree, s: number, slots: number, nodes: Uint8Array): void {
  let src = 0;
  for (let width = slots; width >= 1; width >>= 1) {
    const levelWidth = (tree.base / slots) * width;
    tree.nodes.set(nodes.subarray(src, src + width * HASH_SIZE), (levelWidth - 1 + s * width) * HASH_SIZE);
    src += width * HASH_SIZE;
  }
}

/**
 * Fill the subtrees past the end of the data (all padding: parents of zeros
 * are hashes, not zeros) and every node above the subtree roots.
 */
function sealAbove(tree: MerkleTree, filled: number, slots: number): void {
  const subtrees = tree.base / slots;
  if (filled < subtrees) {
    // One padding subtree's levels: zero leaves, then hashes of hashes of zeros.
    let z: Buffer = Buffer.alloc(HASH_SIZE);
    for (let width = slots >> 1; width >= 1; width >>= 1) {
      z = hashPair(z, z);
      const levelWidth = subtrees * width;
      for (let s = filled; s < subtrees; s++) {
        for (let i = 0; i < width; i++) tree.nodes.set(z, (levelWidth - 1 + s * width + i) * HASH_SIZE);
      }
    }
  }
  for (let n = subtrees - 2; n >= 0; n--) {
    tree.nodes.set(hashPair(tree.node(2 * n + 1), tree.node(2 * n + 2)), n * HASH_SIZE);
  }
}

/**
 * The compiled worker file. Under a TypeScript runner (vitest) this module is
 * src/core/index/hashpool.ts, which a worker cannot load, so use its build output.
 */
function workerScript(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL(here);
  const built = new URL(here.replace(/\/src\/core\/index\/hashpool\.ts$/, '/dist/core/index/hashpool.js'));
  if (!existsSync(fileURLToPath(built))) {
    throw new LcsyncError('INTERNAL', `hash worker ${fileURLToPath(built)} is missing: run npm run build`);
  }
  return built;
}

/** The nodes of one range's subtree, level by level from its `slots` leaves (padding leaves zero) to its root. */
function subtreeNodes(data: Uint8Array, slots: number): Uint8Array<ArrayBuffer> {
  const nodes = new Uint8Array((2 * slots - 1) * HASH_SIZE);
  hashLeaves(data, CHUNK_SIZE, nodes, 0);
  let below = 0;
  let at = slots * HASH_SIZE;
  for (let width = slots >> 1; width >= 1; width >>= 1) {
    hashPairs(nodes, below, width, nodes, at);
    below = at;
    at += width * HASH_SIZE;
  }
  return nodes;
}

/** A range hashed on the calling thread, read into `buf` with promise reads (so the event loop runs meanwhile). */
async function hashRangeHere(fh: FileHandle, buf: Buffer, offset: number, length: number, slots: number): Promise<Uint8Array> {
  const got = await readFull(fh, buf, length, offset);
  if (got < length) {
    throw new LcsyncError('IO', `file changed while hashing (range at ${offset} ended after ${got} of ${length} bytes)`);
  }
  return subtreeNodes(buf.subarray(0, length), slots);
}

/** Worker body: read a range by positional reads, answer with its leaf hashes. */
function serve(port: MessagePort): void {
  const buf = Buffer.allocUnsafe(RANGE_SIZE);
  port.postMessage({ ready: true } satisfies Reply);
  port.on('message', (job: Job) => {
    try {
      const leaves = Math.ceil(job.length / CHUNK_SIZE);
      if (!(job.length > 0 && leaves <= job.slots && job.slots <= RANGE_LEAVES && job.offset % CHUNK_SIZE === 0)) {
        throw new Error(`bad hash job at ${job.offset} of ${job.length} bytes`);
      }
      const got = readFullSync(job.fd, buf, job.length, job.offset);
      if (got < job.length) {
        port.postMessage({ id: job.id, short: got } satisfies Reply);
        return;
      }
      const nodes = subtreeNodes(buf.subarray(0, job.length), job.slots);
      port.postMessage({ id: job.id, nodes } satisfies Reply, [nodes.buffer]);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      port.postMessage({ id: job.id, error: { code: err.code, message: err.message } } satisfies Reply);
    }
  });
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[WORKER_TAG]) {
  serve(parentPort);
}
