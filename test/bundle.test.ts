/**
 * Bundles (wire/bundle.ts, index/bundles.ts, sync/bundle.ts), without a lab: the encoder and
 * decoder (bounds, truncation, garbage), and whole syncs between a real Share and a real client
 * over an in-memory link (test/memlink.ts): with bundles, without, with a bundle forged by a
 * spoofer, and with a file changed on the share after it was indexed. The same on a real wire:
 * test/bundle.root.test.ts.
 */
import { describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LcsyncError } from '../src/core/base/errors.js';
import { hash, toHex } from '../src/core/model/hash.js';
import { aliasHash } from '../src/core/model/entry.js';
import { groupAddress } from '../src/core/wire/address.js';
import { encodeDatagram, decodeDatagram } from '../src/core/wire/packet.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import {
  BUNDLE_HEADER,
  MAX_BUNDLE_ENTRY_DATA,
  MAX_BUNDLE_ENTRY_OBJECT,
  bundleKey,
  decodeBundle,
  decodeBundleHead,
  encodeBundle,
  type BundlePart,
} from '../src/core/wire/bundle.js';
import { ShareIndex } from '../src/core/index/mdex.js';
import { Share } from '../src/core/share/share.js';
import { syncRemote, type SyncSummary } from '../src/core/sync/sync.js';
import { BUNDLE_FETCHES, BundleFetcher, FETCH_BYTES, HOLD_BYTES, MIN_BUNDLE_FETCHES, verifyBundleEntry } from '../src/core/sync/bundle.js';
import type { FetchedEntry } from '../src/core/sync/context.js';
import type { ObjectReceiver } from '../src/core/sync/receiver.js';
import { SmallFileWriter } from '../src/core/sync/smallfiles.js';
import { DEFAULT_LIMITS, decodeNetTreeHead, dirChildren } from '../src/core/wire/nettree.js';
import { MEM_IF, MemoryLink } from './memlink.js';
import { treeListing } from './e2e.js';
import { rng } from './rng.js';
import { useTempDir } from './tmpdir.js';

const tmp = useTempDir('lcsync-bundle-');
const flags = { recursive: true, perms: true, owner: false, group: false, times: true };

function sample(): BundlePart {
  return {
    key: hash(Buffer.from('dir')),
    part: 1,
    parts: 3,
    entries: [
      { hash: hash(Buffer.from('a')), obj: Buffer.from('object a'), data: Buffer.from('bytes of a') },
      { hash: hash(Buffer.from('b')), obj: Buffer.from('object b') },
    ],
  };
}

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

