/**
 * Hostile input on the receiver side, without a network: the receiver and the
 * sync session are driven through an in-memory channel (FakeNet) that plays
 * crafted datagrams when a group is joined, the way a sender on the link would.
 *
 * Complements the parser fuzz of test/packet.test.ts (datagram header and OTI),
 * test/nettree.test.ts (net_tree objects and directory payloads),
 * test/mld.test.ts (MLD messages) and test/signature.test.ts: this file fuzzes
 * what sits above them (ObjectReceiver, objectMatches, partAgrees, childName)
 * and checks the properties the issue asks for: no exception escapes a datagram
 * handler, memory stays bounded under a flood, untrusted names never place a
 * file outside the destination, and forged symbols never reach an output.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runInNewContext } from 'node:vm';
import v8 from 'node:v8';
import { LcsyncError } from '../src/core/base/errors.js';
import { displayName, nameFromBytes } from '../src/core/base/names.js';
import { groupAddress } from '../src/core/wire/address.js';
import { hash, toHex, type Hash } from '../src/core/model/hash.js';
import { dirEntryHash, fileEntryHash, symlinkEntryHash } from '../src/core/model/entry.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { DEFAULT_LIMITS, decodeNetTreeHead, encodeNetTree, splitParts, type NetTreeHead } from '../src/core/wire/nettree.js';
import { DATAGRAM_LEN, DATAGRAM_OTI_LEN, MAX_OBJECT, encodeDatagram } from '../src/core/wire/packet.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { SyncSession } from '../src/core/sync/sync.js';
import { childName, objectMatches, partAgrees } from '../src/core/wire/verify.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { FakeNet } from './fakenet.js';

/** All source symbols of `obj`, with an OTI for tree objects. */
function datagrams(obj: Buffer, oid: Hash, withOti: boolean): Buffer[] {
  const enc = new ObjectEncoder(obj);
  const out: Buffer[] = [];
  for (let esi = 0; esi < enc.K; esi++) {
    out.push(encodeDatagram({ oid, transferLength: withOti ? obj.length : undefined, esi, symbol: enc.sourceSymbol(esi) }));
  }
  return out;
}

const fileMeta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };
const dirMeta: FileMeta = { ...fileMeta, mode: 0o40755 };
const linkMeta: FileMeta = { ...fileMeta, mode: 0o120777 };

interface Crafted {
  key: Hash;
  obj: Buffer;
}

/** A file object whose entry hash is consistent with its name, root and stat (as a liar must make it). */
function craftFile(net: FakeNet, name: string, data: Buffer): Crafted {
  const tree = MerkleTree.fromBuffer(data);
  const obj = encodeNetTree({ type: 'file', size: data.length, meta: fileMeta, name, payload: tree.nodes });
  const key = fileEntryHash(name, tree.root, 0, fileMeta);
  net.serve(groupAddress(key), datagrams(obj, hash(obj), true));
  for (let i = 0; i < tree.chunks; i++) {
    const chunk = data.subarray(i * 32768, Math.min(data.length, (i + 1) * 32768));
    net.serve(groupAddress(tree.leaf(i)), datagrams(chunk, tree.leaf(i), false));
  }
  return { key, obj };
}

function craftDir(net: FakeNet, name: string, children: Hash[], top = false): Crafted {
  const obj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name, payload: Buffer.concat(children) });
  const key = top ? dirEntryHash(undefined, children) : dirEntryHash({ basename: path.posix.basename(name), meta: dirMeta }, children);
  net.serve(groupAddress(key), datagrams(obj, hash(obj), true));
  return { key, obj };
}

function craftLink(net: FakeNet, name: string, target: string): Crafted {
  const obj = encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name, payload: Buffer.from(target) });
  const key = symlinkEntryHash(name, linkMeta);
  net.serve(groupAddress(key), datagrams(obj, hash(obj), true));
  return { key, obj };
}

