// @ts-check
/**
 * The network lab: hosts on a switch, built from Linux network namespaces. The one implementation, used by the
 * tests (through test/lab.ts, which re-exports it with its types) and by the benchmarks (bench/*.js import it
 * directly): plain JavaScript with JSDoc types, so that `node` runs it without a TypeScript loader and
 * `tsc -p tsconfig.test.json` checks it.
 *
 * Nothing is created in the root namespace, so nothing a test or benchmark sends can reach the machine's real
 * uplink.
 *
 *   import { createLab, skipReason } from './lab.js';          // in test/
 *   import { describeUnless } from './skip.js';
 *   const why = skipReason();
 *   describeUnless(why, 'thing (needs root)', () => {   // skipped with its reason printed and counted
 *     let lab: Lab;
 *     beforeAll(async () => { lab = await createLab({ hosts: 2, snooping: true }); });
 *     afterAll(async () => { await lab?.teardown(); });
 *     ...
 *   });
 *
 * API
 *   isRoot: boolean
 *   skipReason(needs?: ('nft' | 'tc' | 'tcpdump')[]): string | undefined
 *       Why network-namespace labs cannot run here (not Linux, not root, no `ip`, namespaces refused, a needed
 *       tool missing), or undefined when they can. `nft` is always checked because setLoss needs it.
 *   createLab({ hosts, snooping?, querier?, bandwidth?, ula? }): Promise<Lab>
 *       hosts      number of host namespaces (1..50)
 *       snooping   bridge MLD snooping (mcast_snooping 1); default false (the bridge floods every group)
 *       querier    false (default) | 'v1' | 'v2': make the bridge itself an MLD querier of that version
 *       bandwidth  tbf rate such as '1gbit', applied to both ends of every host link; default none
 *       ula        also give every host a ULA address fd00:<random>::<i+1>/64 on e0 (for tools that want a
 *                  routable source address, such as uftp's -I); default false
 *   Lab
 *       prefix     unique per lab; every namespace name starts with it ($LCSYNC_LAB_PREFIX, default `lc`,
 *                  then the PID and random hex)
 *       switchNs   namespace holding bridge br0; host i is attached by switch port `p<i>`
 *       hosts      LabHost[]: { ns, ifname: 'e0', index, port: 'p<i>', linkLocal: 'fe80::...', ula? }
 *       setLoss(host, percent, dir = 'both')   random loss with nftables in the switch; 'to' = frames
 *                  towards the host, 'from' = frames sent by the host. 0 removes that host's rules.
 *       exec(host | 'switch', argv, { timeoutMs = 30000, input?, env? })  -> { code, stdout, stderr }
 *                  never throws on a non-zero exit (code is -1 if it could not start or timed out)
 *       spawn(host | 'switch', argv, { env?, cwd? }) -> ChildProcess   stdin/stdout/stderr piped; the leader of
 *                  a process group of its own, tracked and stopped with its group on teardown
 *       counters(host)  -> { tx_packets, tx_bytes, rx_packets, rx_bytes } of the host's e0
 *       txBytes(host)   tx_bytes of the host's e0, read inside its namespace (cheap enough to poll)
 *       udpRcvbufErrors(host)  UDP datagrams the host's kernel dropped on a full socket receive buffer
 *       teardown()  SIGTERM every spawned process group, SIGKILL what is left after 1 s, delete every
 *                  namespace of the lab. Safe to call twice; also run best-effort on process exit.
 *   killGroup(child, signal)   signal the process group a spawned child leads (never anything else)
 *
 * Processes are spawned detached (a process group of their own), so that a wrapper (`sh -c`, /usr/bin/time,
 * setpriv) and what it runs are stopped together, and nothing else on the machine is touched.
 */
