/**
 * The objects a share serves, as the send side needs them: their bytes (a chunk read from its
 * file and checked against its leaf hash first, so a file that changed after indexing is never
 * sent under its old hash), the OID they go out under, and where each sits in a receiver's walk.
 */
import { close as closeFd, read as readFd } from 'node:fs';
import { open, openFd } from '../base/bytefs.js';
import { readFull } from '../base/readfull.js';
import { hash } from '../model/hash.js';
import { CHUNK_SIZE } from '../model/tree.js';
import type { ChunkObject, IndexObject, IndexRecord, ShareIndex } from '../index/mdex.js';
import type { BundleObject } from '../index/bundles.js';
import { encodeBundle, type BundleEntry } from '../wire/bundle.js';
import { METADATA_POSITION, walkPosition } from './scheduler.js';

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
 * Open descriptors of the files chunks are read from, kept while chunks of them are being read.
 * A share sends a big file chunk after chunk: an open, a read and a close per 32 KiB chunk, each
 * a trip through the thread pool with a FileHandle to finalise, were about a tenth of a share's
 * CPU (profile of a 64 MiB transfer), where one read per chunk is needed. A descriptor is closed
 * once unused for `idleMs`, when more than `keep` are open, and by closeAll() (a re-index: a file
 * replaced by another under its name must be opened afresh, so its new bytes fail the hash check).
 */
export class ChunkFiles {
  private readonly files = new Map<string, { fd: Promise<number>; busy: number; used: number }>();
  private sweeper?: NodeJS.Timeout;

  constructor(
    private readonly keep = 16,
    private readonly idleMs = 1000,
  ) {}

  /** Read `length` bytes at `offset` of `localPath` into `buf`; the count read (short at the end of the file). */
  async read(localPath: string, buf: Buffer, length: number, offset: number): Promise<number> {
    let f = this.files.get(localPath);
    if (!f) {
      f = { fd: openFd(localPath, 'r'), busy: 1, used: 0 };
      this.files.set(localPath, f);
      // After marking it busy: the new entry is the least recently used.
      this.evict();
    } else f.busy++;
    try {
      const fd = await f.fd;
      let got = 0;
      while (got < length) {
        const n = await readAt(fd, buf, got, length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return got;
    } catch (e) {
      // Not opened (or a read failed): the next read of this file opens it again.
      if (this.files.get(localPath) === f) this.files.delete(localPath);
      throw e;
    } finally {
      f.busy--;
      f.used = Date.now();
      // Dropped while in use (closeAll, a failed read): closed by its last reader.
      if (f.busy === 0 && this.files.get(localPath) !== f) closeQuietly(f.fd);
      this.arm();
    }
  }

  /** Descriptors open now. */
  get size(): number {
    return this.files.size;
  }

  /** Close every descriptor not in use; those in use close when their reads end (their entries are gone). */
  closeAll(): void {
    for (const [p, f] of this.files) {
      this.files.delete(p);
      if (f.busy === 0) closeQuietly(f.fd);
    }
    clearTimeout(this.sweeper);
    this.sweeper = undefined;
  }

  private evict(): void {
    if (this.files.size <= this.keep) return;
    let oldest: [string, { busy: number; used: number }] | undefined;
    for (const e of this.files) if (e[1].busy === 0 && (!oldest || e[1].used < oldest[1].used)) oldest = e;
    if (oldest) this.drop(oldest[0]);
  }

  private drop(localPath: string): void {
    const f = this.files.get(localPath);
    if (!f || f.busy > 0) return;
    this.files.delete(localPath);
    closeQuietly(f.fd);
  }

  private arm(): void {
    if (this.sweeper || this.files.size === 0) return;
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      const now = Date.now();
      for (const [p, f] of this.files) if (f.busy === 0 && now - f.used >= this.idleMs) this.drop(p);
      this.arm();
    }, this.idleMs);
    this.sweeper.unref();
  }
}

function readAt(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => readFd(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function closeQuietly(fd: Promise<number>): void {
  fd.then((n) => closeFd(n, () => undefined), () => undefined);
}

/**
 * Bytes of an object; for a chunk, read from its file (into a buffer of `buffers` when given: give
 * it back when done; through `files` when given, else opened for this read) and checked against
 * its leaf hash (undefined when stale).
 */
export async function loadObject(obj: IndexObject, buffers?: ChunkBuffers, files?: ChunkFiles): Promise<Buffer | undefined> {
  if (obj.kind === 'bundle') return loadBundle(obj);
  if (obj.kind !== 'chunk') return obj.bytes;
  return readChunk(obj, buffers, files);
}

/**
 * A bundle part's bytes: its members' objects, and the bytes of its small files read now. A file
 * that no longer hashes to the leaf it was indexed with (changed, gone, unreadable) travels
 * without its bytes: the receiver then asks for its chunk, which is refused the same way.
 */
async function loadBundle(b: BundleObject): Promise<Buffer> {
  const entries: BundleEntry[] = await Promise.all(
    b.members.map(async (m): Promise<BundleEntry> => {
      if (!m.file) return { hash: m.hash, obj: m.obj };
      const data = await readChunk({ localPath: m.file.localPath, offset: 0, length: m.file.size, hash: m.file.leaf }).catch(() => undefined);
      return data ? { hash: m.hash, obj: m.obj, data } : { hash: m.hash, obj: m.obj };
    }),
  );
  return encodeBundle({ key: b.dirKey, part: b.part, parts: b.parts, entries });
}

async function readChunk(obj: Pick<ChunkObject, 'localPath' | 'offset' | 'length' | 'hash'>, buffers?: ChunkBuffers, files?: ChunkFiles): Promise<Buffer | undefined> {
  const buf = buffers ? buffers.take(obj.length) : Buffer.alloc(obj.length);
  let ok = false;
  try {
    let got: number;
    if (files) got = await files.read(obj.localPath, buf, obj.length, obj.offset);
    else {
      const fh = await open(obj.localPath, 'r');
      try {
        got = await readFull(fh, buf, obj.length, obj.offset);
      } finally {
        await fh.close();
      }
    }
    ok = got === obj.length && hash(buf).equals(obj.hash);
    return ok ? buf : undefined;
  } finally {
    if (!ok) buffers?.give(buf);
  }
}

/** Where the objects of one index sit in a receiver's walk (SendScheduler's order). */
export class WalkPositions {
  private readonly rank = new Map<IndexRecord, number>();

  constructor(private readonly index: ShareIndex) {}

  /** Metadata before chunks; chunks by their file's place among the index's records, then by offset. */
  of(o: IndexObject): number {
    if (o.kind !== 'chunk') return METADATA_POSITION;
    if (this.rank.size === 0) this.index.records.forEach((r, i) => this.rank.set(r, i));
    return walkPosition(this.rank.get(o.record) ?? 0, o.offset / CHUNK_SIZE);
  }
}
