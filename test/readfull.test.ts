/** base/readfull.ts: the one read-until-full loop goes on after short reads and stops at the end of the file. */
import { describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFull, readFullSync } from '../src/core/base/readfull.js';

/** A file handle over `data` whose every read returns at most `most` bytes, as a slow file system may. */
function stingyHandle(data: Buffer, most: number): FileHandle {
  const read = async (buf: Uint8Array, offset: number, length: number, position: number) => {
    const n = Math.max(0, Math.min(most, length, data.length - position));
    data.copy(buf, offset, position, position + n);
    return { bytesRead: n, buffer: buf };
  };
  return { read } as unknown as FileHandle;
}

describe('readFull', () => {
  const data = randomBytes(1000);

  it('reads the whole range through short reads', async () => {
    const buf = Buffer.alloc(500);
    expect(await readFull(stingyHandle(data, 7), buf, 500, 300)).toBe(500);
    expect(buf.equals(data.subarray(300, 800))).toBe(true);
  });

  it('returns fewer bytes only at the end of the file', async () => {
    const buf = Buffer.alloc(500);
    expect(await readFull(stingyHandle(data, 7), buf, 500, 900)).toBe(100);
    expect(buf.subarray(0, 100).equals(data.subarray(900))).toBe(true);
  });

  it('the synchronous form reads a file descriptor the same way', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lcsync-readfull-'));
    try {
      const file = path.join(dir, 'f');
      writeFileSync(file, data);
      const fd = openSync(file, 'r');
      try {
        const buf = Buffer.alloc(500);
        expect(readFullSync(fd, buf, 500, 100)).toBe(500);
        expect(buf.equals(data.subarray(100, 600))).toBe(true);
        expect(readFullSync(fd, buf, 500, 800)).toBe(200);
        expect(buf.subarray(0, 200).equals(data.subarray(800))).toBe(true);
      } finally {
        closeSync(fd);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
