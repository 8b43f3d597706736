// @ts-check
/**
 * A routed network lab: several links (subnets), each a bridge, with hosts on them and routers between them, all
 * network namespaces (nothing in the root namespace, so nothing reaches the machine's real uplink). Used by the
 * relay and kernel-forwarding tests (test/relay.root.test.ts) and the tier-latency benchmark (bench/tier-bench.js).
 *
 *   import { createRoutedLab } from '../scripts/routed-lab.js';
 *   const lab = await createRoutedLab({ hosts: [1, 1, 1], routers: [[0, 1], [1, 2]] });
 *   lab.hosts[1][0]   // the first host on link 1: { ns, ifname: 'e0', link: 1, ula, linkLocal }
 *   lab.routers[0]    // { ns, up: 'e0' (on link 0), down: 'e1' (on link 1), upLink: 0, downLink: 1 }
 *
 * API
 *   createRoutedLab({ hosts: number[], routers?: [number, number][], forwarding? }): Promise<RoutedLab>
 *       hosts       hosts per link (the number of links is hosts.length, 1..8; 0..20 hosts each)
 *       routers     [upLink, downLink] per router: its e0 is on upLink, its e1 on downLink (default none)
 *       forwarding  net.ipv6.conf.all.forwarding=1 in every router (default true)
 *   Every host and router interface gets a ULA fd<net>:<link>::<n>/64 (hosts n = 1.., routers n = 0xf0 + index),
 *   so multicast to wider than link scope leaves from a routable source. Bridges flood every group (no snooping).
 *   RoutedLab
 *       prefix       unique per lab ($LCSYNC_LAB_PREFIX, default `lc`, then `r`, the PID and random hex)
 *       switchNs     namespace holding the bridges br0..brN-1
 *       hosts        RoutedHost[][] per link
 *       routers      Router[]
 *       exec(ns, argv, opts?)   -> { code, stdout, stderr }, never throws (code -1: could not start or timed out)
 *       spawn(ns, argv, opts?)  -> ChildProcess, leader of its own process group, stopped on teardown
 *       counters(ns, dev)       -> { tx_packets, tx_bytes, rx_packets, rx_bytes } of that interface
 *       teardown()              stop every spawned group (SIGTERM, then SIGKILL after 1 s), delete the namespaces
 */
