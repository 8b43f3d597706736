/**
 * The C lcshare capture against our own index of the extracted share.tar (needs root: tar restores file owners
 * only for root, and the hashes cover them): on each captured group our index serves exactly the captured
 * object. The capture alone: test/capture.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ShareIndex } from '../src/core/index/mdex.js';
import { toHex } from '../src/core/model/hash.js';
import { parseIPv6, prefixOfGroup } from '../src/core/wire/address.js';
import { ATIME_END, ATIME_START, SHARE_HASH, decodeAll, type DecodedObject } from './capture.js';
import { describeUnless } from './skip.js';
import { shareTarSkip, vectorPath } from './vectors.js';

describeUnless(shareTarSkip, 'the capture against our index of share.tar (needs root)', () => {
  let dir: string;
  let index: ShareIndex;
  const objects = (): Map<string, DecodedObject> => decodeAll();

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-capture-'));
    execFileSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', dir]);
    index = await ShareIndex.build([path.join(dir, 'share')]);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('builds the index the C tool built', () => {
    expect(toHex(index.roots[0]!.hash)).toBe(SHARE_HASH);
  });

  it('serves, on each captured group, exactly the captured object', async () => {
    for (const o of objects().values()) {
      for (const group of o.groups) {
        const prefix = prefixOfGroup(parseIPv6(group));
        expect(prefix, group).toBeDefined();
        const obj = index.getByPrefix(prefix!);
        expect(obj, `index has an object for ${group}`).toBeDefined();
        expect(obj!.kind).toBe(o.kind);
        let served: Buffer;
        // The index is built without bundles (a C capture has none): every object is a chunk or has bytes.
        if (obj!.kind === 'bundle') throw new Error(`unexpected bundle on ${group}`);
        if (obj!.kind !== 'chunk') {
          served = obj!.bytes;
        } else {
          served = Buffer.alloc(obj!.length);
          const fh = await open(obj!.localPath, 'r');
          try {
            const { bytesRead } = await fh.read(served, 0, obj!.length, obj!.offset);
            expect(bytesRead).toBe(obj!.length);
          } finally {
            await fh.close();
          }
        }
        if (obj!.kind === 'tree') {
          // The atime in the header (bytes 24..39) is when each side extracted the
          // tarball; it is not hashed into any key. Everything else must match.
          expect(served.length).toBe(o.bytes.length);
          const mask = (b: Buffer) => Buffer.concat([b.subarray(0, ATIME_START), b.subarray(ATIME_END)]);
          expect(mask(served).equals(mask(o.bytes)), `tree on ${group}`).toBe(true);
        } else {
          expect(served.equals(o.bytes), `chunk on ${group}`).toBe(true);
        }
        // A chunk's key is its leaf hash, which is also its OID.
        if (obj!.kind === 'chunk') expect(toHex(obj!.hash)).toBe(o.oid);
      }
    }
  });
});
