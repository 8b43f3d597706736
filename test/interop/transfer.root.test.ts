/**
 * Live interoperability with the C lcsync 0.3.2, both ways (needs root and LCSYNC_C_REF, see test/interop/cref.ts):
 * the C lcshare serving our lcsync sync, and our lcsync share serving the C lcsync, for a 16 MiB file, share.tar
 * (the C tool's reference tree) with -a, a subdirectory by name, an empty file by name, and a tree of symlinks
 * with odd modes, owners and nanosecond times; every case also with 10% random loss on the receiver's port (both
 * directions, so MLD reports are lost too). Results are proved by bytes: content hashes, a listing of mode, owner
 * and mtime in nanoseconds, and the C tool's own directory hash of share.tar. Prints seconds and the sender's wire
 * bytes (tx_bytes of its interface) per case.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lchownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from '../lab.js';
import { describeUnless, firstReason } from '../skip.js';
import { vectorPath } from '../vectors.js';
import { cli, runSync, sha256, startShare, treeListing, type RunningShare } from '../e2e.js';
import { crefReason, describeRun, runCSync, startCShare, type CShare } from './cref.js';

const why = firstReason(crefReason(), skipReason(['nft']));

/** share.tar's root as the C `lcsync --hex share` prints it (test/vectors/README.md). */
const SHARE_TAR_ROOT = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';
/** Bound on one transfer, also under loss; a clean 16 MiB takes a few seconds. */
const SYNC_BOUND_S = 150;

const C_SHARE = 0;
const OUR_SHARE = 1;
const RECEIVER = 2;

interface Figure {
  name: string;
  seconds: number;
  senderBytes: number;
}

/** Set every time with nanoseconds (GNU touch), as tar does for share.tar. */
function touchNs(p: string, when: string): void {
  execFileSync('touch', ['-h', '-d', when, p]);
}

/**
 * A tree for the edge cases: an empty file, symlinks of every sort (to a file, to a directory, dangling, absolute,
 * upwards), modes other than 644/755, owners other than root, nanosecond mtimes.
 */
function makeEdgeTree(root: string): void {
  mkdirSync(path.join(root, 'sub'), { recursive: true });
  writeFileSync(path.join(root, 'empty'), '');
  writeFileSync(path.join(root, 'sub', 'note.txt'), 'a note in a subdirectory\n');
  symlinkSync('empty', path.join(root, 'link-file'));
  symlinkSync('sub', path.join(root, 'link-dir'));
  symlinkSync('does/not/exist', path.join(root, 'link-dangling'));
  symlinkSync('/nonexistent/absolute/target', path.join(root, 'link-abs'));
  symlinkSync('../empty', path.join(root, 'sub', 'link-up'));
  chmodSync(path.join(root, 'empty'), 0o604);
  chmodSync(path.join(root, 'sub', 'note.txt'), 0o640);
  chmodSync(path.join(root, 'sub'), 0o750);
  chmodSync(root, 0o711);
  lchownSync(path.join(root, 'empty'), 1001, 1002);
  lchownSync(path.join(root, 'sub', 'note.txt'), 1003, 1004);
  lchownSync(path.join(root, 'sub'), 1005, 1006);
  // The C client chowns through a symlink (chown, not lchown): the link itself stays root's and its target gets
  // the link's owner. So links are owned like their targets, which keeps the targets right with the C client.
  lchownSync(path.join(root, 'link-file'), 1001, 1002);
  lchownSync(path.join(root, 'link-dir'), 1005, 1006);
  lchownSync(path.join(root, 'sub', 'link-up'), 1001, 1002);
  touchNs(path.join(root, 'empty'), '2021-03-04 05:06:07.123456789 UTC');
  touchNs(path.join(root, 'sub', 'note.txt'), '2019-12-31 23:59:59.987654321 UTC');
  touchNs(path.join(root, 'sub'), '2020-06-15 12:00:00.000000001 UTC');
  touchNs(root, '2022-02-22 22:22:22.222222222 UTC');
}

/** A listing (treeListing with owners) without the owners of symlinks. */
function withoutLinkOwners(lines: string[]): string[] {
  return lines.map((l) => l.replace(/( -> .*) \d+:\d+$/, '$1'));
}

