/**
 * Object encryption as the C lcsync 0.3.2 does it: the captured encrypted
 * file-tree object must decode through our datagram and RaptorQ path and open
 * with the key file; sealing and password derivation must match libsodium.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import {
  SEAL_OVERHEAD,
  deriveKey,
  loadKeyfile,
  openObject,
  readPasswordFromTty,
  sealObject,
  type PasswordInput,
} from '../src/core/wire/crypto.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { ObjectDecoder, ObjectEncoder } from '../src/core/fec/fec.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { decodeNetTree } from '../src/core/wire/nettree.js';
import { decodeDatagram, type Datagram } from '../src/core/wire/packet.js';
import { once, readVector, readVectorJsonl, readVectorText, vectorPath } from './vectors.js';

/** The 128-byte key file of the encrypted capture (read on first use). */
const keyBytes = once(() => readVector('captures', 'encrypted', 'keyfile'));
/** Its first 32 bytes, the secretbox key; a fresh copy each call. */
const KEY = (): Uint8Array => new Uint8Array(keyBytes().subarray(0, 32));

const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-crypto-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Assert that `fn` throws exactly LcsyncError(code, message). */
async function expectLcsyncError(fn: () => unknown, code: string, message: string | RegExp): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(LcsyncError);
  expect((caught as LcsyncError).code).toBe(code);
  if (typeof message === 'string') expect((caught as LcsyncError).message).toBe(message);
  else expect((caught as LcsyncError).message).toMatch(message);
}

function treeNodes(...vector: string[]): Buffer {
  const lines = readVectorText(...vector).trim().split('\n');
  return Buffer.concat(lines.map((l) => Buffer.from(l.split(': ')[1]!, 'hex')));
}

describe('encrypted capture of the C lcshare (vectors/captures/encrypted)', () => {
  const datagrams = once((): Datagram[] =>
    readVectorJsonl<{ payload: string }>('captures', 'encrypted', 'tree-object.jsonl').map((j) => {
      const d = decodeDatagram(Buffer.from(j.payload, 'hex'));
      if (!d) throw new Error('capture holds a datagram our decoder refuses');
      return d;
    }),
  );

  it('has 20 well-formed datagrams of one object with F = 329 (289 + 40)', () => {
    expect(datagrams()).toHaveLength(20);
    for (const d of datagrams()) {
      expect(d.transferLength).toBe(329);
      expect(d.oid.equals(datagrams()[0]!.oid)).toBe(true);
    }
  });

  function decodeFrom(ds: Datagram[]): Buffer {
    const dec = new ObjectDecoder(329);
    try {
      for (const d of ds) {
        const out = dec.add(d.esi, d.symbol);
        if (out) return Buffer.from(out);
      }
    } finally {
      dec.free();
    }
    throw new Error('object did not decode');
  }

  const sealed = once(() => decodeFrom(datagrams()));

  it('decodes the same sealed object from repair symbols only', () => {
    const repair = datagrams().filter((d) => d.esi >= 1);
    expect(repair.length).toBeGreaterThan(10);
    expect(decodeFrom(repair).equals(sealed())).toBe(true);
    // and from the last few repair symbols alone
    expect(decodeFrom(repair.slice(-3)).equals(sealed())).toBe(true);
  });

  it('opens with the first 32 bytes of the key file into the net_tree of enc/f.bin', async () => {
    const key = await loadKeyfile(vectorPath('captures', 'encrypted', 'keyfile'));
    expect(Buffer.from(key).equals(keyBytes().subarray(0, 32))).toBe(true);
    const plain = openObject(sealed(), key);
    expect(plain.length).toBe(329 - SEAL_OVERHEAD);
    // The OID is BLAKE3 of the plaintext, not of what travelled.
    expect(toHex(hash(plain))).toBe(toHex(datagrams()[0]!.oid));
    expect(toHex(hash(sealed()))).not.toBe(toHex(datagrams()[0]!.oid));
    const t = decodeNetTree(plain);
    expect(t.type).toBe('file');
    expect(t.name).toBe('enc/f.bin');
    expect(t.size).toBe(100000);
    expect(t.payload.equals(treeNodes('trees', 'f100000.bin.tree'))).toBe(true);
  });

  it('refuses a wrong key, a flipped bit, and a truncated box with the one INTEGRITY error', async () => {
    const msg = 'cannot decrypt: wrong key or password';
    const other = KEY();
    other[31]! ^= 1;
    await expectLcsyncError(() => openObject(sealed(), other), 'INTEGRITY', msg);
    await expectLcsyncError(() => openObject(sealed(), new Uint8Array(keyBytes().subarray(32, 64))), 'INTEGRITY', msg);
    for (const pos of [0, 100, 288, 289, 304, 305, 328]) {
      const bad = Buffer.from(sealed());
      bad[pos]! ^= 0x80; // ciphertext, tag (289..304) and nonce (305..328) are all covered
      await expectLcsyncError(() => openObject(bad, KEY()), 'INTEGRITY', msg);
    }
    await expectLcsyncError(() => openObject(sealed().subarray(0, 39), KEY()), 'INTEGRITY', msg);
    await expectLcsyncError(() => openObject(sealed().subarray(1), KEY()), 'INTEGRITY', msg);
    await expectLcsyncError(() => openObject(new Uint8Array(0), KEY()), 'INTEGRITY', msg);
  });
});

