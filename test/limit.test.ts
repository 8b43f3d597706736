/**
 * Limiter (src/core/base/limit.ts): the bound on work in flight that a sync's chunk fetches and an
 * index's file reads go through. each() settles its tasks by counting; these pin down what it
 * promises: never more at once than the limit, every item once, a failure stops new starts and is
 * thrown only once the running tasks have ended, and slots come back for later users.
 */
import { describe, expect, it } from 'vitest';
import { Limiter } from '../src/core/base/limit.js';

/** A promise and the function that resolves it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Limiter.each', () => {
  it('runs every item once, never more at once than the limit, and ends when the last one has', async () => {
    const limit = new Limiter(3);
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    await limit.each(
      Array.from({ length: 50 }, (_, i) => i),
      async (i) => {
        running++;
        most = Math.max(most, running);
        // Uneven durations, so that tasks end out of order.
        for (let k = 0; k < (i * 7) % 4; k++) await tick();
        seen.push(i);
        running--;
      },
    );
    expect(running).toBe(0);
    expect(most).toBe(3);
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('ends at once with no items, and starts an item only when a slot is free', async () => {
    await new Limiter(2).each([], async () => {
      throw new Error('never');
    });
    const limit = new Limiter(2);
    const gates = [gate(), gate(), gate()];
    const started: number[] = [];
    const done = limit.each([0, 1, 2], (i) => {
      started.push(i);
      return gates[i]!.wait;
    });
    await tick();
    // Two slots: the third item waits until a task ends.
    expect(started).toEqual([0, 1]);
    gates[1]!.open();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    let settled = false;
    void done.then(() => (settled = true));
    gates[2]!.open();
    await tick();
    expect(settled).toBe(false);
    gates[0]!.open();
    await done;
  });

  it('stops starting after a failure, waits for the running tasks, then throws the first failure', async () => {
    const limit = new Limiter(2);
    const slow = gate();
    const started: number[] = [];
    let slowEnded = false;
    const done = limit.each([0, 1, 2, 3, 4], async (i) => {
      started.push(i);
      if (i === 0) {
        await slow.wait;
        slowEnded = true;
        return;
      }
      if (i === 1) throw new Error('first');
      throw new Error('later');
    });
    let settled = false;
    done.catch(() => undefined).finally(() => (settled = true));
    await tick();
    await tick();
    // Item 1 failed; item 2 took its slot before the failure was seen or not at all, never item 3 or 4.
    expect(started).not.toContain(3);
    expect(started).not.toContain(4);
    expect(settled).toBe(false);
    slow.open();
    await expect(done).rejects.toThrow('first');
    expect(slowEnded).toBe(true);
  });

  it('gives every slot back, after success and after failure', async () => {
    const limit = new Limiter(2);
    await limit.each([1, 2, 3], async () => undefined);
    await expect(
      limit.each([1, 2, 3], async () => {
        throw new Error('x');
      }),
    ).rejects.toThrow('x');
    // Both slots free: two holds are granted at once, a third waits.
    const a = await limit.hold();
    const b = await limit.hold();
    let third = false;
    const c = limit.hold().then((release) => {
      third = true;
      return release;
    });
    await tick();
    expect(third).toBe(false);
    a();
    (await c)();
    b();
    expect(third).toBe(true);
  });
});
