/**
 * Signed roots (an lcsync extension; the C tool has nothing like it). A share
 * run with `--sign KEY` publishes, beside each root it serves, a signature
 * object that binds the root hash to the share name, a time, and an Ed25519
 * key; `sync --trust PUBKEY` refuses a root without a valid one by that key.
 *
 * The signature object (all integers big-endian):
 *
 *   off   size  field
 *    0     6    magic      "LCSIG1" (ASCII)
 *    6     1    version    1
 *    7     1    flags      0x01: a manifest digest follows the name; no other bit is defined
 *    8    32    root       the root hash being vouched for
 *   40     8    timestamp  u64, milliseconds since 1970-01-01 UTC, at most 2^53 - 1
 *   48     2    namelen    u16, byte length of the share name
 *   50   namelen name      share name: its bytes (names need not be UTF-8), no terminator
 *   50+n  32    manifest   (flag 0x01 only) BLAKE3 of the root's manifest object (manifest.ts)
 *   50+n+m 32   publickey  raw Ed25519 public key of the signer (RFC 8032)
 *   82+n+m 64   signature  Ed25519 (pure, RFC 8032) over bytes [0, 82+n+m)
 *
 * m is 32 with flag 0x01, else 0. Total 146 + namelen + m bytes; nothing may
 * follow the signature. The signed message is every byte before the signature,
 * so the magic and version are covered too (domain separation from any other
 * Ed25519 use of the key). `share --sign` always sets flag 0x01 and publishes
 * the manifest; `sync --trust` refuses a signature without one.
 *
 * Where it travels: as an ordinary lcsync object (RaptorQ, with OTI, OID =
 * BLAKE3 of the object) on the group derived from
 *
 *   signatureKey(root) = BLAKE3("lcsync-signature" || root)   (16 ASCII bytes, then 32)
 *   group              = groupAddress(signatureKey(root))     (ff1e: + first 14 bytes)
 *
 * a group no C peer uses, so C clients never see it. Its OID cannot be known in
 * advance (the timestamp changes), which is why the receiver checks the object
 * itself rather than its hash against anything.
 *
 * Key files. Private key: PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), mode
 * 0600. Public key: one line "lcsync-ed25519 <base64 of the raw 32 bytes>"; an
 * SPKI PEM ("-----BEGIN PUBLIC KEY-----") is accepted as well.
 *
 * Ed25519 is Node's built-in (OpenSSL); no extra dependency.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { lstat, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { nameFromBytes, nameToBytes } from '../base/names.js';
import { HASH_SIZE, hashConcat, toHex, type Hash } from '../model/hash.js';

export const SIG_MAGIC = Buffer.from('LCSIG1', 'ascii');
export const SIG_VERSION = 1;
const PUBKEY_SIZE = 32;
const SIG_SIZE = 64;
const HEAD_SIZE = SIG_MAGIC.length + 1 + 1 + HASH_SIZE + 8 + 2; // 50
/** Size of a signature object with an empty name. */
export const SIG_FIXED_SIZE = HEAD_SIZE + PUBKEY_SIZE + SIG_SIZE; // 146
export const MAX_NAME_BYTES = 0xffff;
/** Largest signature object: anything longer is refused before parsing. */
export const MAX_SIG_OBJECT = SIG_FIXED_SIZE + MAX_NAME_BYTES + HASH_SIZE;
/** Flag: a manifest digest follows the name. */
const FLAG_MANIFEST = 0x01;
/** Domain tag of the signature group. */
const GROUP_TAG = Buffer.from('lcsync-signature', 'ascii');
/** How far in the future a timestamp may be (clock skew) when maxAgeSec is checked. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Prefix of the one-line public key format. */
export const PUBLIC_KEY_PREFIX = 'lcsync-ed25519';
/** DER prefix of an SPKI Ed25519 public key: SEQUENCE { AlgorithmIdentifier id-Ed25519, BIT STRING (32 bytes) }. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A raw 32-byte Ed25519 public key. */
export type PublicKey = Buffer;

export interface SignedRoot {
  root: Hash;
  name: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  publicKey: PublicKey;
  /** BLAKE3 of the root's manifest object (manifest.ts), when the signer published one. */
  manifest?: Hash;
  /** True when the signature verifies under the embedded public key. */
  valid: boolean;
}

/** The hash whose group carries the signature object of `root`. */
export function signatureKey(root: Uint8Array): Hash {
  if (root.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `root hash must be ${HASH_SIZE} bytes, got ${root.length}`);
  return hashConcat([GROUP_TAG, root]);
}

