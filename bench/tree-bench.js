#!/usr/bin/env node
/**
 * Tree benchmark: a directory of many small files, lcsync share/sync beside an rsync daemon, same lab, same run.
 *
 *   npm run build && node bench/tree-bench.js [--files 5000] [--dirs 50] [--receivers 1,3] [--loss 0,5]
 *       [--tools ours,ours-nb,rsync] [--rate 900] [--timeout 600] [--reps 1] [--cpu-prof DIR]
 *
 * Needs root (network namespaces), nft, tc, /usr/bin/time (Debian `time`) and rsync (Debian `rsync`). Each
 * scenario gets a fresh lab (bench/lab.js): host 0 serves, hosts 1..N receive, a bridge with MLD snooping in its
 * own namespace, tbf 1gbit on every link, and random loss on every receiver's switch port in both directions.
 * The tree: --files files of 200..8192 bytes (random sizes and bytes, fixed per run) in --dirs directories.
 *
 * Phases, each timed from the start of the receivers until the last one exits:
 *   first     into an empty destination
 *   again     the same tree again, nothing changed
 *   one       one file of the source changed (8 bytes), and synced again
 * ours-nb: the same with `lcsync share --no-bundles` (what a share without the bundle extension serves).
 * ours: `lcsync share --bwlimit <rate>M` once, all receivers `lcsync sync -a` at once (one send reaches all).
 * rsync: `rsync --daemon` on host 0; receivers run `rsync -a rsync://[host0]/tree/ DEST/` ONE AFTER ANOTHER
 * (rsync is unicast: N receivers cost N transfers), so its time is the sum; rsync's figures are over TCP with no
 * rate cap (it does not need one).
 * Reported: wall s, files/s, sender bytes on the wire (tx_bytes of host 0) / tree bytes, bytes received / written
 * (ours, from `sync --json`), peak RSS of a receiver, CPU seconds of the receivers (user + system, the figure to
 * trust on a loaded machine), and peak RSS of the server (ours: the share, read after the first phase), our share's
 * CPU seconds in each phase (from /proc while it runs) and datagrams the receivers' kernels dropped on a full socket
 * buffer (rx drops). BENCH_WORKDIR=/dev/shm puts the trees on tmpfs (see bench/common.js).
 * Receivers keep their local tree cache (`sync --cache`) in the work directory, removed at the end. Issue 13's targets are printed as ratios.
 * --reps N: every scenario N times, the tools taking turns (ours, rsync, ours, rsync, ...) so that the machine's
 * drift falls on both, each run in a fresh lab from the same tree; every figure printed is the median of the N
 * runs, and each phase's N walls are printed under the table. Single runs of the short phases ("again", "one":
 * 0.2-0.5 s) swing by 20% on a small loaded machine; medians of 5 are the figures to compare with the targets.
 * Removes its data and namespaces at the end, also on Ctrl-C or a failure.
 * --cpu-prof DIR: our share and syncs run under `node --cpu-prof` and write their V8 CPU profiles to DIR (kept
 * after the run), to see where the time goes; `node bench/cpuprof-summary.js FILE` sums one by function and file.
 * BENCH_SHARE_LOG=FILE (environment): the share runs with -v and its log is appended to FILE (its "stopped ...
 * after N datagrams for K source symbols (rounds: ...)" lines say where the sender's datagrams went).
 * BENCH_SYNC_JSON=FILE (environment): every receiver's `sync --json` summary is appended to FILE, one line each
 * with the scenario's directory, the phase and the receiver (joins, tree objects, bundle entries per receiver).
 * BENCH_SYNC_ENV="NAME=VALUE ..." (environment): added to the environment of our syncs only (not the share's), to
 * A/B a receiver-side switch in one build, e.g. BENCH_SYNC_ENV=LCSYNC_DEFAULT_TIERING=1.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cpuSeconds, killGroup, peakRssKiB } from './lab.js';
import { REPO, TIME, benchArgs, benchSession, servingRoot, settledTx, tail, timeReport, timed } from './common.js';

const CLI = path.join(REPO, 'bin', 'run.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const args = benchArgs('tree-bench', import.meta.url, {
  valued: ['--files', '--dirs', '--receivers', '--loss', '--tools', '--rate', '--timeout', '--reps', '--cpu-prof'],
  helpLines: [2, 6],
});
const { fail, intList } = args;
const FILES = intList('files', [5000], 1, 1_000_000)[0];
const DIRS = intList('dirs', [50], 1, 100_000)[0];
const RECEIVERS = intList('receivers', [1, 3], 1, 20);
const LOSSES = intList('loss', [0, 5], 0, 50);
const RATE = intList('rate', [900], 1, 10_000)[0];
const TIMEOUT_S = intList('timeout', [600], 10, 86_400)[0];
const REPS = intList('reps', [1], 1, 50)[0];
/** BENCH_SYNC_ENV (see the header): the syncs' environment, or undefined for the bench's own. */
const SYNC_ENV = process.env.BENCH_SYNC_ENV
  ? { ...process.env, ...Object.fromEntries(process.env.BENCH_SYNC_ENV.split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) }
  : undefined;
