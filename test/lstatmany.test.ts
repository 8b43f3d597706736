import { describe, expect, it } from 'vitest';
import { lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { lstatMany, lstatOne } from '../src/core/base/lstatmany.js';
import { loadAddon } from '../src/core/base/addon.js';
import { nameFromBytes } from '../src/core/base/names.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-lstatmany-');

/** What lstatSync says, in lstatMany's shape. */
function expected(p: string | Buffer) {
  const st = lstatSync(p, { bigint: true });
  return { mode: Number(st.mode), size: Number(st.size), ino: st.ino, dev: st.dev, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, atimeNs: st.atimeNs, uid: Number(st.uid), gid: Number(st.gid) };
}

async function tree() {
  const d = await tmp.fresh('t');
  writeFileSync(path.join(d, 'file'), 'x'.repeat(1234));
  mkdirSync(path.join(d, 'dir'));
  symlinkSync('file', path.join(d, 'link'));
  return d;
}

describe('lstatMany', () => {
  it('says what lstatSync says of files, directories, links and non-UTF-8 names, and undefined for what is not there', async () => {
    const d = await tree();
    // A name that is not UTF-8 (names.ts keeps its bytes in the string form).
    const rawName = Buffer.concat([Buffer.from(`${d}/`), Buffer.from([0x67, 0xfe])]);
    writeFileSync(rawName, 'raw');
    const odd = nameFromBytes(rawName);
    const paths = [path.join(d, 'file'), path.join(d, 'dir'), path.join(d, 'link'), path.join(d, 'missing'), path.join(d, 'file', 'under-a-file'), odd, ''];
    const got = lstatMany(paths);
    expect(got.slice(0, 3)).toEqual(paths.slice(0, 3).map(expected));
    expect(got[3]).toBeUndefined();
    expect(got[4]).toBeUndefined();
    expect(got[5]).toEqual(expected(rawName));
    expect(got[6]).toBeUndefined();
    // The fallback agrees.
    expect(paths.map(lstatOne)).toEqual(got);
  });

  it('takes more paths than one batch holds, in order', async () => {
    const d = await tmp.fresh('many');
    const paths: string[] = [];
    for (let i = 0; i < 2500; i++) {
      const p = path.join(d, `f${i}`);
      if (i % 7 !== 3) writeFileSync(p, Buffer.alloc(i));
      paths.push(p);
    }
    const got = lstatMany(paths);
    got.forEach((st, i) => (i % 7 === 3 ? expect(st).toBeUndefined() : expect(st?.size).toBe(i)));
  });

  it('uses the addon when it has lstatMany, which refuses names without their NUL', () => {
    const many = loadAddon().addon?.lstatMany;
    if (!many) return expect(loadAddon().error ?? 'an addon without lstatMany').toBeTruthy();
    expect(() => many(Buffer.from('/tmp'), new BigInt64Array(9))).toThrow(TypeError);
    expect(() => many(Buffer.from('/\0/\0'), new BigInt64Array(9))).toThrow(RangeError);
    expect(() => many(Buffer.from('/\0\0'), new BigInt64Array(18))).toThrow(TypeError);
    const out = new BigInt64Array(9);
    expect(many(Buffer.from('/\0'), out)).toBe(1);
    expect(out[0]).toBe(0n);
    expect(Number(out[1]) & 0o170000).toBe(0o040000);
  });
});