/** Raw 32 bytes of an Ed25519 public key object. */
export function rawPublicKey(key: KeyObject): PublicKey {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new LcsyncError('USAGE', `not an Ed25519 key (${pub.asymmetricKeyType})`);
  const der = pub.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(SPKI_ED25519_PREFIX.length));
}

/** A KeyObject for a raw 32-byte Ed25519 public key. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== PUBKEY_SIZE) throw new LcsyncError('INTEGRITY', `Ed25519 public key must be ${PUBKEY_SIZE} bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Build and sign a signature object. */
export function encodeSignature(s: { root: Uint8Array; name: string; timestamp: number; privateKey: KeyObject; manifest?: Uint8Array }): Buffer {
  if (s.root.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `root hash must be ${HASH_SIZE} bytes, got ${s.root.length}`);
  if (!Number.isSafeInteger(s.timestamp) || s.timestamp < 0) throw new LcsyncError('INTERNAL', `bad signature timestamp ${s.timestamp}`);
  if (s.privateKey.type !== 'private' || s.privateKey.asymmetricKeyType !== 'ed25519') {
    throw new LcsyncError('USAGE', 'signing key is not an Ed25519 private key');
  }
  const name = nameToBytes(s.name);
  if (name.length > MAX_NAME_BYTES) throw new LcsyncError('USAGE', `share name too long to sign (${name.length} bytes)`);
  if (s.manifest !== undefined && s.manifest.length !== HASH_SIZE) throw new LcsyncError('INTERNAL', `manifest digest must be ${HASH_SIZE} bytes`);
  const pub = rawPublicKey(s.privateKey);
  const m = s.manifest ? HASH_SIZE : 0;
  const msgLen = HEAD_SIZE + name.length + m + PUBKEY_SIZE;
  const b = Buffer.alloc(msgLen + SIG_SIZE);
  SIG_MAGIC.copy(b, 0);
  b[6] = SIG_VERSION;
  b[7] = s.manifest ? FLAG_MANIFEST : 0;
  b.set(s.root, 8);
  b.writeBigUInt64BE(BigInt(s.timestamp), 40);
  b.writeUInt16BE(name.length, 48);
  name.copy(b, HEAD_SIZE);
  if (s.manifest) b.set(s.manifest, HEAD_SIZE + name.length);
  pub.copy(b, HEAD_SIZE + name.length + m);
  const sig = sign(null, b.subarray(0, msgLen), s.privateKey);
  sig.copy(b, msgLen);
  return b;
}

function malformed(why: string): LcsyncError {
  return new LcsyncError('INTEGRITY', `malformed root signature: ${why}`);
}

/**
 * Parse a signature object, checking every length, and verify it under the
 * public key it carries (`valid`). Throws only LcsyncError('INTEGRITY') for
 * anything that is not a well-formed version-1 object. Whether that key is
 * trusted is verifySignedRoot's question.
 */
