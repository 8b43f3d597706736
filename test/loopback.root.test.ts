/**
 * One host, loopback only (needs root): in a fresh network namespace of its own that has nothing but
 * `lo`, `lcsync share -i lo` and `lcsync sync -i lo` first refuse with the route lo lacks, then, once
 * that route is added, sync a directory end to end. Nothing runs in the machine's own namespace.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isRoot } from './lab.js';
import { cli, sha256 } from './e2e.js';
import { describeUnless } from './skip.js';

function skipWhy(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (!isRoot) return 'needs root to create network namespaces';
  const r = spawnSync('ip', ['-V'], { stdio: 'ignore', timeout: 5000 });
  if (r.error || r.status === null) return 'needs `ip` (iproute2) on PATH';
  return undefined;
}
const why = skipWhy();

const ns = `lcsync-lo-${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;

/** No key from the environment: the runs below are plaintext unless they say otherwise. */
const env = { ...process.env };
delete env.LCSYNC_PASSWORD;

function inNs(args: string[], timeoutMs = 60_000): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', timeout: timeoutMs, env });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function must(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

describeUnless(why, 'share and sync on lo, one host (needs root)', () => {
  let work: string;
  let share: ChildProcess | undefined;

  beforeAll(() => {
    must(['netns', 'add', ns]);
    must(['-n', ns, 'link', 'set', 'lo', 'up']);
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-lo-'));
    mkdirSync(path.join(work, 'music', 'a'), { recursive: true });
    writeFileSync(path.join(work, 'music', 'big.bin'), randomBytes(3 * 1024 * 1024 + 17));
    writeFileSync(path.join(work, 'music', 'a', 'small.txt'), 'one host is enough\n');
  });

  afterAll(() => {
    if (share && share.exitCode === null && share.signalCode === null) share.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('without the route, share and sync on lo refuse with one line naming the fix (exit 2)', () => {
    for (const args of [
      ['share', '-b', '--no-cache', '--rundir', path.join(work, 'run'), '-i', 'lo', '--loopback', path.join(work, 'music')],
      ['sync', '-b', '-a', '-i', 'lo', '--timeout', '2', 'music/', path.join(work, 'never')],
    ]) {
      const r = inNs([process.execPath, cli, ...args]);
      expect(r.code, r.stderr).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('ip -6 route add local ff00::/8 dev lo');
      expect(lines[0]).toContain('veth');
    }
  });

  it('with nothing but lo, share and sync without -i point to -i lo (exit 2)', () => {
    for (const args of [
      ['share', '-b', '--no-cache', '--rundir', path.join(work, 'run'), path.join(work, 'music')],
      ['sync', '-b', '-a', '--timeout', '2', 'music/', path.join(work, 'never')],
    ]) {
      const r = inNs([process.execPath, cli, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toEqual(['lcsync: no multicast-capable interface with an IPv6 address is up; name one with -i (on one machine: -i lo, see "Try it on one machine" in the README)']);
    }
  });

  it('with `ip -6 route add local ff00::/8 dev lo`, a share on lo serves a sync on lo (MLD joins seen on lo)', async () => {
    must(['-n', ns, '-6', 'route', 'add', 'local', 'ff00::/8', 'dev', 'lo']);
    // Not push mode: the share learns of the receiver from its MLD report on lo.
    share = spawn('ip', ['netns', 'exec', ns, process.execPath, cli, 'share', '--json', '--no-cache', '--rundir', path.join(work, 'run'), '-i', 'lo', path.join(work, 'music')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    let out = '';
    let err = '';
    share.stderr!.on('data', (d) => (err += d));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`share did not start: ${err}`)), 30_000);
      share!.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('"roots"') && out.trimEnd().endsWith('}')) {
          clearTimeout(t);
          resolve();
        }
      });
      share!.once('exit', (code) => reject(new Error(`share exited with ${code}: ${err}`)));
    });
    await new Promise((r) => setTimeout(r, 300));
    const dest = path.join(work, 'out');
    const r = inNs([process.execPath, cli, 'sync', '--json', '-a', '-i', 'lo', '--timeout', '20', 'music/', dest], 90_000);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dest, 'big.bin'))).toBe(sha256(path.join(work, 'music', 'big.bin')));
    expect(sha256(path.join(dest, 'a', 'small.txt'))).toBe(sha256(path.join(work, 'music', 'a', 'small.txt')));
    expect(JSON.parse(r.stdout).files.created).toBe(2);
    // A sync of a plaintext share says nothing about keys unless -v.
    expect(r.stderr).not.toMatch(/no key/);
    // One file of one chunk, in text mode: the summary counts in the singular.
    const one = inNs([process.execPath, cli, 'sync', '-i', 'lo', '--timeout', '20', 'music/a/small.txt', path.join(work, 'one.txt')], 90_000);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stderr).toMatch(/: 1 created, 0 updated/);
    expect(one.stderr).toMatch(/, 1 chunk fetched, 0 reused,/);
    expect(one.stderr).not.toMatch(/no key/);
    share.kill('SIGTERM');
    await new Promise((resolve) => share!.once('exit', resolve));
    // The share said once that objects travel unencrypted.
    expect(err.match(/unencrypted/g) ?? []).toHaveLength(1);
  }, 120_000);
});
