/**
 * Beyond one subnet: receivers on other links than the share's, through `lcsync relay` (an application-level MLD
 * proxy, src/core/ops/relay.ts) and through a router namespace with kernel multicast forwarding (smcroute), and
 * --hops on the wire. Labs of several links from scripts/routed-lab.js.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoutedLab, type RoutedLab } from '../scripts/routed-lab.js';
import { cli, expectBuilt, runSync, sha256, startShare, treeListing } from './e2e.js';
import type { Lab } from './lab.js';
import { mrouteReason, skipReason } from './lab.js';
import { describeUnless, firstReason } from './skip.js';
import { useTempDir } from './tmpdir.js';

const smcroute = spawnSync('smcrouted', ['-v'], { stdio: 'ignore' }).status === 0;
const why = skipReason();
const smcrouteWhy = smcroute ? undefined : process.env.CI ? undefined : 'needs smcroute (apt-get install smcroute)';

/** The e2e helpers take a Lab and host numbers: host n is the n-th namespace of `nss`. */
function asLab(lab: RoutedLab, nss: string[]): Lab {
  const ns = (h: number | 'switch') => (h === 'switch' ? lab.switchNs : nss[h]!);
  return {
    exec: (h: number | 'switch', argv: string[], o?: { timeoutMs?: number; input?: string }) => lab.exec(ns(h), argv, o),
    spawn: (h: number | 'switch', argv: string[], o?: { env?: NodeJS.ProcessEnv }) => lab.spawn(ns(h), argv, o),
  } as unknown as Lab;
}

interface RunningRelay {
  proc: ChildProcess;
  stderr: () => string;
  /** Its private run directory, where `lcsync status --rundir` finds it. */
  rundir: string;
  /** SIGTERM, then the JSON status it prints. */
  stop(): Promise<{ native: boolean; kernelForwarding: boolean; received: { datagrams: number; bytes: number }; forwarded: { datagrams: number; bytes: number }; joins: number; unrouted: number; dropped: number }>;
}

function startRelay(lab: RoutedLab, ns: string, args: string[], env?: NodeJS.ProcessEnv): RunningRelay {
  // A private run directory for its status socket: tests leave nothing in /run.
  const rundir = mkdtempSync(path.join(tmpdir(), 'lcsync-relayrun-'));
  const proc = lab.spawn(ns, [process.execPath, cli, 'relay', '--json', '-v', '--query-interval', '2', '--rundir', rundir, ...args], { env: env ?? process.env });
  proc.once('exit', () => rmSync(rundir, { recursive: true, force: true }));
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (err += d));
  return {
    proc,
    stderr: () => err,
    rundir,
    stop: () =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', (code) => {
          clearTimeout(t);
          try {
            resolve(JSON.parse(out));
          } catch {
            reject(new Error(`relay exited with ${code} without its status: ${err}`));
          }
        });
        proc.kill('SIGTERM');
      }),
  };
}

/** A source tree of a few files, one of them large enough to be many datagrams. */
function makeSource(root: string): { dir: string; bytes: number } {
  const dir = path.join(root, 'src');
  mkdirSync(path.join(dir, 'sub'), { recursive: true });
  const big = randomBytes(3 << 20);
  writeFileSync(path.join(dir, 'big.bin'), big);
  writeFileSync(path.join(dir, 'sub', 'small.txt'), 'hello across subnets\n');
  writeFileSync(path.join(dir, 'sub', 'mid.bin'), randomBytes(200_000));
  return { dir, bytes: big.length + 200_000 + 21 };
}

