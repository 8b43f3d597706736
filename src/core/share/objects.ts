/**
 * The objects a share serves, as the send side needs them: their bytes (a chunk read from its
 * file and checked against its leaf hash first, so a file that changed after indexing is never
 * sent under its old hash), the OID they go out under, and where each sits in a receiver's walk.
 */
import { open } from '../base/bytefs.js';
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

/** Bytes of an object; for a chunk, read from its file and checked against its leaf hash (undefined when stale). */
export async function loadObject(obj: IndexObject): Promise<Buffer | undefined> {
  if (obj.kind === 'bundle') return loadBundle(obj);
  if (obj.kind !== 'chunk') return obj.bytes;
  return readChunk(obj);
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

async function readChunk(obj: Pick<ChunkObject, 'localPath' | 'offset' | 'length' | 'hash'>): Promise<Buffer | undefined> {
  const fh = await open(obj.localPath, 'r');
  try {
    const buf = Buffer.alloc(obj.length);
    const got = await readFull(fh, buf, obj.length, obj.offset);
    if (got !== obj.length || !hash(buf).equals(obj.hash)) return undefined;
    return buf;
  } finally {
    await fh.close();
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