export function decodeSignature(buf: Uint8Array): SignedRoot {
  if (!(buf instanceof Uint8Array)) throw malformed('not a byte string');
  if (buf.length < SIG_FIXED_SIZE) throw malformed(`${buf.length} bytes, at least ${SIG_FIXED_SIZE} needed`);
  if (buf.length > MAX_SIG_OBJECT) throw malformed(`${buf.length} bytes, at most ${MAX_SIG_OBJECT} allowed`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (!b.subarray(0, SIG_MAGIC.length).equals(SIG_MAGIC)) throw malformed('bad magic');
  if (b[6] !== SIG_VERSION) throw malformed(`unsupported version ${b[6]}`);
  if ((b[7]! & ~FLAG_MANIFEST) !== 0) throw malformed(`unknown flags 0x${b[7]!.toString(16).padStart(2, '0')}`);
  const m = b[7]! & FLAG_MANIFEST ? HASH_SIZE : 0;
  const ts = b.readBigUInt64BE(40);
  if (ts > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed('timestamp out of range');
  const nameLen = b.readUInt16BE(48);
  const expected = SIG_FIXED_SIZE + nameLen + m;
  if (b.length !== expected) {
    throw malformed(`name of ${nameLen} bytes${m ? ' and a manifest digest' : ''} needs ${expected} bytes in all, got ${b.length}`);
  }
  const name = nameFromBytes(b.subarray(HEAD_SIZE, HEAD_SIZE + nameLen));
  const manifest = m ? Buffer.from(b.subarray(HEAD_SIZE + nameLen, HEAD_SIZE + nameLen + m)) : undefined;
  const msgLen = HEAD_SIZE + nameLen + m + PUBKEY_SIZE;
  const publicKey = Buffer.from(b.subarray(HEAD_SIZE + nameLen + m, msgLen));
  let valid: boolean;
  try {
    valid = verify(null, b.subarray(0, msgLen), publicKeyObject(publicKey), b.subarray(msgLen));
  } catch {
    // OpenSSL refuses some 32-byte strings as keys: such an object vouches for nothing.
    valid = false;
  }
  return { root: Buffer.from(b.subarray(8, 8 + HASH_SIZE)), name, timestamp: Number(ts), publicKey, ...(manifest ? { manifest } : {}), valid };
}

/**
 * Accept a signature object for `root` only if it is well-formed, made by
 * `trusted`, valid, for this root, for `name` when given, and (with
 * maxAgeSec) no older than that and not more than MAX_CLOCK_SKEW_MS in the
 * future. Throws LcsyncError('INTEGRITY') saying which check failed.
 */
export function verifySignedRoot(
  buf: Uint8Array,
  opts: { root: Uint8Array; name?: string; trusted: Uint8Array; maxAgeSec?: number; now?: number },
): SignedRoot {
  const s = decodeSignature(buf);
  if (opts.trusted.length !== PUBKEY_SIZE) throw new LcsyncError('INTERNAL', `trusted key must be ${PUBKEY_SIZE} bytes`);
  if (!s.publicKey.equals(opts.trusted)) {
    throw new LcsyncError('INTEGRITY', `root is not signed by the trusted key (signed by ${formatPublicKey(s.publicKey)})`);
  }
  if (!s.valid) throw new LcsyncError('INTEGRITY', 'root signature is invalid (forged or corrupted)');
  if (!s.root.equals(opts.root)) {
    throw new LcsyncError('INTEGRITY', `root signature is for another root (${toHex(s.root)}, expected ${toHex(opts.root)})`);
  }
  if (opts.name !== undefined && s.name !== opts.name) {
    throw new LcsyncError('INTEGRITY', `root signature is for share ${JSON.stringify(s.name)}, expected ${JSON.stringify(opts.name)}`);
  }
  if (opts.maxAgeSec !== undefined) {
    const now = opts.now ?? Date.now();
    if (s.timestamp > now + MAX_CLOCK_SKEW_MS) {
      throw new LcsyncError('INTEGRITY', `root signature is dated in the future (${new Date(s.timestamp).toISOString()})`);
    }
    if (now - s.timestamp > opts.maxAgeSec * 1000) {
      throw new LcsyncError('INTEGRITY', `root signature is too old (signed ${new Date(s.timestamp).toISOString()}, limit ${opts.maxAgeSec} s)`);
    }
  }
  return s;
}

// ---------------------------------------------------------------------------
// Key files

/** The one-line public key text, without newline. */
export function formatPublicKey(raw: Uint8Array): string {
  if (raw.length !== PUBKEY_SIZE) throw new LcsyncError('INTERNAL', `Ed25519 public key must be ${PUBKEY_SIZE} bytes`);
  return `${PUBLIC_KEY_PREFIX} ${Buffer.from(raw).toString('base64')}`;
}

const ONE_LINE = new RegExp(`^${PUBLIC_KEY_PREFIX} ([A-Za-z0-9+/]{43}=)$`);

/**
 * Parse a public key given as text: the one-line form, or an SPKI PEM.
 * `source` names it in error messages.
 */
export function parsePublicKey(text: string, source: string): PublicKey {
  const t = text.trim();
  const m = ONE_LINE.exec(t);
  if (m) {
    const raw = Buffer.from(m[1]!, 'base64');
    if (raw.length === PUBKEY_SIZE) return raw;
  }
  if (t.startsWith('-----BEGIN PUBLIC KEY-----')) {
    let key: KeyObject;
    try {
      key = createPublicKey({ key: t, format: 'pem' });
    } catch {
      throw new LcsyncError('USAGE', `invalid public key ${source}: unreadable PEM`);
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new LcsyncError('USAGE', `invalid public key ${source}: not Ed25519 (${key.asymmetricKeyType})`);
    return rawPublicKey(key);
  }
  throw new LcsyncError('USAGE', `invalid public key ${source}: expected "${PUBLIC_KEY_PREFIX} <base64>" or a PEM public key`);
}

/** Read a public key file (one-line form or SPKI PEM). */
export async function loadPublicKey(file: string): Promise<PublicKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `cannot read public key ${file}`);
  }
  return parsePublicKey(text, file);
}