describe('sealObject / openObject', () => {
  it('round-trips, adds 40 bytes, and uses a fresh nonce each time', () => {
    for (const n of [0, 1, 1000, 4096]) {
      const plain = randomBytes(n);
      const a = sealObject(plain, KEY());
      const b = sealObject(plain, KEY());
      expect(a.length).toBe(n + SEAL_OVERHEAD);
      expect(a.equals(b)).toBe(false);
      expect(a.subarray(-24).equals(b.subarray(-24))).toBe(false);
      expect(openObject(a, KEY()).equals(plain)).toBe(true);
      expect(openObject(b, KEY()).equals(plain)).toBe(true);
    }
  });

  it('rejects a key that is not 32 bytes', async () => {
    await expectLcsyncError(() => sealObject(Buffer.alloc(1), new Uint8Array(128)), 'INTERNAL', /32 bytes/);
    await expectLcsyncError(() => openObject(Buffer.alloc(64), new Uint8Array(16)), 'INTERNAL', /32 bytes/);
  });

  it('a sealed full chunk is 32808 bytes, K = 33, K\' = 36, and decodes from repair symbols only', () => {
    const chunk = randomBytes(32768);
    const sealed = sealObject(chunk, KEY());
    expect(sealed.length).toBe(32808);
    const enc = new ObjectEncoder(sealed);
    const dec = new ObjectDecoder(sealed.length);
    try {
      expect([enc.K, enc.KP]).toEqual([33, 36]);
      expect([dec.K, dec.KP]).toEqual([33, 36]);
      let out: Buffer | undefined;
      let fed = 0;
      while (!out && fed < 60) {
        const r = enc.nextRepair();
        expect(r.esi).toBeGreaterThanOrEqual(33);
        out = dec.add(r.esi, r.symbol);
        fed++;
      }
      expect(out, 'repair symbols did not decode').toBeDefined();
      expect(fed).toBeGreaterThanOrEqual(33);
      expect(out!.equals(sealed)).toBe(true);
      expect(openObject(out!, KEY()).equals(chunk)).toBe(true);
    } finally {
      enc.free();
      dec.free();
    }
  });
});

describe('deriveKey (the C tool derivation)', () => {
  // Golden keys computed with the system's native libsodium 1.0.18 (what the C
  // lcsync links) through ctypes: salt = crypto_generichash(16, pw[:-1]),
  // key = crypto_pwhash(128, pw[:-1], salt, OPSLIMIT/MEMLIMIT_INTERACTIVE,
  // ALG_DEFAULT); first 32 bytes shown.
  const golden: [string, string][] = [
    ['abc', '36ac46cff4ea8691e2c524a6998f48178da6ffa234b57380b99d14a158e0b30d'],
    ['correct horse battery staple\n', '743b3f63f453ffa182fc10ff736b31afcd6e6074de2e5217027285a0a158c78f'],
    ['pässwörd\n', 'd3aff5a66138f7bf0c402b3adb7828a1da1e535f08dcd9b763a5c0a1b6a49c4e'],
    // The last BYTE goes, not the last character: 'é' loses its second byte.
    ['abé', 'c99d88cbd900ea35b1a4ad61214d9ae0e1ca54a0062e9b7bcefbb76cdc5b7d43'],
  ];
  for (const [pw, hex] of golden) {
    it(`matches native libsodium for ${JSON.stringify(pw)}`, async () => {
      const k = await deriveKey(pw);
      expect(k.length).toBe(32);
      expect(Buffer.from(k).toString('hex')).toBe(hex);
    });
  }

  it('is deterministic and ignores the last character', async () => {
    const a = Buffer.from(await deriveKey('abc'));
    expect(Buffer.from(await deriveKey('abc')).equals(a)).toBe(true);
    expect(Buffer.from(await deriveKey('abX')).equals(a)).toBe(true);
    expect(Buffer.from(await deriveKey('ab\n')).equals(a)).toBe(true);
    expect(Buffer.from(await deriveKey('abd!')).equals(a)).toBe(false);
    expect(Buffer.from(await deriveKey('aXc')).equals(a)).toBe(false);
  });

  it('refuses a password that is empty once the last character is dropped', async () => {
    await expectLcsyncError(() => deriveKey(''), 'USAGE', /password is empty/);
    await expectLcsyncError(() => deriveKey('\n'), 'USAGE', /password is empty/);
    await expectLcsyncError(() => deriveKey('x'), 'USAGE', /password is empty/);
  });

  it('a derived key seals and opens; another password cannot open', async () => {
    const k1 = await deriveKey('secret\n');
    const k2 = await deriveKey('Secret\n');
    const s = sealObject(Buffer.from('hello'), k1);
    expect(openObject(s, k1).toString()).toBe('hello');
    await expectLcsyncError(() => openObject(s, k2), 'INTEGRITY', 'cannot decrypt: wrong key or password');
  });
});