describe('bundle encoder and decoder', () => {
  it('round-trips, and the layout is the documented one', () => {
    const b = sample();
    const buf = encodeBundle(b);
    expect(buf.subarray(0, 6).toString('ascii')).toBe('LCBDL1');
    expect([buf[6], buf[7]]).toEqual([1, 0]);
    expect(buf.subarray(8, 40).equals(b.key)).toBe(true);
    expect([buf.readUInt16BE(40), buf.readUInt16BE(42), buf.readUInt32BE(44)]).toEqual([1, 3, 2]);
    expect(buf.readUInt32BE(BUNDLE_HEADER + 32)).toBe(8);
    expect(buf.readUInt32BE(BUNDLE_HEADER + 36)).toBe(10);
    expect(buf.length).toBe(BUNDLE_HEADER + 2 * 40 + 8 + 10 + 8);
    const d = decodeBundle(buf);
    expect(d.key.equals(b.key)).toBe(true);
    expect([d.part, d.parts]).toEqual([1, 3]);
    expect(d.entries.map((e) => [toHex(e.hash), e.obj.toString(), e.data?.toString()])).toEqual(
      b.entries.map((e) => [toHex(e.hash), e.obj.toString(), e.data?.toString()]),
    );
  });

  it('refuses every truncation and any byte after the last entry', () => {
    const buf = encodeBundle(sample());
    for (let n = 0; n < buf.length; n++) integrity(() => decodeBundle(buf.subarray(0, n)));
    integrity(() => decodeBundle(Buffer.concat([buf, Buffer.alloc(1)])));
  });

  it('refuses a wrong magic, version, flags, part, entry count or entry lengths', () => {
    const good = encodeBundle(sample());
    const bad = (at: number, write: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      write(b);
      return integrity(() => decodeBundle(b)).message;
    };
    expect(bad(0, (b) => (b[0] = 0x4d))).toMatch(/magic/);
    expect(bad(6, (b) => (b[6] = 2))).toMatch(/version/);
    expect(bad(7, (b) => (b[7] = 1))).toMatch(/flags/);
    expect(bad(40, (b) => b.writeUInt16BE(3, 40))).toMatch(/part 3 of 3/);
    expect(bad(42, (b) => b.writeUInt16BE(0, 42))).toMatch(/part/);
    expect(bad(44, (b) => b.writeUInt32BE(0xffffffff, 44))).toMatch(/entries cannot fit/);
    expect(bad(44, (b) => b.writeUInt32BE(3, 44))).toMatch(/truncated|cannot fit/);
    expect(bad(44, (b) => b.writeUInt32BE(1, 44))).toMatch(/after the last entry/);
    expect(bad(0, (b) => b.writeUInt32BE(0, BUNDLE_HEADER + 32))).toMatch(/object of 0 bytes/);
    expect(bad(0, (b) => b.writeUInt32BE(MAX_BUNDLE_ENTRY_OBJECT + 1, BUNDLE_HEADER + 32))).toMatch(/object of/);
    expect(bad(0, (b) => b.writeUInt32BE(MAX_BUNDLE_ENTRY_DATA + 1, BUNDLE_HEADER + 36))).toMatch(/data of/);
    expect(bad(0, (b) => b.writeUInt32BE(0x7fffffff, BUNDLE_HEADER + 36))).toMatch(/data of/);
    expect(bad(0, (b) => b.writeUInt32BE(11, BUNDLE_HEADER + 36))).toMatch(/truncated|after/);
  });

  it('garbage never decodes into something it does not contain, and never throws anything but INTEGRITY', () => {
    const next = rng(13);
    for (let i = 0; i < 3000; i++) {
      const n = Math.floor(next() * 300);
      const b = Buffer.alloc(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(next() * 256);
      // Half of them with a valid head, so the entry checks get garbage too.
      if (n >= BUNDLE_HEADER && i % 2 === 0) {
        Buffer.from('LCBDL1\x01\x00', 'latin1').copy(b, 0);
        b.writeUInt16BE(0, 40);
        b.writeUInt16BE(1, 42);
        b.writeUInt32BE(Math.floor(next() * 4), 44);
      }
      try {
        const d = decodeBundle(b);
        const total = d.entries.reduce((s, e) => s + 40 + e.obj.length + (e.data?.length ?? 0), BUNDLE_HEADER);
        expect(total).toBe(n);
      } catch (e) {
        expect((e as LcsyncError).code).toBe('INTEGRITY');
      }
    }
  });

  it('the encoder refuses what the decoder would refuse', () => {
    const b = sample();
    expect(() => encodeBundle({ ...b, part: 3 })).toThrow(LcsyncError);
    expect(() => encodeBundle({ ...b, entries: [{ hash: b.entries[0]!.hash, obj: Buffer.alloc(0) }] })).toThrow(LcsyncError);
    expect(() => encodeBundle({ ...b, entries: [{ hash: b.entries[0]!.hash, obj: Buffer.alloc(1), data: Buffer.alloc(MAX_BUNDLE_ENTRY_DATA + 1) }] })).toThrow(LcsyncError);
  });

  it('the group of part z is BLAKE3("lcsync-bundle" || key || z as u16 BE), and differs per part and key', () => {
    const key = hash(Buffer.from('k'));
    const z = Buffer.alloc(2);
    z.writeUInt16BE(2);
    expect(bundleKey(key, 2).equals(hash(Buffer.concat([Buffer.from('lcsync-bundle'), key, z])))).toBe(true);
    expect(bundleKey(key, 0).equals(bundleKey(key, 1))).toBe(false);
    expect(decodeBundleHead(encodeBundle(sample())).count).toBe(2);
  });
});

/** A tree of small files (and a big one, an empty one, a link, a subdirectory, an empty directory). */
async function makeTree(name: string, files = 40): Promise<string> {
  const root = path.join(await tmp.fresh(name), 'tree');
  const next = rng(7);
  for (const d of ['', 'a', 'a/deep', 'b', 'empty']) mkdirSync(path.join(root, d), { recursive: true });
  for (let i = 0; i < files; i++) {
    const dir = ['', 'a', 'a/deep', 'b'][i % 4]!;
    writeFileSync(path.join(root, dir, `f${i}.txt`), randomBytes(200 + Math.floor(next() * 8000)));
  }
  writeFileSync(path.join(root, 'a', 'big.bin'), randomBytes(3 * 32768 + 5));
  writeFileSync(path.join(root, 'b', 'exactly-one-chunk'), randomBytes(32768));
  writeFileSync(path.join(root, 'b', 'empty-file'), '');
  symlinkSync('a/f1.txt', path.join(root, 'link'));
  return root;
}

interface Run {
  summary?: SyncSummary;
  error?: unknown;
  link: MemoryLink;
  share: Share;
}

/** Serve `root` (with or without bundles) and sync it by name into `dest` over a fresh link. */
async function run(root: string, dest: string, opts: { bundles: boolean; client?: boolean; tamper?: MemoryLink['tamper']; timeoutSec?: number; before?: (link: MemoryLink, index: ShareIndex) => void }): Promise<Run> {
  const index = await ShareIndex.build([root], { bundles: opts.bundles });
  const link = new MemoryLink();
  link.tamper = opts.tamper;
  opts.before?.(link, index);
  const share = await Share.start(index, { ifnames: [MEM_IF], listeners: link.listeners, openSink: async () => link.sink, rateBps: 0 });
  try {
    const summary = await syncRemote('tree/', dest, { ifnames: [MEM_IF], flags, channel: link.source, timeoutSec: opts.timeoutSec ?? 20, bundles: opts.client });
    return { summary, link, share };
  } catch (error) {
    return { error, link, share };
  } finally {
    await share.stop();
  }
}

describe('syncs over an in-memory link', () => {
  it('with bundles: identical, every child taken from its directory\'s bundle, a fraction of the joins', async () => {
    const root = await makeTree('with', 60);
    const withB = await run(root, path.join(path.dirname(root), 'out-with'), { bundles: true });
    expect(withB.error).toBeUndefined();
    const without = await run(root, path.join(path.dirname(root), 'out-without'), { bundles: false });
    expect(without.error).toBeUndefined();
    for (const out of ['out-with', 'out-without']) expect(treeListing(path.join(path.dirname(root), out), { times: true })).toEqual(treeListing(root, { times: true }));
    const a = withB.summary!;
    const b = without.summary!;
    // 60 small files, big, one-chunk, empty, link and 4 directories (a, a/deep, b, empty) = 68 children.
    expect(a.bundleEntries).toBe(68);
    // Every non-empty file of up to 32 KiB came with its bytes (the 3-chunk one did not).
    expect(a.bundleFiles).toBe(61);
    expect(a.files.created).toBe(b.files.created);
    expect(b.bundleEntries).toBe(0);
    // Without: about one tree and one chunk join per file; with: the bundles of 4 non-empty
    // directories (and the root's), the root, and the big file's 4 chunks.
    expect(b.joins).toBeGreaterThan(130);
    expect(a.joins).toBeLessThan(15);
    console.log(`in memory: joins ${b.joins} -> ${a.joins}, tree objects ${b.treeObjectsReceived} -> ${a.treeObjectsReceived}, datagrams sent ${without.link.sent} -> ${withB.link.sent}`);
  }, 60_000);

  it('a new file of one chunk is written from its bytes where they arrived (a view of the bundle part), not from a copy of its own', async () => {
    const root = await makeTree('views', 24);
    const written: Uint8Array[] = [];
    const write = SmallFileWriter.prototype.write;
    const spy = vi.spyOn(SmallFileWriter.prototype, 'write').mockImplementation(function (this: SmallFileWriter, dest, spec) {
      written.push(spec.data);
      return write.call(this, dest, spec);
    });
    let withB: Run;
    try {
      withB = await run(root, path.join(path.dirname(root), 'out'), { bundles: true });
    } finally {
      spy.mockRestore();
    }
    expect(withB.error).toBeUndefined();
    expect(treeListing(path.join(path.dirname(root), 'out'), { times: true })).toEqual(treeListing(root, { times: true }));
    // 24 small files and the one of exactly one chunk; the 3-chunk file is gathered into a buffer of its own.
    const oneChunk = written.filter((d) => d.length > 0 && d.length <= 32768);
    expect(oneChunk.length).toBe(25);
    for (const d of oneChunk) expect(d.buffer.byteLength).toBeGreaterThan(d.length);
    // The counters are those of a file fetched alone: one chunk each (and the big file's 4), every byte written.
    expect(withB.summary!.chunksFetched).toBe(25 + 4);
    expect(withB.summary!.chunksReused).toBe(0);
    expect(withB.summary!.bytesWritten).toBe(oneChunk.reduce((n, d) => n + d.length, 0) + 3 * 32768 + 5);
  }, 60_000);

  it('asks for the bundles of missing subdirectories in the directory\'s order, all at once, before anything else (the same order on every receiver)', async () => {
    const root = path.join(await tmp.fresh('order'), 'tree');
    const names = Array.from({ length: 12 }, (_, i) => `s${String(i).padStart(2, '0')}`);
    for (const n of names) {
      mkdirSync(path.join(root, n), { recursive: true });
      for (let f = 0; f < 5; f++) writeFileSync(path.join(root, n, `f${f}`), randomBytes(300 + 50 * f));
    }
    // Files beside them whose chunks are joined (too big for a bundle's bytes).
    for (let f = 0; f < 6; f++) writeFileSync(path.join(root, `big${f}`), randomBytes(2 * 32768 + f));
    const r = await run(root, path.join(path.dirname(root), 'out'), { bundles: true });
    expect(r.error).toBeUndefined();
    expect(treeListing(path.join(path.dirname(root), 'out'))).toEqual(treeListing(root));
    const index = await ShareIndex.build([root]);
    const topObj = index.get(index.records.find((rec) => rec.sharePath === 'tree')!.hash) as { bytes: Buffer };
    // The top directory lists its children by entry hash: its subdirectories' bundles in that order.
    const subdirs = new Set(index.records.filter((rec) => rec.type === 'dir' && rec.sharePath !== 'tree').map((rec) => toHex(rec.hash)));
    const order = dirChildren(topObj.bytes.subarray(decodeNetTreeHead(topObj.bytes).payloadOffset))
      .filter((h) => subdirs.has(toHex(h)))
      .map((h) => groupAddress(bundleKey(h, 0)));
    const listed = new Set(order);
    const firstJoins = r.link.joinLog.filter((g, i, all) => all.indexOf(g) === i);
    const asked = firstJoins.filter((g) => listed.has(g));
    expect(asked).toEqual(order);
    // The first eight (the fetches at once) before any chunk of the files beside them.
    const firstOther = firstJoins.findIndex((g, i) => i > 2 && !listed.has(g));
    // (More of them may come first: the rest are asked for as the first ones arrive.)
    expect(firstJoins.slice(0, firstOther).filter((g) => listed.has(g)).length).toBeGreaterThanOrEqual(8);
  }, 60_000);

  it('a client told not to use bundles syncs exactly as against a share without them', async () => {
    const root = await makeTree('client-off', 12);
    const r = await run(root, path.join(path.dirname(root), 'out'), { bundles: true, client: false });
    expect(r.error).toBeUndefined();
    expect(r.summary!.bundleEntries).toBe(0);
    expect(r.link.joinLog.some((g) => g === groupAddress(bundleKey(aliasHash('tree'), 0)))).toBe(false);
    expect(treeListing(path.join(path.dirname(root), 'out'))).toEqual(treeListing(root));
  }, 60_000);

  it('against a share without bundles: asks for the root\'s bundle once, waits for it at most a moment, then never again', async () => {
    const root = await makeTree('probe', 12);
    const r = await run(root, path.join(path.dirname(root), 'out'), { bundles: false });
    expect(r.error).toBeUndefined();
    const rootBundle = groupAddress(bundleKey(aliasHash('tree'), 0));
    expect(r.link.joinLog.filter((g) => g === rootBundle).length).toBeGreaterThanOrEqual(1);
    // The root's bundle is the only one asked for: no subdirectory's.
    const index = await ShareIndex.build([root]);
    const subdirs = index.records.filter((rec) => rec.type === 'dir' && rec.sharePath !== 'tree');
    for (const d of subdirs) expect(r.link.joinLog).not.toContain(groupAddress(bundleKey(d.hash, 0)));
  }, 60_000);

  it('a forged bundle (wrong bytes, a swapped tree, an entry the directory does not list) writes nothing wrong', async () => {
    const root = await makeTree('forged', 8);
    const index = await ShareIndex.build([root]);
    const top = index.roots[0]!;
    const files = index.records.filter((rec) => rec.type === 'file' && rec.sharePath.split('/').length === 2 && rec.size > 0 && rec.size <= 32768);
    expect(files.length).toBeGreaterThan(1);
    const [f0, f1] = files;
    const objOf = (h: Buffer, from = index) => {
      const o = from.get(h);
      if (o?.kind !== 'tree') throw new Error('no object');
      return o.bytes;
    };
    const stranger = await makeTree('stranger', 2);
    const otherIndex = await ShareIndex.build([stranger]);
    const alien = otherIndex.records.find((rec) => rec.type === 'file' && rec.size > 0)!;
    const forged = encodeBundle({
      key: aliasHash('tree'),
      part: 0,
      parts: 1,
      entries: [
        // Right tree, wrong bytes (same length).
        { hash: f0!.hash, obj: objOf(f0!.hash), data: Buffer.alloc(f0!.size, 0x41) },
        // Another file's tree under this file's hash.
        { hash: f1!.hash, obj: objOf(alien.hash, otherIndex) },
        // An entry the directory does not list.
        { hash: alien.hash, obj: objOf(alien.hash, otherIndex) },
      ],
    });
    // The spoofer answers the root's bundle group first, with every symbol (the share has no bundles).
    const enc = new ObjectEncoder(forged);
    const datagrams = Array.from({ length: enc.K }, (_, esi) => encodeDatagram({ oid: hash(forged), transferLength: forged.length, esi, symbol: Buffer.from(enc.sourceSymbol(esi)) }));
    enc.free();
    const group = groupAddress(bundleKey(aliasHash('tree'), 0));
    let injected = false;
    const r = await run(root, path.join(path.dirname(root), 'out'), {
      bundles: false,
      before: (link) => {
        const join = link.source.join;
        link.source.join = (g) => {
          join(g);
          if (g === group && !injected) {
            injected = true;
            setImmediate(() => datagrams.forEach((d) => link.inject(d)));
          }
        };
      },
    });
    expect(injected).toBe(true);
    expect(r.error).toBeUndefined();
    expect(treeListing(path.join(path.dirname(root), 'out'), { times: true })).toEqual(treeListing(root, { times: true }));
    expect(top.type).toBe('dir');
    // It was taken (the only bundle there was) and only what verified was used: f0's tree without its bytes.
    expect(r.summary!.bundleEntries).toBe(1);
    expect(r.summary!.bundleFiles).toBe(0);
  }, 60_000);

  it('a bundle whose bytes were tampered with on the wire is refused as a whole (OID), and the sync still completes', async () => {
    const root = await makeTree('tampered', 8);
    let hit = 0;
    const r = await run(root, path.join(path.dirname(root), 'out'), {
      bundles: true,
      tamper: (group, payload) => {
        const d = decodeDatagram(payload);
        // Flip a byte in the first symbols of every bundle of more than one symbol.
        if (d && d.transferLength !== undefined && d.transferLength > 2048 && d.esi === 0 && hit < 50) {
          hit++;
          payload[payload.length - 1]! ^= 0xff;
        }
        return payload;
      },
    });
    expect(hit).toBeGreaterThan(0);
    expect(r.error).toBeUndefined();
    expect(treeListing(path.join(path.dirname(root), 'out'))).toEqual(treeListing(root));
  }, 60_000);

  it('a file changed on the share after indexing: the bundle leaves its bytes out, and its old chunk is never written', async () => {
    const root = await makeTree('changed', 8);
    const victim = path.join(root, 'f0.txt');
    const old = readFileSync(victim);
    const r = await run(root, path.join(path.dirname(root), 'out'), {
      bundles: true,
      timeoutSec: 3,
      // Changed after the index was built, before anyone asked for a bundle.
      before: () => writeFileSync(victim, Buffer.alloc(old.length, 0x5a)),
    });
    // Its chunk is refused as stale by the share (no re-index here), so the sync times out...
    expect((r.error as LcsyncError | undefined)?.code).toBe('TIMEOUT');
    // ...and neither the old nor the new bytes are written under that name.
    const out = path.join(path.dirname(root), 'out', 'f0.txt');
    let written: Buffer | undefined;
    try {
      written = readFileSync(out);
    } catch {
      written = undefined;
    }
    expect(written).toBeUndefined();
  }, 60_000);

  it('verifyBundleEntry takes an object only under the hash that names it, and bytes only if they hash to the leaves', async () => {
    const root = await makeTree('verify', 4);
    const index = await ShareIndex.build([root]);
    const file = index.records.find((rec) => rec.type === 'file' && rec.size > 0 && rec.size <= 32768)!;
    const o = index.get(file.hash);
    if (o?.kind !== 'tree') throw new Error('no object');
    const data = readFileSync(file.localPath);
    expect(verifyBundleEntry({ hash: file.hash, obj: o.bytes, data }, DEFAULT_LIMITS)?.data?.equals(data)).toBe(true);
    const wrong = Buffer.from(data);
    wrong[0]! ^= 1;
    const c = verifyBundleEntry({ hash: file.hash, obj: o.bytes, data: wrong }, DEFAULT_LIMITS);
    expect(c?.entry.tree).toBeDefined();
    expect(c?.data).toBeUndefined();
    expect(verifyBundleEntry({ hash: hash(Buffer.from('x')), obj: o.bytes, data }, DEFAULT_LIMITS)).toBeUndefined();
    expect(verifyBundleEntry({ hash: file.hash, obj: Buffer.from('garbage'), data }, DEFAULT_LIMITS)).toBeUndefined();
  });
});

describe('the first bundle a client waits for (the share not yet known to serve bundles)', () => {
  /**
   * A receiver stand-in: the top's bundle part arrives `arrivesMs` after it is asked for; its
   * symbols are heard for the first 50 ms (then the share holds: a part of more than 64 symbols
   * waits 300 ms after its source symbols before its repair symbols) and, with `decoding`, a tree
   * object stays part decoded meanwhile.
   */
  function fakeReceiver(arrivesMs: number, decoding: boolean) {
    const dirKey = hash(Buffer.from('top'));
    const part = encodeBundle({ key: dirKey, part: 0, parts: 1, entries: [] });
    let heardAt = 0;
    const asked: string[] = [];
    const rx = {
      fetchTree(key: Buffer, accept: (obj: Buffer) => boolean): Promise<Buffer> {
        asked.push(toHex(key));
        heardAt = Date.now() + 50;
        if (!key.equals(bundleKey(dirKey, 0)) || !decoding) return new Promise<Buffer>(() => undefined);
        return new Promise<Buffer>((resolve) => setTimeout(() => (accept(part) ? resolve(part) : undefined), arrivesMs));
      },
      treeHeardWithin(ms: number, unfinished = false): boolean {
        return (!unfinished || decoding) && Date.now() - heardAt < ms;
      },
    };
    const fetcher = new BundleFetcher(rx as unknown as ObjectReceiver, DEFAULT_LIMITS, true);
    const children = Buffer.concat([0, 1, 2, 3].map((i) => hash(Buffer.from([i]))));
    const dir = { obj: children, head: { payloadOffset: 0 }, key: dirKey } as unknown as FetchedEntry;
    return { fetcher, dir, dirKey, asked };
  }

  it('waits through the share\'s silent hold while the part is still being decoded, and then knows the share serves bundles', async () => {
    const { fetcher, dir, dirKey, asked } = fakeReceiver(550, true);
    const t0 = Date.now();
    await fetcher.children(dir, dirKey, 4);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
    expect(fetcher.stats.parts).toBe(1);
    // Known now: the next directory's bundle is asked for.
    fetcher.prefetch(hash(Buffer.from('sub')));
    await new Promise((r) => setImmediate(r));
    expect(asked).toHaveLength(2);
  });

  it('gives up after the short wait when nothing is being decoded (a share without bundles), and asks for none again', async () => {
    const { fetcher, dir, dirKey, asked } = fakeReceiver(550, false);
    const t0 = Date.now();
    await fetcher.children(dir, dirKey, 4);
    expect(Date.now() - t0).toBeLessThan(500);
    fetcher.prefetch(hash(Buffer.from('sub')));
    await new Promise((r) => setImmediate(r));
    expect(asked).toHaveLength(1);
  });
});

describe('a first bundle of many parts (a directory of thousands of files)', () => {
  it('once its first part has come, waits for the rest past the probe\'s deadline, and takes it', async () => {
    const dirKey = hash(Buffer.from('big'));
    const parts = [0, 1].map((z) => encodeBundle({ key: dirKey, part: z, parts: 2, entries: [] }));
    const asked: string[] = [];
    const rx = {
      lostDatagrams: 0,
      fetchTree(key: Buffer, accept: (obj: Buffer) => boolean): Promise<Buffer> {
        asked.push(toHex(key));
        const z = [0, 1].find((i) => key.equals(bundleKey(dirKey, i)));
        if (z === undefined) return new Promise<Buffer>(() => undefined);
        // The first part soon; the second after the 3 s a first bundle is waited for (symbols heard all along).
        return new Promise<Buffer>((resolve) => setTimeout(() => (accept(parts[z]!) ? resolve(parts[z]!) : undefined), z === 0 ? 100 : 3500));
      },
      treeHeardWithin: () => true,
    };
    const fetcher = new BundleFetcher(rx as unknown as ObjectReceiver, DEFAULT_LIMITS, true);
    const children = Buffer.concat([0, 1, 2, 3].map((i) => hash(Buffer.from([i]))));
    const dir = { obj: children, head: { payloadOffset: 0 }, key: dirKey } as unknown as FetchedEntry;
    const t0 = Date.now();
    const got = await fetcher.children(dir, dirKey, 4);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3400);
    expect(fetcher.stats.parts).toBe(2);
    expect(fetcher.held).toBeGreaterThan(0);
    got.release();
    expect(fetcher.held).toBe(0);
    // Known to serve bundles: the next directory's is asked for.
    fetcher.prefetch(hash(Buffer.from('next')));
    await new Promise((r) => setImmediate(r));
    expect(asked).toHaveLength(3);
  }, 10_000);
});

