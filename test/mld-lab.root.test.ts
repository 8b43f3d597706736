/**
 * Network lab self-test and live MLD tests (needs root: network namespaces, raw ICMPv6 sockets).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createLab, skipReason, type Lab } from './lab.js';

const why = skipReason();
if (why) console.log(`skipping mld-lab.root tests: ${why}`);

/** A node one-liner: receive one UDP datagram on [::]:port and print it with its sender. */
const RECV_ONE = `
const s = require('node:dgram').createSocket({ type: 'udp6', reuseAddr: true });
s.on('message', (m, r) => { console.log(JSON.stringify({ text: m.toString(), from: r.address })); process.exit(0); });
s.bind(Number(process.argv[1]), () => console.log('ready'));
setTimeout(() => process.exit(3), 8000);
`;
const SEND = `
const s = require('node:dgram').createSocket('udp6');
const [addr, port, text] = process.argv.slice(1);
let n = 0;
const t = setInterval(() => { s.send(text, Number(port), addr); if (++n >= 20) { clearInterval(t); s.close(); } }, 100);
`;

function listNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);
}

describe.skipIf(why)('lab helper (needs root)', () => {
  let lab: Lab | undefined;
  afterAll(async () => {
    await lab?.teardown();
  });

  it('builds hosts on a bridge that can reach each other over link-local and multicast', async () => {
    lab = await createLab({ hosts: 2, snooping: false });
    expect(lab.hosts).toHaveLength(2);
    for (const h of lab.hosts) {
      expect(h.ns.startsWith(lab.prefix)).toBe(true);
      expect(h.linkLocal).toMatch(/^fe80:/);
    }
    expect(listNamespaces().filter((n) => n.startsWith(lab!.prefix)).sort()).toEqual(
      [lab.switchNs, lab.hosts[0]!.ns, lab.hosts[1]!.ns].sort(),
    );

    for (const [dest, port] of [[`${lab.hosts[1]!.linkLocal}%e0`, '5001'], ['ff02::1%e0', '5002']] as const) {
      const rx = lab.spawn(1, ['node', '-e', RECV_ONE, port]);
      let out = '';
      rx.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const done = new Promise<number | null>((r) => rx.on('exit', (c) => r(c)));
      const t0 = Date.now();
      while (!out.includes('ready') && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      const before = await lab.counters(0);
      const tx = await lab.exec(0, ['node', '-e', SEND, dest, port, 'hello'], { timeoutMs: 10_000 });
      expect(tx.code, tx.stderr).toBe(0);
      expect(await done).toBe(0);
      const line = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as { text: string; from: string };
      expect(line.text).toBe('hello');
      expect(line.from.replace(/%.*$/, '')).toBe(lab.hosts[0]!.linkLocal);
      const after = await lab.counters(0);
      expect(after.tx_packets - before.tx_packets).toBeGreaterThanOrEqual(1);
    }
  });

  it('installs and removes loss rules in the switch', async () => {
    await lab!.setLoss(1, 100, 'to');
    let rs = await lab!.exec('switch', ['nft', 'list', 'ruleset']);
    expect(rs.stdout).toMatch(/oifname "p1" drop/);
    expect(rs.stdout).not.toMatch(/iifname "p1"/);
    // All frames towards host 1 dropped: the receiver times out (exit 3) although host 0 sends 20 datagrams.
    const rx2 = lab!.spawn(1, ['node', '-e', RECV_ONE.replace('8000', '3000'), '5004']);
    const code = new Promise<number | null>((r) => rx2.on('exit', (c) => r(c)));
    await lab!.exec(0, ['node', '-e', SEND, `${lab!.hosts[1]!.linkLocal}%e0`, '5004', 'lost'], { timeoutMs: 10_000 });
    expect(await code).toBe(3);

    await lab!.setLoss(1, 10, 'both');
    rs = await lab!.exec('switch', ['nft', 'list', 'ruleset']);
    expect(rs.stdout).toMatch(/oifname "p1" numgen random mod 100 < 10 drop/);
    expect(rs.stdout).toMatch(/iifname "p1" numgen random mod 100 < 10 drop/);
    await lab!.setLoss(1, 0);
    rs = await lab!.exec('switch', ['nft', 'list', 'ruleset']);
    expect(rs.stdout).not.toMatch(/p1/);
  });

  it('applies snooping, bridge querier and bandwidth options', async () => {
    const other = await createLab({ hosts: 1, snooping: true, querier: 'v1', bandwidth: '1gbit' });
    try {
      const br = await other.exec('switch', ['ip', '-d', '-j', 'link', 'show', 'br0']);
      const info = (JSON.parse(br.stdout) as { linkinfo: { info_data: Record<string, unknown> } }[])[0]!.linkinfo.info_data;
      expect(info.mcast_snooping).toBe(1);
      expect(info.mcast_querier).toBe(1);
      expect(info.mcast_mld_version).toBe(1);
      const tc = await other.exec(0, ['tc', 'qdisc', 'show', 'dev', 'e0']);
      expect(tc.stdout).toMatch(/tbf .*rate 1Gbit/);
    } finally {
      await other.teardown();
    }
    expect(listNamespaces().filter((n) => n.startsWith(other.prefix))).toEqual([]);
  });

  it('teardown kills spawned processes and leaves no namespace with the prefix', async () => {
    const sleeper = lab!.spawn(0, ['sleep', '60']);
    const pid = sleeper.pid!;
    expect(pid).toBeGreaterThan(0);
    const prefix = lab!.prefix;
    await lab!.teardown();
    await lab!.teardown(); // twice is fine
    expect(listNamespaces().filter((n) => n.startsWith(prefix))).toEqual([]);
    let gone = false;
    try {
      process.kill(pid, 0);
    } catch {
      gone = true;
    }
    expect(gone).toBe(true);
  });
});
