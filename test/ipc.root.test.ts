/**
 * `lcsync status` against real shares in a lab network (needs root): two
 * shares are listed with their roots; after one is SIGKILLed only the live one
 * is listed and the dead one's socket is gone.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { cli, startShare } from './e2e.js';

const why = skipReason();

function status(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'status', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

describeUnless(why, 'lcsync status with running shares (needs root)', () => {
  let lab: Lab;
  let work: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-status-'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('lists two shares with their roots, then only the live one after a SIGKILL, removing the stale socket', async () => {
    const rundir = path.join(work, 'run');
    mkdirSync(path.join(work, 'a'));
    writeFileSync(path.join(work, 'a', 'one.bin'), randomBytes(100_000));
    writeFileSync(path.join(work, 'b.bin'), randomBytes(50_000));
    const extra = ['--rundir', rundir, '--cache', path.join(work, 'cache')];
    const s0 = await startShare(lab, 0, [path.join(work, 'a')], extra);
    const s1 = await startShare(lab, 1, [path.join(work, 'b.bin')], extra);
    try {
      const r = await status(['--json', '--rundir', rundir]);
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      const byPid = new Map<number, any>(doc.shares.map((s: any) => [s.pid, s]));
      expect([...byPid.keys()].sort()).toEqual([s0.proc.pid, s1.proc.pid].sort());
      const a = byPid.get(s0.proc.pid!);
      expect(a.roots).toEqual([{ path: path.join(work, 'a'), shareName: 'a', type: 'dir', hash: s0.roots[0]!.hash }]);
      expect(a.interfaces).toEqual(['e0']);
      expect(a.objects).toBeGreaterThan(0);
      for (const k of ['listeners', 'streams']) expect(Array.isArray(a[k])).toBe(true);
      for (const k of ['datagrams', 'bytes', 'rateNow', 'rateAvg', 'uptimeSec']) expect(typeof a[k]).toBe('number');
      expect(byPid.get(s1.proc.pid!).roots[0].hash).toBe(s1.roots[0]!.hash);
      // The human table names both.
      const h = await status(['--rundir', rundir]);
      expect(h.stdout).toContain(s0.roots[0]!.hash);
      expect(h.stdout).toContain(s1.roots[0]!.hash);

      const killedSock = path.join(rundir, `share-${s1.proc.pid}.sock`);
      expect(existsSync(killedSock)).toBe(true);
      s1.proc.kill('SIGKILL');
      await new Promise((res) => (s1.proc.exitCode !== null ? res(null) : s1.proc.once('exit', res)));
      const after = await status(['--json', '--rundir', rundir]);
      expect(after.code, after.stderr).toBe(0);
      const doc2 = JSON.parse(after.stdout);
      expect(doc2.shares.map((s: any) => s.pid)).toEqual([s0.proc.pid]);
      expect(doc2.staleRemoved.map((s: any) => s.pid)).toEqual([s1.proc.pid]);
      expect(existsSync(killedSock)).toBe(false);
      // A clean stop removes its own socket.
      await s0.stop();
      expect(existsSync(path.join(rundir, `share-${s0.proc.pid}.sock`))).toBe(false);
      const none = await status(['--rundir', rundir]);
      expect(none.code).toBe(0);
      expect(none.stdout).toBe(`no lcsync share is running (looked in ${rundir})\n`);
    } finally {
      await s0.stop();
      // e2e.ts stop() waits for an 'exit' that a process already killed by a signal never emits again.
      if (s1.proc.exitCode === null && s1.proc.signalCode === null) await s1.stop();
    }
  }, 120_000);
});
