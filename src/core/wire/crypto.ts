/**
 * Symmetric encryption of sync objects, as the C lcsync 0.3.2 does it
 * (docs/protocol.md#encryption), so that either side can be C.
 *
 * Object sealing. Every object (tree part, directory, symlink, chunk) is sealed
 * BEFORE RaptorQ coding with libsodium crypto_secretbox_easy (XSalsa20-Poly1305):
 *
 *   sealed = ciphertext (plain length + 16-byte Poly1305 tag) || nonce (24 bytes, random)
 *
 * so the transfer length F grows by SEAL_OVERHEAD = 40 (a full 32 KiB chunk
 * becomes 32808 bytes: K = 33, K' = 36). The OID in the datagrams stays
 * BLAKE3 of the PLAINTEXT; the receiver decodes, opens, then verifies.
 *
 * Keys. The C tool takes a 128-byte key (from --keyfile, or derived from a
 * password) and secretbox uses its first 32 bytes (crypto_secretbox_KEYBYTES).
 * A SymKey here is those 32 bytes.
 *
 * Password derivation, reproducing the C tool byte for byte:
 *   used = UTF-8 bytes of the password minus the LAST BYTE
 *   salt = crypto_generichash(16, used)             (BLAKE2b-128, unkeyed)
 *   key  = crypto_pwhash(128, used, salt, OPSLIMIT_INTERACTIVE, MEMLIMIT_INTERACTIVE,
 *                        ALG_DEFAULT = Argon2id v1.3)
 * The dropped byte is the C tool's quirk: it strips what it takes for fgets'
 * trailing newline, and does so on LCSYNC_PASSWORD too, whose value has no
 * newline, so "secret" in the environment really means "secre". It removes one
 * byte, not one character: a password ending in a multi-byte UTF-8 character
 * loses only that character's last byte. We keep the quirk, because the same
 * password must give the same key on both sides. Consequently
 * readPasswordFromTty returns the line WITH its newline, as fgets gives it, and
 * deriveKey is applied to that or to the environment value unchanged.
 *
 * Binding: libsodium-wrappers-sumo (libsodium 1.0.22 compiled to wasm, by the
 * libsodium author; the sumo build is the one that includes crypto_pwhash).
 * Node's own crypto has neither XSalsa20-Poly1305 nor (on Node 20) Argon2id.
 */
import { readFile } from 'node:fs/promises';
import sodium from 'libsodium-wrappers-sumo';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { hash } from '../model/hash.js';

// The wasm module initialises asynchronously once; after that every call is
// synchronous (same pattern as hash.ts). About 50 ms, paid only by importers.
await sodium.ready;

/** The 32 bytes of key secretbox uses. */
export type SymKey = Uint8Array;

/** Length of a --keyfile and of a derived key in the C tool. */
export const KEYFILE_SIZE = 128;
/** crypto_secretbox_KEYBYTES. */
export const SYM_KEY_SIZE = 32;
const MAC_SIZE = 16; // crypto_secretbox_MACBYTES
const NONCE_SIZE = 24; // crypto_secretbox_NONCEBYTES
/** Bytes that sealing adds to an object: tag + nonce. */
export const SEAL_OVERHEAD = MAC_SIZE + NONCE_SIZE;
const SALT_SIZE = 16; // crypto_pwhash_SALTBYTES

// Guard against a binding whose constants differ from the wire format above.
if (
  sodium.crypto_secretbox_KEYBYTES !== SYM_KEY_SIZE ||
  sodium.crypto_secretbox_MACBYTES !== MAC_SIZE ||
  sodium.crypto_secretbox_NONCEBYTES !== NONCE_SIZE ||
  sodium.crypto_pwhash_SALTBYTES !== SALT_SIZE ||
  sodium.crypto_pwhash_ALG_DEFAULT !== sodium.crypto_pwhash_ALG_ARGON2ID13
) {
  throw new LcsyncError('INTERNAL', 'libsodium binding has unexpected secretbox/pwhash parameters');
}

