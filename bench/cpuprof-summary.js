#!/usr/bin/env node
/**
 * Sum a V8 CPU profile (`node --cpu-prof`, or a bench's `--cpu-prof DIR`) by function and by file.
 *
 *   node bench/cpuprof-summary.js FILE.cpuprofile [--top 30] [--from MS] [--to MS] [--match TEXT] [--timeline MS]
 *
 * Prints the profile's span, then the functions with the most self time (time on the CPU in the function
 * itself), the same summed per source file (node: internals, the bundle's files, our dist/ files), and the
 * functions with the most total time (self plus everything they called; recursion counted once). --from/--to
 * keep only the samples in that window (ms from the profile's start), to look at one phase of a run; --match
 * also prints, for every function whose name or file contains TEXT, its callers by time; --timeline cuts the
 * window into slices of MS and prints for each how much was idle and GC, and its top three functions by
 * total time among the bundle's own (dist/) functions, to see the phases of a run.
 * (idle) is time with nothing to run (the process waiting on I/O or timers), (garbage collector) is GC.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const TOP = Number(opt('top', '30'));
const FROM = Number(opt('from', '0')) * 1000;
const TO = Number(opt('to', 'Infinity')) * 1000;
const MATCH = opt('match', undefined);
const SLICE = Number(opt('timeline', '0')) * 1000;
if (argv.length !== 1 || !Number.isFinite(TOP) || TOP <= 0 || Number.isNaN(FROM) || Number.isNaN(TO) || !(SLICE >= 0)) {
  console.error('usage: node bench/cpuprof-summary.js FILE.cpuprofile [--top N] [--from MS] [--to MS] [--match TEXT] [--timeline MS]');
  process.exit(2);
}

const prof = JSON.parse(readFileSync(argv[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const shortUrl = (url) => {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const i = u.lastIndexOf('/dist/');
  if (i >= 0) return u.slice(i + 1);
  return u.startsWith('node:') ? u : path.basename(u);
};
const fnKey = (n) => {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
};
const fileKey = (n) => shortUrl(n.callFrame.url) || n.callFrame.functionName || '(native)';

const self = new Map();
const files = new Map();
const total = new Map();
const callers = new Map();
/** Per timeline slice: { idle, gc, all, fns: Map(function -> total time) }. */
const slices = new Map();
let t = prof.startTime;
let sum = 0;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i];
  // A sample's time is the delta to the next sample (the last one gets none).
  const dt = i + 1 < prof.timeDeltas.length ? prof.timeDeltas[i + 1] : 0;
  const rel = t - prof.startTime;
  if (rel < FROM || rel >= TO || dt <= 0) continue;
  const n = byId.get(prof.samples[i]);
  sum += dt;
  self.set(fnKey(n), (self.get(fnKey(n)) ?? 0) + dt);
  files.set(fileKey(n), (files.get(fileKey(n)) ?? 0) + dt);
  const slice = SLICE > 0 ? slices.get(Math.floor(rel / SLICE)) ?? { idle: 0, gc: 0, all: 0, fns: new Map() } : undefined;
  if (slice) {
    slices.set(Math.floor(rel / SLICE), slice);
    slice.all += dt;
    if (n.callFrame.functionName === '(idle)') slice.idle += dt;
    if (n.callFrame.functionName === '(garbage collector)') slice.gc += dt;
  }
  const seen = new Set();
  for (let id = n.id; id !== undefined; id = parent.get(id)) {
    const k = fnKey(byId.get(id));
    if (slice && !seen.has(k) && k.includes(' dist/')) slice.fns.set(k, (slice.fns.get(k) ?? 0) + dt);
    if (MATCH && k.includes(MATCH)) {
      const p = parent.get(id);
      const ck = `${k}  <-  ${p === undefined ? '(root)' : fnKey(byId.get(p))}`;
      callers.set(ck, (callers.get(ck) ?? 0) + dt);
    }
    if (seen.has(k)) continue;
    seen.add(k);
    total.set(k, (total.get(k) ?? 0) + dt);
  }
}

const ms = (us) => (us / 1000).toFixed(1).padStart(9);
const pct = (us) => `${((100 * us) / Math.max(sum, 1)).toFixed(1).padStart(5)}%`;
const show = (title, map, n = TOP) => {
  console.log(`\n${title}`);
  for (const [k, v] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${ms(v)} ms ${pct(v)}  ${k}`);
};
const busy = sum - (self.get('(idle) ') ?? 0);
console.log(`${argv[0]}: ${((prof.endTime - prof.startTime) / 1000).toFixed(1)} ms profiled, ${(sum / 1000).toFixed(1)} ms in the window, ${(busy / 1000).toFixed(1)} ms not idle`);
show('self time by function', self);
show('self time by file', files);
show('total time by function (self and callees)', total);
if (SLICE > 0) {
  console.log(`\ntimeline, slices of ${SLICE / 1000} ms: start ms, idle %, GC %, top functions by total time in the slice`);
  for (const [i, sl] of [...slices].sort((a, b) => a[0] - b[0])) {
    const top = [...sl.fns].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, v]) => `${k.split(' ')[0]} ${(v / 1000).toFixed(0)}`);
    const p = (x) => `${((100 * x) / sl.all).toFixed(0)}%`.padStart(4);
    console.log(`${String((i * SLICE) / 1000).padStart(7)} ${p(sl.idle)} ${p(sl.gc)}  ${top.join(', ')}`);
  }
}
if (MATCH) show(`callers of functions matching "${MATCH}"`, callers);
