#!/usr/bin/env node
/**
 * Tier latency: how long a file takes to reach receivers one, two and three links away from the share, through a
 * chain of `lcsync relay`s, beside one receiver on the share's own link, in the same run.
 *
 *   npm run build && node bench/tier-bench.js [--size-mib 16] [--runs 3] [--bwlimit 200M]
 *
 * Needs root (network namespaces). Topology (scripts/routed-lab.js): links A, B, C; the share and three receivers
 * on A, one receiver on B and one on C; router 1 between A and B running `lcsync relay --upstream e0 --downstream
 * e1`, router 2 the same between B and C. Each run gets a fresh lab and a fresh random file, and three phases,
 * each with a freshly started share (the relays run throughout):
 *   1 tier, 1 receiver    one sync on A;
 *   1 tier, 3 receivers   three syncs on A at once;
 *   3 tiers               syncs on A, B and C at once (one receiver per tier).
 * Measured per phase: from starting the share (its indexing included) to each sync's exit, and the farthest
 * tier's; the bytes put onto each link (the share's tx on A, each relay's tx on its downstream link) over the
 * file size; the relays' CPU seconds (/proc/PID/stat). Medians over the runs; every received file is checked
 * against the source (sha256). The figures depend on the machine's load (printed): compare rows of one run.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { createRoutedLab } from '../scripts/routed-lab.js';
import { cpuSeconds } from './lab.js';
import { REPO, benchArgs, median, tail } from './common.js';

const { value, fail } = benchArgs('tier-bench', import.meta.url, { valued: ['--size-mib', '--runs', '--bwlimit'], helpLines: [2, 17] });
const sizeMiB = Number(value('size-mib') ?? 16);
const runs = Number(value('runs') ?? 3);
const bwlimit = value('bwlimit') ?? '200M';
if (!(Number.isInteger(sizeMiB) && sizeMiB >= 1 && sizeMiB <= 4096)) fail('--size-mib wants 1..4096');
if (!(Number.isInteger(runs) && runs >= 1 && runs <= 20)) fail('--runs wants 1..20');
if (process.getuid?.() !== 0) fail('needs root (network namespaces)', 3);

const CLI = path.join(REPO, 'bin', 'run.js');
const work = mkdtempSync(path.join('/var/tmp', 'lcsync-tier-bench-'));
let current;
const cleanup = async () => {
  await current?.teardown();
  rmSync(work, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void cleanup().finally(() => process.exit(130)));

const sha = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Spawn a share and resolve with its root hash and the process once it printed its JSON document. */
function startShare(lab, ns, dir) {
  const t0 = performance.now();
  const proc = lab.spawn(ns, [process.execPath, CLI, 'share', '--json', '--no-cache', '-i', 'e0', '--query-interval', '2', '--bwlimit', bwlimit, '--rundir', path.join(work, `run-${Date.now()}`), dir]);
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      try {
        const doc = JSON.parse(out);
        resolve({ proc, t0, hash: doc.roots[0].hash });
      } catch {
        // Not complete yet.
      }
    });
    proc.once('exit', (code) => reject(new Error(`share exited with ${code}: ${tail(err)}`)));
  });
}

