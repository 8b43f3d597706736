/**
 * Lossy and disordered networks (needs root): one share, one receiver, and the
 * switch between them made to drop, duplicate or reorder frames. Every sync must
 * finish byte-identical (contents, modes, times, links) within a bounded time.
 * Prints a table of seconds and bytes the sender put on the wire per scenario.
 *
 * How the network misbehaves (without netem: kernels built without sch_netem, like the one these tests were
 * written on, refuse `tc qdisc ... netem`):
 *  - random loss: Lab.setLoss (nftables `numgen random` drop in the bridge), both directions, so
 *    MLD reports are lost too;
 *  - bursty loss: a shell loop in the switch adds a drop rule for the receiver's port for 50 ms of
 *    every second and flushes it again (a named counter tells how many frames it took);
 *  - duplicates: a netdev ingress rule on the share's switch port clones half of its UDP datagrams
 *    straight out of the receiver's port (`dup to`), besides the copy the bridge forwards;
 *  - reordering: a bridge rule marks a random fifth of the share's datagrams towards the receiver
 *    with skb priority 1:20, which an HTB qdisc on that port holds in a 20 Mbit/s class while the
 *    rest pass at once, so the marked ones arrive late, behind later datagrams.
 * For the last two, test/fixtures/rel-wire-watch.mjs on the receiver's host counts the duplicate
 * and out-of-order datagrams that actually arrived.
 *
 * (10% random loss on a single file is also in share-sync.root.test.ts.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { repo, runSync, startShare, treeListing, type RunningShare } from './e2e.js';

const why = skipReason(['nft', 'tc']);

/** Bound on every sync here: 4 MiB and a few small files at 30% loss take well under this. */
const SYNC_BOUND_S = 90;

interface Figure {
  scenario: string;
  seconds: number;
  senderBytes: number;
  rejoins: number;
  note: string;
}

