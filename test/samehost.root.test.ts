/**
 * A second sync on the same host right after the first (needs root): a cron job that runs two syncs of one
 * share in a row, a retry, or a script syncing the same tree into two places. The share sees hosts, not
 * processes, and used to take the second process's joins of streams the first had just left (a stream
 * lingers LINGER_MS after its last listener) for re-asks: a repair round of K/8 symbols and then one symbol
 * every TRICKLE_MS, 1.5 s for a 1 MiB file that otherwise takes 0.15 s. A host that left while a round
 * was running had what it needed, so its next join is served as a new listener's (share/stream.ts).
 * What the share did is read from its own log (`share -v`: one line per stream as it is dropped, with
 * the rounds it gave and why).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { runSync, sha256, startShare, type RunningShare } from './e2e.js';
import { LINGER_MS, SWEEP_MS } from '../src/core/share/scheduler.js';
import { describeUnless } from './skip.js';

const why = skipReason();

/** The share's log line for a chunk stream it dropped: listeners served, re-asks, trickled after the rounds. */
const STOPPED = /^stopped chunk .* \(rounds: (\d+) listeners, (\d+) re-asks, (\d+) repeats, \d+ lacking reports answered; trickled \d+ held, (\d+) after\)$/;

describeUnless(why, 'two syncs on one host, one after the other (needs root)', () => {
  let lab: Lab;
  let dir: string;
  let share: RunningShare;
  let src: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2 });
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-samehost-'));
    src = path.join(dir, 'src.bin');
    writeFileSync(src, randomBytes(1 << 20));
    share = await startShare(lab, 0, [src], ['-v', '--bwlimit', '200M']);
  }, 60_000);

  afterAll(async () => {
    await share?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the second sync full rounds on the streams the first one left, not repair rounds and a trickle', async () => {
    const hash = share.roots[0]!.hash;
    const first = await runSync(lab, 1, [hash, path.join(dir, 'a.bin')]);
    expect(first.code, first.stderr).toBe(0);
    // The second starts as soon as the first has exited: its chunk joins come within LINGER_MS of the
    // first's leaves on a machine that is not starved (node's start-up is 0.1-0.3 s). Up to three tries,
    // so that a slow start cannot make the case this test is about not happen at all.
    let reused = 0;
    let lines: RegExpExecArray[] = [];
    for (let attempt = 1; attempt <= 3 && reused === 0; attempt++) {
      const again = await runSync(lab, 1, [hash, path.join(dir, `b${attempt}.bin`)]);
      expect(again.code, again.stderr).toBe(0);
      expect(sha256(path.join(dir, `b${attempt}.bin`))).toBe(sha256(src));
      // Every stream of this try is dropped LINGER_MS after its last leave, and logged then.
      await new Promise((r) => setTimeout(r, LINGER_MS + 3 * SWEEP_MS + 300));
      lines = share.stderr().split('\n').map((l) => STOPPED.exec(l.trim())).filter((m): m is RegExpExecArray => m !== null);
      reused = lines.filter((m) => Number(m[1]) + Number(m[2]) + Number(m[3]) >= 2).length;
    }
    expect(lines.length).toBeGreaterThanOrEqual(32);
    // Streams the second process joined while they lingered served it as well (the scenario happened)...
    expect(reused).toBeGreaterThan(0);
    // ...and none took its joins for re-asks, or trickled it the object symbol by symbol.
    const reasks = lines.reduce((n, m) => n + Number(m[2]), 0);
    const trickledAfter = lines.reduce((n, m) => n + Number(m[4]), 0);
    expect({ reasks, trickledAfter: trickledAfter > lines.length }).toEqual({ reasks: 0, trickledAfter: false });
  }, 120_000);
});
