#!/usr/bin/env node
/**
 * Redundant shares benchmark: the wire cost of two cooperating shares against one, and what killing one costs.
 *
 *   npm run build && node bench/redundant-bench.js [--size 32] [--receivers 3] [--reps 1] [--loss 0] [--snooping]
 *
 * Every rep builds a fresh lab (scripts/lab.js): hosts 0 and 1 are shares of the same directory (one file of
 * --size MiB and 40 small files), hosts 2.. receive, all on one bridge (MLD snooping off unless --snooping;
 * --loss percent random loss on every receiver's port). In the same lab, in this order:
 *   one       share 0 alone; the receivers sync at once (`sync -r data/ DEST`) into fresh directories
 *   two       shares 0 and 1 (cooperating, the default); the same
 *   kill      shares 0 and 1; once every receiver has a third of the data, share 0 is SIGKILLed by PID
 * Measured per run: sender bytes (tx_bytes of the shares' e0, read in their namespaces, from before the syncs
 * until they stop growing), wall time from starting the syncs until the last exits, each receiver's rejoins
 * (groups it joined again because they went quiet: what a takeover costs it), the shares' CPU seconds
 * (/proc/PID/stat, including indexing), and whether every receiver ended identical (and exited 0).
 * Prints one line per run and the ratio two/one of the sender bytes (target <= 1.3).
 * Removes its data and namespaces at the end, also on Ctrl-C or a failure.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createLab, cpuSeconds } from './lab.js';
import { benchArgs, writeRandomFile } from './common.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(REPO, 'bin', 'run.js');
const MiB = 2 ** 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const args = benchArgs('redundant-bench', import.meta.url, { valued: ['--size', '--receivers', '--reps', '--loss'], flags: ['--snooping'], helpLines: [2, 4] });
const [size] = args.intList('size', [32], 1, 4096);
const [receivers] = args.intList('receivers', [3], 1, 20);
const [reps] = args.intList('reps', [1], 1, 20);
const [loss] = args.intList('loss', [0], 0, 50);
const snooping = args.flag('snooping');
if (process.getuid?.() !== 0) args.fail('needs root (network namespaces)', 3);

const work = mkdtempSync(path.join('/var/tmp', 'lcsync-redundant-bench-'));
let lab;
const cleanup = async () => {
  await lab?.teardown();
  rmSync(work, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void cleanup().finally(() => process.exit(130)));

const src = path.join(work, 'data');
mkdirSync(path.join(src, 'small'), { recursive: true });
writeRandomFile(path.join(src, 'big.bin'), size * MiB);
for (let i = 0; i < 40; i++) writeFileSync(path.join(src, 'small', `f${i}.txt`), randomBytes(100 + i * 500));

function digestTree(dir) {
  const h = createHash('sha256');
  const walk = (rel) => {
    for (const name of readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = path.join(rel, name.name);
      h.update(r);
      if (name.isDirectory()) walk(r);
      else h.update(readFileSync(path.join(dir, r)));
    }
  };
  walk('');
  return h.digest('hex');
}
const want = digestTree(src);

/** Start a share on `host`; resolves once it printed its roots. */
async function startShare(host) {
  const rundir = path.join(work, `run-${host}-${Date.now()}`);
  mkdirSync(rundir);
  const proc = lab.spawn(host, [process.execPath, CLI, 'share', '--json', '-i', 'e0', '--no-cache', '--rundir', rundir, '--query-interval', '2', src]);
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`share on host ${host} did not start: ${err}`)), 60_000);
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.on('exit', (c) => reject(new Error(`share on host ${host} exited ${c}: ${err}`)));
  });
  return { proc, stderr: () => err };
}

async function stopShare(s) {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  await new Promise((resolve) => {
    const t = setTimeout(() => s.proc.kill('SIGKILL'), 3000);
    s.proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    s.proc.kill('SIGTERM');
  });
}

async function settled(hosts) {
  const sum = async () => (await Promise.all(hosts.map((h) => lab.txBytes(h)))).reduce((a, b) => a + b, 0);
  let last = await sum();
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = await sum();
    if (now - last < 16 * 1024) return now;
    last = now;
  }
  return last;
}

