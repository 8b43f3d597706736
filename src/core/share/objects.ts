/**
 * The objects a share serves, as the send side needs them: their bytes (a chunk read from its
 * file and checked against its leaf hash first, so a file that changed after indexing is never
 * sent under its old hash), the OID they go out under, and where each sits in a receiver's walk.
 */
import { closeSync, constants as fsc } from 'node:fs';
import { open, openFdSync } from '../base/bytefs.js';
import { readFull, readFullSync } from '../base/readfull.js';
import { hash } from '../model/hash.js';
import { CHUNK_SIZE } from '../model/tree.js';
import type { ChunkObject, IndexObject, IndexRecord, ShareIndex } from '../index/mdex.js';
import type { BundleObject } from '../index/bundles.js';
import { encodeBundle, type BundleEntry } from '../wire/bundle.js';
import { GROUP_PREFIX_BYTES } from '../wire/address.js';
import { cursorKey } from '../wire/packet.js';
import { METADATA_POSITION, walkPosition } from './scheduler.js';
import type { ChunkFiles } from './chunkfiles.js';

/** What a stream's status and logs call the object's kind: as sent, a chunk or an object with OTI. */
export function sentKind(o: IndexObject): 'chunk' | 'tree' {
  return o.kind === 'chunk' ? 'chunk' : 'tree';
}

/** The OID an object goes out under: a chunk's is its key (leaf hash); an object with OTI is named by the hash of its bytes. */
export function objectId(o: IndexObject, bytes: Buffer): Buffer {
  return o.kind === 'chunk' ? o.hash : hash(bytes);
}

/**
 * Chunk-sized buffers for chunks being sent, reused. A share at line rate reads thousands of
 * chunks a second; each in a new 32 KiB buffer, the memory they took stayed until the garbage
 * collector got round to them (tens of MiB of RSS, more when little else makes garbage), whereas
 * only the chunks of live streams are needed. A buffer is given back when its stream is freed and
 * nothing refers to its bytes any more (share.ts: after the batch in flight).
 */
export class ChunkBuffers {
  private readonly free: Buffer[] = [];

  /** `keep`: buffers held for reuse at most (the rest is left to the garbage collector). */
  constructor(private readonly keep = 128) {}

  /** A buffer of `length` (<= CHUNK_SIZE) bytes, contents undefined. */
  take(length: number): Buffer {
    if (length > CHUNK_SIZE) return Buffer.allocUnsafeSlow(length);
    const slab = this.free.pop() ?? Buffer.allocUnsafeSlow(CHUNK_SIZE);
    return length === CHUNK_SIZE ? slab : slab.subarray(0, length);
  }

  /** Give back a buffer take() returned; it must not be used afterwards. */
  give(buf: Buffer): void {
    if (this.free.length >= this.keep || buf.buffer.byteLength !== CHUNK_SIZE || buf.byteOffset !== 0) return;
    this.free.push(Buffer.from(buf.buffer, 0, CHUNK_SIZE));
  }

  /** Buffers held for reuse. */
  get size(): number {
    return this.free.length;
  }
}

/**
 * Bytes of an object; for a chunk, read from its file (into a buffer of `buffers` when given: give
 * it back when done; through `files`' kept descriptors when given, else opened for this read) and
 * checked against its leaf hash (undefined when stale).
 */
export async function loadObject(obj: IndexObject, buffers?: ChunkBuffers, files?: ChunkFiles): Promise<Buffer | undefined> {
  if (obj.kind === 'bundle') return loadBundle(obj);
  if (obj.kind !== 'chunk') return obj.bytes;
  return files ? readChunkFrom(files, obj, buffers) : readChunk(obj, buffers);
}

/**
 * A bundle part's bytes: its members' objects, and the bytes of its small files read now. A file
 * that no longer hashes to the leaf it was indexed with (changed, gone, unreadable) travels
 * without its bytes: the receiver then asks for its chunk, which is refused the same way.
 *
 * The files are read synchronously (open, read, close), like chunks (chunkfiles.ts): a part holds
 * up to a few hundred of them, mostly in the page cache (the index has just hashed them). Through
 * fs/promises each was three trips through the thread pool, a FileHandle to finalise and its
 * promises: about 250 us of the share's CPU a file in a profile of a 5,000-file first sync
 * (1.3 s of 4.9), for reads that take microseconds. (A read that must go to the disk holds up the
 * send loop meanwhile, as a chunk's does.)
 */
