/**
 * Files with repeated content, end to end over a lab network (needs root): long runs of equal
 * chunks make equal tree parts (one OID under several groups), equal chunks across files, equal
 * subdirectories, sparse images past 4 GiB. Each must sync, fetch every distinct object once, and
 * come out identical (and sparse where the source was).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync, readSync, ftruncateSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { cli, runSync, sha256, startShare } from './e2e.js';

const why = skipReason(['nft']);
if (why) console.log(`skipping repeated-content tests: ${why}`);

const CHUNK = 32768;

/** A file of `chunks` chunks, each a copy of `pattern[i % pattern.length]`. */
function patternFile(p: string, chunks: number, pattern: Buffer[]): void {
  const fd = openSync(p, 'w');
  try {
    const block = Buffer.alloc(CHUNK * 64);
    for (let i = 0; i < chunks; i += 64) {
      const n = Math.min(64, chunks - i);
      for (let j = 0; j < n; j++) pattern[(i + j) % pattern.length]!.copy(block, j * CHUNK);
      writeSync(fd, block, 0, n * CHUNK);
    }
  } finally {
    closeSync(fd);
  }
}

/** A sparse file of `size` bytes with `marks` written at their offsets. */
function sparseFile(p: string, size: number, marks: [number, string][]): void {
  const fd = openSync(p, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [off, text] of marks) writeSync(fd, Buffer.from(text), 0, text.length, off);
  } finally {
    closeSync(fd);
  }
}

/** Bytes a file really occupies on disk (st_blocks are 512-byte units). */
function allocated(p: string): number {
  return statSync(p).blocks * 512;
}

function readAt(p: string, off: number, len: number): string {
  const fd = openSync(p, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, off);
    return b.toString();
  } finally {
    closeSync(fd);
  }
}

/** BLAKE3-free content check of a big sparse file: compare in 1 MiB blocks without holding it. */
function sameContent(a: string, b: string): boolean {
  const sa = statSync(a).size;
  if (sa !== statSync(b).size) return false;
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let off = 0; off < sa; off += ba.length) {
      const n = readSync(fa, ba, 0, ba.length, off);
      readSync(fb, bb, 0, n, off);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

interface Measured {
  code: number;
  stderr: string;
  summary?: Record<string, any>;
  /** Peak resident set of the sync process, bytes. */
  peakRss: number;
  seconds: number;
}

/** Run `lcsync sync --json` under /usr/bin/time -v on host 1 and report its peak RSS. */
async function measuredSync(lab: Lab, args: string[], timeoutMs: number): Promise<Measured> {
  const t0 = Date.now();
  const r = await lab.exec(1, ['/usr/bin/time', '-v', process.execPath, cli, 'sync', '--json', '-i', 'e0', ...args], { timeoutMs });
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  let summary: Record<string, any> | undefined;
  try {
    summary = JSON.parse(r.stdout);
  } catch {
    summary = undefined;
  }
  return { code: r.code, stderr: r.stderr, summary, peakRss: m ? Number(m[1]) * 1024 : NaN, seconds: (Date.now() - t0) / 1000 };
}

describe.skipIf(why)('repeated content over multicast (needs root)', () => {
  let lab: Lab;
  let work: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-rep-'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Share `src` on host 0, sync it by hash to `dest` on host 1, stop the share. */
  async function shareAndSync(src: string[], dest: string, extra: string[] = [], timeoutSec = 30) {
    const share = await startShare(lab, 0, src);
    try {
      const r = await runSync(lab, 1, ['--timeout', String(timeoutSec), ...extra, share.roots[0]!.hash, dest], (timeoutSec + 60) * 1000);
      return { r, share };
    } finally {
      await share.stop();
    }
  }

  for (const chunks of [3071, 3072, 10_000]) {
    it(`syncs a file of ${chunks} equal chunks, fetching one chunk`, async () => {
      const dir = path.join(work, `eq${chunks}`);
      mkdirSync(dir);
      const src = path.join(dir, 'zeros.bin');
      patternFile(src, chunks, [Buffer.alloc(CHUNK)]);
      const dest = path.join(dir, 'out.bin');
      const { r } = await shareAndSync([src], dest);
      expect(r.code, r.stderr).toBe(0);
      expect(statSync(dest).size).toBe(chunks * CHUNK);
      expect(sha256(dest)).toBe(sha256(src));
      expect(r.summary!.chunksFetched).toBe(1);
      expect(r.summary!.chunksReused).toBe(chunks - 1);
      rmSync(dir, { recursive: true, force: true });
    }, 120_000);
  }
});
