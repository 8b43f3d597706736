/**
 * Native framing and UDP GSO on the wire (needs root): host 0 frames one plan of N datagrams to two
 * groups (runs of one stream of every length from 1 to 70, so GSO messages of one segment, of
 * many and of more than the 64 a message may hold) with MulticastSender.sendPlan, host 1 receives
 * them with a plain dgram socket. Run with GSO (the default where the kernel has it) and with
 * LCSYNC_NO_GSO=1: both must deliver exactly the datagrams txFrame makes, in order, and GSO must
 * have carried them in far fewer messages. The sender imports the built dist/. And `lcsync share` end to end
 * in each mode: native framing with GSO, without (LCSYNC_NO_GSO=1), and JS framing (LCSYNC_NO_NATIVE_TX=1).
 */
import { afterAll, beforeAll, expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expectBuilt, repo, runSync, startShare } from './e2e.js';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless, itUnless, type SkipReason } from './skip.js';

const ADDON = path.join(repo, 'build/Release/lcsync.node');
const dist = (m: string) => JSON.stringify(pathToFileURL(path.join(repo, `dist/core/${m}.js`)).href);
const GROUPS = ['ff1e::7a:1', 'ff1e::7a:2'];
const PORT = 4244;
const N = 600;

// Receiver: joins both groups on e0, prints "ready", then the sha256 of every datagram in arrival order.
const RECEIVER = `
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
const got = [];
const finish = (code) => { process.stdout.write(JSON.stringify(got) + '\\n', () => process.exit(code)); };
setTimeout(() => finish(3), 20000);
const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, recvBufferSize: 8 << 20 });
sock.on('message', (b) => {
  got.push(createHash('sha256').update(b).digest('hex'));
  if (got.length >= ${N}) finish(0);
});
sock.bind(${PORT}, '::', () => {
  for (const g of ${JSON.stringify(GROUPS)}) sock.addMembership(g, '::%e0');
  process.stdout.write('ready\\n');
});
process.stdin.on('data', (d) => { if (String(d).includes('stop')) finish(0); });
`;

// Sender: three streams (a chunk with a short tail, another chunk, an object with OTI) on two groups,
// in runs of 1, 2, 3, ... datagrams; prints what txFrame makes of the plan and what sendPlan did.
const SENDER = `
import { createHash } from 'node:crypto';
const { MulticastSender } = await import(${dist('net/mcast-sender')});
const { TxPlan } = await import(${dist('net/txplan')});
const { datagramPrefix } = await import(${dist('wire/packet')});
const hard = setTimeout(() => process.exit(3), 20000);
const group = (s) => { const b = Buffer.alloc(16); b[0] = 0xff; b[1] = 0x1e; b[13] = 0x7a; b[15] = s; return b; };
const fill = (n, k) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = (i * k + (i >> 8)) & 0xff; return b; };
const streams = [
  { data: fill(20 * 1024 + 300, 7), target: { prefix: datagramPrefix(Buffer.alloc(32, 1)), group: group(1), symbolSize: 1024 } },
  { data: fill(32 * 1024, 11), target: { prefix: datagramPrefix(Buffer.alloc(32, 2)), group: group(2), symbolSize: 1024 } },
  { data: fill(3000, 13), target: { prefix: datagramPrefix(Buffer.alloc(32, 3), 3000), group: group(1), symbolSize: 1024 } },
];
const plan = new TxPlan(${N});
let run = 1, s = 0;
const next = streams.map(() => 0);
while (plan.count < ${N}) {
  const st = streams[s];
  const K = Math.ceil(st.data.length / 1024);
  for (let i = 0; i < run && plan.count < ${N}; i++) {
    const esi = next[s]++;
    if (esi < K) plan.add(st.target, esi, st.data, esi * 1024, Math.min(1024, st.data.length - esi * 1024));
    else { const sym = plan.repairSymbol(1024); sym.fill(esi & 0xff); plan.add(st.target, esi, sym, 0, 1024); }
  }
  run = run % 70 + 1;
  s = (s + 1) % streams.length;
}
const out = Buffer.alloc(plan.payloadBytes);
plan.frameInto(out);
const expected = [];
for (let i = 0, off = 0; i < plan.count; i++) { const len = plan.rowBytes(i); expected.push(createHash('sha256').update(out.subarray(off, off + len)).digest('hex')); off += len; }
const charged = [];
const tx = await MulticastSender.open({ ifname: 'e0', port: ${PORT}, pacer: { take: (b) => void charged.push(b) } });
const gsoAtStart = tx.gso;
const framesPlans = tx.framesPlans;
await tx.sendPlan(plan);
const gsoAtEnd = tx.gso;
await tx.close();
process.stdout.write(JSON.stringify({ framesPlans, gsoAtStart, gsoAtEnd, stats: tx.stats, planStats: tx.planStats, charged, payloadBytes: plan.payloadBytes, expected }) + '\\n');
clearTimeout(hard);
`;

