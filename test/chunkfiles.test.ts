/**
 * Chunk reads through kept-open descriptors (src/core/share/chunkfiles.ts, and loadObject in
 * objects.ts): the bytes are the file's, a file replaced or cut short while shared is never served
 * from its old descriptor, and descriptors are bounded, closed when idle and when the share stops.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ChunkFiles } from '../src/core/share/chunkfiles.js';
import { loadAddon } from '../src/core/base/addon.js';
import { ChunkBuffers, followsInFile, loadChunkRun, loadObject } from '../src/core/share/objects.js';
import { Share } from '../src/core/share/share.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { hash } from '../src/core/model/hash.js';
import { decodeBundle } from '../src/core/wire/bundle.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import { FakeListeners } from './fakelisteners.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-chunkfiles-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** Descriptors of this process open on files under `dir`. */
function openUnder(dir: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

type Chunk = Extract<IndexObject, { kind: 'chunk' }>;
/** What loadObject needs of a chunk of `p`: where it is and the hash it was indexed with. */
function chunkOf(p: string, bytes: Buffer, offset = 0): Chunk {
  return { kind: 'chunk', localPath: p, offset, length: bytes.length, hash: hash(bytes) } as unknown as Chunk;
}

// Every case twice: a kept descriptor checked by the addon's lstat of the path, and by statSync (no addon).
for (const mode of ['lstat by the addon', 'statSync'] as const) describe.skipIf(process.platform !== 'linux')(`ChunkFiles (${mode})`, () => {
  beforeEach(() => {
    if (mode === 'statSync') process.env.LCSYNC_NO_NATIVE_STAT = '1';
  });
  afterEach(() => {
    delete process.env.LCSYNC_NO_NATIVE_STAT;
  });

  it('reads a path that is a symlink through its target, and a target replaced under the link from the new file', () => {
    const target = path.join(work, 'target.bin');
    const link = path.join(work, 'link.bin');
    writeFileSync(target, Buffer.alloc(4096, 1));
    symlinkSync(target, link);
    const files = new ChunkFiles();
    const b = Buffer.alloc(4096);
    expect(files.read(link, b, 4096, 0)).toBe(4096);
    expect(b[0]).toBe(1);
    writeFileSync(`${target}.new`, Buffer.alloc(4096, 2));
    renameSync(`${target}.new`, target);
    expect(files.read(link, b, 4096, 0)).toBe(4096);
    expect(b[0]).toBe(2);
    expect(files.opens).toBe(2);
    // A link is always checked by statSync (which follows it), never by the addon's lstat of the link itself.
    expect(files.nativeChecks).toBe(0);
    files.closeAll();
  });

  it('reads ranges of a file through one descriptor, the same bytes as the file', () => {
    const p = path.join(work, 'a.bin');
    const data = randomBytes(100_000);
    writeFileSync(p, data);
    const files = new ChunkFiles();
    const parts = [0, 32768, 65536, 98304].map((off) => {
      const b = Buffer.alloc(32768);
      return b.subarray(0, files.read(p, b, 32768, off));
    });
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(files.opens).toBe(1);
    // The three reads after the open checked the path: by the addon where it is loaded and allowed.
    expect(files.nativeChecks).toBe(mode === 'statSync' || loadAddon().addon === undefined ? 0 : 3);
    expect(openUnder(work)).toBe(1);
    files.closeAll();
    expect(openUnder(work)).toBe(0);
  });

  it('reads a file replaced under its name (a new inode) from the new file at once, never from the old descriptor', () => {
    const p = path.join(work, 'a.bin');
    writeFileSync(p, Buffer.alloc(4096, 1));
    const files = new ChunkFiles();
    const b = Buffer.alloc(4096);
    files.read(p, b, 4096, 0);
    expect(b[0]).toBe(1);
    writeFileSync(path.join(work, 'b.tmp'), Buffer.alloc(4096, 2));
    renameSync(path.join(work, 'b.tmp'), p);
    files.read(p, b, 4096, 0);
    expect(b[0]).toBe(2);
    expect(files.opens).toBe(2);
    // The old file's descriptor went with it.
    expect(openUnder(work)).toBe(1);
    files.closeAll();
  });

  it('opens a file again after its status changed (made unreadable, or written), so the permission is checked as per chunk before', async () => {
    const p = path.join(work, 'a.bin');
    writeFileSync(p, Buffer.alloc(4096, 1));
    const files = new ChunkFiles();
    const b = Buffer.alloc(4096);
    files.read(p, b, 4096, 0);
    files.read(p, b, 4096, 0);
    expect(files.opens).toBe(1);
    // ctime ticks with the kernel's coarse clock.
    await new Promise((r) => setTimeout(r, 30));
    chmodSync(p, 0o000);
    // Refused, or (as root, which may open it anyway) read through a new descriptor: opened again either way.
    let denied = false;
    try {
      files.read(p, b, 4096, 0);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('EACCES');
      denied = true;
    }
    expect(denied || files.opens === 2).toBe(true);
    files.closeAll();
  });

  it('as loadObject: a chunk of a file replaced, changed in place or cut short since indexing is stale; the same bytes under a new inode are served', async () => {
    const p = path.join(work, 'f.bin');
    const v1 = randomBytes(65536);
    writeFileSync(p, v1);
    const files = new ChunkFiles();
    const buffers = new ChunkBuffers();
    const second = chunkOf(p, v1.subarray(32768), 32768);
    expect((await loadObject(second, buffers, files))?.equals(v1.subarray(32768))).toBe(true);
    // Replaced by other bytes (rename over it): stale, though the descriptor of the old file held the indexed bytes.
    const tmp = path.join(work, 'f.tmp');
    writeFileSync(tmp, randomBytes(65536));
    renameSync(tmp, p);
    expect(await loadObject(second, buffers, files)).toBeUndefined();
    // Replaced by a copy of the indexed bytes: served, read from the new file.
    writeFileSync(tmp, v1);
    renameSync(tmp, p);
    expect((await loadObject(second, buffers, files))?.equals(v1.subarray(32768))).toBe(true);
    // Changed in place (same inode, same descriptor): the hash check.
    const changed = Buffer.from(v1);
    changed[40000] ^= 1;
    writeFileSync(p, changed);
    expect(await loadObject(second, buffers, files)).toBeUndefined();
    // Cut short in place: a short read.
    writeFileSync(p, v1);
    expect(await loadObject(second, buffers, files)).toBeDefined();
    truncateSync(p, 40000);
    expect(await loadObject(second, buffers, files)).toBeUndefined();
    // Gone: the read fails (the share reports the file as unreadable), and nothing stays open.
    rmSync(p);
    await expect(loadObject(second, buffers, files)).rejects.toThrow(/ENOENT/);
    expect(files.size).toBe(0);
    expect(openUnder(work)).toBe(0);
  });

  it('reads a run of consecutive chunks with one check of the file: each checked against its leaf, a short or changed one stale', () => {
    const p = path.join(work, 'run.bin');
    const v1 = randomBytes(4 * 32768 + 1000);
    writeFileSync(p, v1);
    const files = new ChunkFiles();
    const buffers = new ChunkBuffers();
    const run = [0, 1, 2, 3, 4].map((i) => chunkOf(p, v1.subarray(i * 32768, Math.min(v1.length, (i + 1) * 32768)), i * 32768));
    expect(run.every((c, i) => i === 0 || followsInFile(run[i - 1]!, c))).toBe(true);
    expect(followsInFile(run[0]!, run[2]!)).toBe(false);
    expect(followsInFile(run[0]!, chunkOf(path.join(work, 'other'), v1.subarray(32768, 65536), 32768))).toBe(false);
    const checks = files.nativeChecks;
    const got = loadChunkRun(files, run, buffers);
    for (const [i, c] of run.entries()) expect(got[i]?.equals(v1.subarray(c.offset, c.offset + c.length))).toBe(true);
    // The first read of the file opens it; after that a whole run costs one check of the path.
    loadChunkRun(files, run, buffers);
    if (mode === 'lstat by the addon' && loadAddon().addon) expect(files.nativeChecks - checks).toBe(1);
    // Changed in the middle of chunk 2 and cut inside chunk 4: those two are stale, the others still served.
    const changed = Buffer.from(v1.subarray(0, 4 * 32768 + 500));
    changed[2 * 32768 + 7] ^= 1;
    writeFileSync(p, changed);
    const after = loadChunkRun(files, run, buffers);
    expect(after.map((b) => b !== undefined)).toEqual([true, true, false, true, false]);
    // Gone: the run throws as a read does, and its buffers go back.
    rmSync(p);
    expect(() => loadChunkRun(files, run, buffers)).toThrow(/ENOENT/);
    files.closeAll();
  });

  it('does not block on a FIFO put in the place of a file, and fails the read', () => {
    const p = path.join(work, 'a.bin');
    writeFileSync(p, 'abcd');
    const files = new ChunkFiles();
    files.read(p, Buffer.alloc(4), 4, 0);
    rmSync(p);
    execFileSync('mkfifo', [p]);
    expect(() => files.read(p, Buffer.alloc(4), 4, 0)).toThrow(/regular file/);
    expect(openUnder(work)).toBe(0);
  });

  it('keeps at most `keep` descriptors open (the least recently used goes) and closes those unused for idleMs', async () => {
    const files = new ChunkFiles(2, 40);
    const b = Buffer.alloc(10);
    for (const name of ['a', 'b', 'c', 'd']) writeFileSync(path.join(work, name), 'x'.repeat(10));
    files.read(path.join(work, 'a'), b, 10, 0);
    files.read(path.join(work, 'b'), b, 10, 0);
    files.read(path.join(work, 'a'), b, 10, 0);
    files.read(path.join(work, 'c'), b, 10, 0);
    // b was the least recently used.
    expect(files.size).toBe(2);
    expect(openUnder(work)).toBe(2);
    files.read(path.join(work, 'a'), b, 10, 0);
    expect(files.opens).toBe(3);
    files.read(path.join(work, 'd'), b, 10, 0);
    expect(files.size).toBe(2);
    await new Promise((r) => setTimeout(r, 150));
    expect(files.size).toBe(0);
    expect(openUnder(work)).toBe(0);
  });

  it('fails a read of a missing file, and reads it once it exists', () => {
    const files = new ChunkFiles();
    const p = path.join(work, 'late.bin');
    expect(() => files.read(p, Buffer.alloc(4), 4, 0)).toThrow(/ENOENT/);
    writeFileSync(p, 'abcd');
    const b = Buffer.alloc(4);
    expect(files.read(p, b, 4, 0)).toBe(4);
    expect(b.toString()).toBe('abcd');
    files.closeAll();
  });
});

class FakeSink implements DatagramSink {
  datagrams = 0;
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    this.datagrams += items.length;
  }
  async close(): Promise<void> {}
}

