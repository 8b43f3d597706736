/**
 * Batched multicast receives between lab namespaces (needs root): host 0 sends with
 * MulticastSender.sendBatch, host 1 receives with MulticastReceiver; once through the recvmmsg
 * addon and once through the node:dgram fallback (LCSYNC_NO_RECVMMSG=1). A socket lives in its
 * process's namespace, so both ends are small node programs started inside the lab hosts; they
 * import the built dist/.
 *
 * What it proves, for each path: every datagram arrives byte-identical and in order (sizes 1..1200,
 * several per batch); a left group is no longer delivered although its datagrams reach the host's
 * interface; two groups can be joined at once and left one at a time, and a group never joined is
 * not delivered; a receiver closed from inside its listener while datagrams keep coming sees no
 * datagram after the close, does not crash, and no longer keeps its process alive.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expectBuilt, repo } from './e2e.js';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless, itUnless, type SkipReason } from './skip.js';

const ADDON = path.join(repo, 'build/Release/lcsync.node');
const RECEIVER_JS = pathToFileURL(path.join(repo, 'dist/core/net/mcast-receiver.js')).href;
const SENDER_JS = pathToFileURL(path.join(repo, 'dist/core/net/mcast-sender.js')).href;
const PACER = pathToFileURL(path.join(repo, 'dist/core/net/pacer.js')).href;
const G1 = 'ff1e::ba7c:11';
const G2 = 'ff1e::ba7c:12';
const G3 = 'ff1e::ba7c:13';
const PORT = 4244;

/** Datagram i: 1..1200 bytes that depend on i (its number first when there is room). */
function payload(i: number): Buffer {
  const len = 1 + ((i * 389) % 1200);
  const b = Buffer.alloc(len);
  for (let k = 0; k < len; k++) b[k] = (i * 31 + k * 7 + (k >> 8)) & 0xff;
  if (len >= 4) b.writeUInt32BE(i, 0);
  return b;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Receiver, driven by lines on stdin: "join G", "leave G", "await N" (answers "have N" once N
// datagrams are in), "stop" (prints the sha256 of every datagram in arrival order, the stats and
// the path taken, and exits). Prints "ready <json>" first. Bounded: exits 3 after 40 s.
const RECEIVER = `
const { MulticastReceiver } = await import(${JSON.stringify(RECEIVER_JS)});
import { createHash } from 'node:crypto';
const hard = setTimeout(() => process.exit(3), 40000);
const rx = await MulticastReceiver.open({ ifnames: ['e0'], port: ${PORT} });
const got = [];
let waiting;
rx.onDatagram((b) => {
  got.push(createHash('sha256').update(b).digest('hex'));
  if (waiting !== undefined && got.length >= waiting) { process.stdout.write('have ' + got.length + '\\n'); waiting = undefined; }
});
process.stdout.write('ready ' + JSON.stringify({ batching: rx.batching }) + '\\n');
let buf = '';
process.stdin.on('data', async (d) => {
  buf += d.toString();
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const [cmd, arg] = buf.slice(0, nl).split(' ');
    buf = buf.slice(nl + 1);
    if (cmd === 'join') { rx.join(arg); process.stdout.write('ok\\n'); }
    else if (cmd === 'leave') { rx.leave(arg); process.stdout.write('ok\\n'); }
    else if (cmd === 'await') {
      if (got.length >= Number(arg)) process.stdout.write('have ' + got.length + '\\n'); else waiting = Number(arg);
    } else if (cmd === 'stop') {
      const out = { got, stats: { ...rx.stats }, batching: rx.batching, joined: [...rx.joined] };
      await rx.close();
      clearTimeout(hard);
      process.stdout.write(JSON.stringify(out) + '\\n', () => process.exit(0));
    }
  }
});
`;

// Receiver that closes itself from inside its listener after CLOSE_AT datagrams, while the sender
// keeps sending. Nothing else holds its event loop, so it must exit by itself. At exit it prints
// what it saw, including any datagram delivered after the close.
const CLOSE_AT = 1000;
const CLOSER = `
const { MulticastReceiver } = await import(${JSON.stringify(RECEIVER_JS)});
import { writeSync } from 'node:fs';
setTimeout(() => process.exit(3), 40000).unref();
const rx = await MulticastReceiver.open({ ifnames: ['e0'], port: ${PORT} });
let n = 0, after = 0, closedAt = -1, closing;
rx.onDatagram(() => {
  if (closedAt >= 0) { after++; return; }
  n++;
  if (n === ${CLOSE_AT}) { closedAt = n; closing = rx.close(); }
});
rx.join('${G1}');
process.on('exit', (code) => {
  writeSync(1, JSON.stringify({ code, n, after, closedAt, stats: rx.stats, batching: rx.batching }) + '\\n');
});
process.stdout.write('ready\\n');
`;

// Sender: datagrams FROM..FROM+COUNT-1, datagram i to GROUPS[i % GROUPS.length], in sendBatch calls
// of BATCH, paced at RATE bit/s (the lab's veths have no back-pressure). Prints its stats.
const SENDER = `
const { MulticastSender } = await import(${JSON.stringify(SENDER_JS)});
const { Pacer } = await import(${JSON.stringify(PACER)});
const hard = setTimeout(() => process.exit(3), 40000);
const spec = JSON.parse(process.env.SPEC);
const payload = ${payload.toString()};
const tx = await MulticastSender.open({ ifname: 'e0', port: ${PORT}, pacer: new Pacer({ bitsPerSecond: spec.rate }) });
for (let i = spec.from; i < spec.from + spec.count; i += spec.batch) {
  const items = [];
  for (let j = i; j < Math.min(i + spec.batch, spec.from + spec.count); j++) items.push({ group: spec.groups[j % spec.groups.length], payload: payload(j) });
  await tx.sendBatch(items);
}
await tx.close();
process.stdout.write(JSON.stringify(tx.stats) + '\\n');
clearTimeout(hard);
`;

const why = skipReason();
/** The addon's mode runs when it is built, and (failing when it is not) whenever CI_REQUIRE_ADDON=1. */
const addonWhy: SkipReason = existsSync(ADDON) || process.env.CI_REQUIRE_ADDON === '1' ? undefined : 'the udp_batch addon is not built (npm ci builds it; CI_REQUIRE_ADDON=1 requires it)';

/** A receiver process in a lab host, talked to line by line. */
class Rx {
  out = '';
  err = '';
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    proc.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((r) => proc.on('exit', (c) => r(c)));
  }

  /** Wait (bounded) until the output has `count` lines matching `re`; return the last one. */
  async line(re: RegExp, count = 1, ms = 10_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const lines = this.out.split('\n').filter((l) => re.test(l));
      if (lines.length >= count) return lines[count - 1]!;
      if (Date.now() - t0 > ms || this.proc.exitCode !== null) {
        throw new Error(`receiver: no ${re} (#${count}) after ${Date.now() - t0} ms; out=${this.out.slice(-500)} err=${this.err}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private oks = 0;
  async cmd(c: string): Promise<void> {
    this.proc.stdin!.write(`${c}\n`);
    await this.line(/^ok$/, ++this.oks);
  }

  private haves = 0;
  async await(n: number): Promise<void> {
    this.proc.stdin!.write(`await ${n}\n`);
    await this.line(/^have /, ++this.haves);
  }

  async stop(): Promise<{ got: string[]; stats: { datagrams: number; bytes: number; errors: number }; batching: boolean; joined: string[] }> {
    this.proc.stdin!.write('stop\n');
    const code = await Promise.race([this.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 10_000))]);
    expect(code, this.err).toBe(0);
    return JSON.parse(this.out.split('\n').find((l) => l.startsWith('{'))!);
  }
}

describeUnless(why, 'batched multicast receives between namespaces (needs root)', () => {
  let lab: Lab | undefined;

  beforeAll(async () => {
    expectBuilt(['net/mcast-receiver', 'net/mcast-sender', 'net/udp', 'net/interfaces', 'net/batchsock', 'net/pacer']);
    lab = await createLab({ hosts: 2 });
  });
  afterAll(async () => {
    await lab?.teardown();
  });

  const send = async (spec: { from: number; count: number; groups: string[]; batch?: number; rate?: number }) => {
    const env = { ...process.env, SPEC: JSON.stringify({ batch: 25, rate: 200e6, ...spec }) };
    const r = await lab!.exec(0, [process.execPath, '--input-type=module', '-e', SENDER], { env, timeoutMs: 40_000 });
    expect(r.code, r.stderr).toBe(0);
    const stats = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { datagrams: number; errors: number };
    expect(stats.errors).toBe(0);
    expect(stats.datagrams).toBe(spec.count);
  };
  const rxPackets = async () => (await lab!.counters(1)).rx_packets;

  const modes = [
    { name: 'recvmmsg addon', noRecvmmsg: false, why: addonWhy },
    { name: 'node:dgram fallback', noRecvmmsg: true, why: undefined },
  ];
  const startRx = (mode: (typeof modes)[number], script: string): Rx => {
    const env = { ...process.env };
    if (mode.noRecvmmsg) env.LCSYNC_NO_RECVMMSG = '1';
    else delete env.LCSYNC_NO_RECVMMSG;
    return new Rx(lab!.spawn(1, [process.execPath, '--input-type=module', '-e', script], { env }));
  };
  const expected = (from: number, count: number, groups: string[], joined: string[]) => {
    const out: string[] = [];
    for (let i = from; i < from + count; i++) if (joined.includes(groups[i % groups.length]!)) out.push(sha(payload(i)));
    return out;
  };

  for (const mode of modes) {
    itUnless(mode.why, `${mode.name}: 500 datagrams arrive byte-identical and in order; none after leave`, async () => {
      const rx = startRx(mode, RECEIVER);
      try {
        const ready = JSON.parse((await rx.line(/^ready /)).slice(6)) as { batching: boolean };
        expect(ready.batching).toBe(!mode.noRecvmmsg);
        await rx.cmd(`join ${G1}`);
        await send({ from: 0, count: 500, groups: [G1] });
        await rx.await(500);
        await rx.cmd(`leave ${G1}`);
        const before = await rxPackets();
        await send({ from: 500, count: 200, groups: [G1] });
        // They reach host 1's interface (the bridge floods), and the kernel keeps them from the socket.
        expect((await rxPackets()) - before).toBeGreaterThanOrEqual(200);
        await new Promise((r) => setTimeout(r, 300));
        const res = await rx.stop();
        expect(res.batching).toBe(!mode.noRecvmmsg);
        const want = expected(0, 500, [G1], [G1]);
        expect(res.got.length).toBe(500);
        expect(res.got).toEqual(want);
        const bytes = Array.from({ length: 500 }, (_, i) => payload(i).length).reduce((a, b) => a + b, 0);
        expect(res.stats).toEqual({ datagrams: 500, bytes, errors: 0 });
        expect(res.joined).toEqual([]);
      } finally {
        rx.proc.kill('SIGKILL');
      }
    });
  }

  for (const mode of modes) {
    itUnless(mode.why, `${mode.name}: two groups at once, one never joined, then one left`, async () => {
      const rx = startRx(mode, RECEIVER);
      try {
        await rx.line(/^ready /);
        await rx.cmd(`join ${G1}`);
        await rx.cmd(`join ${G2}`);
        const groups = [G1, G2, G3];
        const first = expected(0, 600, groups, [G1, G2]);
        await send({ from: 0, count: 600, groups });
        await rx.await(first.length);
        await rx.cmd(`leave ${G1}`);
        const second = expected(600, 300, groups, [G2]);
        await send({ from: 600, count: 300, groups });
        await rx.await(first.length + second.length);
        await new Promise((r) => setTimeout(r, 300));
        const res = await rx.stop();
        expect(res.got.length).toBe(400 + 100);
        expect(res.got).toEqual([...first, ...second]);
        expect(res.stats.errors).toBe(0);
      } finally {
        rx.proc.kill('SIGKILL');
      }
    });
  }

  for (const mode of modes) {
    itUnless(mode.why, `${mode.name}: closing from a listener while datagrams keep coming: no crash, the process exits`, async () => {
      const rx = startRx(mode, CLOSER);
      try {
        await rx.line(/^ready$/);
        // About 1.7 s of traffic; the receiver closes after 1000 datagrams (~0.1 s in).
        const sending = send({ from: 0, count: 20_000, groups: [G1], batch: 32, rate: 100e6 });
        const code = await Promise.race([rx.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
        const stillSending = await Promise.race([sending.then(() => false), new Promise<boolean>((r) => setImmediate(() => r(true)))]);
        await sending;
        expect(code, rx.err).toBe(0);
        // It exited on its own while the sender was still at it.
        expect(stillSending).toBe(true);
        const res = JSON.parse(rx.out.split('\n').find((l) => l.startsWith('{'))!) as {
          n: number;
          after: number;
          closedAt: number;
          stats: { datagrams: number; errors: number };
          batching: boolean;
        };
        expect(res.batching).toBe(!mode.noRecvmmsg);
        expect(res.closedAt).toBe(CLOSE_AT);
        expect(res.after).toBe(0);
        expect(res.stats.datagrams).toBe(CLOSE_AT);
      } finally {
        rx.proc.kill('SIGKILL');
      }
    });
  }
});
