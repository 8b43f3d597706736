/**
 * Ends a test run with one line that counts the skipped tests by reason (test/skip.ts records the reasons),
 * printed after vitest's own summary so that it is the last line of `npm test`. Nothing is printed when no test
 * was skipped.
 */
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node';

const NOT_RUN = 'not run because a hook or the file failed (see the errors above)';
const NO_REASON = 'no reason recorded (filtered out by -t or .only, or skipped without test/skip.ts)';

function reasonOf(t: TestCase): string {
  const result = t.result();
  if (result.state === 'skipped' && result.note) return result.note;
  // The outermost reason wins: a test of a suite skipped for want of root is skipped for that, whatever else.
  let reason = t.module.state() === 'failed' ? NOT_RUN : NO_REASON;
  for (let node: TestCase | TestSuite | TestModule = t; node.type !== 'module'; node = node.parent) {
    reason = node.meta().skipReason ?? reason;
  }
  return reason;
}

export default class SkipSummary implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const byReason = new Map<string, number>();
    let total = 0;
    let all = 0;
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        all++;
        if (t.result().state !== 'skipped') continue;
        total++;
        const why = reasonOf(t);
        byReason.set(why, (byReason.get(why) ?? 0) + 1);
      }
    }
    if (total === 0) return;
    const parts = [...byReason].sort((a, b) => b[1] - a[1]).map(([why, n]) => `${n} ${why}`);
    process.stdout.write(`\nSKIPPED ${total} of ${all} tests (skipped is not passed): ${parts.join('; ')}\n`);
  }
}
