/**
 * Gone notices without a network: the packet form (packet.ts) and what a receiver does with one
 * (receiver.ts). A request that stalls joins the object's notice group; a notice there for an
 * object it waits for ends every request with SOURCE_CHANGED. Notices nobody asked for, for other
 * keys, or unsealed from an encrypted share change nothing.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { groupAddress } from '../src/core/wire/address.js';
import { hash, type Hash } from '../src/core/model/hash.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { objectCipher } from '../src/core/wire/crypto.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import {
  DATAGRAM_LEN,
  NOTICE_LEN,
  NOTICE_SEALED_LEN,
  decodeDatagram,
  decodeGoneNotice,
  encodeDatagram,
  encodeGoneNotice,
  goneNoticeKey,
} from '../src/core/wire/packet.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { FakeNet } from './fakenet.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dirEntryHash, fileEntryHash } from '../src/core/model/entry.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { encodeNetTree } from '../src/core/wire/nettree.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { SyncSession } from '../src/core/sync/sync.js';

const fast = { stallMs: 40, firstSymbolMs: 60, idleTimeoutMs: 5000 };

function chunkDatagrams(chunk: Buffer, count: number): Buffer[] {
  const enc = new ObjectEncoder(chunk);
  const out: Buffer[] = [];
  for (let esi = 0; esi < Math.min(count, enc.K); esi++) out.push(encodeDatagram({ oid: hash(chunk), esi, symbol: enc.sourceSymbol(esi) }));
  enc.free();
  return out;
}

describe('gone notice packets', () => {
  it('round-trip, and neither decoder takes the other one\'s packets', () => {
    const key = randomBytes(32);
    const n = encodeGoneNotice(key);
    expect(n.length).toBe(NOTICE_LEN);
    expect(decodeGoneNotice(n)).toEqual({ body: key, sealed: false });
    expect(decodeDatagram(n)).toBeUndefined();
    const sealed = encodeGoneNotice(objectCipher(randomBytes(32)).seal(key));
    expect(sealed.length).toBe(NOTICE_SEALED_LEN);
    expect(decodeGoneNotice(sealed)?.sealed).toBe(true);
    const d = encodeDatagram({ oid: key, esi: 0, symbol: Buffer.alloc(1024) });
    expect(d.length).toBe(DATAGRAM_LEN);
    expect(decodeGoneNotice(d)).toBeUndefined();
  });

  it('reject other lengths, a wrong magic and bodies of the wrong size', () => {
    const n = encodeGoneNotice(randomBytes(32));
    expect(decodeGoneNotice(n.subarray(0, NOTICE_LEN - 1))).toBeUndefined();
    expect(decodeGoneNotice(Buffer.concat([n, Buffer.alloc(1)]))).toBeUndefined();
    const bad = Buffer.from(n);
    bad[0] ^= 1;
    expect(decodeGoneNotice(bad)).toBeUndefined();
    expect(() => encodeGoneNotice(randomBytes(31))).toThrow(RangeError);
    expect(goneNoticeKey(n.subarray(8)).equals(n.subarray(8))).toBe(false);
  });
});

describe('a receiver hearing that an object is gone', () => {
  it('joins the notice group of a stalled chunk, fails every request with SOURCE_CHANGED on the notice, and every later one at once', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, fast);
    const gone = randomBytes(32768);
    const other = randomBytes(32768);
    // The other chunk is served in part only: it stays pending, like a chunk still arriving.
    net.serve(groupAddress(hash(other)), chunkDatagrams(other, 3));
    const noticeGroup = groupAddress(goneNoticeKey(hash(gone)));
    net.serve(noticeGroup, [encodeGoneNotice(hash(gone))]);
    const a = rx.fetchChunk(hash(gone), gone.length);
    const b = rx.fetchChunk(hash(other), other.length);
    const [ra, rb] = await Promise.allSettled([a, b]);
    expect(ra.status).toBe('rejected');
    expect(rb.status).toBe('rejected');
    const err = (ra as PromiseRejectedResult).reason as LcsyncError;
    expect(err).toBeInstanceOf(LcsyncError);
    expect(err.code).toBe('SOURCE_CHANGED');
    expect(err.exitCode).toBe(8);
    expect(err.message).toBe('source changed during sync; run again');
    expect((rb as PromiseRejectedResult).reason).toBe(err);
    // Asked only after the request stalled, and left with it.
    expect(net.joinLog.indexOf(noticeGroup)).toBeGreaterThan(net.joinLog.indexOf(groupAddress(hash(gone))));
    expect(net.joined.has(noticeGroup)).toBe(false);
    expect(rx.stats.notices).toBe(1);
    await expect(rx.fetchTree(randomBytes(32), () => true)).rejects.toBe(err);
    rx.close();
  });

  it('ignores a notice it did not ask for, one for another key, and an unsealed one when it has a key', async () => {
    const key = randomBytes(32);
    const cipher = objectCipher(randomBytes(32));
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { ...fast, cipher });
    const chunk = randomBytes(1000);
    const p = rx.fetchChunk(hash(chunk), chunk.length);
    // Before the stall: not asked yet.
    net.emit(encodeGoneNotice(hash(chunk)));
    net.emit(encodeGoneNotice(cipher.seal(hash(chunk))));
    // After the stall: an unsealed one, one sealed with another key, one about another object.
    await new Promise((r) => setTimeout(r, 200));
    expect(net.joined.has(groupAddress(goneNoticeKey(hash(chunk))))).toBe(true);
    net.emit(encodeGoneNotice(hash(chunk)));
    net.emit(encodeGoneNotice(objectCipher(key).seal(hash(chunk))));
    net.emit(encodeGoneNotice(cipher.seal(randomBytes(32))));
    expect(rx.stats.notices).toBe(0);
    expect(rx.gone).toBeUndefined();
    // The genuine one ends it.
    net.emit(encodeGoneNotice(cipher.seal(hash(chunk))));
    await expect(p).rejects.toMatchObject({ code: 'SOURCE_CHANGED' });
    expect(rx.stats.notices).toBe(1);
    rx.close();
  });

  it('answers a tree request (a tree part of an old root) the same way', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, fast);
    const key: Hash = randomBytes(32);
    net.serve(groupAddress(goneNoticeKey(key)), [encodeGoneNotice(key)]);
    await expect(rx.fetchTree(key, () => true)).rejects.toMatchObject({ code: 'SOURCE_CHANGED' });
    rx.close();
  });
});

const meta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };
const dirMeta: FileMeta = { ...meta, mode: 0o40755 };

function treeDatagrams(obj: Buffer): Buffer[] {
  const enc = new ObjectEncoder(obj);
  const out: Buffer[] = [];
  for (let esi = 0; esi < enc.K; esi++) out.push(encodeDatagram({ oid: hash(obj), transferLength: obj.length, esi, symbol: enc.sourceSymbol(esi) }));
  enc.free();
  return out;
}

/** Serve file `name`: its tree, and of chunk i the first `symbols(i)` source symbols (Infinity: all). */
function serveFile(net: FakeNet, name: string, data: Buffer, symbols: (i: number) => number): { key: Hash; tree: MerkleTree } {
  const tree = MerkleTree.fromBuffer(data);
  const obj = encodeNetTree({ type: 'file', size: data.length, meta, name, payload: tree.nodes });
  const key = fileEntryHash(name, tree.root, 0, meta);
  net.serve(groupAddress(key), treeDatagrams(obj));
  for (let i = 0; i < tree.chunks; i++) {
    const chunk = data.subarray(i * 32768, Math.min(data.length, (i + 1) * 32768));
    net.serve(groupAddress(tree.leaf(i)), chunkDatagrams(chunk, symbols(i)));
  }
  return { key, tree };
}

