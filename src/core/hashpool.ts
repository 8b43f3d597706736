/**
 * Leaf hashing of large files on worker threads.
 *
 * The wasm BLAKE3 runs on one core at about a third of native single-thread
 * speed, so a large file is cut into RANGE-byte ranges that workers read by
 * positional reads on the caller's open descriptor (descriptors are shared by
 * all threads of a process) and hash into 32 KiB leaves. Only the leaf hashes
 * cross threads (32 bytes per 32 KiB), never file data, and each worker holds
 * one RANGE buffer, so memory stays bounded whatever the file size. Parents are
 * then computed on the calling thread by MerkleTree.seal().
 *
 * This file is both the pool (main thread) and the worker body: a worker is
 * started on the compiled dist/core/hashpool.js with a tag in workerData, and
 * loads BLAKE3 through hash.ts like every other hashing caller.
 */
import { existsSync, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { LcsyncError } from './errors.js';
import { hash } from './hash.js';
import { CHUNK_SIZE, MerkleTree } from './tree.js';

/** Bytes one worker reads and hashes per job: 128 chunks, big enough that messages cost nothing. */
export const RANGE_SIZE = 128 * CHUNK_SIZE;
/**
 * Files smaller than this stay on the calling thread: starting the workers
 * (about 50 ms for two, wasm included) only pays off from a few tens of MiB.
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
}

type Reply =
  | { id: number; leaves: Uint8Array }
  | { id: number; short: number }
  | { id: number; error: { code?: string; message: string } };

/** What ShareIndex needs from a pool (see IndexOptions.leafHasher). */
export interface LeafHasher {
  /** Files of at least this many bytes are hashed by the pool. */
  readonly threshold: number;
  treeFromHandle(fh: FileHandle, size: number, onBytes?: (n: number) => void): Promise<MerkleTree>;
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void; job: Job }>;
}

export interface HashPoolOptions {
  /** Number of workers; default min(os.availableParallelism(), 4). */
  size?: number;
  /** See DEFAULT_POOL_THRESHOLD. */
  threshold?: number;
}

export class HashPool implements LeafHasher {
  readonly size: number;
  readonly threshold: number;
  private slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(opts: HashPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.size ?? Math.min(os.availableParallelism(), 4)));
    this.threshold = opts.threshold ?? DEFAULT_POOL_THRESHOLD;
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
      const launch = () => {
        while (!failure && inFlight < window && next < size) {
          const offset = next;
          const length = Math.min(RANGE_SIZE, size - offset);
          next += length;
          inFlight++;
          this.submit(fd, offset, length).then(
            (leaves) => {
              inFlight--;
              if (!failure) {
                const first = offset / CHUNK_SIZE;
                for (let i = 0; i * HASH_SIZE < leaves.length; i++) {
                  tree.setLeaf(first + i, leaves.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
                }
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
    tree.seal();
    return tree;
  }

  /** Stop the workers. Jobs still running fail. */
  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private start(): void {
    if (this.closed) throw new LcsyncError('INTERNAL', 'hash pool used after close()');
    while (this.slots.length < this.size) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const worker = new Worker(workerScript(), { workerData: { [WORKER_TAG]: true } });
    const slot: Slot = { worker, pending: new Map() };
    worker.on('message', (r: Reply) => {
      const p = slot.pending.get(r.id);
      if (!p) return;
      slot.pending.delete(r.id);
      if (slot.pending.size === 0) worker.unref();
      if ('leaves' in r) p.resolve(r.leaves);
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

  private submit(fd: number, offset: number, length: number): Promise<Uint8Array> {
    this.start();
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const job: Job = { id: this.nextId++, fd, offset, length };
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref();
      slot.pending.set(job.id, { resolve, reject, job });
      slot.worker.postMessage(job);
    });
  }
}

/**
 * The compiled worker file. Under a TypeScript runner (vitest) this module is
 * src/core/hashpool.ts, which a worker cannot load, so use its build output.
 */
function workerScript(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL(here);
  const built = new URL(here.replace(/\/src\/core\/hashpool\.ts$/, '/dist/core/hashpool.js'));
  if (!existsSync(fileURLToPath(built))) {
    throw new LcsyncError('INTERNAL', `hash worker ${fileURLToPath(built)} is missing: run npm run build`);
  }
  return built;
}

/** Worker body: read a range by positional reads, answer with its leaf hashes. */
function serve(port: MessagePort): void {
  const buf = Buffer.allocUnsafe(RANGE_SIZE);
  port.on('message', (job: Job) => {
    try {
      if (!(job.length > 0 && job.length <= RANGE_SIZE && job.offset % CHUNK_SIZE === 0)) {
        throw new Error(`bad hash job at ${job.offset} of ${job.length} bytes`);
      }
      let got = 0;
      while (got < job.length) {
        const n = readSync(job.fd, buf, got, job.length - got, job.offset + got);
        if (n === 0) break;
        got += n;
      }
      if (got < job.length) {
        port.postMessage({ id: job.id, short: got } satisfies Reply);
        return;
      }
      const count = Math.ceil(job.length / CHUNK_SIZE);
      const leaves = new Uint8Array(count * HASH_SIZE);
      for (let i = 0; i < count; i++) {
        leaves.set(hash(buf.subarray(i * CHUNK_SIZE, Math.min((i + 1) * CHUNK_SIZE, job.length))), i * HASH_SIZE);
      }
      port.postMessage({ id: job.id, leaves } satisfies Reply, [leaves.buffer]);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      port.postMessage({ id: job.id, error: { code: err.code, message: err.message } } satisfies Reply);
    }
  });
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[WORKER_TAG]) {
  serve(parentPort);
}