const why = skipReason();
const addonWhy: SkipReason = existsSync(ADDON) || process.env.CI_REQUIRE_ADDON === '1' ? undefined : 'the lcsync addon is not built (npm ci builds it; CI_REQUIRE_ADDON=1 requires it)';

describeUnless(why, 'native framing and UDP GSO between namespaces (needs root)', () => {
  let lab: Lab | undefined;

  beforeAll(async () => {
    expectBuilt(['net/mcast-sender', 'net/txplan', 'wire/packet']);
    lab = await createLab({ hosts: 2 });
  });
  afterAll(async () => {
    await lab?.teardown();
  });

  type Sent = {
    framesPlans: boolean;
    gsoAtStart: boolean;
    gsoAtEnd: boolean;
    stats: { datagrams: number; bytes: number; errors: number };
    planStats: { datagrams: number; messages: number };
    charged: number[];
    payloadBytes: number;
    expected: string[];
  };

  async function transfer(noGso: boolean): Promise<{ sent: Sent; got: string[] }> {
    const env = { ...process.env };
    delete env.LCSYNC_NO_NATIVE_TX;
    delete env.LCSYNC_NO_SENDMMSG;
    if (noGso) env.LCSYNC_NO_GSO = '1';
    else delete env.LCSYNC_NO_GSO;
    const rx: ChildProcess = lab!.spawn(1, [process.execPath, '--input-type=module', '-e', RECEIVER]);
    let out = '';
    let err = '';
    rx.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    rx.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => rx.on('exit', (c) => r(c)));
    const t0 = Date.now();
    while (!out.includes('ready\n')) {
      if (Date.now() - t0 > 10_000 || rx.exitCode !== null) throw new Error(`receiver not ready: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await lab!.exec(0, [process.execPath, '--input-type=module', '-e', SENDER], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const sent = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Sent;
    const stopper = setTimeout(() => rx.stdin!.write('stop\n'), 3000);
    const code = await exited;
    clearTimeout(stopper);
    expect(code, err).toBe(0);
    const got = JSON.parse(out.split('\n').find((l) => l.startsWith('['))!) as string[];
    return { sent, got };
  }

  itUnless(addonWhy, 'lcsync share serves a file byte-identical framed natively with GSO, without GSO, and framed in JS', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'lcsync-txplan-'));
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    const saved = { tx: process.env.LCSYNC_NO_NATIVE_TX, gso: process.env.LCSYNC_NO_GSO };
    try {
      // Two full chunks' worth of odd sizes: a short last chunk and a short last symbol.
      const src = path.join(work, 'src.bin');
      writeFileSync(src, randomBytes(3 * 1024 * 1024 + 32768 + 777));
      for (const mode of [{ tx: undefined, gso: undefined }, { tx: undefined, gso: '1' }, { tx: '1', gso: undefined }]) {
        // lab.spawn hands the share this process's environment.
        for (const [k, v] of [['LCSYNC_NO_NATIVE_TX', mode.tx], ['LCSYNC_NO_GSO', mode.gso]] as const) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
        const share = await startShare(lab!, 0, [src]);
        try {
          const dest = path.join(work, `out-${mode.tx ?? 'n'}-${mode.gso ?? 'g'}.bin`);
          const r = await runSync(lab!, 1, [share.roots[0]!.hash, dest]);
          expect(r.code, r.stderr).toBe(0);
          expect(sha(dest)).toBe(sha(src));
        } finally {
          await share.stop();
        }
      }
    } finally {
      for (const [k, v] of [['LCSYNC_NO_NATIVE_TX', saved.tx], ['LCSYNC_NO_GSO', saved.gso]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(work, { recursive: true, force: true });
    }
  }, 180_000);

  itUnless(addonWhy, `GSO on and off deliver the same ${N} datagrams, exactly as txFrame frames them, in order`, async () => {
    const on = await transfer(false);
    const off = await transfer(true);
    for (const { sent, got } of [on, off]) {
      expect(sent.framesPlans).toBe(true);
      expect(sent.stats).toEqual({ datagrams: N, bytes: sent.payloadBytes, errors: 0 });
      expect(sent.planStats.datagrams).toBe(N);
      // One pacer charge for the plan: every payload plus 48 header bytes.
      expect(sent.charged).toEqual([sent.payloadBytes + 48 * N]);
      expect(got).toEqual(sent.expected);
    }
    expect(on.sent.expected).toEqual(off.sent.expected);
    // Without GSO one message per datagram; with it (this kernel has it on a veth) runs share one.
    expect(off.sent.gsoAtStart).toBe(false);
    expect(off.sent.planStats.messages).toBe(N);
    expect(on.sent.gsoAtStart, 'this kernel has UDP_SEGMENT (>= 4.18)').toBe(true);
    expect(on.sent.gsoAtEnd, 'the kernel took GSO on the veth').toBe(true);
    expect(on.sent.planStats.messages).toBeLessThan(N / 10);
  });
});