import { spawn as nodeSpawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { killGroup, run } from './lab.js';

/** @typedef {import('node:child_process').ChildProcess} ChildProcess */
/** @typedef {{ ns: string, ifname: string, link: number, index: number, ula: string, linkLocal: string }} RoutedHost */
/** @typedef {{ ns: string, up: string, down: string, upLink: number, downLink: number, upUla: string, downUla: string }} Router */
/** @typedef {{ code: number, stdout: string, stderr: string }} ExecResult */
/** @typedef {{ tx_packets: number, tx_bytes: number, rx_packets: number, rx_bytes: number }} Counters */
/**
 * @typedef {object} RoutedLab
 * @property {string} prefix
 * @property {string} switchNs
 * @property {RoutedHost[][]} hosts
 * @property {Router[]} routers
 * @property {(ns: string, argv: string[], opts?: { timeoutMs?: number, input?: string, env?: NodeJS.ProcessEnv }) => Promise<ExecResult>} exec
 * @property {(ns: string, argv: string[], opts?: { env?: NodeJS.ProcessEnv }) => ChildProcess} spawn
 * @property {(ns: string, dev: string) => Promise<Counters>} counters
 * @property {() => Promise<void>} teardown
 */

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @param {string[]} argv @param {{ input?: string }} [opts] */
async function must(argv, opts) {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`routed lab: \`${argv.join(' ')}\` failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** @param {string} ns @param {string} dev */
async function waitLinkLocal(ns, dev) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    /** @type {{ addr_info?: { local?: string, scope?: string, tentative?: boolean }[] }[]} */
    const parsed = JSON.parse(await must(['ip', '-j', '-6', '-n', ns, 'addr', 'show', 'dev', dev]));
    const ll = parsed[0]?.addr_info?.find((a) => a.scope === 'link' && a.local?.startsWith('fe80') && !a.tentative);
    if (ll?.local) return ll.local;
    if (Date.now() > deadline) throw new Error(`routed lab: no link-local address on ${dev} in ${ns} after 10 s`);
    await sleep(50);
  }
}

/** @type {Set<{ namespaces: string[], children: Set<ChildProcess> }>} */
const live = new Set();
let hooked = false;

/**
 * @param {{ hosts: number[], routers?: [number, number][], forwarding?: boolean }} opts
 * @returns {Promise<RoutedLab>}
 */
export async function createRoutedLab(opts) {
  const links = opts.hosts.length;
  const routerLinks = opts.routers ?? [];
  if (links < 1 || links > 8 || opts.hosts.some((n) => !Number.isInteger(n) || n < 0 || n > 20)) throw new Error('routed lab: 1..8 links of 0..20 hosts');
  for (const [a, b] of routerLinks) if (!(a >= 0 && a < links && b >= 0 && b < links && a !== b)) throw new Error('routed lab: a router joins two different links');
  const prefix = `${process.env.LCSYNC_LAB_PREFIX || 'lc'}r${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const switchNs = `${prefix}sw`;
  /** @type {{ namespaces: string[], children: Set<ChildProcess> }} */
  const state = { namespaces: [], children: new Set() };
  live.add(state);
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const l of live) {
        for (const c of l.children) killGroup(c, 'SIGKILL');
        for (const ns of [...l.namespaces].reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      }
    });
  }
  /** @param {string} ns @param {string[]} argv */
  const inNs = (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv];
  const net = randomBytes(1).toString('hex');
  /** @param {number} link @param {number} n */
  const ula = (link, n) => `fd${net}:${link}::${n.toString(16)}`;
  /** @type {RoutedHost[][]} */
  const hosts = [];
  /** @type {Router[]} */
  const routers = [];
  let torn = false;
  const teardown = async () => {
    if (torn) return;
    torn = true;
    const kids = [...state.children];
    for (const c of kids) killGroup(c, 'SIGTERM');
    const deadline = Date.now() + 1000;
    const alive = () => kids.some((c) => c.exitCode === null && c.signalCode === null);
    while (Date.now() < deadline && alive()) await sleep(25);
    for (const c of kids) killGroup(c, 'SIGKILL');
    for (const ns of [...state.namespaces].reverse()) await run(['ip', 'netns', 'del', ns], { timeoutMs: 10_000 });
    live.delete(state);
  };
  /** @param {string} ns */
  const addNs = async (ns) => {
    await must(['ip', 'netns', 'add', ns]);
    state.namespaces.push(ns);
    await must(inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']));
    await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  };
  let port = 0;
  /** @param {string} ns @param {string} dev @param {number} link @param {string} addr */
  const wire = async (ns, dev, link, addr) => {
    const p = `p${port++}`;
    await must(['ip', 'link', 'add', dev, 'netns', ns, 'type', 'veth', 'peer', 'name', p, 'netns', switchNs]);
    await must(['ip', '-n', switchNs, 'link', 'set', p, 'master', `br${link}`]);
    await must(['ip', '-n', switchNs, 'link', 'set', p, 'up']);
    await must(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    // As in lab.js: no UDP GSO runs on the veth, so counters see datagrams as a NIC would put them on the wire.
    await run(inNs(ns, ['ethtool', '-K', dev, 'tx-udp-segmentation', 'off']));
    await must(['ip', '-n', ns, '-6', 'addr', 'add', `${addr}/64`, 'dev', dev, 'nodad']);
  };
  try {
    await addNs(switchNs);
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']));
    for (let l = 0; l < links; l++) {
      await must(['ip', '-n', switchNs, 'link', 'add', `br${l}`, 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0']);
      await must(['ip', '-n', switchNs, 'link', 'set', `br${l}`, 'up']);
    }
    for (let l = 0; l < links; l++) {
      /** @type {RoutedHost[]} */
      const onLink = [];
      for (let i = 0; i < opts.hosts[l]; i++) {
        const ns = `${prefix}l${l}h${i}`;
        await addNs(ns);
        const addr = ula(l, i + 1);
        await wire(ns, 'e0', l, addr);
        onLink.push({ ns, ifname: 'e0', link: l, index: i, ula: addr, linkLocal: '' });
      }
      hosts.push(onLink);
    }
    for (const [r, [up, down]] of routerLinks.entries()) {
      const ns = `${prefix}r${r}`;
      await addNs(ns);
      const upUla = ula(up, 0xf0 + r);
      const downUla = ula(down, 0xf0 + r);
      await wire(ns, 'e0', up, upUla);
      await wire(ns, 'e1', down, downUla);
      if (opts.forwarding !== false) await must(inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']));
      routers.push({ ns, up: 'e0', down: 'e1', upLink: up, downLink: down, upUla, downUla });
    }
    for (const onLink of hosts) for (const h of onLink) h.linkLocal = await waitLinkLocal(h.ns, 'e0');
    for (const r of routers) {
      await waitLinkLocal(r.ns, 'e0');
      await waitLinkLocal(r.ns, 'e1');
    }
  } catch (err) {
    await teardown();
    throw err;
  }
  return {
    prefix,
    switchNs,
    hosts,
    routers,
    exec: (ns, argv, o) => run(inNs(ns, argv), o),
    spawn(ns, argv, o = {}) {
      const child = nodeSpawn('ip', ['netns', 'exec', ns, ...argv], { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      state.children.add(child);
      child.on('exit', () => state.children.delete(child));
      child.on('error', () => undefined);
      return child;
    },
    async counters(ns, dev) {
      const names = /** @type {const} */ (['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes']);
      const out = await must(inNs(ns, ['cat', ...names.map((n) => `/sys/class/net/${dev}/statistics/${n}`)]));
      const v = out.trim().split('\n').map(Number);
      return { tx_packets: v[0] ?? 0, tx_bytes: v[1] ?? 0, rx_packets: v[2] ?? 0, rx_bytes: v[3] ?? 0 };
    },
    teardown,
  };
}
