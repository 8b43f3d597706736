/**
 * Two receivers into one destination at once, many times (needs root): `lcsync sync` on two
 * lab hosts into the same directory (the file system is shared). Both must exit 0 and leave
 * the destination equal to the source, with no temporary file behind, every round.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { cli, expectBuilt, runSync, startShare, treeListing, type RunningShare, type SyncRun } from './e2e.js';
import { describeUnless } from './skip.js';

const why = skipReason(['nft']) ?? (spawnSync('unshare', ['--pid', '--fork', 'true'], { timeout: 5000 }).status !== 0 ? 'unshare --pid does not work here' : undefined);

const ROUNDS = 10;

/** `lcsync sync --json` on a lab host, in a new PID namespace (unshare -p -f). */
async function syncInOwnPidNamespace(lab: Lab, host: number, args: string[]): Promise<SyncRun> {
  const r = await lab.exec(host, ['unshare', '--pid', '--fork', '--', process.execPath, cli, 'sync', '--json', '-i', 'e0', ...args], { timeoutMs: 90_000 });
  let summary: Record<string, any> | undefined;
  try {
    summary = JSON.parse(r.stdout);
  } catch {
    summary = undefined;
  }
  return { ...r, summary };
}

describeUnless(why, 'two receivers into one destination (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let share: RunningShare;

  beforeAll(async () => {
    expectBuilt(['sync/writer', 'sync/sync', 'sync/session', 'sync/file', 'sync/chunks', 'index/mdex']);
    lab = await createLab({ hosts: 3, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-concurrent-'));
    src = path.join(work, 'share');
    mkdirSync(path.join(src, 'sub', 'deeper'), { recursive: true });
    writeFileSync(path.join(src, 'big.bin'), randomBytes(24 * 1024 * 1024));
    writeFileSync(path.join(src, 'mid.bin'), randomBytes(700_000));
    for (let i = 0; i < 12; i++) writeFileSync(path.join(src, 'sub', `f${i}.txt`), `file ${i}\n`.repeat(i * 50 + 1));
    writeFileSync(path.join(src, 'sub', 'deeper', 'x.bin'), randomBytes(100_000));
    writeFileSync(path.join(src, 'empty'), '');
    symlinkSync('sub/f1.txt', path.join(src, 'link'));
    share = await startShare(lab, 0, [src]);
  }, 60_000);

  afterAll(async () => {
    await share?.stop();
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(`${ROUNDS} rounds: both exit 0, the destination equals the source, no temp is left`, async () => {
    const want = treeListing(src, { times: true });
    // An old copy of big.bin: its chunks moved by 1 MiB, so the receivers reuse them from the old file.
    const old = readFileSync(path.join(src, 'big.bin')).subarray(0, 12 * 1024 * 1024);
    const codes: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const dest = path.join(work, `dest${round}`);
      mkdirSync(dest);
      if (round % 2 === 1) {
        // Half the rounds start from an old copy: updates go through temporary copies of existing files.
        mkdirSync(path.join(dest, 'sub'), { recursive: true });
        writeFileSync(path.join(dest, 'big.bin'), Buffer.concat([randomBytes(1024 * 1024), old]));
        writeFileSync(path.join(dest, 'sub', 'f3.txt'), 'old\n');
      }
      // The second starts 0 to 1.2 s after the first (at once, or while the first is writing), and in
      // its own PID namespace, like a container sharing the directory: the first's pid means nothing there.
      // In odd rounds the first has its own PID namespace too: both are pid 1.
      const args = ['-a', '--timeout', '30', 'share/', dest];
      const [a, b] = await Promise.all([
        round % 2 === 1 ? syncInOwnPidNamespace(lab, 1, args) : runSync(lab, 1, args, 90_000),
        new Promise((r) => setTimeout(r, (round % 5) * 300)).then(() => syncInOwnPidNamespace(lab, 2, args)),
      ]);
      codes.push(`${a.code}/${b.code}`);
      expect(a.code, `round ${round}, receiver 1: ${a.stderr}`).toBe(0);
      expect(b.code, `round ${round}, receiver 2: ${b.stderr}`).toBe(0);
      expect(treeListing(dest, { times: true }), `round ${round}`).toEqual(want);
      expect(readdirSync(dest, { recursive: true }).filter((n) => String(n).includes('.lcsync-')), `round ${round}`).toEqual([]);
    }
    console.log(`concurrent receivers, exit codes per round: ${codes.join(' ')}`);
  }, ROUNDS * 100_000);
});
