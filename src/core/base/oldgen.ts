/**
 * V8's old generation collected whenever the heap has grown by a step since the last collection, while a
 * sync session runs. Not in a share: there a collection's pause (20-30 ms with an index) held up sending,
 * and a 64 MiB sync at 5% loss took 4.5-4.8 s instead of 1.9-2.1 s in two of three runs.
 *
 * Why: the CLI keeps the young generation small (younggen.ts), so what outlives two scavenges (about 2 MiB of
 * allocation) is promoted: a chunk's request, its promise and its group's address live for as long as the chunk
 * is in flight (128 at a time), and all of them die in the old generation. V8 collects that only when it
 * reaches its allocation limit, which after start-up lies at least 8 MiB above the live size: a 64 MiB sync
 * never reached it, and its old space grew from 7.5 MiB after start-up to 12.8 MiB at the end, a third of it
 * garbage (a full collection at 0.9 s took old space from 9.7 to 6.6 MiB used). That growth is most of what a
 * receiver's peak RSS gains during the data (bench/README.md, "tenth session").
 *
 * How: every TICK_MS, if the heap in use is STEP above what the last collection left (at least
 * MIN_STEP_BYTES, a quarter of the live heap on larger heaps, so the work per promoted byte stays bounded),
 * collect. V8 offers no limit that can be changed once the isolate exists (`--initial-old-space-size` is read
 * when the heap is configured); its `gc()` is, once `--expose-gc` is set, taken from a new context (the
 * flag applies to contexts made after it) and the flag is then cleared again. A collection of the receiver's
 * 7 MiB live heap takes a few milliseconds; MAX_TIME_SHARE and BURST_MS bound what they may take together.
 *
 * LCSYNC_NO_OLDGEN_TRIM=1 leaves collection to V8 alone (to measure both).
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const TICK_MS = 100;
export const MIN_STEP_BYTES = 2 * 1024 * 1024;
/** Above MIN_STEP_BYTES: this fraction of the heap the last collection left. */
const STEP_OF_LIVE = 0.25;
/**
 * The trim's collections take at most this share of wall time, plus a start of BURST_MS: a token bucket that
 * fills at MAX_TIME_SHARE and holds at most BURST_MS, from which each collection takes its duration. A
 * collection costs about the live heap (about 5 ms at 64 MiB received, 20-25 ms with a 4 GiB file's state): a
 * short transfer gets all it needs from the burst, and a long one cannot spend more than about 1% (without a
 * bound a 4 GiB sync spent 4.1 s in 179 collections; with 1% and no burst a 64 MiB sync lost most of the gain).
 */
export const MAX_TIME_SHARE = 0.01;
export const BURST_MS = 50;

type Collect = () => void;
let collectFn: Collect | null | undefined;

/** V8's full collection, or null if this V8 does not give it. */
function collector(): Collect | null {
  if (collectFn !== undefined) return collectFn;
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return (collectFn = own as Collect);
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    collectFn = typeof gc === 'function' ? (gc as Collect) : null;
  } catch {
    collectFn = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collectFn;
}

/**
 * One full collection now (a live mirror between syncs: what a finished session left is garbage in the old
 * generation, which an idle process would otherwise keep until its next sync). False when switched off
 * (LCSYNC_NO_OLDGEN_TRIM=1) or when V8 gives no collector.
 */
export function collectOldGenerationNow(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.LCSYNC_NO_OLDGEN_TRIM === '1') return false;
  const collect = collector();
  if (!collect) return false;
  collect();
  collections++;
  return true;
}

/** The heap in use at which to collect, given what the last collection left. */
export function collectAt(liveBytes: number): number {
  return liveBytes + Math.max(MIN_STEP_BYTES, liveBytes * STEP_OF_LIVE);
}

let users = 0;
let timer: NodeJS.Timeout | undefined;
let collections = 0;

/** How many collections the trim made in this process (for tests and diagnostics). */
export function oldGenerationCollections(): number {
  return collections;
}

/**
 * Keep the old generation trimmed until the returned function is called (calls nest: the trim runs while any
 * caller holds it). Returns a no-op when switched off or when V8 gives no collector.
 */
export function trimOldGeneration(env: NodeJS.ProcessEnv = process.env): () => void {
  if (env.LCSYNC_NO_OLDGEN_TRIM === '1') return () => {};
  const collect = collector();
  if (!collect) return () => {};
  if (users++ === 0) {
    let limit = collectAt(getHeapStatistics().used_heap_size);
    let credit = BURST_MS;
    let last = performance.now();
    timer = setInterval(() => {
      const now = performance.now();
      credit = Math.min(BURST_MS, credit + (now - last) * MAX_TIME_SHARE);
      last = now;
      if (credit <= 0 || getHeapStatistics().used_heap_size < limit) return;
      collect();
      collections++;
      last = performance.now();
      credit -= last - now;
      limit = collectAt(getHeapStatistics().used_heap_size);
    }, TICK_MS);
    timer.unref();
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--users === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/**
 * How far V8 lets the old generation grow past what its last full collection left, in percent (V8's
 * `--heap-growing-percent`): its next collection starts at the live size times 1.1, or 8 MiB above it
 * (V8's least step), whichever is more.
 *
 * Why: by default V8 grows that limit by a factor it picks from how fast it collects, up to 4 on a small
 * heap, so a share whose live heap is 12-17 MiB let promoted garbage (a stream's objects outlive the small
 * young generation) reach 45-50 MiB before collecting: its peak RSS grew with what it sent (125-139 MiB
 * for 1 GiB, 139-153 MiB for 4 GiB). V8 reads the flag whenever it sets a new limit, so it can be set
 * while running, and its own collections stay incremental (a forced one, as trimOldGeneration makes in a
 * sync, paused a share's sending). Measured: a share sending 1 GiB peaked at 98-102 MiB, 4 GiB at 116,
 * with no CPU or wall time the 64 MiB benchmark separates (bench/README.md, nineteenth session). A sync
 * sets it too, beside its trim, whose collections a 4 GiB transfer's 1% budget spaces out: its receiver
 * peaked 11 MiB lower.
 */
export const OLD_GENERATION_GROWING_PERCENT = 10;

/**
 * Let the old generation grow by OLD_GENERATION_GROWING_PERCENT only (see there), unless switched off
 * (LCSYNC_NO_OLDGEN_TRIM=1) or the user sized the heap's growth (`--heap-growing-percent` among node's own
 * arguments; node refuses it in NODE_OPTIONS). Returns whether it was set.
 */
export function growOldGenerationSlowly(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): boolean {
  if (env.LCSYNC_NO_OLDGEN_TRIM === '1') return false;
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return false;
  setFlagsFromString(`--heap-growing-percent=${OLD_GENERATION_GROWING_PERCENT}`);
  return true;
}
