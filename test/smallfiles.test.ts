/** SmallFileWriter (src/core/sync/smallfiles.ts) and the addon's writeSmallFiles (native/smallfiles.c). */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { loadAddon } from '../src/core/base/addon.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { fsPath, nameFromBytes } from '../src/core/base/names.js';
import { SmallFileWriter } from '../src/core/sync/smallfiles.js';
import { DeferredSync } from '../src/core/sync/writer.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-smallfiles-');
const native = loadAddon().addon?.writeSmallFiles;
const isRoot = process.getuid?.() === 0;
const tempsIn = async (d: string) => (await readdir(d)).filter((n) => n.includes('.lcsync-'));

describe.each([
  ['in batches by the addon', true],
  ['one by one on the JS thread', false],
])('SmallFileWriter, %s', (_what, batched) => {
  it.skipIf(batched && !native)('makes every file with its bytes, mode, owner and identity, and leaves no temp', async () => {
    const d = await tmp.fresh(`many-${batched}`);
    const deferred = new DeferredSync();
    const w = new SmallFileWriter(deferred, batched);
    expect(w.batching).toBe(batched);
    // More files than one batch and two in flight hold, of every size up to the limit, and a name that is not UTF-8.
    const files = Array.from({ length: 300 }, (_, i) => ({
      dest: path.join(d, i === 7 ? nameFromBytes(Buffer.from([0x66, 0xff, 0x2e, 0x62])) : `f${i}`),
      // i === 2: a view into the middle of a larger buffer (what the addon writes is the view's bytes).
      data: i === 2 ? randomBytes(5000).subarray(1000, 3000) : randomBytes(i === 0 ? 0 : i === 1 ? 64 * 1024 : (i * 977) % 9000),
      mode: i % 2 ? 0o640 : 0o604,
      owner: isRoot && i % 3 === 0 ? 4321 + i : undefined,
    }));
    const ids = await Promise.all(files.map((f) => w.write(f.dest, { data: f.data, mode: f.mode, uid: f.owner, gid: f.owner })));
    files.forEach((f, i) => {
      expect(readFileSync(fsPath(f.dest)).equals(f.data)).toBe(true);
      const st = lstatSync(fsPath(f.dest), { bigint: true });
      expect(Number(st.mode & 0o7777n)).toBe(f.mode);
      if (f.owner !== undefined) expect([Number(st.uid), Number(st.gid)]).toEqual([f.owner, f.owner]);
      expect(ids[i]).toEqual({ ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs });
    });
    expect(await tempsIn(d)).toEqual([]);
    expect(deferred.pending).toBe(files.length);
  });

  it.skipIf(batched && !native)('a file that cannot be made fails alone, named by its destination, and leaves nothing behind', async () => {
    const d = await tmp.fresh(`fail-${batched}`);
    const deferred = new DeferredSync();
    const w = new SmallFileWriter(deferred, batched);
    const results = await Promise.allSettled([
      w.write(path.join(d, 'a'), { data: Buffer.from('a'), mode: 0o644 }),
      w.write(path.join(d, 'missing-dir', 'b'), { data: Buffer.from('b'), mode: 0o644 }),
      w.write(path.join(d, 'c'), { data: Buffer.from('c'), mode: 0o644 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as LcsyncError;
    expect(err).toBeInstanceOf(LcsyncError);
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toContain(path.join('missing-dir', 'b'));
    expect((await readdir(d)).sort()).toEqual(['a', 'c']);
    expect(deferred.pending).toBe(2);
    // Too big for a small file: refused before anything is made.
    await expect(w.write(path.join(d, 'big'), { data: Buffer.alloc(64 * 1024 + 1), mode: 0o644 })).rejects.toThrow(LcsyncError);
    expect((await readdir(d)).sort()).toEqual(['a', 'c']);
  });

  it.skipIf(batched && !native)('times (-t): set with each file by the addon (timesSet), else left to the caller', async () => {
    const d = await tmp.fresh(`times-${batched}`);
    const w = new SmallFileWriter(new DeferredSync(), batched);
    // Before 1970, with nanoseconds, and far ahead: what a source's files can carry.
    const stamps = [
      { atimeSec: 1_600_000_000n, atimeNsec: 123_456_789n, mtimeSec: 1_500_000_000n, mtimeNsec: 987_654_321n },
      { atimeSec: -86_400n, atimeNsec: 5n, mtimeSec: -1n, mtimeNsec: 999_999_999n },
      { atimeSec: 4_102_444_800n, atimeNsec: 0n, mtimeSec: 4_102_444_800n, mtimeNsec: 1n },
    ];
    const ids = await Promise.all(stamps.map((times, i) => w.write(path.join(d, `t${i}`), { data: Buffer.from(`file ${i}`), mode: 0o644, times })));
    // A batch of files without times, beside: those keep the time they were written at.
    const plain = await w.write(path.join(d, 'plain'), { data: Buffer.from('x'), mode: 0o644 });
    expect(plain.timesSet).toBeFalsy();
    stamps.forEach((t, i) => {
      const st = lstatSync(path.join(d, `t${i}`), { bigint: true });
      expect(ids[i]!.timesSet ?? false).toBe(batched);
      if (!batched) return;
      expect(st.mtimeNs).toBe(t.mtimeSec * 1_000_000_000n + t.mtimeNsec);
      expect(st.atimeNs).toBe(t.atimeSec * 1_000_000_000n + t.atimeNsec);
      expect(ids[i]!.mtimeNs).toBe(st.mtimeNs);
    });
  });

  it.skipIf(batched && !native)('a file with holes comes out whole (written on the JS thread, holes kept)', async () => {
    const d = await tmp.fresh(`holes-${batched}`);
    const data = Buffer.alloc(40_000);
    data.fill(9, 5000, 6000);
    await new SmallFileWriter(new DeferredSync(), batched).write(path.join(d, 'h'), { data, holes: [[0, 5000], [6000, 34_000]], mode: 0o644 });
    expect(readFileSync(path.join(d, 'h')).equals(data)).toBe(true);
  });
});

describe.skipIf(!native)('writeSmallFiles (the addon)', () => {
  it('refuses arguments that do not add up, before touching anything', async () => {
    const d = await tmp.fresh('args');
    const names = Buffer.from(`${path.join(d, '.t')}\0${path.join(d, 'f')}\0`);
    const ok = () => {};
    const p = (mode = 0o644, uid = -1) => Float64Array.from([mode, uid, -1]);
    const out = new BigInt64Array(5);
    const one = [Buffer.alloc(4)];
    expect(() => native!(names, [], p(), out, ok)).toThrow(RangeError);
    expect(() => native!(names, [Buffer.alloc(4), Buffer.alloc(4)], p(), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(0o10000), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(420.5), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(0o644, -2), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(0o644, NaN), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(0o644, 2 ** 32), out, ok)).toThrow(RangeError);
    expect(() => native!(names.subarray(0, names.length - 1), one, p(), out, ok)).toThrow(TypeError);
    expect(() => native!(Buffer.from(`${path.join(d, 'f')}\0`), one, p(), out, ok)).toThrow(RangeError);
    expect(() => native!(names, one, p(), new BigInt64Array(4), ok)).toThrow(RangeError);
    expect(() => native!(names, one, BigInt64Array.from([420n, -1n, -1n]) as unknown as Float64Array, out, ok)).toThrow(TypeError);
    expect(() => native!(names, Buffer.alloc(4) as unknown as Uint8Array[], p(), out, ok)).toThrow(TypeError);
    expect(() => native!(names, ['abcd'] as unknown as Uint8Array[], p(), out, ok)).toThrow(TypeError);
    // Times: four values per file, whole seconds exact in a double, nanoseconds below a second.
    const t = (...v: number[]) => Float64Array.from(v);
    const timed = native as unknown as (...a: unknown[]) => void;
    expect(() => timed(names, one, p(), out, ok, t(1, 0, 1))).toThrow(RangeError);
    expect(() => timed(names, one, p(), out, ok, t(1, 0, 1, 1e9))).toThrow(RangeError);
    expect(() => timed(names, one, p(), out, ok, t(1, -1, 1, 0))).toThrow(RangeError);
    expect(() => timed(names, one, p(), out, ok, t(1.5, 0, 1, 0))).toThrow(RangeError);
    expect(() => timed(names, one, p(), out, ok, t(2 ** 60, 0, 1, 0))).toThrow(RangeError);
    expect(() => timed(names, one, p(), out, ok, new BigInt64Array(4))).toThrow(TypeError);
    expect(await readdir(d)).toEqual([]);
  });
});