describe('a directory sync whose source changes', () => {
  // The stalled chunk asks on its notice group after the receiver's first-symbol wait (3 s).
  it('ends with SOURCE_CHANGED once every file has settled: finished files are whole, files in progress leave no temporary copy', { timeout: 20_000 }, async () => {
    const dest = mkdtempSync(path.join(tmpdir(), 'lcsync-gone-'));
    try {
      const net = new FakeNet();
      const a = randomBytes(70_000);
      const b = randomBytes(70_000);
      const c = randomBytes(70_000);
      const fa = serveFile(net, 'share/a', a, () => Infinity);
      // b's second chunk is gone (the share re-indexed): it says so on the notice group.
      const fb = serveFile(net, 'share/b', b, (i) => (i === 1 ? 0 : Infinity));
      net.serve(groupAddress(goneNoticeKey(fb.tree.leaf(1))), [encodeGoneNotice(fb.tree.leaf(1))]);
      // c's second chunk is still arriving (a few symbols only) when b hears the notice.
      const fc = serveFile(net, 'share/c', c, (i) => (i === 1 ? 3 : Infinity));
      const children = [fa.key, fb.key, fc.key];
      const dirObj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name: 'share', payload: Buffer.concat(children) });
      const top = dirEntryHash(undefined, children);
      net.serve(groupAddress(top), treeDatagrams(dirObj));
      const session = await SyncSession.open({
    channel: net,
        ifnames: ['fake0'],
        flags: { recursive: true, perms: false, owner: false, group: false, times: false },
        stallMs: 40,
        timeoutSec: 10,
      });
      let err: unknown;
      try {
        const entry = await session.fetchEntry(top);
        await session.syncEntry(entry, dest, new Set());
      } catch (e) {
        err = e;
      }
      // Checked before the session is closed: nothing may still be writing by now.
      const left = readdirSync(dest);
      await session.close();
      expect(err).toMatchObject({ code: 'SOURCE_CHANGED', message: 'source changed during sync; run again' });
      expect(session.sourceChanged).toBe(err);
      expect(left.filter((n) => n.includes('.lcsync-'))).toEqual([]);
      expect(left.filter((n) => n !== 'a')).toEqual([]);
      if (left.includes('a')) expect(readFileSync(path.join(dest, 'a')).equals(a)).toBe(true);
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });
});