describeUnless(why, 'sync over lossy and disordered links (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let share: RunningShare;
  const figures: Figure[] = [];
  let payload = 0;
  let lastSummary: Record<string, unknown> | undefined;

  beforeAll(async () => {
    lab = await createLab({ hosts: 2, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-lossy-'));
    src = path.join(work, 'lossy');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    const write = (p: string, n: number) => {
      writeFileSync(path.join(src, p), randomBytes(n));
      payload += n;
    };
    write('big.bin', 4 * 1024 * 1024 + 777);
    for (let i = 0; i < 8; i++) write(i % 2 ? `sub/s${i}.bin` : `s${i}.bin`, 500 + i * 9000);
    write('sub/empty', 0);
    symlinkSync('sub/s1.bin', path.join(src, 'link'));
    share = await startShare(lab, 0, [src]);
  }, 60_000);

  afterAll(async () => {
    await share?.stop();
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
    if (figures.length > 0) {
      console.log(`\nlossy links: ${payload} bytes of file data; sender bytes = tx_bytes of the share's interface`);
      console.log('scenario                     seconds  sender bytes  (x data)  rejoins  notes');
      for (const f of figures) {
        console.log(`${f.scenario.padEnd(28)} ${f.seconds.toFixed(2).padStart(7)}  ${String(f.senderBytes).padStart(12)}  ${(f.senderBytes / payload).toFixed(2).padStart(8)}  ${String(f.rejoins).padStart(7)}  ${f.note}`);
      }
    }
  });

  /** One sync of the whole tree into a fresh directory, checked and measured. */
  async function syncOnce(scenario: string, note = ''): Promise<Figure> {
    const dest = path.join(work, `out-${figures.length}`);
    const before = await lab.counters(0);
    const r = await runSync(lab, 1, ['-a', '--timeout', '30', 'lossy/', dest], (SYNC_BOUND_S + 30) * 1000);
    const after = await lab.counters(0);
    expect(r.code, `${scenario}: ${r.stderr}`).toBe(0);
    expect(treeListing(dest, { times: true })).toEqual(treeListing(src, { times: true }));
    expect(r.summary!.seconds).toBeLessThan(SYNC_BOUND_S);
    const f = { scenario, seconds: r.summary!.seconds as number, senderBytes: after.tx_bytes - before.tx_bytes, rejoins: r.summary!.rejoins as number, note };
    figures.push(f);
    lastSummary = r.summary!;
    return f;
  }

  /** Start the wire watcher on the receiver's host; `stop()` returns its counts. */
  async function watch(): Promise<{ stop(): Promise<{ datagrams: number; duplicates: number; outOfOrder: number }> }> {
    const p: ChildProcess = lab.spawn(1, [process.execPath, path.join(repo, 'test', 'fixtures', 'rel-wire-watch.mjs'), 'e0', '300']);
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    for (let i = 0; i < 100 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('ready');
    const exited = new Promise((r) => p.once('exit', r));
    let result: Promise<{ datagrams: number; duplicates: number; outOfOrder: number }> | undefined;
    // Safe to call twice (the finally blocks below call it again after a failure).
    return {
      stop: () =>
        (result ??= (async () => {
          p.kill('SIGTERM');
          await exited;
          return JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
        })()),
    };
  }

  const nft = async (script: string) => {
    const r = await lab.exec('switch', ['nft', '-f', '-'], { input: script });
    expect(r.code, r.stderr).toBe(0);
  };
  const nftCounter = async (family: string, table: string, name: string): Promise<number> => {
    const r = await lab.exec('switch', ['nft', '-j', 'list', 'counter', family, table, name]);
    const parsed = JSON.parse(r.stdout) as { nftables: { counter?: { packets: number } }[] };
    return parsed.nftables.find((x) => x.counter)!.counter!.packets;
  };

  it('on a clean link (reference, and the watcher sees no duplicates)', async () => {
    const w = await watch();
    await syncOnce('clean');
    const seen = await w.stop();
    figures.at(-1)!.note = `${seen.datagrams} datagrams seen, ${seen.duplicates} duplicate, ${seen.outOfOrder} out of order`;
    expect(seen.datagrams).toBeGreaterThan(4000);
    expect(seen.duplicates).toBe(0);
  }, 180_000);

  for (const pct of [1, 10, 30]) {
    it(`with ${pct}% random loss in both directions`, async () => {
      await lab.setLoss(1, pct, 'both');
      try {
        await syncOnce(`random loss ${pct}%`);
      } finally {
        await lab.setLoss(1, 0);
      }
    }, 180_000);
  }

  it('with 5% loss towards the receiver: it reports chunks it lacks within 2 ms, as MLD ALLOW records with no sources', async () => {
    // Counted in the switch: MLDv2 reports (ICMPv6 143) whose first record is ALLOW (5) and names no
    // source (the record's source count, bytes 10-11 of the ICMPv6 message, is 0); the receiver's
    // lacking reports hold only such records, and nothing else sends them.
    await nft(`table bridge lacking {
      counter allow0 { }
      chain f { type filter hook forward priority -10; policy accept; icmpv6 type 143 @th,64,8 5 @th,80,16 0 counter name allow0; }
    }`);
    await lab.setLoss(1, 5, 'to');
    try {
      await syncOnce('5% loss towards rx');
      const r = figures.at(-1)!;
      const reported = lastSummary!.lackingReported as number;
      const seen = await nftCounter('bridge', 'lacking', 'allow0');
      r.note = `${reported} chunks reported lacking, ${seen} such reports crossed the switch`;
      // 4 MiB is 128 chunks; at 5% most lose one of their 33 symbols or more.
      expect(reported).toBeGreaterThan(10);
      expect(seen).toBeGreaterThan(0);
    } finally {
      await lab.setLoss(1, 0);
      await lab.exec('switch', ['nft', 'delete', 'table', 'bridge', 'lacking']);
    }
  }, 180_000);

  it('with loss in bursts: everything to and from the receiver dropped for 50 ms of every second', async () => {
    await nft(['table bridge burst', 'delete table bridge burst', 'table bridge burst {', '  counter drops { }', '  chain f {',
      '    type filter hook forward priority -10; policy accept;', '  }', '}', ''].join('\n'));
    // Bounded: at most 300 cycles (5 minutes); killed by PID below in any case.
    const loop = 'i=0; while [ $i -lt 300 ]; do ' +
      `nft 'add rule bridge burst f oifname "p1" counter name drops drop; add rule bridge burst f iifname "p1" counter name drops drop'; ` +
      'sleep 0.05; nft flush chain bridge burst f; sleep 0.95; i=$((i+1)); done';
    // A share paced to 16 Mbit/s, so that the transfer spans several bursts.
    await share.stop();
    share = await startShare(lab, 0, [src], ['--bwlimit', '16M']);
    const toggler = lab.spawn('switch', ['sh', '-c', loop]);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const f = await syncOnce('bursts 50 ms / 1 s, 16 Mbit/s');
      const dropped = await nftCounter('bridge', 'burst', 'drops');
      f.note = `${dropped} frames dropped in bursts`;
      expect(dropped).toBeGreaterThan(0);
    } finally {
      toggler.kill('SIGKILL');
      await new Promise((r) => (toggler.exitCode !== null || toggler.signalCode !== null ? r(null) : toggler.once('exit', r)));
      await lab.exec('switch', ['nft', 'delete', 'table', 'bridge', 'burst']);
      await share.stop();
      share = await startShare(lab, 0, [src]);
    }
  }, 180_000);

  it('with duplicated datagrams: half of the share\'s datagrams arrive twice', async () => {
    await nft(['table netdev clone', 'delete table netdev clone', 'table netdev clone {', '  counter cloned { }', '  chain i {',
      '    type filter hook ingress device "p0" priority 0; policy accept;',
      '    udp dport 4242 numgen random mod 100 < 50 counter name cloned dup to "p1"', '  }', '}', ''].join('\n'));
    const w = await watch();
    try {
      const f = await syncOnce('duplicates 50%');
      const seen = await w.stop();
      const cloned = await nftCounter('netdev', 'clone', 'cloned');
      f.note = `${cloned} cloned; receiver host saw ${seen.duplicates} duplicate of ${seen.datagrams}`;
      expect(cloned).toBeGreaterThan(1000);
      expect(seen.duplicates).toBeGreaterThan(1000);
    } finally {
      await w.stop().catch(() => undefined);
      await lab.exec('switch', ['nft', 'delete', 'table', 'netdev', 'clone']);
    }
  }, 180_000);

  it('with reordered datagrams: a random fifth held back behind later ones', async () => {
    const tc = async (args: string[]) => {
      const r = await lab.exec('switch', ['tc', ...args]);
      expect(r.code, `tc ${args.join(' ')}: ${r.stderr}`).toBe(0);
    };
    await tc(['qdisc', 'add', 'dev', 'p1', 'root', 'handle', '1:', 'htb', 'default', '10']);
    await tc(['class', 'add', 'dev', 'p1', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit']);
    await tc(['class', 'add', 'dev', 'p1', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '20mbit', 'ceil', '20mbit']);
    await nft(['table bridge reorder', 'delete table bridge reorder', 'table bridge reorder {', '  counter held { }', '  chain f {',
      '    type filter hook forward priority 0; policy accept;',
      '    oifname "p1" udp dport 4242 numgen random mod 100 < 20 counter name held meta priority set 1:20', '  }', '}', ''].join('\n'));
    const w = await watch();
    try {
      const f = await syncOnce('reordered 20%');
      const seen = await w.stop();
      const held = await nftCounter('bridge', 'reorder', 'held');
      f.note = `${held} held back; receiver host saw ${seen.outOfOrder} out of order of ${seen.datagrams}`;
      expect(held).toBeGreaterThan(500);
      expect(seen.outOfOrder).toBeGreaterThan(100);
    } finally {
      await w.stop().catch(() => undefined);
      await lab.exec('switch', ['nft', 'delete', 'table', 'bridge', 'reorder']);
      await lab.exec('switch', ['tc', 'qdisc', 'del', 'dev', 'p1', 'root']);
    }
  }, 180_000);
});
