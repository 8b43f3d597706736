/**
 * Signed roots: the signature object's layout, every rejection with its exact
 * message, garbage that never escapes as anything but INTEGRITY, key files, and
 * `lcsync keygen` as a user runs it (the built CLI in dist/).
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LcsyncError } from '../src/core/base/errors.js';
import { nameFromBytes } from '../src/core/base/names.js';
import { groupAddress } from '../src/core/wire/address.js';
import { hashConcat, toHex } from '../src/core/model/hash.js';
import {
  MAX_CLOCK_SKEW_MS,
  SIG_FIXED_SIZE,
  decodeSignature,
  encodeSignature,
  formatPublicKey,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  parsePublicKey,
  rawPublicKey,
  signatureKey,
  verifySignedRoot,
} from '../src/core/wire/signature.js';

const REPO = path.resolve(import.meta.dirname, '..');
const RUN = path.join(REPO, 'bin', 'run.js');
const tmp = mkdtempSync(path.join(tmpdir(), 'lcsync-sig-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ROOT = Buffer.from('e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1', 'hex');
const OTHER_ROOT = Buffer.from('60a5ad2e141430561b2e9e66c3dca52e0e5daa786adc255836a671cde7d1cef4', 'hex');
const TS = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
const alice = generateKeyPairSync('ed25519');
const mallory = generateKeyPairSync('ed25519');
const ALICE = rawPublicKey(alice.publicKey);

function expectIntegrity(fn: () => unknown, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(LcsyncError);
  expect((caught as LcsyncError).code).toBe('INTEGRITY');
  if (typeof message === 'string') expect((caught as LcsyncError).message).toBe(message);
  else expect((caught as LcsyncError).message).toMatch(message);
}

describe('signature object', () => {
  const obj = encodeSignature({ root: ROOT, name: 'müsic', timestamp: TS, privateKey: alice.privateKey });

  it('has the documented layout', () => {
    const name = Buffer.from('müsic', 'utf8');
    expect(obj.length).toBe(146 + name.length);
    expect(SIG_FIXED_SIZE).toBe(146);
    expect(obj.subarray(0, 6).toString('ascii')).toBe('LCSIG1');
    expect(obj[6]).toBe(1);
    expect(obj[7]).toBe(0);
    expect(obj.subarray(8, 40).equals(ROOT)).toBe(true);
    expect(obj.readBigUInt64BE(40)).toBe(BigInt(TS));
    expect(obj.readUInt16BE(48)).toBe(name.length);
    expect(obj.subarray(50, 50 + name.length).equals(name)).toBe(true);
    expect(obj.subarray(50 + name.length, 82 + name.length).equals(ALICE)).toBe(true);
  });

  it('round-trips and verifies', () => {
    const s = decodeSignature(obj);
    expect(s).toEqual({ root: ROOT, name: 'müsic', timestamp: TS, publicKey: ALICE, valid: true });
    const v = verifySignedRoot(obj, { root: ROOT, name: 'müsic', trusted: ALICE, maxAgeSec: 60, now: TS + 59_000 });
    expect(v.valid).toBe(true);
    // name and age are optional checks
    verifySignedRoot(obj, { root: ROOT, trusted: ALICE });
  });

  it('an empty name is allowed', () => {
    const e = encodeSignature({ root: ROOT, name: '', timestamp: 0, privateKey: alice.privateKey });
    expect(e.length).toBe(146);
    expect(decodeSignature(e)).toMatchObject({ name: '', timestamp: 0, valid: true });
  });

  it('a name that is not UTF-8 is signed and read back as its bytes', () => {
    const name = nameFromBytes(Buffer.from([0x61, 0xff, 0xfe]));
    const obj = encodeSignature({ root: ROOT, name, timestamp: TS, privateKey: alice.privateKey });
    expect(obj.subarray(50, 53).equals(Buffer.from([0x61, 0xff, 0xfe]))).toBe(true);
    const s = decodeSignature(obj);
    expect(s.valid).toBe(true);
    expect(s.name).toBe(name);
  });

  it('signature group = groupAddress(BLAKE3("lcsync-signature" || root))', () => {
    const k = signatureKey(ROOT);
    expect(toHex(k)).toBe(toHex(hashConcat([Buffer.from('lcsync-signature'), ROOT])));
    expect(groupAddress(k)).toMatch(/^ff1e:/);
    expect(groupAddress(k)).not.toBe(groupAddress(ROOT));
    expect(groupAddress(signatureKey(OTHER_ROOT))).not.toBe(groupAddress(k));
  });

  it('rejects a signature by another key', () => {
    const m = encodeSignature({ root: ROOT, name: 'müsic', timestamp: TS, privateKey: mallory.privateKey });
    expect(decodeSignature(m).valid).toBe(true); // valid, just not by the key we trust
    expectIntegrity(
      () => verifySignedRoot(m, { root: ROOT, trusted: ALICE }),
      `root is not signed by the trusted key (signed by ${formatPublicKey(rawPublicKey(mallory.publicKey))})`,
    );
  });

  it('rejects a tampered object or signature as invalid', () => {
    // every covered byte: header, root, timestamp, name, and the signature itself
    for (const pos of [8, 39, 41, 47, 50, 55, obj.length - 64, obj.length - 1]) {
      const bad = Buffer.from(obj);
      bad[pos]! ^= 0x01;
      expectIntegrity(() => verifySignedRoot(bad, { root: ROOT, trusted: ALICE }), 'root signature is invalid (forged or corrupted)');
    }
  });

  it('mallory swapping in alice\'s key is caught as invalid, not trusted', () => {
    const m = encodeSignature({ root: OTHER_ROOT, name: 'müsic', timestamp: TS, privateKey: mallory.privateKey });
    const off = m.length - 64 - 32;
    ALICE.copy(m, off);
    expectIntegrity(() => verifySignedRoot(m, { root: OTHER_ROOT, trusted: ALICE }), 'root signature is invalid (forged or corrupted)');
  });

  it('rejects a valid signature for another root', () => {
    expectIntegrity(
      () => verifySignedRoot(obj, { root: OTHER_ROOT, trusted: ALICE }),
      `root signature is for another root (${toHex(ROOT)}, expected ${toHex(OTHER_ROOT)})`,
    );
  });

  it('rejects a valid signature for another share name', () => {
    expectIntegrity(() => verifySignedRoot(obj, { root: ROOT, name: 'music', trusted: ALICE }), 'root signature is for share "müsic", expected "music"');
  });

  it('with maxAgeSec, rejects old and future-dated signatures', () => {
    expectIntegrity(
      () => verifySignedRoot(obj, { root: ROOT, trusted: ALICE, maxAgeSec: 60, now: TS + 60_001 }),
      'root signature is too old (signed 2025-01-02T03:04:05.678Z, limit 60 s)',
    );
    expectIntegrity(
      () => verifySignedRoot(obj, { root: ROOT, trusted: ALICE, maxAgeSec: 60, now: TS - MAX_CLOCK_SKEW_MS - 1 }),
      'root signature is dated in the future (2025-01-02T03:04:05.678Z)',
    );
    verifySignedRoot(obj, { root: ROOT, trusted: ALICE, maxAgeSec: 60, now: TS - MAX_CLOCK_SKEW_MS });
  });

  it('rejects malformed objects with precise messages', () => {
    expectIntegrity(() => decodeSignature(obj.subarray(0, 145)), 'malformed root signature: 145 bytes, at least 146 needed');
    expectIntegrity(() => decodeSignature(Buffer.concat([obj, Buffer.alloc(1)])), /^malformed root signature: name of 6 bytes needs 152 bytes in all, got 153$/);
    const magic = Buffer.from(obj);
    magic[0] = 0x6c;
    expectIntegrity(() => decodeSignature(magic), 'malformed root signature: bad magic');
    const ver = Buffer.from(obj);
    ver[6] = 2;
    expectIntegrity(() => decodeSignature(ver), 'malformed root signature: unsupported version 2');
    const flags = Buffer.from(obj);
    flags[7] = 0x80;
    expectIntegrity(() => decodeSignature(flags), 'malformed root signature: unknown flags 0x80');
    const ts = Buffer.from(obj);
    ts.writeBigUInt64BE(2n ** 63n, 40);
    expectIntegrity(() => decodeSignature(ts), 'malformed root signature: timestamp out of range');
    expectIntegrity(() => decodeSignature(Buffer.alloc(70000)), /at most/);
  });

  it('never throws anything but INTEGRITY on garbage, nor accepts it (fuzz)', () => {
    const check = (b: Uint8Array) => {
      try {
        const s = verifySignedRoot(b, { root: ROOT, trusted: ALICE });
        // Only a byte-identical copy of a real signature may pass.
        expect(Buffer.from(b).equals(obj)).toBe(true);
        expect(s.valid).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(LcsyncError);
        expect((e as LcsyncError).code).toBe('INTEGRITY');
      }
    };
    // random bytes of any length
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), check), { numRuns: 500 });
    // a real object with random byte mutations, truncations and extensions
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(obj.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.integer({ min: -20, max: 20 }),
        (edits, delta) => {
          let b = Buffer.from(obj);
          for (const [pos, v] of edits) b[pos] = v;
          if (delta < 0) b = b.subarray(0, b.length + delta);
          else if (delta > 0) b = Buffer.concat([b, randomBytes(delta)]);
          check(b);
        },
      ),
      { numRuns: 500 },
    );
    // well-formed header, arbitrary key and signature bytes (including invalid curve points)
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 96, maxLength: 96 }), (tail) => {
        const b = Buffer.from(obj);
        b.set(tail, b.length - 96);
        check(b);
      }),
      { numRuns: 300 },
    );
  });
});

describe('key files', () => {
  it('generateKeyPair writes PKCS#8 (0600) and a one-line .pub that load back', async () => {
    const base = path.join(tmp, 'k1');
    const kp = await generateKeyPair(base);
    expect(kp.privatePath).toBe(base);
    expect(kp.publicPath).toBe(`${base}.pub`);
    expect(statSync(base).mode & 0o777).toBe(0o600);
    expect(statSync(`${base}.pub`).mode & 0o777).toBe(0o644);
    expect(readFileSync(base, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const line = readFileSync(`${base}.pub`, 'utf8');
    expect(line).toMatch(/^lcsync-ed25519 [A-Za-z0-9+/]{43}=\n$/);
    expect(line).toBe(`${kp.publicLine}\n`);
    const priv = await loadPrivateKey(base);
    const pub = await loadPublicKey(`${base}.pub`);
    expect(pub.equals(kp.publicKey)).toBe(true);
    const s = encodeSignature({ root: ROOT, name: 'x', timestamp: TS, privateKey: priv });
    verifySignedRoot(s, { root: ROOT, name: 'x', trusted: pub });
  });

  it('refuses to overwrite without force, replaces with force', async () => {
    const base = path.join(tmp, 'k2');
    const first = await generateKeyPair(base);
    await expect(generateKeyPair(base)).rejects.toMatchObject({ code: 'USAGE', message: `${base} already exists (use --force to overwrite)` });
    rmSync(base);
    // the .pub alone also blocks, and nothing is written
    await expect(generateKeyPair(base)).rejects.toMatchObject({ code: 'USAGE', message: `${base}.pub already exists (use --force to overwrite)` });
    expect(existsSync(base)).toBe(false);
    writeFileSync(base, 'old', { mode: 0o644 });
    const second = await generateKeyPair(base, { force: true });
    expect(second.publicKey.equals(first.publicKey)).toBe(false);
    expect(statSync(base).mode & 0o777).toBe(0o600);
    expect((await loadPublicKey(`${base}.pub`)).equals(second.publicKey)).toBe(true);
  });

  it('a directory target gets DIR/lcsync-key', async () => {
    const dir = path.join(tmp, 'dir');
    mkdirSync(dir);
    const kp = await generateKeyPair(dir);
    expect(kp.privatePath).toBe(path.join(dir, 'lcsync-key'));
  });

  it('accepts an SPKI PEM public key and rejects other text with one-line errors', async () => {
    const pem = alice.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expect(parsePublicKey(pem, 'x').equals(ALICE)).toBe(true);
    expect(parsePublicKey(`  ${formatPublicKey(ALICE)}\r\n`, 'x').equals(ALICE)).toBe(true);
    const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expect(() => parsePublicKey(rsaPem, 'r.pub')).toThrow('invalid public key r.pub: not Ed25519 (rsa)');
    expect(() => parsePublicKey('lcsync-ed25519 AAAA', 'k.pub')).toThrow(/^invalid public key k.pub: expected "lcsync-ed25519 <base64>" or a PEM public key$/);
    const p = path.join(tmp, 'bad.key');
    writeFileSync(p, 'not a key');
    await expect(loadPrivateKey(p)).rejects.toMatchObject({ code: 'USAGE', message: `invalid private key ${p}: expected a PKCS#8 PEM Ed25519 key (lcsync keygen)` });
    await expect(loadPublicKey(path.join(tmp, 'missing.pub'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const rsaPriv = path.join(tmp, 'rsa.key');
    writeFileSync(rsaPriv, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    await expect(loadPrivateKey(rsaPriv)).rejects.toMatchObject({ code: 'USAGE', message: `invalid private key ${rsaPriv}: not Ed25519 (rsa)` });
  });
});

describe('lcsync keygen (built CLI)', () => {
  beforeAll(() => {
    if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'keygen.js'))) {
      throw new Error('dist/ is not built: run `npm run build` before this test');
    }
  });

  function lcsync(args: string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [RUN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LCSYNC_DEBUG: '' } });
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.on('error', reject);
      child.on('close', (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
    });
  }

  it('writes ./lcsync-key and .pub, prints the public line, and refuses a second run', async () => {
    const cwd = path.join(tmp, 'cli');
    mkdirSync(cwd);
    const r = await lcsync(['keygen'], cwd);
    expect(r.status, r.stderr).toBe(0);
    const line = readFileSync(path.join(cwd, 'lcsync-key.pub'), 'utf8');
    expect(r.stdout).toBe(line);
    expect(statSync(path.join(cwd, 'lcsync-key')).mode & 0o777).toBe(0o600);
    expect(r.stderr).toContain('lcsync-key');
    const again = await lcsync(['keygen'], cwd);
    expect(again.status).toBe(2);
    expect(again.stderr.trimEnd()).toBe('lcsync: ./lcsync-key already exists (use --force to overwrite)');
    expect(readFileSync(path.join(cwd, 'lcsync-key.pub'), 'utf8')).toBe(line);
    const forced = await lcsync(['keygen', '--force', '--json'], cwd);
    expect(forced.status, forced.stderr).toBe(0);
    const doc = JSON.parse(forced.stdout);
    expect(doc).toMatchObject({ ok: true, privateKey: './lcsync-key', publicKey: './lcsync-key.pub' });
    expect(`${doc.public}\n`).toBe(readFileSync(path.join(cwd, 'lcsync-key.pub'), 'utf8'));
    expect(doc.public).not.toBe(line.trim());
  });

  it('--output BASE writes there', async () => {
    const base = path.join(tmp, 'cli-out', 'signing');
    mkdirSync(path.dirname(base));
    const r = await lcsync(['keygen', '--output', base, '--json'], tmp);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, privateKey: base, publicKey: `${base}.pub` });
    expect(statSync(base).mode & 0o777).toBe(0o600);
    await loadPrivateKey(base);
  });
});
