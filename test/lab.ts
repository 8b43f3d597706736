/**
 * Network test lab: hosts on a switch, built from Linux network namespaces.
 *
 * Nothing is created in the root namespace, so nothing a test sends can reach the machine's real uplink.
 *
 *   import { createLab, skipReason } from './lab.js';
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
 *       Why network-namespace tests cannot run here (not root, no `ip`, namespaces refused, a needed tool
 *       missing), or undefined when they can. `nft` is always checked because setLoss needs it.
 *   createLab({ hosts, snooping?, querier?, bandwidth? }): Promise<Lab>
 *       hosts      number of host namespaces (1..50)
 *       snooping   bridge MLD snooping (mcast_snooping 1); default false (the bridge floods every group)
 *       querier    false (default) | 'v1' | 'v2': make the bridge itself an MLD querier of that version
 *       bandwidth  tbf rate such as '1gbit', applied to both ends of every host link
 *   Lab
 *       prefix     unique per lab; every namespace name starts with it
 *       switchNs   namespace holding bridge br0; host i is attached by switch port `p<i>`
 *       hosts      LabHost[]: { ns, ifname: 'e0', index, port: 'p<i>', linkLocal: 'fe80::...' }
 *       setLoss(host, percent, dir = 'both')   random loss with nftables in the switch; 'to' = frames
 *                  towards the host, 'from' = frames sent by the host. 0 removes that host's rules.
 *       exec(host | 'switch', cmd, { timeoutMs = 30000, input?, env? })  -> { code, stdout, stderr }
 *                  never throws on a non-zero exit (code is -1 if it could not start or timed out)
 *       spawn(host | 'switch', cmd, { env?, cwd? }) -> ChildProcess   tracked; killed by PID on teardown
 *       counters(host)  -> { tx_packets, tx_bytes, rx_packets, rx_bytes } of the host's e0
 *       teardown()  SIGTERM then (after 500 ms) SIGKILL every spawned process by PID, delete every
 *                  namespace of the lab. Safe to call twice; also run best-effort on process exit.
 */
import { spawn as nodeSpawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const isRoot: boolean = typeof process.getuid === 'function' && process.getuid() === 0;

export interface LabHost {
  ns: string;
  ifname: string;
  index: number;
  /** The switch port (in switchNs) this host's e0 is wired to. */
  port: string;
  /** The host's fe80:: address on e0 (no zone suffix), already past duplicate address detection. */
  linkLocal: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
}

export interface Counters {
  tx_packets: number;
  tx_bytes: number;
  rx_packets: number;
  rx_bytes: number;
}

export type LossDir = 'to' | 'from' | 'both';
export type Where = number | 'switch';

export interface Lab {
  prefix: string;
  switchNs: string;
  hosts: LabHost[];
  setLoss(host: number, percent: number, dir?: LossDir): Promise<void>;
  exec(host: Where, cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  spawn(host: Where, cmd: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string }): ChildProcess;
  counters(host: number): Promise<Counters>;
  teardown(): Promise<void>;
}

export interface LabOptions {
  hosts: number;
  snooping?: boolean;
  querier?: false | 'v1' | 'v2';
  bandwidth?: string;
}

// ---------------------------------------------------------------------------------------------------------
// Environment checks

let cachedProbe: string | undefined | null = null;

function hasTool(bin: string, args: string[]): boolean {
  const r = spawnSync(bin, args, { stdio: 'ignore', timeout: 5000 });
  return r.error === undefined && r.status !== null;
}

export function skipReason(needs: ('nft' | 'tc' | 'tcpdump')[] = []): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (!isRoot) return 'needs root to create network namespaces';
  if (cachedProbe === null) cachedProbe = probeNamespaces();
  if (cachedProbe !== undefined) return cachedProbe;
  for (const tool of new Set(['nft', ...needs])) {
    const args = tool === 'tcpdump' ? ['--version'] : tool === 'tc' ? ['-V'] : ['--version'];
    if (!hasTool(tool, args)) return `needs \`${tool}\` (not found on PATH)`;
  }
  return undefined;
}

