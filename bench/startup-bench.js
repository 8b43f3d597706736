/**
 * Start-up cost of an lcsync run: wall time, CPU (user + system) and peak RSS of `lcsync --version`,
 * `lcsync sync --help` and `lcsync index` of a small directory, beside `node -e 0` (what node itself costs).
 * Usage: node bench/startup-bench.js [--runs 15] [--baseline CHECKOUT]
 * --baseline runs another built checkout's bin/run.js (for example a worktree of main) alternately with
 * this one's, in the same run, so that the machine's load falls on both alike. Medians of --runs runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { REPO, TIME, benchArgs, median, option } from './common.js';

const TOOL = 'startup-bench';
const { fail, value, need } = benchArgs(TOOL, import.meta.url, { valued: ['--runs', '--baseline'] });
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