import { spawn as nodeSpawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** @typedef {import('node:child_process').ChildProcess} ChildProcess */

/**
 * @typedef {object} LabHost
 * @property {string} ns
 * @property {string} ifname
 * @property {number} index
 * @property {string} port The switch port (in switchNs) this host's e0 is wired to.
 * @property {string} linkLocal The host's fe80:: address on e0 (no zone suffix), already past duplicate
 *   address detection.
 * @property {string} [ula] The host's ULA on e0 when the lab was built with `ula: true`.
 */

/**
 * @typedef {object} ExecResult
 * @property {number} code
 * @property {string} stdout
 * @property {string} stderr
 */

/**
 * @typedef {object} ExecOptions
 * @property {number} [timeoutMs]
 * @property {string | Buffer} [input]
 * @property {NodeJS.ProcessEnv} [env]
 */

/**
 * @typedef {object} SpawnOptions
 * @property {NodeJS.ProcessEnv} [env]
 * @property {string} [cwd]
 */

/**
 * @typedef {object} Counters
 * @property {number} tx_packets
 * @property {number} tx_bytes
 * @property {number} rx_packets
 * @property {number} rx_bytes
 */

/** @typedef {'to' | 'from' | 'both'} LossDir */
/** @typedef {number | 'switch'} Where */

/**
 * @typedef {object} Lab
 * @property {string} prefix
 * @property {string} switchNs
 * @property {LabHost[]} hosts
 * @property {(host: number, percent: number, dir?: LossDir) => Promise<void>} setLoss
 * @property {(host: Where, cmd: string[], opts?: ExecOptions) => Promise<ExecResult>} exec
 * @property {(host: Where, cmd: string[], opts?: SpawnOptions) => ChildProcess} spawn
 * @property {(host: number) => Promise<Counters>} counters
 * @property {(host: number) => Promise<number>} txBytes
 * @property {(host: number) => Promise<number>} udpRcvbufErrors
 * @property {() => Promise<void>} teardown
 */

/**
 * @typedef {object} LabOptions
 * @property {number} hosts
 * @property {boolean} [snooping]
 * @property {false | 'v1' | 'v2'} [querier]
 * @property {string} [bandwidth]
 * @property {boolean} [ula]
 */

/** @type {boolean} */
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** How long teardown waits after SIGTERM before SIGKILL: a share leaves its groups and removes its socket. */
const GRACE_MS = 1000;

// ---------------------------------------------------------------------------------------------------------
// Environment checks

/** @type {string | undefined | null} null: not probed yet */
let cachedProbe = null;

/** @param {string} bin @param {string[]} args */
function hasTool(bin, args) {
  const r = spawnSync(bin, args, { stdio: 'ignore', timeout: 5000 });
  return r.error === undefined && r.status !== null;
}

/**
 * @param {('nft' | 'tc' | 'tcpdump')[]} [needs]
 * @returns {string | undefined}
 */
export function skipReason(needs = []) {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (!isRoot) return 'needs root to create network namespaces';
  if (cachedProbe === null) cachedProbe = probeNamespaces();
  if (cachedProbe !== undefined) return cachedProbe;
  for (const tool of new Set(['nft', ...needs])) {
    const args = tool === 'tc' ? ['-V'] : ['--version'];
    if (!hasTool(tool, args)) return `needs \`${tool}\` (not found on PATH)`;
  }
  return undefined;
}

/** @returns {string | undefined} */
function probeNamespaces() {
  if (!hasTool('ip', ['-V'])) return 'needs `ip` (iproute2) on PATH';
  // Creating and deleting one empty namespace proves we may (root in a restricted container may not).
  const name = `lcprobe${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8', timeout: 5000 });
  if (add.status !== 0) return `cannot create network namespaces: ${(add.stderr ?? '').trim() || 'ip netns add failed'}`;
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore', timeout: 5000 });
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Process helpers

/**
 * Signal the process group led by a child spawned here (detached), never anything else.
 * @param {ChildProcess} child
 * @param {NodeJS.Signals} signal
 */
export function killGroup(child, signal) {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Group already gone.
  }
}

/** @param {number} pid */
function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {string[]} argv
 * @param {ExecOptions} [opts]
 * @param {Set<ChildProcess>} [track]
 * @returns {Promise<ExecResult>}
 */
export function run(argv, opts = {}, track) {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    /** @type {ChildProcess} */
    let child;
    try {
      child = nodeSpawn(argv[0] ?? '', argv.slice(1), { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      resolve({ code: -1, stdout: '', stderr: String(err) });
      return;
    }
    track?.add(child);
    /** @type {Buffer[]} */
    const out = [];
    /** @type {Buffer[]} */
    const err = [];
    child.stdout?.on('data', (/** @type {Buffer} */ d) => out.push(d));
    child.stderr?.on('data', (/** @type {Buffer} */ d) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
    let spawnError = '';
    child.on('error', (e) => {
      spawnError = `\n${e}`;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      track?.delete(child);
      resolve({
        code: timedOut || code === null ? -1 : code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + spawnError + (timedOut ? `\ntimed out after ${timeoutMs} ms` : ''),
      });
    });
  });
}

/**
 * @param {string[]} argv
 * @param {ExecOptions} [opts]
 * @returns {Promise<string>}
 */
async function must(argv, opts) {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`lab: \`${argv.join(' ')}\` failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------------------
// Exit hook: whatever a crashed test or benchmark leaves behind is removed when its process ends.

/** @typedef {{ namespaces: string[], children: Set<ChildProcess> }} LiveLab */
/** @type {Set<LiveLab>} */
const liveLabs = new Set();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) {
      for (const c of lab.children) killGroup(c, 'SIGKILL');
      for (const ns of [...lab.namespaces].reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
    }
    liveLabs.clear();
  });
}

// ---------------------------------------------------------------------------------------------------------

/**
 * @param {LabOptions} opts
 * @returns {Promise<Lab>}
 */
export async function createLab(opts) {
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 50) throw new Error('lab: hosts must be 1..50');
  const why = skipReason();
  if (why) throw new Error(`lab: ${why}`);

  const tag = process.env.LCSYNC_LAB_PREFIX || 'lc';
  const prefix = `${tag}${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  const switchNs = `${prefix}sw`;
  /** @type {LiveLab} */
  const live = { namespaces: [], children: new Set() };
  liveLabs.add(live);
  installExitHook();

  /** @param {string} ns @param {string[]} argv */
  const inNs = (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv];
  /** @type {LabHost[]} */
  const hosts = [];
  /** @param {Where} where */
  const nsOf = (where) => {
    if (where === 'switch') return switchNs;
    const h = hosts[where];
    if (!h) throw new Error(`lab: no host ${where}`);
    return h.ns;
  };
  /** @param {number} host */
  const hostOf = (host) => {
    const h = hosts[host];
    if (!h) throw new Error(`lab: no host ${host}`);
    return h;
  };
  /** @type {Map<number, { to: number, from: number }>} */
  const loss = new Map();
  let tornDown = false;

  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    const kids = [...live.children];
    for (const c of kids) killGroup(c, 'SIGTERM');
    const deadline = Date.now() + GRACE_MS;
    const left = () => kids.some((c) => c.pid !== undefined && groupAlive(c.pid));
    while (Date.now() < deadline && left()) await sleep(25);
    for (const c of kids) killGroup(c, 'SIGKILL');
    // Deleting a namespace that holds one end of a veth destroys the pair; the switch goes last.
    for (const ns of [...live.namespaces].reverse()) await run(['ip', 'netns', 'del', ns], { timeoutMs: 10_000 });
    live.children.clear();
    liveLabs.delete(live);
  };

  try {
    await must(['ip', 'netns', 'add', switchNs]);
    live.namespaces.push(switchNs);
    await must(['ip', '-n', switchNs, 'link', 'set', 'lo', 'up']);
    await must(['ip', '-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', opts.snooping ? '1' : '0']);
    // br0 keeps its link-local address without DAD: a bridge querier sends from it.
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.br0.accept_dad=0']));
    // Switch ports are plain wires: no IPv6 of their own, so they send no MLD or router solicitations.
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']));
    await must(['ip', '-n', switchNs, 'link', 'set', 'br0', 'up']);
    const net = randomBytes(2).toString('hex');

    for (let i = 0; i < opts.hosts; i++) {
      const ns = `${prefix}h${i}`;
      const port = `p${i}`;
      await must(['ip', 'netns', 'add', ns]);
      live.namespaces.push(ns);
      // DAD off before e0 exists: its addresses are usable the moment the link is up.
      await must(inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']));
      await must(['ip', 'link', 'add', 'e0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'master', 'br0']);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'e0', 'up']);
      // A veth hands a UDP GSO message (the share sends runs of datagrams as one) to its peer whole, so the
      // switch's loss, duplication and reordering rules and every packet counter would act on runs of up to 64
      // datagrams, where a NIC puts each datagram on the wire as a frame of its own. Without the offload the
      // sending host's kernel cuts such a message into datagrams before the link, as a NIC would. Best effort:
      // without ethtool only GSO messages differ.
      await run(inNs(ns, ['ethtool', '-K', 'e0', 'tx-udp-segmentation', 'off']));
      /** @type {string | undefined} */
      let ula;
      if (opts.ula) {
        ula = `fd00:${net}::${(i + 1).toString(16)}`;
        await must(['ip', '-n', ns, '-6', 'addr', 'add', `${ula}/64`, 'dev', 'e0', 'nodad']);
      }
      if (opts.bandwidth) {
        // Both ends: the host's sending side and the switch's side towards the host.
        for (const [n, dev] of [[ns, 'e0'], [switchNs, port]]) {
          await must(inNs(n, ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', opts.bandwidth, 'burst', '64kb', 'latency', '10ms']));
        }
      }
      /** @type {LabHost} */
      const host = { ns, ifname: 'e0', index: i, port, linkLocal: '' };
      if (ula !== undefined) host.ula = ula;
      hosts.push(host);
    }
    for (const h of hosts) h.linkLocal = await waitLinkLocal(h.ns, 'e0');
    if (opts.querier) {
      // The bridge queries from br0's link-local address (kept, DAD off). Turned on last, with ports and address
      // in place, so that its first query goes out now: one attempted earlier fails for want of a source address
      // and the next startup query would come only 31 s later.
      await waitLinkLocal(switchNs, 'br0');
      const version = opts.querier === 'v1' ? '1' : '2';
      await must(['ip', '-n', switchNs, 'link', 'set', 'br0', 'type', 'bridge', 'mcast_mld_version', version, 'mcast_querier', '1']);
    }
  } catch (err) {
    await teardown();
    throw err;
  }

  const applyLoss = async () => {
    /** @type {string[]} */
    const rules = [];
    for (const [i, l] of [...loss.entries()].sort((a, b) => a[0] - b[0])) {
      const port = hostOf(i).port;
      // numgen values are 0..99, so "< 100" is out of range for nft: total loss is a plain drop.
      /** @param {string} match @param {number} pct */
      const rule = (match, pct) => `    ${match} "${port}" ${pct >= 100 ? '' : `numgen random mod 100 < ${pct} `}drop`;
      if (l.to > 0) rules.push(rule('oifname', l.to));
      if (l.from > 0) rules.push(rule('iifname', l.from));
    }
    // "table; delete table" makes the delete valid whether or not the table exists, all in one transaction.
    const script = [
      'table bridge loss',
      'delete table bridge loss',
      'table bridge loss {',
      '  chain f {',
      '    type filter hook forward priority 0; policy accept;',
      ...rules,
      '  }',
      '}',
      '',
    ].join('\n');
    await must(inNs(switchNs, ['nft', '-f', '-']), { input: script });
  };

  /** @param {number} host @param {string} file */
  const readInNs = async (host, file) => must(inNs(hostOf(host).ns, ['cat', file]));

  /** @type {Lab} */
  const lab = {
    prefix,
    switchNs,
    hosts,
    async setLoss(host, percent, dir = 'both') {
      hostOf(host);
      if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new Error('lab: loss percent must be 0..100');
      const l = loss.get(host) ?? { to: 0, from: 0 };
      if (dir === 'to' || dir === 'both') l.to = percent;
      if (dir === 'from' || dir === 'both') l.from = percent;
      loss.set(host, l);
      await applyLoss();
    },
    exec(where, argv, o) {
      if (tornDown) return Promise.resolve({ code: -1, stdout: '', stderr: 'lab torn down' });
      return run(inNs(nsOf(where), argv), o, live.children);
    },
    spawn(where, argv, o = {}) {
      if (tornDown) throw new Error('lab: torn down');
      // `ip netns exec` execs the command in place, so child.pid is the command's own PID (and group leader).
      const child = nodeSpawn('ip', inNs(nsOf(where), argv).slice(1), {
        env: o.env ?? process.env,
        cwd: o.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      });
      live.children.add(child);
      child.on('exit', () => live.children.delete(child));
      child.on('error', () => live.children.delete(child));
      return child;
    },
    async counters(host) {
      const h = hostOf(host);
      const out = await must(['ip', '-j', '-s', '-n', h.ns, 'link', 'show', 'dev', h.ifname]);
      /** @type {{ stats64?: { rx: { bytes: number, packets: number }, tx: { bytes: number, packets: number } } }[]} */
      const parsed = JSON.parse(out);
      const s = parsed[0]?.stats64;
      if (!s) throw new Error(`lab: no statistics for ${h.ifname} in ${h.ns}`);
      return { tx_packets: s.tx.packets, tx_bytes: s.tx.bytes, rx_packets: s.rx.packets, rx_bytes: s.rx.bytes };
    },
    async txBytes(host) {
      const out = await readInNs(host, `/sys/class/net/${hostOf(host).ifname}/statistics/tx_bytes`);
      const v = Number(out.trim());
      if (!Number.isSafeInteger(v)) throw new Error(`lab: bad tx_bytes ${JSON.stringify(out)}`);
      return v;
    },
    async udpRcvbufErrors(host) {
      const m = /^Udp6RcvbufErrors\s+(\d+)/m.exec(await readInNs(host, '/proc/net/snmp6'));
      if (!m) throw new Error('lab: no Udp6RcvbufErrors in /proc/net/snmp6');
      return Number(m[1]);
    },
    teardown,
  };
  return lab;
}

/**
 * Wait (at most 10 s) for a non-tentative fe80:: address on `dev`, and return it.
 * @param {string} ns
 * @param {string} dev
 * @returns {Promise<string>}
 */
async function waitLinkLocal(ns, dev) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = await must(['ip', '-j', '-6', '-n', ns, 'addr', 'show', 'dev', dev]);
    /** @type {{ addr_info?: { local?: string, scope?: string, tentative?: boolean }[] }[]} */
    const parsed = JSON.parse(out);
    const ll = parsed[0]?.addr_info?.find((a) => a.scope === 'link' && a.local?.startsWith('fe80') && !a.tentative);
    if (ll?.local) return ll.local;
    if (Date.now() > deadline) throw new Error(`lab: no usable link-local address on ${dev} in ${ns} after 10 s`);
    await sleep(50);
  }
}
