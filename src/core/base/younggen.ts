/**
 * V8's young generation kept at its initial size (two 1 MiB semi-spaces) in the CLI.
 *
 * Why: by default V8 doubles the young generation after busy scavenges, up to two 16 MiB semi-spaces, and
 * every page of them that has been allocated into stays resident. A share or a sync makes short-lived
 * garbage for every datagram, so its young generation grew to 8-16 MiB semi-spaces during a transfer: that
 * growth was the largest part of the receiver's and the share's peak RSS above start-up (bench/README.md,
 * "Peak RSS ... eighth session": -8 to -12 MiB on a receiver, -10 to -17 on a share, no measurable CPU cost).
 *
 * How: `--max-semi-space-size` cannot be changed once the isolate exists (its heap is configured then), and a
 * flag in bin/run.js's shebang would not apply to `node bin/run.js`. What V8 still reads at run time is
 * `--semi-space-growth-factor`, the factor it grows the young generation by; 1 keeps it where it started.
 * V8 raises the factor back to at least 2 whenever it configures a new heap (Heap::ConfigureHeap), which a
 * worker thread's start does, so whoever starts a worker calls `restoreAfterWorkerStart` once the worker is
 * online. If V8 changes this, a run only loses the saving (test/younggen.test.ts then fails).
 *
 * A user who sets any semi-space flag (NODE_OPTIONS or node's own arguments) keeps it: nothing is changed then.
 */
import v8 from 'node:v8';

const FLAG = '--semi-space-growth-factor=1';
/** Node or V8 options that size the young generation themselves (V8 takes - or _ in flag names). */
const USER_SIZING = /--(?:max|min)[-_]semi[-_]space[-_]size|--semi[-_]space[-_]growth[-_]factor/;

/**
 * The young-generation limit of a worker thread's own heap (Worker resourceLimits.maxYoungGenerationSizeMb):
 * V8 reserves three semi-spaces' worth, so 3 MiB is two 1 MiB semi-spaces, like the main thread's.
 */
export const WORKER_YOUNG_GENERATION_MB = 3;

let kept = false;

/** Keep the young generation at its initial size from now on (the CLI calls this before loading anything else). */
export function keepYoungGenerationSmall(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): boolean {
  if (USER_SIZING.test(env.NODE_OPTIONS ?? '') || execArgv.some((a) => USER_SIZING.test(a))) return false;
  kept = true;
  v8.setFlagsFromString(FLAG);
  return true;
}

/** Whether keepYoungGenerationSmall is in effect in this process (workers started by it get a small heap too). */
export function youngGenerationKeptSmall(): boolean {
  return kept;
}

/** A worker thread has started (its isolate exists): set the growth factor again, which its heap set to 2. */
export function restoreAfterWorkerStart(): void {
  if (kept) v8.setFlagsFromString(FLAG);
}
