/**
 * OutputFile cases that need root: a full disk (a 1 MiB tmpfs in a private mount namespace) and temp names made
 * in another PID namespace. The rest of src/core/sync/writer.ts: test/writer.test.ts.
 */
import { expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pidScope } from '../src/core/sync/writer.js';
import { describeUnless } from './skip.js';
import { useTempDir } from './tmpdir.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = useTempDir('lcsync-writer-');
const fresh = tmp.fresh;

const notRoot = typeof process.getuid !== 'function' || process.getuid() !== 0;
const noUnshare = !notRoot && spawnSync('unshare', ['-m', 'true'], { timeout: 5000 }).status !== 0;
const enospcSkip = notRoot ? 'needs root to mount a tmpfs' : noUnshare ? 'unshare -m does not work here' : undefined;

describeUnless(enospcSkip, 'OutputFile on a full disk (needs root: tmpfs in a private mount namespace)', () => {
  it('reports IO "no space left on device", keeps the old file and leaves no temp', async () => {
    const build = spawnSync('npx', ['tsc', '-p', '.', '--outDir', path.join(tmp.dir(), 'dist')], {
      cwd: repo,
      encoding: 'utf8',
      timeout: 120_000,
    });
    const writerJs = path.join(tmp.dir(), 'dist', 'core', 'sync', 'writer.js');
    expect(build.error, build.stderr).toBeUndefined();
    await stat(writerJs); // emitted even if an unrelated file has type errors
    const mnt = await fresh('mnt');
    // The child mounts a 1 MiB tmpfs that only its own mount namespace sees, so nothing leaks
    // even if it is killed. Case "write": ENOSPC on write; case "open": ENOSPC seeding the temp.
    const script = `
      import { OutputFile } from ${JSON.stringify('file://' + writerJs)};
      import { createHash, randomBytes } from 'node:crypto';
      import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
      const dir = process.argv[1];
      const dest = dir + '/f';
      const sha = () => createHash('sha256').update(readFileSync(dest)).digest('hex');
      const result = {};
      async function attempt(name, oldSize, act) {
        writeFileSync(dest, randomBytes(oldSize));
        const before = sha();
        let err;
        try { await act(); } catch (e) { err = e; }
        result[name] = { code: err?.code, name: err?.name, message: err?.message,
          intact: sha() === before, files: readdirSync(dir) };
      }
      await attempt('write', 200 * 1024, async () => {
        const out = await OutputFile.open(dest, 4 << 20);
        for (let off = 0; off < 4 << 20; off += 1 << 18) await out.write(off, randomBytes(1 << 18));
        await out.commit();
      });
      await attempt('open', 700 * 1024, async () => {
        const out = await OutputFile.open(dest, 700 * 1024);
        await out.commit();
      });
      process.stdout.write(JSON.stringify(result));
    `;
    const r = spawnSync(
      'unshare',
      ['-m', '--propagation', 'private', 'sh', '-c',
        'mount -t tmpfs -o size=1m lcsynctest "$1" && exec node --input-type=module -e "$2" "$1"', 'sh', mnt, script],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, { code?: string; name?: string; message?: string; intact: boolean; files: string[] }>;
    for (const name of ['write', 'open']) {
      const c = result[name]!;
      expect(c.name, name).toBe('LcsyncError');
      expect(c.code, name).toBe('IO');
      expect(c.message, name).toMatch(/no space left on device/);
      expect(c.intact, name).toBe(true);
      expect(c.files, name).toEqual(['f']);
    }
    // The mount never reached this namespace.
    expect(await readdir(mnt)).toEqual([]);
  });
});

const pidnsSkip = notRoot ? 'needs root to unshare a PID namespace' : noUnshare ? 'unshare -m does not work here' : undefined;

describeUnless(pidnsSkip, 'pid scope of temp names (needs root: unshare --pid)', () => {
  it('another process in our PID namespace has our scope; one in a new PID namespace has another', () => {
    const built = path.join(repo, 'dist', 'core', 'sync', 'writer.js');
    if (!existsSync(built)) throw new Error('dist/ is not built: run `npm run build` before this test');
    const scopeIn = (pre: string[]) => spawnSync(pre[0]!, [...pre.slice(1), process.execPath, '--input-type=module', '-e', `import { pidScope } from ${JSON.stringify(built)}; process.stdout.write(pidScope())`], { encoding: 'utf8' });
    expect(scopeIn(['env']).stdout).toBe(pidScope());
    const other = scopeIn(['unshare', '--pid', '--fork']);
    expect(other.status, other.stderr).toBe(0);
    expect(other.stdout).toMatch(/^[0-9a-f]{8}$/);
    expect(other.stdout).not.toBe(pidScope());
  });
});
