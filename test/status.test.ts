/**
 * Status over IPC without a network (src/core/ops/ipc.ts, src/commands/status.ts):
 * a live server answers, a socket nobody listens on is stale and removed, a
 * server that never answers is unresponsive after a second, and the CLI says
 * "no share" with exit 0. Shares over a real network: test/ipc.root.test.ts; a
 * run directory owned by someone else (needs root): test/status.root.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { queryAll, resolveRunDir, serveStatus, socketPath } from '../src/core/ops/ipc.js';
import { cli } from './e2e.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-ipc-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

/** A child that listens on `p` and is then SIGKILLed: leaves a socket file nobody listens on. */
async function staleSocket(p: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(p)}, () => console.log('up')); setTimeout(() => {}, 20000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => child.stdout!.once('data', () => r()));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  expect(existsSync(p)).toBe(true);
}

describe('status IPC', () => {
  it('serves a status document on an owner-only socket and removes it on close', async () => {
    const dir = path.join(work, 'run');
    const srv = await serveStatus(dir, () => ({ pid: process.pid, roots: [{ hash: 'ab'.repeat(32), shareName: 'x' }], bytes: 5n }));
    try {
      expect(srv.path).toBe(socketPath(dir));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(srv.path).mode & 0o777).toBe(0o600);
      const answers = await queryAll(dir);
      expect(answers).toHaveLength(1);
      expect(answers[0]!.pid).toBe(process.pid);
      expect(answers[0]!.status).toMatchObject({ pid: process.pid, bytes: '5', roots: [{ shareName: 'x' }] });
    } finally {
      await srv.close();
    }
    expect(existsSync(srv.path)).toBe(false);
    expect(await queryAll(dir)).toEqual([]);
  });

  it('answers bad requests with an error and keeps serving', async () => {
    const srv = await serveStatus(work, () => ({ fine: true }));
    try {
      const ask = (line: string) =>
        new Promise<string>((resolve, reject) => {
          const c = net.createConnection(srv.path);
          let buf = '';
          c.setEncoding('utf8');
          c.on('connect', () => c.write(line));
          c.on('data', (d) => (buf += d));
          c.on('end', () => resolve(buf));
          c.on('error', reject);
        });
      expect(JSON.parse(await ask('not json\n'))).toMatchObject({ ok: false, error: 'request is not JSON' });
      expect(JSON.parse(await ask('{"cmd":"shutdown"}\n'))).toMatchObject({ ok: false });
      expect(JSON.parse(await ask('x'.repeat(5000)))).toMatchObject({ ok: false, error: 'request too long' });
      expect(JSON.parse(await ask('{"cmd":"status"}\n'))).toEqual({ ok: true, status: { fine: true } });
    } finally {
      await srv.close();
    }
  });

  it('removes stale sockets and reports unresponsive shares within about a second', async () => {
    const dir = path.join(work, 'run');
    mkdirSync(dir, { mode: 0o700 });
    const live = await serveStatus(dir, () => ({ pid: process.pid }));
    const stale = path.join(dir, 'share-999999.sock');
    await staleSocket(stale);
    // Accepts connections, never answers (and never reads, so it must drop them itself to close).
    const muted = new Set<net.Socket>();
    const mute = net.createServer((c) => muted.add(c));
    const mutePath = path.join(dir, 'share-999998.sock');
    await new Promise<void>((r) => mute.listen(mutePath, () => r()));
    // Not a share socket: left alone.
    const other = path.join(dir, 'notes.txt');
    writeFileSync(other, 'x');
    try {
      const t0 = Date.now();
      const answers = await queryAll(dir, 1000);
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(900);
      expect(took).toBeLessThan(3000);
      const by = new Map(answers.map((a) => [a.pid, a]));
      expect(by.get(process.pid)?.status).toEqual({ pid: process.pid });
      expect(by.get(999999)?.error).toBe('stale');
      expect(by.get(999998)?.error).toBe('unresponsive');
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(mutePath)).toBe(true);
      expect(existsSync(other)).toBe(true);
      // And the CLI says the same.
      const r = await runCli(['status', '--json', '--rundir', dir]);
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.shares.map((s: { pid: number }) => s.pid)).toEqual([process.pid]);
      expect(doc.unresponsive.map((s: { pid: number }) => s.pid)).toEqual([999998]);
      const h = await runCli(['status', '--rundir', dir]);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/pid 999998: unresponsive/);
      expect(h.stdout).toMatch(new RegExp(`^pid ${process.pid} `, 'm'));
    } finally {
      await live.close();
      for (const c of muted) c.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  }, 30_000);

  it('prints a clear line and exits 0 when no share runs, also with LCSYNC_RUNDIR and a missing directory', async () => {
    const dir = path.join(work, 'none');
    const r = await runCli(['status'], { ...process.env, LCSYNC_RUNDIR: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`no lcsync share is running (looked in ${dir})\n`);
    const j = await runCli(['status', '--json', '--rundir', dir]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, rundir: dir, shares: [] });
  }, 30_000);

  it('resolves the run directory: flag, LCSYNC_RUNDIR, root, XDG_RUNTIME_DIR, /tmp fallback', () => {
    expect(resolveRunDir('/x', { LCSYNC_RUNDIR: '/y' }, 0)).toEqual({ dir: '/x', source: 'flag' });
    expect(resolveRunDir(undefined, { LCSYNC_RUNDIR: '/y', XDG_RUNTIME_DIR: '/r' }, 1000)).toEqual({ dir: '/y', source: 'env' });
    expect(resolveRunDir(undefined, { XDG_RUNTIME_DIR: '/r' }, 0)).toEqual({ dir: '/run/lcsync', source: 'root' });
    expect(resolveRunDir(undefined, { XDG_RUNTIME_DIR: '/r/1000' }, 1000)).toEqual({ dir: '/r/1000/lcsync', source: 'xdg' });
    expect(resolveRunDir(undefined, {}, 1000)).toEqual({ dir: path.join(tmpdir(), 'lcsync-1000'), source: 'fallback' });
  });
});
