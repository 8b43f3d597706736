#!/usr/bin/env node
/**
 * Live-mirror benchmark: what idle mirrors cost on the wire, and how soon a change reaches them.
 *
 *   npm run build && node bench/follow-bench.js [--mirrors 3] [--idle-sec 60] [--changes 7] [--files 50]
 *
 * Needs root (network namespaces). One lab (bench/lab.js): host 0 runs `lcsync share -v` (defaults: MLD
 * querier every 20 s, announce heartbeat 30 s) of a directory of --files small files; hosts 1..N run
 * `lcsync sync --follow -a --delete` of it. A bridge with MLD snooping in its own namespace; no tbf, no loss.
 * Phases:
 *   idle      once every mirror holds the tree and 5 s passed, --idle-sec seconds of nothing: tx bytes and
 *             packets of every host's e0 (the share's, and the mirrors' MLD reports) over the window, as
 *             bytes per minute and bit/s in total, and the CPU seconds share and mirrors used meanwhile.
 *   latency   --changes times: append 100 bytes to one file on the share (2 s apart), and time from the
 *             write until every mirror's copy has the new content (polled every 10 ms); median and max.
 * Targets (issue 15): idle <= 2 kbit/s in total with 3 mirrors; a small change on every mirror within 2 s.
 * Removes its data and namespaces at the end, also on Ctrl-C or a failure.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { cpuSeconds, createLab, killGroup } from './lab.js';
import { REPO, benchArgs, benchSession, median, tail } from './common.js';

const CLI = path.join(REPO, 'bin', 'run.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const args = benchArgs('follow-bench', import.meta.url, { valued: ['--mirrors', '--idle-sec', '--changes', '--files'], helpLines: [2, 5] });
const { fail, intList } = args;
const MIRRORS = intList('mirrors', [3], 1, 20)[0];
const IDLE_SEC = intList('idle-sec', [60], 5, 3600)[0];
const CHANGES = intList('changes', [7], 1, 100)[0];
const FILES = intList('files', [50], 1, 100_000)[0];
if (typeof process.getuid !== 'function' || process.getuid() !== 0) fail('needs root (network namespaces)', 3);
if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'sync.js'))) fail('dist/ missing; run npm run build first', 3);

const { work, cleanup } = benchSession('follow-bench');
const src = path.join(work, 'tree');
mkdirSync(src);
for (let i = 0; i < FILES; i++) writeFileSync(path.join(src, `f${String(i).padStart(5, '0')}.txt`), randomBytes(200 + (i % 4000)));

let lab;
try {
  lab = await createLab({ hosts: MIRRORS + 1, snooping: true });
  const share = lab.spawn(0, [process.execPath, CLI, 'share', '-v', '--no-cache', '--rundir', path.join(work, 'run'), '-i', 'e0', src]);
  let shareErr = '';
  share.stderr.on('data', (d) => (shareErr += d));
  await sleep(2000);
  const mirrors = [];
  for (let h = 1; h <= MIRRORS; h++) {
    const dest = path.join(work, `mirror${h}`);
    const proc = lab.spawn(h, [process.execPath, CLI, 'sync', '--follow', '-a', '--delete', '-i', 'e0', '--no-cache', 'tree/', dest]);
    let err = '';
    proc.stderr.on('data', (d) => (err += d));
    mirrors.push({ proc, dest, err: () => err });
  }
  const probe = path.join(src, 'f00000.txt');
  const synced = () => mirrors.every((m) => existsSync(path.join(m.dest, 'f00000.txt')) && readFileSync(path.join(m.dest, 'f00000.txt')).equals(readFileSync(probe)));
  for (let t = 0; !synced(); t++) {
    if (t > 600) throw new Error(`mirrors did not sync within 60 s:\n${mirrors.map((m) => tail(m.err())).join('\n')}\nshare:\n${tail(shareErr)}`);
    await sleep(100);
  }
  await sleep(5000);

  // idle
  const hosts = [...Array(MIRRORS + 1).keys()];
  const before = await Promise.all(hosts.map((h) => lab.counters(h)));
  const cpu0 = [share, ...mirrors.map((m) => m.proc)].map((p) => cpuSeconds(p.pid) ?? NaN);
  const load0 = loadavg()[0];
  await sleep(IDLE_SEC * 1000);
  const after = await Promise.all(hosts.map((h) => lab.counters(h)));
  const cpu1 = [share, ...mirrors.map((m) => m.proc)].map((p) => cpuSeconds(p.pid) ?? NaN);
  const perMin = (h, k) => ((after[h][k] - before[h][k]) * 60) / IDLE_SEC;
  const shareBytes = perMin(0, 'tx_bytes');
  const mirrorBytes = hosts.slice(1).reduce((s, h) => s + perMin(h, 'tx_bytes'), 0);
  const totalBps = ((shareBytes + mirrorBytes) * 8) / 60;
  console.log(`follow-bench: ${MIRRORS} mirrors of ${FILES} files, idle ${IDLE_SEC} s, load average ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`);
  console.log(`idle: share sent ${shareBytes.toFixed(0)} B/min in ${perMin(0, 'tx_packets').toFixed(1)} packets/min; mirrors sent ${mirrorBytes.toFixed(0)} B/min in ${hosts.slice(1).reduce((s, h) => s + perMin(h, 'tx_packets'), 0).toFixed(1)} packets/min (MLD reports)`);
  console.log(`idle: total ${totalBps.toFixed(0)} bit/s on the link (target <= 2000 bit/s with 3 mirrors)`);
  console.log(`idle: CPU seconds over the window: share ${(cpu1[0] - cpu0[0]).toFixed(2)}, mirrors ${cpu1.slice(1).map((c, i) => (c - cpu0[i + 1]).toFixed(2)).join(' ')}`);

  // latency
  const lat = [];
  for (let i = 0; i < CHANGES; i++) {
    appendFileSync(probe, randomBytes(100));
    const want = readFileSync(probe);
    const t0 = performance.now();
    const done = new Set();
    while (done.size < mirrors.length) {
      for (const [j, m] of mirrors.entries()) {
        if (done.has(j)) continue;
        try {
          if (readFileSync(path.join(m.dest, 'f00000.txt')).equals(want)) done.add(j);
        } catch {
          /* being replaced */
        }
      }
      if (performance.now() - t0 > 30_000) throw new Error(`change ${i} did not reach every mirror in 30 s:\n${mirrors.map((m) => tail(m.err())).join('\n')}`);
      if (done.size < mirrors.length) await sleep(10);
    }
    lat.push((performance.now() - t0) / 1000);
    await sleep(2000);
  }
  console.log(`latency: change to every mirror, ${CHANGES} changes: median ${median(lat).toFixed(2)} s, max ${Math.max(...lat).toFixed(2)} s (${lat.map((x) => x.toFixed(2)).join(' ')}) (target <= 2 s)`);
  for (const m of mirrors) if (/sync failed/.test(m.err())) console.log(`note: a mirror retried:\n${tail(m.err(), 600)}`);
  for (const m of mirrors) killGroup(m.proc, 'SIGTERM');
  killGroup(share, 'SIGTERM');
} catch (e) {
  console.error(`follow-bench: ${e.message}`);
  process.exitCode = 1;
} finally {
  await lab?.teardown();
  await cleanup();
}
