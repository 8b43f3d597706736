#!/usr/bin/env node
/**
 * Transfer benchmark: lcsync share/sync beside uftp/uftpd, on the same lab network in the same run.
 *
 *   npm run build && node bench/transfer-bench.js [--size 64M] [--reps 1] [--tools ours,uftp]
 *       [--receivers 1,3] [--loss 0,5] [--rate 200] [--no-tbf] [--uftp-defaults] [--cpu-prof DIR]
 *       tool ours1368: our share with --symbol-size 1368 (which only lcsync receivers take), e.g. --tools ours,ours1368,uftp
 *       tool follow: our receivers running before the transfer (`sync --follow`, as uftpd runs before uftp), the file
 *       linked into the shared directory; e.g. --tools ours,follow,uftp
 *   node bench/transfer-bench.js --rss-1g        # 1 GiB to one receiver, ours only: receiver peak RSS vs 200 MB
 *   node bench/transfer-bench.js --flood 200000 --rate 300 --receivers 1 --loss 0   # ours unflooded, then flooded
 *   node bench/transfer-bench.js --rss-4g        # 4 GiB to one receiver, ours only: peak RSS vs 60 MiB (rx), 90 MiB (tx)
 *   node bench/transfer-bench.js --auto [--rates 200,500,900] [--loss 0,5] [--bottleneck 100]
 *       ours with --bwlimit auto beside fixed rates, 1 receiver: auto's goodput vs the best fixed rate (clean and
 *       lossy), then behind a 100 Mbit/s bottleneck (tbf on the receivers' switch ports) auto vs --rate: the share of
 *       datagrams the bottleneck dropped
 *   node bench/transfer-bench.js --line-rate [--size 1G]  # 1 receiver, tbf 1gbit: --bwlimit 0 and auto beside the
 *       raw UDP multicast ceiling of the same lab (bench/mcast-blast.c, built with cc): goodput, rx buffer drops
 *   node bench/transfer-bench.js --stagger 8:2 [--gather 3s] [--loss 0] [--size 64M]
 *       N receivers whose syncs start spread uniformly over W seconds (receiver i at i*W/(N-1) s), ours only with the
 *       share's defaults (--bwlimit auto; tool "auto") and, with --gather, also with `share --gather DUR` (tool
 *       "gather"): sender bytes / file size, each receiver's finish time from the first start, the last one's
 *
 * BENCH_SHARE_LOG=FILE (environment): our share runs with -v and its log is appended to FILE (its "stopped ...
 * after N datagrams for K source symbols (rounds: ...)" lines say where the sender's datagrams went).
 * BENCH_SYNC_ENV="NAME=VALUE ..." (environment): added to the environment of our syncs only (not the share's), to
 * A/B a receiver-side switch in one build, e.g. BENCH_SYNC_ENV=LCSYNC_DEFAULT_TIERING=1.
 * BENCH_SHARE_ENV="NAME=VALUE ..." (environment): the same for our share only, e.g. a memory sampler preloaded with
 * BENCH_SHARE_ENV=NODE_OPTIONS=--require=/path/to/sampler.cjs.
 * BENCH_SYNC_ARGS="--flag value ..." (environment): added to our syncs' arguments, e.g. BENCH_SYNC_ARGS="--parallel 64".
 *
 * Needs root (network namespaces), nft, tc, /usr/bin/time (Debian `time`) and, for the comparison, uftp/uftpd
 * (Debian `uftp`). Every run gets a fresh lab (scripts/lab.js): host 0 sends, hosts 1..N receive, a bridge with MLD
 * snooping in its own namespace, `tbf rate 1gbit` on both ends of every link (--no-tbf: none), and random loss
 * on every receiver's switch port in both directions (the sender's port has none, so receivers lose packets
 * independently). Both tools are capped at the same rate (--rate, Mbit/s; default 200, which is our
 * --bwlimit default): `lcsync share --bwlimit <rate>M`, `uftp -R <rate*1000>` (Kbit/s). uftp runs as a closed
 * group (-H with the receivers' IDs, so it starts as soon as all have registered), tuned for a LAN
 * (-r 0.1:0.01:0.2 -s 50, see UFTP_TUNING below; --uftp-defaults: without), otherwise with its defaults (no
 * congestion control, 1300-byte blocks, no encryption); ours runs with its defaults.
 *
 * Measured per run:
 *   wall     ours: from starting the syncs (all at once) until the last exits; uftp: the sender's run time
 *            (it exits when every receiver has confirmed the file). Both include start-up: node and the
 *            MLD joins for ours, the announce/registration phase for uftp.
 *   wire     tx_bytes of host 0's e0 (read in its namespace) from just before the transfer until it stops
 *            growing after the last receiver is done (at most 5 s later), so a sender's tail counts.
 *   RSS      peak RSS: /usr/bin/time %M for processes that exit by themselves (lcsync sync, uftp), VmHWM read
 *            just before SIGTERM for the servers that do not (lcsync share, uftpd).
 *   sync s   ours only: the slowest receiver's own "seconds" from `lcsync sync --json` (wall minus node start-up).
 *   CPU      user + system seconds: the busiest receiver, the sender, and all of them together (/usr/bin/time, or /proc/PID/stat for
 *            the servers; a share's includes its indexing, uftpd's only this transfer). Every namespace shares
 *            the machine's cores, so a CPU-heavy receiver slows the others down.
 *   ok       every received file has the sha256 of the source.
 * --flood N: ours only, each run twice: as above ("ours"), and with a hostile neighbour ("flooded": one more lab
 * host running bench/flood.js) sending N junk datagrams/s to the groups receiver 1 has joined (a quarter of them
 * well-formed chunk datagrams with random OIDs, the rest 100 bytes of noise; about 0.65 Gbit/s at 200,000/s, so
 * keep --rate low enough that both fit the 1 Gbit links). Reports the flooded/unflooded ratio of the receivers'
 * sync time (target <= 2x) and the rate the flooder reached.
 * Removes its data and namespaces at the end, also on Ctrl-C or a failure.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { appendFileSync, createReadStream, existsSync, linkSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, killGroup, peakRssKiB } from './lab.js';
import { TIME, benchArgs, benchSession, servingRoot, settledTx, tail, timeReport, timed, writeRandomFile } from './common.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(REPO, 'bin', 'run.js');
const MiB = 2 ** 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------
// Options

const VALUED = ['--size', '--reps', '--tools', '--receivers', '--loss', '--rate', '--cpu-prof', '--flood', '--rates', '--bottleneck', '--stagger', '--gather'];
const args = benchArgs('transfer-bench', import.meta.url, { valued: VALUED, flags: ['--no-tbf', '--uftp-defaults', '--rss-1g', '--rss-4g', '--auto', '--line-rate'], helpLines: [2, 21] });
const { fail, intList } = args;
const optionValue = args.value;

function parseSize(s) {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) fail(`bad size ${s} (examples: 64M, 1G, 1048576)`);
  const mult = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2].toUpperCase()];
  const v = Number(m[1]) * mult;
  if (v < 1 || v > 8 * 2 ** 30) fail('--size must be 1 byte .. 8 GiB');
  return v;
}

const RSS_1G = process.argv.includes('--rss-1g');
// --rss-4g: the issue's memory target, the same for 64 MiB and 4 GiB files.
const RSS_4G = process.argv.includes('--rss-4g');
// --auto: ours with --bwlimit auto beside fixed rates (--rates, Mbit/s), then behind a bottleneck (--bottleneck, Mbit/s).
const AUTO = process.argv.includes('--auto');
const AUTO_RATES = intList('rates', [200, 500, 900], 1, 10_000);
const BOTTLENECK = intList('bottleneck', [100], 1, 10_000)[0];
// --line-rate: 1 GiB, unlimited and auto, beside the lab's raw UDP multicast ceiling.
const LINE_RATE = process.argv.includes('--line-rate');
const RSS_ONLY = RSS_1G || RSS_4G;
// --stagger N:W: N receivers started spread over W seconds (issue 17); --gather DUR: also ours with `share --gather DUR`.
const STAGGER = (() => {
  const v = optionValue('stagger');
  if (v === undefined) return undefined;
  const m = /^(\d+):(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 20 || Number(m[2]) > 60) fail('--stagger wants N:W (1..20 receivers, 0..60 seconds), e.g. 8:2');
  return { n: Number(m[1]), w: Number(m[2]) };
})();
const GATHER = optionValue('gather');
// --line-rate takes --size (default 1G) for quicker iterations; the target is about 1 GiB.
const SIZE = RSS_4G ? 4 * 2 ** 30 : RSS_1G ? 2 ** 30 : parseSize(optionValue('size') ?? (LINE_RATE ? '1G' : '64M'));
const REPS = intList('reps', [1], 1, 20)[0];
const RECEIVERS = STAGGER ? [STAGGER.n] : RSS_ONLY || LINE_RATE ? [1] : intList('receivers', AUTO ? [1] : [1, 3], 1, 20);
const LOSSES = RSS_ONLY || LINE_RATE ? [0] : STAGGER ? intList('loss', [0], 0, 50) : intList('loss', [0, 5], 0, 50);
const RATE = intList('rate', [200], 1, 10_000)[0]; // Mbit/s, both tools
const TBF = !process.argv.includes('--no-tbf');
/** "NAME=VALUE ..." from the environment variable `name` over the bench's own environment, or undefined. */
const envWith = (name) => process.env[name]
  ? { ...process.env, ...Object.fromEntries(process.env[name].split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])) }
  : undefined;