function stop(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

async function sync(lab, ns, hash, dest, t0) {
  const r = await lab.exec(ns, [process.execPath, CLI, 'sync', '--json', '--no-cache', '-i', 'e0', '--timeout', '60', '-r', hash, dest], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`sync in ${ns} failed (${r.code}): ${tail(r.stderr)}`);
  return (performance.now() - t0) / 1000;
}

async function oneRun(i) {
  const src = path.join(work, `src${i}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(path.join(src, 'file.bin'), randomBytes(sizeMiB << 20));
  const want = sha(path.join(src, 'file.bin'));
  const lab = await createRoutedLab({ hosts: [4, 1, 1], routers: [[0, 1], [1, 2]] });
  current = lab;
  try {
    const [shareHost, a, a2, a3] = lab.hosts[0];
    const [b, c] = [lab.hosts[1][0], lab.hosts[2][0]];
    const relays = lab.routers.map((r) => lab.spawn(r.ns, [process.execPath, CLI, 'relay', '-q', '--json', '--upstream', r.up, '--downstream', r.down, '--query-interval', '2']));
    const relayOut = relays.map((p) => {
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      return () => out;
    });
    await sleep(1000);
    const check = (dest) => {
      if (sha(path.join(dest, 'file.bin')) !== want) throw new Error(`${dest}: not the source`);
    };
    // 1 tier.
    const shareTx = async () => (await lab.counters(shareHost.ns, 'e0')).tx_bytes;
    const oneBefore = await shareTx();
    let sh = await startShare(lab, shareHost.ns, src);
    const one = await sync(lab, a.ns, sh.hash, path.join(work, `one${i}`), sh.t0);
    check(path.join(work, `one${i}`));
    await sleep(500);
    const oneCopies = ((await shareTx()) - oneBefore) / (sizeMiB << 20);
    await stop(sh.proc);
    // 1 tier, 3 receivers.
    const sameBefore = await shareTx();
    sh = await startShare(lab, shareHost.ns, src);
    const same = await Promise.all([a, a2, a3].map((h, t) => sync(lab, h.ns, sh.hash, path.join(work, `same${t}-${i}`), sh.t0)));
    for (let t = 0; t < 3; t++) check(path.join(work, `same${t}-${i}`));
    await sleep(500);
    const sameCopies = ((await shareTx()) - sameBefore) / (sizeMiB << 20);
    await stop(sh.proc);
    // 3 tiers.
    const links = async () => [
      (await lab.counters(shareHost.ns, 'e0')).tx_bytes,
      (await lab.counters(lab.routers[0].ns, 'e1')).tx_bytes,
      (await lab.counters(lab.routers[1].ns, 'e1')).tx_bytes,
    ];
    const cpu0 = relays.map((p) => cpuSeconds(p.pid) ?? NaN);
    const before = await links();
    sh = await startShare(lab, shareHost.ns, src);
    const tiers = await Promise.all([a, b, c].map((h, t) => sync(lab, h.ns, sh.hash, path.join(work, `t${t}-${i}`), sh.t0)));
    await sleep(500);
    const after = await links();
    const cpu = relays.map((p, k) => (cpuSeconds(p.pid) ?? NaN) - cpu0[k]);
    for (let t = 0; t < 3; t++) check(path.join(work, `t${t}-${i}`));
    await stop(sh.proc);
    for (const p of relays) await stop(p);
    // What each relay received and forwarded, and what it dropped (its queue full, or sent by this host).
    const rst = relayOut.map((o) => JSON.parse(o()));
    const rcvbufErrors = [];
    for (const r of [...lab.routers, a, b, c]) {
      const snmp = await lab.exec(r.ns, ['cat', '/proc/net/snmp6']);
      rcvbufErrors.push(Number(/Udp6RcvbufErrors\s+(\d+)/.exec(snmp.stdout)?.[1] ?? NaN));
    }
    return { one, oneCopies, same, sameCopies, tiers, dropped: rst.map((x) => x.dropped), rcvbufErrors, linkCopies: after.map((v, k) => (v - before[k]) / (sizeMiB << 20)), cpu };
  } finally {
    await lab.teardown();
    current = undefined;
  }
}

try {
  console.log(`tier-bench: ${sizeMiB} MiB, ${runs} run(s), --bwlimit ${bwlimit}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const results = [];
  for (let i = 0; i < runs; i++) {
    const r = await oneRun(i);
    results.push(r);
    console.log(`run ${i + 1}: 1 tier ${r.one.toFixed(2)} s; 1 tier x3 slowest ${Math.max(...r.same).toFixed(2)} s (copies ${r.sameCopies.toFixed(2)}); 3 tiers A ${r.tiers[0].toFixed(2)} s, B ${r.tiers[1].toFixed(2)} s, C ${r.tiers[2].toFixed(2)} s; ` +
      `copies on A/B/C ${r.linkCopies.map((x) => x.toFixed(2)).join('/')}; relay CPU ${r.cpu.map((x) => x.toFixed(2)).join('/')} s; ` +
      `1-tier copies on A ${r.oneCopies.toFixed(2)}; relay drops ${r.dropped.join('/')}, rcvbuf errors (routers 1/2, hosts A/B/C) ${r.rcvbufErrors.join('/')}`);
  }
  const m = (f) => median(results.map(f));
  const farthest = m((r) => Math.max(...r.tiers));
  console.log('');
  console.log('| what | median |');
  console.log('|---|---|');
  console.log(`| 1 tier: share start to sync done (A) | ${m((r) => r.one).toFixed(2)} s |`);
  for (const [t, name] of ['A', 'B (1 relay)', 'C (2 relays)'].entries()) console.log(`| 3 tiers: share start to sync done on ${name} | ${m((r) => r.tiers[t]).toFixed(2)} s |`);
  const sameSlowest = m((r) => Math.max(...r.same));
  console.log(`| 1 tier, 3 receivers: share start to the slowest sync done | ${sameSlowest.toFixed(2)} s |`);
  console.log(`| 3 tiers: farthest tier / 1 tier, 1 receiver | ${(farthest / m((r) => r.one)).toFixed(2)}x |`);
  console.log(`| 3 tiers: farthest tier / 1 tier, 3 receivers | ${(farthest / sameSlowest).toFixed(2)}x |`);
  console.log(`| 1 tier, 1 receiver: bytes onto link A / file size | ${m((r) => r.oneCopies).toFixed(2)} |`);
  console.log(`| 1 tier, 3 receivers: bytes onto link A / file size | ${m((r) => r.sameCopies).toFixed(2)} |`);
  for (const [k, name] of ['A (share)', 'B (relay 1)', 'C (relay 2)'].entries()) console.log(`| 3 tiers: bytes onto link ${name} / file size | ${m((r) => r.linkCopies[k]).toFixed(2)} |`);
  for (const k of [0, 1]) console.log(`| relay ${k + 1} CPU seconds (3-tier phase) | ${m((r) => r.cpu[k]).toFixed(2)} s |`);
  console.log(`load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
} finally {
  await cleanup();
}
