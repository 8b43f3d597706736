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
  if (obj.kind !== 'chunk') return obj.bytes;
  return readChunk(obj);
}

async function readChunk(obj: ChunkObject): Promise<Buffer | undefined> {
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
