/**
 * Live mirrors end to end (`lcsync sync --follow`, sync/live.ts, share/announce.ts) in a lab: a
 * share on host 0 that follows its files, two mirrors on hosts 1 and 2. Each change on the share
 * (grow a file, shrink one, delete one, rename one) reaches both mirrors, which end identical to
 * the source after each; --exec runs once per sync that changed something, with its paths; the
 * share counts the two followers; a share killed by PID and started again (with a change made
 * while it was down) is followed again without restarting the mirrors, and so is a change made while
 * a mirror's link dropped every packet; SIGTERM ends a mirror with
 * exit 0, also in the middle of a transfer, and leaves no temporary copy behind.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createLab, killGroup, skipReason, type Lab } from './lab.js';
import { cli, startShare, treeListing, type RunningShare } from './e2e.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describeUnless } from './skip.js';

const why = skipReason();

/** Poll `ok` every 100 ms until it holds or `ms` pass; returns whether it held. */
async function waitFor(ok: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ok()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return ok();
}

/** Every path under `dir`, recursively (temporary copies included). */
function allNames(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String);
}

describeUnless(why, 'sync --follow: live mirrors (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let share: RunningShare;
  let rundir: string;
  const mirrors: { proc: ChildProcess; dest: string; hooks: string; err: () => string; exit: Promise<number | null> }[] = [];

  function follow(host: number): (typeof mirrors)[number] {
    const dest = path.join(work, `mirror${host}`);
    const hooks = path.join(work, `hooks${host}`);
    mkdirSync(hooks);
    // Each run of the hook writes the paths it got into a file of its own (named by the shell's pid).
    const proc = lab.spawn(host, [process.execPath, cli, 'sync', '--follow', '-a', '--delete', '-v', '-i', 'e0', '--no-cache', '--timeout', '5', '--exec', `cat > '${hooks}'/run.$$`, 'music/', dest]);
    let err = '';
    proc.stderr!.on('data', (d) => (err += d));
    const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const m = { proc, dest, hooks, err: () => err, exit };
    mirrors.push(m);
    return m;
  }

  const same = (dest: string) => {
    try {
      return treeListing(dest).join('\n') === treeListing(src).join('\n');
    } catch {
      return false; // a temporary copy came and went while listing: not settled yet
    }
  };
  const allSame = () => mirrors.every((m) => same(m.dest));
  const hookRuns = (m: (typeof mirrors)[number]) => readdirSync(m.hooks).map((f) => readFileSync(path.join(m.hooks, f), 'utf8').split('\n').filter(Boolean).sort());

  beforeAll(async () => {
    lab = await createLab({ hosts: 3 });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-mirror-'));
    src = path.join(work, 'music');
    rundir = path.join(work, 'run');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'grow.bin'), randomBytes(40_000));
    writeFileSync(path.join(src, 'shrink.bin'), randomBytes(200_000));
    writeFileSync(path.join(src, 'gone.txt'), 'deleted soon\n');
    writeFileSync(path.join(src, 'sub', 'old-name.txt'), 'renamed soon\n');
    share = await startShare(lab, 0, [src], ['-v', '--rundir', rundir]);
  }, 60_000);

  afterAll(async () => {
    for (const m of mirrors) if (m.proc.exitCode === null && m.proc.signalCode === null) killGroup(m.proc, 'SIGKILL');
    await share?.stop();
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('two mirrors follow grow, shrink, delete and rename, identical after each; the hook runs per change', async () => {
    const a = follow(1);
    const b = follow(2);
    expect(await waitFor(allSame, 30_000), `${a.err()}\n${b.err()}`).toBe(true);
    // Both mirrors are known to the share as followers of "music" (their MLD reports of the watch group).
    let followers: unknown;
    const counted = await waitFor(() => {
      const r = spawnSync(process.execPath, [cli, 'status', '--json', '--rundir', rundir], { encoding: 'utf8', timeout: 10_000 });
      followers = JSON.parse(r.stdout || '{}').shares?.[0]?.followers;
      return JSON.stringify(followers) === JSON.stringify([{ shareName: 'music', ifname: 'e0', hosts: 2 }]);
    }, 15_000);
    expect(counted, JSON.stringify(followers)).toBe(true);
    const human = spawnSync(process.execPath, [cli, 'status', '--rundir', rundir], { encoding: 'utf8', timeout: 10_000 });
    expect(human.stdout).toMatch(/followers of music on e0: 2 hosts/);

    const steps: [string, () => void, string[]][] = [
      ['grow', () => appendFileSync(path.join(src, 'grow.bin'), randomBytes(70_000)), ['grow.bin']],
      ['shrink', () => truncateSync(path.join(src, 'shrink.bin'), 1000), ['shrink.bin']],
      ['delete', () => rmSync(path.join(src, 'gone.txt')), ['gone.txt']],
      ['rename', () => renameSync(path.join(src, 'sub', 'old-name.txt'), path.join(src, 'sub', 'new-name.txt')), ['sub/new-name.txt', 'sub/old-name.txt']],
    ];
    for (const [what, change, paths] of steps) {
      const runsBefore = mirrors.map((m) => hookRuns(m).length);
      change();
      expect(await waitFor(allSame, 20_000), `${what}: ${a.err()}\n${b.err()}`).toBe(true);
      // The hook ran once more on each mirror (once its sync ended), with exactly the paths that changed.
      for (const [i, m] of mirrors.entries()) {
        // (A hook's file exists as soon as its shell opens it: wait for what it wrote, too.)
        const wrote = () => hookRuns(m).some((r) => JSON.stringify(r) === JSON.stringify(paths));
        expect(await waitFor(() => hookRuns(m).length === runsBefore[i]! + 1 && wrote(), 5000), `${what}: ${JSON.stringify(hookRuns(m))} ${m.err()}`).toBe(true);
      }
    }
    // One log line per sync: the first, then one per change (a change may take two when a re-index follows another).
    expect(a.err()).toMatch(/sync 1 \(start\): root [0-9a-f]{64}, \d+ entr(y|ies) changed/);
    expect(a.err()).toMatch(/sync \d+ \(announce\): root [0-9a-f]{64}, 1 entry changed \(0 created, 0 updated, 1 deleted\)/);
    expect(a.err()).not.toMatch(/sync failed/);
  }, 180_000);

  it('keeps following across a share restart, with a change made while the share was down', async () => {
    killGroup(share.proc, 'SIGKILL');
    await new Promise((r) => share.proc.once('exit', r));
    writeFileSync(path.join(src, 'while-down.txt'), 'written while the share was down\n');
    appendFileSync(path.join(src, 'grow.bin'), randomBytes(5000));
    await new Promise((r) => setTimeout(r, 2000));
    share = await startShare(lab, 0, [src], ['-v', '--rundir', rundir]);
    expect(await waitFor(allSame, 40_000), mirrors.map((m) => m.err()).join('\n')).toBe(true);
    for (const m of mirrors) expect(m.proc.exitCode).toBeNull();
    // And a change after the restart still arrives.
    writeFileSync(path.join(src, 'after.txt'), 'after the restart\n');
    expect(await waitFor(allSame, 20_000), mirrors.map((m) => m.err()).join('\n')).toBe(true);
  }, 120_000);

  it('keeps following after its network dropped for a while (the next heartbeat brings the root)', async () => {
    const [a, b] = mirrors as [(typeof mirrors)[number], (typeof mirrors)[number]];
    await lab.setLoss(1, 100);
    try {
      writeFileSync(path.join(src, 'during-drop.txt'), 'written while host 1 was cut off\n');
      expect(await waitFor(() => same(b.dest), 20_000), b.err()).toBe(true);
      await new Promise((r) => setTimeout(r, 3000));
      expect(same(a.dest)).toBe(false);
    } finally {
      await lab.setLoss(1, 0);
    }
    expect(await waitFor(allSame, 60_000), a.err()).toBe(true);
    expect(a.proc.exitCode).toBeNull();
  }, 120_000);

  it('SIGTERM ends a mirror with exit 0 and no temporary copy, also mid-transfer', async () => {
    const [a, b] = mirrors as [(typeof mirrors)[number], (typeof mirrors)[number]];
    // Idle: stops at once.
    killGroup(a.proc, 'SIGTERM');
    expect(await a.exit).toBe(0);
    expect(a.err()).toMatch(/stopped after \d+ syncs/);
    // Mid-transfer: a large new file, and SIGTERM as soon as the mirror starts on it.
    writeFileSync(path.join(src, 'large.bin'), randomBytes(48 << 20));
    const end = Date.now() + 30_000;
    let started = false;
    while (!started && Date.now() < end) {
      started = allNames(b.dest).some((n) => n.includes('.lcsync-'));
      if (!started) await new Promise((r) => setTimeout(r, 10));
    }
    expect(started, `no temporary copy of large.bin seen: ${b.err()}`).toBe(true);
    killGroup(b.proc, 'SIGTERM');
    expect(await b.exit).toBe(0);
    for (const m of mirrors) expect(allNames(m.dest).filter((n) => n.includes('.lcsync-'))).toEqual([]);
    // What is there is whole: large.bin is absent or complete.
    const large = path.join(b.dest, 'large.bin');
    if (existsSync(large)) expect(readFileSync(large).equals(readFileSync(path.join(src, 'large.bin')))).toBe(true);
  }, 120_000);
});
