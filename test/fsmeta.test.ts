/**
 * Times applied by `sync -t` (src/core/sync/fsmeta.ts): to the nanosecond, on the link and not its target,
 * on names that are not UTF-8, through the addon's utimensat and through the coreutils fallback alike; a
 * path removed meanwhile is skipped; the addon refuses bad arguments with a TypeError/RangeError.
 */
import { afterAll, afterEach, beforeAll, describe, expect, vi } from 'vitest';
import { lstatSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyTimes } from '../src/core/sync/fsmeta.js';
import { loadAddon } from '../src/core/base/addon.js';
import { nameFromBytes, nameToBytes } from '../src/core/base/names.js';
import { itUnless } from './skip.js';
import type { FileMeta } from '../src/core/model/meta.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'lcsync-fsmeta-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.unstubAllEnvs());

const meta = (aSec: bigint, aNs: bigint, mSec: bigint, mNs: bigint): FileMeta => ({
  mode: 0o100644,
  uid: 0,
  gid: 0,
  atimeSec: aSec,
  atimeNsec: aNs,
  mtimeSec: mSec,
  mtimeNsec: mNs,
});

const native = loadAddon().addon as { lutimensNs?: (...a: unknown[]) => void } | undefined;
// Without the addon the native cases skip, saying why; with CI_REQUIRE_ADDON=1 they run and fail instead.
const nativeWhy = typeof native?.lutimensNs === 'function' || process.env.CI_REQUIRE_ADDON === '1'
  ? undefined
  : 'the addon with lutimensNs is not loaded (rm -rf build && npm run install)';

describe.each([
  ['the addon (utimensat)', ''],
  ['coreutils touch (no addon)', '1'],
])('applyTimes through %s', (_label, noNative) => {
  itUnless(noNative ? undefined : nativeWhy, 'sets nanosecond times on files, on links themselves, on names that are not UTF-8; skips vanished paths', async () => {
    vi.stubEnv('LCSYNC_NO_NATIVE_TIMES', noNative);
    const sub = mkdtempSync(path.join(dir, 'case-'));
    const plain = path.join(sub, 'plain.txt');
    const odd = path.join(sub, nameFromBytes(Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x62])));
    const link = path.join(sub, 'link');
    writeFileSync(plain, 'a');
    writeFileSync(nameToBytes(odd), 'b');
    symlinkSync('plain.txt', link);
    const targetBefore = lstatSync(plain, { bigint: true }).mtimeNs;
    await applyTimes([
      { path: odd, meta: meta(1_600_000_000n, 123_456_789n, 1_500_000_000n, 1n) },
      { path: link, meta: meta(1_400_000_000n, 999_999_999n, 1_300_000_000n, 500n) },
      { path: path.join(sub, 'gone'), meta: meta(1n, 0n, 1n, 0n) },
    ]);
    const o = lstatSync(nameToBytes(odd), { bigint: true });
    expect(o.atimeNs).toBe(1_600_000_000_123_456_789n);
    expect(o.mtimeNs).toBe(1_500_000_000_000_000_001n);
    const l = lstatSync(link, { bigint: true });
    expect(l.mtimeNs).toBe(1_300_000_000_000_000_500n);
    expect(lstatSync(plain, { bigint: true }).mtimeNs).toBe(targetBefore);
  });
});

describe('lutimensNs in the addon', () => {
  itUnless(nativeWhy, 'refuses arguments of the wrong type or range, and reports errors as system errors', () => {
    const f = native!.lutimensNs!;
    const p = Buffer.from(path.join(dir, 'none'));
    expect(() => f(p, 1, 0, 1n, 0)).toThrow(TypeError);
    expect(() => f(p, 1n, 1e9, 1n, 0)).toThrow(RangeError);
    expect(() => f(Buffer.from('a\0b'), 1n, 0, 1n, 0)).toThrow(TypeError);
    expect(() => f('name', 1n, 0, 1n, 0)).toThrow(TypeError);
    expect(() => f(p, 1n, 0, 1n, 0)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'utimensat' }));
  });
});
