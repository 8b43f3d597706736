/** Chunk reads through kept-open descriptors (src/core/share/objects.ts ChunkFiles, loadObject). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ChunkFiles } from '../src/core/share/objects.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-chunkfiles-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** Descriptors of this process open on files under `work`. */
function openUnder(dir: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if ((readlinkFd(fd) ?? '').startsWith(dir)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

function readlinkFd(fd: string): string | undefined {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

describe.skipIf(process.platform !== 'linux')('ChunkFiles', () => {
  it('reads ranges of a file through one descriptor, and the same bytes as the file', async () => {
    const p = path.join(work, 'a.bin');
    const data = randomBytes(100_000);
    writeFileSync(p, data);
    const files = new ChunkFiles();
    const bufs = await Promise.all([0, 32768, 65536, 98304].map(async (off) => {
      const b = Buffer.alloc(32768);
      const n = await files.read(p, b, 32768, off);
      return b.subarray(0, n);
    }));
    expect(Buffer.concat(bufs).equals(data)).toBe(true);
    expect(files.size).toBe(1);
    expect(openUnder(work)).toBe(1);
    files.closeAll();
    await new Promise((r) => setTimeout(r, 50));
    expect(openUnder(work)).toBe(0);
  });

  it('reads a file replaced under its name afresh after closeAll (a re-index), not the old inode', async () => {
    const p = path.join(work, 'a.bin');
    writeFileSync(p, Buffer.alloc(4096, 1));
    const files = new ChunkFiles();
    const b = Buffer.alloc(4096);
    await files.read(p, b, 4096, 0);
    expect(b[0]).toBe(1);
    writeFileSync(path.join(work, 'b.tmp'), Buffer.alloc(4096, 2));
    renameSync(path.join(work, 'b.tmp'), p);
    await files.read(p, b, 4096, 0);
    expect(b[0]).toBe(1); // still the descriptor of the old file
    files.closeAll();
    await files.read(p, b, 4096, 0);
    expect(b[0]).toBe(2);
    files.closeAll();
  });

  it('closes descriptors unused for idleMs and keeps at most `keep` open', async () => {
    const files = new ChunkFiles(2, 40);
    const b = Buffer.alloc(10);
    for (const name of ['a', 'b', 'c', 'd']) {
      writeFileSync(path.join(work, name), 'x'.repeat(10));
      await files.read(path.join(work, name), b, 10, 0);
    }
    expect(files.size).toBeLessThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 150));
    expect(files.size).toBe(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(openUnder(work)).toBe(0);
  });

  it('fails a read of a missing file, and reads it once it exists', async () => {
    const files = new ChunkFiles();
    const p = path.join(work, 'late.bin');
    await expect(files.read(p, Buffer.alloc(4), 4, 0)).rejects.toThrow(/ENOENT/);
    writeFileSync(p, 'abcd');
    const b = Buffer.alloc(4);
    expect(await files.read(p, b, 4, 0)).toBe(4);
    expect(b.toString()).toBe('abcd');
    files.closeAll();
  });
});