const WRONG_KEY = 'cannot decrypt: wrong key or password';

/**
 * Read a C-compatible key file: exactly 128 bytes, of which secretbox uses the
 * first 32. Returns a copy of those 32 bytes.
 */
export async function loadKeyfile(path: string): Promise<SymKey> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw fromSystemError(e, `cannot read key file ${path}`);
  }
  if (buf.length !== KEYFILE_SIZE) {
    throw new LcsyncError('USAGE', `invalid key file ${path}: must be exactly ${KEYFILE_SIZE} bytes, got ${buf.length}`);
  }
  return new Uint8Array(buf.subarray(0, SYM_KEY_SIZE));
}

/**
 * The C tool's password derivation (see the file header): drop the last byte,
 * BLAKE2b-128 salt of the rest, Argon2id with the interactive limits, 128
 * bytes out, first 32 kept. `password` is what the C tool would have read:
 * the LCSYNC_PASSWORD value, or a prompt line including its newline.
 *
 * Synchronous inside (about 0.3 s and 64 MiB for Argon2id, interactive
 * limits); async so that a later move to a worker does not change callers.
 * Rejects a password that is empty once the last byte is gone: the C tool
 * would index before the string there, and an empty password protects nothing.
 */
export async function deriveKey(password: string): Promise<SymKey> {
  const bytes = Buffer.from(password, 'utf8');
  if (bytes.length <= 1) {
    throw new LcsyncError(
      'USAGE',
      'password is empty (as in the C lcsync, the last character of the password is dropped, also from LCSYNC_PASSWORD)',
    );
  }
  const used = bytes.subarray(0, bytes.length - 1);
  const salt = sodium.crypto_generichash(SALT_SIZE, used, null);
  const key = sodium.crypto_pwhash(
    KEYFILE_SIZE,
    used,
    salt,
    sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE,
    sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE,
    sodium.crypto_pwhash_ALG_ARGON2ID13,
  );
  const out = key.slice(0, SYM_KEY_SIZE);
  sodium.memzero(key);
  return out;
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== SYM_KEY_SIZE) {
    throw new LcsyncError('INTERNAL', `symmetric key must be ${SYM_KEY_SIZE} bytes, got ${key?.length}`);
  }
}

/** secretbox_easy(plain, nonce, key) || nonce, with a fresh random nonce. */
export function sealObject(plain: Uint8Array, key: SymKey): Buffer {
  checkKey(key);
  const nonce = sodium.randombytes_buf(NONCE_SIZE);
  const boxed = sodium.crypto_secretbox_easy(plain, nonce, key);
  const out = Buffer.allocUnsafe(boxed.length + NONCE_SIZE);
  out.set(boxed, 0);
  out.set(nonce, boxed.length);
  return out;
}

/**
 * Open a sealed object. Any failure (too short to hold a tag and a nonce,
 * forged or corrupt bytes, another key) is the same INTEGRITY error: the
 * Poly1305 tag cannot tell a wrong key from a damaged box.
 */
export function openObject(sealed: Uint8Array, key: SymKey): Buffer {
  checkKey(key);
  if (!(sealed instanceof Uint8Array) || sealed.length < SEAL_OVERHEAD) throw new LcsyncError('INTEGRITY', WRONG_KEY);
  const split = sealed.length - NONCE_SIZE;
  let plain: Uint8Array;
  try {
    plain = sodium.crypto_secretbox_open_easy(sealed.subarray(0, split), sealed.subarray(split), key);
  } catch (e) {
    throw new LcsyncError('INTEGRITY', WRONG_KEY, { cause: e });
  }
  return Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
}

/** The TTY stream readPasswordFromTty reads (injectable for tests). */
export type PasswordInput = NodeJS.ReadableStream & { isTTY?: boolean; isRaw?: boolean; setRawMode?(mode: boolean): unknown };

