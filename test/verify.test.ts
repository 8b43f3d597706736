/**
 * wire/verify.ts without root: every check the sync side makes of an object off the network,
 * and the top-directory rule, which the index (mdex) and the receiver must apply alike. The
 * hostile tests (test/hostile.test.ts) run the same checks under fire through a fake network.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LcsyncError } from '../src/core/base/errors.js';
import { nameFromBytes, nameToBytes } from '../src/core/base/names.js';
import { aliasHash, dirEntryHash, fileEntryHash, symlinkEntryHash } from '../src/core/model/entry.js';
import type { FileMeta } from '../src/core/model/meta.js';
import { MerkleTree } from '../src/core/model/tree.js';
import { hashPair } from '../src/core/model/hash.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { DEFAULT_LIMITS, decodeNetTreeHead, encodeNetTree, splitParts, TREE_PART_SIZE } from '../src/core/wire/nettree.js';
import {
  Joined,
  checkFirstPart,
  fileRootOf,
  isShareTop,
  objectMatches,
  partAgreesWith,
  rootHashOf,
  segmentProblem,
  shareDirHash,
  symlinkTarget,
  topName,
  treePartLength,
  verifiedTree,
} from '../src/core/wire/verify.js';

const fileMeta: FileMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1_700_000_000n, mtimeNsec: 0n, atimeSec: 1_700_000_000n, atimeNsec: 0n };
const dirMeta: FileMeta = { ...fileMeta, mode: 0o40755 };
const linkMeta: FileMeta = { ...fileMeta, mode: 0o120777 };

function integrity(fn: () => unknown): LcsyncError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LcsyncError);
    expect((e as LcsyncError).code).toBe('INTEGRITY');
    return e as LcsyncError;
  }
  throw new Error('expected an INTEGRITY error');
}

describe('the top-directory rule', () => {
  const children = [randomBytes(32), randomBytes(32)];

  it("a share's top directory is hashed without its name and stat, any other with its basename and stat", () => {
    expect(shareDirHash('music', dirMeta, children, true).equals(dirEntryHash(undefined, children))).toBe(true);
    expect(shareDirHash('music/a/b', dirMeta, children, false).equals(dirEntryHash({ basename: 'b', meta: dirMeta }, children))).toBe(true);
    expect(shareDirHash('music/a/b', dirMeta, children, false).equals(shareDirHash('music/a/b', dirMeta, children, true))).toBe(false);
    expect(isShareTop('music')).toBe(true);
    expect(isShareTop('music/a')).toBe(false);
  });

  it('rootHashOf a directory object applies it by the share path', () => {
    for (const name of ['music', 'music/a']) {
      const obj = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name, payload: Buffer.concat(children) });
      const want = shareDirHash(name, dirMeta, children, !name.includes('/'));
      expect(rootHashOf(decodeNetTreeHead(obj), obj, undefined).equals(want)).toBe(true);
    }
  });

  describe('the index hashes directories by the same rule', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'lcsync-verify-'));
      await mkdir(path.join(dir, 'share', 'sub', 'deeper'), { recursive: true });
      await writeFile(path.join(dir, 'share', 'a.txt'), 'a\n');
      await writeFile(path.join(dir, 'share', 'sub', 'deeper', 'b.bin'), randomBytes(70_000));
      await symlink('a.txt', path.join(dir, 'share', 'link'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('every directory object the index serves is named by rootHashOf of itself and matches its own hash', async () => {
      const index = new ShareIndex();
      const root = await index.add(path.join(dir, 'share'));
      const dirs = ['share', 'share/sub', 'share/sub/deeper'];
      for (const sharePath of dirs) {
        const o = index.get(aliasHash(sharePath));
        expect(o?.kind).toBe('tree');
        if (o?.kind !== 'tree') continue;
        const head = decodeNetTreeHead(o.bytes);
        expect(head.name).toBe(sharePath);
        expect(rootHashOf(head, o.bytes, undefined).equals(o.hash)).toBe(true);
        expect(objectMatches(o.bytes, o.hash, undefined, DEFAULT_LIMITS)).toBe(true);
        expect(objectMatches(o.bytes, aliasHash(sharePath), sharePath, DEFAULT_LIMITS)).toBe(true);
      }
      expect(index.get(aliasHash('share'))!.hash.equals(root.hash)).toBe(true);
    });

    it('indexed below its share (a sync by a path inside a share), a directory at depth 0 is still hashed as a top', async () => {
      const index = new ShareIndex();
      const root = await index.add(path.join(dir, 'share', 'sub'), { sharePath: 'share/sub' });
      const o = index.get(root.hash);
      expect(o?.kind).toBe('tree');
      if (o?.kind !== 'tree') return;
      const head = decodeNetTreeHead(o.bytes);
      const payload = o.bytes.subarray(head.payloadOffset);
      const hashes = Array.from({ length: payload.length / 32 }, (_, i) => payload.subarray(i * 32, i * 32 + 32));
      expect(root.hash.equals(shareDirHash('share/sub', dirMeta, hashes, true))).toBe(true);
    });
  });
});

describe('objectMatches', () => {
  it('names a file, a symlink and a directory by their entry hashes, and refuses another key or name', () => {
    const data = randomBytes(50_000);
    const tree = MerkleTree.fromBuffer(data);
    const file = encodeNetTree({ type: 'file', size: data.length, meta: fileMeta, name: 'share/f', payload: tree.nodes });
    const key = fileEntryHash('share/f', tree.root, 0, fileMeta);
    expect(objectMatches(file, key, undefined, DEFAULT_LIMITS)).toBe(true);
    expect(objectMatches(file, fileEntryHash('share/g', tree.root, 0, fileMeta), undefined, DEFAULT_LIMITS)).toBe(false);
    expect(objectMatches(file, aliasHash('share/f'), 'share/f', DEFAULT_LIMITS)).toBe(true);
    expect(objectMatches(file, aliasHash('share/f'), 'share/g', DEFAULT_LIMITS)).toBe(false);

    const empty = encodeNetTree({ type: 'file', size: 0, meta: fileMeta, name: 'share/e', payload: Buffer.alloc(0) });
    expect(objectMatches(empty, fileEntryHash('share/e', undefined, 0, fileMeta), undefined, DEFAULT_LIMITS)).toBe(true);

    const link = encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name: 'share/l', payload: Buffer.from('f') });
    expect(objectMatches(link, symlinkEntryHash('share/l', linkMeta), undefined, DEFAULT_LIMITS)).toBe(true);
    expect(objectMatches(link, symlinkEntryHash('share/m', linkMeta), undefined, DEFAULT_LIMITS)).toBe(false);

    const children = [key];
    const dir = encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name: 'share/d', payload: Buffer.concat(children) });
    // Either form names a directory: as a child (with its name) or as the root of a share (without).
    expect(objectMatches(dir, dirEntryHash({ basename: 'd', meta: dirMeta }, children), undefined, DEFAULT_LIMITS)).toBe(true);
    expect(objectMatches(dir, dirEntryHash(undefined, children), undefined, DEFAULT_LIMITS)).toBe(true);
    expect(objectMatches(dir, dirEntryHash({ basename: 'e', meta: dirMeta }, children), undefined, DEFAULT_LIMITS)).toBe(false);
  });
});

describe('file trees in parts', () => {
  // 1100 chunks: a tree of 4095 nodes (leaves padded to 2048), in five parts.
  const size = 1100 * 32768 + 5;
  const tree = MerkleTree.fromBuffer(Buffer.alloc(size, 7));
  const obj = encodeNetTree({ type: 'file', size, meta: fileMeta, name: 'share/big', payload: tree.nodes });
  const head = decodeNetTreeHead(obj);
  const parts = splitParts(obj);

  it('knows the length of every part and the root the first one carries', () => {
    expect(parts.length).toBe(5);
    parts.forEach((p, z) => expect(treePartLength(head, z)).toBe(p.length));
    expect(treePartLength(head, 0)).toBe(TREE_PART_SIZE);
    expect(fileRootOf(head, parts[0]!).equals(tree.root)).toBe(true);
    checkFirstPart(head, parts[0]!);
    expect(integrity(() => checkFirstPart(head, parts[0]!.subarray(0, 1000))).message).toMatch(/tree part 0 of share\/big has 1000 bytes/);
  });

  it('accepts the genuine parts in turn, refuses a part with a changed node', () => {
    const known = new Joined([parts[0]!]);
    for (const p of parts.slice(1)) {
      const bad = Buffer.from(p);
      bad[bad.length >> 1] ^= 1;
      expect(partAgreesWith(known, bad, head.payloadOffset)).toBe(false);
      expect(partAgreesWith(known, p, head.payloadOffset)).toBe(true);
      known.push(p);
    }
    expect(Buffer.concat(known.buffers()).equals(obj)).toBe(true);
  });

  it('checks a part as the pair-at-a-time rule does: every cut, every node changed, known bytes in pieces', () => {
    // The rule written out pair by pair (what partAgreesWith did before it hashed runs of pairs at once).
    const byPairs = (prefix: Buffer, part: Buffer, off: number): boolean => {
      const all = Buffer.concat([prefix, part]);
      const firstNew = Math.floor(Math.max(0, prefix.length - off) / 32);
      const complete = Math.floor(Math.max(0, all.length - off) / 32);
      const node = (i: number) => all.subarray(off + 32 * i, off + 32 * i + 32);
      let checked = 0;
      for (let c = firstNew % 2 === 1 ? firstNew : Math.max(1, firstNew - 1); c + 1 < complete; c += 2) {
        if (!hashPair(node(c), node(c + 1)).equals(node((c - 1) / 2))) return false;
        checked++;
      }
      return checked > 0 || complete - firstNew < 2;
    };
    // A small tree (63 nodes) at a payload offset that is not a multiple of 32, cut everywhere.
    const small = MerkleTree.fromBuffer(randomBytes(20 * 32768 + 77));
    const off = 45;
    const whole = Buffer.concat([randomBytes(off), small.nodes]);
    let agreed = 0;
    let refused = 0;
    for (let cut = 0; cut < whole.length; cut += 7) {
      for (const len of [1, 31, 32, 64, 100, 333, whole.length - cut]) {
        const end = Math.min(whole.length, cut + len);
        if (end <= cut) continue;
        const prefix = whole.subarray(0, cut);
        const part = Buffer.from(whole.subarray(cut, end));
        // Known bytes in three pieces, so that runs of children and of parents span buffers.
        const pieces = new Joined([prefix.subarray(0, cut / 3), prefix.subarray(cut / 3, cut / 2), prefix.subarray(cut / 2)].map((b) => Buffer.from(b)));
        const want = byPairs(prefix, part, off);
        expect(partAgreesWith(pieces, part, off)).toBe(want);
        expect(pieces.length).toBe(cut);
        if (want) agreed++;
        const bad = Buffer.from(part);
        bad[(cut * 13) % bad.length] ^= 0x40;
        const wantBad = byPairs(prefix, bad, off);
        expect(partAgreesWith(pieces, bad, off)).toBe(wantBad);
        if (!wantBad) refused++;
      }
    }
    // Both answers came up often: the comparison is not of two functions that always agree on one.
    expect(agreed).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });

  it('verifiedTree gives the tree of a whole object and refuses a short one or another root', () => {
    expect(verifiedTree(head, obj, tree.root).root.equals(tree.root)).toBe(true);
    expect(integrity(() => verifiedTree(head, obj.subarray(0, obj.length - 32), tree.root)).message).toMatch(/should be \d+ bytes/);
    expect(integrity(() => verifiedTree(head, obj, Buffer.alloc(32))).message).toMatch(/does not verify/);
  });
});

describe('names and targets from the network', () => {
  it('topName is the last segment of the share path, refused when it cannot be created', () => {
    const head = (name: string) => decodeNetTreeHead(encodeNetTree({ type: 'dir', size: 0, meta: dirMeta, name, payload: Buffer.alloc(0) }));
    expect(topName(head('share'))).toBe('share');
    expect(topName(head('share/sub'))).toBe('sub');
    expect(integrity(() => topName(head('share/..'))).message).toMatch(/refusing unsafe name/);
    expect(integrity(() => topName(head('n'.repeat(256)))).message).toMatch(/longer than 255/);
    expect(segmentProblem('.')).toBeDefined();
    expect(segmentProblem('a\0b')).toBe('NUL byte');
    expect(segmentProblem('..a')).toBeUndefined();
  });

  it('segmentProblem judges a segment by its bytes, plain ASCII (its fast path) or not', () => {
    // The byte rules, on the exact bytes of the name (names.ts).
    const byBytes = (seg: string) => {
      const b = nameToBytes(seg);
      if (b.length === 0) return 'empty';
      if (b.equals(Buffer.from('.')) || b.equals(Buffer.from('..'))) return 'dots';
      if (b.includes(0)) return 'NUL byte';
      if (b.includes(0x2f)) return 'slash';
      if (b.length > 255) return 'long';
      return undefined;
    };
    const kind = (p: string | undefined) => (p === undefined ? undefined : /empty/.test(p) ? 'empty' : /inside a segment/.test(p) ? 'slash' : /segment$/.test(p) ? 'dots' : /NUL/.test(p) ? 'NUL byte' : /longer/.test(p) ? 'long' : p);
    const raw = nameFromBytes(Buffer.from([0x61, 0xff]));
    const cases = ['', '.', '..', '...', 'a\0', 'a/b', 'f000001.dat', 'x'.repeat(255), 'x'.repeat(256), 'é'.repeat(127), 'é'.repeat(128), 'é.', raw, `${raw}/`, '\u{1F600}'.repeat(63), '\u{1F600}'.repeat(64)];
    for (const seg of cases) expect([seg.length, kind(segmentProblem(seg))]).toEqual([seg.length, byBytes(seg)]);
  });

  it('symlinkTarget keeps the bytes of the target and refuses a NUL', () => {
    const link = (target: Buffer) => {
      const obj = encodeNetTree({ type: 'symlink', size: 0, meta: linkMeta, name: 'share/l', payload: target });
      return symlinkTarget(decodeNetTreeHead(obj), obj);
    };
    expect(link(Buffer.from('../a b'))).toBe('../a b');
    expect(integrity(() => link(Buffer.from('a\0b'))).message).toMatch(/target holds a NUL byte/);
  });
});
