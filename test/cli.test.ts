/**
 * The command line's rough edges, each from a real run of bin/run.js (build first: npm run build):
 * suggestions for mistyped commands, `lcsync help`, one-line usage errors, keygen's output paths,
 * special files given to index, hex-looking sources, the no-key notice, plurals and --help text.
 * Nothing here touches the network: the runs that could are stopped by argument checks first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExitCode } from '../src/core/base/errors.js';
import { editDistance, suggestCommand, unknownCommandMessage } from '../src/cli/suggest.js';
import { count } from '../src/cli/plural.js';
import { parseSource } from '../src/core/sync/source.js';
import { renderHuman } from '../src/commands/status.js';
import { cli } from './e2e.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** No key from the environment, so the no-key paths are the ones taken. */
const env = { ...process.env };
delete env.LCSYNC_PASSWORD;

function lcsync(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { timeout: 60_000, env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

function oneLine(r: Run): string {
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

const COMMANDS = ['help', 'index', 'keygen', 'relay', 'share', 'status', 'sync'];

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-cli-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('mistyped commands', () => {
  it('suggests the nearest command within two edits, transpositions counting one', () => {
    expect(editDistance('idnex', 'index')).toBe(1);
    expect(editDistance('sycn', 'sync')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(suggestCommand('idnex', COMMANDS)).toBe('index');
    expect(suggestCommand('shar', COMMANDS)).toBe('share');
    expect(suggestCommand('stauts', COMMANDS)).toBe('status');
    expect(suggestCommand('keyegn', COMMANDS)).toBe('keygen');
    expect(suggestCommand('SYNC', COMMANDS)).toBe('sync');
    expect(suggestCommand('xyz', COMMANDS)).toBeUndefined();
    expect(suggestCommand('rsync', COMMANDS)).toBe('sync');
    expect(suggestCommand('', COMMANDS)).toBeUndefined();
    expect(unknownCommandMessage('xyz', COMMANDS)).toBe(`unknown command "xyz". Commands: ${COMMANDS.join(', ')} (see 'lcsync help')`);
  });

  it('`lcsync idnex /tmp` names the command alone, suggests index, exits 2 with one line', async () => {
    for (const args of [['idnex', '/tmp'], ['idnex', '/tmp', 'more', 'words'], ['idnex', '--help'], ['help', 'idnex']]) {
      const r = await lcsync(args);
      expect(r.code, args.join(' ')).toBe(ExitCode.usage);
      expect(r.stdout).toBe('');
      expect(oneLine(r)).toBe(`lcsync: unknown command "idnex". Did you mean "index"? Commands: ${COMMANDS.join(', ')} (see 'lcsync help')`);
    }
    const far = await lcsync(['frobnicate', 'x']);
    expect(far.code).toBe(ExitCode.usage);
    expect(oneLine(far)).not.toMatch(/Did you mean/);
  });
});

describe('lcsync help', () => {
  it('`help CMD` prints what `CMD --help` prints, for every command; `help` alone lists them', async () => {
    for (const c of COMMANDS.filter((x) => x !== 'help')) {
      const [a, b] = await Promise.all([lcsync(['help', c]), lcsync([c, '--help'])]);
      expect(a.code, a.stderr).toBe(0);
      expect(a.stdout).toBe(b.stdout);
      expect(a.stdout).toContain(`$ lcsync ${c}`);
    }
    const all = await lcsync(['help']);
    expect(all.code).toBe(0);
    for (const c of COMMANDS) expect(all.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(all.stdout).toBe((await lcsync(['--help'])).stdout);
  });
});

describe('usage errors', () => {
  it('missing arguments are named by their usage names on one line, with the usage', async () => {
    const both = await lcsync(['sync']);
    expect(both.code).toBe(ExitCode.usage);
    expect(oneLine(both)).toBe("lcsync: missing SOURCE and DEST; usage: lcsync sync [FLAGS] SOURCE DEST (see 'lcsync sync --help')");
    const one = await lcsync(['sync', 'music/']);
    expect(oneLine(one)).toBe("lcsync: missing DEST; usage: lcsync sync [FLAGS] SOURCE DEST (see 'lcsync sync --help')");
    const share = await lcsync(['share']);
    expect(oneLine(share)).toBe("lcsync: missing PATH; usage: lcsync share [FLAGS] PATH... (see 'lcsync share --help')");
    const index = await lcsync(['index']);
    expect(oneLine(index)).toBe("lcsync: missing PATH; usage: lcsync index [FLAGS] PATH (see 'lcsync index --help')");
  });
});

describe('keygen output paths', () => {
  it('DIR/ that does not exist is created (0700) and holds DIR/lcsync-key', async () => {
    const dir = path.join(work, 'keys', 'nested');
    const r = await lcsync(['keygen', '-f', `${dir}/`]);
    expect(r.code, r.stderr).toBe(ExitCode.ok);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(dir, 'lcsync-key')).mode & 0o777).toBe(0o600);
    expect(existsSync(path.join(dir, 'lcsync-key.pub'))).toBe(true);
  });

  it('a key file in a missing directory exits 6 (an output error, not "source not found") naming the directory', async () => {
    const missing = path.join(work, 'nonexistent', 'dir');
    const r = await lcsync(['keygen', '-f', path.join(missing, 'key')]);
    expect(r.code).toBe(ExitCode.io);
    expect(oneLine(r)).toBe(`lcsync: cannot write ${path.join(missing, 'key')}: directory ${missing} does not exist (create it, or end --output with "/" to have keygen create it)`);
    expect(existsSync(missing)).toBe(false);
    // Below a regular file, with or without the slash: exit 6 too, and nothing written.
    const file = path.join(work, 'plain');
    writeFileSync(file, 'x');
    for (const target of [path.join(file, 'key'), `${file}/`]) {
      const b = await lcsync(['keygen', '-f', target]);
      expect(b.code, b.stderr).toBe(ExitCode.io);
      expect(oneLine(b)).toMatch(/not a directory/);
    }
  });
});

describe('index of a special file', () => {
  it('/dev/null gets one error line (exit 2), no warning before it', async () => {
    const r = await lcsync(['index', '/dev/null']);
    expect(r.code).toBe(ExitCode.usage);
    expect(r.stdout).toBe('');
    expect(oneLine(r)).toBe('lcsync: /dev/null: a special file (device, fifo or socket); lcsync shares only regular files, directories and symlinks');
  });
});

describe('share --gather', () => {
  it('a bad or too long duration gets one error line (exit 2) before anything is indexed or opened', async () => {
    for (const bad of ['abc', '61s', '-1', '3h']) {
      const r = await lcsync(['share', '--gather', bad, '/nonexistent-lcsync-path']);
      expect(r.code, r.stderr).toBe(ExitCode.usage);
      expect(oneLine(r)).toBe(`lcsync: invalid --gather "${bad}" (a duration such as 3s or 500ms, at most 60 s)`);
    }
  });

  it('parses seconds, milliseconds and minutes', async () => {
    const { parseDurationMs } = await import('../src/cli/duration.js');
    expect(parseDurationMs('3s', '--gather', 60_000)).toBe(3000);
    expect(parseDurationMs('500ms', '--gather', 60_000)).toBe(500);
    expect(parseDurationMs('1.5', '--gather', 60_000)).toBe(1500);
    expect(parseDurationMs('1m', '--gather', 60_000)).toBe(60_000);
    expect(parseDurationMs('0', '--gather', 60_000)).toBe(0);
  });
});

describe('hex-looking sources', () => {
  const h64 = 'e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1';

  it('64 hex digits are a hash (with or without a trailing slash); 16 or more of another length are refused', () => {
    expect(parseSource(h64).hash.toString('hex')).toBe(h64);
    expect(parseSource(h64.toUpperCase()).hash.toString('hex')).toBe(h64);
    expect(parseSource(`${h64}/`)).toEqual({ hash: Buffer.from(h64, 'hex'), contents: true });
    expect(() => parseSource(h64.slice(1))).toThrow('"' + h64.slice(1) + '" looks like a root hash but has 63 hex digits, not 64 (for a share named so, write name:' + h64.slice(1) + ')');
    expect(() => parseSource(`${h64}0`)).toThrow(/has 65 hex digits/);
    expect(() => parseSource('0123456789abcdef')).toThrow(/has 16 hex digits/);
    expect(() => parseSource(`${h64.slice(2)}/`)).toThrow(/has 62 hex digits/);
  });

  it('short hex names stay names; "name:" makes any source a share name', () => {
    expect(parseSource('2024').name).toBe('2024');
    expect(parseSource('cafe/')).toMatchObject({ name: 'cafe', contents: true });
    expect(parseSource(`name:${h64.slice(1)}`).name).toBe(h64.slice(1));
    expect(parseSource(`name:${h64}`).name).toBe(h64);
    expect(parseSource('name:music/')).toMatchObject({ name: 'music', contents: true });
    expect(() => parseSource('name:')).toThrow(/invalid source/);
    expect(() => parseSource('name:../x')).toThrow(/invalid share name/);
  });

  it('`lcsync sync` with a 63-digit SOURCE exits 2 at once instead of waiting for a share name nobody has', async () => {
    const r = await lcsync(['sync', h64.slice(1), path.join(work, 'never')]);
    expect(r.code).toBe(ExitCode.usage);
    expect(oneLine(r)).toMatch(/looks like a root hash but has 63 hex digits, not 64/);
    expect(existsSync(path.join(work, 'never'))).toBe(false);
  });
});

describe('the no-key notice', () => {
  // `-i nosuchif0` stops both commands right after the key is chosen, before any socket opens.
  it('sync says nothing about a missing key unless -v', async () => {
    const quiet = await lcsync(['sync', 'music/', path.join(work, 'never'), '-i', 'nosuchif0']);
    expect(quiet.code).toBe(ExitCode.usage);
    expect(quiet.stderr).not.toMatch(/no key/);
  });

  it('share says it once, as a warning; sync only at -v', async () => {
    // A share with an unknown -i stops before the key is chosen, so this checks the code path; the
    // lab test test/loopback.root.test.ts counts the notice in a real share's output.
    const { chooseCipher } = await import('../src/cli/keys.js');
    const { Logger } = await import('../src/cli/logger.js');
    const lines: string[] = [];
    const log = new Logger({ level: 'info', write: (s) => lines.push(s) });
    const saved = process.env.LCSYNC_PASSWORD;
    delete process.env.LCSYNC_PASSWORD;
    try {
      expect(await chooseCipher({ password: false, batch: false }, log, 'share')).toBeUndefined();
      expect(await chooseCipher({ password: false, batch: false }, log, 'sync')).toBeUndefined();
      expect(lines).toEqual(['lcsync: warning: no key given (--keyfile, --password or LCSYNC_PASSWORD): objects travel unencrypted, as with the C lcsync -b\n']);
      const verbose: string[] = [];
      await chooseCipher({ password: false, batch: false }, new Logger({ level: 'verbose', write: (s) => verbose.push(s) }), 'sync');
      expect(verbose).toEqual(['no key given (--keyfile, --password or LCSYNC_PASSWORD): expecting an unencrypted share\n']);
    } finally {
      if (saved !== undefined) process.env.LCSYNC_PASSWORD = saved;
    }
  });
});

describe('plurals', () => {
  it('count() puts the noun in the right number', () => {
    expect(count(0, 'chunk')).toBe('0 chunks');
    expect(count(1, 'chunk')).toBe('1 chunk');
    expect(count(2, 'entry', 'entries')).toBe('2 entries');
    expect(count(1, 'entry', 'entries')).toBe('1 entry');
  });

  it('status says "1 time" and "1 datagram"', () => {
    const out = renderHuman('/run/x', [
      {
        path: '/run/x/1.sock',
        pid: 1,
        status: { pid: 1, uptimeSec: 5, roots: [], objects: 1, interfaces: ['e0'], listeners: [], streams: [{ group: 'ff1e::1', ifname: 'e0', kind: 'chunk', name: 'a', datagrams: 1 }], streamsStarted: 1, datagrams: 1, bytes: 1, rateNow: 0, rateAvg: 0, follow: { reindexes: 1 } },
      } as never,
    ], true);
    expect(out).toContain('re-indexed 1 time\n');
    expect(out).toContain(' in 1 datagram;');
    expect(out).toContain(': 1 datagram\n');
    expect(out).not.toMatch(/\b1 (times|datagrams|chunks)\b/);
    // The symbol size is shown only when it is not the C protocol's 1024.
    expect(out).not.toContain('symbols of');
    const large = renderHuman('/run/x', [{ path: '/run/x/2.sock', pid: 2, status: { pid: 2, uptimeSec: 1, roots: [], objects: 3, interfaces: ['e0'], symbolSize: 1368 } } as never], false);
    expect(large).toContain('  objects 3, interfaces e0, symbols of 1368 bytes (lcsync receivers only)\n');
  });
});

describe('--help text', () => {
  it('every command has a usage line, a description and examples, and no "(see above)"', async () => {
    for (const c of COMMANDS) {
      const r = await lcsync([c, '--help']);
      expect(r.code, `${c}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('USAGE');
      expect(r.stdout).toContain('EXAMPLES');
      expect(r.stdout).not.toMatch(/see above/i);
    }
    const status = await lcsync(['status', '--help']);
    expect(status.stdout.replace(/\s+/g, ' ')).toContain('--rundir=<value> Directory of the share sockets. Default: $LCSYNC_RUNDIR');
  });
});
