/**
 * `lcsync sync --exclude --delete --exec` end to end through the CLI, in a network namespace of its
 * own on lo (needs root; nothing runs in the machine's own namespace): the excluded paths stay
 * away, what left the source is deleted, and a failing hook gets the changed paths, is logged
 * with its status, and leaves lcsync's exit status 0 and the mirror complete.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const ns = `lcsync-choose-${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
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

describeUnless(why, 'sync --exclude --delete --exec on lo (needs root)', () => {
  let work: string;
  let share: ChildProcess | undefined;

  beforeAll(() => {
    must(['netns', 'add', ns]);
    must(['-n', ns, 'link', 'set', 'lo', 'up']);
    must(['-n', ns, '-6', 'route', 'add', 'local', 'ff00::/8', 'dev', 'lo']);
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-choose-'));
    mkdirSync(path.join(work, 'music', 'a'), { recursive: true });
    mkdirSync(path.join(work, 'music', 'tmp'), { recursive: true });
    writeFileSync(path.join(work, 'music', 'big.bin'), randomBytes(300 * 1024 + 17));
    writeFileSync(path.join(work, 'music', 'a', 'song.ogg'), randomBytes(5000));
    writeFileSync(path.join(work, 'music', 'a', 'notes.log'), randomBytes(70_000));
    writeFileSync(path.join(work, 'music', 'tmp', 'scratch'), randomBytes(1000));
  });

  afterAll(() => {
    if (share && share.exitCode === null && share.signalCode === null) share.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('excluded paths never arrive, --delete removes what left, a failing hook is logged and changes nothing', async () => {
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
    const dest = path.join(work, 'out');
    mkdirSync(dest);
    writeFileSync(path.join(dest, 'stale.txt'), 'left the source long ago');
    writeFileSync(path.join(dest, 'mine.log'), 'excluded: kept');
    const got = path.join(work, 'hook.out');
    const r = inNs(
      [process.execPath, cli, 'sync', '-a', '-i', 'lo', '--no-cache', '--timeout', '20', '--exclude', '*.log', '--exclude', '/tmp/', '--delete', '--exec', `cat > '${got}'; exit 5`, '-0', 'music/', dest],
      90_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(path.join(dest, 'big.bin'))).toBe(sha256(path.join(work, 'music', 'big.bin')));
    expect(sha256(path.join(dest, 'a', 'song.ogg'))).toBe(sha256(path.join(work, 'music', 'a', 'song.ogg')));
    expect(existsSync(path.join(dest, 'a', 'notes.log'))).toBe(false);
    expect(existsSync(path.join(dest, 'tmp'))).toBe(false);
    expect(existsSync(path.join(dest, 'stale.txt'))).toBe(false);
    expect(readFileSync(path.join(dest, 'mine.log'), 'utf8')).toBe('excluded: kept');
    expect(r.stderr).toMatch(/--exec hook exited with status 5 \(4 changed paths\); the mirror is complete/);
    expect(r.stderr).toMatch(/2 created, 0 updated, 0 metadata only, 0 unchanged, 1 deleted/);
    expect(readFileSync(got, 'utf8').split('\0').sort()).toEqual(['', 'a', 'a/song.ogg', 'big.bin', 'stale.txt']);
    share.kill('SIGTERM');
    await new Promise((resolve) => share!.once('exit', resolve));
  }, 120_000);
});
