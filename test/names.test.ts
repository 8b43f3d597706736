/**
 * Names are bytes (names.ts, bytefs.ts): the string form round-trips every byte string,
 * leaves UTF-8 names alone, and the index, its hashes and its JSON carry names that are
 * not UTF-8 unchanged. No root needed.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { displayName, fsPath, hasRawBytes, jsonNames, nameFromBytes, nameToBytes, wellFormedName } from '../src/core/base/names.js';
import { readdir, readlink, symlink, lstat } from '../src/core/base/bytefs.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { aliasHash, fileEntryHash } from '../src/core/model/entry.js';
import { hashConcat, toHex } from '../src/core/model/hash.js';
import { decodeNetTreeHead, encodeNetTree } from '../src/core/wire/nettree.js';
import { argsFromCmdline } from '../src/cli/argv.js';
import { Logger } from '../src/cli/logger.js';
import { cli } from './e2e.js';

const run = promisify(execFile);
const b = (...parts: (string | number[] | Uint8Array)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

describe('the string form of names', () => {
  it('round-trips every byte string', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(nameToBytes(nameFromBytes(bytes)).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 20000 },
    );
  });

  it('is one to one: different bytes never give the same string', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), (x, y) => {
        if (Buffer.from(x).equals(Buffer.from(y))) return;
        expect(nameFromBytes(x)).not.toBe(nameFromBytes(y));
      }),
      { numRuns: 20000 },
    );
  });

  it('leaves UTF-8 names exactly as Node reads them (so their hashes do not change)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        const bytes = Buffer.from(s, 'utf8');
        expect(nameFromBytes(bytes)).toBe(s);
        expect(nameToBytes(s).equals(bytes)).toBe(true);
        expect(hasRawBytes(s)).toBe(false);
        expect(fsPath(s)).toBe(s);
      }),
      { numRuns: 5000 },
    );
  });

  it('keeps each byte of an invalid sequence: bad\\xff\\xfe.txt, overlongs, surrogates in UTF-8, truncated sequences', () => {
    for (const bytes of [b('bad', [0xff, 0xfe], '.txt'), b([0xc0, 0xaf]), b([0xed, 0xa0, 0x80]), b('é', [0xe2, 0x82]), b([0xf4, 0x90, 0x80, 0x80]), b([0x80])]) {
      const s = nameFromBytes(bytes);
      expect(hasRawBytes(s)).toBe(true);
      expect(nameToBytes(s).equals(bytes)).toBe(true);
      expect(Buffer.isBuffer(fsPath(s)) && (fsPath(s) as Buffer).equals(bytes)).toBe(true);
    }
    // An overlong "/" stays two bytes: it never becomes a separator.
    expect(nameFromBytes(b([0xc0, 0xaf]))).not.toContain('/');
  });

  it('shows bytes that are not UTF-8 and control characters as \\xHH, the rest as it is', () => {
    expect(displayName(nameFromBytes(b('bad', [0xff, 0xfe], '.txt')))).toBe('bad\\xFF\\xFE.txt');
    expect(displayName('a\nb\tc\x7f')).toBe('a\\x0Ab\\x09c\\x7F');
    expect(displayName('müsic/日本/🎵 a\\b')).toBe('müsic/日本/🎵 a\\b');
    expect(displayName(nameFromBytes(b('é', [0xe2, 0x82])))).toBe('é\\xE2\\x82');
  });

  it('JSON: a well-formed string (U+FFFD) plus a Base64 sibling with the exact bytes; UTF-8 names unchanged', () => {
    const raw = nameFromBytes(b('d/bad', [0xff, 0xfe], '.txt'));
    const doc = jsonNames({ a: 1, path: raw, plain: 'x/é', list: [{ target: raw }], n: null, big: 5n }) as Record<string, any>;
    expect(doc.path).toBe('d/bad\ufffd\ufffd.txt');
    expect(Buffer.from(doc.pathBase64, 'base64').equals(b('d/bad', [0xff, 0xfe], '.txt'))).toBe(true);
    expect(doc.plain).toBe('x/é');
    expect(doc.plainBase64).toBeUndefined();
    expect(doc.list[0].targetBase64).toBe(doc.pathBase64);
    expect(doc.big).toBe(5n);
    expect(wellFormedName(raw)).toBe('d/bad\ufffd\ufffd.txt');
    // The document is well-formed Unicode: no lone surrogate reaches JSON.stringify.
    expect(JSON.stringify(doc, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).not.toMatch(/\\ud[c-f]/i);
  });

  it('the wire carries name bytes: encodeNetTree/decodeNetTreeHead round-trip a name that is not UTF-8', () => {
    const name = nameFromBytes(b('share/x', [0xff]));
    const meta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1n, mtimeNsec: 2n, atimeSec: 3n, atimeNsec: 4n };
    const obj = encodeNetTree({ type: 'file', size: 0, meta, name, payload: Buffer.alloc(0) });
    expect(obj.subarray(56).equals(b('share/x', [0xff]))).toBe(true);
    expect(decodeNetTreeHead(obj).name).toBe(name);
  });
});

describe('the index reads, hashes and reports names as bytes', () => {
  let work: string;
  let top: string;
  const badFile = b('bad', [0xff, 0xfe], '.txt');
  const badDir = b('dir', [0xe9]);
  const badTarget = b('tar', [0xfe], 'get');

  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-names-'));
    top = path.join(work, 'share');
    mkdirSync(top);
    writeFileSync(Buffer.concat([Buffer.from(top + '/'), badFile]), 'bytes\n');
    mkdirSync(Buffer.concat([Buffer.from(top + '/'), badDir]));
    writeFileSync(Buffer.concat([Buffer.from(top + '/'), badDir, Buffer.from('/inner.txt')]), 'inner\n');
    symlinkSync(badTarget, Buffer.concat([Buffer.from(top + '/'), Buffer.from('link')]));
    writeFileSync(path.join(top, 'plain.txt'), 'plain\n');
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('bytefs lists, reads and makes names as bytes', async () => {
    const names = await readdir(top);
    const asBytes = names.map((n) => nameToBytes(n).toString('hex')).sort();
    expect(asBytes).toEqual(readdirSync(top, { encoding: 'buffer' }).map((n) => n.toString('hex')).sort());
    expect(nameToBytes(await readlink(path.join(top, 'link'))).equals(badTarget)).toBe(true);
    const made = path.join(top, '..', nameFromBytes(b('made', [0xff])));
    await symlink(await readlink(path.join(top, 'link')), made);
    expect((await lstat(made)).isSymbolicLink()).toBe(true);
    expect(readdirSync(work, { encoding: 'buffer' }).some((n) => n.equals(b('made', [0xff])))).toBe(true);
  });

  it('indexes every entry under its exact bytes, and hashes those bytes', async () => {
    const idx = await ShareIndex.build([top]);
    const paths = idx.records.map((r) => nameToBytes(r.sharePath).toString('hex')).sort();
    expect(paths).toEqual(
      [b('share'), b('share/', badFile), b('share/', badDir), b('share/', badDir, '/inner.txt'), b('share/link'), b('share/plain.txt')].map((x) => x.toString('hex')).sort(),
    );
    const file = idx.records.find((r) => nameToBytes(r.sharePath).equals(b('share/', badFile)))!;
    expect(file.hash.equals(fileEntryHash(file.sharePath, file.tree!.root, 0, file.meta))).toBe(true);
    // The alias is BLAKE3 of the share path's bytes, and the index answers to it.
    expect(aliasHash(file.sharePath).equals(hashConcat([b('share/', badFile)]))).toBe(true);
    const alias = idx.get(aliasHash(file.sharePath));
    expect(alias?.kind === 'tree' && alias.record).toBe(file);
    const link = idx.records.find((r) => r.type === 'symlink')!;
    expect(nameToBytes(link.target!).equals(badTarget)).toBe(true);
  });

  it('lcsync index exits 0 with \\xHH in its output, and --json carries the bytes in Base64', async () => {
    const plain = await run(process.execPath, [cli, 'index', '-v', top], { encoding: 'utf8' });
    expect(plain.stdout).toMatch(/^[0-9a-f]{64} {2}share\n$/);
    expect(plain.stderr).toContain('indexed share/bad\\xFF\\xFE.txt\n');
    expect(plain.stderr).toContain('indexed share/dir\\xE9/inner.txt\n');
    const idx = await ShareIndex.build([top]);
    expect(plain.stdout.slice(0, 64)).toBe(toHex(idx.roots[0]!.hash));
    const { stdout } = await run(process.execPath, [cli, 'index', '--json', top], { encoding: 'utf8' });
    const doc = JSON.parse(stdout) as { entries: { sharePath: string; sharePathBase64?: string; target?: string; targetBase64?: string }[] };
    const bad = doc.entries.find((e) => e.sharePathBase64 && Buffer.from(e.sharePathBase64, 'base64').equals(b('share/', badFile)));
    expect(bad?.sharePath).toBe('share/bad\ufffd\ufffd.txt');
    const link = doc.entries.find((e) => e.sharePath === 'share/link')!;
    expect(Buffer.from(link.targetBase64!, 'base64').equals(badTarget)).toBe(true);
    expect(doc.entries.find((e) => e.sharePath === 'share/plain.txt')!.sharePathBase64).toBeUndefined();
  }, 30_000);

  it('lcsync index takes a path typed as bytes that are not UTF-8 (read back from /proc/self/cmdline)', async () => {
    const { stdout } = await run('sh', ['-c', `cd "$0" && exec "$1" "$2" index --json bad*.txt`, top, process.execPath, cli], { encoding: 'utf8' });
    const doc = JSON.parse(stdout) as { root: { shareName: string; shareNameBase64: string } };
    expect(Buffer.from(doc.root.shareNameBase64, 'base64').equals(badFile)).toBe(true);
  }, 30_000);
});

describe('arguments as bytes', () => {
  const cmd = (...a: (string | Buffer)[]) => Buffer.concat(a.flatMap((x) => [Buffer.isBuffer(x) ? x : Buffer.from(x), Buffer.of(0)]));
  const bad = b('bad', [0xff], '.txt');

  it('restores the bytes Node replaced by U+FFFD when the arguments line up', () => {
    const line = cmd('/usr/bin/node', '--enable-source-maps', 'bin/run.js', 'index', '-v', bad);
    const got = argsFromCmdline(['-v', 'bad\ufffd.txt'], line);
    expect(got[0]).toBe('-v');
    expect(nameToBytes(got[1]!).equals(bad)).toBe(true);
  });

  it('leaves the arguments alone when they do not line up', () => {
    expect(argsFromCmdline(['-v', 'bad\ufffd.txt'], cmd('node', 'x', 'other'))).toEqual(['-v', 'bad\ufffd.txt']);
    expect(argsFromCmdline(['a', 'b', 'c'], cmd('b', 'c'))).toEqual(['a', 'b', 'c']);
    expect(argsFromCmdline([], cmd('x'))).toEqual([]);
  });
});

describe('log lines', () => {
  const raw = nameFromBytes(b('/d/bad', [0xff], '\n.txt'));

  it('text: \\xHH for bytes that are not UTF-8 and for control characters, one line per message', () => {
    const out: string[] = [];
    new Logger({ level: 'verbose', write: (s) => out.push(s) }).verbose(`created file ${raw}`);
    expect(out).toEqual(['created file /d/bad\\xFF\\x0A.txt\n']);
  });

  it('json: the message escaped the same way, name fields well-formed with a Base64 sibling', () => {
    const out: string[] = [];
    new Logger({ level: 'verbose', format: 'json', write: (s) => out.push(s) }).verbose(`created file ${raw}`, { event: 'item', path: raw });
    const doc = JSON.parse(out[0]!) as Record<string, string>;
    expect(doc.msg).toBe('created file /d/bad\\xFF\\x0A.txt');
    expect(doc.path).toBe('/d/bad\ufffd\n.txt');
    expect(Buffer.from(doc.pathBase64!, 'base64').equals(b('/d/bad', [0xff], '\n.txt'))).toBe(true);
  });
});
