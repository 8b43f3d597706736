/**
 * Trust over an in-memory network (FakeNet): the signed manifest (symlink targets and the top
 * directory's stat, which no entry hash covers) with and without --trust, two roots answering for
 * one share name, --expect-root, --trust for a path inside a share, forged undecryptable objects on
 * an encrypted share, a local chunk corrupted between hashing and reuse, and a check that throws
 * something other than an integrity error.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LcsyncError } from '../src/core/base/errors.js';
import { groupAddress } from '../src/core/wire/address.js';
import { hash, toHex, type Hash } from '../src/core/model/hash.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../src/core/model/entry.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { encodeNetTree } from '../src/core/wire/nettree.js';
import { encodeDatagram } from '../src/core/wire/packet.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { objectCipher, type ObjectCipher } from '../src/core/wire/crypto.js';
import { decodeManifest, encodeManifest, headerMeta, manifestKey } from '../src/core/wire/manifest.js';
import { decodeSignature, encodeSignature, rawPublicKey, signatureKey } from '../src/core/wire/signature.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { syncRemote, type SyncOptions, type SyncSummary } from '../src/core/sync/sync.js';
import { FakeNet } from './fakenet.js';
import { execFile } from 'node:child_process';
import { cli } from './e2e.js';

const { privateKey } = generateKeyPairSync('ed25519');
const trusted = rawPublicKey(privateKey);

const fileMeta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };
const dirMeta: FileMeta = { ...fileMeta, mode: 0o40755 };
const linkMeta: FileMeta = { ...fileMeta, mode: 0o120777 };

/** All source symbols of `obj` (sealed first with `cipher`), OID = BLAKE3 of the plain bytes. */
function datagrams(obj: Buffer, withOti: boolean, cipher?: ObjectCipher, oid: Hash = hash(obj)): Buffer[] {
  const wire = cipher ? cipher.seal(obj) : obj;
  const enc = new ObjectEncoder(wire);
  const out: Buffer[] = [];
  for (let esi = 0; esi < enc.K; esi++) out.push(encodeDatagram({ oid, transferLength: withOti ? wire.length : undefined, esi, symbol: enc.sourceSymbol(esi) }));
  return out;
}

interface ShareSpec {
  files?: Record<string, Buffer>;
  links?: Record<string, string>;
  /** The top directory's stat as served (the manifest always has dirMeta). */
  topMeta?: FileMeta;
  /** Symlink targets as served, when not the signed ones. */
  servedLinks?: Record<string, string>;
  /** Publish a signature and manifest with this key. */
  signWith?: typeof privateKey;
  cipher?: ObjectCipher;
  /** Serve nothing but the top directory, the signature and the manifest (the entries come from elsewhere). */
  topOnly?: boolean;
}

/** Serve a share "share" (a flat directory) on `net` as lcsync share would; returns its root. */
function serveShare(net: FakeNet, spec: ShareSpec): { root: Hash; linkKeys: Record<string, Hash> } {
  const c = spec.cipher;
  const children: Hash[] = [];
  const linkKeys: Record<string, Hash> = {};
  const serve = (keys: Hash[], obj: Buffer) => {
    for (const k of keys) net.serve(groupAddress(k), datagrams(obj, true, c));
  };
  for (const [rel, data] of Object.entries(spec.files ?? {})) {
    const name = `share/${rel}`;
    const tree = MerkleTree.fromBuffer(data);
    const obj = encodeNetTree({ type: 'file', size: data.length, meta: fileMeta, name, payload: tree.nodes });
    const key = fileEntryHash(name, tree.root, 0, fileMeta);
    children.push(key);
    if (spec.topOnly) continue;
    serve([key, aliasHash(name)], obj);
    for (let i = 0; i < tree.chunks; i++) {
      net.serve(groupAddress(tree.leaf(i)), datagrams(data.subarray(i * 32768, Math.min(data.length, (i + 1) * 32768)), false, c));
    }
  }
  for (const [rel, target] of Object.entries(spec.links ?? {})) {
    const name = `share/${rel}`;
    const key = symlinkEntryHash(name, linkMeta);
    linkKeys[rel] = key;
    children.push(key);
    if (spec.topOnly) continue;
    serve([key, aliasHash(name)], encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name, payload: Buffer.from(spec.servedLinks?.[rel] ?? target) }));
  }
  const root = dirEntryHash(undefined, children);
  const top = (meta: FileMeta) => encodeNetTree({ type: 'dir', size: 0, meta, name: 'share', payload: Buffer.concat(children) });
  serve([root, aliasHash('share')], top(spec.topMeta ?? dirMeta));
  if (spec.signWith) {
    const links = Object.entries(spec.links ?? {}).map(([rel, target]) => ({ hash: linkKeys[rel]!, path: `share/${rel}`, target }));
    const manifest = encodeManifest({ root, topMeta: headerMeta(top(dirMeta)), links });
    serve([manifestKey(root)], manifest);
    serve([signatureKey(root)], encodeSignature({ root, name: 'share', timestamp: Date.now(), privateKey: spec.signWith, manifest: hash(manifest) }));
  }
  return { root, linkKeys };
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-trust-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

