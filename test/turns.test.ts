/**
 * TurnBudget (src/core/base/turns.ts): a loop of synchronous work that asks it between items hands
 * the event loop back once its turn has run for the budget, so timers (the receiver's membership
 * bursts) and sockets are served meanwhile; within the budget it costs nothing.
 */
import { describe, expect, it } from 'vitest';
import { TurnBudget } from '../src/core/base/turns.js';

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy, as verifying and starting a bundle's files is
  }
}

/** Run 40 items of 5 ms each; how many had run when a timer armed at the start fired. */
async function itemsBeforeTimer(budget: TurnBudget | undefined): Promise<number> {
  let done = 0;
  let seenAt = -1;
  setTimeout(() => (seenAt = done), 0);
  for (let i = 0; i < 40; i++) {
    const turn = budget?.pause();
    if (turn) await turn;
    spin(5);
    done++;
  }
  await new Promise((r) => setTimeout(r, 5));
  return seenAt;
}

describe('TurnBudget', () => {
  it('hands the event loop back once a turn has run for the budget: a timer fires within the loop', async () => {
    const budget = new TurnBudget(10);
    const seenAt = await itemsBeforeTimer(budget);
    // Items of 5 ms in turns of 10 ms: the timer runs within a couple of turns (the first hand-back
    // may land in the check phase of a loop iteration whose timers already ran).
    expect(seenAt).toBeGreaterThanOrEqual(1);
    expect(seenAt).toBeLessThanOrEqual(8);
    // 200 ms of work in turns of about 10 ms.
    expect(budget.pauses).toBeGreaterThanOrEqual(10);
    expect(budget.pauses).toBeLessThanOrEqual(25);
  });

  it('without it the same loop holds the event loop to the end', async () => {
    expect(await itemsBeforeTimer(undefined)).toBe(40);
  });

  it('costs no pause while a turn is within its budget', async () => {
    const budget = new TurnBudget(1000);
    for (let i = 0; i < 1000; i++) expect(budget.pause()).toBeUndefined();
    expect(budget.pauses).toBe(0);
    // A new turn starts a new clock.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(budget.pause()).toBeUndefined();
  });
});