/** BENCH_SYNC_ENV, BENCH_SHARE_ENV (see the header): the syncs' and the share's environment. */
const SYNC_ENV = envWith('BENCH_SYNC_ENV');
const SHARE_ENV = envWith('BENCH_SHARE_ENV');
/** BENCH_SYNC_ARGS (see the header): extra arguments for our syncs. */
const SYNC_ARGS = (process.env.BENCH_SYNC_ARGS ?? '').split(/\s+/).filter(Boolean);
// --cpu-prof DIR: our share and syncs write V8 CPU profiles there (node --cpu-prof), to see where the time goes.
const CPU_PROF = optionValue('cpu-prof');
const NODE = CPU_PROF ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${path.resolve(CPU_PROF)}`] : [process.execPath];
// uftp tuned for a LAN. Its GRTT (-r init:min:max, default 0.5:0.01:15) sets how long each NAK round waits, and one
// lost REGISTER (the receiver retries after about 1 s) inflates it for the whole session: with the defaults the
// same 64 MiB to 3 receivers at 5% loss took 3.4 s or 48 s; with the maximum capped at 0.5 s, 3.5 s or 22 s. A
// small initial GRTT alone ends the announce phase before that retry and uftp goes on without the receiver (half
// of such runs); a longer announce phase (-s 50, the maximum robustness) lets the retry in. With -r 0.1:0.01:0.2
// -s 50, 8 of 8 trial runs completed on every receiver, 7 in about 3.5 s. --uftp-defaults runs uftp without them.
const UFTP_TUNING = process.argv.includes('--uftp-defaults') ? [] : ['-r', '0.1:0.01:0.2', '-s', '50'];
const FLOOD = intList('flood', [0], 1, 10_000_000)[0]; // junk datagrams/s, --flood only
// Tools: ours (--bwlimit <rate>M), uftp; and in the modes above auto (ours, --bwlimit auto), ours@N (ours,
// --bwlimit NM; ours@0 unlimited) and raw (mcast-blast: the ceiling; a goodput, not a file transfer).
const TOOLS = STAGGER ? (optionValue('tools') ?? (GATHER ? 'auto,gather' : 'auto')).split(',') : FLOOD ? ['ours', 'flooded'] : RSS_ONLY ? ['ours'] : AUTO ? ['auto', ...AUTO_RATES.map((r) => `ours@${r}`)] : LINE_RATE ? ['raw', 'ours@0', 'auto'] : (optionValue('tools') ?? 'ours,uftp').split(',');
if (!FLOOD && (TOOLS.some((t) => !/^(ours|ours1368|follow|uftp|auto|gather|raw|ours@\d+)$/.test(t)) || TOOLS.length === 0)) fail('--tools wants ours, ours1368, follow, uftp or ours,uftp');
/** The --bwlimit our share runs with as `tool`. */
if (TOOLS.includes('gather') && !GATHER) fail('tool gather wants --gather DUR');
const bwlimitOf = (tool) => (tool === 'auto' || tool === 'gather' ? 'auto' : tool.startsWith('ours@') ? `${tool.slice(5)}M` : `${RATE}M`);
const RSS_TARGET = 200e6; // bytes: "the receiver's peak RSS stays under 200 MB for a 1 GiB file"

// A transfer that should take s seconds at the rate gets 4x that plus a minute before we give up on it.
const RUN_TIMEOUT_MS = Math.round(((SIZE * 8) / (RATE * 1e6)) * 4000 + 60_000);

// ---------------------------------------------------------------------------------------------------------
// Preconditions

if (typeof process.getuid !== 'function' || process.getuid() !== 0) fail('needs root (network namespaces)', 3);
args.need([['nft', ['--version'], 'nftables'], ['tc', ['-V'], 'iproute2'], [TIME, ['--version'], 'time'],
  ...(TOOLS.includes('uftp') ? [['uftp', ['-h'], 'uftp'], ['uftpd', ['-h'], 'uftp']] : []),
  ...(TOOLS.includes('raw') ? [['cc', ['--version'], 'gcc']] : [])]);
if (!existsSync(path.join(REPO, 'dist', 'bundle', 'commands', 'share.js'))) fail('dist/ missing; run npm run build first', 3);

// ---------------------------------------------------------------------------------------------------------
// Work area and clean-up

const { work, withLab, cleanup } = benchSession('transfer-bench');


function sha256(file) {
  return new Promise((resolve) => {
    if (!existsSync(file)) return resolve('(missing)');
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('error', (e) => resolve(`(${e.code ?? e.message})`))
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The last `n` lines of a uftp/uftpd log, runs of the same message (timestamps aside) folded into one. */
function condense(log, n = 12) {
  const out = [];
  for (const line of log.split('\n')) {
    if (!line.trim() || /Sending (ANNOUNCE|section)|NAKs for section/.test(line)) continue;
    const msg = line.replace(/^[\d/:. -]+:\s*/, '');
    const last = out[out.length - 1];
    if (last && last.msg === msg) last.count++;
    else out.push({ line, msg, count: 1 });
  }
  return out.slice(-n).map((o) => (o.count > 1 ? `${o.line} (x${o.count})` : o.line)).join('\n  | ');
}

// ---------------------------------------------------------------------------------------------------------
// One run of each tool on a fresh lab


/** Datagrams the receivers' kernels dropped on full socket buffers (a receiver that cannot keep up), summed. */
async function rcvbufDrops(lab, receivers) {
  let n = 0;
  for (let h = 1; h <= receivers; h++) n += await lab.udpRcvbufErrors(h);
  return n;
}

/** Start bench/flood.js on the lab's last host against the groups of receiver 1 (flood mode); stop() returns its report. */
function startFlood(lab, floodHost) {
  const watch = lab.spawn(1, ['sleep', String(Math.ceil(RUN_TIMEOUT_MS / 1000) + 60)]);
  const f = lab.spawn(floodHost, [process.execPath, path.join(REPO, 'bench', 'flood.js'), '--rate', String(FLOOD), '--watch', String(watch.pid),
    '--seconds', String(Math.ceil(RUN_TIMEOUT_MS / 1000))]);
  let out = '';
  let err = '';
  f.stdout.on('data', (d) => (out += d));
  f.stderr.on('data', (d) => (err = (err + d).slice(-5000)));
  return {
    async stop() {
      if (f.exitCode === null) {
        killGroup(f, 'SIGTERM');
        await Promise.race([new Promise((r) => f.once('exit', r)), sleep(5000)]);
      }
      killGroup(watch, 'SIGTERM');
      try {
        return JSON.parse(out);
      } catch {
        throw new Error(`flooder gave no report: ${tail(err) || '(no stderr)'}`);
      }
    },
  };
}

/**
 * --bottleneck: the receivers' switch ports carry only `mbit` (tbf, a 10 ms queue), so the bridge drops what
 * exceeds it, as a slower switch port would. Returns a function that reads the datagrams dropped there so far.
 */
async function bottleneck(lab, receivers, mbit) {
  const ports = lab.hosts.slice(1, receivers + 1).map((h) => h.port);
  for (const port of ports) {
    const r = await lab.exec('switch', ['tc', 'qdisc', 'replace', 'dev', port, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '32kb', 'latency', '10ms']);
    if (r.code !== 0) throw new Error(`tc on ${port}: ${r.stderr}`);
  }
  return async () => {
    let sent = 0;
    let dropped = 0;
    for (const port of ports) {
      const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+)/.exec((await lab.exec('switch', ['tc', '-s', 'qdisc', 'show', 'dev', port])).stdout);
      if (m) {
        sent += Number(m[1]);
        dropped += Number(m[2]);
      }
    }
    return { sent, dropped };
  };
}

async function runOurs(src, srcHash, receivers, loss, tag, bwlimit = `${RATE}M`, bottleneckMbit = undefined, flood = false, { shareArgs = [], staggerSec = 0 } = {}) {
  return withLab(receivers + (flood ? 1 : 0), loss, TBF ? '1gbit' : undefined, async (lab) => {
    const dir = path.join(work, tag);
    mkdirSync(dir);
    const errors = [];
    let flooder;
    const bneck = bottleneckMbit ? await bottleneck(lab, receivers, bottleneckMbit) : undefined;
    const share = lab.spawn(0, [...NODE, CLI, 'share', ...(process.env.BENCH_SHARE_LOG ? ['-v'] : []), '-i', 'e0', '--bwlimit', bwlimit, ...shareArgs, src], { env: SHARE_ENV });
    let shareErr = '';
    share.stderr.on('data', (d) => (shareErr = (shareErr + d).slice(-20_000)));
    if (process.env.BENCH_SHARE_LOG) share.stderr.on('data', (d) => appendFileSync(process.env.BENCH_SHARE_LOG, d));
    try {
      const hash = await servingRoot(share, () => shareErr);
      const drops0 = await rcvbufDrops(lab, receivers);
      // The flood starts before the syncs: its first datagrams reach receiver 1 with its first join.
      if (flood) flooder = startFlood(lab, receivers + 1);
      const bneck0 = await bneck?.();
      const tx0 = await lab.txBytes(0);
      const t0 = performance.now();
      let tLast = t0;
      const syncs = await Promise.all(
        Array.from({ length: receivers }, async (_, i) => {
          const h = i + 1;
          const dest = path.join(dir, `r${h}.bin`);
          const rssFile = path.join(dir, `r${h}.rss`);
          // --stagger: receiver h starts (h-1)/(N-1) of the way through the spread.
          if (staggerSec > 0 && receivers > 1) await sleep((1000 * staggerSec * i) / (receivers - 1));
          // A cache directory of the run's own: the host's default one (/var/cache/lcsync as root) is not the bench's to fill.
          const r = await lab.exec(h, timed(rssFile, [...NODE, CLI, 'sync', '--json', '-i', 'e0',
            '--timeout', '60', '--cache', path.join(dir, `r${h}.cache`), ...SYNC_ARGS, hash, dest]), { timeoutMs: RUN_TIMEOUT_MS, env: SYNC_ENV });
          const finished = (performance.now() - t0) / 1000;
          tLast = Math.max(tLast, performance.now());
          let seconds = NaN;
          try {
            seconds = Number(JSON.parse(r.stdout).seconds);
          } catch {
            // No summary: the run failed, and its stderr is reported below.
          }
          return { h, dest, r, ...timeReport(rssFile), seconds, finished };
        }),
      );
      const wall = (tLast - t0) / 1000;
      const floodReport = flooder ? await flooder.stop() : undefined;
      flooder = undefined;
      const tx1 = await settledTx(lab);
      const shareRss = share.pid !== undefined ? peakRssKiB(share.pid) : undefined;
      const shareCpu = share.pid !== undefined ? cpuSeconds(share.pid) : undefined;
      let ok = 0;
      for (const s of syncs) {
        const got = await sha256(s.dest);
        if (s.r.code === 0 && got === srcHash) ok++;
        else errors.push(`receiver ${s.h}: exit ${s.r.code}, sha256 ${got === srcHash ? 'ok' : `mismatch (${got.slice(0, 16)})`}; stderr: ${tail(s.r.stderr) || '(empty)'}; stdout: ${tail(s.r.stdout, 600) || '(empty)'}`);
        rmSync(s.dest, { force: true });
      }
      if (share.exitCode !== null) errors.push(`share exited early with ${share.exitCode}: ${tail(shareErr)}`);
      return {
        ok, wall, wire: tx1 - tx0, inner: Math.max(...syncs.map((s) => s.seconds)), finished: syncs.map((s) => s.finished),
        rssRx: Math.max(...syncs.map((s) => s.rss)), rssTx: shareRss ?? NaN,
        cpuRx: Math.max(...syncs.map((s) => s.cpu)), cpuTx: shareCpu ?? NaN,
        cpuAll: syncs.reduce((a, s) => a + s.cpu, 0) + (shareCpu ?? NaN),
        drops: (await rcvbufDrops(lab, receivers)) - drops0,
        floodRate: floodReport ? floodReport.sent / floodReport.seconds : NaN,
        bneckLoss: bneck ? await bneck().then((b) => (100 * (b.dropped - bneck0.dropped)) / Math.max(1, b.sent - bneck0.sent + b.dropped - bneck0.dropped)) : NaN,
        errors,
      };
    } finally {
      await flooder?.stop().catch(() => {});
      if (share.exitCode === null) {
        killGroup(share, 'SIGTERM');
        await Promise.race([new Promise((r) => share.once('exit', r)), sleep(3000)]);
      }
    }
  });
}

/**
 * Tool follow: receivers that run before the transfer, as uftpd does. Our share serves an empty directory, each
 * receiver runs `lcsync sync --follow -a --delete` of it; once every one has synced the empty tree, the file is
 * hard-linked into the directory (one atomic event), the share re-indexes (its 200 ms debounce of file events and
 * the hashing of the file are in the wall) and announces the new root, and each receiver syncs it. Wall: from the
 * link until the file is in place on every receiver (polled every 5 ms; a sync renames the file into place
 * complete). CPU: what the receivers and the share used from just before the link until then (their start-up and
 * the empty first sync are not in it, as uftpd's start-up is not in uftp's figures). RSS: peaks over their lives.
 */
async function runFollow(src, srcHash, receivers, loss, tag) {
  return withLab(receivers, loss, TBF ? '1gbit' : undefined, async (lab) => {
    const dir = path.join(work, tag);
    const pub = path.join(dir, 'pub');
    mkdirSync(pub, { recursive: true });
    const errors = [];
    const share = lab.spawn(0, [...NODE, CLI, 'share', '-i', 'e0', '--bwlimit', `${RATE}M`, '--cache', path.join(dir, 'share.cache'), pub], { env: SHARE_ENV });
    let shareErr = '';
    share.stderr.on('data', (d) => (shareErr = (shareErr + d).slice(-20_000)));
    const followers = [];
    try {
      await servingRoot(share, () => shareErr);
      for (let h = 1; h <= receivers; h++) {
        const dest = path.join(dir, `m${h}`);
        const p = lab.spawn(h, [...NODE, CLI, 'sync', '--follow', '-a', '--delete', '-i', 'e0', '--cache', path.join(dir, `r${h}.cache`), ...SYNC_ARGS, 'pub/', dest], { env: SYNC_ENV });
        const f = { h, p, dest, err: '' };
        p.stderr.on('data', (d) => (f.err = (f.err + d).slice(-20_000)));
        followers.push(f);
      }
      // Each logs one line per sync ("sync 1 (...): root ..."): the empty tree is in place.
      const ready = Date.now() + 60_000;
      while (!followers.every((f) => /^sync 1 /m.test(f.err))) {
        const dead = followers.find((f) => f.p.exitCode !== null);
        if (dead || Date.now() > ready) throw new Error(`receiver ${dead?.h ?? ''} did not take the empty tree: ${tail(dead?.err ?? followers.map((f) => f.err).join('\n'))}`);
        await sleep(50);
      }
      await sleep(500);
      const drops0 = await rcvbufDrops(lab, receivers);
      const cpu0 = followers.map((f) => cpuSeconds(f.p.pid) ?? NaN);
      const shareCpu0 = cpuSeconds(share.pid) ?? NaN;
      const tx0 = await lab.txBytes(0);
      const t0 = performance.now();
      linkSync(src, path.join(pub, path.basename(src)));
      const finished = new Array(receivers).fill(NaN);
      while (finished.some((x) => Number.isNaN(x))) {
        for (const f of followers) if (Number.isNaN(finished[f.h - 1]) && existsSync(path.join(f.dest, path.basename(src)))) finished[f.h - 1] = (performance.now() - t0) / 1000;
        const dead = followers.find((f) => f.p.exitCode !== null || f.p.signalCode !== null);
        if (dead) throw new Error(`receiver ${dead.h} exited (${dead.p.exitCode ?? dead.p.signalCode}) before it had the file: ${tail(dead.err)}`);
        if (performance.now() - t0 > RUN_TIMEOUT_MS) throw new Error(`not every receiver had the file within ${RUN_TIMEOUT_MS / 1000} s: ${followers.map((f) => tail(f.err)).join('\n')}`);
        await sleep(5);
      }
      const wall = Math.max(...finished);
      const cpuRx = followers.map((f, i) => (cpuSeconds(f.p.pid) ?? NaN) - cpu0[i]);
      const cpuTx = (cpuSeconds(share.pid) ?? NaN) - shareCpu0;
      const tx1 = await settledTx(lab);
      let ok = 0;
      const inner = [];
      for (const f of followers) {
        const got = await sha256(path.join(f.dest, path.basename(src)));
        if (got === srcHash) ok++;
        else errors.push(`receiver ${f.h}: sha256 ${got.slice(0, 16)}; stderr: ${tail(f.err)}`);
        // The sync that brought the file: "sync 2 (announce): root ..., 1 entry changed ..., 0.78 s".
        const m = /^sync 2 .*, ([\d.]+) s$/m.exec(f.err);
        inner.push(m ? Number(m[1]) : NaN);
      }
      return {
        ok, wall, wire: tx1 - tx0, inner: Math.max(...inner), finished,
        rssRx: Math.max(...followers.map((f) => peakRssKiB(f.p.pid) ?? NaN)), rssTx: peakRssKiB(share.pid) ?? NaN,
        cpuRx: Math.max(...cpuRx), cpuTx, cpuAll: cpuRx.reduce((a, c) => a + c, 0) + cpuTx,
        drops: (await rcvbufDrops(lab, receivers)) - drops0, errors,
      };
    } finally {
      for (const p of [...followers.map((f) => f.p), share]) if (p.exitCode === null) killGroup(p, 'SIGTERM');
      const end = Date.now() + 3000;
      while (Date.now() < end && [share, ...followers.map((f) => f.p)].some((p) => p.exitCode === null && p.signalCode === null)) await sleep(50);
    }
  });
}

/** bench/mcast-blast.c, compiled once per benchmark run into the work area. */
let blaster;
function buildBlaster() {
  if (blaster) return blaster;
  const out = path.join(work, 'mcast-blast');
  const r = spawnSync('cc', ['-O2', '-o', out, path.join(REPO, 'bench', 'mcast-blast.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc mcast-blast.c: ${r.stderr || r.error?.message}`);
  return (blaster = out);
}

