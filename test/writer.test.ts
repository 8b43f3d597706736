import { describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, openSync, readSync } from 'node:fs';
import { chmod, mkdir, open, readFile, readdir, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ABANDONED_AFTER_MS, DeferredSync, EARLY_FLUSH_BYTES, HEARTBEAT_MS, OutputFile, writeNewSmallFile, STALE_AFTER_MS, isStaleTemp, parseTempName, pidAlive, pidScope, removeStaleTemps, syncFs, tempPathFor, TempListing } from '../src/core/sync/writer.js';
import { loadAddon } from '../src/core/base/addon.js';
import { syncSymlink } from '../src/core/sync/symlink.js';
import type { FetchedEntry, SyncContext } from '../src/core/sync/context.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { useTempDir } from './tmpdir.js';

const nativeSyncFs = loadAddon().addon?.syncFs;

const GiB = 2 ** 30;
const tmp = useTempDir('lcsync-writer-');
const fresh = tmp.fresh;

/** What `file` holds at `offset` now (an output being written, read through its own descriptor). */
function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

const tempsIn = async (d: string) => (await readdir(d)).filter((n) => n.includes('.lcsync-'));

async function caught(p: Promise<unknown>): Promise<LcsyncError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LcsyncError);
    return err as LcsyncError;
  }
  throw new Error('expected an error');
}

