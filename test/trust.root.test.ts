/**
 * Trust on a lab network (needs root): the real CLI against a spoofer (test/fixtures/trust-spoofer.mjs)
 * that swaps a symlink target, changes the top directory's stat, answers a share name with another
 * root, or sends undecryptable objects to an encrypted sync. With --trust each is refused before
 * anything is written (exit 4, the exact message, the destination unchanged), or for the
 * undecryptable objects dropped while the sync completes; without --trust, what README documents.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { repo, runSync, startShare, treeListing } from './e2e.js';
import { ExitCode } from '../src/core/base/errors.js';
import { formatPublicKey, rawPublicKey } from '../src/core/wire/signature.js';

const why = skipReason(['nft']);

/** The first line of a fixture's stdout that parses as JSON. */
function firstJson(p: ChildProcess, ms = 30_000): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`fixture printed nothing within ${ms} ms: ${err}`)), ms);
    p.stderr?.on('data', (d) => (err += d));
    p.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(out.slice(0, nl)));
      }
    });
    p.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`fixture exited (${c}): ${err}`));
    });
  });
}

describeUnless(why, 'trust against a spoofer (needs root)', () => {
  let lab: Lab;
  let work: string;
  let keyfile: string;
  let pubLine: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: false });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-trust-'));
    const { privateKey } = generateKeyPairSync('ed25519');
    keyfile = path.join(work, 'sign.key');
    writeFileSync(keyfile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    pubLine = formatPublicKey(rawPublicKey(privateKey));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  let n = 0;
  function dest(): string {
    const d = path.join(work, `dest${n++}`);
    mkdirSync(d);
    writeFileSync(path.join(d, 'keep'), 'sentinel\n');
    return d;
  }

  function spoofer(scenario: string, arg: string): ChildProcess {
    return lab.spawn(2, [process.execPath, path.join(repo, 'test', 'fixtures', 'trust-spoofer.mjs'), 'e0', scenario, arg]);
  }

  it('a swapped symlink target: --trust refuses it before anything is written; without --trust the link is written as served', async () => {
    const sp = spoofer('link', keyfile);
    try {
      await firstJson(sp);
      const d = dest();
      const before = treeListing(d);
      const r = await runSync(lab, 1, ['-a', '--timeout', '5', '--trust', pubLine, 'share', d], 60_000);
      expect(r.code, r.stderr).toBe(ExitCode.integrity);
      expect(JSON.parse(r.stdout).error.message).toBe('refusing symlink "share/link": its target "/etc/shadow" is not the signed one "a.txt"');
      expect(treeListing(d)).toEqual(before);
      const plain = await runSync(lab, 1, ['-a', '--timeout', '5', 'share', d], 60_000);
      expect(plain.code, plain.stderr).toBe(0);
      expect(readlinkSync(path.join(d, 'share', 'link'))).toBe('/etc/shadow');
    } finally {
      sp.kill('SIGKILL');
    }
  }, 120_000);

  it('changed top-level metadata: --trust refuses it before anything is written; without --trust -a applies it', async () => {
    const sp = spoofer('meta', keyfile);
    try {
      await firstJson(sp);
      const d = dest();
      const before = treeListing(d);
      const r = await runSync(lab, 1, ['-a', '--timeout', '5', '--trust', pubLine, 'share', d], 60_000);
      expect(r.code, r.stderr).toBe(ExitCode.integrity);
      expect(JSON.parse(r.stdout).error.message).toBe('refusing directory "share": its mode, owner or times are not the signed ones');
      expect(treeListing(d)).toEqual(before);
      const plain = await runSync(lab, 1, ['-a', '--timeout', '5', 'share', d], 60_000);
      expect(plain.code, plain.stderr).toBe(0);
      const st = lstatSync(path.join(d, 'share'));
      expect(st.mode & 0o7777).toBe(0o777);
      expect(Math.floor(st.mtimeMs / 1000)).toBe(1_000_000_000);
    } finally {
      sp.kill('SIGKILL');
    }
  }, 120_000);

  it('another root for the share name: refused naming both; --trust takes the signed one; --expect-root pins it', async () => {
    const src = path.join(work, 'named', 'share');
    mkdirSync(src, { recursive: true });
    writeFileSync(path.join(src, 'a.txt'), 'genuine\n');
    const share = await startShare(lab, 0, [src], ['--sign', keyfile]);
    const sp = spoofer('name', '-');
    try {
      const spoofed = (await firstJson(sp)).root!;
      const genuine = share.roots[0]!.hash;
      const d = dest();
      const before = treeListing(d);
      const r = await runSync(lab, 1, ['-a', '--timeout', '5', 'share', d], 60_000);
      expect(r.code, r.stderr).toBe(ExitCode.integrity);
      const msg = JSON.parse(r.stdout).error.message as string;
      expect([
        `two roots answer for share "share": ${spoofed} and ${genuine} (pick one with --expect-root, or the signed one with --trust)`,
        `two roots answer for share "share": ${genuine} and ${spoofed} (pick one with --expect-root, or the signed one with --trust)`,
      ]).toContain(msg);
      expect(treeListing(d)).toEqual(before);
      const t = await runSync(lab, 1, ['-a', '--timeout', '5', '--trust', pubLine, 'share', d], 60_000);
      expect(t.code, t.stderr).toBe(0);
      expect(t.summary!.rootHash).toBe(genuine);
      expect(readFileSync(path.join(d, 'share', 'a.txt'), 'utf8')).toBe('genuine\n');
      const d2 = dest();
      const pinned = await runSync(lab, 1, ['-a', '--timeout', '5', '--expect-root', genuine, 'share', d2], 60_000);
      expect(pinned.code, pinned.stderr).toBe(0);
      expect(readFileSync(path.join(d2, 'share', 'a.txt'), 'utf8')).toBe('genuine\n');
      // --trust for a path inside the share: reached from the signed root.
      const f = path.join(dest(), 'a.txt');
      const inside = await runSync(lab, 1, ['--timeout', '5', '--trust', pubLine, 'share/a.txt', f], 60_000);
      expect(inside.code, inside.stderr).toBe(0);
      expect(readFileSync(f, 'utf8')).toBe('genuine\n');
    } finally {
      sp.kill('SIGKILL');
      await share.stop();
    }
  }, 180_000);

  it('undecryptable objects under every OID of an encrypted, signed share are dropped and counted; the sync completes, with --trust too (timed with and without the forger)', async () => {
    const src = path.join(work, 'enc', 'share');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'big.bin'), randomBytes(4 * 1024 * 1024 + 77));
    for (let i = 0; i < 20; i++) writeFileSync(path.join(src, 'sub', `f${i}.bin`), randomBytes(1000 + i * 3000));
    const key = path.join(work, 'enc.key');
    writeFileSync(key, randomBytes(128));
    const share = await startShare(lab, 0, [src], ['--keyfile', key, '--sign', keyfile]);
    try {
      const root = share.roots[0]!.hash;
      const quiet = await runSync(lab, 1, ['-a', '--timeout', '10', '--keyfile', key, root, path.join(work, 'enc-quiet')], 120_000);
      expect(quiet.code, quiet.stderr).toBe(0);
      const sp = spoofer('crypt', src);
      try {
        await firstJson(sp);
        const d = path.join(work, 'enc-out');
        const r = await runSync(lab, 1, ['-a', '--timeout', '10', '--keyfile', key, root, d], 120_000);
        expect(r.code, r.stderr).toBe(0);
        expect(treeListing(d, { times: true })).toEqual(treeListing(src, { times: true }));
        expect(r.summary!.objectsRejected).toBeGreaterThan(0);
        console.log(
          `encrypted sync: ${quiet.summary!.seconds.toFixed(2)} s alone, ${r.summary!.seconds.toFixed(2)} s with one forger ` +
            `(${r.summary!.objectsRejected} objects rejected, ${r.summary!.datagrams} datagrams vs ${quiet.summary!.datagrams})`,
        );
        // With --trust as well: the signature and manifest open and verify, the forged boxes are dropped.
        const dt = path.join(work, 'enc-trusted');
        const t = await runSync(lab, 1, ['-a', '--timeout', '10', '--keyfile', key, '--trust', pubLine, root, dt], 120_000);
        expect(t.code, t.stderr).toBe(0);
        expect(treeListing(dt, { times: true })).toEqual(treeListing(src, { times: true }));
        // A wrong key is still called so (nothing opens), and writes nothing.
        const wrong = path.join(work, 'wrong.key');
        writeFileSync(wrong, randomBytes(128));
        const w = dest();
        const before = treeListing(w);
        const bad = await runSync(lab, 1, ['-a', '--timeout', '10', '--keyfile', wrong, root, w], 60_000);
        expect(bad.code, bad.stderr).toBe(ExitCode.integrity);
        expect(JSON.parse(bad.stdout).error.message).toMatch(/^cannot decrypt: wrong key or password \(\d+ objects? did not open, none opened\)$/);
        expect(treeListing(w)).toEqual(before);
      } finally {
        sp.kill('SIGKILL');
      }
    } finally {
      await share.stop();
    }
  }, 300_000);
});