/** What syncRemote does for a hash, over the fake network: fetch the top object and sync it into dest. */
async function syncOver(net: FakeNet, key: Hash, dest: string, timeoutSec = 3): Promise<{ err?: unknown; session: SyncSession }> {
  const session = await SyncSession.open({
    channel: net,
    ifnames: ['fake0'],
    flags: { recursive: true, perms: false, owner: false, group: false, times: false },
    timeoutSec,
  });
  try {
    const top = await session.fetchEntry(key);
    await session.syncEntry(top, dest, new Set());
    await session.applyTimes();
    await session.makeDurable();
    return { session };
  } catch (err) {
    return { err, session };
  } finally {
    await session.close();
  }
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-hostile-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Every path below `dir`, sorted (`dir` itself excluded). */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of readdirSync(path.join(dir, rel)).sort()) {
      const r = path.posix.join(rel, n);
      out.push(r);
      if (lstatSync(path.join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

// ---------------------------------------------------------------------------------------------------------

describe('ObjectReceiver under hostile datagrams', () => {
  const genuine = encodeNetTree({ type: 'file', size: 5 * 32768, meta: fileMeta, name: 'share/g.bin', payload: MerkleTree.fromBuffer(Buffer.alloc(5 * 32768, 3)).nodes });
  const gOid = hash(genuine);
  const gDatagrams = datagrams(genuine, gOid, true);

  const garbage = fc.oneof(
    fc.uint8Array({ maxLength: 1200 }).map((u) => Buffer.from(u)),
    fc.uint8Array({ minLength: DATAGRAM_LEN, maxLength: DATAGRAM_LEN }).map((u) => Buffer.from(u)),
    fc.uint8Array({ minLength: DATAGRAM_OTI_LEN, maxLength: DATAGRAM_OTI_LEN }).map((u) => Buffer.from(u)),
    // Well-formed headers with random OIDs, lengths and ESIs: each can open a decoder.
    fc.record({ oid: fc.uint8Array({ minLength: 32, maxLength: 32 }), F: fc.integer({ min: 1, max: MAX_OBJECT }), esi: fc.integer({ min: 0, max: 0xffffff }), oti: fc.boolean() }).map((h) =>
      encodeDatagram({ oid: h.oid, transferLength: h.oti ? h.F : undefined, esi: h.esi, symbol: randomBytes(1024) }),
    ),
    // A genuine datagram with bytes changed: the header may still parse, the symbol is forged.
    fc.tuple(fc.nat(gDatagrams.length - 1), fc.array(fc.tuple(fc.nat(DATAGRAM_OTI_LEN - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })).map(([i, edits]) => {
      const b = Buffer.from(gDatagrams[i]!);
      for (const [at, v] of edits) b[at] = v;
      return b;
    }),
  );

  it('never throws from the datagram handler, and still delivers the genuine object after any garbage (fuzz)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(garbage, { maxLength: 40 }), async (junk) => {
        const net = new FakeNet();
        const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
        try {
          const key = randomBytes(32);
          const got = rx.fetchTree(key, (o) => o.equals(genuine));
          // A throw here would be an uncaught exception in a socket 'message' handler: a crash.
          for (const j of junk) net.emit(j);
          // The genuine sender goes on sending: a later round, the source symbols again.
          for (let round = 0; round < 2; round++) for (const d of gDatagrams) net.emit(d);
          expect((await got).equals(genuine)).toBe(true);
        } finally {
          rx.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a forged round under the genuine OID is rejected and does not shut out the genuine object', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
    try {
      const got = rx.fetchTree(randomBytes(32), (o) => o.equals(genuine));
      // All K source symbols forged, first: they decode to garbage whose BLAKE3 is not the OID.
      for (let esi = 0; esi < gDatagrams.length; esi++) {
        net.emit(encodeDatagram({ oid: gOid, transferLength: genuine.length, esi, symbol: randomBytes(1024) }));
      }
      expect(rx.stats.rejected).toBe(1);
      for (const d of gDatagrams) net.emit(d);
      expect((await got).equals(genuine)).toBe(true);
    } finally {
      rx.close();
    }
  });

  it('a datagram claiming another length for the genuine OID does not shut out the genuine object', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
    try {
      const got = rx.fetchTree(randomBytes(32), (o) => o.equals(genuine));
      net.emit(encodeDatagram({ oid: gOid, transferLength: genuine.length + 5000, esi: 0, symbol: randomBytes(1024) }));
      for (const d of gDatagrams) net.emit(d);
      expect((await got).equals(genuine)).toBe(true);
    } finally {
      rx.close();
    }
  });

  it('forged chunk symbols under the leaf hash never come out; the chunk arrives once genuine symbols do', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
    try {
      const chunk = randomBytes(32768);
      const leaf = hash(chunk);
      const got = rx.fetchChunk(leaf, chunk.length);
      for (let esi = 0; esi < 32; esi++) net.emit(encodeDatagram({ oid: leaf, esi, symbol: randomBytes(1024) }));
      expect(rx.stats.rejected).toBe(1);
      for (const d of datagrams(chunk, leaf, false)) net.emit(d);
      expect((await got).equals(chunk)).toBe(true);
    } finally {
      rx.close();
    }
  });

  it('a flood of OTI datagrams each claiming the largest object keeps at most 32 MiB of decoders', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
    try {
      const got = rx.fetchTree(randomBytes(32), (o) => o.equals(genuine));
      // Backing stores of collected buffers are released in the background: collect a few times.
      const settled = async () => {
        let least = Infinity;
        for (let i = 0; i < 5; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 20));
          least = Math.min(least, process.memoryUsage().arrayBuffers);
        }
        return least;
      };
      const before = await settled();
      // Each opens a decoder of MAX_OBJECT (10 MiB) and fills its first symbol: 200 of them
      // would be 2 GiB, and 64 (the decoder count limit alone) 640 MiB.
      for (let i = 0; i < 200; i++) {
        net.emit(encodeDatagram({ oid: randomBytes(32), transferLength: MAX_OBJECT, esi: 0, symbol: randomBytes(1024) }));
      }
      const grown = (await settled()) - before;
      expect(grown).toBeLessThan(48 * 2 ** 20);
      for (const d of gDatagrams) net.emit(d);
      expect((await got).equals(genuine)).toBe(true);
    } finally {
      rx.close();
    }
  });

  it('two requests for the same key both get the object, and a later request gets it without the network', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 2000 });
    try {
      const key = randomBytes(32);
      const a = rx.fetchTree(key, (o) => o.equals(genuine));
      const b = rx.fetchTree(key, (o) => o.equals(genuine));
      for (const d of gDatagrams) net.emit(d);
      expect((await a).equals(genuine)).toBe(true);
      expect((await b).equals(genuine)).toBe(true);
      // The OID is done now, so its datagrams are dropped: the object must come from what was kept.
      const c = rx.fetchTree(key, (o) => o.equals(genuine));
      for (const d of gDatagrams) net.emit(d);
      expect((await c).equals(genuine)).toBe(true);
    } finally {
      rx.close();
    }
  });
});

