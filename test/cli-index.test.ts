/**
 * `lcsync index` as a user runs it: the built CLI (dist/, after `npm run build`)
 * in a child process, checked on stdout, stderr and exit status. share.tar (needs root):
 * test/cli-index.root.test.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShareIndex } from '../src/core/index/mdex.js';
import { toHex } from '../src/core/model/hash.js';
import { readVector, vectorDir, vectorFileSizes, vectorPath } from './vectors.js';

const REPO = path.resolve(import.meta.dirname, '..');
const RUN = path.join(REPO, 'bin', 'run.js');

interface Result {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function lcsync(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LCSYNC_DEBUG: '' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** One line on stderr, `lcsync: ...`, and no stack trace. */
function expectOneLineError(r: Result, re: RegExp): void {
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^lcsync: /);
  expect(lines[0]).toMatch(re);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-cli-index-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'index', 'index.js'))) {
    throw new Error('dist/ is not built: run `npm run build` before this test');
  }
});

describe('lcsync index --hex', () => {
  const files = vectorFileSizes.filter((n) => n > 0).map((n) => `f${n}.bin`);
  it('covers every vector with a tree dump', () => expect(files.length).toBeGreaterThanOrEqual(8));

  it.each(files)('%s: stdout equals vectors/trees byte for byte', async (f) => {
    const want = readVector('trees', `${f}.tree`);
    const r = await lcsync(['index', '--hex', vectorPath('files', f)]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.equals(want)).toBe(true);
  });

  it('an empty file prints the one-node zero tree (the C tool refuses)', async () => {
    const r = await lcsync(['index', '--hex', vectorPath('files', 'f0.bin')]);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe(`00000000: ${'0'.repeat(64)}\n`);
  });
});

describe('lcsync index output', () => {
  const dir = path.join(tmp, 'music');
  beforeAll(() => {
    mkdirSync(path.join(dir, 'a'), { recursive: true });
    writeFileSync(path.join(dir, 'a', 'b.ogg'), Buffer.alloc(70000, 5));
    writeFileSync(path.join(dir, 'empty'), '');
    symlinkSync('a/b.ogg', path.join(dir, 'latest'));
  });

  it('prints "<hash>  <share name>", the hash the library computes', async () => {
    const want = await ShareIndex.build([dir]);
    const r = await lcsync(['index', dir]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(`${toHex(want.roots[0]!.hash)}  music\n`);
  });

  it('a file prints its entry hash and basename', async () => {
    const f = path.join(dir, 'a', 'b.ogg');
    const want = await ShareIndex.build([f]);
    const r = await lcsync(['index', f]);
    expect(r.stdout.toString()).toBe(`${toHex(want.roots[0]!.hash)}  b.ogg\n`);
  });

  it('--json prints one document with the root and every entry', async () => {
    const r = await lcsync(['index', '--json', dir]);
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout.toString()) as {
      root: { hash: string; shareName: string; type: string; path: string };
      entries: Array<Record<string, unknown>>;
    };
    const want = await ShareIndex.build([dir]);
    expect(doc.root).toEqual({ hash: toHex(want.roots[0]!.hash), shareName: 'music', type: 'dir', path: dir });
    expect(doc.entries.map((e) => e.sharePath)).toEqual(['music', 'music/a', 'music/a/b.ogg', 'music/empty', 'music/latest']);
    const file = doc.entries.find((e) => e.sharePath === 'music/a/b.ogg')!;
    const rec = want.records.find((x) => x.sharePath === 'music/a/b.ogg')!;
    expect(file).toEqual({
      sharePath: 'music/a/b.ogg',
      type: 'file',
      size: 70000,
      mode: '100644',
      uid: rec.meta.uid,
      gid: rec.meta.gid,
      mtime: `${rec.meta.mtimeSec}.${String(rec.meta.mtimeNsec).padStart(9, '0')}`,
      hash: toHex(rec.hash),
      root: toHex(rec.tree!.root),
      chunks: 3,
    });
    expect(file.mtime).toMatch(/^\d+\.\d{9}$/);
    expect(doc.entries.find((e) => e.sharePath === 'music/empty')).toMatchObject({ type: 'file', size: 0, root: null, chunks: 0 });
    expect(doc.entries.find((e) => e.sharePath === 'music/latest')).toMatchObject({ type: 'symlink', mode: '120777', root: null, target: 'a/b.ogg' });
    expect(doc.entries.find((e) => e.sharePath === 'music/a')).toMatchObject({ type: 'dir', mode: '040755', root: null, chunks: null });
  });

  it('a fifo is skipped with a warning on stderr; stdout stays clean', async () => {
    const d = path.join(tmp, 'withfifo');
    mkdirSync(d);
    writeFileSync(path.join(d, 'x'), 'x');
    expect(spawnSync('mkfifo', [path.join(d, 'p')]).status).toBe(0);
    const r = await lcsync(['index', d]);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^[0-9a-f]{64} {2}withfifo\n$/);
    expect(r.stderr).toBe(`lcsync: warning: skipping special file ${path.join(d, 'p')}\n`);
  });
});

describe('lcsync index errors', () => {
  it('a missing path exits 3 with one line naming it', async () => {
    const p = path.join(tmp, 'does-not-exist');
    const r = await lcsync(['index', p]);
    expect(r.status).toBe(3);
    expect(r.stdout.length).toBe(0);
    expectOneLineError(r, new RegExp(`^lcsync: ${p}: no such file or directory \\(ENOENT\\)$`));
  });

  it('an unknown flag exits 2 with one line', async () => {
    const r = await lcsync(['index', '--frobnicate', vectorDir]);
    expect(r.status).toBe(2);
    expectOneLineError(r, /frobnicate/);
  });

  it('no PATH exits 2 with one line', async () => {
    const r = await lcsync(['index']);
    expect(r.status).toBe(2);
    expectOneLineError(r, /^lcsync: missing PATH; usage: lcsync index \[FLAGS\] PATH/);
  });

  it('--hex with --json exits 2', async () => {
    const r = await lcsync(['index', '--hex', '--json', vectorDir]);
    expect(r.status).toBe(2);
    expectOneLineError(r, /--hex|--json/);
  });

  it('--json and a missing path: the error is a JSON document on stdout too', async () => {
    const r = await lcsync(['index', '--json', path.join(tmp, 'gone')]);
    expect(r.status).toBe(3);
    expect(JSON.parse(r.stdout.toString())).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', exitCode: 3 } });
  });

  it('--help documents the flags and the empty-file difference', async () => {
    const r = await lcsync(['index', '--help']);
    expect(r.status).toBe(0);
    const text = r.stdout.toString();
    for (const s of ['--hex', '--json', '-r, --recursive', 'PATH', 'the C tool refuses']) expect(text).toContain(s);
  });
});
