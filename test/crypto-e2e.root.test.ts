/**
 * Encryption and signed roots end to end (needs root): share and sync in lab
 * namespaces with a key file, with a password, with a wrong key; signed roots
 * checked with the right key, another key, and a forged signature.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { cli, repo, runSync, sha256, startShare } from './e2e.js';
import { ExitCode } from '../src/core/base/errors.js';

const why = skipReason(['nft']);

describeUnless(why, 'encrypted and signed shares (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let keyfile: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: false });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-crypto-'));
    mkdirSync(path.join(work, 'data'));
    src = path.join(work, 'data', 'secret.bin');
    writeFileSync(src, randomBytes(200_000));
    keyfile = path.join(work, 'key');
    writeFileSync(keyfile, randomBytes(128));
    for (const k of ['a', 'b']) execFileSync(process.execPath, [cli, 'keygen', '--output', path.join(work, `sig-${k}`)], { stdio: 'ignore' });
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('syncs with a key file; a wrong key fails with exit 4 and leaves the destination untouched; no key times out with a hint', async () => {
    const share = await startShare(lab, 0, [src], ['--keyfile', keyfile]);
    try {
      const dest = path.join(work, 'k-out.bin');
      const r = await runSync(lab, 1, ['--keyfile', keyfile, share.roots[0]!.hash, dest]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(dest)).toBe(sha256(src));

      const wrong = path.join(work, 'wrongkey');
      writeFileSync(wrong, randomBytes(128));
      const old = path.join(work, 'k-old.bin');
      writeFileSync(old, 'old content');
      const bad = await runSync(lab, 2, ['--keyfile', wrong, share.roots[0]!.hash, old]);
      expect(bad.code).toBe(ExitCode.integrity);
      expect(bad.stderr).toContain('cannot decrypt: wrong key or password');
      expect(readFileSync(old, 'utf8')).toBe('old content');

      const none = await runSync(lab, 2, ['--timeout', '3', share.roots[0]!.hash, path.join(work, 'k-none.bin')]);
      expect(none.code).toBe(ExitCode.notFound);
      expect(none.stderr).toMatch(/is the share encrypted\?/);
      expect(existsSync(path.join(work, 'k-none.bin'))).toBe(false);
    } finally {
      await share.stop();
    }
  }, 120_000);

  it('syncs with the same password on both sides (LCSYNC_PASSWORD), and -b refuses a key', async () => {
    const rundir = mkdtempSync(path.join(tmpdir(), 'lcsync-run-'));
    const proc = lab.spawn(0, [process.execPath, cli, 'share', '--json', '-i', 'e0', '--no-cache', '--rundir', rundir, src], { env: { ...process.env, LCSYNC_PASSWORD: 'correct horse battery staple!' } });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 100 && !out.includes('}'); i++) await new Promise((r) => setTimeout(r, 100));
      const root = JSON.parse(out.slice(0, out.indexOf('\n}') + 2)).roots[0].hash as string;
      const dest = path.join(work, 'p-out.bin');
      const r = await lab.exec(1, [process.execPath, cli, 'sync', '-i', 'e0', '--timeout', '20', root, dest], { env: { ...process.env, LCSYNC_PASSWORD: 'correct horse battery staple!' }, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(dest)).toBe(sha256(src));
      const b = await lab.exec(1, [process.execPath, cli, 'sync', '-b', '--keyfile', keyfile, '-i', 'e0', root, dest]);
      expect(b.code).toBe(ExitCode.usage);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      rmSync(rundir, { recursive: true, force: true });
    }
  }, 120_000);

  it('a signed root syncs with the right public key and is refused, before anything is written, with another key or a forged signature', async () => {
    const share = await startShare(lab, 0, [src], ['--sign', path.join(work, 'sig-a')]);
    try {
      const root = share.roots[0]!.hash;
      const ok = await runSync(lab, 1, ['--trust', path.join(work, 'sig-a.pub'), 'secret.bin', path.join(work, 's-ok.bin')]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(sha256(path.join(work, 's-ok.bin'))).toBe(sha256(src));
      const other = await runSync(lab, 2, ['--trust', path.join(work, 'sig-b.pub'), root, path.join(work, 's-other.bin')]);
      expect(other.code).toBe(ExitCode.integrity);
      expect(other.stderr).toMatch(/not signed by the trusted key/);
      expect(existsSync(path.join(work, 's-other.bin'))).toBe(false);
    } finally {
      await share.stop();
    }
    // An unsigned share, and a forger who sends a signature by key A with one bit changed.
    const plain = await startShare(lab, 0, [src]);
    const forger = lab.spawn(0, [process.execPath, path.join(repo, 'test', 'fixtures', 'e2e-tampered-signature.mjs'), 'e0', plain.roots[0]!.hash, 'secret.bin', path.join(work, 'sig-a')]);
    try {
      const forged = await runSync(lab, 1, ['--trust', path.join(work, 'sig-a.pub'), plain.roots[0]!.hash, path.join(work, 's-forged.bin')]);
      expect(forged.code).toBe(ExitCode.integrity);
      expect(forged.stderr).toMatch(/signature is invalid/);
      expect(existsSync(path.join(work, 's-forged.bin'))).toBe(false);
    } finally {
      forger.kill('SIGKILL');
      await plain.stop();
    }
  }, 120_000);
});
