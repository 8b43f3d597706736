#!/usr/bin/env node
/**
 * The share's send path alone: CPU seconds of the sending process per file, JS framing against native
 * framing (native/tx_rounds.c) with and without UDP GSO.
 *
 *   npm run build && node bench/tx-bench.js [--size 64M] [--reps 3] [--rate 900] [--modes js,native,gso]
 *
 * Two lab hosts on a switch (no tbf, no loss). Host 1 receives on every group with the addon's recvmmsg and
 * counts datagrams; host 0 sends a file's worth of chunk datagrams (source symbols of 32 KiB chunks,
 * what a share sends on a clean link), 32 streams interleaved as the share's scheduler serves them, paced
 * at --rate Mbit/s by the share's Pacer, through the same calls the share makes:
 *   js      encodeDatagram into one batch buffer, MulticastSender.sendBatch, 32 datagrams per batch
 *           (the share's path with LCSYNC_NO_NATIVE_TX=1)
 *   native  TxPlan + MulticastSender.sendPlan, 64 per plan, runs of 8 per stream, LCSYNC_NO_GSO=1
 *   gso     the same with UDP GSO (the share's default where the kernel has it)
 * The modes run interleaved, --reps times each. Reported per mode (medians): CPU s of the sender over the
 * send loop only (process.cpuUsage: user + system, start-up excluded), wall s, sendmsg messages, and the
 * datagrams the receiver got (equal to those sent unless the receiver's buffer overflowed).
 */
import { benchArgs, DIST, median } from './common.js';
import { createLab } from './lab.js';

const args = benchArgs('tx-bench', import.meta.url, { valued: ['--size', '--reps', '--rate', '--modes'], helpLines: [2, 6] });
const sizeArg = args.value('size') ?? '64M';
const sizeM = /^(\d+)([KMG])?$/i.exec(sizeArg);
if (!sizeM) args.fail('--size wants a number with K, M or G');
const SIZE = Number(sizeM[1]) * { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, '': 1 }[(sizeM[2] ?? '').toUpperCase()];
if (SIZE < 1 || SIZE > 2 ** 31) args.fail('--size wants 1 byte .. 2 GiB');
const REPS = args.intList('reps', [3], 1, 20)[0];
const RATE = args.intList('rate', [900], 1, 100000)[0];
const MODES = String(args.value('modes') ?? 'js,native,gso').split(',');
if (MODES.some((m) => !['js', 'native', 'gso'].includes(m))) args.fail('--modes wants js, native and/or gso');
const CHUNK = 32768;
const STREAMS = 32;
const PORT = 4245;
const DATAGRAMS = Math.ceil(SIZE / CHUNK) * (CHUNK / 1024);
const dist = (m) => JSON.stringify(`file://${DIST}/${m}.js`);

const RECEIVER = `
const { BatchReceiver } = await import(${dist('net/batchsock')});
let count = 0, bytes = 0;
const rx = BatchReceiver.open({ port: ${PORT}, recvBufferBytes: 16 << 20, onBatch: (buf, lens, n) => { count += n; bytes += buf.length; } });
const ifindex = BatchReceiver.ifindex('e0');
for (let s = 0; s < ${STREAMS}; s++) { const g = Buffer.alloc(16); g[0] = 0xff; g[1] = 0x1e; g[14] = 0x7b; g[15] = s; rx.join(g, ifindex); }
process.stdout.write('ready\\n');
process.stdin.on('data', () => { process.stdout.write(JSON.stringify({ count, bytes }) + '\\n', () => process.exit(0)); });
setTimeout(() => process.exit(3), 120000);
`;

