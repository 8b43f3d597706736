/**
 * Start-up cost of an lcsync run: wall time, CPU (user + system) and peak RSS of `lcsync --version`,
 * `lcsync sync --help` and `lcsync index` of a small directory, beside `node -e 0` (what node itself costs).
 * Usage: node bench/startup-bench.js [--runs 15] [--baseline CHECKOUT] [--lab]
 * --baseline runs another built checkout's bin/run.js (for example a worktree of main) alternately with
 * this one's, in the same run, so that the machine's load falls on both alike. Medians of --runs runs.
 * --lab (root): also a receiver's start-up in a lab of two hosts: one `lcsync share` of a 1 MiB file (this
 * checkout), then --runs syncs of it into a fresh file with each build alternately: wall, wall minus the sync's
 * own "seconds" (start-up and exit), CPU and peak RSS of the receiver.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { REPO, TIME, benchArgs, benchSession, median, option } from './common.js';

const TOOL = 'startup-bench';
const { fail, value, need, flag } = benchArgs(TOOL, import.meta.url, { valued: ['--runs', '--baseline'], flags: ['--lab'], helpLines: [2, 11] });
const runs = option(TOOL, 'runs', 15);
need([[TIME, ['-f', '%e', 'true'], 'time']]);

const builds = [['this', REPO]];
const baseline = value('baseline');
if (baseline !== undefined) builds.unshift(['baseline', path.resolve(baseline)]);
for (const [, dir] of builds) {
  if (!existsSync(path.join(dir, 'bin', 'run.js')) || !existsSync(path.join(dir, 'oclif.manifest.json'))) {
    fail(`${dir} is not a built lcsync checkout (no bin/run.js or oclif.manifest.json: run npm run build there)`, 3);
  }
}

const work = mkdtempSync(path.join(tmpdir(), 'lcsync-startup-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const small = path.join(work, 'small');
mkdirSync(small);
for (let i = 0; i < 20; i++) writeFileSync(path.join(small, `f${i}`), Buffer.alloc(1000 + i * 300, i));

const cases = [
  ['--version', ['--version']],
  ['sync --help', ['sync', '--help']],
  ['index (20 small files)', ['index', small]],
];

/** One run: wall seconds (measured here), CPU seconds and peak RSS in MiB (from /usr/bin/time). */
function once(argv) {
  const report = path.join(work, 'time');
  const t0 = process.hrtime.bigint();
  const r = spawnSync(TIME, ['-f', '%U %S %M', '-o', report, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) fail(`${argv.join(' ')} exited ${r.status}: ${r.stderr.toString().trim().split('\n').pop()}`);
  const [u, s, m] = readFileSync(report, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { wall, cpu: u + s, rss: m / 1024 };
}

const rows = [];
const measure = (label, variants) => {
  const got = variants.map(() => []);
  for (let i = 0; i < runs; i++) variants.forEach(([, argv], k) => got[k].push(once(argv)));
  variants.forEach(([who], k) => {
    const pick = (f) => median(got[k].map(f));
    rows.push([label, who, pick((x) => x.wall), pick((x) => x.cpu), pick((x) => x.rss)]);
  });
};

const load0 = loadavg()[0];
measure('node -e 0', [['node', [process.execPath, '-e', '0']]]);
for (const [label, args] of cases) {
  measure(label, builds.map(([who, dir]) => [who, [process.execPath, path.join(dir, 'bin', 'run.js'), ...args]]));
}

console.log(`${TOOL}: node ${process.version}, ${runs} runs each, medians; load average ${load0.toFixed(2)} -> ${loadavg()[0].toFixed(2)}`);
console.log(`${'case'.padEnd(24)} ${'build'.padEnd(9)} ${'wall s'.padStart(7)} ${'CPU s'.padStart(7)} ${'RSS MiB'.padStart(8)}`);
for (const [label, who, wall, cpu, rss] of rows) {
  console.log(`${label.padEnd(24)} ${who.padEnd(9)} ${wall.toFixed(3).padStart(7)} ${cpu.toFixed(3).padStart(7)} ${rss.toFixed(1).padStart(8)}`);
}

if (flag('lab')) await labRuns();

/** --lab: one share, receivers of each build alternately; a receiver's wall, start-up + exit, CPU and RSS. */
async function labRuns() {
  const session = benchSession(TOOL);
  try {
    const src = path.join(session.work, 'data.bin');
    writeFileSync(src, Buffer.alloc(1 << 20, 7).map((_, i) => (i * 2654435761) >>> 24));
    const got = new Map(builds.map(([who]) => [who, []]));
    const loadBefore = loadavg()[0];
    await session.withLab(1, 0, undefined, async (lab) => {
      const share = lab.spawn(0, [process.execPath, path.join(REPO, 'bin', 'run.js'), 'share', '--json', '-i', 'e0', '--no-cache', '--rundir', session.work, src]);
      let out = '';
      share.stdout.on('data', (d) => (out += d));
      const deadline = Date.now() + 30_000;
      while (!/"hash": *"[0-9a-f]{64}"/.test(out)) {
        if (Date.now() > deadline || share.exitCode !== null) fail('the share printed no root hash in 30 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      const hash = out.match(/"hash": *"([0-9a-f]{64})"/)[1];
      for (let i = 0; i < runs; i++) {
        for (const [who, dir] of builds) {
          const dest = path.join(session.work, `out-${who}.bin`);
          rmSync(dest, { force: true });
          const report = path.join(session.work, 'time');
          const t0 = Date.now();
          const r = await lab.exec(1, [TIME, '-f', '%U %S %M', '-o', report, process.execPath, path.join(dir, 'bin', 'run.js'), 'sync', '--json', '-i', 'e0', '--timeout', '30', hash, dest]);
          const wall = (Date.now() - t0) / 1000;
          if (r.code !== 0) fail(`${who}: sync exited ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
          const [u, s, m] = readFileSync(report, 'utf8').trim().split('\n').pop().split(' ').map(Number);
          got.get(who).push({ wall, gap: wall - JSON.parse(r.stdout).seconds, cpu: u + s, rss: m / 1024 });
        }
      }
    });
    console.log(`\nlab: a receiver's sync of a 1 MiB file, ${runs} runs each, alternating, medians; load average ${loadBefore.toFixed(2)} -> ${loadavg()[0].toFixed(2)}`);
    console.log(`${'build'.padEnd(9)} ${'wall s'.padStart(7)} ${'start+exit s'.padStart(13)} ${'CPU s'.padStart(7)} ${'RSS MiB'.padStart(8)}`);
    for (const [who, xs] of got) {
      const pick = (f) => median(xs.map(f));
      console.log(`${who.padEnd(9)} ${pick((x) => x.wall).toFixed(3).padStart(7)} ${pick((x) => x.gap).toFixed(3).padStart(13)} ${pick((x) => x.cpu).toFixed(2).padStart(7)} ${pick((x) => x.rss).toFixed(1).padStart(8)}`);
    }
  } finally {
    await session.cleanup();
  }
}