/** How long the raw sender sends: about what 1 GiB takes at 1 Gbit/s. */
const RAW_SECONDS = 8;
/** The size of our chunk datagrams (OID + PID + 1024-byte symbol), so that the ceiling is in the same units. */
const RAW_DATAGRAM = 32 + 4 + 1024;

/**
 * The lab's raw UDP multicast ceiling: mcast-blast sends 1060-byte datagrams as fast as sendmmsg goes from host 0
 * for RAW_SECONDS, mcast-blast on host 1 (joined, an 8 MiB receive buffer as our receiver asks for) counts what
 * arrives. Goodput: bytes received over the time from the first to the last.
 */
async function runRaw(_src, _srcHash, receivers, loss, tag) {
  const bin = buildBlaster();
  return withLab(receivers, loss, TBF ? '1gbit' : undefined, async (lab) => {
    const group = 'ff1e::4242:1';
    const port = '4243';
    const sinks = lab.hosts.slice(1, receivers + 1).map((_, i) => {
      const p = lab.spawn(i + 1, [bin, 'recv', 'e0', group, port, String(RAW_SECONDS + 20), String(8 << 20)]);
      const out = { p, stdout: '', stderr: '' };
      p.stdout.on('data', (d) => (out.stdout += d));
      p.stderr.on('data', (d) => (out.stderr += d));
      return out;
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !sinks.every((x) => x.stderr.includes('joined') || x.p.exitCode !== null)) await sleep(20);
    // Let the bridge's snooping see the joins' reports.
    await sleep(500);
    const drops0 = await rcvbufDrops(lab, receivers);
    const sent = await lab.exec(0, [bin, 'send', 'e0', group, port, String(RAW_DATAGRAM), String(RAW_SECONDS)], { timeoutMs: (RAW_SECONDS + 30) * 1000 });
    const got = await Promise.all(sinks.map((x) => new Promise((resolve) => {
      const done = () => resolve(/recv (\d+) (\d+) ([\d.]+)/.exec(x.stdout));
      if (x.p.exitCode !== null) done();
      else x.p.once('exit', done);
    })));
    const errors = [];
    if (sent.code !== 0) errors.push(`mcast-blast send: exit ${sent.code}: ${tail(sent.stderr)}`);
    const rates = got.map((m, i) => {
      if (!m || Number(m[3]) <= 0) errors.push(`mcast-blast recv on host ${i + 1}: ${tail(sinks[i].stdout + sinks[i].stderr) || 'nothing received'}`);
      return m ? (Number(m[2]) * 8) / Number(m[3]) / 1e6 : NaN;
    });
    const sentM = /sent (\d+) (\d+) ([\d.]+)/.exec(sent.stdout);
    process.stderr.write(`raw: sent ${sentM?.[1] ?? '?'} datagrams (${sentM ? ((Number(sentM[2]) * 8) / Number(sentM[3]) / 1e6).toFixed(0) : '?'} Mbit/s offered), received ${got.map((m) => m?.[1] ?? '?').join(', ')} ... `);
    // No file moved: wire/file would mean nothing (the bytes offered are in the line above).
    return { ok: errors.length ? 0 : receivers, wall: NaN, wire: NaN, inner: NaN, rssRx: NaN, rssTx: NaN, cpuRx: NaN, cpuTx: NaN, cpuAll: NaN,
      drops: (await rcvbufDrops(lab, receivers)) - drops0, goodput: Math.min(...rates), errors };
  });
}

async function runUftp(src, srcHash, receivers, loss, tag) {
  return withLab(receivers, loss, TBF ? '1gbit' : undefined, async (lab) => {
    const dir = path.join(work, tag);
    mkdirSync(dir);
    const errors = [];
    // uftp cannot resolve an interface name for IPv6 here ("Invalid name/address e0"), so -I takes each host's
    // ULA address. Group addresses: site-local scope; the private one gets a random last group (x).
    const pub = 'ff15::1:2';
    const priv = 'ff15::2:x';
    const daemons = [];
    for (let h = 1; h <= receivers; h++) {
      const dest = path.join(dir, `u${h}`);
      mkdirSync(dest);
      const uid = `0x${(h + 1).toString(16).padStart(8, '0')}`;
      const d = lab.spawn(h, ['uftpd', '-d', '-q', '-M', pub, '-I', lab.hosts[h].ula, '-D', dest, '-U', uid]);
      const entry = { h, d, dest, uid, log: '' };
      d.stderr.on('data', (x) => (entry.log = (entry.log + x).slice(-20_000)));
      d.stdout.on('data', (x) => (entry.log = (entry.log + x).slice(-20_000)));
      daemons.push(entry);
    }
    try {
      // uftpd prints its key fingerprint once it is set up; then it is listening.
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && !daemons.every((e) => /Loaded .* key/.test(e.log) || e.d.exitCode !== null)) await sleep(50);
      for (const e of daemons) if (e.d.exitCode !== null) throw new Error(`uftpd on host ${e.h} exited with ${e.d.exitCode}: ${tail(e.log)}`);
      await sleep(200);
      const log = path.join(dir, 'uftp.log');
      const rssFile = path.join(dir, 'uftp.rss');
      const drops0 = await rcvbufDrops(lab, receivers);
      const tx0 = await lab.txBytes(0);
      const t0 = performance.now();
      const cpu0 = daemons.map((e) => (e.d.pid !== undefined ? cpuSeconds(e.d.pid) : undefined) ?? NaN);
      const r = await lab.exec(0, timed(rssFile, ['uftp', '-M', pub, '-P', priv, '-I', lab.hosts[0].ula,
        '-R', String(RATE * 1000), '-U', '0x00000001', '-H', daemons.map((e) => e.uid).join(','), ...UFTP_TUNING,
        '-S', '@LOG', '-L', log, src]), { timeoutMs: RUN_TIMEOUT_MS });
      const wall = (performance.now() - t0) / 1000;
      const tx1 = await settledTx(lab);
      const rssRx = daemons.map((e) => (e.d.pid !== undefined ? peakRssKiB(e.d.pid) : undefined) ?? NaN);
      const cpuRx = daemons.map((e, i) => ((e.d.pid !== undefined ? cpuSeconds(e.d.pid) : undefined) ?? NaN) - cpu0[i]);
      const uftpLog = existsSync(log) ? readFileSync(log, 'utf8') : '';
      if (r.code !== 0) errors.push(`uftp exit ${r.code}: ${tail(r.stderr + r.stdout)}; log:\n  | ${condense(uftpLog)}`);
      let ok = 0;
      for (const e of daemons) {
        const f = path.join(e.dest, path.basename(src));
        // uftp exits once every receiver sent COMPLETE, after uftpd closed the file; allow a moment anyway.
        let got = await sha256(f);
        for (let i = 0; i < 10 && got !== srcHash && r.code === 0; i++) {
          await sleep(200);
          got = await sha256(f);
        }
        if (got === srcHash) ok++;
        else errors.push(`uftpd on host ${e.h} (${e.uid}): sha256 ${got.slice(0, 16)}; uftpd log:\n  | ${condense(e.log)}\n  uftp log:\n  | ${condense(uftpLog)}`);
        rmSync(f, { force: true });
      }
      const sender = timeReport(rssFile);
      return { ok, wall, wire: tx1 - tx0, inner: NaN, rssRx: Math.max(...rssRx), rssTx: sender.rss, cpuRx: Math.max(...cpuRx), cpuTx: sender.cpu,
        cpuAll: cpuRx.reduce((a, c) => a + c, 0) + sender.cpu, drops: (await rcvbufDrops(lab, receivers)) - drops0, errors };
    } finally {
      for (const e of daemons) killGroup(e.d, 'SIGTERM');
      const end = Date.now() + 3000;
      while (Date.now() < end && daemons.some((e) => e.d.exitCode === null && e.d.signalCode === null)) await sleep(50);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Report

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const mib = (kib) => kib / 1024;

function summarize(runs, receivers) {
  const okRuns = runs.filter((r) => r.ok === receivers);
  const use = okRuns.length ? okRuns : runs;
  const wall = median(use.map((r) => r.wall));
  return {
    okRuns: okRuns.length,
    reps: runs.length,
    wall,
    inner: median(use.map((r) => r.inner)),
    // raw reports its own (it moves no file); for the others, the file to every receiver over the wall time.
    goodput: use.some((r) => r.goodput !== undefined) ? median(use.map((r) => r.goodput)) : (SIZE * receivers * 8) / wall / 1e6,
    // Over the slowest receiver's own time (no node start-up): what the line-rate target is about.
    goodputInner: (SIZE * 8) / median(use.map((r) => r.inner)) / 1e6,
    bneckLoss: median(use.map((r) => r.bneckLoss ?? NaN)),
    wire: median(use.map((r) => r.wire)) / SIZE,
    rssRx: median(use.map((r) => r.rssRx)),
    rssTx: median(use.map((r) => r.rssTx)),
    cpuRx: median(use.map((r) => r.cpuRx)),
    cpuTx: median(use.map((r) => r.cpuTx)),
    cpuAll: median(use.map((r) => r.cpuAll)),
    drops: median(use.map((r) => r.drops)),
    floodRate: median(use.map((r) => r.floodRate)),
    // --stagger: each receiver's finish time from the first start (median per receiver over the runs).
    finished: use[0]?.finished ? use[0].finished.map((_, i) => median(use.map((r) => r.finished?.[i] ?? NaN))) : undefined,
  };
}

function printScenario(receivers, loss, res, note = '') {
  const W = Math.max(6, ...Object.keys(res).map((t) => t.length));
  const bneck = Object.values(res).some((s) => Number.isFinite(s.bneckLoss));
  const capNote = TOOLS.some((t) => t === 'ours' || t === 'ours1368' || t === 'uftp') ? `${RATE} Mbit/s cap` : 'ours: --bwlimit as named';
  console.log(`\n== ${receivers} receiver${receivers > 1 ? 's' : ''}${STAGGER ? ` started over ${STAGGER.w} s` : ''}, ${loss}% loss, ${SIZE / MiB} MiB, ${capNote}, ${TBF ? 'tbf 1gbit links' : 'no tbf'}${note}, ${REPS} rep${REPS > 1 ? 's' : ''} (median)`);
  console.log(`${'tool'.padEnd(W)} ${'ok runs'.padStart(7)} ${'wall s'.padStart(8)} ${'sync s'.padStart(6)} ${'goodput Mbit/s'.padStart(14)} ${'wire/file'.padStart(9)} ${'RSS rx MiB'.padStart(10)} ${'RSS tx MiB'.padStart(10)} ${'CPU rx s'.padStart(8)} ${'CPU tx s'.padStart(8)} ${'CPU all s'.padStart(9)} ${'rx drops'.padStart(8)}${bneck ? ` ${'bneck loss %'.padStart(12)}` : ''}`);
  for (const [tool, s] of Object.entries(res)) {
    console.log(`${tool.padEnd(W)} ${`${s.okRuns}/${s.reps}`.padStart(7)} ${fmt(s.wall).padStart(8)} ${fmt(s.inner).padStart(6)} ${fmt(s.goodput, 1).padStart(14)} ${fmt(s.wire, 3).padStart(9)} ${fmt(mib(s.rssRx), 1).padStart(10)} ${fmt(mib(s.rssTx), 1).padStart(10)} ${fmt(s.cpuRx).padStart(8)} ${fmt(s.cpuTx).padStart(8)} ${fmt(s.cpuAll).padStart(9)} ${fmt(s.drops, 0).padStart(8)}${bneck ? ` ${fmt(s.bneckLoss, 1).padStart(12)}` : ''}`);
  }
  if (STAGGER) {
    for (const [tool, s] of Object.entries(res)) {
      if (!s.finished) continue;
      console.log(`${tool}: sender bytes / file ${fmt(s.wire, 3)}x; receivers finished at ${s.finished.map((f) => fmt(f)).join(' ')} s (start i*${STAGGER.w}/${Math.max(1, receivers - 1)} s); last ${fmt(Math.max(...s.finished))} s`);
    }
  }
  const o = res.ours;
  const u = res.uftp;
  if (o && u) {
    console.log(`ours/uftp: wall ${fmt(o.wall / u.wall)}x, wire ${fmt(o.wire / u.wire)}x, RSS receiver ${fmt(o.rssRx / u.rssRx)}x, RSS sender ${fmt(o.rssTx / u.rssTx)}x`);
  }
  const f = res.flooded;
  if (o && f) {
    const ratio = f.inner / o.inner;
    const pass = f.okRuns === f.reps && o.okRuns === o.reps && ratio <= 2;
    console.log(`flood: ${FLOOD} junk datagrams/s asked, ${fmt(f.floodRate, 0)}/s sent by the flooder; sync s flooded/unflooded ${fmt(ratio)}x ` +
      `(wall ${fmt(f.wall / o.wall)}x, receiver CPU ${fmt(f.cpuRx / o.cpuRx)}x); target <= 2x: ${pass ? 'PASS' : 'FAIL'}`);
  }
  const large = res.ours1368;
  if (large && u) {
    console.log(`ours1368/uftp: wall ${fmt(large.wall / u.wall)}x, wire ${fmt(large.wire / u.wire)}x, RSS receiver ${fmt(large.rssRx / u.rssRx)}x, RSS sender ${fmt(large.rssTx / u.rssTx)}x`);
  }
  const warm = res.follow;
  if (warm && u) {
    console.log(`follow/uftp: wall ${fmt(warm.wall / u.wall)}x, wire ${fmt(warm.wire / u.wire)}x, CPU receiver ${fmt(warm.cpuRx / u.cpuRx)}x, RSS receiver ${fmt(warm.rssRx / u.rssRx)}x`);
  }
  if (o && u && !f) printTargets('', o, u, receivers, loss);
  if (large && u) printTargets(' with --symbol-size 1368', large, u, receivers, loss);
  if (warm && u) printTargets(' with receivers running before (follow)', warm, u, receivers, loss);
}

/** Issue 12's targets for one of our tools against uftp, per scenario: wall and wire where the issue names them, CPU and RSS in every one. */
function printTargets(label, o, u, receivers, loss) {
  {
    const allOk = o.okRuns === o.reps && u.okRuns === u.reps;
    const verdict = (b) => (b && allOk ? 'PASS' : 'FAIL');
    const parts = [];
    if ((receivers === 1 && loss === 0) || (receivers === 3 && loss === 5)) {
      parts.push(`wall <= 1.0x uftp: ${verdict(o.wall <= u.wall)} (${fmt(o.wall / u.wall)}x)`);
      parts.push(`wire <= 1.25x file: ${verdict(o.wire <= 1.25)} (${fmt(o.wire, 3)}x)`);
    }
    parts.push(`CPU per receiver <= 1.5x uftp's: ${verdict(o.cpuRx <= 1.5 * u.cpuRx)} (${fmt(o.cpuRx / u.cpuRx)}x)`);
    parts.push(`CPU share <= 1.5x uftp's sender: ${verdict(o.cpuTx <= 1.5 * u.cpuTx)} (${fmt(o.cpuTx / u.cpuTx)}x)`);
    parts.push(`RSS receiver <= 60 MiB: ${verdict(mib(o.rssRx) <= 60)}; sender <= 90 MiB: ${verdict(mib(o.rssTx) <= 90)}`);
    console.log(`issue 12 targets${label} (${receivers} rx, ${loss}% loss): ${parts.join('; ')}${allOk ? '' : '; not all runs complete'}`);
  }
}

// ---------------------------------------------------------------------------------------------------------

try {
  const src = path.join(work, 'data.bin');
  process.stderr.write(`writing ${SIZE / MiB} MiB of random data to ${src} ...\n`);
  writeRandomFile(src, SIZE);
  const srcHash = await sha256(src);
  const cpu = os.cpus();
  const uftpNote = FLOOD
    ? `(lcsync share --bwlimit ${RATE}M), flooded runs: ${FLOOD} junk datagrams/s onto receiver 1's groups`
    : TOOLS.includes('uftp')
    ? `for both (lcsync share --bwlimit ${RATE}M, uftp -R ${RATE * 1000}), uftp closed group (-H)${UFTP_TUNING.length ? ` ${UFTP_TUNING.join(' ')}` : ''}`
    : TOOLS.some((t) => t === 'ours') ? `(lcsync share --bwlimit ${RATE}M)` : '(ours: lcsync share --bwlimit as each tool says: auto, ours@N = NM, 0 unlimited)';
  console.log(`lcsync transfer benchmark: ${SIZE / MiB} MiB file, tools ${TOOLS.join(',')}, rate cap ${RATE} Mbit/s ${uftpNote}, ${TBF ? 'tbf rate 1gbit burst 64kb latency 10ms on both ends of every link' : 'no tbf'}`);
  console.log(`loss: random, per receiver port, both directions; all hosts share ${cpu.length} x ${cpu[0]?.model ?? 'cpu'}, node ${process.version}`);
  const failures = [];
  /** Every tool REPS times on `receivers` receivers at `loss`% (and behind a bottleneck of `bneckMbit`): the medians per tool. */
  const scenario = async (receivers, loss, tools, bneckMbit) => {
      const runs = Object.fromEntries(tools.map((t) => [t, []]));
      for (let rep = 0; rep < REPS; rep++) {
        // Alternate the order so that neither tool always runs on a warmer machine.
        const order = rep % 2 === 0 ? tools : [...tools].reverse();
        for (const tool of order) {
          const tag = `${tool}-${receivers}r-${loss}l-${rep}${bneckMbit ? `-b${bneckMbit}` : ''}`;
          process.stderr.write(`${tag} ... `);
          let r;
          try {
            const file = path.join(work, 'data.bin');
            r = await (tool === 'uftp' ? runUftp(file, srcHash, receivers, loss, tag)
              : tool === 'follow' ? runFollow(file, srcHash, receivers, loss, tag)
              : tool === 'raw' ? runRaw(file, srcHash, receivers, loss, tag)
              : runOurs(file, srcHash, receivers, loss, tag, bwlimitOf(tool), bneckMbit, tool === 'flooded',
                { shareArgs: tool === 'gather' ? ['--gather', GATHER] : tool === 'ours1368' ? ['--symbol-size', '1368'] : [], staggerSec: STAGGER?.w ?? 0 }));
          } catch (err) {
            r = { ok: 0, wall: NaN, wire: NaN, inner: NaN, rssRx: NaN, rssTx: NaN, cpuRx: NaN, cpuTx: NaN, cpuAll: NaN, drops: NaN, bneckLoss: NaN, errors: [String(err?.message ?? err)] };
          }
          process.stderr.write(`${r.ok}/${receivers} ok, ${fmt(r.wall)} s, wire ${fmt(r.wire / SIZE, 3)}x, RSS rx ${fmt(mib(r.rssRx), 1)} MiB, tx ${fmt(mib(r.rssTx), 1)} MiB, CPU rx ${fmt(r.cpuRx)} s, tx ${fmt(r.cpuTx)} s, rx drops ${fmt(r.drops, 0)}` +
            `${STAGGER && r.finished ? `, finished at ${r.finished.map((f) => fmt(f)).join(' ')} s` : ''}\n`);
          for (const e of r.errors) {
            process.stderr.write(`  ${e}\n`);
            failures.push(`${tag}: ${e}`);
          }
          runs[tool].push(r);
          rmSync(path.join(work, tag), { recursive: true, force: true });
        }
      }
      return Object.fromEntries(Object.entries(runs).map(([t, rs]) => [t, summarize(rs, receivers)]));
  };
  for (const receivers of RECEIVERS) {
    for (const loss of LOSSES) {
      const res = await scenario(receivers, loss, TOOLS);
      printScenario(receivers, loss, res);
      if (AUTO) {
        const fixed = Object.entries(res).filter(([t]) => t !== 'auto');
        const [bestTool, best] = fixed.reduce((a, b) => (b[1].goodput > a[1].goodput ? b : a));
        const ratio = res.auto.goodput / best.goodput;
        const target = loss === 0 ? `auto >= 90% of the best fixed rate: ${ratio >= 0.9 && res.auto.okRuns === res.auto.reps ? 'PASS' : 'FAIL'}`
          // What loss costs is repair traffic (wire/file) and time: no more of the first than any fixed rate, and at
          // least 90% of the slowest fixed rate's goodput (single runs on a busy machine vary by more than that).
          : `auto loses no more than a fixed rate (wire <= every fixed rate's, goodput >= 90% of the slowest): ${res.auto.wire <= Math.min(...fixed.map(([, f]) => f.wire)) && res.auto.goodput >= 0.9 * Math.min(...fixed.map(([, f]) => f.goodput)) && res.auto.okRuns === res.auto.reps ? 'PASS' : 'FAIL'} (fixed: wire ${fixed.map(([t, f]) => `${t} ${fmt(f.wire, 3)}x`).join(', ')}; slowest ${fmt(Math.min(...fixed.map(([, f]) => f.goodput)), 1)} Mbit/s)`;
        console.log(`auto: ${fmt(res.auto.goodput, 1)} Mbit/s goodput = ${fmt(100 * ratio, 0)}% of the best fixed rate (${bestTool}, ${fmt(best.goodput, 1)} Mbit/s); wire ${fmt(res.auto.wire, 3)}x vs ${fmt(best.wire, 3)}x; ${target}`);
      }
      if (LINE_RATE) {
        const raw = res.raw.goodput;
        for (const t of ['ours@0', 'auto']) {
          const o = res[t];
          const pass = o.goodputInner >= 850 && o.drops === 0 && o.okRuns === o.reps;
          console.log(`${t}: ${fmt(o.goodputInner, 1)} Mbit/s over the sync's own time (${fmt(o.goodput, 1)} over the wall time) = ${fmt((100 * o.goodputInner) / raw, 0)}% of the raw ceiling ${fmt(raw, 1)} Mbit/s; rx buffer drops ${fmt(o.drops, 0)}; target >= 850 Mbit/s with no drops: ${pass ? 'PASS' : 'FAIL'}`);
        }
      }
      if (RSS_4G) {
        const o = res.ours;
        const pass = mib(o.rssRx) <= 60 && mib(o.rssTx) <= 90 && o.okRuns === o.reps;
        console.log(`target: peak RSS receiver <= 60 MiB, sender <= 90 MiB for a ${SIZE / MiB} MiB file: ${pass ? 'PASS' : 'FAIL'} (receiver ${fmt(mib(o.rssRx), 1)} MiB, sender ${fmt(mib(o.rssTx), 1)} MiB)`);
      }
      if (RSS_1G) {
        const rx = res.ours.rssRx * 1024;
        const pass = Number.isFinite(rx) && rx < RSS_TARGET && res.ours.okRuns === res.ours.reps;
        console.log(`target: receiver peak RSS < 200 MB (200x10^6 bytes) for a 1 GiB file: ${pass ? 'PASS' : 'FAIL'} ` +
          `(${fmt(rx / 1e6, 1)} MB = ${fmt(mib(res.ours.rssRx), 1)} MiB${res.ours.okRuns === res.ours.reps ? '' : '; transfer incomplete'})`);
      }
    }
  }
  if (AUTO) {
    // The bottleneck: auto must find it; the fixed --rate (the old default, 200M) overruns it.
    const tools = ['auto', `ours@${RATE}`];
    const res = await scenario(1, 0, tools, BOTTLENECK);
    printScenario(1, 0, res, `, receivers' switch ports tbf ${BOTTLENECK} Mbit/s`);
    console.log(`behind ${BOTTLENECK} Mbit/s: auto lost ${fmt(res.auto.bneckLoss, 1)}% at the bottleneck, --bwlimit ${RATE}M ${fmt(res[tools[1]].bneckLoss, 1)}%; ` +
      `target not overrun into heavy loss (< 15%): ${res.auto.bneckLoss < 15 && res.auto.okRuns === res.auto.reps ? 'PASS' : 'FAIL'}`);
  }
  if (failures.length) {
    console.log(`\nfailures (${failures.length}):`);
    for (const f of failures) console.log(`- ${f}`);
  }
  console.log(`\nload average at the end: ${os.loadavg()[0].toFixed(2)}`);
} finally {
  await cleanup();
}
