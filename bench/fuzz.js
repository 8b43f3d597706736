#!/usr/bin/env node
/**
 * Long fuzz run of everything that reads bytes from the network, bounded in time.
 *
 *   npm run build && node bench/fuzz.js [--seconds 300] [--seed N] [--json]
 *
 * The normal suite runs the same kinds of properties for a few thousand cases each (test/packet.test.ts,
 * nettree.test.ts, mld.test.ts, signature.test.ts, hostile.test.ts); this script runs them against the built
 * modules (dist/) for a time budget split evenly between targets, with fast-check:
 *
 *   datagram     decodeDatagram on random bytes and on valid-looking headers with random fields
 *   nettree      decodeNetTreeHead/decodeNetTree on random bytes and on valid objects with bytes changed or cut
 *   dirpayload   dirChildren + objectMatches on directory objects with random payloads and headers
 *   mld          decodeMld + listenerEvents on random bytes and on mutated captured reports and queries
 *   signature    decodeSignature on random bytes and on a valid object with bytes changed
 *   names        childName on random share paths: refused with INTEGRITY, or one safe segment
 *   parts        partAgrees on random cuts of a real tree object
 *   fec          ObjectDecoder fed random ESIs and symbols (repair symbols go to the wasm decoder)
 *   receiver     ObjectReceiver (in-memory channel) fed random, forged and flooding datagrams, then the
 *                genuine ones: nothing may throw out of the datagram handler, the genuine object must come
 *
 * Each property fails on any exception other than the documented one (INTEGRITY LcsyncError where a decoder
 * throws at all). Memory: the peak RSS and ArrayBuffer memory over the run (mostly garbage: the receiver
 * target makes a receiver per case, each flooded with decoders claiming up to 10 MiB), and after each target
 * what is left once the garbage is collected, which must not grow from target to target. RSS includes the
 * wasm heap of the RaptorQ decoder, which grows to its high-water mark and never shrinks.
 * Exit status 1 on any failure, with fast-check's counterexample and seed so the case can be replayed.
 */
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (m) => import(path.join(REPO, 'dist', 'core', m));
const { decodeDatagram, encodeDatagram, MAX_OBJECT, DATAGRAM_LEN, DATAGRAM_OTI_LEN } = await dist('wire/packet.js');
const { decodeNetTreeHead, decodeNetTree, encodeNetTree, dirChildren } = await dist('wire/nettree.js');
const { decodeMld, listenerEvents } = await dist('wire/mld.js');
const { decodeSignature, encodeSignature } = await dist('wire/signature.js');
const { childName, objectMatches, partAgrees } = await dist('wire/verify.js');
const { ObjectDecoder, ObjectEncoder } = await dist('fec/fec.js');
const { ObjectReceiver } = await dist('sync/receiver.js');
const { LcsyncError } = await dist('base/errors.js');
const { MerkleTree } = await dist('model/tree.js');
const { hash } = await dist('model/hash.js');
const { DEFAULT_LIMITS } = await dist('wire/nettree.js');

function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v)) {
    console.error(`fuzz: --${name} wants a number`);
    process.exit(2);
  }
  return v;
}
const SECONDS = opt('seconds', 300);
const SEED = opt('seed', Date.now() % 2 ** 31);
const JSON_OUT = process.argv.includes('--json');

const meta = { mode: 0o100644, uid: 1000, gid: 100, mtimeSec: 1_700_000_000n, mtimeNsec: 5n, atimeSec: 0n, atimeNsec: 0n };
/** Only INTEGRITY LcsyncErrors may come out of a decoder that throws. */
function integrityOnly(fn) {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof LcsyncError) || e.code !== 'INTEGRITY') throw e;
  }
}
const mutated = (seed) =>
  fc.tuple(fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(seed.length)).map(([edits, cut]) => {
    const b = Buffer.from(seed);
    for (const [i, v] of edits) b[i] = v;
    return b.subarray(0, cut);
  });
const bytes = (max) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));

// ---------------------------------------------------------------------------------------------------------
// Targets: name -> property (sync or async)