describe('loadKeyfile', () => {
  it('accepts exactly 128 bytes and returns the first 32', async () => {
    const p = path.join(tmp, 'k128');
    const data = randomBytes(128);
    writeFileSync(p, data);
    const k = await loadKeyfile(p);
    expect(k.length).toBe(32);
    expect(Buffer.from(k).equals(data.subarray(0, 32))).toBe(true);
  });

  for (const n of [0, 32, 127, 129, 256]) {
    it(`refuses a ${n}-byte key file`, async () => {
      const p = path.join(tmp, `k${n}`);
      writeFileSync(p, randomBytes(n));
      await expectLcsyncError(() => loadKeyfile(p), 'USAGE', `invalid key file ${p}: must be exactly 128 bytes, got ${n}`);
    });
  }

  it('reports a missing key file as NOT_FOUND and a directory as IO', async () => {
    const p = path.join(tmp, 'nope');
    await expectLcsyncError(() => loadKeyfile(p), 'NOT_FOUND', `cannot read key file ${p}: no such file or directory (ENOENT)`);
    await expectLcsyncError(() => loadKeyfile(tmp), 'IO', /is a directory/);
  });
});

describe('readPasswordFromTty (fake terminal; the real TTY path is not exercised)', () => {
  function fakeTty(): { input: PasswordInput & PassThrough; modes: boolean[]; out: string[]; output: { write(s: string): void } } {
    const input = new PassThrough() as PassThrough & PasswordInput;
    const modes: boolean[] = [];
    input.isTTY = true;
    input.isRaw = false;
    input.setRawMode = (m: boolean) => {
      modes.push(m);
      input.isRaw = m;
      return input;
    };
    const out: string[] = [];
    return { input, modes, out, output: { write: (s: string) => void out.push(s) } };
  }

  it('reads a line with echo off, handles Backspace and Ctrl-U, and returns it with the newline fgets keeps', async () => {
    const t = fakeTty();
    const p = readPasswordFromTty('Password: ', t);
    t.input.write('junk\u0015sec');
    t.input.write('x\u007fr\u00e9t\rignored');
    await expect(p).resolves.toBe('secr\u00e9t\n');
    expect(t.modes).toEqual([true, false]);
    expect(t.out.join('')).toBe('Password: \n');
    // with the C quirk, the derivation then drops exactly that newline
    expect(Buffer.from(await deriveKey('secr\u00e9t\n')).equals(Buffer.from(await deriveKey('secr\u00e9tX')))).toBe(true);
  });

  it('Ctrl-C aborts with INTERRUPTED and restores the terminal', async () => {
    const t = fakeTty();
    const p = readPasswordFromTty('pw: ', t);
    t.input.write('abc\u0003');
    await expectLcsyncError(() => p, 'INTERRUPTED', 'password entry interrupted');
    expect(t.modes).toEqual([true, false]);
  });

  it('Ctrl-D on an empty line and end of input are "no password entered"', async () => {
    const t = fakeTty();
    const p = readPasswordFromTty('pw: ', t);
    t.input.write('\u0004');
    await expectLcsyncError(() => p, 'USAGE', 'no password entered');
    const t2 = fakeTty();
    const p2 = readPasswordFromTty('pw: ', t2);
    t2.input.end('abc');
    await expectLcsyncError(() => p2, 'USAGE', 'no password entered');
    expect(t2.modes).toEqual([true, false]);
  });

  it('refuses a non-terminal input', async () => {
    const input = new PassThrough() as PassThrough & PasswordInput;
    await expectLcsyncError(() => readPasswordFromTty('pw: ', { input, output: { write: () => undefined } }), 'USAGE', /not a terminal/);
  });
});
