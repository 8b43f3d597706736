/**
 * The one way a test of lcsync is skipped: always with a reason. The reason is printed when the file loads and
 * recorded on the skipped tests, and test/skip-reporter.ts ends `npm test` with one line counting the skipped tests
 * by reason, so that nobody mistakes a skip for a pass.
 *
 *   const why = skipReason();                           // test/lab.ts; undefined when a lab can be built here
 *   describeUnless(why, 'thing (needs root)', () => { ... });
 *   itUnless(built ? undefined : 'the addon is not built', 'one test', () => { ... });
 *   it('decides while it runs', (ctx) => { if (!ok) skipNow(ctx, 'why not'); ... });
 *
 * Never use describe.skip / it.skipIf / runIf / an early `return` for this: those skip or pass silently.
 */
import { describe, it, type TestContext } from 'vitest';

declare module 'vitest' {
  interface TaskMeta {
    /** Why this test or suite was skipped (set by describeUnless/itUnless). */
    skipReason?: string;
  }
}

/** A reason to skip, or undefined to run. */
export type SkipReason = string | undefined;

/** The first reason of several, or undefined when none is given. */
export function firstReason(...reasons: SkipReason[]): SkipReason {
  return reasons.find((r) => r !== undefined && r !== '');
}

/** describe(name, fn), or the same suite skipped (its tests still listed) when there is a reason. */
export function describeUnless(why: SkipReason, name: string, fn: () => void): void {
  if (why === undefined || why === '') {
    describe(name, fn);
    return;
  }
  console.log(`skipping ${name}: ${why}`);
  describe(name, { skip: true, meta: { skipReason: why } }, fn);
}

/** it(name, fn), or the same test skipped when there is a reason. */
export function itUnless(why: SkipReason, name: string, fn: (ctx: TestContext) => unknown, timeout?: number): void {
  if (why === undefined || why === '') {
    it(name, fn, timeout);
    return;
  }
  console.log(`skipping ${name}: ${why}`);
  it(name, { skip: true, meta: { skipReason: why }, timeout }, fn);
}

/** Skip the running test now, for a reason found only while it runs. */
export function skipNow(ctx: TestContext, why: string): never {
  console.log(`skipping ${ctx.task.name}: ${why}`);
  return ctx.skip(why);
}
