/**
 * --bwlimit auto end to end (needs root): a share with default settings on host 0 serves a
 * receiver behind a 100 Mbit/s bottleneck (tbf on the receiver's switch port, where the bridge
 * drops what exceeds it, as a slower switch port would). The share cannot see the bottleneck; it
 * must find it from how the receiver leaves each round's group (in time, or late: it lost symbols)
 * and from its re-asks, and not keep overrunning it. Judged by counters (the bottleneck's drops,
 * the sender's bytes on the wire), not by timing.
 */
import { expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { useTempDir } from './tmpdir.js';
import { expectBuilt, runSync, sha256, startShare } from './e2e.js';

const why = skipReason(['tc']);

/** Packets sent and dropped by the root qdisc of `dev` in `where`'s namespace. */
async function qdiscCounters(lab: Lab, where: number | 'switch', dev: string): Promise<{ sent: number; dropped: number }> {
  const r = await lab.exec(where, ['tc', '-s', 'qdisc', 'show', 'dev', dev]);
  const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no qdisc counters for ${dev}: ${r.stdout} ${r.stderr}`);
  return { sent: Number(m[1]), dropped: Number(m[2]) };
}

describeUnless(why, 'share with --bwlimit auto (the default) behind a bottleneck (needs root)', () => {
  const tmp = useTempDir('lcsync-autorate-');

  it('completes and does not overrun a 100 Mbit/s link into heavy loss', async () => {
    expectBuilt(['net/autorate', 'net/pacer', 'share/share']);
    const lab = await createLab({ hosts: 2, snooping: true });
    try {
      // The receiver's switch port: 100 Mbit/s, a queue of about 10 ms.
      const tc = await lab.exec('switch', ['tc', 'qdisc', 'replace', 'dev', lab.hosts[1]!.port, 'root', 'tbf', 'rate', '100mbit', 'burst', '32kb', 'latency', '10ms']);
      expect(tc.code, tc.stderr).toBe(0);
      const size = 48 * 1024 * 1024;
      const src = path.join(tmp.dir(), 'big.bin');
      writeFileSync(src, randomBytes(size));
      const share = await startShare(lab, 0, [src], ['-v']);
      try {
        const q0 = await qdiscCounters(lab, 'switch', lab.hosts[1]!.port);
        const tx0 = await lab.txBytes(0);
        const dest = path.join(tmp.dir(), 'out.bin');
        const r = await runSync(lab, 1, [share.roots[0]!.hash, dest], 180_000);
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(dest)).toBe(sha256(src));
        const q1 = await qdiscCounters(lab, 'switch', lab.hosts[1]!.port);
        const wire = (await lab.txBytes(0)) - tx0;
        const offered = q1.sent - q0.sent + (q1.dropped - q0.dropped);
        const lossPct = (100 * (q1.dropped - q0.dropped)) / offered;
        const log = share.stderr();
        const steps = log.split('\n').filter((l) => l.includes('bwlimit auto'));
        if (process.env.AUTORATE_LOG) console.log(log);
        console.log(`auto behind 100 Mbit/s: sync took ${r.summary?.seconds?.toFixed(1)} s; ${offered} packets offered to the bottleneck, ${lossPct.toFixed(1)}% dropped; sender put ${(wire / size).toFixed(2)}x the file on the wire; ${steps.length} rate changes, last: ${steps.at(-1) ?? '(none)'}`);
        // Whether it probed above the bottleneck depends on how fast this machine lets the share and
        // the receiver run (the log above says what it did); what must hold is what the link saw.
        // Heavy loss would be tens of percent (at 2x the bottleneck: half); a fixed rate of 200M here drops about 50%.
        // Steered by re-asks alone auto lost 4.6-20.7% here; by how listeners leave each round, 3.5-5.6%.
        expect(lossPct).toBeLessThan(10);
        expect(wire).toBeLessThan(1.5 * size);
      } finally {
        await share.stop();
      }
    } finally {
      await lab.teardown();
    }
  }, 300_000);

  it('raises the rate on a clean link: every window sees what the native sender sent', async () => {
    // A 1 GiB file went at 65-78 Mbit/s with auto (and at 210-512 with --bwlimit 0): the controller
    // was told of the bytes only on the JS send path, so with the addon framing the rounds each window
    // said "sent 0", and a rate never used is never raised. LCSYNC_AUTORATE_TRACE prints every window.
    expectBuilt(['net/autorate', 'net/pacer', 'share/share']);
    const lab = await createLab({ hosts: 2, snooping: true });
    const trace = process.env.LCSYNC_AUTORATE_TRACE;
    process.env.LCSYNC_AUTORATE_TRACE = '1';
    try {
      const size = 32 * 1024 * 1024;
      const src = path.join(tmp.dir(), 'clean.bin');
      writeFileSync(src, randomBytes(size));
      const share = await startShare(lab, 0, [src], ['-v']);
      try {
        const dest = path.join(tmp.dir(), 'clean-out.bin');
        const r = await runSync(lab, 1, [share.roots[0]!.hash, dest], 180_000);
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(dest)).toBe(sha256(src));
        const windows = share.stderr().split('\n').filter((l) => l.startsWith('autorate '));
        const sent = windows.map((l) => Number(/ sent ([\d.]+) Mbit\/s/.exec(l)?.[1] ?? NaN));
        const steps = share.stderr().split('\n').filter((l) => l.includes('bwlimit auto'));
        console.log(`auto on a clean link: sync took ${r.summary?.seconds?.toFixed(1)} s; ${windows.length} windows, most sent ${Math.max(...sent).toFixed(1)} Mbit/s; rate changes: ${steps.join('; ') || '(none)'}`);
        expect(windows.length).toBeGreaterThan(0);
        // 32 MiB in windows of 250 ms: at the 100 Mbit/s start alone some window carries tens of Mbit/s.
        expect(Math.max(...sent)).toBeGreaterThan(10);
        // Raised from its 100 Mbit/s start (a window that sent half its rate and saw no re-asks).
        expect(steps.some((l) => l.includes('raised'))).toBe(true);
      } finally {
        await share.stop();
      }
    } finally {
      if (trace === undefined) delete process.env.LCSYNC_AUTORATE_TRACE;
      else process.env.LCSYNC_AUTORATE_TRACE = trace;
      await lab.teardown();
    }
  }, 300_000);
});