const fileTree = MerkleTree.fromBuffer(randomBytes(200 * 32768));
const fileObj = encodeNetTree({ type: 'file', size: fileTree.size, meta, name: 'share/a/file.bin', payload: fileTree.nodes });
const dirObj = encodeNetTree({ type: 'dir', size: 0, meta: { ...meta, mode: 0o40755 }, name: 'share/a', payload: randomBytes(5 * 32) });
const linkObj = encodeNetTree({ type: 'symlink', size: 0, meta: { ...meta, mode: 0o120777 }, name: 'share/l', payload: Buffer.from('../target') });
// Real MLD messages of a C lcsync sync (test/vectors/captures/mld.jsonl), found relative to this script.
const mldSeeds = readFileSync(new URL('../test/vectors/captures/mld.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => Buffer.from(JSON.parse(l).icmp6, 'hex'));
const { generateKeyPairSync } = await import('node:crypto');
const sigObj = encodeSignature({ root: randomBytes(32), name: 'share', timestamp: Date.now(), privateKey: generateKeyPairSync('ed25519').privateKey });

const targets = {
  datagram: fc.property(
    fc.oneof(
      bytes(1200),
      fc.record({ oid: fc.uint8Array({ minLength: 32, maxLength: 32 }), F: fc.integer({ min: 0, max: 2 ** 40 - 1 }), T: fc.oneof(fc.constant(1024), fc.nat(0xffff)), zn: fc.oneof(fc.constant(0x01000104), fc.nat(0xffffffff)), pid: fc.nat(0xffffffff), oti: fc.boolean() }).map((h) => {
        const b = Buffer.alloc(h.oti ? DATAGRAM_OTI_LEN : DATAGRAM_LEN);
        b.set(h.oid);
        let off = 32;
        if (h.oti) {
          b.writeUIntBE(h.F, off, 5);
          b.writeUInt16BE(h.T, off + 6);
          b.writeUInt32BE(h.zn, off + 8);
          off += 12;
        }
        b.writeUInt32BE(h.pid, off);
        return b;
      }),
    ),
    (b) => {
      const d = decodeDatagram(b);
      if (d && d.symbol.length !== 1024) throw new Error('symbol of wrong length accepted');
      if (d?.transferLength !== undefined && (d.transferLength < 1 || d.transferLength > MAX_OBJECT)) throw new Error('F out of range accepted');
    },
  ),
  nettree: fc.property(fc.oneof(bytes(400), mutated(fileObj.subarray(0, 32768)), mutated(dirObj), mutated(linkObj)), (b) => {
    integrityOnly(() => decodeNetTreeHead(b));
    integrityOnly(() => decodeNetTree(b));
  }),
  dirpayload: fc.property(fc.uint8Array({ maxLength: 40 * 32 }), fc.nat(0xffff), fc.boolean(), (payload, mode, top) => {
    const obj = encodeNetTree({ type: 'dir', size: 0, meta: { ...meta, mode: top ? 0o40755 : mode }, name: 'share/d', payload: Buffer.from(payload) });
    const kids = dirChildren(obj.subarray(56 + 7));
    if (kids.length !== Math.floor(payload.length / 32)) throw new Error('children count');
    integrityOnly(() => objectMatches(obj, randomBytes(32), undefined, DEFAULT_LIMITS));
  }),
  mld: fc.property(fc.oneof(bytes(600), fc.constantFrom(...mldSeeds).chain((s) => mutated(s))), (b) => {
    const m = decodeMld(b);
    if (m) listenerEvents(m);
  }),
  signature: fc.property(fc.oneof(bytes(400), mutated(sigObj)), (b) => integrityOnly(() => decodeSignature(b))),
  names: fc.property(
    fc.array(fc.oneof(fc.constantFrom('', '.', '..', 'a', '\0', 'n'.repeat(256)), fc.string({ maxLength: 10 }), fc.string({ unit: 'binary', maxLength: 6 })), { minLength: 1, maxLength: 6 }),
    fc.boolean(),
    fc.constantFrom('file', 'dir', 'symlink'),
    (segs, abs, type) => {
      const name = (abs ? '/' : '') + segs.join('/');
      let rel;
      try {
        rel = childName({ type: 'dir', name: 'share', size: 0, payloadOffset: 0, objectLength: 0, meta }, { type, name, size: 0, payloadOffset: 0, objectLength: 0, meta });
      } catch (e) {
        if (!(e instanceof LcsyncError) || e.code !== 'INTEGRITY') throw e;
        return;
      }
      if (path.dirname(path.join('/dest', rel)) !== '/dest' || rel === '.' || rel === '..' || rel.includes('\0') || rel.includes('/')) throw new Error(`unsafe name accepted: ${JSON.stringify(name)}`);
    },
  ),
  parts: fc.property(fc.nat(fileObj.length), fc.nat(fileObj.length), fc.nat(300), (a, len, po) => {
    const r = partAgrees(fileObj.subarray(0, a), fileObj.subarray(a, a + len), po);
    if (typeof r !== 'boolean') throw new Error('partAgrees result');
  }),
  fec: fc.property(fc.integer({ min: 1, max: 64 * 1024 }), fc.array(fc.tuple(fc.nat(0xffffff), fc.boolean()), { minLength: 1, maxLength: 80 }), (len, feeds) => {
    const d = new ObjectDecoder(len);
    try {
      for (const [e, source] of feeds) {
        const esi = source ? e % d.K : e;
        const out = d.add(esi, randomBytes(1024));
        if (out && out.length !== len) throw new Error('decoded length');
        if (out) break;
      }
    } finally {
      d.free();
    }
  }),
};

// The receiver: an in-memory channel, junk then the genuine object.
const genuine = encodeNetTree({ type: 'file', size: 9 * 32768, meta, name: 'share/g.bin', payload: MerkleTree.fromBuffer(Buffer.alloc(9 * 32768, 9)).nodes });
const gOid = hash(genuine);
const gEnc = new ObjectEncoder(genuine);
const gDatagrams = [...Array(gEnc.K).keys()].map((esi) => encodeDatagram({ oid: gOid, transferLength: genuine.length, esi, symbol: gEnc.sourceSymbol(esi) }));
const junk = fc.oneof(
  bytes(1200),
  fc.record({ oid: fc.uint8Array({ minLength: 32, maxLength: 32 }), F: fc.integer({ min: 1, max: MAX_OBJECT }), esi: fc.nat(0xffffff), oti: fc.boolean() }).map((h) =>
    encodeDatagram({ oid: h.oid, transferLength: h.oti ? h.F : undefined, esi: h.esi, symbol: randomBytes(1024) }),
  ),
  fc.tuple(fc.nat(gDatagrams.length - 1), fc.array(fc.tuple(fc.nat(DATAGRAM_OTI_LEN - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 })).map(([i, edits]) => {
    const b = Buffer.from(gDatagrams[i]);
    for (const [at, v] of edits) b[at] = v;
    return b;
  }),
  fc.record({ esi: fc.nat(40), F: fc.integer({ min: 1, max: 20_000 }) }).map((h) => encodeDatagram({ oid: gOid, transferLength: h.F, esi: h.esi, symbol: randomBytes(1024) })),
);
const asyncTargets = {
  receiver: fc.asyncProperty(fc.array(junk, { maxLength: 120 }), async (js) => {
    let cb;
    const net = { onDatagram: (f) => (cb = f), join() {}, leave() {}, rejoin() {}, close: async () => {} };
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 5000 });
    try {
      const got = rx.fetchTree(randomBytes(32), (o) => o.equals(genuine));
      for (const j of js) cb(j);
      for (let round = 0; round < 3; round++) for (const d of gDatagrams) cb(d);
      let timer;
      const obj = await Promise.race([got, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error('genuine object not delivered')), 3000)))]);
      // A pending timer would keep this case's datagrams alive for 3 s (thousands of cases' worth).
      clearTimeout(timer);
      if (!obj.equals(genuine)) throw new Error('wrong object delivered');
    } finally {
      rx.close();
    }
  }),
};