async function loadBundle(b: BundleObject): Promise<Buffer> {
  const entries: BundleEntry[] = b.members.map((m): BundleEntry => {
    const file = m.file;
    if (!file) return { hash: m.hash, obj: m.obj };
    const data = readSmallFileSync(file.localPath, file.size, file.leaf);
    return data ? { hash: m.hash, obj: m.obj, data } : { hash: m.hash, obj: m.obj };
  });
  return encodeBundle({ key: b.dirKey, part: b.part, parts: b.parts, entries });
}

/** The first `length` bytes of the file at `p` if they hash to `leaf`; undefined when they do not or it cannot be read. */
function readSmallFileSync(p: string, length: number, leaf: Buffer): Buffer | undefined {
  let fd: number;
  try {
    // Non-blocking: a FIFO put in the file's place must not stop the share in open(2).
    fd = openFdSync(p, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.allocUnsafe(length);
    return readFullSync(fd, buf, length, 0) === length && hash(buf).equals(leaf) ? buf : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

async function readChunk(obj: Pick<ChunkObject, 'localPath' | 'offset' | 'length' | 'hash'>, buffers?: ChunkBuffers): Promise<Buffer | undefined> {
  const fh = await open(obj.localPath, 'r');
  const buf = buffers ? buffers.take(obj.length) : Buffer.alloc(obj.length);
  let ok = false;
  try {
    const got = await readFull(fh, buf, obj.length, obj.offset);
    ok = got === obj.length && hash(buf).equals(obj.hash);
    return ok ? buf : undefined;
  } finally {
    if (!ok) buffers?.give(buf);
    await fh.close();
  }
}

/**
 * Chunks that follow each other in one file (each starts where the one before ends), read with one
 * check of the file and one readv (ChunkFiles.readRun) into buffers of `buffers`; each checked against its
 * leaf hash as readChunk checks it (undefined when stale). Throws as ChunkFiles.read does.
 */
export function loadChunkRun(files: ChunkFiles, objs: readonly ChunkObject[], buffers: ChunkBuffers): (Buffer | undefined)[] {
  const bufs = objs.map((o) => buffers.take(o.length));
  let got: number[];
  try {
    got = files.readRun(objs[0]!.localPath, bufs, objs[0]!.offset);
  } catch (err) {
    for (const b of bufs) buffers.give(b);
    throw err;
  }
  return objs.map((o, i) => {
    const ok = got[i] === o.length && hash(bufs[i]!).equals(o.hash);
    if (!ok) buffers.give(bufs[i]!);
    return ok ? bufs[i] : undefined;
  });
}

/** Whether chunk `b` starts in the same file where chunk `a` ends. */
export function followsInFile(a: ChunkObject, b: ChunkObject): boolean {
  return a.localPath === b.localPath && a.offset + a.length === b.offset;
}

/** readChunk through kept-open descriptors, synchronously (chunkfiles.ts). */
function readChunkFrom(files: ChunkFiles, obj: ChunkObject, buffers?: ChunkBuffers): Buffer | undefined {
  const buf = buffers ? buffers.take(obj.length) : Buffer.alloc(obj.length);
  let ok = false;
  try {
    const got = files.read(obj.localPath, buf, obj.length, obj.offset);
    ok = got === obj.length && hash(buf).equals(obj.hash);
    return ok ? buf : undefined;
  } finally {
    if (!ok) buffers?.give(buf);
  }
}

/** Where the objects of one index sit in a receiver's walk (SendScheduler's order). */
export class WalkPositions {
  private readonly rank = new Map<IndexRecord, number>();
  /** Files by the group prefix of their cursor (packet.ts cursorKey), made on first use. */
  private cursors: Map<string, { rank: number; key: Buffer }> | undefined;

  constructor(private readonly index: ShareIndex) {}

  /** The file whose cursor group has `prefix` (GROUP_PREFIX_BYTES): its rank and cursorKey, or undefined. */
  cursorFile(prefix: Buffer): { rank: number; key: Buffer } | undefined {
    if (!this.cursors) {
      this.cursors = new Map();
      this.index.records.forEach((r, i) => {
        if (r.type !== 'file' || !r.tree) return;
        const key = cursorKey(r.tree.root);
        const prefix = key.subarray(0, GROUP_PREFIX_BYTES).toString('hex');
        // Files of equal content share their chunks, which sit at the first one's positions.
        if (!this.cursors!.has(prefix)) this.cursors!.set(prefix, { rank: i, key });
      });
    }
    return this.cursors.get(prefix.toString('hex'));
  }

  /** Metadata before chunks; chunks by their file's place among the index's records, then by offset. */
  of(o: IndexObject): number {
    if (o.kind !== 'chunk') return METADATA_POSITION;
    if (this.rank.size === 0) this.index.records.forEach((r, i) => this.rank.set(r, i));
    return walkPosition(this.rank.get(o.record) ?? 0, o.offset / CHUNK_SIZE);
  }
}
