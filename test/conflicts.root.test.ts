/**
 * Type conflicts between the source and the destination (needs root: a real share and receiver in
 * a lab network). Like rsync: an empty directory, a file or a symlink is replaced by the type the
 * source has; a non-empty directory where the source has a file or symlink is left alone and
 * reported on one line; every other entry is still synced, and the run exits 7 (partial).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExitCode } from '../src/core/base/errors.js';
import { createLab, skipReason, type Lab } from './lab.js';
import { runSync, startShare, treeListing } from './e2e.js';
import { describeUnless } from './skip.js';

const why = skipReason();

describeUnless(why, 'type conflicts in the destination (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-conflicts-'));
    src = path.join(work, 'src', 'share');
    mkdirSync(path.join(src, 'c'), { recursive: true });
    mkdirSync(path.join(src, 'd'));
    mkdirSync(path.join(src, 'zz'));
    writeFileSync(path.join(src, 'a.txt'), 'file over an empty directory\n');
    writeFileSync(path.join(src, 'b.txt'), 'file over a full directory\n');
    writeFileSync(path.join(src, 'c', 'x'), 'directory over a file\n');
    writeFileSync(path.join(src, 'd', 'y'), 'directory over a symlink\n');
    symlinkSync('a.txt', path.join(src, 'e'));
    symlinkSync('b.txt', path.join(src, 'f'));
    writeFileSync(path.join(src, 'g'), 'file over a symlink\n');
    symlinkSync('c/x', path.join(src, 'h'));
    writeFileSync(path.join(src, 'zz', 'big.bin'), randomBytes(300_000));
    writeFileSync(path.join(src, 'zz', 'last.txt'), 'after every conflict\n');
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A destination with one conflict of each kind, and `outside`, which nothing may touch. */
  function destination(name: string): { dest: string; outside: string } {
    const dest = path.join(work, name, 'share');
    const outside = path.join(work, name, 'outside');
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'keep'), 'outside\n');
    mkdirSync(path.join(dest, 'a.txt'), { recursive: true }); // empty directory <- file
    mkdirSync(path.join(dest, 'b.txt', 'sub'), { recursive: true }); // non-empty directory <- file
    writeFileSync(path.join(dest, 'b.txt', 'sub', 'mine'), 'mine\n');
    writeFileSync(path.join(dest, 'c'), 'a file <- directory\n');
    symlinkSync(outside, path.join(dest, 'd')); // symlink (to a directory outside) <- directory
    writeFileSync(path.join(dest, 'e'), 'a file <- symlink\n');
    mkdirSync(path.join(dest, 'f')); // non-empty directory <- symlink
    writeFileSync(path.join(dest, 'f', 'mine'), 'mine\n');
    symlinkSync(path.join(outside, 'keep'), path.join(dest, 'g')); // symlink <- file
    mkdirSync(path.join(dest, 'h')); // empty directory <- symlink
    return { dest, outside };
  }

  it('replaces what it can, reports each non-empty directory on one line, updates the rest and exits 7; a dry run says the same and changes nothing', async () => {
    const share = await startShare(lab, 0, [src]);
    try {
      const dry = destination('dry');
      const before = treeListing(path.dirname(dry.dest));
      const n = await runSync(lab, 1, ['-a', '-n', 'share', path.dirname(dry.dest)]);
      expect(n.code, n.stderr).toBe(ExitCode.partial);
      expect(n.summary!.conflicts.map((c: { path: string }) => c.path).sort()).toEqual([path.join(dry.dest, 'b.txt'), path.join(dry.dest, 'f')].sort());
      expect(treeListing(path.dirname(dry.dest))).toEqual(before);

      const { dest, outside } = destination('real');
      const r = await runSync(lab, 1, ['-a', 'share', path.dirname(dest)]);
      expect(r.code, r.stderr).toBe(ExitCode.partial);
      // One line per conflict naming its path, then one line saying the run is partial.
      const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('lcsync: warning: no key given'));
      expect(lines.sort()).toEqual(
        [
          `lcsync: conflict: ${path.join(dest, 'b.txt')} is a non-empty directory where the source has a file; left as it is`,
          `lcsync: conflict: ${path.join(dest, 'f')} is a non-empty directory where the source has a symlink; left as it is`,
          'lcsync: sync incomplete: 2 paths were left as they are (conflicts above)',
        ].sort(),
      );
      const s = r.summary!;
      expect(s).toMatchObject({ ok: false, error: { code: 'PARTIAL', exitCode: ExitCode.partial } });
      expect(s.conflicts).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ path: path.join(dest, 'b.txt'), source: 'file', local: 'dir' }),
          expect.objectContaining({ path: path.join(dest, 'f'), source: 'symlink', local: 'dir' }),
        ]),
      );
      expect(s.conflicts).toHaveLength(2);
      // Replaced: empty directory -> file, file -> directory, symlink -> directory, file -> symlink,
      // symlink -> file, empty directory -> symlink.
      expect(readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('file over an empty directory\n');
      expect(lstatSync(path.join(dest, 'c')).isDirectory()).toBe(true);
      expect(readFileSync(path.join(dest, 'c', 'x'), 'utf8')).toBe('directory over a file\n');
      expect(lstatSync(path.join(dest, 'd')).isDirectory()).toBe(true);
      expect(readFileSync(path.join(dest, 'd', 'y'), 'utf8')).toBe('directory over a symlink\n');
      expect(readlinkSync(path.join(dest, 'e'))).toBe('a.txt');
      expect(lstatSync(path.join(dest, 'g')).isFile()).toBe(true);
      expect(readFileSync(path.join(dest, 'g'), 'utf8')).toBe('file over a symlink\n');
      expect(readlinkSync(path.join(dest, 'h'))).toBe('c/x');
      // Left alone: the two non-empty directories, with what they held.
      expect(readFileSync(path.join(dest, 'b.txt', 'sub', 'mine'), 'utf8')).toBe('mine\n');
      expect(readFileSync(path.join(dest, 'f', 'mine'), 'utf8')).toBe('mine\n');
      // Everything after the conflicts was synced, and nothing was written through a link.
      expect(readFileSync(path.join(dest, 'zz', 'big.bin')).equals(readFileSync(path.join(src, 'zz', 'big.bin')))).toBe(true);
      expect(readFileSync(path.join(dest, 'zz', 'last.txt'), 'utf8')).toBe('after every conflict\n');
      expect(readdirSync(outside)).toEqual(['keep']);
      expect(readFileSync(path.join(outside, 'keep'), 'utf8')).toBe('outside\n');
      // No staged or set-aside objects are left behind.
      expect(treeListing(dest).filter((l) => l.includes('.lcsync-'))).toEqual([]);
      // Apart from the two conflicts the tree is the source's.
      const strip = (l: string[]) => l.filter((x) => !/^(b\.txt|f)( |\/)/.test(x));
      expect(strip(treeListing(dest, { times: true }))).toEqual(strip(treeListing(src, { times: true })));

      // Once the user clears the conflicts, the next run completes with exit 0.
      rmSync(path.join(dest, 'b.txt'), { recursive: true });
      rmSync(path.join(dest, 'f'), { recursive: true });
      const ok = await runSync(lab, 1, ['-a', 'share', path.dirname(dest)]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.summary).toMatchObject({ ok: true, conflicts: [] });
      expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
    } finally {
      await share.stop();
    }
  }, 180_000);
});
