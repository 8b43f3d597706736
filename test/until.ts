/** Waiting in tests: a plain sleep, and polling a condition with a deadline. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolve once `cond()` holds, checking every `everyMs`; reject with "timed out" after `ms`. */
export async function until(cond: () => boolean, ms = 5000, everyMs = 5): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(everyMs);
  }
}