describe('a sync session against forged tree parts and a busy sender', () => {
  it('takes each part of a 9-part tree only when its nodes agree with their parents, whatever came first on its group', async () => {
    const size = 2100 * 32768;
    const tree = MerkleTree.blank(size);
    for (let i = 0; i < tree.chunks; i++) randomBytes(32).copy(tree.leaf(i));
    tree.seal();
    const name = 'share/big.bin';
    const obj = encodeNetTree({ type: 'file', size, meta: fileMeta, name, payload: tree.nodes });
    const parts = splitParts(obj);
    expect(parts.length).toBe(9);
    const net = new FakeNet();
    for (const [z, part] of parts.entries()) {
      const key = fileEntryHash(name, tree.root, z, fileMeta);
      // Parts 1..8: first a forged part of the same length under its own valid OID.
      const forged = randomBytes(part.length);
      if (z > 0) net.serve(groupAddress(key), datagrams(forged, hash(forged), true));
      net.serve(groupAddress(key), datagrams(Buffer.from(part), hash(part), true));
    }
    const session = await SyncSession.open({
    channel: net,
      ifnames: ['fake0'],
      flags: { recursive: false, perms: false, owner: false, group: false, times: false },
      timeoutSec: 5,
    });
    try {
      const entry = await session.fetchEntry(fileEntryHash(name, tree.root, 0, fileMeta));
      expect(entry.obj.equals(obj)).toBe(true);
      expect(entry.tree!.root.equals(tree.root)).toBe(true);
    } finally {
      await session.close();
    }
  });

  it('a request that hears nothing does not time out while other requests still make progress', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 400, firstSymbolMs: 60_000 });
    try {
      const silent = rx.fetchChunk(randomBytes(32), 32768);
      const failedAt = silent.then(
        () => -1,
        () => Date.now(),
      );
      const chunk = randomBytes(32768);
      const busy = rx.fetchChunk(hash(chunk), chunk.length);
      // The sender is busy: one symbol of the other chunk every 100 ms for 1.6 s.
      const t0 = Date.now();
      for (const d of datagrams(chunk, hash(chunk), false).slice(0, 16)) {
        net.emit(d);
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const d of datagrams(chunk, hash(chunk), false)) net.emit(d);
      const doneAt = Date.now();
      expect((await busy).equals(chunk)).toBe(true);
      const failed = await failedAt;
      // It gave up only once the whole transfer had been idle for the timeout.
      expect(failed - t0).toBeGreaterThan(1500);
      expect(failed - doneAt).toBeGreaterThanOrEqual(300);
      await expect(silent).rejects.toThrow(/^no sender answered on ff1e:[0-9a-f:]+ within 0 s$/);
    } finally {
      rx.close();
    }
  });
});