/** Read a PKCS#8 PEM Ed25519 private key. */
export async function loadPrivateKey(file: string): Promise<KeyObject> {
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch (e) {
    throw fromSystemError(e, `cannot read private key ${file}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new LcsyncError('USAGE', `invalid private key ${file}: expected a PKCS#8 PEM Ed25519 key (lcsync keygen)`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new LcsyncError('USAGE', `invalid private key ${file}: not Ed25519 (${key.asymmetricKeyType})`);
  }
  return key;
}

export interface GeneratedKeyPair {
  privatePath: string;
  publicPath: string;
  /** The one-line public key, as written to publicPath (without newline). */
  publicLine: string;
  publicKey: PublicKey;
}

export const DEFAULT_KEY_BASE = 'lcsync-key';

/**
 * Make a new Ed25519 pair and write `<base>` (private, PKCS#8 PEM, mode 0600)
 * and `<base>.pub` (one line). When `target` is an existing directory, base is
 * `<target>/lcsync-key`. Refuses (USAGE) to replace either file unless
 * `force`; with force each file is replaced atomically (write aside, rename).
 */
export async function generateKeyPair(target: string, opts: { force?: boolean } = {}): Promise<GeneratedKeyPair> {
  let base = target;
  if (target.endsWith('/')) {
    // A trailing slash names a directory: make it (owner-only, as ~/.ssh) when it is missing.
    try {
      await mkdir(target, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw outputError(e, `cannot create directory ${target}`);
    }
  }
  try {
    if ((await stat(target)).isDirectory()) base = path.join(target, DEFAULT_KEY_BASE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw outputError(e, `cannot use ${target}`);
  }
  // The key goes into an existing directory: a missing one is an output problem (exit 6), not a missing source.
  const dir = path.dirname(base);
  try {
    if (!(await stat(dir)).isDirectory()) throw new LcsyncError('IO', `cannot write ${base}: ${dir} is not a directory`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new LcsyncError('IO', `cannot write ${base}: directory ${dir} does not exist (create it, or end --output with "/" to have keygen create it)`);
    }
    throw outputError(e, `cannot write ${base}`);
  }
  const privatePath = base;
  const publicPath = `${base}.pub`;
  if (!opts.force) {
    for (const p of [privatePath, publicPath]) {
      if (await exists(p)) throw new LcsyncError('USAGE', `${p} already exists (use --force to overwrite)`);
    }
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const raw = rawPublicKey(publicKey);
  const publicLine = formatPublicKey(raw);
  await writeKeyFile(privatePath, pem, 0o600, opts.force === true);
  try {
    await writeKeyFile(publicPath, `${publicLine}\n`, 0o644, opts.force === true);
  } catch (e) {
    // Do not leave a private key without its public half when we created it just now.
    if (!opts.force) await unlink(privatePath).catch(() => undefined);
    throw e;
  }
  return { privatePath, publicPath, publicLine, publicKey: raw };
}

/** An error writing an output: permission stays permission (exit 5); anything else, missing paths too, is I/O (exit 6). */
function outputError(e: unknown, what: string): LcsyncError {
  const err = fromSystemError(e, what);
  return err.code === 'NOT_FOUND' ? new LcsyncError('IO', err.message, { cause: e }) : err;
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fromSystemError(e, `cannot check ${p}`);
  }
}

/**
 * Write a key file with `mode`. Without `replace`, create it exclusively (a
 * file that appeared since the check is still not overwritten). With it,
 * write a temporary file beside it and rename it over, so the old key stays
 * whole until the new one is complete and the mode never widens.
 */
async function writeKeyFile(file: string, data: string, mode: number, replace: boolean): Promise<void> {
  const dest = replace ? `${file}.tmp-${process.pid}` : file;
  let fh;
  try {
    fh = await open(dest, 'wx', mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && !replace) {
      throw new LcsyncError('USAGE', `${file} already exists (use --force to overwrite)`);
    }
    throw outputError(e, `cannot write ${dest}`);
  }
  try {
    await fh.chmod(mode); // open()'s mode is filtered by the umask; make it exact
    await fh.writeFile(data, 'utf8');
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(dest).catch(() => undefined);
    throw outputError(e, `cannot write ${dest}`);
  }
  await fh.close();
  if (replace) {
    try {
      await rename(dest, file);
    } catch (e) {
      await unlink(dest).catch(() => undefined);
      throw outputError(e, `cannot write ${file}`);
    }
  }
}
