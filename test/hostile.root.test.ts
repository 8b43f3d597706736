/**
 * Hostile senders on a lab network (needs root): the real CLI against a sender
 * that serves crafted names (test/fixtures/rel-hostile-sender.mjs), a genuine
 * share with a spoofer beside it (rel-spoofer.mjs), and destinations holding
 * symlinks that point outside. Every refusal is checked for its exit status, its
 * exact message, and a sandbox around the destination that must not change.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { repo, runSync, startShare, treeListing } from './e2e.js';

const why = skipReason(['nft']);

/** Wait for a line on a fixture's stdout that `match` accepts; returns it. */
function waitLine(p: ChildProcess, match: (l: string) => boolean, ms = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`fixture gave no such line within ${ms} ms: ${out} ${err}`)), ms);
    p.stderr?.on('data', (d) => (err += d));
    p.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find(match);
      if (line !== undefined) {
        clearTimeout(t);
        resolve(line);
      }
    });
    p.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`fixture exited (${c}): ${err}`));
    });
  });
}

describeUnless(why, 'hostile senders (needs root)', () => {
  let lab: Lab;
  let work: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, snooping: false });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-hostile-'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** S holds a sentinel and the (empty) destination S/dest; anything written outside dest shows in S's listing. */
  function sandbox(name: string): { s: string; dest: string; outside: () => string[] } {
    const s = path.join(work, name);
    mkdirSync(path.join(s, 'dest'), { recursive: true });
    writeFileSync(path.join(s, 'keep.txt'), 'sentinel');
    return { s, dest: path.join(s, 'dest'), outside: () => treeListing(s).filter((l) => !l.startsWith('dest/')) };
  }

  it('refuses every crafted name with exit 4 and a precise message, and writes nothing outside the destination', async () => {
    const box = sandbox('names');
    const before = box.outside();
    const sender = lab.spawn(0, [process.execPath, path.join(repo, 'test', 'fixtures', 'rel-hostile-sender.mjs'), 'e0', box.s]);
    try {
      const keys = JSON.parse(await waitLine(sender, (l) => l.startsWith('{'))) as Record<string, string>;
      const expected: Record<string, string> = {
        dotdot: 'refusing unsafe name "share/../evil" in directory "share": ".." segment',
        absolute: `refusing unsafe name ${JSON.stringify(path.join(box.s, 'abs'))} in directory "share": absolute path`,
        empty: 'refusing unsafe name "share//x" in directory "share": empty path segment',
        nul: 'refusing unsafe name "share/a\\x00b" in directory "share": NUL byte',
        long: `refusing unsafe name "share/${'n'.repeat(300)}" in directory "share": segment of 300 bytes, longer than 255`,
        outside: 'refusing unsafe name "other/x" in directory "share": not inside that directory',
        dirdotdot: 'refusing unsafe name "share/.." in directory "share": ".." segment',
        twice: 'refusing directory "share": it lists "sub" twice',
      };
      for (const [scenario, message] of Object.entries(expected)) {
        const r = await runSync(lab, 1, ['-r', '--timeout', '10', keys[scenario]!, box.dest], 60_000);
        expect(r.code, `${scenario}: ${r.stderr}`).toBe(4);
        expect(JSON.parse(r.stdout).error.message, scenario).toBe(message);
        expect(r.stderr).toContain(message);
        expect(box.outside(), scenario).toEqual(before);
        // The twice case may have made the link or the directory before refusing the other: both stay inside.
        for (const l of treeListing(box.dest)) expect(l, scenario).toMatch(/^sub( |\/x )/);
        rmSync(box.dest, { recursive: true, force: true });
        mkdirSync(box.dest);
      }
      // The same sender with a sound name: it really serves, so the refusals above were the name checks.
      const ok = await runSync(lab, 1, ['-r', '--timeout', '10', keys.sound!, box.dest], 60_000);
      expect(ok.code, ok.stderr).toBe(0);
      expect(readFileSync(path.join(box.dest, 'ok.txt'), 'utf8')).toBe('pwned\n');
      expect(box.outside()).toEqual(before);
    } finally {
      sender.kill('SIGKILL');
    }
  }, 240_000);

  it('replaces a symlink in the destination that points outside by the served directory, never writing through it', async () => {
    const src = path.join(work, 'lsrc', 'share');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'sub', 'x'), 'from the share\n');
    writeFileSync(path.join(src, 'top.txt'), 'top\n');
    const box = sandbox('links');
    mkdirSync(path.join(box.dest, 'share'));
    symlinkSync(box.s, path.join(box.dest, 'share', 'sub'));
    const before = box.outside();
    const share = await startShare(lab, 0, [src]);
    try {
      const r = await runSync(lab, 1, ['-a', '--timeout', '10', 'share', box.dest]);
      expect(r.code, r.stderr).toBe(0);
      expect(lstatSync(path.join(box.dest, 'share', 'sub')).isDirectory()).toBe(true);
      expect(readFileSync(path.join(box.dest, 'share', 'sub', 'x'), 'utf8')).toBe('from the share\n');
      expect(box.outside()).toEqual(before);
    } finally {
      await share.stop();
    }
  }, 120_000);

  it('completes byte-identical from the genuine share while a spoofer answers the same joins with forged symbols and forged objects', async () => {
    // Many objects of every kind, so that the spoofer wins the race to some of them.
    const src = path.join(work, 'spoofed');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'big.bin'), randomBytes(2 * 1024 * 1024 + 123));
    for (let i = 0; i < 30; i++) writeFileSync(path.join(src, i % 2 ? 'sub' : '', `f${i}.bin`), randomBytes(1000 + i * 1500));
    writeFileSync(path.join(src, 'empty'), '');
    symlinkSync('big.bin', path.join(src, 'link'));
    const share = await startShare(lab, 0, [src]);
    const spoofer = lab.spawn(2, [process.execPath, path.join(repo, 'test', 'fixtures', 'rel-spoofer.mjs'), 'e0', src]);
    try {
      await waitLine(spoofer, (l) => l === 'ready');
      const dest = path.join(work, 'spoofed-out');
      const r = await runSync(lab, 1, ['-a', '--timeout', '20', share.roots[0]!.hash, dest]);
      expect(r.code, r.stderr).toBe(0);
      expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
      const stats = new Promise<string>((resolve) => {
        let out = '';
        spoofer.stdout!.on('data', (d) => (out += d));
        spoofer.once('exit', () => resolve(out));
      });
      spoofer.kill('SIGTERM');
      const sent = JSON.parse((await stats).trim().split('\n').pop()!) as { bursts: number; datagrams: number };
      console.log(`spoofing: ${sent.bursts} forged bursts (${sent.datagrams} datagrams); receiver rejected ${r.summary!.objectsRejected} decoded objects, ${r.summary!.rejoins} rejoins, ${r.summary!.seconds.toFixed(2)} s`);
      // The forgeries arrived and were decoded, and verification threw them away.
      expect(sent.bursts).toBeGreaterThan(0);
      expect(r.summary!.objectsRejected).toBeGreaterThan(0);
    } finally {
      spoofer.kill('SIGKILL');
      await share.stop();
    }
  }, 120_000);

  it('syncs a share with two equal directories under different parents (one entry hash, one object)', async () => {
    const src = path.join(work, 'eq', 'share');
    for (const p of ['a/x/y', 'b/x/y', 'c']) mkdirSync(path.join(src, p), { recursive: true });
    writeFileSync(path.join(src, 'c', 'f.txt'), 'f\n');
    // As tar leaves them: the same whole-second mtime, so a/x and b/x (and a/x/y, b/x/y) hash the same.
    for (const p of ['a/x/y', 'b/x/y', 'a/x', 'b/x']) utimesSync(path.join(src, p), 1_700_000_000, 1_700_000_000);
    const share = await startShare(lab, 0, [src]);
    try {
      const dest = path.join(work, 'eq-out');
      const r = await runSync(lab, 1, ['-a', '--timeout', '10', 'share/', dest]);
      expect(r.code, r.stderr).toBe(0);
      expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
    } finally {
      await share.stop();
    }
  }, 120_000);
});
