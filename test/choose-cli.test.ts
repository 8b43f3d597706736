/**
 * `lcsync sync` flags of issue 15 on the command line: --help names them, and misuse is a
 * one-line usage error (exit 2) before anything touches the network. What they do end to end:
 * test/choose.test.ts.
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

describe('lcsync sync --include/--exclude/--delete/--exec', () => {
  it('--help names every new flag', async () => {
    const r = await lcsync(['sync', '--help']);
    for (const f of ['--include=PATTERN', '--exclude=PATTERN', '--delete', '--exec=CMD', '--null', 'also -0']) expect(r.stdout).toContain(f);
  });

  for (const [args, message] of [
    [['--delete', 'music/', '/tmp/x'], '--delete needs -r or -a'],
    [['--exclude', '*.o', 'music/', '/tmp/x'], '--include/--exclude needs -r or -a'],
    [['-r', '-0', 'music/', '/tmp/x'], '-0/--null needs --exec'],
    [['-r', '--exclude=', 'music/', '/tmp/x'], 'an empty --exclude pattern matches nothing'],
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
