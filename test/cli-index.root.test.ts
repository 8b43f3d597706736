/**
 * `lcsync index` on share.tar, the C tool's sample share (needs root: tar restores file owners only for root,
 * and the hashes cover them). The built CLI (dist/, after `npm run build`) in a child process. The rest of
 * `lcsync index` as a user runs it: test/cli-index.test.ts.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { itUnless } from './skip.js';
import { shareTarSkip, vectorPath } from './vectors.js';

const RUN = path.join(import.meta.dirname, '..', 'bin', 'run.js');

function lcsync(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [RUN, ...args], { timeout: 60_000, env: { ...process.env, LCSYNC_DEBUG: '' } }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-cli-index-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('lcsync index --hex on share.tar', () => {
  itUnless(shareTarSkip, 'share.tar: a directory prints its root hash, -r accepted (needs root)', async () => {
    const dir = path.join(tmp, 'tar');
    mkdirSync(dir);
    expect(spawnSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', dir]).status).toBe(0);
    const top = await lcsync(['index', '--hex', path.join(dir, 'share') + '/']);
    expect(top.status, top.stderr).toBe(0);
    expect(top.stdout).toBe('e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1\n');
    const sub = await lcsync(['index', '-r', '--hex', path.join(dir, 'share', 'sub')]);
    expect(sub.stdout).toBe('60a5ad2e141430561b2e9e66c3dca52e0e5daa786adc255836a671cde7d1cef4\n');
    const plain = await lcsync(['index', path.join(dir, 'share')]);
    expect(plain.stdout).toBe('e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1  share\n');
  });
});
