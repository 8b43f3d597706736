/**
 * swapIn (conflicts.ts): how a type conflict is replaced. The new object takes the old one's place, and
 * when it cannot, the old one is back where it was: after any error the path names the old or the
 * new object, and nothing set aside is left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { swapIn } from '../src/core/sync/conflicts.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-swap-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function box(name: string): string {
  const d = path.join(work, name);
  mkdirSync(d);
  return d;
}

describe('swapIn', () => {
  it('puts a file where an empty directory was, and a directory where a file or a symlink was', async () => {
    const d = box('ok');
    mkdirSync(path.join(d, 'a'));
    writeFileSync(path.join(d, 'new-a'), 'file\n');
    await swapIn(path.join(d, 'new-a'), path.join(d, 'a'));
    expect(readFileSync(path.join(d, 'a'), 'utf8')).toBe('file\n');

    writeFileSync(path.join(d, 'b'), 'old file\n');
    mkdirSync(path.join(d, 'new-b'));
    await swapIn(path.join(d, 'new-b'), path.join(d, 'b'));
    expect(lstatSync(path.join(d, 'b')).isDirectory()).toBe(true);

    symlinkSync(path.join(work), path.join(d, 'c'));
    mkdirSync(path.join(d, 'new-c'));
    await swapIn(path.join(d, 'new-c'), path.join(d, 'c'));
    expect(lstatSync(path.join(d, 'c')).isDirectory()).toBe(true);
    expect(readdirSync(d).sort()).toEqual(['a', 'b', 'c']);
  });

  it('puts the old object back when the new one cannot take its place, leaving nothing aside', async () => {
    const d = box('fail');
    mkdirSync(path.join(d, 'a'));
    writeFileSync(path.join(d, 'a', 'x'), 'kept\n');
    symlinkSync('somewhere', path.join(d, 'l'));
    // The staged object is missing: the second rename fails after the old one moved aside.
    await expect(swapIn(path.join(d, 'missing'), path.join(d, 'a'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(swapIn(path.join(d, 'missing'), path.join(d, 'l'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(readFileSync(path.join(d, 'a', 'x'), 'utf8')).toBe('kept\n');
    expect(readlinkSync(path.join(d, 'l'))).toBe('somewhere');
    expect(readdirSync(d).sort()).toEqual(['a', 'l']);
  });
});