let runNo = 0;
/** One run: the shares on `shareHosts`, all receivers at once; `kill`: SIGKILL share 0 a third of the way. */
async function run(label, shareHosts, kill) {
  const shares = [];
  try {
    for (const h of shareHosts) shares.push(await startShare(h));
    await sleep(800);
    const recv = Array.from({ length: receivers }, (_, i) => i + 2);
    const before = await Promise.all(shareHosts.map((h) => lab.txBytes(h)));
    const rxBefore = await Promise.all(recv.map(async (h) => (await lab.counters(h)).rx_bytes));
    const tag = runNo++;
    const t0 = performance.now();
    const syncs = recv.map(
      (h) =>
        new Promise((resolve) => {
          const dest = path.join(work, `out${tag}-${h}`);
          const p = lab.spawn(h, [process.execPath, CLI, 'sync', '--json', '-i', 'e0', '--no-cache', '--timeout', '60', '-r', 'data/', dest]);
          let err = '';
          let out = '';
          p.stderr.on('data', (d) => (err += d));
          p.stdout.on('data', (d) => (out += d));
          p.on('exit', (code) => {
            let summary;
            try {
              summary = JSON.parse(out);
            } catch {
              summary = undefined;
            }
            resolve({ code, dest, err, summary });
          });
        }),
    );
    let killedAt;
    if (kill) {
      for (;;) {
        const rx = await Promise.all(recv.map(async (h) => (await lab.counters(h)).rx_bytes));
        if (rx.every((b, i) => b - rxBefore[i] > (size * MiB) / 3)) break;
        if (performance.now() - t0 > 120_000) break;
        await sleep(20);
      }
      killedAt = (performance.now() - t0) / 1000;
      process.kill(shares[0].proc.pid, 'SIGKILL');
    }
    const results = await Promise.all(syncs);
    const wall = (performance.now() - t0) / 1000;
    await settled(shareHosts);
    const after = await Promise.all(shareHosts.map((h) => lab.txBytes(h)));
    const cpu = shares.map((s) => cpuSeconds(s.proc.pid));
    const bytes = after.map((a, i) => a - before[i]);
    const ok = results.every((r) => r.code === 0 && digestTree(r.dest) === want);
    for (const r of results) if (r.code !== 0) console.error(`  receiver failed (${r.code}): ${r.err.slice(-400)}`);
    const total = bytes.reduce((a, b) => a + b, 0);
    console.log(
      `${label.padEnd(5)} sender bytes ${(total / MiB).toFixed(1)} MiB (${bytes.map((b) => (b / MiB).toFixed(1)).join(' + ')})  wall ${wall.toFixed(1)} s` +
        `${killedAt !== undefined ? ` (share 0 killed at ${killedAt.toFixed(1)} s)` : ''}  receivers' rejoins ${results.map((r) => r.summary?.rejoins ?? '-').join('/')}  share CPU ${cpu.map((c) => (c === undefined ? '-' : c.toFixed(1))).join(' + ')} s  ${ok ? 'ok' : 'FAILED'}`,
    );
    for (const r of results) rmSync(r.dest, { recursive: true, force: true });
    return { total, ok };
  } finally {
    for (const s of shares) await stopShare(s);
  }
}

let failed = false;
try {
  console.log(`redundant-bench: ${size} MiB + 40 small files, ${receivers} receivers, loss ${loss}%, snooping ${snooping ? 'on' : 'off'}`);
  for (let rep = 0; rep < reps; rep++) {
    lab = await createLab({ hosts: receivers + 2, snooping });
    for (let h = 2; h < receivers + 2; h++) if (loss > 0) await lab.setLoss(h, loss);
    const one = await run('one', [0], false);
    const two = await run('two', [0, 1], false);
    const killed = await run('kill', [0, 1], true);
    console.log(`two/one sender bytes: ${(two.total / one.total).toFixed(3)} (target <= 1.3)`);
    failed ||= !one.ok || !two.ok || !killed.ok;
    await lab.teardown();
    lab = undefined;
  }
} finally {
  await cleanup();
}
process.exit(failed ? 1 : 0);
