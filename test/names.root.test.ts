/**
 * Names that are not UTF-8, end to end over a lab network (needs root): share a tree whose
 * file, directory and symlink-target names hold bytes that are not UTF-8, sync it with -a,
 * and compare names (read as bytes), contents and link targets byte for byte.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { cli, expectBuilt, runSync, startShare } from './e2e.js';
import { describeUnless } from './skip.js';

const why = skipReason(['nft']);

/** Join path pieces as bytes (a piece may be a Buffer holding any bytes). */
function bp(...parts: (string | Buffer)[]): Buffer {
  const out: Buffer[] = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(Buffer.from('/'));
    out.push(typeof p === 'string' ? Buffer.from(p) : p);
  });
  return Buffer.concat(out);
}

/** Every entry below `dir` with names as hex of their bytes: type, size, content hash, link target bytes, mode, mtime. */
function byteListing(dir: Buffer, opts: { times?: boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (rel: Buffer[]) => {
    const here = bp(dir, ...rel);
    const names = readdirSync(here, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const p = bp(here, name);
      const st = lstatSync(p, { bigint: true });
      const relHex = [...rel, name].map((x) => x.toString('hex')).join('/');
      let line = `${relHex} ${st.mode.toString(8)}`;
      if (st.isFile()) line += ` ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
      if (st.isSymbolicLink()) line += ` -> ${readlinkSync(p, { encoding: 'buffer' }).toString('hex')}`;
      if (opts.times && !st.isSymbolicLink()) line += ` ${st.mtimeNs}`;
      out.push(line);
      if (st.isDirectory()) walk([...rel, name]);
    }
  };
  walk([]);
  return out;
}

describeUnless(why, 'names that are not UTF-8, share to sync (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: Buffer;
  const badFile = Buffer.concat([Buffer.from('bad'), Buffer.of(0xff, 0xfe), Buffer.from('.txt')]);
  const badDir = Buffer.concat([Buffer.from('dir'), Buffer.of(0xe9, 0x80)]);
  const deepFile = Buffer.concat([Buffer.of(0xc0, 0xaf), Buffer.from('overlong-slash')]);
  const badTarget = Buffer.concat([Buffer.from('../tar'), Buffer.of(0xfe), Buffer.from('get')]);
  const big = randomBytes(200_000);

  beforeAll(async () => {
    expectBuilt(['base/names', 'base/bytefs', 'index/mdex', 'sync/sync', 'sync/session', 'sync/walk', 'sync/file', 'sync/symlink', 'sync/writer', 'sync/fsmeta', 'wire/nettree', 'wire/verify', 'model/entry']);
    lab = await createLab({ hosts: 2, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-names-e2e-'));
    src = bp(work, 'src', 'share');
    mkdirSync(src, { recursive: true });
    writeFileSync(bp(src, badFile), 'bytes that are not UTF-8 in my name\n');
    mkdirSync(bp(src, badDir));
    writeFileSync(bp(src, badDir, deepFile), big);
    writeFileSync(bp(src, badDir, 'plain.txt'), 'plain\n');
    symlinkSync(badTarget, bp(src, badDir, Buffer.concat([Buffer.from('link'), Buffer.of(0xff)])));
    writeFileSync(bp(src, 'ok.txt'), 'ok\n');
    // Old times, so that -a has something to apply.
    utimesSync(bp(src, badFile), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('syncs the tree with -a: names, contents and link targets byte for byte, the same root hash, then nothing to fetch', async () => {
    const share = await startShare(lab, 0, [path.join(work, 'src', 'share')], ['-v']);
    try {
      const dest = path.join(work, 'dest');
      mkdirSync(dest);
      const r = await runSync(lab, 1, ['-a', '-v', share.roots[0]!.hash, dest]);
      expect(r.code, r.stderr).toBe(0);
      expect(byteListing(bp(dest), { times: true })).toEqual(byteListing(src, { times: true }));
      expect(byteListing(bp(dest)).length).toBe(6);
      // Logs show the bytes as \xHH; the JSON summary is well-formed.
      expect(r.stderr).toContain('created file ');
      expect(r.stderr).toContain('bad\\xFF\\xFE.txt (1 chunk fetched');
      expect(r.stderr).toContain('dir\\xE9\\x80/\\xC0\\xAFoverlong-slash');
      expect(r.summary!.files.created).toBe(4);
      // The share served them and said so with the same escapes.
      expect(share.stderr()).toContain('bad\\xFF\\xFE.txt');
      // The copy indexes to the root hash the share printed: names were hashed as the same bytes.
      const idx = execFileSync(process.execPath, [cli, 'index', dest], { encoding: 'utf8' });
      expect(idx.slice(0, 64)).toBe(share.roots[0]!.hash);
      // Again: the receiver's own index of the destination matches, nothing is fetched.
      const again = await runSync(lab, 1, ['-a', share.roots[0]!.hash, dest]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.summary!.chunksFetched).toBe(0);
      expect(again.summary!.files.created + again.summary!.files.updated).toBe(0);
    } finally {
      await share.stop();
    }
  }, 120_000);

  it('shares a file whose own name is not UTF-8 and syncs it by hash and by that name (typed as bytes)', async () => {
    const one = bp(work, 'single', badFile);
    mkdirSync(bp(work, 'single'));
    writeFileSync(one, 'single\n');
    // The share takes the real path behind a plainly named link: its share name is the file's own bytes.
    const alias = path.join(work, 'single-link');
    symlinkSync(one, alias);
    const share = await startShare(lab, 0, [alias]);
    try {
      const root = share.roots[0]! as { hash: string; shareName: string; shareNameBase64?: string };
      expect(root.shareName).toBe('bad\ufffd\ufffd.txt');
      expect(Buffer.from(root.shareNameBase64!, 'base64').equals(badFile)).toBe(true);
      const byHash = path.join(work, 'dest-hash');
      mkdirSync(byHash);
      const r = await runSync(lab, 1, [root.hash, byHash + '/']);
      expect(r.code, r.stderr).toBe(0);
      expect(readdirSync(byHash, { encoding: 'buffer' })).toEqual([badFile]);
      expect(readFileSync(bp(byHash, badFile), 'utf8')).toBe('single\n');
      expect(Buffer.from(r.summary!.destBase64, 'base64').equals(bp(byHash, badFile))).toBe(true);
      // By name: the shell passes the raw bytes; lcsync reads them from /proc/self/cmdline.
      const byName = path.join(work, 'dest-name');
      mkdirSync(byName);
      const n = await lab.exec(1, ['sh', '-c', `exec "$0" "$1" sync --json -i e0 --timeout 20 "$(printf 'bad\\377\\376.txt')" "$2"`, process.execPath, cli, byName + '/']);
      expect(n.code, n.stderr).toBe(0);
      expect(readdirSync(byName, { encoding: 'buffer' })).toEqual([badFile]);
    } finally {
      await share.stop();
    }
  }, 120_000);
});
