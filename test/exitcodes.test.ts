/**
 * Every exit status of src/core/base/errors.ts ExitCode, each from a real run of
 * bin/run.js (build first: npm run build). The ones that need a network (3 by
 * timeout, 4, 5, 6, 130 and 1) run in lab namespaces: test/exitcodes.root.test.ts.
 * 7 (partial) and 8 (source changed) come from their own lab tests,
 * conflicts.root.test.ts and source-change.root.test.ts.
 */
import { useTempDir } from './tmpdir.js';
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ExitCode } from '../src/core/base/errors.js';
import { cli } from './e2e.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function lcsync(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

// Readable by `nobody` for the permission case.
const tmp = useTempDir('lcsync-exit-', 0o755);

describe('exit codes without a network', () => {
  it('0: index of a file', async () => {
    const f = path.join(tmp.dir(), 'ok.bin');
    writeFileSync(f, randomBytes(1000));
    const r = await lcsync(['index', f]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(r.stdout).toMatch(/^[0-9a-f]{64} {2}ok\.bin\n$/);
  });

  it('2: unknown flag, missing argument, bad option value, with one line on stderr and a JSON error with --json', async () => {
    for (const args of [['index', '--bogus', tmp.dir()], ['sync', 'onlyone'], ['share', '--log-format', 'xml', tmp.dir()], ['status', '--interval', '0']]) {
      const r = await lcsync(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(ExitCode.usage);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    // A usage error found after parsing: with --json the error is the one document on stdout.
    // (-i names an interface that does not exist, so nothing touches the network.)
    const j = await lcsync(['sync', '--json', '-i', 'nosuchif0', 'abc', path.join(tmp.dir(), 'never')]);
    expect(j.code, j.stderr).toBe(ExitCode.usage);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, error: { code: 'USAGE', exitCode: 2 } });
  });

  it('3: index of a missing path', async () => {
    const r = await lcsync(['index', path.join(tmp.dir(), 'missing')]);
    expect(r.code, r.stderr).toBe(ExitCode.notFound);
    expect(r.stderr).toMatch(/no such file or directory/);
  });

  it('3: index of a path below a regular file (ENOTDIR is "not found" for a source)', async () => {
    const f = path.join(tmp.dir(), 'plain');
    writeFileSync(f, 'x');
    const r = await lcsync(['index', path.join(f, 'below')]);
    expect(r.code, r.stderr).toBe(ExitCode.notFound);
  });
});