describe('OutputFile, atomic mode', () => {
  it('writes into a 0600 temp next to dest and renames it over dest on commit', async () => {
    const d = await fresh('commit');
    const dest = path.join(d, 'data.bin');
    const old = randomBytes(100_000);
    await writeFile(dest, old);
    await chmod(dest, 0o640);

    const out = await OutputFile.open(dest, 100_000);
    expect(out.dest).toBe(dest);
    expect(path.dirname(out.path)).toBe(d);
    expect(path.basename(out.path)).toMatch(new RegExp(`^\\.data\\.bin\\.lcsync-${process.pid}-[0-9a-f]+\\.tmp$`));
    expect((await stat(out.path)).mode & 0o777).toBe(0o600);
    // Seeded with the old content: unwritten regions read back as the old bytes.
    expect(readAt(out.path, 5000, 1000).equals(old.subarray(5000, 6000))).toBe(true);

    const patch = randomBytes(32768);
    await out.write(32768, patch);
    expect(readAt(out.path, 32768, 32768).equals(patch)).toBe(true);
    // dest is untouched until commit.
    expect((await readFile(dest)).equals(old)).toBe(true);

    await out.commit();
    const want = Buffer.from(old);
    patch.copy(want, 32768);
    expect((await readFile(dest)).equals(want)).toBe(true);
    expect((await stat(dest)).mode & 0o777).toBe(0o640); // the replaced file's mode
    expect(await tempsIn(d)).toEqual([]);
    await expect(out.write(0, Buffer.alloc(1))).rejects.toThrow(/already closed/);
  });

  it('creates dest when missing, with the umask default mode', async () => {
    const d = await fresh('create');
    const dest = path.join(d, 'new.bin');
    const out = await OutputFile.open(dest, 10);
    await out.write(0, Buffer.from('0123456789'));
    await out.commit();
    expect(await readFile(dest, 'utf8')).toBe('0123456789');
    const umask = process.umask();
    expect((await stat(dest)).mode & 0o777).toBe(0o666 & ~umask);
    expect(await tempsIn(d)).toEqual([]);
  });

  it('abort leaves the old file byte-identical and removes the temp', async () => {
    const d = await fresh('abort');
    const dest = path.join(d, 'keep.bin');
    const old = randomBytes(70_000);
    await writeFile(dest, old);
    const out = await OutputFile.open(dest, 200_000);
    await out.write(0, randomBytes(200_000));
    expect(await tempsIn(d)).toHaveLength(1);
    await out.abort();
    await out.abort(); // twice is fine
    expect((await readFile(dest)).equals(old)).toBe(true);
    expect(await tempsIn(d)).toEqual([]);
    expect(await readdir(d)).toEqual(['keep.bin']);
  });

  it('shrinks dest to the new size', async () => {
    const d = await fresh('shrink');
    const dest = path.join(d, 'f');
    const old = randomBytes(100_000);
    await writeFile(dest, old);
    const out = await OutputFile.open(dest, 40_000);
    await out.commit();
    expect((await readFile(dest)).equals(old.subarray(0, 40_000))).toBe(true);
  });

  it('grows dest, zero-filling the gap', async () => {
    const d = await fresh('grow');
    const dest = path.join(d, 'f');
    const old = randomBytes(1000);
    await writeFile(dest, old);
    const out = await OutputFile.open(dest, 70_000);
    const tail = randomBytes(1000);
    await out.write(69_000, tail);
    await out.commit();
    const got = await readFile(dest);
    expect(got.length).toBe(70_000);
    expect(got.subarray(0, 1000).equals(old)).toBe(true);
    expect(got.subarray(1000, 69_000).equals(Buffer.alloc(68_000))).toBe(true);
    expect(got.subarray(69_000).equals(tail)).toBe(true);
  });

  it('writes above 4 GiB land at the right offset (sparse 5 GiB file)', async () => {
    const d = await fresh('big');
    const dest = path.join(d, 'big.bin');
    const size = 5 * GiB + 1000;
    const out = await OutputFile.open(dest, size);
    const high = randomBytes(500);
    const across = randomBytes(64); // straddles 4 GiB, where 32-bit offsets wrap
    await out.write(5 * GiB + 123, high);
    await out.write(4 * GiB - 32, across);
    expect(readAt(out.path, 5 * GiB + 123, 500).equals(high)).toBe(true);
    await out.commit();
    expect((await stat(dest)).size).toBe(size);
    const fd = openSync(dest, 'r');
    try {
      const at = (pos: number, len: number) => {
        const b = Buffer.alloc(len);
        expect(readSync(fd, b, 0, len, pos)).toBe(len);
        return b;
      };
      expect(at(5 * GiB + 123, 500).equals(high)).toBe(true);
      expect(at(4 * GiB - 32, 64).equals(across)).toBe(true);
      // Nothing landed at the wrapped positions.
      expect(at(GiB + 123, 500).equals(Buffer.alloc(500))).toBe(true);
      expect(at(0, 64).equals(Buffer.alloc(64))).toBe(true);
      expect(at(4 * GiB + 32, 64).equals(Buffer.alloc(64))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('a write past the end fails, removes the temp and leaves dest alone', async () => {
    const d = await fresh('pastend');
    const dest = path.join(d, 'f');
    await writeFile(dest, 'old');
    const out = await OutputFile.open(dest, 100);
    const err = await caught(out.write(90, Buffer.alloc(20)));
    expect(err.code).toBe('INTERNAL');
    expect(await tempsIn(d)).toEqual([]);
    expect(await readFile(dest, 'utf8')).toBe('old');
    // Later uses report the write that failed, not a bare "closed".
    await expect(out.commit()).rejects.toThrow(/past the end/);
  });

  it('writes in flight when one fails report that failure (a full disk is an IO error, not "closed")', async () => {
    const d = await fresh('inflight');
    const out = await OutputFile.open(path.join(d, 'f'), 100);
    const bad = out.write(90, Buffer.alloc(20));
    const next = out.write(0, Buffer.alloc(10));
    const [a, b] = await Promise.allSettled([bad, next]);
    expect(a.status).toBe('rejected');
    expect(b.status).toBe('rejected');
    expect(String((b as PromiseRejectedResult).reason)).toMatch(/past the end/);
    expect(await tempsIn(d)).toEqual([]);
  });

  it('writes synchronously (no thread-pool round trip) until a write is slow, then through the thread pool', async () => {
    const d = await fresh('syncwrite');
    const out = await OutputFile.open(path.join(d, 'f'), 65536);
    expect(out.writesSynchronously).toBe(true);
    const a = randomBytes(32768);
    let settled = false;
    const p = out.write(0, a).then(() => (settled = true));
    // In the file, and the write settled, before the event loop could run a thread-pool completion.
    expect(readAt(out.path, 0, 32768).equals(a)).toBe(true);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(settled).toBe(true);
    await p;
    expect(out.writesSynchronously).toBe(true);

    // Every write slower than 0 ms: the first one turns the output to promise writes, which still land.
    const slow = await OutputFile.open(path.join(d, 'g'), 65536, { slowWriteMs: 0 });
    await slow.write(0, a);
    expect(slow.writesSynchronously).toBe(false);
    const b = randomBytes(32768);
    await slow.write(32768, b);
    await slow.commit();
    expect((await readFile(path.join(d, 'g'))).equals(Buffer.concat([a, b]))).toBe(true);
    await out.abort();
  });

  it('hands a large output to the disk every EARLY_FLUSH_BYTES while it is written, so commit finds little left to sync', async () => {
    const d = await fresh('earlyflush');
    const probe = await open(path.join(d, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    const spy = vi.spyOn(proto, 'datasync');
    try {
      const size = 2 * EARLY_FLUSH_BYTES + 65536;
      const out = await OutputFile.open(path.join(d, 'big'), size);
      const data = randomBytes(size);
      const step = 1 << 20;
      for (let at = 0; at < EARLY_FLUSH_BYTES - step; at += step) await out.write(at, data.subarray(at, at + step));
      expect(spy).not.toHaveBeenCalled();
      for (let at = EARLY_FLUSH_BYTES - step; at < size; at += step) await out.write(at, data.subarray(at, Math.min(size, at + step)));
      // One at EARLY_FLUSH_BYTES, one more at twice that if the first was done by then (never two at once).
      expect(spy.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(spy.mock.calls.length).toBeLessThanOrEqual(2);
      await out.commit();
      expect((await readFile(path.join(d, 'big'))).equals(data)).toBe(true);
      // A small file (synced at the end of the run with the others) is never flushed early.
      spy.mockClear();
      const small = await OutputFile.open(path.join(d, 'small'), 4096, { deferred: new DeferredSync() });
      await small.write(0, data.subarray(0, 4096));
      await small.commit();
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('an early flush that failed fails the commit (the kernel reports a write-back error to one fsync only)', async () => {
    const d = await fresh('earlyflushfail');
    await writeFile(path.join(d, 'f'), 'old');
    const probe = await open(path.join(d, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
    const spy = vi.spyOn(proto, 'datasync').mockRejectedValue(eio);
    try {
      const out = await OutputFile.open(path.join(d, 'f'), EARLY_FLUSH_BYTES + 1);
      await out.write(0, Buffer.alloc(EARLY_FLUSH_BYTES, 7));
      expect(spy).toHaveBeenCalledTimes(1);
      await out.write(EARLY_FLUSH_BYTES, Buffer.of(7));
      const err = await caught(out.commit());
      expect(err.code).toBe('IO');
      expect(await readFile(path.join(d, 'f'), 'utf8')).toBe('old');
      expect(await tempsIn(d)).toEqual([]);
    } finally {
      spy.mockRestore();
    }
  });

  it('maps open errors and leaves no temp behind', async () => {
    const d = await fresh('openerr');
    const missing = await caught(OutputFile.open(path.join(d, 'no', 'such', 'f'), 10));
    expect(missing.code).toBe('NOT_FOUND');
    await mkdir(path.join(d, 'adir'));
    const isDir = await caught(OutputFile.open(path.join(d, 'adir'), 10));
    expect(isDir.code).toBe('IO');
    expect(isDir.message).toMatch(/not a regular file/);
    expect(await tempsIn(d)).toEqual([]);
  });
});

describe('DeferredSync', () => {
  /** A `sync` first in PATH that notes each call in the returned log and succeeds, as coreutils' would. */
  async function fakeSync(d: string): Promise<string> {
    const bin = path.join(d, 'bin');
    const log = path.join(d, 'sync.log');
    await mkdir(bin);
    await writeFile(path.join(bin, 'sync'), `#!/bin/sh\necho "$@" >> '${log}'\n`, { mode: 0o755 });
    return log;
  }

  it('fsyncs a few files itself, and leaves many to one syncfs per file system (coreutils sync -f without the addon)', async () => {
    const d = await fresh('deferred');
    const log = await fakeSync(d);
    const saved = process.env.PATH;
    process.env.PATH = `${path.join(d, 'bin')}:${saved}`;
    process.env.LCSYNC_NO_NATIVE_SYNCFS = '1';
    try {
      const run = async (n: number, name: string) => {
        const deferred = new DeferredSync();
        for (let i = 0; i < n; i++) writeNewSmallFile(path.join(d, `${name}${i}`), { data: Buffer.from('x'), mode: 0o644 }, deferred);
        await deferred.flush();
        expect(deferred.pending).toBe(0);
      };
      await run(3, 'few');
      await expect(readFile(log, 'utf8')).rejects.toThrow();
      await run(40, 'many');
      expect((await readFile(log, 'utf8')).trim()).toBe(`-f -- ${d}`);
    } finally {
      process.env.PATH = saved;
      delete process.env.LCSYNC_NO_NATIVE_SYNCFS;
    }
  });

  it.skipIf(!nativeSyncFs && process.env.CI_REQUIRE_ADDON !== '1')('with the addon, syncs many files by its syncfs and starts no process', async () => {
    const d = await fresh('deferred-native');
    const log = await fakeSync(d);
    const saved = process.env.PATH;
    process.env.PATH = `${path.join(d, 'bin')}:${saved}`;
    try {
      const deferred = new DeferredSync();
      for (let i = 0; i < 40; i++) writeNewSmallFile(path.join(d, `many${i}`), { data: Buffer.from('x'), mode: 0o644 }, deferred);
      await deferred.flush();
      expect(deferred.pending).toBe(0);
      await expect(readFile(log, 'utf8')).rejects.toThrow();
    } finally {
      process.env.PATH = saved;
    }
    expect(await syncFs(d)).toBe(true);
    // A path that is no directory: false (the caller then fsyncs file by file), never a throw.
    expect(await syncFs(path.join(d, 'no-such-dir'))).toBe(false);
    expect(await syncFs(path.join(d, 'many0'))).toBe(false);
    expect(() => nativeSyncFs!(Buffer.alloc(0), () => undefined)).toThrow(TypeError);
    expect(() => nativeSyncFs!(Buffer.from('a\0b'), () => undefined)).toThrow(TypeError);
  });
});

describe('writeNewSmallFile (a new small file in one go)', () => {
  it('makes dest with its bytes, mode and owner, leaves no temp, and returns the identity it has', async () => {
    const d = await fresh('small');
    const dest = path.join(d, 'small.bin');
    const data = randomBytes(3000);
    const deferred = new DeferredSync();
    const uid = process.getuid?.() === 0 ? 4321 : undefined;
    const id = writeNewSmallFile(dest, { data, mode: 0o640, uid, gid: uid }, deferred);
    expect(await readFile(dest)).toEqual(data);
    const st = lstatSync(dest, { bigint: true });
    expect(Number(st.mode & 0o7777n)).toBe(0o640);
    if (uid !== undefined) expect([Number(st.uid), Number(st.gid)]).toEqual([uid, uid]);
    expect(id).toEqual({ ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs });
    expect(await tempsIn(d)).toEqual([]);
    expect(deferred.pending).toBe(1);
  });

  it('leaves holes as holes and still has the full size (zeros at the end too)', async () => {
    const d = await fresh('holes');
    const dest = path.join(d, 'holes.bin');
    const data = Buffer.alloc(40_000);
    data.fill(7, 1000, 2000);
    // A hole in the middle and one at the end: the size must come out right.
    writeNewSmallFile(dest, { data, holes: [[0, 1000], [2000, 8000], [10_000, 30_000]], mode: 0o644 }, new DeferredSync());
    expect(await readFile(dest)).toEqual(data);
  });

  it('replaces an existing file by rename (readers see the old or the new file, never a mix)', async () => {
    const d = await fresh('replace');
    const dest = path.join(d, 'f');
    await writeFile(dest, 'old contents that are longer');
    writeNewSmallFile(dest, { data: Buffer.from('new'), mode: 0o600 }, new DeferredSync());
    expect(await readFile(dest, 'utf8')).toBe('new');
    expect(await tempsIn(d)).toEqual([]);
  });

  it('a failure names dest, leaves nothing behind, and a file too big for it is refused', async () => {
    const d = await fresh('smallfail');
    const err = (() => {
      try {
        writeNewSmallFile(path.join(d, 'missing-dir', 'f'), { data: Buffer.from('x'), mode: 0o644 }, new DeferredSync());
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(LcsyncError);
    expect((err as LcsyncError).message).toContain('missing-dir');
    expect(() => writeNewSmallFile(path.join(d, 'big'), { data: Buffer.alloc(64 * 1024 + 1), mode: 0o644 }, new DeferredSync())).toThrow(LcsyncError);
    expect(await readdir(d)).toEqual([]);
  });
});

describe('OutputFile, in-place mode', () => {
  it('writes dest itself and truncates at commit', async () => {
    const d = await fresh('inplace');
    const dest = path.join(d, 'f');
    const old = randomBytes(100_000);
    await writeFile(dest, old);
    const out = await OutputFile.open(dest, 50_000, { inplace: true });
    expect(out.path).toBe(dest);
    expect(await readdir(d)).toEqual(['f']);
    // Past the new end the old bytes are still readable until commit (chunks can be reused).
    expect(readAt(out.path, 60_000, 100).equals(old.subarray(60_000, 60_100))).toBe(true);
    const patch = randomBytes(1000);
    await out.write(10_000, patch);
    // In place: visible in dest at once.
    expect((await readFile(dest)).subarray(10_000, 11_000).equals(patch)).toBe(true);
    await out.commit();
    const want = Buffer.from(old.subarray(0, 50_000));
    patch.copy(want, 10_000);
    expect((await readFile(dest)).equals(want)).toBe(true);
  });

  it('creates a missing dest and grows it', async () => {
    const d = await fresh('inplace-new');
    const dest = path.join(d, 'f');
    const out = await OutputFile.open(dest, 5000, { inplace: true });
    await out.write(4000, Buffer.alloc(1000, 7));
    await out.commit();
    const got = await readFile(dest);
    expect(got.length).toBe(5000);
    expect(got.subarray(4000).equals(Buffer.alloc(1000, 7))).toBe(true);
    expect(got.subarray(0, 4000).equals(Buffer.alloc(4000))).toBe(true);
  });
});

describe('removeStaleTemps', () => {
  function deadPid(): number {
    const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const pid = Number(r.stdout);
    expect(pid).toBeGreaterThan(0);
    return pid;
  }

  it('removes temps of dead runs and keeps those of live ones', async () => {
    const d = await fresh('stale');
    const dead = deadPid();
    const here = (hex: string) => `${pidScope()}${hex.padEnd(12, '0')}`; // made in our PID namespace
    const old = new Date(Date.now() - STALE_AFTER_MS - 60_000);
    const ancient = new Date(Date.now() - ABANDONED_AFTER_MS - 60_000);
    const files: Record<string, Date | undefined> = {
      [`.f.lcsync-${dead}-${here('aa11')}.tmp`]: undefined, // ours, dead pid, just touched: removed (its run is gone)
      [`.g.lcsync-${dead}-${here('bb22')}.tmp`]: undefined, // the same, other basename
      [`.f.lcsync-${process.pid}-${here('dd44')}.tmp`]: old, // our own pid: alive, kept
      [`.f.lcsync-1-${here('ee55')}.tmp`]: old, // pid 1 is alive: kept
      [`.f.lcsync-1-${here('ff66')}.tmp`]: ancient, // untouched for an hour: the pid was reused, removed
      [`.f.lcsync-${dead}-0123456789abcdef0123.tmp`]: undefined, // another PID namespace, just touched: kept
      [`.f.lcsync-${dead}-aa11.tmp`]: undefined, // an older lcsync's name (no scope), just touched: kept
      [`.f.lcsync-1-bb22.tmp`]: old, // no scope, untouched past STALE_AFTER_MS: removed, whatever pid 1 is here
      ['f']: old,
      ['.f.lcsync-notapid.tmp']: old, // not our pattern
      ['.f.lcsync-12-zz.tmp']: old, // not our pattern
    };
    for (const [name, mtime] of Object.entries(files)) {
      await writeFile(path.join(d, name), 'x');
      if (mtime) await utimes(path.join(d, name), mtime, mtime);
    }
    expect(await removeStaleTemps(d, 'f')).toBe(3);
    expect((await readdir(d)).sort()).toEqual(
      [
        `.g.lcsync-${dead}-${here('bb22')}.tmp`,
        `.f.lcsync-${process.pid}-${here('dd44')}.tmp`,
        `.f.lcsync-1-${here('ee55')}.tmp`,
        `.f.lcsync-${dead}-0123456789abcdef0123.tmp`,
        `.f.lcsync-${dead}-aa11.tmp`,
        'f',
        '.f.lcsync-notapid.tmp',
        '.f.lcsync-12-zz.tmp',
      ].sort(),
    );
    // Without a basename every stale temp in the directory goes.
    expect(await removeStaleTemps(d)).toBe(1);
    expect(await readdir(d)).not.toContain(`.g.lcsync-${dead}-${here('bb22')}.tmp`);
    expect(await removeStaleTemps(path.join(d, 'missing'))).toBe(0);
    // Once untouched long enough, the temps of other namespaces go too.
    expect(await removeStaleTemps(d, 'f', Date.now() + STALE_AFTER_MS + 1000)).toBe(2);
  });

  it('removes the temporary symlink of a dead run too (links are made under a temporary name and renamed over)', async () => {
    const d = await fresh('stale-link');
    const dead = deadPid();
    await symlink('target', path.join(d, `.l.lcsync-${dead}-${pidScope()}abc123abc123.tmp`));
    await symlink('target', path.join(d, `.l.lcsync-${dead}-def456.tmp`)); // another scope, just made: kept
    expect(await removeStaleTemps(d, 'l')).toBe(1);
    expect(await readdir(d)).toEqual([`.l.lcsync-${dead}-def456.tmp`]);
  });

  it('a symlink sync removes the link a killed run left under a temporary name, whether the link is new or already there', async () => {
    const d = await fresh('stale-link-sync');
    const dead = deadPid();
    const leftover = (base: string) => `.${base}.lcsync-${dead}-${pidScope()}abc123abc123.tmp`;
    await symlink('t', path.join(d, leftover('new'))); // killed before its rename: the link is not there yet
    await symlink('t', path.join(d, 'same'));
    await symlink('t', path.join(d, leftover('same'))); // killed after another run made it: unchanged now
    const ctx = {
      opts: {},
      temps: new TempListing(),
      finishMeta: async () => false,
      conflict: () => {
        throw new Error('no conflict here');
      },
    } as unknown as SyncContext;
    const entry = (name: string) => ({ head: { name: Buffer.from(name), payloadOffset: 0 }, obj: Buffer.from('t') }) as unknown as FetchedEntry;
    await syncSymlink(ctx, entry('new'), path.join(d, 'new'));
    await syncSymlink(ctx, entry('same'), path.join(d, 'same'));
    expect((await readdir(d)).sort()).toEqual(['new', 'same']);
  });

  it('the cleanup rule: a dead pid of our namespace at once; another namespace only by age; abandoned ones always', () => {
    const dead = () => false;
    const alive = () => true;
    const t = (ageMs: number, sameScope: boolean) => ({ pid: 4242, ageMs, sameScope });
    expect(isStaleTemp(t(0, true), dead)).toBe(true);
    expect(isStaleTemp(t(0, true), alive)).toBe(false);
    expect(isStaleTemp(t(ABANDONED_AFTER_MS - 1, true), alive)).toBe(false);
    // A live run in another PID namespace: its pid looks dead (or someone else's) here, but it touched the temp recently.
    expect(isStaleTemp(t(0, false), dead)).toBe(false);
    expect(isStaleTemp(t(HEARTBEAT_MS * 3, false), dead)).toBe(false);
    expect(isStaleTemp(t(STALE_AFTER_MS - 1, false), dead)).toBe(false);
    expect(isStaleTemp(t(STALE_AFTER_MS, false), alive)).toBe(true);
    // A reused pid keeps nothing forever.
    expect(isStaleTemp(t(ABANDONED_AFTER_MS, true), alive)).toBe(true);
    // A live run touches its temp far more often than the cleanup's patience.
    expect(STALE_AFTER_MS).toBeGreaterThanOrEqual(3 * HEARTBEAT_MS);
    expect(pidAlive(process.pid)).toBe(true);
    expect(pidAlive(1)).toBe(true);
    expect(pidAlive(0)).toBe(false);
    expect(pidAlive(-1)).toBe(false);
  });

  it('temp names carry the pid scope: ours are recognised, a run in another PID namespace has another', () => {
    expect(pidScope()).toMatch(/^[0-9a-f]{8}$/);
    const ours = path.basename(tempPathFor('/x/f'));
    expect(parseTempName(ours)).toEqual({ base: 'f', pid: process.pid, sameScope: true });
    expect(parseTempName(`.f.lcsync-7-${pidScope()}.tmp`)!.sameScope).toBe(false);
    expect(parseTempName('.f.lcsync-7-aa.tmp')!.sameScope).toBe(false);
    expect(parseTempName('f')).toBeUndefined();
  });

  it('an open OutputFile touches its temp every HEARTBEAT_MS while no chunk arrives', async () => {
    const d = await fresh('heartbeat');
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const out = await OutputFile.open(path.join(d, 'f'), 10);
      const tmp = out.path;
      const old = new Date(Date.now() - STALE_AFTER_MS - 60_000);
      await utimes(tmp, old, old);
      expect(isStaleTemp({ pid: 1 << 30, ageMs: Date.now() - (await stat(tmp)).mtimeMs, sameScope: false }, () => false)).toBe(true);
      vi.advanceTimersByTime(HEARTBEAT_MS);
      let age = Infinity;
      for (let i = 0; i < 100 && age > 10_000; i++) {
        await new Promise((r) => setImmediate(r));
        age = Date.now() - (await stat(tmp)).mtimeMs;
      }
      expect(age).toBeLessThan(10_000);
      expect(await removeStaleTemps(d, 'f')).toBe(0);
      await out.abort();
    } finally {
      vi.useRealTimers();
    }
  });

  it('finds the temp an interrupted OutputFile leaves', async () => {
    const d = await fresh('interrupted');
    const dest = path.join(d, 'f');
    const out = await OutputFile.open(dest, 10);
    // Not stale: it is ours and fresh.
    expect(await removeStaleTemps(d, 'f')).toBe(0);
    expect(await tempsIn(d)).toHaveLength(1);
    await out.abort();
  });
});