// ---------------------------------------------------------------------------------------------------------

const all = [...Object.keys(targets), ...Object.keys(asyncTargets)];
const perTargetMs = Math.max(1000, (SECONDS * 1000) / all.length);
const results = [];
let peakRss = 0;
let peakAb = 0;
const sampleMem = () => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakAb = Math.max(peakAb, m.arrayBuffers);
};
const memTimer = setInterval(sampleMem, 200);
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const params = (i) => ({ seed: SEED + i, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: perTargetMs, markInterruptAsFailure: false });
let failed = false;
for (const [i, name] of all.entries()) {
  const t0 = Date.now();
  const details = targets[name] ? fc.check(targets[name], params(i)) : await fc.check(asyncTargets[name], params(i));
  sampleMem();
  // What is still held once garbage is collected: the harness makes a receiver per run, so peaks are
  // mostly garbage waiting for the collector; this is what a target leaves behind.
  gc();
  const m = process.memoryUsage();
  const r = { target: name, runs: details.numRuns, seconds: (Date.now() - t0) / 1000, failed: details.failed, retainedRssMiB: +(m.rss / 2 ** 20).toFixed(1), retainedArrayBuffersMiB: +(m.arrayBuffers / 2 ** 20).toFixed(1) };
  if (details.failed) {
    failed = true;
    r.seed = details.seed;
    r.counterexample = fc.stringify(details.counterexample).slice(0, 2000);
    r.error = String(details.errorInstance ?? details.error).slice(0, 2000);
  }
  results.push(r);
  if (!JSON_OUT) console.log(`${name.padEnd(11)} ${String(r.runs).padStart(9)} runs in ${r.seconds.toFixed(1)} s  after GC: RSS ${r.retainedRssMiB} MiB, ArrayBuffers ${r.retainedArrayBuffersMiB} MiB  ${r.failed ? `FAILED (seed ${r.seed}): ${r.error}\n  counterexample: ${r.counterexample}` : 'ok'}`);
}
clearInterval(memTimer);
const summary = { seconds: SECONDS, seed: SEED, results, peakRssMiB: +(peakRss / 2 ** 20).toFixed(1), peakArrayBuffersMiB: +(peakAb / 2 ** 20).toFixed(1), failed };
if (JSON_OUT) console.log(JSON.stringify(summary, null, 2));
else console.log(`seed ${SEED}; peak RSS ${summary.peakRssMiB} MiB, peak ArrayBuffer memory ${summary.peakArrayBuffersMiB} MiB; ${failed ? 'FAILURES' : 'no failures'}`);
process.exit(failed ? 1 : 0);