/**
 * Prompt on `output` (stderr: stdout is for results) and read one line from
 * a terminal with echo off (raw mode, so nothing is echoed; Backspace edits,
 * Enter ends, Ctrl-C aborts with INTERRUPTED, Ctrl-D on an empty line aborts
 * with USAGE). Returns the line followed by "\n", exactly what the C tool's
 * fgets() returns, ready for deriveKey. Fails with USAGE when `input` is not a
 * terminal: then use LCSYNC_PASSWORD, --keyfile, or -b.
 */
export function readPasswordFromTty(
  prompt: string,
  io: { input: PasswordInput; output: { write(s: string): unknown } } = { input: process.stdin, output: process.stderr },
): Promise<string> {
  const { input, output } = io;
  if (!input.isTTY || typeof input.setRawMode !== 'function') {
    return Promise.reject(
      new LcsyncError('USAGE', 'no password given and standard input is not a terminal: set LCSYNC_PASSWORD, use --keyfile, or -b for no encryption'),
    );
  }
  const wasRaw = input.isRaw === true;
  return new Promise<string>((resolve, reject) => {
    let line = '';
    const finish = (err: LcsyncError | undefined) => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('close', onEnd);
      input.off('error', onError);
      try {
        input.setRawMode!(wasRaw);
      } finally {
        input.pause();
        output.write('\n'); // the Enter the user typed was not echoed
      }
      if (err) reject(err);
      else resolve(line + '\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish(undefined);
        if (ch === '\u0003') return finish(new LcsyncError('INTERRUPTED', 'password entry interrupted'));
        if (ch === '\u0004') {
          if (line === '') return finish(new LcsyncError('USAGE', 'no password entered'));
          continue;
        }
        if (ch === '\u007f' || ch === '\b') {
          line = Array.from(line).slice(0, -1).join('');
          continue;
        }
        if (ch === '\u0015') {
          line = ''; // Ctrl-U: kill the line, as a cooked terminal would
          continue;
        }
        if (ch < ' ') continue; // other control characters are not part of a password
        line += ch;
      }
    };
    const onEnd = () => finish(new LcsyncError('USAGE', 'no password entered'));
    const onError = (e: Error) => finish(new LcsyncError('IO', `cannot read password: ${e.message}`, { cause: e }));
    output.write(prompt);
    input.setEncoding('utf8');
    input.setRawMode!(true);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('close', onEnd);
    input.on('error', onError);
    input.resume();
  });
}

/**
 * Object encryption as the C tool does it (secretbox before RaptorQ), as the
 * share and the receiver use it. They take it as a parameter and import only
 * this type, so plaintext runs never load libsodium.
 */
export interface ObjectCipher {
  /** Bytes added to every object (tag and nonce). */
  overhead: number;
  seal(plain: Uint8Array): Buffer;
  /** Throws LcsyncError('INTEGRITY', 'cannot decrypt: wrong key or password') on a wrong key. */
  open(sealed: Uint8Array): Buffer;
  /**
   * keyTag() of the key: shares that cooperate (share/peers.ts) compare it to agree that they seal
   * with the same key. Absent on ciphers made otherwise (tests); such a share cooperates with none.
   */
  tag?: Buffer;
}

/**
 * 8 bytes that tell whether two shares hold the same key without telling anything of the key:
 * BLAKE3("lcsync-key-tag" || key), first 8 bytes (docs/protocol.md#redundant-shares).
 */
export function keyTag(key: SymKey): Buffer {
  return hash(Buffer.concat([Buffer.from('lcsync-key-tag', 'ascii'), key])).subarray(0, 8);
}

export function objectCipher(key: SymKey): ObjectCipher {
  return { overhead: SEAL_OVERHEAD, seal: (p) => sealObject(p, key), open: (c) => openObject(c, key), tag: keyTag(key) };
}
