/**
 * Network lab for benchmarks: hosts on a switch, built from Linux network namespaces.
 * Plain JavaScript so that bench scripts run with `node` alone; same recipe as test/lab.ts.
 *
 * Nothing is created in the root namespace, so nothing a benchmark sends can reach the machine's real uplink.
 *
 *   createLab({ hosts, snooping = true, bandwidth = '1gbit' | undefined, ula = true }) -> Promise<Lab>
 *   Lab
 *     prefix, switchNs, hosts: [{ ns, index, port: 'p<i>', ula: 'fd00:<...>::<i+1>' | undefined }]
 *     setLoss(host, percent)      random loss in the switch on port p<host>, both directions (0 removes it)
 *     exec(host | 'switch', argv, { timeoutMs = 30000, input }) -> { code, stdout, stderr }  (code -1: timeout)
 *     spawn(host, argv) -> ChildProcess   own process group; killed by PID on teardown
 *     txBytes(host)                tx_bytes of the host's e0, read inside its namespace
 *     udpRcvbufErrors(host)        datagrams dropped on a full socket receive buffer (Udp6RcvbufErrors)
 *     teardown()                   SIGTERM, then SIGKILL, every spawned process group; delete every namespace
 *   peakRssKiB(pid) -> number | undefined   VmHWM of a live process, in KiB
 *   cpuSeconds(pid) -> number | undefined   user + system CPU time of a live process so far
 *   killGroup(child, signal)      signal the process group a spawned child leads
 *
 * Processes are spawned detached (a process group of their own), so a wrapper such as /usr/bin/time and the
 * command it runs are stopped together, and nothing else on the machine is touched.
 */
import { spawn as nodeSpawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Signal the process group led by a child we spawned detached (never anything else). */
export function killGroup(child, signal) {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Group already gone.
  }
}

/** Peak resident set size (VmHWM) of a live process in KiB, or undefined once it is gone. */
export function peakRssKiB(pid) {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

let clkTck;
/** CPU time (user + system) a live process has used so far, in seconds, or undefined once it is gone. */
export function cpuSeconds(pid) {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 });
    clkTck = Number(r.stdout?.trim()) || 100;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "pid (comm) ": state is field 3, utime 14 and stime 15 (comm may contain spaces).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks / clkTck : undefined;
  } catch {
    return undefined;
  }
}

