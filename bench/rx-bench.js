#!/usr/bin/env node
/**
 * The receive data plane alone, in memory: CPU to take N MiB of chunk datagrams (in recvmmsg-sized
 * batches of 64, optionally with junk mixed in) through the sync side's ObjectReceiver, on the native
 * path (native/rx_assembler.c) and on the JavaScript path, in the same process and run.
 *
 *   npm run build && node bench/rx-bench.js [--size 64] [--junk 0] [--loss 0] [--reps 3]
 *
 * --size MiB of chunk data (32 KiB chunks), --junk junk datagrams per genuine one (a quarter of them
 * well-formed chunk datagrams with random OIDs, the rest 100 bytes of noise), --loss percent of source
 * symbols dropped (repair symbols then fill in, decoded by RaptorQ in JS). No sockets, no kernel: what it
 * measures is the per-datagram work the native path takes out of JavaScript. Prints CPU seconds (user +
 * system) per path, the median of --reps.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'core');
const { hash } = await import(path.join(DIST, 'model', 'hash.js'));
const { ObjectEncoder } = await import(path.join(DIST, 'fec', 'fec.js'));
const { encodeDatagram } = await import(path.join(DIST, 'wire', 'packet.js'));
const { NativeAssembler, nativeRxAvailable } = await import(path.join(DIST, 'net', 'rx-assembler.js'));
const { ObjectReceiver } = await import(path.join(DIST, 'sync', 'receiver.js'));

function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? def : Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`rx-bench: --${name} wants a number`);
    process.exit(2);
  }
  return v;
}
const SIZE = opt('size', 64) * 2 ** 20;
const JUNK = opt('junk', 0);
const LOSS = opt('loss', 0) / 100;
const REPS = Math.max(1, Math.round(opt('reps', 3)));
const CHUNK = 32 * 1024;
if (!nativeRxAvailable()) {
  console.error('rx-bench: the native receive path is unavailable (addon not built, or LCSYNC_NO_NATIVE_RX=1)');
  process.exit(3);
}

// The datagrams of every chunk, built once: sources (minus losses) and, for each lost one, a repair symbol.
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const chunks = [];
const stream = [];
for (let off = 0; off < SIZE; off += CHUNK) {
  const data = randomBytes(Math.min(CHUNK, SIZE - off));
  const oid = hash(data);
  chunks.push({ oid, length: data.length });
  const enc = new ObjectEncoder(data);
  let lost = 0;
  for (let esi = 0; esi < enc.K; esi++) {
    if (rand() < LOSS) lost++;
    else stream.push(encodeDatagram({ oid, esi, symbol: enc.sourceSymbol(esi) }));
  }
  for (let i = 0; i < lost + 1; i++) {
    const r = enc.nextRepair();
    stream.push(encodeDatagram({ oid, esi: r.esi, symbol: Buffer.from(r.symbol) }));
  }
}
const junk = Array.from({ length: 256 }, (_, i) => {
  if (i % 4) return randomBytes(100);
  const d = randomBytes(1060);
  d[32] = 0;
  return d;
});
const batches = [];
{
  let j = 0;
  let cur = [];
  for (const d of stream) {
    cur.push(d);
    for (let k = 0; k < JUNK; k++) cur.push(junk[j++ % junk.length]);
    if (cur.length >= 64) {
      batches.push(cur);
      cur = [];
    }
  }
  if (cur.length) batches.push(cur);
}
// Each batch as recvmmsg hands it over: one buffer, lengths.
const packed = batches.map((b) => ({ buf: Buffer.concat(b), lengths: Uint32Array.from(b.map((d) => d.length)) }));
const total = batches.reduce((a, b) => a + b.length, 0);

class MemSource {
  constructor(native) {
    this.cb = undefined;
    if (native) this.assembly = new NativeAssembler((b) => this.cb?.(b));
  }
  onDatagram(cb) {
    this.cb = cb;
  }
  join() {}
  leave() {}
  rejoin() {}
  async close() {}
  batch(p) {
    if (this.assembly) {
      this.assembly.feedPacked(p.buf, p.lengths);
      return;
    }
    // As the recvmmsg path hands them to JS: views into the batch's buffer.
    let off = 0;
    for (const len of p.lengths) {
      this.cb?.(p.buf.subarray(off, off + len));
      off += len;
    }
  }
}

async function run(native) {
  const src = new MemSource(native);
  const rx = new ObjectReceiver(src, { stallMs: 600_000, firstSymbolMs: 600_000 });
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  const all = Promise.all(chunks.map((c) => rx.fetchChunk(c.oid, c.length)));
  for (const p of packed) src.batch(p);
  const got = await all;
  const cpu = process.cpuUsage(t0);
  const wall = (performance.now() - w0) / 1000;
  rx.close();
  if (got.length !== chunks.length) throw new Error('missing chunks');
  return { cpu: (cpu.user + cpu.system) / 1e6, wall };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
console.log(`rx-bench: ${SIZE / 2 ** 20} MiB in ${chunks.length} chunks, ${stream.length} genuine + ${total - stream.length} junk datagrams, ${LOSS * 100}% source loss, ${REPS} reps, node ${process.version}`);
const res = { js: [], native: [] };
for (let r = 0; r < REPS; r++) {
  for (const path of r % 2 ? ['native', 'js'] : ['js', 'native']) res[path].push(await run(path === 'native'));
}
for (const [name, rs] of Object.entries(res)) {
  const cpu = median(rs.map((r) => r.cpu));
  console.log(`${name.padEnd(6)} CPU ${cpu.toFixed(3)} s (${((total / cpu) / 1e6).toFixed(2)} M datagrams/CPU-s), wall ${median(rs.map((r) => r.wall)).toFixed(3)} s`);
}
console.log(`native/js CPU: ${(median(res.native.map((r) => r.cpu)) / median(res.js.map((r) => r.cpu))).toFixed(2)}x`);
