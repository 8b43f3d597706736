/**
 * Cohorts (needs root; issue 17): receivers that start a little apart, as from cron or a fleet
 * tool, still share the share's datagrams. A receiver that starts a file while others fetch it
 * asks the share where it is (the cursor, wire/packet.ts), starts there and wraps around, so the
 * file goes out about once plus what the late ones missed; with `share --gather` the share holds
 * a new cohort's chunks for a while so that one pass serves all who start within it.
 * Sender bytes are the tx_bytes of the share's interface.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { runSync, sha256, startShare } from './e2e.js';

const why = skipReason(['nft']);
const RECEIVERS = 4;
const APART_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeUnless(why, 'receivers that start apart share the datagrams (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  const size = 16 * 1024 * 1024;

  beforeAll(async () => {
    lab = await createLab({ hosts: RECEIVERS + 1, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-cohort-'));
    src = path.join(work, 'fleet.bin');
    writeFileSync(src, randomBytes(size));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Receivers 1..RECEIVERS started APART_MS apart; every copy identical; returns sender bytes / file and the finish times (s). */
  async function staggered(tag: string, shareArgs: string[]): Promise<{ ratio: number; finished: number[] }> {
    const share = await startShare(lab, 0, [src], shareArgs);
    try {
      const before = await lab.counters(0);
      const t0 = performance.now();
      const runs = await Promise.all(
        Array.from({ length: RECEIVERS }, async (_, i) => {
          await sleep(i * APART_MS);
          const r = await runSync(lab, i + 1, [share.roots[0]!.hash, path.join(work, `${tag}-${i + 1}.bin`)]);
          return { r, finished: (performance.now() - t0) / 1000 };
        }),
      );
      // The share's tail (trickles until the last leave) counts too.
      await sleep(500);
      const after = await lab.counters(0);
      for (const [i, { r }] of runs.entries()) {
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(path.join(work, `${tag}-${i + 1}.bin`))).toBe(sha256(src));
        rmSync(path.join(work, `${tag}-${i + 1}.bin`));
      }
      const ratio = (after.tx_bytes - before.tx_bytes) / size;
      const finished = runs.map((x) => x.finished);
      console.log(`${tag}: ${RECEIVERS} receivers ${APART_MS} ms apart, sender bytes ${ratio.toFixed(3)}x the file, finished at ${finished.map((f) => f.toFixed(2)).join(' ')} s`);
      return { ratio, finished };
    } finally {
      await share.stop();
    }
  }

  it('all end identical, and the file goes out well under once per receiver', async () => {
    // 50 Mbit/s: 16 MiB take about 2.8 s on the wire, and the receivers start over 0.9 s. What the
    // late ones missed has to go out again whatever the design: the share's rate times the spread,
    // about 5.4 MiB here (a third of the file), so about 1.45x with the usual overhead, against 4x
    // for a pass per receiver (issue 17 measured 3.16x for 4 receivers 0.5 s apart). At 100 Mbit/s
    // that floor is 10.7 MiB (1.77x), too close to the bound: a quiet CI host measured 1.93x, while
    // a loaded one, its receivers slow to start, measured 1.35-1.61x.
    const { ratio } = await staggered('default', ['--bwlimit', '50M']);
    expect(ratio).toBeLessThan(1.8);
  }, 180_000);

  it('a receiver that starts mid-file starts where the share is sending, so the one ahead is not held back', async () => {
    // 16 MiB at 20 Mbit/s: about 7 s on the wire. The second receiver starts once the share has
    // sent a sixth of the file to the first (and a loaded host takes seconds to start it). It asks the share where it is (the cursor), joins the
    // chunks the first is on, and fetches the part it missed after the end; the first finishes as
    // if alone. (Walking from the first chunk, the second was served first while the one ahead
    // waited, and both finished together.)
    const size8 = 16 * 1024 * 1024;
    const file = path.join(work, 'mid.bin');
    writeFileSync(file, randomBytes(size8));
    const share = await startShare(lab, 0, [file], ['--bwlimit', '20M']);
    try {
      const before = await lab.counters(0);
      const t0 = performance.now();
      const sync = async (h: number) => {
        const r = await runSync(lab, h, [share.roots[0]!.hash, path.join(work, `mid-${h}.bin`)]);
        return { r, finished: (performance.now() - t0) / 1000 };
      };
      const first = sync(1);
      const deadline = Date.now() + 60_000;
      while ((await lab.txBytes(0)) - before.tx_bytes < size8 / 6 && Date.now() < deadline) await sleep(50);
      const startedSecond = (performance.now() - t0) / 1000;
      const [a, b] = await Promise.all([first, sync(2)]);
      const after = await lab.counters(0);
      for (const [i, x] of [a, b].entries()) {
        expect(x.r.code, x.r.stderr).toBe(0);
        expect(sha256(path.join(work, `mid-${i + 1}.bin`))).toBe(sha256(file));
      }
      const ratio = (after.tx_bytes - before.tx_bytes) / size8;
      console.log(`mid-file start: first finished at ${a.finished.toFixed(2)} s, second (started at ${startedSecond.toFixed(2)} s) at ${b.finished.toFixed(2)} s, sender bytes ${ratio.toFixed(3)}x the file`);
      // The second fetched after the end what it missed (a sixth of the file or more: over 1 s at 20 Mbit/s).
      expect(b.finished - a.finished).toBeGreaterThan(0.5);
      // The file once, plus the part the second receiver missed (what the share sent before it
      // joined: a sixth, plus 1-3 s of start-up on a loaded host, 15-45% more), with headers and
      // margin. Measured 1.55-1.73x at load 13-18.
      expect(ratio).toBeLessThan(1.9);
    } finally {
      await share.stop();
    }
  }, 180_000);

  it('with --gather, one pass serves every receiver that starts within the window', async () => {
    // Measured 1.11x.
    const { ratio, finished } = await staggered('gather', ['--bwlimit', '100M', '--gather', '2s']);
    expect(ratio).toBeLessThan(1.3);
    // The first receiver waited for the window (about 2 s after its first chunk join).
    expect(finished[0]!).toBeGreaterThan(2);
  }, 180_000);
});