describe('bundle parts fetched at once, as the receiver keeps up', () => {
  /** A receiver stand-in whose bundle parts arrive when the test says, with a socket loss count the test sets. */
  function manualReceiver(dataPerPart = 0) {
    const waiting: (() => void)[] = [];
    // Entries of 32 KiB of bytes each, `dataPerPart` bytes in all (about: whole entries).
    const entries = Array.from({ length: Math.round(dataPerPart / MAX_BUNDLE_ENTRY_DATA) }, (_, i) => ({ hash: hash(Buffer.from([i])), obj: Buffer.from('o'), data: Buffer.alloc(MAX_BUNDLE_ENTRY_DATA) }));
    const rx = {
      lostDatagrams: 0,
      fetchTree(key: Buffer, accept: (obj: Buffer) => boolean): Promise<Buffer> {
        const dirKey = keys.get(toHex(key))!;
        const part = encodeBundle({ key: dirKey, part: 0, parts: 1, entries });
        return new Promise<Buffer>((resolve) => waiting.push(() => (accept(part) ? resolve(part) : undefined)));
      },
      treeHeardWithin: () => false,
    };
    const keys = new Map<string, Buffer>();
    const fetcher = new BundleFetcher(rx as unknown as ObjectReceiver, DEFAULT_LIMITS, true);
    /** Prefetch the bundles of `n` new directories; returns their keys. */
    const ask = (n: number) => {
      const asked: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        const dirKey = hash(Buffer.from(`dir ${keys.size}`));
        keys.set(toHex(bundleKey(dirKey, 0)), dirKey);
        fetcher.prefetch(dirKey);
        asked.push(dirKey);
      }
      return asked;
    };
    /** A verified directory of four children (none of them in the bundle) asked for by `dirKey`. */
    const dirOf = (dirKey: Buffer) =>
      ({ obj: Buffer.concat([0, 1, 2, 3].map((i) => hash(Buffer.from([i, ...dirKey])))), head: { payloadOffset: 0 }, key: dirKey }) as unknown as FetchedEntry;
    const settle = async () => {
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    };
    /** Let the oldest `n` parts arrive. */
    const arrive = async (n: number) => {
      for (let i = 0; i < n; i++) {
        waiting.shift()!();
        await settle();
      }
    };
    return { rx, fetcher, ask, dirOf, arrive, settle, outstanding: () => waiting.length };
  }

  it('asks for no new directory\'s bundle while HOLD_BYTES of bundles are held, and its directory waits for room without giving up', async () => {
    const partBytes = 4 * 2 ** 20;
    const { fetcher, ask, dirOf, arrive, settle, outstanding } = manualReceiver(partBytes);
    const first = ask(Math.ceil(HOLD_BYTES / partBytes) + 1);
    const taken = first.map((k) => fetcher.children(dirOf(k), k, 4));
    await settle();
    for (let i = 0; i < 20 && outstanding() > 0; i++) await arrive(1);
    const held = await Promise.all(taken);
    expect(fetcher.held).toBeGreaterThanOrEqual(HOLD_BYTES);
    // The next directory's bundle is not asked for while that much is held ...
    const [next] = ask(1);
    const nextChildren = fetcher.children(dirOf(next!), next!, 4);
    let done = false;
    void nextChildren.then(() => (done = true));
    await settle();
    expect(outstanding()).toBe(0);
    // ... and its directory waits on past PART_IDLE_MS (2 s) though no symbol is heard: it is not a share without bundles.
    await new Promise((r) => setTimeout(r, 2300));
    expect(done).toBe(false);
    expect(outstanding()).toBe(0);
    // Two directories written: their bundles are let go (twice is once), and the next one is asked for.
    const before = fetcher.held;
    held[0]!.release();
    held[0]!.release();
    held[1]!.release();
    expect(fetcher.held).toBe(before - (2 * before) / held.length);
    await settle();
    expect(outstanding()).toBe(1);
    await arrive(1);
    await nextChildren;
    expect(done).toBe(true);
    expect(fetcher.stats.parts).toBe(first.length + 1);
    for (const h of held.slice(2)) h.release();
  }, 10_000);

  it('lets go of a bundle nobody takes (too few children missing), once it has arrived', async () => {
    const { fetcher, ask, dirOf, arrive, settle } = manualReceiver(2 ** 20);
    const [k] = ask(1);
    await settle();
    const none = await fetcher.children(dirOf(k!), k!, 1);
    expect(none.children.size).toBe(0);
    await arrive(1);
    await settle();
    expect(fetcher.held).toBe(0);
  });

  it('halves the parts fetched at once when the socket lost datagrams, down to a floor, and adds one back per eight clean parts', async () => {
    const { rx, fetcher, ask, arrive, settle, outstanding } = manualReceiver();
    ask(200);
    await settle();
    // Parts of unknown size are taken to be a MiB each until one has arrived; these are small.
    expect(outstanding()).toBe(FETCH_BYTES / 2 ** 20);
    await arrive(1);
    expect(outstanding()).toBe(BUNDLE_FETCHES);
    // The socket dropped datagrams: the next part to end halves the limit, and no new part starts until fewer are out.
    rx.lostDatagrams = 120;
    await arrive(1);
    expect(fetcher.fetchesAllowed).toBe(BUNDLE_FETCHES / 2);
    expect(outstanding()).toBe(BUNDLE_FETCHES - 1);
    await arrive(BUNDLE_FETCHES - 1 - BUNDLE_FETCHES / 2);
    expect(outstanding()).toBe(BUNDLE_FETCHES / 2);
    // Losses that keep coming take it to the floor, never below.
    for (let i = 0; i < 5; i++) {
      rx.lostDatagrams += 10;
      await arrive(1);
    }
    expect(fetcher.fetchesAllowed).toBe(MIN_BUNDLE_FETCHES);
    await arrive(outstanding() - MIN_BUNDLE_FETCHES);
    expect(outstanding()).toBe(MIN_BUNDLE_FETCHES);
    // No loss for eight parts: one more at once; and so on up to BUNDLE_FETCHES.
    await arrive(8);
    expect(fetcher.fetchesAllowed).toBe(MIN_BUNDLE_FETCHES + 1);
    expect(outstanding()).toBe(MIN_BUNDLE_FETCHES + 1);
    for (let i = 0; i < 8 * BUNDLE_FETCHES; i++) await arrive(1);
    expect(fetcher.fetchesAllowed).toBe(BUNDLE_FETCHES);
    expect(outstanding()).toBe(BUNDLE_FETCHES);
  });

  it('fetches no more big parts at once than FETCH_BYTES holds (840 KB parts: four)', async () => {
    const { fetcher, ask, arrive, settle, outstanding } = manualReceiver(840_000);
    ask(20);
    await settle();
    await arrive(3);
    expect(fetcher.fetchesAllowed).toBe(Math.floor(FETCH_BYTES / 840_000));
    expect(outstanding()).toBe(Math.floor(FETCH_BYTES / 840_000));
  });

  it('a receiver that cannot count its socket\'s losses keeps BUNDLE_FETCHES', async () => {
    const { rx, fetcher, ask, arrive, settle, outstanding } = manualReceiver();
    delete (rx as { lostDatagrams?: number }).lostDatagrams;
    ask(20);
    await settle();
    await arrive(10);
    expect(fetcher.fetchesAllowed).toBe(BUNDLE_FETCHES);
    expect(outstanding()).toBe(BUNDLE_FETCHES);
  });
});