const SENDER = (mode) => `
const { MulticastSender } = await import(${dist('net/mcast-sender')});
const { Pacer } = await import(${dist('net/pacer')});
const { TxPlan } = await import(${dist('net/txplan')});
const { datagramPrefix, encodeDatagram } = await import(${dist('wire/packet')});
const hard = setTimeout(() => process.exit(3), 120000);
const data = Buffer.alloc(${SIZE});
for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
const chunks = Math.ceil(data.length / ${CHUNK});
const group = (s) => { const b = Buffer.alloc(16); b[0] = 0xff; b[1] = 0x1e; b[14] = 0x7b; b[15] = s; return b; };
const groupName = (s) => 'ff1e::7b' + s.toString(16).padStart(2, '0');
const tx = await MulticastSender.open({ ifname: 'e0', port: ${PORT}, pacer: new Pacer({ bitsPerSecond: ${RATE} * 1e6 }) });
// Streams: chunk c goes to group c % STREAMS; the first STREAMS chunks are served side by side.
const streams = [];
let nextChunk = 0;
const open = (slot) => {
  if (nextChunk >= chunks) return undefined;
  const c = nextChunk++;
  const buf = data.subarray(c * ${CHUNK}, Math.min(data.length, (c + 1) * ${CHUNK}));
  const oid = Buffer.alloc(32); oid.writeUInt32BE(c, 0);
  return { buf, oid, esi: 0, K: Math.ceil(buf.length / 1024), slot, target: { prefix: datagramPrefix(oid), group: group(slot) }, name: groupName(slot) };
};
for (let s = 0; s < ${STREAMS}; s++) { const x = open(s); if (x) streams.push(x); }
let cursor = 0;
const pick = () => { while (streams.length > 0) { const i = cursor++ % streams.length; const s = streams[i]; if (s.esi < s.K) return s; const n = open(s.slot); if (n) streams[i] = n; else streams.splice(i, 1); } return undefined; };
const t0 = performance.now();
const cpu0 = process.cpuUsage();
if (${JSON.stringify(mode)} === 'js') {
  const space = Buffer.allocUnsafe(32 * 1072);
  const sym = Buffer.alloc(1024);
  for (;;) {
    const items = [];
    for (let s = pick(); s && items.length < 32; s = items.length < 32 ? pick() : undefined) {
      const off = s.esi * 1024;
      let symbol = s.buf.subarray(off, off + 1024);
      if (symbol.length < 1024) { sym.fill(0); symbol.copy(sym); symbol = sym; }
      items.push({ group: s.name, payload: encodeDatagram({ oid: s.oid, esi: s.esi++, symbol }, space.subarray(items.length * 1072)) });
    }
    if (items.length === 0) break;
    await tx.sendBatch(items);
  }
} else {
  const plan = new TxPlan(64);
  for (;;) {
    plan.reset();
    for (let s = pick(); s && !plan.full; s = plan.full ? undefined : pick()) {
      for (let run = 0; run < 8 && s.esi < s.K && !plan.full; run++) {
        const off = s.esi * 1024;
        plan.add(s.target, s.esi++, s.buf, off, Math.min(1024, s.buf.length - off));
      }
    }
    if (plan.count === 0) break;
    await tx.sendPlan(plan);
  }
}
const cpu = process.cpuUsage(cpu0);
const wall = (performance.now() - t0) / 1000;
const out = { cpu: (cpu.user + cpu.system) / 1e6, user: cpu.user / 1e6, system: cpu.system / 1e6, wall, stats: tx.stats, planStats: tx.planStats, gso: tx.gso };
await tx.close();
process.stdout.write(JSON.stringify(out) + '\\n');
clearTimeout(hard);
`;

const lab = await createLab({ hosts: 2 });
const results = Object.fromEntries(MODES.map((m) => [m, []]));
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      const rx = lab.spawn(1, [process.execPath, '--input-type=module', '-e', RECEIVER]);
      let out = '';
      rx.stdout.on('data', (d) => (out += d));
      const t0 = Date.now();
      while (!out.includes('ready\n')) {
        if (Date.now() - t0 > 10000 || rx.exitCode !== null) throw new Error('receiver not ready');
        await new Promise((r) => setTimeout(r, 20));
      }
      const env = { ...process.env, LCSYNC_NO_GSO: mode === 'gso' ? '' : '1', LCSYNC_NO_NATIVE_TX: '' };
      const r = await lab.exec(0, [process.execPath, '--input-type=module', '-e', SENDER(mode)], { env, timeoutMs: 120000 });
      if (r.code !== 0) throw new Error(`sender (${mode}) failed: ${r.stderr}`);
      const sent = JSON.parse(r.stdout.trim().split('\n').at(-1));
      await new Promise((res) => setTimeout(res, 300));
      const done = new Promise((res) => rx.on('exit', res));
      rx.stdin.write('x\n');
      await done;
      const got = JSON.parse(out.split('\n').find((l) => l.startsWith('{')));
      const messages = mode === 'js' ? sent.stats.datagrams : sent.planStats.messages;
      results[mode].push({ ...sent, messages, received: got.count });
      process.stderr.write(`${mode} rep ${rep + 1}: CPU ${sent.cpu.toFixed(2)} s (user ${sent.user.toFixed(2)}, sys ${sent.system.toFixed(2)}), wall ${sent.wall.toFixed(2)} s, ${sent.stats.datagrams} datagrams in ${messages} messages${mode === 'gso' ? ` (gso ${sent.gso})` : ''}, received ${got.count}\n`);
    }
  }
} finally {
  await lab.teardown();
}
console.log(`\nsend path only: ${SIZE / 2 ** 20} MiB as ${DATAGRAMS} chunk datagrams, ${STREAMS} streams, paced at ${RATE} Mbit/s, ${REPS} reps (medians)`);
console.log(`${'mode'.padEnd(7)} ${'CPU s'.padStart(6)} ${'user s'.padStart(6)} ${'sys s'.padStart(6)} ${'wall s'.padStart(6)} ${'messages'.padStart(9)} ${'received'.padStart(9)}`);
for (const m of MODES) {
  const rs = results[m];
  const med = (f) => median(rs.map(f));
  console.log(`${m.padEnd(7)} ${med((r) => r.cpu).toFixed(2).padStart(6)} ${med((r) => r.user).toFixed(2).padStart(6)} ${med((r) => r.system).toFixed(2).padStart(6)} ${med((r) => r.wall).toFixed(2).padStart(6)} ${String(med((r) => r.messages)).padStart(9)} ${String(med((r) => r.received)).padStart(9)}`);
}