const TOOLS = (args.value('tools') ?? 'ours,rsync').split(',');
const CPU_PROF = args.value('cpu-prof');
if (CPU_PROF) mkdirSync(path.resolve(CPU_PROF), { recursive: true });
/** The node command line of one of our processes; with --cpu-prof its profile is named NAME.cpuprofile. */
const node = (name) => (CPU_PROF ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${path.resolve(CPU_PROF)}`, `--cpu-prof-name=${name}.cpuprofile`] : [process.execPath]);
if (TOOLS.length === 0 || TOOLS.some((t) => t !== 'ours' && t !== 'ours-nb' && t !== 'rsync')) fail('--tools wants a list of ours, ours-nb, rsync');

if (typeof process.getuid !== 'function' || process.getuid() !== 0) fail('needs root (network namespaces)', 3);
args.need([['nft', ['--version'], 'nftables'], ['tc', ['-V'], 'iproute2'], [TIME, ['--version'], 'time'],
  ...(TOOLS.includes('rsync') ? [['rsync', ['--version'], 'rsync']] : [])]);
if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'share.js'))) fail('dist/ missing; run npm run build first', 3);

// ---------------------------------------------------------------------------------------------------------
// Work area, the tree, clean-up

const { work, withLab, cleanup } = benchSession('tree-bench');

const src = path.join(work, 'tree');
let treeBytes = 0;
const names = [];
for (let d = 0; d < DIRS; d++) mkdirSync(path.join(src, `d${String(d).padStart(4, '0')}`), { recursive: true });
for (let f = 0; f < FILES; f++) {
  const name = path.join(`d${String(f % DIRS).padStart(4, '0')}`, `f${String(f).padStart(6, '0')}.dat`);
  const size = randomInt(200, 8193);
  writeFileSync(path.join(src, name), randomBytes(size));
  treeBytes += size;
  names.push(name);
}
const changed = names[Math.floor(names.length / 2)];

/** sha256 over every file's name and bytes, in name order: equal for equal trees. */
function treeDigest(root) {
  const h = createHash('sha256');
  const walk = (rel) => {
    for (const e of readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else h.update(`${r}\0`).update(readFileSync(path.join(root, r)));
    }
  };
  if (!existsSync(root)) return '(missing)';
  walk('');
  return h.digest('hex');
}

const rssOf = (file) => timeReport(file).rss / 1024;


/** Change 8 bytes in the middle of one file (same size), as an operator's edit would. */
function changeOneFile() {
  const file = path.join(src, changed);
  const buf = readFileSync(file);
  randomBytes(8).copy(buf, buf.length >> 1);
  writeFileSync(file, buf);
}

// ---------------------------------------------------------------------------------------------------------
// The tools

/** Run `phase` on every receiver (all at once for ours, one after another for rsync); time and check it. */
async function phaseRun(lab, receivers, run, parallel, dir, phase, extra = {}) {
  const want = treeDigest(src);
  const tx0 = await lab.txBytes(0);
  const drops = async () => {
    let n = 0;
    for (let h = 1; h <= receivers; h++) n += await lab.udpRcvbufErrors(h);
    return n;
  };
  const drops0 = await drops();
  const t0 = performance.now();
  const one = async (h) => {
    const rss = path.join(dir, `${phase}-r${h}.time`);
    const r = await run(h, rss);
    return { h, r, rss: rssOf(rss), cpu: timeReport(rss).cpu };
  };
  const results = [];
  if (parallel) results.push(...(await Promise.all(Array.from({ length: receivers }, (_, i) => one(i + 1)))));
  else for (let h = 1; h <= receivers; h++) results.push(await one(h));
  const wall = (performance.now() - t0) / 1000;
  const tx = (await settledTx(lab)) - tx0;
  // Datagrams the receivers' kernels dropped on a full socket buffer (UDP only: 0 for rsync's TCP).
  const rxDrops = (await drops()) - drops0;
  const errors = [];
  let received = 0;
  let written = 0;
  for (const { h, r } of results) {
    const got = treeDigest(path.join(dir, `r${h}`));
    if (r.code !== 0 || got !== want) errors.push(`receiver ${h} (${phase}): exit ${r.code}, tree ${got === want ? 'ok' : 'differs'}; ${tail(r.stderr) || tail(r.stdout)}`);
    try {
      const s = JSON.parse(r.stdout);
      received += s.bytesReceived;
      written += s.bytesWritten;
      if (process.env.BENCH_SYNC_JSON) appendFileSync(process.env.BENCH_SYNC_JSON, `${JSON.stringify({ dir: path.basename(dir), phase, receiver: h, summary: s })}\n`);
    } catch {
      // rsync, or a failed run.
    }
  }
  return { phase, wall, tx, received, written, rxDrops, rssRx: Math.max(...results.map((x) => x.rss)), cpuRx: results.reduce((s, x) => s + x.cpu, 0), ok: errors.length === 0, errors, ...extra };
}

async function runOurs(receivers, loss, rep, shareArgs = [], tag = 'ours') {
  return withLab(receivers, loss, '1gbit', async (lab) => {
    const dir = path.join(work, `${tag}-${receivers}r-${loss}l${rep > 0 ? `-${rep}` : ''}`);
    mkdirSync(dir);
    const out = [];
    let shares = 0;
    const start = () => {
      const share = lab.spawn(0, [...node(`${tag}-${receivers}r-${loss}l-share-${++shares}`), CLI, 'share', ...(process.env.BENCH_SHARE_LOG ? ['-v'] : []), '-i', 'e0', '--bwlimit', `${RATE}M`, ...shareArgs, src]);
      let err = '';
      share.stderr.on('data', (d) => (err = (err + d).slice(-8000)));
      if (process.env.BENCH_SHARE_LOG) share.stderr.on('data', (d) => appendFileSync(process.env.BENCH_SHARE_LOG, d));
      const root = servingRoot(share, () => err, 300_000);
      return { share, root };
    };
    const stop = async (share) => {
      if (share.exitCode !== null) return;
      killGroup(share, 'SIGTERM');
      await Promise.race([new Promise((r) => share.once('exit', r)), sleep(3000)]);
    };
    let { share, root } = start();
    try {
      let hash = await root;
      const sync = (h, rss) => lab.exec(h, timed(rss, [...node(`${tag}-${receivers}r-${loss}l-${path.basename(rss, '.time')}`), CLI, 'sync', '-a', '--json', '-i', 'e0', '--timeout', '60', '--cache', path.join(dir, 'cache'), hash, path.join(dir, `r${h}`)]), { timeoutMs: TIMEOUT_S * 1000, env: SYNC_ENV });
      // The share's peak RSS (VmHWM) read after each phase, while it still runs.
      const shareRss = () => ({ rssTx: share.pid ? (peakRssKiB(share.pid) ?? NaN) / 1024 : NaN });
      // The share's CPU (user + system) over one phase, read from /proc while it runs.
      const phase = async (name) => {
        const cpu0 = cpuSeconds(share.pid) ?? NaN;
        const r = await phaseRun(lab, receivers, sync, true, dir, name);
        return Object.assign(r, shareRss(), { cpuTx: (cpuSeconds(share.pid) ?? NaN) - cpu0 });
      };
      out.push(await phase('first'));
      out.push(await phase('again'));
      // A changed file means a new root: the share is started again on the changed tree (re-indexing is not timed).
      await stop(share);
      changeOneFile();
      ({ share, root } = start());
      hash = await root;
      out.push(await phase('one'));
      return out;
    } finally {
      await stop(share);
    }
  });
}

async function runRsync(receivers, loss, rep) {
  return withLab(receivers, loss, '1gbit', async (lab) => {
    const dir = path.join(work, `rsync-${receivers}r-${loss}l${rep > 0 ? `-${rep}` : ''}`);
    mkdirSync(dir);
    const conf = path.join(dir, 'rsyncd.conf');
    writeFileSync(conf, `use chroot = no\nuid = root\ngid = root\nlog file = ${dir}/rsyncd.log\n[tree]\n  path = ${src}\n  read only = yes\n`);
    const host = lab.hosts[0].ula;
    // stdin from /dev/null: on a socket (which is what a spawned process's pipe is) rsync --daemon assumes inetd.
    const daemonArgv = [TIME, '-f', '%U %S %M', '-o', path.join(dir, 'daemon.time'), 'rsync', '--daemon', '--no-detach', `--config=${conf}`, `--address=${host}`, '--port=8873'];
    const daemon = lab.spawn(0, ['sh', '-c', 'exec "$@" </dev/null', 'sh', ...daemonArgv]);
    try {
      for (let i = 0; i < 50; i++) {
        const r = await lab.exec(1, ['rsync', `rsync://[${host}]:8873/`], { timeoutMs: 3000 });
        if (r.code === 0) break;
        await sleep(100);
      }
      const pull = (h, rss) => lab.exec(h, timed(rss, ['rsync', '-a', `rsync://[${host}]:8873/tree/`, `${path.join(dir, `r${h}`)}/`]), { timeoutMs: TIMEOUT_S * 1000 });
      const out = [];
      out.push(await phaseRun(lab, receivers, pull, false, dir, 'first'));
      out.push(await phaseRun(lab, receivers, pull, false, dir, 'again'));
      changeOneFile();
      out.push(await phaseRun(lab, receivers, pull, false, dir, 'one'));
      return out;
    } finally {
      killGroup(daemon, 'SIGTERM');
      await sleep(300);
    }
  });
}

