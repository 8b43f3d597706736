/**
 * Network lab self-test and live MLD tests (needs root: network namespaces, raw ICMPv6 sockets).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLab, mrouteReason, skipReason, type Lab } from './lab.js';
import { describeUnless, firstReason, itUnless } from './skip.js';

const WATCH = fileURLToPath(new URL('./fixtures/mld-watch.mjs', import.meta.url));
const JOIN = fileURLToPath(new URL('./fixtures/mld-join.mjs', import.meta.url));
const REPORTS = fileURLToPath(new URL('./fixtures/mld-reports.mjs', import.meta.url));
const RX_JOIN = fileURLToPath(new URL('./fixtures/rx-join.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/core/net/mldsocket.js', import.meta.url));

const why = skipReason();

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

describe('lab helper without root', () => {
  it('gives a skip reason instead of failing', async () => {
    vi.resetModules();
    const spy = vi.spyOn(process, 'getuid').mockReturnValue(1000);
    try {
      const fresh = await import('./lab.js');
      expect(fresh.isRoot).toBe(false);
      expect(fresh.skipReason()).toMatch(/needs root/);
      await expect(fresh.createLab({ hosts: 1 })).rejects.toThrow(/needs root/);
    } finally {
      spy.mockRestore();
      vi.resetModules();
    }
  });
});

describeUnless(why, 'lab helper (needs root)', () => {
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

// ---------------------------------------------------------------------------------------------------------
// Live MLD: MldWatcher (built dist/, through test/fixtures/mld-watch.mjs) in host 0, listeners in host 1.

interface Line {
  t: number;
  event?: 'join' | 'part' | 'leave';
  group?: string;
  from?: string;
  refresh?: boolean;
  reason?: 'left' | 'expired';
  ready?: boolean;
  error?: string;
  message?: string;
  log?: string;
}

/** Collects the JSON lines a fixture prints, and waits (bounded) for one that matches. */
class Lines {
  readonly all: Line[] = [];
  private buf = '';
  private waiters: (() => void)[] = [];
  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.startsWith('{')) this.all.push(JSON.parse(line) as Line);
        else this.all.push({ t: Date.now(), message: line });
        for (const w of this.waiters.splice(0)) w();
      }
    });
    child.stderr!.on('data', (d: Buffer) => this.all.push({ t: Date.now(), message: `stderr: ${d.toString()}` }));
  }
  async waitFor(pred: (l: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.all.find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; saw:\n${this.dump()}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  dump(): string {
    return this.all.map((l) => JSON.stringify(l)).join('\n');
  }
}

const GROUP = 'ff1e:0:0:0:0:0:abcd:1';
const GROUP_TEXT = 'ff1e::abcd:1';

function startWatcher(lab: Lab, host: number, opts: Record<string, unknown>, maxSec = 40): Lines {
  return new Lines(lab.spawn(host, ['node', WATCH, JSON.stringify({ ifnames: ['e0'], ...opts }), String(maxSec)]));
}
function startJoiner(lab: Lab, host: number, group: string, holdMs: number): Lines {
  return new Lines(lab.spawn(host, ['node', JOIN, group, String(holdMs)]));
}

const fast = { querier: true, queryIntervalSec: 2, queryResponseMs: 1000, listenerTimeoutSec: 3.5 };
const liveWhy = firstReason(why, existsSync(DIST) ? undefined : 'dist/ not built (run `npx tsc -p .` or `npm test`)');

for (const snooping of [false, true]) {
  describeUnless(liveWhy, `MldWatcher on a bridge with snooping ${snooping ? 'on' : 'off'} (needs root)`, () => {
    let lab: Lab | undefined;
    beforeAll(async () => {
      lab = await createLab({ hosts: 3, snooping });
    });
    afterAll(async () => {
      await lab?.teardown();
    });

    it('sees a join, keeps the listener through general queries, and a leave soon after the drop', async () => {
      const w = startWatcher(lab!, 0, fast);
      await w.waitFor((l) => l.ready === true, 5000, 'watcher ready');
      expect(w.all.find((l) => l.ready)).toMatchObject({ querier: { querier: true } });
      // Held 6 s: longer than the listener timeout (3.5 s), so only answers to our general queries keep it alive.
      const j = startJoiner(lab!, 1, GROUP, 6000);
      const join = await w.waitFor((l) => l.event === 'join' && l.group === GROUP_TEXT, 5000, 'join');
      expect(join.from).toBe(lab!.hosts[1]!.linkLocal);
      const left = await j.waitFor((l) => l.message === 'left', 9000, 'joiner left');
      // Refreshes came (answers to general queries), and no leave while the host was joined.
      expect(w.all.some((l) => l.event === 'join' && l.group === GROUP_TEXT && l.refresh === true && l.t > join.t + 1000)).toBe(true);
      expect(w.all.filter((l) => l.event === 'leave' && l.t < left.t)).toEqual([]);
      const leave = await w.waitFor((l) => l.event === 'leave' && l.group === GROUP_TEXT, 4000, 'leave');
      expect(leave.reason).toBe('left');
      // Explicit tracking: the only known listener left, so the group goes at once, with no
      // address-specific query (the query path is for MLDv1 groups, tested below).
      expect(leave.t - left.t).toBeLessThan(1000);
      expect(w.all.some((l) => l.log?.includes(`query for ${GROUP_TEXT}`))).toBe(false);
      w.child.kill('SIGTERM');
    });

    it('without explicit tracking, asks with an address-specific query and keeps the group while another host still listens', async () => {
      const w = startWatcher(lab!, 0, { ...fast, explicitTracking: false });
      await w.waitFor((l) => l.ready === true, 5000, 'watcher ready');
      const stays = startJoiner(lab!, 1, GROUP, 5000);
      const goes = startJoiner(lab!, 2, GROUP, 800);
      await w.waitFor((l) => l.event === 'join' && l.from === lab!.hosts[2]!.linkLocal, 5000, 'join of host 2');
      await w.waitFor((l) => l.event === 'join' && l.from === lab!.hosts[1]!.linkLocal, 5000, 'join of host 1');
      const left = await goes.waitFor((l) => l.message === 'left', 5000, 'host 2 left');
      const part = await w.waitFor((l) => l.event === 'part' && l.group === GROUP_TEXT, 3000, 'part');
      expect(part.from).toBe(lab!.hosts[2]!.linkLocal);
      // Host 1 answers the address-specific query: a refresh from it after the part, and no leave.
      await w.waitFor((l) => l.event === 'join' && l.from === lab!.hosts[1]!.linkLocal && l.t >= part.t, 2000, 'answer');
      await new Promise((r) => setTimeout(r, 1500));
      expect(w.all.filter((l) => l.event === 'leave' && l.t > left.t - 1000)).toEqual([]);
      expect(w.all.some((l) => l.log?.includes(`query for ${GROUP_TEXT}`))).toBe(true);
      await stays.waitFor((l) => l.message === 'left', 6000, 'host 1 left');
      await w.waitFor((l) => l.event === 'leave' && l.group === GROUP_TEXT, 4000, 'leave after the last one');
      w.child.kill('SIGTERM');
    });

    it('declares a host that vanished without leaving gone once general queries go unanswered', async () => {
      const w = startWatcher(lab!, 0, fast);
      await w.waitFor((l) => l.ready === true, 5000, 'watcher ready');
      const j = startJoiner(lab!, 1, GROUP, -1);
      await w.waitFor((l) => l.event === 'join' && l.group === GROUP_TEXT, 5000, 'join');
      // Cut host 1 off (its leave reports are lost, as when a machine loses power), then kill it.
      await lab!.setLoss(1, 100, 'from');
      const cut = Date.now();
      j.child.kill('SIGKILL');
      try {
        const leave = await w.waitFor((l) => l.event === 'leave' && l.group === GROUP_TEXT, 8000, 'expiry');
        expect(leave.reason).toBe('expired');
        expect(leave.t - cut).toBeLessThan(3500 + 500);
      } finally {
        await lab!.setLoss(1, 0);
        w.child.kill('SIGTERM');
      }
    });
  });
}

describeUnless(liveWhy, 'MldWatcher querier election, loopback, MLDv1 and permissions (needs root)', () => {
  let lab: Lab | undefined;
  afterAll(async () => {
    await lab?.teardown();
  });

  it('lets the lower link-local address be the querier', async () => {
    lab = await createLab({ hosts: 2, snooping: true });
    const a = startWatcher(lab, 0, fast);
    const b = startWatcher(lab, 1, fast);
    await a.waitFor((l) => l.ready === true, 5000, 'a ready');
    await b.waitFor((l) => l.ready === true, 5000, 'b ready');
    const [lo, hi] = Buffer.compare(parseLL(lab.hosts[0]!.linkLocal), parseLL(lab.hosts[1]!.linkLocal)) < 0 ? [a, b] : [b, a];
    const loAddr = lo === a ? lab.hosts[0]!.linkLocal : lab.hosts[1]!.linkLocal;
    await hi.waitFor((l) => l.log?.includes(`querier ${loAddr} present (lower`) === true, 5000, 'higher address yields');
    // Once yielded, the higher one sends no general query for the rest of a query interval and more.
    const yieldedAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    expect(hi.all.filter((l) => l.log?.includes('sent general query') && l.t > yieldedAt)).toEqual([]);
    expect(lo.all.filter((l) => l.log?.includes('sent general query') && l.t > yieldedAt).length).toBeGreaterThanOrEqual(1);
    expect(lo.all.some((l) => l.log?.includes('present (lower'))).toBe(false);
    // The winner goes away: the other takes over after the other-querier-present interval (2 x 2 s + 0.5 s).
    lo.child.kill('SIGKILL');
    const gone = Date.now();
    const resumed = await hi.waitFor((l) => l.log?.includes('went quiet, querying again') === true, 8000, 'takeover');
    expect(resumed.t - gone).toBeLessThan(5000 + 500);
    await hi.waitFor((l) => l.log?.includes('sent general query') === true && l.t >= resumed.t, 1000, 'query after takeover');
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
  });

  it('counts the own host only with loopback', async () => {
    const plain = startWatcher(lab!, 0, { querier: false });
    const loop = startWatcher(lab!, 1, { querier: false, loopback: true });
    await plain.waitFor((l) => l.ready === true, 5000, 'ready');
    await loop.waitFor((l) => l.ready === true, 5000, 'ready');
    const j = startJoiner(lab!, 1, GROUP, 1000);
    await loop.waitFor((l) => l.event === 'join' && l.group === GROUP_TEXT, 5000, 'own join with loopback');
    // host 0 sees host 1's report (another host), while host 1 without loopback would not; the loop one sees
    // its own host's leave and, not being querier, declares the group gone after 2 x 1 s + 0.5 s.
    await plain.waitFor((l) => l.event === 'join' && l.group === GROUP_TEXT, 5000, 'remote join');
    await j.waitFor((l) => l.message === 'left', 5000, 'left');
    await loop.waitFor((l) => l.event === 'leave' && l.group === GROUP_TEXT, 5000, 'own leave with loopback');
    const noLoop = startWatcher(lab!, 1, { querier: false });
    await noLoop.waitFor((l) => l.ready === true, 5000, 'ready');
    const j2 = startJoiner(lab!, 1, 'ff1e::abcd:2', 1000);
    await plain.waitFor((l) => l.event === 'join' && l.group === 'ff1e::abcd:2', 5000, 'remote join 2');
    await j2.waitFor((l) => l.message === 'left', 5000, 'left 2');
    await new Promise((r) => setTimeout(r, 500));
    expect(noLoop.all.filter((l) => l.event)).toEqual([]);
    for (const w of [plain, loop, noLoop]) w.child.kill('SIGTERM');
  });

  itUnless(mrouteReason(), 'sees MLDv1 reports (sent to the group itself) and dones', async () => {
    await lab?.teardown();
    lab = await createLab({ hosts: 2, snooping: false });
    // Host 1 speaks MLDv1 as it would under an MLDv1 querier: reports to the group address, dones to ff02::2.
    const f = await lab.exec(1, ['sysctl', '-qw', 'net.ipv6.conf.e0.force_mld_version=1']);
    expect(f.code, f.stderr).toBe(0);
    const w = startWatcher(lab, 0, { querier: false });
    await w.waitFor((l) => l.ready === true, 5000, 'ready');
    expect(w.all.some((l) => l.log?.includes('will not be seen'))).toBe(false);
    const j = startJoiner(lab, 1, GROUP, 1500);
    const join = await w.waitFor((l) => l.event === 'join' && l.group === GROUP_TEXT, 5000, 'v1 join');
    expect(join.from).toBe(lab.hosts[1]!.linkLocal);
    expect(w.all.some((l) => l.log?.includes(`MLDv1 report for ${GROUP_TEXT}`))).toBe(true);
    const left = await j.waitFor((l) => l.message === 'left', 5000, 'left');
    const leave = await w.waitFor((l) => l.event === 'leave' && l.group === GROUP_TEXT, 6000, 'v1 leave');
    expect(w.all.some((l) => l.log?.includes(`MLDv1 done for ${GROUP_TEXT}`))).toBe(true);
    expect(leave.reason).toBe('left');
    expect(leave.t - left.t).toBeLessThan(3500); // not querier: 2 x 1 s + 0.5 s after the done
    w.child.kill('SIGTERM');
  });

  it("a receiver reports its joins itself at once, where it may, beside the kernel's reports", async () => {
    // Host 1's kernel speaks MLDv1 (reports to the group itself), so every MLDv2 report reaching ff02::16 from
    // it is one the receiver sent through its raw socket (net/join-reporter.ts).
    await lab?.teardown();
    lab = await createLab({ hosts: 2, snooping: false });
    const f = await lab.exec(1, ['sysctl', '-qw', 'net.ipv6.conf.e0.force_mld_version=1']);
    expect(f.code, f.stderr).toBe(0);
    const groups = Array.from({ length: 70 }, (_, i) => `ff1e::7e57:${(i + 1).toString(16)}`);
    const run = async (argv: string[]): Promise<{ reports: Line[]; rx: { off: string | null; stats: { reports: number; records: number }; inKernel: number } }> => {
      const r = new Lines(lab!.spawn(0, ['node', REPORTS, '15']));
      await r.waitFor((l) => l.ready === true, 5000, 'report listener ready');
      const done = await lab!.exec(1, [...argv, 'node', RX_JOIN, '800', ...groups], { timeoutMs: 15_000 });
      expect(done.code, done.stderr).toBe(0);
      await new Promise((res) => setTimeout(res, 300));
      r.child.kill('SIGTERM');
      const rx = JSON.parse(done.stdout.trim().split('\n').pop()!) as { off: string | null; stats: { reports: number; records: number }; inKernel: number };
      // The kernel's MLDv2 reports of its link-scope groups (solicited-node), from before the sysctl, may repeat.
      const ours = r.all.filter((l) => (l as { from?: string }).from === lab!.hosts[1]!.linkLocal && !(l as unknown as { records: { group: string }[] }).records.every((x) => x.group.startsWith('ff02:')));
      return { reports: ours, rx };
    };
    const on = await run(['env']);
    expect(on.rx.off).toBeNull();
    expect(on.rx.inKernel).toBe(70);
    // 70 joins asked in one turn: three bursts at once (membership.ts credits) of one join each, then one
    // burst of the other 67, in two reports (61 records at most in one).
    expect(on.rx.stats).toMatchObject({ reports: 5, records: 70 });
    const records = (on.reports as unknown as { records: { type: number; group: string }[] }[]).flatMap((l) => l.records.filter((r) => !r.group.startsWith('ff02:')));
    expect(records.every((r) => r.type === 4)).toBe(true);
    expect(new Set(records.map((r) => r.group))).toEqual(new Set(groups));
    // Asked off, and without CAP_NET_RAW: no MLDv2 report at all (the kernel's MLDv1 ones only).
    const off = await run(['env', 'LCSYNC_NO_JOIN_REPORTS=1']);
    expect(off.rx).toMatchObject({ off: 'LCSYNC_NO_JOIN_REPORTS=1', stats: { reports: 0 }, inKernel: 70 });
    expect(off.reports).toEqual([]);
    const noRaw = await run(['setpriv', '--bounding-set', '-net_raw', '--inh-caps', '-net_raw', '--']);
    expect(noRaw.rx).toMatchObject({ off: 'no CAP_NET_RAW', stats: { reports: 0 }, inKernel: 70 });
    expect(noRaw.reports).toEqual([]);
  });

  it('fails with a PERMISSION error naming the remedies without CAP_NET_RAW', async () => {
    const r = await lab!.exec(0, ['setpriv', '--bounding-set', '-net_raw', '--inh-caps', '-net_raw', '--', 'node', WATCH,
      JSON.stringify({ ifnames: ['e0'], querier: true }), '5'], { timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    const line = JSON.parse(r.stdout.split('\n').find((l) => l.includes('"error"'))!) as Line;
    expect(line.error).toBe('PERMISSION');
    expect(line.message).toMatch(/CAP_NET_RAW/);
    expect(line.message).toMatch(/root/);
    expect(line.message).toMatch(/setcap/);
    expect(line.message).toMatch(/AmbientCapabilities/);
  });
});

function parseLL(s: string): Buffer {
  // Small local parse to compare link-local addresses without importing src/ (the lab only sees strings).
  const [head, tail = ''] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(words.map((w) => w.padStart(4, '0')).join(''), 'hex');
}