describe.skipIf(process.platform !== 'linux')('Share: chunk files', () => {
  it('keeps the file open while its chunks are sent and closes it when the share stops', async () => {
    const p = path.join(work, 'file.bin');
    writeFileSync(p, randomBytes(4 * 32768));
    const index = await ShareIndex.build([p]);
    const sink = new FakeSink();
    const listeners = new FakeListeners();
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners });
    try {
      const chunks = [...index.hashes()].map((h) => index.get(h)!).filter((o) => o.kind === 'chunk');
      expect(chunks).toHaveLength(4);
      for (const c of chunks) listeners.report('join', c.hash, 'fe80::2');
      const end = Date.now() + 5000;
      while (sink.datagrams < 4 * 32 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      expect(sink.datagrams).toBeGreaterThanOrEqual(4 * 32);
      // One descriptor for the four chunks, not one per chunk.
      expect(openUnder(work)).toBe(1);
    } finally {
      await share.stop();
    }
    expect(openUnder(work)).toBe(0);
  });
});

describe.skipIf(process.platform !== 'linux')('loadObject: a bundle part', () => {
  it("carries the bytes of small files that still match; one changed, gone or replaced by a FIFO travels without them, and no descriptor stays open", async () => {
    const names = ['same', 'changed', 'gone', 'fifo'];
    const members = names.map((n) => {
      const p = path.join(work, n);
      const bytes = randomBytes(500 + n.length);
      writeFileSync(p, bytes);
      const h = hash(Buffer.from(`entry ${n}`));
      return { name: n, p, bytes, member: { hash: h, obj: Buffer.from(`object of ${n}`), file: { localPath: p, size: bytes.length, leaf: hash(bytes) } } };
    });
    writeFileSync(members[1].p, randomBytes(members[1].bytes.length));
    rmSync(members[2].p);
    rmSync(members[3].p);
    // A FIFO with no writer: a blocking open(2) of it would never return.
    execFileSync('mkfifo', [members[3].p]);
    const dirKey = hash(Buffer.from('the directory'));
    const obj = { kind: 'bundle', hash: hash(Buffer.from('part 0')), dirKey, part: 0, parts: 1, members: members.map((m) => m.member) } as unknown as IndexObject;
    const bytes = await loadObject(obj);
    const part = decodeBundle(bytes!);
    expect(part.key.equals(dirKey)).toBe(true);
    expect(part.entries.map((e) => e.obj.toString())).toEqual(names.map((n) => `object of ${n}`));
    expect(part.entries[0].data?.equals(members[0].bytes)).toBe(true);
    expect(part.entries.slice(1).map((e) => e.data)).toEqual([undefined, undefined, undefined]);
    expect(openUnder(work)).toBe(0);
  });
});
