/**
 * Batched multicast sends between lab namespaces (needs root): host 0 sends one batch of 200
 * datagrams with MulticastSender.sendBatch, host 1 receives them with a plain dgram socket.
 * Run once through the sendmmsg addon and once through the node:dgram fallback
 * (LCSYNC_NO_SENDMMSG=1). A socket lives in its process's namespace, so both ends are small
 * node programs started inside the lab hosts; the sender imports the built dist/.
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
const SENDER_JS = pathToFileURL(path.join(repo, 'dist/core/net/mcast-sender.js')).href;
const GROUP = 'ff1e::ba7c:4';
const PORT = 4243;
const N = 200;

/** Datagram i: its sequence number, then bytes that depend on it; sizes 1..1207, one of 1 byte. */
function payload(i: number): Buffer {
  const len = i === 0 ? 1 : 8 + ((i * 97) % 1200);
  const b = Buffer.alloc(len);
  for (let k = 0; k < len; k++) b[k] = (i * 31 + k * 7) & 0xff;
  if (len >= 4) b.writeUInt32BE(i, 0);
  return b;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Receiver: joins GROUP on e0, prints "ready", then one JSON line of the sha256 of every datagram
// once it has N of them or is told to stop. Bounded: gives up after 20 s.
const RECEIVER = `
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
const got = [];
const finish = (code) => { process.stdout.write(JSON.stringify(got) + '\\n', () => process.exit(code)); };
setTimeout(() => finish(3), 20000);
const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, recvBufferSize: 4 << 20 });
sock.on('message', (b) => {
  got.push(createHash('sha256').update(b).digest('hex'));
  if (got.length >= ${N}) finish(0);
});
sock.bind(${PORT}, '::', () => {
  sock.addMembership('${GROUP}', '::%e0');
  process.stdout.write('ready\\n');
});
process.stdin.on('data', (d) => { if (String(d).includes('stop')) finish(0); });
`;

// Sender: one sendBatch of the N datagrams, with a stand-in pacer that records its charges.
const SENDER = `
const { MulticastSender } = await import(${JSON.stringify(SENDER_JS)});
const hard = setTimeout(() => process.exit(3), 20000);
const payload = ${payload.toString()};
const charged = [];
const tx = await MulticastSender.open({ ifname: 'e0', port: ${PORT}, pacer: { take: (b) => void charged.push(b) } });
const items = Array.from({ length: ${N} }, (_, i) => ({ group: '${GROUP}', payload: payload(i) }));
await tx.sendBatch(items);
const batching = tx.batching;
await tx.close();
process.stdout.write(JSON.stringify({ batching, stats: tx.stats, charged }) + '\\n');
clearTimeout(hard);
`;

// Sender on a link that went down after it opened: the kernel refuses every datagram.
const DOWNED = `
import { execFileSync } from 'node:child_process';
const { MulticastSender } = await import(${JSON.stringify(SENDER_JS)});
const hard = setTimeout(() => process.exit(3), 20000);
const tx = await MulticastSender.open({ ifname: 'e0', port: ${PORT} });
execFileSync('ip', ['link', 'set', 'e0', 'down']);
await tx.sendBatch(Array.from({ length: 100 }, () => ({ group: '${GROUP}', payload: Buffer.alloc(100, 1) })));
execFileSync('ip', ['link', 'set', 'e0', 'up']);
const batching = tx.batching;
await tx.close();
process.stdout.write(JSON.stringify({ batching, stats: tx.stats }) + '\\n');
clearTimeout(hard);
`;

const why = skipReason();
/** The addon's mode runs when it is built, and (failing when it is not) whenever CI_REQUIRE_ADDON=1. */
const addonWhy: SkipReason = existsSync(ADDON) || process.env.CI_REQUIRE_ADDON === '1' ? undefined : 'the udp_batch addon is not built (npm ci builds it; CI_REQUIRE_ADDON=1 requires it)';

describeUnless(why, 'batched multicast sends between namespaces (needs root)', () => {
  let lab: Lab | undefined;

  beforeAll(async () => {
    expectBuilt(['net/mcast-sender', 'net/udp', 'net/interfaces', 'net/batchsock', 'net/pacer']);
    lab = await createLab({ hosts: 2 });
  });
  afterAll(async () => {
    await lab?.teardown();
  });

  const txPackets = async (): Promise<number> => {
    const r = await lab!.exec(0, ['cat', '/sys/class/net/e0/statistics/tx_packets']);
    expect(r.code, r.stderr).toBe(0);
    return Number(r.stdout.trim());
  };

  const modes = [
    { name: 'sendmmsg addon', env: undefined, batching: true, why: addonWhy },
    { name: 'node:dgram fallback', env: '1', batching: false, why: undefined },
  ];
  for (const mode of modes) {
    itUnless(mode.why, `${mode.name}: ${N} datagrams arrive byte-identical, the interface sent them all`, async () => {
      const env = { ...process.env };
      if (mode.env) env.LCSYNC_NO_SENDMMSG = mode.env;
      else delete env.LCSYNC_NO_SENDMMSG;

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

      const before = await txPackets();
      const r = await lab!.exec(0, [process.execPath, '--input-type=module', '-e', SENDER], { env, timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(0);
      const after = await txPackets();
      const sent = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
        batching: boolean;
        stats: { datagrams: number; bytes: number; errors: number };
        charged: number[];
      };

      // All of them arrive quickly on a veth; stop the receiver in any case after 3 s.
      const stopper = setTimeout(() => rx.stdin!.write('stop\n'), 3000);
      const code = await exited;
      clearTimeout(stopper);
      expect(code, err).toBe(0);
      const got = JSON.parse(out.split('\n').find((l) => l.startsWith('['))!) as string[];

      const expected = Array.from({ length: N }, (_, i) => payload(i));
      expect(sent.batching).toBe(mode.batching);
      expect(sent.stats).toEqual({ datagrams: N, bytes: expected.reduce((a, b) => a + b.length, 0), errors: 0 });
      // The pacer is asked once for the whole batch: every payload plus 48 header bytes.
      expect(sent.charged).toEqual([expected.reduce((a, b) => a + b.length + 48, 0)]);
      expect(after - before).toBeGreaterThanOrEqual(N);
      // Byte-identical, each exactly once (order is not promised).
      expect([...got].sort()).toEqual(expected.map(sha).sort());
    });
  }

  for (const mode of modes) {
    itUnless(mode.why, `${mode.name}: on a downed interface every datagram counts as an error, none throws`, async () => {
      const env = { ...process.env };
      if (mode.env) env.LCSYNC_NO_SENDMMSG = mode.env;
      else delete env.LCSYNC_NO_SENDMMSG;
      try {
        const r = await lab!.exec(0, [process.execPath, '--input-type=module', '-e', DOWNED], { env, timeoutMs: 30_000 });
        expect(r.code, r.stderr).toBe(0);
        const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { batching: boolean; stats: object };
        expect(res.batching).toBe(mode.batching);
        expect(res.stats).toEqual({ datagrams: 0, bytes: 0, errors: 100 });
      } finally {
        await lab!.exec(0, ['ip', 'link', 'set', 'e0', 'up']);
      }
    });
  }
});