function probeNamespaces(): string | undefined {
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

function run(cmd: string[], opts: ExecOptions = {}, track?: Set<ChildProcess>): Promise<ExecResult> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = nodeSpawn(cmd[0]!, cmd.slice(1), { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: -1, stdout: '', stderr: String(err) });
      return;
    }
    track?.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) safeKill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
    let spawnError: string | undefined;
    child.on('error', (e) => {
      spawnError = String(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      track?.delete(child);
      const stderr = Buffer.concat(err).toString('utf8') + (spawnError ? `\n${spawnError}` : '') +
        (timedOut ? `\ntimed out after ${opts.timeoutMs ?? 30_000} ms` : '');
      resolve({ code: timedOut || code === null ? -1 : code, stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
  });
}

async function must(cmd: string[], opts?: ExecOptions): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new Error(`lab: \`${cmd.join(' ')}\` failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------
// Exit hook: whatever a crashed test leaves behind is removed when the test process ends.

interface LiveLab {
  namespaces: string[];
  children: Set<ChildProcess>;
}
const liveLabs = new Set<LiveLab>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) {
      for (const c of lab.children) if (c.pid !== undefined && c.exitCode === null) safeKill(c.pid, 'SIGKILL');
      for (const ns of lab.namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
    }
    liveLabs.clear();
  });
}

// ---------------------------------------------------------------------------------------------------------

export async function createLab(opts: LabOptions): Promise<Lab> {
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 50) throw new Error('lab: hosts must be 1..50');
  const why = skipReason();
  if (why) throw new Error(`lab: ${why}`);

  const prefix = `lc${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  const switchNs = `${prefix}sw`;
  const live: LiveLab = { namespaces: [], children: new Set() };
  liveLabs.add(live);
  installExitHook();

  const inNs = (ns: string, cmd: string[]) => ['ip', 'netns', 'exec', ns, ...cmd];
  const nsOf = (where: Where): string => {
    if (where === 'switch') return switchNs;
    const h = hosts[where];
    if (!h) throw new Error(`lab: no host ${where}`);
    return h.ns;
  };
  const hosts: LabHost[] = [];
  const loss = new Map<number, { to: number; from: number }>();
  let tornDown = false;

  const teardown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    const pids = [...live.children].map((c) => c.pid).filter((p): p is number => p !== undefined);
    for (const pid of pids) safeKill(pid, 'SIGTERM');
    const deadline = Date.now() + 500;
    while (Date.now() < deadline && pids.some(alive)) await sleep(25);
    for (const pid of pids) if (alive(pid)) safeKill(pid, 'SIGKILL');
    // Deleting a namespace that holds one end of a veth destroys the pair; the switch goes last.
    for (const ns of [...live.namespaces].reverse()) await run(['ip', 'netns', 'del', ns], { timeoutMs: 10_000 });
    live.children.clear();
    liveLabs.delete(live);
  };

  try {
    await must(['ip', 'netns', 'add', switchNs]);
    live.namespaces.push(switchNs);
    const snoop = opts.snooping ? '1' : '0';
    await must(['ip', '-n', switchNs, 'link', 'set', 'lo', 'up']);
    await must(['ip', '-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', snoop]);
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.br0.accept_dad=0']));
    // Switch ports are plain wires: no IPv6 of their own, so they send no MLD or router solicitations.
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']));
    await must(['ip', '-n', switchNs, 'link', 'set', 'br0', 'up']);

    for (let i = 0; i < opts.hosts; i++) {
      const ns = `${prefix}h${i}`;
      const port = `p${i}`;
      await must(['ip', 'netns', 'add', ns]);
      live.namespaces.push(ns);
      // DAD off before e0 exists: its link-local address is usable the moment the link is up.
      await must(inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']));
      await must(['ip', 'link', 'add', 'e0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'master', 'br0']);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'e0', 'up']);
      if (opts.bandwidth) {
        for (const [n, dev] of [[ns, 'e0'], [switchNs, port]] as const) {
          await must(['ip', 'netns', 'exec', n, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', opts.bandwidth,
            'burst', '64kb', 'latency', '10ms']);
        }
      }
      hosts.push({ ns, ifname: 'e0', index: i, port, linkLocal: '' });
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

  const applyLoss = async (): Promise<void> => {
    const rules: string[] = [];
    for (const [i, l] of [...loss.entries()].sort((a, b) => a[0] - b[0])) {
      const port = hosts[i]!.port;
      // numgen values are 0..99, so "< 100" is out of range for nft: total loss is a plain drop.
      const rule = (match: string, pct: number) =>
        `    ${match} "${port}" ${pct >= 100 ? '' : `numgen random mod 100 < ${pct} `}drop`;
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

  const lab: Lab = {
    prefix,
    switchNs,
    hosts,
    async setLoss(host, percent, dir = 'both') {
      if (!hosts[host]) throw new Error(`lab: no host ${host}`);
      if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new Error('lab: loss percent must be 0..100');
      const l = loss.get(host) ?? { to: 0, from: 0 };
      if (dir === 'to' || dir === 'both') l.to = percent;
      if (dir === 'from' || dir === 'both') l.from = percent;
      loss.set(host, l);
      await applyLoss();
    },
    exec(where, cmd, o) {
      if (tornDown) return Promise.resolve({ code: -1, stdout: '', stderr: 'lab torn down' });
      return run(inNs(nsOf(where), cmd), o, live.children);
    },
    spawn(where, cmd, o = {}) {
      if (tornDown) throw new Error('lab: torn down');
      const child = nodeSpawn('ip', inNs(nsOf(where), cmd).slice(1), {
        env: o.env ?? process.env,
        cwd: o.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      // `ip netns exec` execs the command in place, so child.pid is the command's own PID.
      live.children.add(child);
      child.on('exit', () => live.children.delete(child));
      child.on('error', () => live.children.delete(child));
      return child;
    },
    async counters(host) {
      const h = hosts[host];
      if (!h) throw new Error(`lab: no host ${host}`);
      const out = await must(['ip', '-j', '-s', '-n', h.ns, 'link', 'show', 'dev', h.ifname]);
      const parsed = JSON.parse(out) as { stats64?: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } } }[];
      const s = parsed[0]?.stats64;
      if (!s) throw new Error(`lab: no statistics for ${h.ifname} in ${h.ns}`);
      return { tx_packets: s.tx.packets, tx_bytes: s.tx.bytes, rx_packets: s.rx.packets, rx_bytes: s.rx.bytes };
    },
    teardown,
  };
  return lab;
}

/** Wait (at most 10 s) for a non-tentative fe80:: address on `dev`, and return it. */
async function waitLinkLocal(ns: string, dev: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = await must(['ip', '-j', '-6', '-n', ns, 'addr', 'show', 'dev', dev]);
    const parsed = JSON.parse(out) as { addr_info?: { local?: string; scope?: string; tentative?: boolean }[] }[];
    const ll = parsed[0]?.addr_info?.find((a) => a.scope === 'link' && a.local?.startsWith('fe80') && !a.tentative);
    if (ll?.local) return ll.local;
    if (Date.now() > deadline) throw new Error(`lab: no usable link-local address on ${dev} in ${ns} after 10 s`);
    await sleep(50);
  }
}
