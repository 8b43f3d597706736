/**
 * A counting semaphore for bounding concurrent work (files read while
 * indexing, chunk and tree groups joined while syncing). A finished task hands
 * its slot straight to the next waiter, so the bound is never exceeded.
 */
export class Limiter {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(max: number) {
    this.free = max;
  }

  private async acquire(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }

  /**
   * Take a slot and get the function that gives it back (once, however often it is called): for
   * a task that holds its slot for part of its work only (walk.ts: a directory child gives its
   * slot back before its own children take theirs, so nesting never waits on itself).
   */
  async hold(): Promise<() => void> {
    await this.acquire();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.release();
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /**
   * Run `fn` for every item, as many at once as the limit allows, starting each
   * only when a slot is free: a million items cost a million tasks in turn, not
   * a million pending promises. The first failure stops new starts; it is
   * thrown once the running tasks have ended.
   */
  async each<T>(items: Iterable<T>, fn: (item: T) => Promise<void>): Promise<void> {
    // Counted, not kept in a set, and settled by one then() per task: a sync runs this once per
    // chunk, and a waited-for slot, a catch() and a finally() were four more promises a chunk.
    let running = 0;
    let failure: { error: unknown } | undefined;
    let drained: (() => void) | undefined;
    const settled = (): void => {
      this.release();
      if (--running === 0 && drained) drained();
    };
    const failed = (error: unknown): void => {
      failure ??= { error };
      settled();
    };
    for (const item of items) {
      if (this.free > 0) this.free--;
      else await new Promise<void>((r) => this.waiting.push(r));
      if (failure) {
        this.release();
        break;
      }
      const task = fn(item);
      running++;
      task.then(settled, failed);
    }
    if (running > 0) await new Promise<void>((r) => (drained = r));
    if (failure) throw failure.error;
  }
}