function expectSame(a: string, b: string): void {
  expect(treeListing(b)).toEqual(treeListing(a));
  expect(sha256(path.join(b, 'big.bin'))).toBe(sha256(path.join(a, 'big.bin')));
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeUnless(why, 'relay between subnets (needs root)', () => {
  beforeAll(() => expectBuilt(['ops/relay', 'net/group-sockets']));

  // Both data paths: C (native/relay_fwd.c) and node:dgram (the fallback without the addon).
  for (const path_ of ['native', 'dgram'] as const) {
    describe(`one relay between two subnets (${path_} forwarding)`, () => {
      let lab: RoutedLab;
      const tmp = useTempDir('relay2-');
      beforeAll(async () => {
        lab = await createRoutedLab({ hosts: [1, 1], routers: [[0, 1]] });
      }, 60_000);
      afterAll(async () => {
        await lab?.teardown();
      });

      it('a receiver on the second subnet gets the share of the first, identical, and nothing goes upstream', async () => {
        const src = makeSource(tmp.dir());
        const share = lab.hosts[0]![0]!;
        const recv = lab.hosts[1]![0]!;
        const router = lab.routers[0]!;
        const l = asLab(lab, [share.ns, recv.ns]);
        const sh = await startShare(l, 0, [src.dir], ['--hops', '1']);
        const env = path_ === 'dgram' ? { ...process.env, LCSYNC_NO_NATIVE_RELAY: '1' } : process.env;
        const relay = startRelay(lab, router.ns, ['--upstream', router.up, '--downstream', router.down, '--hops', '1'], env);
        await wait(500);
        const upBefore = await lab.counters(router.ns, router.up);
        const dest = path.join(tmp.dir(), 'dest');
        const r = await runSync(l, 1, ['-r', sh.roots[0]!.hash, dest]);
        const upAfter = await lab.counters(router.ns, router.up);
        const st = await relay.stop();
        await sh.stop();
        expect(r.code, r.stderr + relay.stderr()).toBe(0);
        expectSame(src.dir, dest);
        expect(st.native).toBe(path_ === 'native');
        // Every byte the receiver got came through the relay: at least the file, forwarded datagram by datagram.
        expect(st.forwarded.bytes).toBeGreaterThan(src.bytes);
        expect(st.forwarded.datagrams).toBeGreaterThan(src.bytes / 1100);
        expect(st.forwarded.datagrams).toBeLessThanOrEqual(st.received.datagrams);
        expect(st.joins).toBeGreaterThan(0);
        // Upstream the relay only reports (MLD, well under a datagram of data per group joined).
        const upSent = upAfter.tx_bytes - upBefore.tx_bytes;
        expect(upSent).toBeLessThan(st.joins * 400 + 20_000);
      }, 120_000);
    });
  }

  describe('lcsync status during a relay', () => {
    let lab: RoutedLab;
    const tmp = useTempDir('relaystatus-');
    beforeAll(async () => {
      lab = await createRoutedLab({ hosts: [1, 1], routers: [[0, 1]] });
    }, 60_000);
    afterAll(async () => {
      await lab?.teardown();
    });

    interface RelayGroupDoc { group: string; downstreams: string[]; listeners: number; datagrams: number; bytes: number; dropped: number }
    interface RelayDoc { kind: string; pid: number; upstream: string; downstreams: string[]; forwarded: { datagrams: number; bytes: number }; groups: RelayGroupDoc[] }

    it('lists the relay beside the shares with the groups it carries now, their listeners and counts that grow', async () => {
      const src = makeSource(tmp.dir());
      const share = lab.hosts[0]![0]!;
      const recv = lab.hosts[1]![0]!;
      const router = lab.routers[0]!;
      const l = asLab(lab, [share.ns, recv.ns]);
      // Slow enough (5 Mbit/s: some seconds for the 3 MB file) that status is asked several times while it flows.
      const sh = await startShare(l, 0, [src.dir], ['--hops', '1', '--bwlimit', '5M']);
      const relay = startRelay(lab, router.ns, ['--upstream', router.up, '--downstream', router.down, '--hops', '1']);
      const status = async (json: boolean) => {
        const r = await lab.exec(router.ns, [process.execPath, cli, 'status', '--rundir', relay.rundir, ...(json ? ['--json'] : [])], { timeoutMs: 30_000 });
        expect(r.code, r.stderr).toBe(0);
        return r.stdout;
      };
      await wait(500);
      const idle = JSON.parse(await status(true)) as { shares: unknown[]; relays: RelayDoc[] };
      expect(idle.shares).toEqual([]);
      expect(idle.relays).toHaveLength(1);
      expect(idle.relays[0]).toMatchObject({ kind: 'relay', pid: relay.proc.pid, upstream: router.up, downstreams: [router.down] });
      const dest = path.join(tmp.dir(), 'dest');
      let syncDone = false;
      const sync = runSync(l, 1, ['-r', sh.roots[0]!.hash, dest]).finally(() => (syncDone = true));
      // Poll while the sync runs (bounded): a snapshot with a group carried to a listener, then one with more forwarded.
      const seen: RelayDoc[] = [];
      let human = '';
      for (let i = 0; i < 60 && !syncDone; i++) {
        const doc = (JSON.parse(await status(true)) as { relays: RelayDoc[] }).relays[0]!;
        if (doc.groups.some((g) => g.listeners >= 1 && g.datagrams > 0)) {
          seen.push(doc);
          if (!human) human = await status(false);
        }
        if (seen.length >= 2 && seen.at(-1)!.forwarded.datagrams > seen[0]!.forwarded.datagrams && human) break;
        await wait(200);
      }
      const r = await sync;
      const st = await relay.stop();
      await sh.stop();
      expect(r.code, r.stderr + relay.stderr()).toBe(0);
      expectSame(src.dir, dest);
      const detail = JSON.stringify(seen.map((d) => ({ forwarded: d.forwarded, groups: d.groups })));
      expect(seen.length, detail).toBeGreaterThanOrEqual(2);
      const [first, last] = [seen[0]!, seen.at(-1)!];
      const g = first.groups.find((x) => x.listeners >= 1 && x.datagrams > 0)!;
      expect(g.group, detail).toMatch(/^ff1e:/);
      expect(g.downstreams, detail).toEqual([router.down]);
      expect(g.bytes, detail).toBeGreaterThan(0);
      expect(g.dropped, detail).toBeGreaterThanOrEqual(0);
      expect(g.dropped, detail).toBeLessThanOrEqual(g.datagrams);
      expect(last.forwarded.datagrams, detail).toBeGreaterThan(first.forwarded.datagrams);
      expect(last.forwarded.bytes, detail).toBeGreaterThan(first.forwarded.bytes);
      expect(st.forwarded.datagrams, detail).toBeGreaterThanOrEqual(last.forwarded.datagrams);
      expect(human).toMatch(new RegExp(`^relay pid ${relay.proc.pid} {2}up `, 'm'));
      expect(human).toContain(`upstream ${router.up} -> downstream ${router.down}`);
      expect(human).toMatch(/^ {4}group ff1e:\S+ -> \S+: \d+ listeners?, \d+ datagrams? /m);
      // Stopped, the relay has removed its socket: status finds nothing running.
      expect(await status(false)).toMatch(/^no lcsync share is running/);
    }, 120_000);
  });

  describe('a chain of three tiers: share on A, relays A->B and B->C', () => {
    let lab: RoutedLab;
    const tmp = useTempDir('relay3-');
    beforeAll(async () => {
      lab = await createRoutedLab({ hosts: [1, 1, 1], routers: [[0, 1], [1, 2]] });
    }, 60_000);
    afterAll(async () => {
      await lab?.teardown();
    });

    it('receivers on B and C end identical, and each relay puts onto its link one copy of what reached it', async () => {
      const src = makeSource(tmp.dir());
      const [a, b, c] = [lab.hosts[0]![0]!, lab.hosts[1]![0]!, lab.hosts[2]![0]!];
      const [r1, r2] = [lab.routers[0]!, lab.routers[1]!];
      const l = asLab(lab, [a.ns, b.ns, c.ns]);
      const sh = await startShare(l, 0, [src.dir], ['--bwlimit', '200M']);
      const relay1 = startRelay(lab, r1.ns, ['--upstream', r1.up, '--downstream', r1.down]);
      const relay2 = startRelay(lab, r2.ns, ['--upstream', r2.up, '--downstream', r2.down]);
      await wait(500);
      const before = {
        a: await lab.counters(a.ns, 'e0'),
        b: await lab.counters(r1.ns, r1.down),
        c: await lab.counters(r2.ns, r2.down),
        r2up: await lab.counters(r2.ns, r2.up),
      };
      const [rb, rc] = await Promise.all([
        runSync(l, 1, ['-r', sh.roots[0]!.hash, path.join(tmp.dir(), 'b')]),
        runSync(l, 2, ['-r', sh.roots[0]!.hash, path.join(tmp.dir(), 'c')]),
      ]);
      const after = {
        a: await lab.counters(a.ns, 'e0'),
        b: await lab.counters(r1.ns, r1.down),
        c: await lab.counters(r2.ns, r2.down),
        r2up: await lab.counters(r2.ns, r2.up),
      };
      const [s1, s2] = await Promise.all([relay1.stop(), relay2.stop()]);
      await sh.stop();
      expect(rb.code, rb.stderr + relay1.stderr()).toBe(0);
      expect(rc.code, rc.stderr + relay2.stderr()).toBe(0);
      expectSame(src.dir, path.join(tmp.dir(), 'b'));
      expectSame(src.dir, path.join(tmp.dir(), 'c'));
      // What went onto each link: the share on A, relay 1 on B, relay 2 on C. A relay puts onto its link exactly
      // one copy of what arrived upstream (once per datagram, whatever the number of listeners and tiers below),
      // so no link carries more than the one above it; MLD and neighbour discovery are the slack.
      const onA = after.a.tx_bytes - before.a.tx_bytes;
      const onB = after.b.tx_bytes - before.b.tx_bytes;
      const onC = after.c.tx_bytes - before.c.tx_bytes;
      const detail = `A ${onA}, B ${onB}, C ${onC} bytes for a ${src.bytes}-byte source; relay 1 ${JSON.stringify(s1)}; relay 2 ${JSON.stringify(s2)}`;
      for (const s of [s1, s2]) expect(s.forwarded.datagrams + s.dropped, detail).toBe(s.received.datagrams);
      expect(onB, detail).toBeLessThan(onA * 1.02 + 50_000);
      expect(onC, detail).toBeLessThan(onB * 1.02 + 50_000);
      expect(onC, detail).toBeGreaterThan(src.bytes);
      // The share's own cost of two listeners that do not move in step (repair rounds for the later one): about
      // 1.2-1.5 copies on a quiet machine (bench/tier-bench.js), bounded loosely here for loaded CI machines.
      expect(onA, detail).toBeLessThan(src.bytes * 3);
      // Relay 2 sends nothing back onto B but its MLD reports.
      expect(after.r2up.tx_bytes - before.r2up.tx_bytes, detail).toBeLessThan(s2.joins * 400 + 20_000);
    }, 180_000);
  });
});

describeUnless(firstReason(why, smcrouteWhy, skipReason(['tcpdump']), mrouteReason()), 'kernel multicast forwarding through a router (needs root, smcroute and tcpdump)', () => {
  let lab: RoutedLab;
  const tmp = useTempDir('kfwd-');
  let smc: ChildProcess | undefined;
  beforeAll(async () => {
    expectBuilt(['share/share']);
    lab = await createRoutedLab({ hosts: [1, 1], routers: [[0, 1]] });
    const r = lab.routers[0]!;
    const conf = path.join(tmp.dir(), 'smcroute.conf');
    writeFileSync(conf, `phyint ${r.up} enable\nphyint ${r.down} enable\nmroute from ${r.up} group ff1e::/16 to ${r.down}\n`);
    const id = `${lab.prefix}smc`;
    smc = lab.spawn(r.ns, ['smcrouted', '-n', '-N', '-f', conf, '-i', id, '-u', path.join(tmp.dir(), 'smc.sock'), '-P', path.join(tmp.dir(), 'smc.pid')]);
    await wait(1000);
    expect(smc.exitCode).toBeNull();
  }, 60_000);
  afterAll(async () => {
    await lab?.teardown();
  });

  const capture = (ns: string) => {
    const p = lab.spawn(ns, ['tcpdump', '-i', 'e0', '-n', '-v', '-c', '3', 'udp port 4242']);
    let out = '';
    p.stdout?.on('data', (d) => (out += d));
    return { done: new Promise<string>((resolve) => p.once('exit', () => resolve(out))), stop: () => p.kill('SIGTERM') };
  };

  it('with --hops 2 a push share reaches the second subnet through the kernel, hop limit 2 on the wire and 1 after the router', async () => {
    const src = makeSource(tmp.dir());
    const [a, b] = [lab.hosts[0]![0]!, lab.hosts[1]![0]!];
    const l = asLab(lab, [a.ns, b.ns]);
    const capA = capture(a.ns);
    const capB = capture(b.ns);
    const sh = await startShare(l, 0, [src.dir], ['--push', '--push-interval', '1', '--hops', '2', '--bwlimit', '200M']);
    const dest = path.join(tmp.dir(), 'dest');
    const r = await runSync(l, 1, ['-r', sh.roots[0]!.hash, dest]);
    await sh.stop();
    capA.stop();
    capB.stop();
    const [onA, onB] = await Promise.all([capA.done, capB.done]);
    expect(r.code, r.stderr).toBe(0);
    expectSame(src.dir, dest);
    expect(onA).toMatch(/hlim 2\b/);
    expect(onA).not.toMatch(/hlim (?!2\b)\d+/);
    expect(onB).toMatch(/hlim 1\b/);
  }, 120_000);

  it('the relay as MLD proxy in the router (--kernel-forwarding): an MLD-triggered share on the first subnet serves the second, the kernel copying', async () => {
    const src = makeSource(path.join(tmp.dir(), 'proxy'));
    const [a, b] = [lab.hosts[0]![0]!, lab.hosts[1]![0]!];
    const l = asLab(lab, [a.ns, b.ns]);
    const r0 = lab.routers[0]!;
    const relay = startRelay(lab, r0.ns, ['--kernel-forwarding', '--upstream', r0.up, '--downstream', r0.down]);
    await wait(500);
    // No --push: the share sends only what MLD on its own link asks for, which is the relay's upstream joins.
    const sh = await startShare(l, 0, [src.dir], ['--hops', '2', '--bwlimit', '200M']);
    const before = await lab.counters(r0.ns, r0.down);
    const dest = path.join(tmp.dir(), 'proxied');
    const r = await runSync(l, 1, ['-r', sh.roots[0]!.hash, dest]);
    const after = await lab.counters(r0.ns, r0.down);
    const st = await relay.stop();
    await sh.stop();
    expect(r.code, r.stderr + relay.stderr()).toBe(0);
    expectSame(src.dir, dest);
    expect(st.joins).toBeGreaterThan(0);
    // The relay copied nothing: what crossed the router, the kernel forwarded.
    expect(st.forwarded.datagrams).toBe(0);
    expect(after.tx_bytes - before.tx_bytes).toBeGreaterThan(src.bytes);
  }, 120_000);

  it('with --hops 1 nothing crosses the router', async () => {
    const src = makeSource(path.join(tmp.dir(), 'one'));
    const [a, b] = [lab.hosts[0]![0]!, lab.hosts[1]![0]!];
    const l = asLab(lab, [a.ns, b.ns]);
    const r0 = lab.routers[0]!;
    const before = await lab.counters(r0.ns, r0.down);
    const sh = await startShare(l, 0, [src.dir], ['--push', '--push-interval', '1', '--hops', '1', '--bwlimit', '200M']);
    const r = await runSync(l, 1, ['-r', '--timeout', '4', sh.roots[0]!.hash, path.join(tmp.dir(), 'none')]);
    const after = await lab.counters(r0.ns, r0.down);
    await sh.stop();
    expect(r.code).toBe(3);
    // Not one datagram of data went onto the second link (MLD and neighbour discovery are small).
    expect(after.tx_bytes - before.tx_bytes).toBeLessThan(20_000);
  }, 60_000);
});
