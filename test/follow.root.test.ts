/**
 * Shares that follow their files (needs root: real shares and receivers in a
 * lab network). A changed file gets a new root hash and receivers that sync
 * after the change get the new bytes; a file changed behind the share's back
 * (no events, no rescans, even its mtime put back) is never sent under its old
 * hash: the receiver asking for the old root gets none of it, the share
 * re-indexes at once and tells the receiver that the source changed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { cli, runSync, sha256, startShare } from './e2e.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { toHex } from '../src/core/model/hash.js';

const why = skipReason();

interface ReindexLine {
  event: string;
  reason: string;
  changed: boolean;
  roots: { hash: string; shareName: string }[];
  rehashed: number;
}

/** Collect the JSON lines a `share --json` prints after its start document. */
function reindexLines(proc: ChildProcess): { lines: ReindexLine[]; waitFor(pred: (l: ReindexLine) => boolean, ms: number): Promise<ReindexLine> } {
  const lines: ReindexLine[] = [];
  let buf = '';
  const waiters: (() => void)[] = [];
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{"event"')) continue;
      lines.push(JSON.parse(line) as ReindexLine);
      for (const w of waiters.splice(0)) w();
    }
  });
  return {
    lines,
    waitFor(pred, ms) {
      return new Promise((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error(`no matching re-index line within ${ms} ms; got ${JSON.stringify(lines)}`)), ms);
        const check = () => {
          const hit = lines.find(pred);
          if (hit) {
            clearTimeout(deadline);
            resolve(hit);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** Files with mtimes an hour ago, so the tree cache keeps them (it skips files modified in the last 2 s). */
function makeTree(dir: string, files: number, size: number): void {
  mkdirSync(dir, { recursive: true });
  const t = new Date(Date.now() - 3600_000);
  for (let i = 0; i < files; i++) {
    const p = path.join(dir, `f${i}.bin`);
    writeFileSync(p, randomBytes(size));
    utimesSync(p, t, t);
  }
}

async function rootOf(dir: string): Promise<string> {
  return toHex((await ShareIndex.build([dir])).roots[0]!.hash);
}

describeUnless(why, 'shares follow their files (needs root)', () => {
  let lab: Lab;
  let work: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-follow-'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('re-indexes on a file-system event, re-hashing only the changed file; receivers after the change get the new content and root', async () => {
    const src = path.join(work, 'ev', 'data');
    makeTree(src, 8, 100_000);
    const share = await startShare(lab, 0, [src], ['--rundir', path.join(work, 'run'), '--cache', path.join(work, 'cache-ev'), '--rescan', '0']);
    const ev = reindexLines(share.proc);
    try {
      const r1 = await runSync(lab, 1, ['-r', 'data/', path.join(work, 'ev', 'out')]);
      expect(r1.code, r1.stderr).toBe(0);
      expect(sha256(path.join(work, 'ev', 'out', 'f3.bin'))).toBe(sha256(path.join(src, 'f3.bin')));
      // Replace f3 by rename (atomic, as editors and package managers do).
      const staged = path.join(work, 'ev', 'staged.bin');
      writeFileSync(staged, randomBytes(150_000));
      renameSync(staged, path.join(src, 'f3.bin'));
      const want = await rootOf(src);
      expect(want).not.toBe(share.roots[0]!.hash);
      const line = await ev.waitFor((l) => l.roots[0]?.hash === want, 15_000);
      expect(line).toMatchObject({ event: 'reindex', reason: 'event', changed: true });
      expect(line.rehashed).toBe(1);
      const r2 = await runSync(lab, 1, ['-r', want, path.join(work, 'ev', 'out2')]);
      expect(r2.code, r2.stderr).toBe(0);
      expect(sha256(path.join(work, 'ev', 'out2', 'f3.bin'))).toBe(sha256(path.join(src, 'f3.bin')));
      // By name, into the first copy: only the changed file travels.
      const r3 = await runSync(lab, 1, ['-r', 'data/', path.join(work, 'ev', 'out')]);
      expect(r3.code, r3.stderr).toBe(0);
      expect(r3.summary!.files).toMatchObject({ updated: 1, created: 0 });
      expect(sha256(path.join(work, 'ev', 'out', 'f3.bin'))).toBe(sha256(path.join(src, 'f3.bin')));
      // A new file appears, one vanishes.
      writeFileSync(path.join(src, 'new.txt'), 'new\n');
      rmSync(path.join(src, 'f0.bin'));
      const want2 = await rootOf(src);
      await ev.waitFor((l) => l.roots[0]?.hash === want2, 15_000);
    } finally {
      await share.stop();
    }
  }, 180_000);

  it('never sends a chunk of a file changed behind its back under the old hash, re-indexes at once, and re-indexes on SIGHUP', async () => {
    const src = path.join(work, 'st', 'data');
    makeTree(src, 3, 200_000);
    const f = path.join(src, 'f1.bin');
    const share = await startShare(lab, 0, [src], ['-v', '--rundir', path.join(work, 'run'), '--cache', path.join(work, 'cache-st'), '--no-follow', '--rescan', '0']);
    const ev = reindexLines(share.proc);
    try {
      const oldRoot = share.roots[0]!.hash;
      // Same size, same inode, same mtime: nothing but the bytes tells the change (the racy case).
      const before = statSync(f);
      writeFileSync(f, randomBytes(200_000));
      utimesSync(f, before.atime, before.mtime);
      const dest = path.join(work, 'st', 'out');
      const r = await lab.exec(1, [process.execPath, cli, 'sync', '--json', '-i', 'e0', '--timeout', '20', '-r', oldRoot, dest], { timeoutMs: 60_000 });
      // Every chunk of f1 changed: nobody serves them any more. The share re-indexes and, asked on
      // the chunks' notice groups, says they are gone: the receiver stops with exit 8 (not 4: it
      // got no bad bytes; not 3: it need not wait out its timeout).
      expect(r.code, r.stderr).toBe(8);
      expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'SOURCE_CHANGED', message: 'source changed during sync; run again' });
      expect(existsSync(path.join(dest, 'f1.bin'))).toBe(false);
      expect(share.stderr()).toMatch(/f1\.bin changed since it was indexed; not sending its old chunk/);
      // -v logs every stream it starts: the old tree objects went out, no chunk of f1 did.
      expect(share.stderr()).toMatch(/sending tree data\/f1\.bin/);
      expect(share.stderr()).not.toMatch(/sending chunk data\/f1\.bin/);
      const want = await rootOf(src);
      const line = await ev.waitFor((l) => l.roots[0]?.hash === want, 10_000);
      expect(line.reason).toBe('stale');
      // The new root serves the new bytes.
      const ok = await runSync(lab, 1, ['-r', want, path.join(work, 'st', 'out2')]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(readFileSync(path.join(work, 'st', 'out2', 'f1.bin')).equals(readFileSync(f))).toBe(true);
      // Without events or rescans, SIGHUP re-indexes.
      writeFileSync(path.join(src, 'f2.bin'), 'changed\n');
      const want2 = await rootOf(src);
      await new Promise((res) => setTimeout(res, 500));
      expect(ev.lines.some((l) => l.roots[0]?.hash === want2)).toBe(false);
      share.proc.kill('SIGHUP');
      const hup = await ev.waitFor((l) => l.roots[0]?.hash === want2, 10_000);
      expect(hup).toMatchObject({ reason: 'signal', rehashed: 1 });
      expect(share.proc.exitCode).toBeNull();
    } finally {
      await share.stop();
    }
  }, 180_000);

  it('notices changes by periodic rescan alone (--no-follow --rescan 1)', async () => {
    const src = path.join(work, 'rs', 'data');
    makeTree(src, 2, 10_000);
    const share = await startShare(lab, 0, [src], ['--rundir', path.join(work, 'run'), '--no-cache', '--no-follow', '--rescan', '1']);
    const ev = reindexLines(share.proc);
    try {
      writeFileSync(path.join(src, 'f1.bin'), 'short now\n');
      const want = await rootOf(src);
      const line = await ev.waitFor((l) => l.roots[0]?.hash === want, 10_000);
      expect(line.reason).toBe('rescan');
    } finally {
      await share.stop();
    }
  }, 60_000);
});