let n = 0;
/** A fresh destination directory holding one sentinel file. */
function freshDest(): string {
  const d = path.join(work, `d${n++}`);
  mkdirSync(d);
  writeFileSync(path.join(d, 'keep'), 'sentinel');
  return d;
}

/** Every path below `dir` with its type, link target or content: what "unchanged" compares. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = path.posix.join(rel, name);
      const p = path.join(dir, r);
      const st = lstatSync(p);
      out.push(st.isSymbolicLink() ? `${r} -> ${readlinkSync(p)}` : st.isDirectory() ? `${r}/` : `${r} ${readFileSync(p).toString('hex').slice(0, 16)}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

async function sync(net: FakeNet, source: string, dest: string, extra: Partial<SyncOptions> = {}): Promise<{ err?: LcsyncError; summary?: SyncSummary }> {
  try {
    const summary = await syncRemote(source, dest, {
      channel: net,
      ifnames: ['fake0'],
      flags: { recursive: true, perms: true, owner: false, group: false, times: true },
      timeoutSec: 2,
      ...extra,
    });
    return { summary };
  } catch (err) {
    if (!(err instanceof LcsyncError)) throw err;
    return { err };
  }
}

describe('manifest object', () => {
  it('round-trips in canonical order and refuses malformed objects with one-line INTEGRITY errors', () => {
    const root = randomBytes(32);
    const links = [
      { hash: randomBytes(32), path: 'share/b', target: '../x' },
      { hash: randomBytes(32), path: 'share/a', target: 'f.txt' },
    ];
    const topMeta = headerMeta(encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name: '', payload: Buffer.alloc(0) }));
    const obj = encodeManifest({ root, topMeta, links });
    // Canonical: the same set in another order gives the same bytes (so the same digest).
    expect(encodeManifest({ root, topMeta, links: [...links].reverse() }).equals(obj)).toBe(true);
    const m = decodeManifest(obj);
    expect(m.root.equals(root)).toBe(true);
    expect(m.topMeta!.equals(topMeta)).toBe(true);
    expect([...m.links.keys()]).toEqual(['share/a', 'share/b']);
    expect(m.links.get('share/b')!.target).toBe('../x');
    expect(obj.length).toBe(40 + 42 + 4 + (32 + 2 + 7 + 2 + 5) + (32 + 2 + 7 + 2 + 4));
    const bad = (b: Buffer, msg: string) => {
      let e: unknown;
      try {
        decodeManifest(b);
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(LcsyncError);
      expect((e as LcsyncError).code).toBe('INTEGRITY');
      expect((e as LcsyncError).message).toBe(msg);
    };
    bad(obj.subarray(0, 10), 'malformed manifest: 10 bytes, at least 44 needed');
    bad(Buffer.concat([obj, Buffer.from([0])]), 'malformed manifest: 1 bytes after the last entry');
    bad(obj.subarray(0, obj.length - 1), 'malformed manifest: entry 1 runs past the end');
    const flags = Buffer.from(obj);
    flags[7] = 0x82;
    bad(flags, 'malformed manifest: unknown flags 0x82');
    // Entries swapped by hand: out of order.
    const a = encodeManifest({ root, links: [links[1]!] });
    const b = encodeManifest({ root, links: [links[0]!] });
    const swapped = Buffer.concat([a.subarray(0, 40), Buffer.from([0, 0, 0, 2]), b.subarray(44), a.subarray(44)]);
    bad(swapped, 'malformed manifest: entry 1 is out of order');
  });

  it('the signature object carries its digest under flag 0x01, signed', () => {
    const root = randomBytes(32);
    const digest = randomBytes(32);
    const sig = encodeSignature({ root, name: 'share', timestamp: 1, privateKey, manifest: digest });
    expect(sig[7]).toBe(1);
    expect(sig.length).toBe(146 + 5 + 32);
    const d = decodeSignature(sig);
    expect(d.valid).toBe(true);
    expect(d.manifest!.equals(digest)).toBe(true);
    const tampered = Buffer.from(sig);
    tampered[60] ^= 1; // inside the digest
    expect(decodeSignature(tampered).valid).toBe(false);
  });
});

describe('a spoofer with --trust and without', () => {
  it('a swapped symlink target: --trust refuses it before anything is written; without, the link points where the spoofer says', async () => {
    const spec = { files: { 'a.txt': Buffer.from('genuine\n') }, links: { link: 'a.txt' }, servedLinks: { link: '/etc/shadow' }, signWith: privateKey };
    const net = new FakeNet();
    serveShare(net, spec);
    const dest = freshDest();
    const before = listing(dest);
    const r = await sync(net, 'share', dest, { trust: trusted });
    expect(r.err?.code).toBe('INTEGRITY');
    expect(r.err?.message).toBe('refusing symlink "share/link": its target "/etc/shadow" is not the signed one "a.txt"');
    expect(listing(dest)).toEqual(before);
    // Without --trust the C wire format cannot tell (README: symlink targets are not authenticated).
    const plain = await sync(net, 'share', dest);
    expect(plain.err).toBeUndefined();
    expect(readlinkSync(path.join(dest, 'share', 'link'))).toBe('/etc/shadow');
  });

  it('with the genuine share beside the spoofer, --trust drops the forged link and writes the signed target', async () => {
    const net = new FakeNet();
    // The spoofer's objects come first on every join.
    serveShare(net, { files: { 'a.txt': Buffer.from('genuine\n') }, links: { link: 'a.txt' }, servedLinks: { link: '/etc/shadow' } });
    serveShare(net, { files: { 'a.txt': Buffer.from('genuine\n') }, links: { link: 'a.txt' }, signWith: privateKey });
    const dest = freshDest();
    const r = await sync(net, 'share', dest, { trust: trusted });
    expect(r.err).toBeUndefined();
    expect(readlinkSync(path.join(dest, 'share', 'link'))).toBe('a.txt');
    expect(readFileSync(path.join(dest, 'share', 'a.txt'), 'utf8')).toBe('genuine\n');
  });

  it('changed top-level metadata: --trust refuses it before anything is written; without, -a applies it', async () => {
    const forged = { ...dirMeta, mode: 0o40777, mtimeSec: 1_000_000_000n };
    const net = new FakeNet();
    serveShare(net, { files: { 'a.txt': Buffer.from('x\n') }, topMeta: forged, signWith: privateKey });
    const dest = freshDest();
    const before = listing(dest);
    const r = await sync(net, 'share', dest, { trust: trusted });
    expect(r.err?.code).toBe('INTEGRITY');
    expect(r.err?.message).toBe('refusing directory "share": its mode, owner or times are not the signed ones');
    expect(listing(dest)).toEqual(before);
    const plain = await sync(net, 'share', dest);
    expect(plain.err).toBeUndefined();
    const st = lstatSync(path.join(dest, 'share'));
    expect(st.mode & 0o7777).toBe(0o777);
    expect(Math.floor(st.mtimeMs / 1000)).toBe(1_000_000_000);
  });

  it('two roots for one name: refused naming both; --expect-root pins one; --trust picks the signed one', async () => {
    const net = new FakeNet();
    const spoof = serveShare(net, { files: { 'a.txt': Buffer.from('spoofed\n') } });
    const genuine = serveShare(net, { files: { 'a.txt': Buffer.from('genuine\n') }, signWith: privateKey });
    const dest = freshDest();
    const before = listing(dest);
    const r = await sync(net, 'share', dest);
    expect(r.err?.code).toBe('INTEGRITY');
    expect(r.err?.message).toBe(
      `two roots answer for share "share": ${toHex(spoof.root)} and ${toHex(genuine.root)} (pick one with --expect-root, or the signed one with --trust)`,
    );
    expect(listing(dest)).toEqual(before);
    const pinned = await sync(net, 'share', dest, { expectRoot: genuine.root });
    expect(pinned.err).toBeUndefined();
    expect(readFileSync(path.join(dest, 'share', 'a.txt'), 'utf8')).toBe('genuine\n');
    const other = freshDest();
    const t = await sync(net, 'share', other, { trust: trusted });
    expect(t.err).toBeUndefined();
    expect(t.summary!.rootHash).toBe(toHex(genuine.root));
    expect(readFileSync(path.join(other, 'share', 'a.txt'), 'utf8')).toBe('genuine\n');
  });

  it('--expect-root refuses a name answered only by another root, naming it', async () => {
    const net = new FakeNet();
    const spoof = serveShare(net, { files: { 'a.txt': Buffer.from('spoofed\n') } });
    const wanted = randomBytes(32);
    const dest = freshDest();
    const r = await sync(net, 'share', dest, { expectRoot: wanted });
    expect(r.err?.code).toBe('INTEGRITY');
    expect(r.err?.message).toBe(`share "share" is answered by root ${toHex(spoof.root)}, not the expected ${toHex(wanted)}`);
  });

  it('--trust for a path inside a share reaches it from the signed root, not from whatever answers its name', async () => {
    const net = new FakeNet();
    serveShare(net, { files: { 'a.txt': Buffer.from('genuine\n'), 'b.txt': Buffer.from('b\n') }, links: { link: 'a.txt' }, signWith: privateKey });
    // A spoofer answers the path's own name with a file it made (its hash is its own).
    const fake = Buffer.from('spoofed\n');
    const tree = MerkleTree.fromBuffer(fake);
    const obj = encodeNetTree({ type: 'file', size: fake.length, meta: fileMeta, name: 'share/a.txt', payload: tree.nodes });
    net.serve(groupAddress(aliasHash('share/a.txt')), datagrams(obj, true));
    net.serve(groupAddress(tree.leaf(0)), datagrams(fake, false));
    const dest = freshDest();
    const r = await sync(net, 'share/a.txt', path.join(dest, 'out.txt'), { trust: trusted });
    expect(r.err).toBeUndefined();
    expect(readFileSync(path.join(dest, 'out.txt'), 'utf8')).toBe('genuine\n');
    const link = await sync(net, 'share/link', path.join(dest, 'l'), { trust: trusted });
    expect(link.err).toBeUndefined();
    expect(readlinkSync(path.join(dest, 'l'))).toBe('a.txt');
    const missing = await sync(net, 'share/nope', path.join(dest, 'n'), { trust: trusted });
    expect(missing.err?.message).toBe('"share/nope" is not in the share (no "nope" in "share")');
  });
});

describe('an encrypted share under a forger', () => {
  const key = randomBytes(32);
  const cipher = objectCipher(key);
  const forgerCipher = objectCipher(randomBytes(32));

  it('drops undecryptable objects and chunks under the genuine OIDs, counts them, and completes', async () => {
    const data = randomBytes(3 * 32768 + 100);
    const net = new FakeNet();
    // The forger first, on every group the share uses, with the genuine OIDs and lengths.
    const { root } = serveShare(net, { files: { 'f.bin': data }, links: { l: 'f.bin' }, cipher: forgerCipher });
    serveShare(net, { files: { 'f.bin': data }, links: { l: 'f.bin' }, cipher });
    const dest = freshDest();
    const r = await sync(net, toHex(root), dest, { cipher });
    expect(r.err).toBeUndefined();
    expect(readFileSync(path.join(dest, 'f.bin')).equals(data)).toBe(true);
    expect(readlinkSync(path.join(dest, 'l'))).toBe('f.bin');
    // Top, file part, link and 4 chunks: each forged box decoded and dropped.
    expect(r.summary!.objectsRejected).toBeGreaterThanOrEqual(7);
  });

  it('says "wrong key" when nothing opens, and leaves the destination unchanged', async () => {
    const net = new FakeNet();
    const { root } = serveShare(net, { files: { 'f.bin': randomBytes(1000) }, cipher });
    const dest = freshDest();
    const before = listing(dest);
    const r = await sync(net, toHex(root), dest, { cipher: forgerCipher });
    expect(r.err?.code).toBe('INTEGRITY');
    // Each (re)join brings the box again: how many depends on the timing.
    expect(r.err?.message).toMatch(/^cannot decrypt: wrong key or password \(\d+ objects? did not open, none opened\)$/);
    expect(listing(dest)).toEqual(before);
  });

  it('says "wrong key" when undecryptable objects keep coming and the one waited for does not', async () => {
    const net = new FakeNet();
    // The genuine top opens; its file never comes, only a forger's box under the file's group.
    const data = randomBytes(1000);
    const { root } = serveShare(net, { files: { 'f.bin': data }, cipher, topOnly: true });
    const tree = MerkleTree.fromBuffer(data);
    const fileKey = fileEntryHash('share/f.bin', tree.root, 0, fileMeta);
    const obj = encodeNetTree({ type: 'file', size: data.length, meta: fileMeta, name: 'share/f.bin', payload: tree.nodes });
    net.serve(groupAddress(fileKey), datagrams(obj, true, forgerCipher));
    const r = await sync(net, toHex(root), freshDest(), { cipher, timeoutSec: 1 });
    expect(r.err?.message).toMatch(/^cannot decrypt: wrong key or password \(\d+ objects? did not open, 1 opened, but not the one waited for\)$/);
  });
});

describe('reused local chunks', () => {
  it('a local chunk corrupted after hashing is not copied: it is fetched, and the file is right', async () => {
    const chunk = (b: number) => Buffer.alloc(32768, b);
    const data = Buffer.concat([chunk(1), chunk(2), chunk(3), chunk(4)]);
    const net = new FakeNet();
    const tree = MerkleTree.fromBuffer(data);
    const name = 'f.bin';
    const obj = encodeNetTree({ type: 'file', size: data.length, meta: fileMeta, name, payload: tree.nodes });
    const key = fileEntryHash(name, tree.root, 0, fileMeta);
    net.serve(groupAddress(key), datagrams(obj, true));
    for (let i = 0; i < 4; i++) net.serve(groupAddress(tree.leaf(i)), datagrams(data.subarray(i * 32768, (i + 1) * 32768), false));
    const dest = path.join(freshDest(), 'f.bin');
    // The local copy has every chunk, moved: all four would be reused.
    writeFileSync(dest, Buffer.concat([chunk(4), chunk(3), chunk(2), chunk(1)]));
    const fromFile = MerkleTree.fromFile.bind(MerkleTree);
    vi.spyOn(MerkleTree, 'fromFile').mockImplementation(async (p: string, size?: number) => {
      const t = await fromFile(p, size);
      // After the local copy was hashed, its chunk holding 2s (at offset 2) goes bad.
      if (p === dest) writeFileSync(dest, Buffer.concat([chunk(4), chunk(3), chunk(9), chunk(1)]));
      return t;
    });
    const r = await sync(net, toHex(key), dest);
    expect(r.err).toBeUndefined();
    expect(readFileSync(dest).equals(data)).toBe(true);
    expect(r.summary!.chunksReused).toBe(3);
    expect(r.summary!.chunksFetched).toBe(1);
  });
});

describe('a check that throws something other than an integrity error', () => {
  it('is reported as a bug with its stack, and the request goes on (a neighbour cannot end it)', async () => {
    const net = new FakeNet();
    const bugs: Error[] = [];
    const rx = new ObjectReceiver(net, { onBug: (e) => bugs.push(e), stallMs: 50 });
    const obj = randomBytes(500);
    const key = randomBytes(32);
    net.serve(groupAddress(key), datagrams(obj, true));
    try {
      const buggy = rx.fetchTree(key, () => {
        throw new TypeError('verifier bug');
      }, { deadlineMs: 300 });
      await expect(buggy).rejects.toMatchObject({ code: 'TIMEOUT' });
      expect(bugs).toHaveLength(1);
      expect(bugs[0]!.stack).toContain('verifier bug');
      expect(bugs[0]!.stack).toContain('trust.test.ts');
      // An integrity refusal is no bug (the object, kept, is offered again at once).
      const refusing = rx.fetchTree(key, () => {
        throw new LcsyncError('INTEGRITY', 'not this one');
      }, { deadlineMs: 300 });
      await expect(refusing).rejects.toMatchObject({ code: 'TIMEOUT' });
      await expect(rx.fetchTree(key, (o) => o.equals(obj))).resolves.toEqual(obj);
    } finally {
      rx.close();
    }
    expect(bugs).toHaveLength(1);
  });
});

describe('lcsync sync --expect-root', () => {
  it('refuses a value that is not a root hash with exit 2 and one line, before touching the network', async () => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, 'sync', '--json', '--expect-root', 'abc', 'share', path.join(work, 'never')], { timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(2);
    expect(JSON.parse(r.stdout).error.message).toBe('--expect-root must be a root hash of 64 hex digits, got "abc"');
  });
});
