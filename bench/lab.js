/**
 * The network lab for benchmarks: scripts/lab.js (the one implementation, shared with the tests; its header
 * documents the API), plus what only benchmarks measure of the processes they spawn.
 *
 *   createLab({ hosts, snooping?, bandwidth?, ula? }) -> Promise<Lab>   (scripts/lab.js; no tbf, no ULA and no
 *                                 snooping unless asked for)
 *   killGroup(child, signal)      signal the process group a spawned child leads
 *   peakRssKiB(pid) -> number | undefined   VmHWM of a live process, in KiB
 *   cpuSeconds(pid) -> number | undefined   user + system CPU time of a live process so far
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export { createLab, killGroup } from '../scripts/lab.js';

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
