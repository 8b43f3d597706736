/**
 * The C heap's free pages handed back to the kernel now and then while a sync session or a share
 * runs (native/memtrim.c, glibc's malloc_trim).
 *
 * Why: Node takes the bytes of Buffers from malloc, and those below glibc's mmap threshold (a large
 * file's tree parts, chunk buffers, anything once the threshold has risen after a large free) come
 * from the brk heap, which glibc shrinks only from its top. A 4 GiB sync kept about 15 MiB of that
 * heap resident from the tree's arrival to its end, mostly freed memory between live allocations; a
 * share sending 1 GiB peaked 5.5 MiB higher without the trim.
 *
 * How: every TRIM_EVERY_MS, malloc_trim(0), which releases each whole free page wherever it lies (a
 * walk of the free lists: well under a millisecond for such a heap). A timer rather than a call after
 * each V8 collection because V8 frees ArrayBuffers' bytes on a background thread after the pause.
 * Without the addon's function (an older build, no glibc) nothing happens.
 *
 * LCSYNC_NO_MALLOC_TRIM=1 leaves the heap to glibc (to measure both).
 */
import { loadAddon } from './addon.js';

export const TRIM_EVERY_MS = 1000;

let users = 0;
let timer: NodeJS.Timeout | undefined;
let trims = 0;

/** How many trims ran in this process (for tests). */
export function cHeapTrims(): number {
  return trims;
}

/** Trim the C heap once now (a live mirror between syncs); false when switched off or without the addon's function. */
export function trimCHeapNow(env: NodeJS.ProcessEnv = process.env): boolean {
  const trim = loadAddon().addon?.mallocTrim;
  if (env.LCSYNC_NO_MALLOC_TRIM === '1' || !trim) return false;
  trim();
  trims++;
  return true;
}

/** Trim the C heap every TRIM_EVERY_MS until the returned function is called (calls nest). */
export function keepCHeapTrimmed(env: NodeJS.ProcessEnv = process.env): () => void {
  const trim = loadAddon().addon?.mallocTrim;
  if (env.LCSYNC_NO_MALLOC_TRIM === '1' || !trim) return () => {};
  if (users++ === 0) {
    timer = setInterval(() => {
      trim();
      trims++;
    }, TRIM_EVERY_MS);
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