describeUnless(why, 'interop with the C lcsync 0.3.2: transfers both ways (needs root and LCSYNC_C_REF)', () => {
  let lab: Lab;
  let work: string;
  const figures: Figure[] = [];
  let n = 0;

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-interop-'));
    mkdirSync(path.join(work, 'big'));
    writeFileSync(path.join(work, 'big', 'big.bin'), randomBytes(16 * 1024 * 1024));
    mkdirSync(path.join(work, 'tar'));
    execFileSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', path.join(work, 'tar')]);
    makeEdgeTree(path.join(work, 'edge'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
    if (figures.length > 0) {
      console.log('\ninterop transfers: seconds and the sender\'s wire bytes (tx_bytes of its interface)');
      for (const f of figures) console.log(`${f.name.padEnd(64)} ${f.seconds.toFixed(2).padStart(7)} s ${String(f.senderBytes).padStart(11)} B`);
    }
  });

  const sources = () => [path.join(work, 'big'), path.join(work, 'tar', 'share'), path.join(work, 'edge')];
  const freshDir = () => {
    const d = path.join(work, `out-${n++}`);
    mkdirSync(d);
    return d;
  };

  /** A receiver of either kind: fetch NAME (with -a when archive) into DEST; returns after checking it worked. */
  type Receive = (name: string, dest: string, archive: boolean) => Promise<void>;

  /** Make the share on `sender` serve the tree at `root` (a path of sources()); resolves to its stop. */
  type Serve = (root: string) => Promise<() => Promise<void>>;

  /** The cases, each run by `receive` from a share on `sender`, clean and under 10% loss. */
  function cases(direction: string, sender: number, serve: Serve, receive: Receive, linkOwners = true): void {
    /** Serve `root` (relative to work), run fn with `loss` % on the receiver's port, record time and bytes. */
    const measured = async (name: string, root: string, loss: number, fn: () => Promise<void>) => {
      const stop = await serve(path.join(work, root));
      await lab.setLoss(RECEIVER, loss);
      try {
        const before = await lab.counters(sender);
        const t0 = performance.now();
        await fn();
        const seconds = (performance.now() - t0) / 1000;
        const after = await lab.counters(sender);
        figures.push({ name: `${direction}: ${name}${loss ? ', 10% loss' : ''}`, seconds, senderBytes: after.tx_bytes - before.tx_bytes });
      } finally {
        await lab.setLoss(RECEIVER, 0);
        await stop();
      }
    };
    for (const loss of [0, 10]) {
      const under = loss ? ' under 10% loss' : '';
      it(`a 16 MiB file${under}`, async () => {
        await measured('16 MiB file', 'big', loss, async () => {
          const dest = path.join(freshDir(), 'big.bin');
          await receive('big/big.bin', dest, false);
          expect(sha256(dest)).toBe(sha256(path.join(work, 'big', 'big.bin')));
        });
      }, (SYNC_BOUND_S + 30) * 1000);

      it(`share.tar with -a: content, every mode, owner and nanosecond time, and the C tool's root hash${under}`, async () => {
        await measured('share.tar -a', 'tar/share', loss, async () => {
          const dest = freshDir();
          await receive('share', dest, true);
          const src = path.join(work, 'tar', 'share');
          expect(treeListing(path.join(dest, 'share'), { times: true, owners: true })).toEqual(treeListing(src, { times: true, owners: true }));
          expect(statSync(path.join(dest, 'share')).mode).toBe(statSync(src).mode);
          const idx = execFileSync(process.execPath, [cli, 'index', path.join(dest, 'share')], { encoding: 'utf8' });
          expect(idx.split(/\s+/)[0]).toBe(SHARE_TAR_ROOT);
        });
      }, (SYNC_BOUND_S + 30) * 1000);

      it(`a subdirectory by name (share/sub)${under}`, async () => {
        await measured('share/sub -a', 'tar/share', loss, async () => {
          const dest = freshDir();
          await receive('share/sub', dest, true);
          expect(treeListing(path.join(dest, 'sub'), { times: true, owners: true })).toEqual(treeListing(path.join(work, 'tar', 'share', 'sub'), { times: true, owners: true }));
        });
      }, (SYNC_BOUND_S + 30) * 1000);

      it(`an empty file by name${under}`, async () => {
        await measured('empty file', 'edge', loss, async () => {
          const dest = path.join(freshDir(), 'empty');
          await receive('edge/empty', dest, false);
          expect(existsSync(dest)).toBe(true);
          expect(statSync(dest).size).toBe(0);
          expect(statSync(dest).isFile()).toBe(true);
        });
      }, (SYNC_BOUND_S + 30) * 1000);

      it(`symlinks (to a file, a directory, dangling, absolute, upwards) with odd modes and owners, -a${under}`, async () => {
        await measured('symlinks -a', 'edge', loss, async () => {
          const dest = freshDir();
          await receive('edge', dest, true);
          const got = treeListing(path.join(dest, 'edge'), { times: true, owners: true });
          const want = treeListing(path.join(work, 'edge'), { times: true, owners: true });
          expect(linkOwners ? got : withoutLinkOwners(got)).toEqual(linkOwners ? want : withoutLinkOwners(want));
          expect(got.filter((l) => l.includes(' -> '))).toHaveLength(5);
        });
      }, (SYNC_BOUND_S + 30) * 1000);
    }
  }

  describe('C lcshare -> our lcsync sync', () => {
    // One C share per tree: a C lcshare given several paths leaves objects of all but the last unserved (its
    // defect: `lcshare share other` never answers for share/a.bin, and the C client waits for it forever too).
    let share: CShare | undefined;
    afterEach(async () => {
      await share?.stop();
      share = undefined;
    });
    const serve: Serve = async (root) => {
      share = await startCShare(lab, C_SHARE, [root]);
      const s = share;
      return () => s.stop();
    };
    cases('C share -> our sync', C_SHARE, serve, async (name, dest, archive) => {
      const r = await runSync(lab, RECEIVER, [...(archive ? ['-a'] : []), '--timeout', '30', name, dest], SYNC_BOUND_S * 1000);
      expect(r.code, `our sync: ${r.stderr}\nC share: ${share?.stderr().slice(-1000)}`).toBe(0);
    });
  });

  describe('our lcsync share -> C lcsync', () => {
    let share: RunningShare;
    beforeAll(async () => {
      share = await startShare(lab, OUR_SHARE, sources(), [], 60_000);
    }, 90_000);
    afterAll(async () => {
      await share?.stop();
    });
    // One share of all trees, as our share serves several paths.
    cases('our share -> C sync', OUR_SHARE, async () => async () => undefined, async (name, dest, archive) => {
      const r = await runCSync(lab, RECEIVER, [...(archive ? ['-a'] : []), name, dest], { batch: true }, SYNC_BOUND_S * 1000);
      expect(r.code, `${describeRun(r)}\nour share: ${share.stderr().slice(-1000)}`).toBe(0);
      // The C client never sets a symlink's own owner (see makeEdgeTree), whoever serves it.
    }, false);
  });

  // Why --symbol-size 1368 is an option and 1024 the default: the C client takes T = 1024 only.
  it('our share with --symbol-size 1368: our sync completes, the C client gets nothing and writes nothing', async () => {
    const share = await startShare(lab, OUR_SHARE, [path.join(work, 'big')], ['--symbol-size', '1368'], 60_000);
    try {
      // The same file as 'our share -> C sync' fetches from a share at 1024 (above).
      const ours = path.join(freshDir(), 'big.bin');
      const r = await runSync(lab, RECEIVER, ['--timeout', '30', 'big/big.bin', ours], SYNC_BOUND_S * 1000);
      expect(r.code, `our sync: ${r.stderr}`).toBe(0);
      expect(sha256(ours)).toBe(sha256(path.join(work, 'big', 'big.bin')));
      const theirs = path.join(freshDir(), 'big.bin');
      const c = await runCSync(lab, RECEIVER, ['big/big.bin', theirs], { batch: true }, 8000);
      expect(c.code === 0 && !c.timedOut, describeRun(c)).toBe(false);
      expect(existsSync(theirs)).toBe(false);
      console.log(`C lcsync from a share at --symbol-size 1368: ${describeRun(c).slice(0, 300)}`);
    } finally {
      await share.stop();
    }
  }, 120_000);
});