describe('verification of objects from the network (fuzz)', () => {
  const limits = DEFAULT_LIMITS;
  const sample = encodeNetTree({ type: 'file', size: 3 * 32768, meta: fileMeta, name: 'share/f', payload: MerkleTree.fromBuffer(Buffer.alloc(3 * 32768, 1)).nodes });

  it('objectMatches returns a boolean or throws INTEGRITY, never anything else', () => {
    const check = (obj: Uint8Array, alias: boolean) => {
      try {
        const r = objectMatches(Buffer.from(obj), randomBytes(32), alias ? 'share/f' : undefined, limits);
        expect(r).toBe(false);
      } catch (e) {
        expect(e).toBeInstanceOf(LcsyncError);
        expect((e as LcsyncError).code).toBe('INTEGRITY');
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), check), { numRuns: 2000 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(sample.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(sample.length), fc.boolean(), (edits, cut, alias) => {
        const b = Buffer.from(sample);
        for (const [i, v] of edits) b[i] = v;
        check(b.subarray(0, cut), alias);
      }),
      { numRuns: 2000 },
    );
  });

  it('partAgrees never throws on parts of any length and payload offset, and refuses a changed node', () => {
    const tree = MerkleTree.fromBuffer(randomBytes(300 * 32768));
    const obj = encodeNetTree({ type: 'file', size: tree.size, meta: fileMeta, name: 'share/p', payload: tree.nodes });
    const off = decodeNetTreeHead(obj).payloadOffset;
    fc.assert(
      fc.property(fc.nat(obj.length), fc.nat(obj.length), fc.integer({ min: 0, max: 200 }), (a, len, po) => {
        const prefix = obj.subarray(0, a);
        const part = obj.subarray(a, Math.min(obj.length, a + len));
        expect(typeof partAgrees(prefix, part, po)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
    // The real cut, with one byte of the second part changed: some sibling pair no longer hashes to its parent.
    const cut = 8192;
    expect(partAgrees(obj.subarray(0, cut), obj.subarray(cut, 2 * cut), off)).toBe(true);
    fc.assert(
      fc.property(fc.nat(cut - 1), (i) => {
        const part = Buffer.from(obj.subarray(cut, 2 * cut));
        part[i] ^= 0x01;
        // A changed byte inside a node that is checked in this part must be caught.
        const node = Math.floor((cut + i - off) / 32);
        const lastComplete = Math.floor((2 * cut - off) / 32) - 1;
        const pairEnd = node % 2 === 1 ? node + 1 : node;
        if (pairEnd <= lastComplete && node >= Math.floor((cut - off) / 32) + 1) expect(partAgrees(obj.subarray(0, cut), part, off)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});

describe('names from the network', () => {
  const head = (name: string, type: NetTreeHead['type'] = 'file'): NetTreeHead => ({ type, name, size: 0, payloadOffset: 0, objectLength: 0, meta: fileMeta });
  const share = head('share', 'dir');

  it.each([
    ['share/../evil', 'file', '".." segment'],
    ['share/..', 'dir', '".." segment'],
    ['share/.', 'symlink', '"." segment'],
    ['/etc/x', 'file', 'absolute path'],
    ['share//x', 'file', 'empty path segment'],
    ['share/', 'file', 'empty path segment'],
    ['share/a\0b', 'file', 'NUL byte'],
    [`share/${'n'.repeat(300)}`, 'file', 'segment of 300 bytes, longer than 255'],
    [`share/${'é'.repeat(128)}`, 'dir', 'segment of 256 bytes, longer than 255'],
    ['other/x', 'file', 'not inside that directory'],
    ['share/sub/x', 'file', 'not a direct child'],
  ] as const)('refuses %j (%s): %s', (name, type, why) => {
    let caught: unknown;
    try {
      childName(share, head(name, type));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(LcsyncError);
    expect((caught as LcsyncError).code).toBe('INTEGRITY');
    expect((caught as LcsyncError).message).toBe(`refusing unsafe name "${displayName(name)}" in directory "share": ${why}`);
  });

  it('accepts a direct child, and a directory named under another parent by its basename (its hash covers only that)', () => {
    expect(childName(share, head('share/a.bin'))).toBe('a.bin');
    expect(childName(share, head('share/..a', 'symlink'))).toBe('..a');
    expect(childName(head('share/b', 'dir'), head('share/a/x', 'dir'))).toBe('x');
    // At another depth too: empty twins `a/logs` and `b/c/logs` have one entry hash (test/samedirs.test.ts).
    expect(childName(share, head('share/sub/x', 'dir'))).toBe('x');
    expect(childName(head('share/b/c', 'dir'), head('share/a', 'dir'))).toBe('a');
    expect(childName(share, head(`share/${'n'.repeat(255)}`))).toBe('n'.repeat(255));
  });

  it('whatever the name, an accepted child lands directly inside the destination (fuzz)', () => {
    const seg = fc.oneof(
      fc.constantFrom('', '.', '..', 'a', 'b c', '\0', 'x\0y', '...', '-', 'n'.repeat(255), 'n'.repeat(256)),
      fc.string({ maxLength: 12 }),
      fc.string({ unit: 'binary', maxLength: 8 }),
    );
    const dest = '/dest/dir';
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 5 }), fc.boolean(), fc.constantFrom<NetTreeHead['type']>('file', 'dir', 'symlink'), (segs, abs, type) => {
        const name = (abs ? '/' : '') + segs.join('/');
        let rel: string;
        try {
          rel = childName(share, head(name, type));
        } catch (e) {
          expect((e as LcsyncError).code).toBe('INTEGRITY');
          return;
        }
        const out = path.join(dest, rel);
        expect(path.dirname(out)).toBe(dest);
        expect(path.basename(out)).toBe(rel);
        expect(rel).not.toMatch(/^\.\.?$|\0|\//);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('sync from a lying sender writes nothing outside the destination', () => {
  /** A fresh sandbox: S holds a sentinel file and the destination S/dest. */
  function sandbox(name: string): { s: string; dest: string } {
    const s = path.join(work, name);
    mkdirSync(path.join(s, 'dest'), { recursive: true });
    writeFileSync(path.join(s, 'keep.txt'), 'sentinel');
    return { s, dest: path.join(s, 'dest') };
  }

  it.each([
    ['share/../evil', '".." segment'],
    ['share//x', 'empty path segment'],
    ['share/a\0b', 'NUL byte'],
    [`share/${'n'.repeat(300)}`, 'segment of 300 bytes, longer than 255'],
  ])('a child file named %j is refused with exit 4 and the sandbox is unchanged', async (name, why) => {
    const { s, dest } = sandbox(`n-${toHex(hash(Buffer.from(name))).slice(0, 8)}`);
    const net = new FakeNet();
    const evil = craftFile(net, name, Buffer.from('pwned\n'));
    const top = craftDir(net, 'share', [evil.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect(err).toBeInstanceOf(LcsyncError);
    expect((err as LcsyncError).exitCode).toBe(4);
    expect((err as LcsyncError).message).toBe(`refusing unsafe name "${displayName(name)}" in directory "share": ${why}`);
    expect(listing(s)).toEqual(['dest', 'keep.txt']);
  });

  it('an absolute child name pointing into the sandbox is refused', async () => {
    const { s, dest } = sandbox('abs');
    const net = new FakeNet();
    const name = path.join(s, 'x');
    const evil = craftFile(net, name, Buffer.from('pwned\n'));
    const top = craftDir(net, 'share', [evil.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect((err as LcsyncError).message).toBe(`refusing unsafe name "${displayName(name)}" in directory "share": absolute path`);
    expect(listing(s)).toEqual(['dest', 'keep.txt']);
  });

  it('a directory listing a symlink to the sandbox and a directory of the same name is refused; nothing is written through the link', async () => {
    const { s, dest } = sandbox('dup');
    const net = new FakeNet();
    const link = craftLink(net, 'share/sub', s);
    const x = craftFile(net, 'share/sub/x', Buffer.from('pwned\n'));
    const sub = craftDir(net, 'share/sub', [x.key]);
    const top = craftDir(net, 'share', [link.key, sub.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect((err as LcsyncError).message).toBe('refusing directory "share": it lists "sub" twice');
    expect(readdirSync(s).sort()).toEqual(['dest', 'keep.txt']);
  });

  it('a served directory where the destination has a symlink to the sandbox replaces the link by a directory; nothing is written through it', async () => {
    const { s, dest } = sandbox('pre');
    symlinkSync(s, path.join(dest, 'sub'));
    const net = new FakeNet();
    const x = craftFile(net, 'share/sub/x', Buffer.from('pwned\n'));
    const sub = craftDir(net, 'share/sub', [x.key]);
    const top = craftDir(net, 'share', [sub.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect(err).toBeUndefined();
    expect(lstatSync(path.join(dest, 'sub')).isDirectory()).toBe(true);
    expect(readdirSync(path.join(dest, 'sub'))).toEqual(['x']);
    expect(readdirSync(s).sort()).toEqual(['dest', 'keep.txt']);
  });

  it('a served file where the destination has a symlink to a sandbox file replaces the link and leaves the target alone', async () => {
    const { s, dest } = sandbox('fl');
    symlinkSync(path.join(s, 'keep.txt'), path.join(dest, 'f'));
    const net = new FakeNet();
    const f = craftFile(net, 'share/f', Buffer.from('new content\n'));
    const top = craftDir(net, 'share', [f.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect(err).toBeUndefined();
    expect(lstatSync(path.join(dest, 'f')).isFile()).toBe(true);
    expect(readdirSync(s).sort()).toEqual(['dest', 'keep.txt']);
    expect(listing(s)).toEqual(['dest', 'dest/f', 'keep.txt']);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(path.join(s, 'keep.txt'), 'utf8')).toBe('sentinel');
    expect(readFileSync(path.join(dest, 'f'), 'utf8')).toBe('new content\n');
  });

  it('a file tree part 0 longer than 32 KiB is refused before its tree is used', async () => {
    const { s, dest } = sandbox('long');
    const net = new FakeNet();
    // 1025 chunks: base 2048, 4095 nodes = 131 KiB of tree, served as ONE object instead of 5 parts.
    const size = 1025 * 32768;
    const tree = MerkleTree.fromBuffer(Buffer.alloc(size));
    const obj = encodeNetTree({ type: 'file', size, meta: fileMeta, name: 'share/big', payload: tree.nodes });
    const key = fileEntryHash('share/big', tree.root, 0, fileMeta);
    net.serve(groupAddress(key), datagrams(obj, hash(obj), true));
    const top = craftDir(net, 'share', [key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect((err as LcsyncError).message).toBe(`tree part 0 of share/big has ${obj.length} bytes, expected 32768`);
    expect(listing(s)).toEqual(['dest', 'keep.txt']);
  });

  it('a header claiming a 1 TB file is refused before anything is allocated for it', async () => {
    const { s, dest } = sandbox('tb');
    const net = new FakeNet();
    const fake = encodeNetTree({ type: 'file', size: 0, meta: fileMeta, name: 'share/huge', payload: randomBytes(64) });
    fake.writeBigUInt64BE(2n ** 40n, 0);
    // Its entry hash is consistent; only the claimed size is out of bounds.
    const key = fileEntryHash('share/huge', fake.subarray(fake.length - 64, fake.length - 32), 0, fileMeta);
    net.serve(groupAddress(key), datagrams(fake, hash(fake), true));
    const top = craftDir(net, 'share', [key], true);
    const { err } = await syncOver(net, top.key, dest, 2);
    // objectMatches throws for it (so it is never accepted); the request then times out.
    expect(() => decodeNetTreeHead(fake)).toThrow(`malformed tree object: header claims a file of ${2 ** 40} bytes, above the limit of ${64 * 2 ** 30}`);
    expect((err as LcsyncError).code).toBe('TIMEOUT');
    expect(listing(s)).toEqual(['dest', 'keep.txt']);
  });

  it('two equal directories under different parents (one entry hash, one object) both sync', async () => {
    const { dest } = sandbox('eq');
    const net = new FakeNet();
    // The share's index answers the shared hash with one record's object: named share/a/x.
    const x = craftDir(net, 'share/a/x', []);
    const a = craftDir(net, 'share/a', [x.key]);
    const obj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name: 'share/b', payload: x.key });
    const b = { key: dirEntryHash({ basename: 'b', meta: dirMeta }, [x.key]) };
    net.serve(groupAddress(b.key), datagrams(obj, hash(obj), true));
    const top = craftDir(net, 'share', [a.key, b.key], true);
    const { err } = await syncOver(net, top.key, dest);
    expect(err).toBeUndefined();
    expect(listing(dest)).toEqual(['a', 'a/x', 'b', 'b/x']);
  });
});

describe('names that are not UTF-8 from the network', () => {
  const raw = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

  it('are created byte for byte: a file, a directory and a symlink target', async () => {
    const s = path.join(work, 'raw-names');
    mkdirSync(s);
    const net = new FakeNet();
    const fileName = nameFromBytes(raw('share/f', [0xff, 0xfe]));
    const dirName = nameFromBytes(raw('share/d', [0xe9]));
    const inner = craftFile(net, `${dirName}/in`, Buffer.from('inner\n'));
    const sub = craftDir(net, dirName, [inner.key]);
    const file = craftFile(net, fileName, Buffer.from('raw\n'));
    const linkObj = encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name: 'share/l', payload: raw('t', [0x80]) });
    const link = { key: symlinkEntryHash('share/l', linkMeta) };
    net.serve(groupAddress(link.key), datagrams(linkObj, hash(linkObj), true));
    const top = craftDir(net, 'share', [file.key, sub.key, link.key], true);
    const { err } = await syncOver(net, top.key, s);
    expect(err).toBeUndefined();
    expect(readdirSync(s, { encoding: 'buffer' }).map((n) => n.toString('hex')).sort()).toEqual([raw('f', [0xff, 0xfe]), raw('d', [0xe9]), raw('l')].map((n) => n.toString('hex')).sort());
    expect(readFileSync(Buffer.concat([Buffer.from(s + '/'), raw('f', [0xff, 0xfe])]), 'utf8')).toBe('raw\n');
    expect(readFileSync(Buffer.concat([Buffer.from(s + '/'), raw('d', [0xe9], '/in')]), 'utf8')).toBe('inner\n');
    expect(readlinkSync(path.join(s, 'l'), { encoding: 'buffer' }).equals(raw('t', [0x80]))).toBe(true);
  });

  it('a symlink target with a NUL byte is refused with exit 4 and nothing is made', async () => {
    const s = path.join(work, 'nul-target');
    mkdirSync(s);
    const net = new FakeNet();
    const linkObj = encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name: 'share/l', payload: raw('a', [0], 'b') });
    const key = symlinkEntryHash('share/l', linkMeta);
    net.serve(groupAddress(key), datagrams(linkObj, hash(linkObj), true));
    const top = craftDir(net, 'share', [key], true);
    const { err } = await syncOver(net, top.key, s);
    expect((err as LcsyncError).exitCode).toBe(4);
    expect((err as LcsyncError).message).toBe('refusing symlink "share/l": its target holds a NUL byte');
    expect(readdirSync(s)).toEqual([]);
  });
});