/**
 * The phases of several runs of one tool as one: each number the median of the runs (the middle one, or the
 * mean of the two middle ones), ok only if every run was, every run's errors, and the runs' walls in order.
 */
function medianPhases(runs) {
  const median = (xs) => {
    const v = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
    if (v.length === 0) return NaN;
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  return runs[0].map((first, i) => {
    const same = runs.map((r) => r[i]);
    const out = { ...first, ok: same.every((p) => p.ok), errors: same.flatMap((p) => p.errors), walls: same.map((p) => p.wall) };
    for (const [k, v] of Object.entries(first)) if (typeof v === 'number') out[k] = median(same.map((p) => p[k]));
    return out;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Main

const MB = 1e6;
console.log(`lcsync tree benchmark: ${FILES} files of 200..8192 bytes in ${DIRS} directories, ${(treeBytes / MB).toFixed(1)} MB; tools ${TOOLS.join(',')}; lcsync share --bwlimit ${RATE}M; rsync daemon over TCP, receivers one after another${REPS > 1 ? `; ${REPS} runs each, medians` : ''}`);
try {
  for (const receivers of RECEIVERS) {
    for (const loss of LOSSES) {
      const runs = Object.fromEntries(TOOLS.map((t) => [t, []]));
      for (let rep = 0; rep < REPS; rep++) {
        for (const tool of TOOLS) {
          // The tree is changed by the "one" phase: restore it first so every tool starts from the same tree.
          const file = path.join(src, changed);
          const before = readFileSync(file);
          try {
            process.stdout.write(`${tool}, ${receivers} receiver(s), ${loss}% loss${REPS > 1 ? `, run ${rep + 1} of ${REPS}` : ''} ... `);
            const r = tool === 'ours' ? await runOurs(receivers, loss, rep) : tool === 'ours-nb' ? await runOurs(receivers, loss, rep, ['--no-bundles'], 'ours-nb') : await runRsync(receivers, loss, rep);
            runs[tool].push(r);
            console.log(r.every((p) => p.ok) ? 'ok' : 'FAILED');
            for (const p of r) for (const e of p.errors) console.log(`  ${e}`);
          } catch (err) {
            console.log(`FAILED: ${err.message}`);
          } finally {
            writeFileSync(file, before);
          }
        }
      }
      /** A tool's phases: its one run, or the medians of its runs (a tool with a run that failed to finish has none). */
      const res = {};
      for (const tool of TOOLS) if (runs[tool].length === REPS) res[tool] = REPS === 1 ? runs[tool][0] : medianPhases(runs[tool]);
      console.log(`\n== ${receivers} receiver(s), ${loss}% loss, ${FILES} files, ${(treeBytes / MB).toFixed(1)} MB`);
      console.log('tool    phase   ok   wall s  files/s  sender/tree  received/written  RSS rx MiB  CPU rx s  RSS share MiB  CPU share s  rx drops');
      for (const tool of TOOLS) {
        for (const p of res[tool] ?? []) {
          const fps = p.phase === 'first' ? (FILES * receivers) / p.wall : NaN;
          const rw = p.written > 0 ? (p.received / p.written).toFixed(3) : '-';
          console.log(`${tool.padEnd(7)} ${p.phase.padEnd(6)} ${(p.ok ? 'yes' : 'NO').padEnd(4)} ${p.wall.toFixed(2).padStart(7)} ${Number.isNaN(fps) ? '      -' : fps.toFixed(0).padStart(7)}  ${(p.tx / treeBytes).toFixed(3).padStart(11)}  ${rw.padStart(16)}  ${p.rssRx.toFixed(1).padStart(10)}  ${p.cpuRx.toFixed(2).padStart(8)}  ${p.rssTx === undefined ? '            -' : p.rssTx.toFixed(1).padStart(13)}  ${p.cpuTx === undefined ? '          -' : p.cpuTx.toFixed(2).padStart(11)}  ${String(p.rxDrops).padStart(8)}`);
        }
      }
      if (REPS > 1) {
        for (const tool of TOOLS) for (const p of res[tool] ?? []) console.log(`  ${tool} ${p.phase} walls: ${p.walls.map((w) => w.toFixed(2)).join(' ')}`);
      }
      if (res.ours && res.rsync) {
        const ratio = (ph) => {
          const a = res.ours.find((p) => p.phase === ph);
          const b = res.rsync.find((p) => p.phase === ph);
          return a?.ok && b?.ok ? `${(a.wall / b.wall).toFixed(2)}x` : '-';
        };
        console.log(`ours/rsync wall: first ${ratio('first')}, nothing changed ${ratio('again')}, one file changed ${ratio('one')}` +
          ` (issue 13 targets: 1 receiver first <= 3x; 3 receivers at 5% first <= 2x with sender/tree <= 1.4; again and one <= 2x)`);
      }
      console.log('');
    }
  }
} finally {
  await cleanup();
}
