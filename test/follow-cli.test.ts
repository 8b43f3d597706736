/**
 * `lcsync sync --follow` on the command line: --help names it, and what it cannot follow is a
 * one-line usage error (exit 2) before anything touches the network: a root hash (one version,
 * which never changes), and the flags that make no sense for a mirror that keeps running. What it
 * does end to end: test/mirror.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cli } from './e2e.js';

function lcsync(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

const hash = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';

describe('lcsync sync --follow', () => {
  it('--help names it', async () => {
    const r = await lcsync(['sync', '--help']);
    expect(r.stdout).toContain('--follow');
    expect(r.stdout).toMatch(/Live mirror/);
  });

  for (const [args, message] of [
    [['--follow', '-a', hash, '/tmp/x'], '--follow needs a share name, not a root hash'],
    [['--follow', '-a', `${hash}/`, '/tmp/x'], '--follow needs a share name, not a root hash'],
    [['--follow', '-a', '-n', 'music/', '/tmp/x'], '--follow cannot be combined with --dry-run'],
    [['--follow', '-a', '--expect-root', hash, 'music/', '/tmp/x'], '--follow cannot be combined with --expect-root'],
  ] as const) {
    it(`sync ${args.join(' ')}: exit 2, one line`, async () => {
      const r = await lcsync(['sync', ...args]);
      expect(r.code).toBe(2);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toContain(message);
    });
  }
});
