/**
 * The exit statuses of src/core/base/errors.ts ExitCode that need a network (3 by timeout, 4, 5, 6, 130 and
 * 1), each from a real run of bin/run.js (build first: npm run build) in lab namespaces: needs root, skipped with
 * the reason printed otherwise. Those without a network: test/exitcodes.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ExitCode } from '../src/core/base/errors.js';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { useTempDir } from './tmpdir.js';
import { cli, repo, sha256, startShare } from './e2e.js';

// Readable by `nobody` for the permission case.
const tmp = useTempDir('lcsync-exit-', 0o755);

const why = skipReason();

describeUnless(why, 'exit codes over a lab network (needs root)', () => {
  let lab: Lab;
  const syncArgs = ['sync', '--json', '-i', 'e0'];

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
  }, 60_000);
  afterAll(async () => {
    await lab?.teardown();
  });

  it('3: sync with --timeout 2 of a hash nobody serves', async () => {
    const dest = path.join(tmp.dir(), 't3');
    const t0 = Date.now();
    const r = await lab.exec(1, [process.execPath, cli, ...syncArgs, '--timeout', '2', randomBytes(32).toString('hex'), dest], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(ExitCode.notFound);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'TIMEOUT', exitCode: 3 } });
    expect(existsSync(dest)).toBe(false);
  }, 60_000);

  it('4: sync from a sender whose tree does not verify', async () => {
    const sender = lab.spawn(0, [process.execPath, path.join(repo, 'test', 'fixtures', 'ops-bad-sender.mjs'), 'e0']);
    try {
      const key = await new Promise<string>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error('bad sender did not start')), 20_000);
        sender.stdout!.on('data', (d) => {
          out += d;
          const m = /^([0-9a-f]{64})\n/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      const dest = path.join(tmp.dir(), 't4.bin');
      const r = await lab.exec(1, [process.execPath, cli, ...syncArgs, '--timeout', '10', key, dest], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(ExitCode.integrity);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'INTEGRITY' } });
      expect(r.stderr).toMatch(/does not verify/);
      expect(existsSync(dest)).toBe(false);
    } finally {
      sender.kill('SIGKILL');
    }
  }, 60_000);

  it('5: share run without CAP_NET_RAW', async () => {
    const f = path.join(tmp.dir(), 'p5.bin');
    writeFileSync(f, randomBytes(1000));
    chmodSync(f, 0o644);
    // Root without CAP_NET_RAW in its bounding set: as an unprivileged user would run it, but able
    // to read the checkout wherever CI cloned it.
    const r = await lab.exec(0, ['setpriv', '--bounding-set', '-net_raw', '--inh-caps', '-net_raw', '--',
      process.execPath, cli, 'share', '-i', 'e0', '--no-cache', '--rundir', path.join(tmp.dir(), 'run5'), f], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(ExitCode.permission);
    expect(r.stderr).toMatch(/CAP_NET_RAW/);
  }, 60_000);

  it('6: sync into a read-only file system, and into a destination below a regular file', async () => {
    const src = path.join(tmp.dir(), 's6.bin');
    writeFileSync(src, randomBytes(100_000));
    const share = await startShare(lab, 0, [src], ['--rundir', path.join(tmp.dir(), 'run6'), '--no-cache']);
    try {
      const ro = path.join(tmp.dir(), 'ro');
      mkdirSync(ro);
      // A private mount namespace: the read-only bind mount exists only for this one sync.
      const script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"';
      const r = await lab.exec(1, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', ro,
        process.execPath, cli, ...syncArgs, '--timeout', '10', share.roots[0]!.hash, path.join(ro, 'out.bin')], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(ExitCode.io);
      expect(r.stderr).toMatch(/read-only file system/);
      expect(readdirSync(ro)).toEqual([]);
      const plain = path.join(tmp.dir(), 'plain6');
      writeFileSync(plain, 'x');
      const r2 = await lab.exec(1, [process.execPath, cli, ...syncArgs, '--timeout', '10', share.roots[0]!.hash, path.join(plain, 'out.bin')], { timeoutMs: 60_000 });
      expect(r2.code, r2.stderr).toBe(ExitCode.io);
      // And with a writable destination the same run succeeds (the share was fine all along).
      const good = path.join(tmp.dir(), 'good6.bin');
      const ok = await lab.exec(1, [process.execPath, cli, ...syncArgs, '--timeout', '10', share.roots[0]!.hash, good], { timeoutMs: 60_000 });
      expect(ok.code, ok.stderr).toBe(ExitCode.ok);
      expect(sha256(good)).toBe(sha256(src));
    } finally {
      await share.stop();
    }
  }, 120_000);

  it('130: sync interrupted by SIGINT while waiting for a sender, leaving nothing behind', async () => {
    const destDir = path.join(tmp.dir(), 'int');
    mkdirSync(destDir);
    const child = lab.spawn(1, [process.execPath, cli, ...syncArgs, randomBytes(32).toString('hex'), path.join(destDir, 'out.bin')]);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => {
      // Long enough to be waiting on the network (past start-up), then interrupt.
      setTimeout(() => child.kill('SIGINT'), 2000);
      const hard = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', (c) => {
        clearTimeout(hard);
        resolve(c);
      });
    });
    expect(code).toBe(ExitCode.interrupted);
    expect(JSON.parse(out)).toMatchObject({ ok: false, error: { code: 'INTERRUPTED', exitCode: 130 } });
    expect(readdirSync(destDir)).toEqual([]);
  }, 60_000);

  it('5: share without the lcsync addon (node --no-addons) cannot watch MLD: one line naming --push; --push still shares', async () => {
    const f = path.join(tmp.dir(), 'i1.bin');
    writeFileSync(f, 'x');
    const r = await lab.exec(0, [process.execPath, '--no-addons', cli, 'share', '-i', 'e0', '--no-cache', '--rundir', path.join(tmp.dir(), 'run1'), f], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(ExitCode.permission);
    const lines = r.stderr.trim().split('\n').filter((l) => !/unencrypted|no key/i.test(l));
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/cannot watch MLD: cannot load the lcsync addon/);
    expect(lines[0]).toMatch(/--push/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    // --push needs no raw socket: without the addon the share runs over node:dgram and a sync (also without
    // the addon) receives the file.
    const share = lab.spawn(0, [process.execPath, '--no-addons', cli, 'share', '--json', '-i', 'e0', '--push', '--push-interval', '1',
      '--no-cache', '--rundir', path.join(tmp.dir(), 'run1p'), f]);
    try {
      const hash = await new Promise<string>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error('push share did not start')), 20_000);
        share.stdout!.on('data', (d) => {
          out += d;
          const m = /"hash":\s*"([0-9a-f]{64})"/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
        share.once('exit', (c) => reject(new Error(`push share exited with ${c}`)));
      });
      const dest = path.join(tmp.dir(), 'i1-out.bin');
      const got = await lab.exec(1, [process.execPath, '--no-addons', cli, ...syncArgs, '--timeout', '15', hash, dest], { timeoutMs: 60_000 });
      expect(got.code, got.stderr).toBe(ExitCode.ok);
      expect(sha256(dest)).toBe(sha256(f));
    } finally {
      share.kill('SIGKILL');
    }
  }, 90_000);
});