function run(argv, { timeoutMs = 30_000, input, track } = {}) {
  return new Promise((resolve) => {
    let child;
    try {
      child = nodeSpawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      resolve({ code: -1, stdout: '', stderr: String(err) });
      return;
    }
    track?.add(child);
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
    let spawnError = '';
    child.on('error', (e) => (spawnError = `\n${e}`));
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

async function must(argv, opts) {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`lab: \`${argv.join(' ')}\` failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

const liveLabs = new Set();
let exitHook = false;

export async function createLab({ hosts: n, snooping = true, bandwidth = '1gbit', ula = true }) {
  if (!Number.isInteger(n) || n < 1 || n > 50) throw new Error('lab: hosts must be 1..50');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) throw new Error('lab: needs root');
  const prefix = `lcb${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const switchNs = `${prefix}sw`;
  const namespaces = [];
  const children = new Set();
  const live = { namespaces, children };
  liveLabs.add(live);
  if (!exitHook) {
    exitHook = true;
    // Last resort if the script dies between createLab and teardown.
    process.on('exit', () => {
      for (const l of liveLabs) {
        for (const c of l.children) killGroup(c, 'SIGKILL');
        for (const ns of [...l.namespaces].reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      }
    });
  }
  const inNs = (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv];
  const hosts = [];
  const nsOf = (where) => {
    if (where === 'switch') return switchNs;
    const h = hosts[where];
    if (!h) throw new Error(`lab: no host ${where}`);
    return h.ns;
  };
  const loss = new Map();
  let tornDown = false;

  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    const kids = [...children];
    for (const c of kids) killGroup(c, 'SIGTERM');
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline && kids.some((c) => c.pid !== undefined && alive(c.pid))) await sleep(25);
    for (const c of kids) killGroup(c, 'SIGKILL');
    for (const ns of [...namespaces].reverse()) await run(['ip', 'netns', 'del', ns], { timeoutMs: 10_000 });
    children.clear();
    liveLabs.delete(live);
  };

  try {
    await must(['ip', 'netns', 'add', switchNs]);
    namespaces.push(switchNs);
    await must(['ip', '-n', switchNs, 'link', 'set', 'lo', 'up']);
    await must(['ip', '-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', snooping ? '1' : '0']);
    // Switch ports are plain wires: no IPv6 of their own, so they send no MLD or router solicitations.
    await must(inNs(switchNs, ['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']));
    await must(['ip', '-n', switchNs, 'link', 'set', 'br0', 'up']);
    const net = randomBytes(2).toString('hex');
    for (let i = 0; i < n; i++) {
      const ns = `${prefix}h${i}`;
      const port = `p${i}`;
      await must(['ip', 'netns', 'add', ns]);
      namespaces.push(ns);
      // DAD off before e0 exists: addresses are usable the moment the link is up.
      await must(inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']));
      await must(['ip', 'link', 'add', 'e0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'master', 'br0']);
      await must(['ip', '-n', switchNs, 'link', 'set', port, 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      await must(['ip', '-n', ns, 'link', 'set', 'e0', 'up']);
      let addr;
      if (ula) {
        addr = `fd00:${net}::${(i + 1).toString(16)}`;
        await must(['ip', '-n', ns, '-6', 'addr', 'add', `${addr}/64`, 'dev', 'e0', 'nodad']);
      }
      if (bandwidth) {
        // Both ends: the host's sending side and the switch's side towards the host.
        for (const [nsx, dev] of [[ns, 'e0'], [switchNs, port]]) {
          await must(inNs(nsx, ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', bandwidth, 'burst', '64kb', 'latency', '10ms']));
        }
      }
      hosts.push({ ns, index: i, port, ula: addr });
    }
    for (const h of hosts) await waitLinkLocal(h.ns);
  } catch (err) {
    await teardown();
    throw err;
  }

  const applyLoss = async () => {
    const rules = [];
    for (const [i, pct] of [...loss.entries()].sort((a, b) => a[0] - b[0])) {
      if (pct <= 0) continue;
      const port = hosts[i].port;
      // numgen values are 0..99, so 100% is a plain drop.
      const m = pct >= 100 ? '' : `numgen random mod 100 < ${pct} `;
      rules.push(`    oifname "${port}" ${m}drop`, `    iifname "${port}" ${m}drop`);
    }
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

  return {
    prefix,
    switchNs,
    hosts,
    async setLoss(host, percent) {
      if (!hosts[host]) throw new Error(`lab: no host ${host}`);
      if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new Error('lab: loss percent must be 0..100');
      loss.set(host, percent);
      await applyLoss();
    },
    exec(where, argv, opts = {}) {
      if (tornDown) return Promise.resolve({ code: -1, stdout: '', stderr: 'lab torn down' });
      return run(inNs(nsOf(where), argv), { ...opts, track: children });
    },
    spawn(where, argv) {
      if (tornDown) throw new Error('lab: torn down');
      // `ip netns exec` execs the command in place, so child.pid is the command's own PID (and group leader).
      const child = nodeSpawn('ip', inNs(nsOf(where), argv).slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      children.add(child);
      child.on('exit', () => children.delete(child));
      child.on('error', () => children.delete(child));
      return child;
    },
    async txBytes(host) {
      const out = await must(inNs(nsOf(host), ['cat', '/sys/class/net/e0/statistics/tx_bytes']));
      const v = Number(out.trim());
      if (!Number.isSafeInteger(v)) throw new Error(`lab: bad tx_bytes ${JSON.stringify(out)}`);
      return v;
    },
    /** UDP datagrams the host's kernel dropped because a socket's receive buffer was full (/proc/net/snmp6). */
    async udpRcvbufErrors(host) {
      const out = await must(inNs(nsOf(host), ['cat', '/proc/net/snmp6']));
      const m = /^Udp6RcvbufErrors\s+(\d+)/m.exec(out);
      if (!m) throw new Error('lab: no Udp6RcvbufErrors in /proc/net/snmp6');
      return Number(m[1]);
    },
    teardown,
  };
}

/** Wait (at most 10 s) for a non-tentative fe80:: address on e0. */
async function waitLinkLocal(ns) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = await must(['ip', '-j', '-6', '-n', ns, 'addr', 'show', 'dev', 'e0']);
    const info = JSON.parse(out)[0]?.addr_info ?? [];
    if (info.some((a) => a.scope === 'link' && a.local?.startsWith('fe80') && !a.tentative)) return;
    if (Date.now() > deadline) throw new Error(`lab: no link-local address on e0 in ${ns} after 10 s`);
    await sleep(50);
  }
}
