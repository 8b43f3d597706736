/**
 * The share's send policy without root, sockets or timers (src/core/share/scheduler.ts and
 * stream.ts, driven with a clock of plain numbers): what the lab tests and benchmarks see of it
 * (rounds and trickle, a late joiner, gather, how long sending goes on after a leave, the active
 * window, several streams at once), and then a Share (share.ts) built over fake datagram sinks and
 * a fake listener source, sending an object's datagrams when its group is joined and stopping
 * after the leave.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FRONTIER_TTL_MS, GATHER_CHECK_MS, GATHER_IDLE_MS, GATHER_LIMIT_MS, GATHER_MAX_MS, HOLD_RUNNING_PART_OWED, JOIN_GATHER_IDLE_MS, JOIN_GATHER_MAX_MS, LINGER_MS, PROBE_AFTER_MS, SWEEP_MS, SendScheduler, walkPosition, type ScheduledStream, type SymbolChoice } from '../src/core/share/scheduler.js';
import { COSTLY_REPAIR_GRACE_MS, GRACE_MAX_MS, GRACE_MIN_MS, REPORT_REPEAT_MS, TRICKLE_MS, repairRoundSize, repeatBurstSize, roundSize } from '../src/core/share/stream.js';
import { Share } from '../src/core/share/share.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { decodeDatagram } from '../src/core/wire/packet.js';
import { groupBytes } from '../src/core/wire/address.js';
import type { MldEvent } from '../src/core/net/mldsocket.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import type { ListenerSource } from '../src/core/net/push.js';
import { ObjectDecoder } from '../src/core/fec/fec.js';
import { hash } from '../src/core/model/hash.js';
import { sleep, until } from './until.js';

type Sent = { key: string; symbol: SymbolChoice; at: number };

function mld(opts: { trickle?: boolean; gather?: boolean; dropped?: string[] } = {}): SendScheduler<string> {
  return new SendScheduler<string>({ trickle: opts.trickle ?? true, gather: opts.gather ?? true, onDrop: (s) => opts.dropped?.push(s.key) });
}

/** `host` joins a group nobody listens to yet; the stream starts at once (the object is at hand). */
function start(s: SendScheduler<string>, key: string, host: string, pos: number, K: number, now: number, ifname = 'e0'): ScheduledStream<string> {
  expect(s.join(key, ifname, host, pos, now)).toBe('start');
  return s.open(key, { ifname, position: pos, K, gather: pos >= 0, item: key }, host, now);
}

/** Everything due at `now`, datagram by datagram (at most `max`). */
function drain(s: SendScheduler<string>, now: number, max = 10_000): Sent[] {
  const out: Sent[] = [];
  for (let n; out.length < max && (n = s.next(now)); ) out.push({ key: n.stream.key, symbol: n.symbol, at: now });
  return out;
}

/** Run the clock from `from` to `to`, asking the scheduler whenever it wants (wakeAt), as share.ts does. */
function runUntil(s: SendScheduler<string>, from: number, to: number): Sent[] {
  const out: Sent[] = [];
  let now = from;
  while (now <= to) {
    out.push(...drain(s, now));
    now = Math.max(now + 1, s.wakeAt(now));
  }
  return out;
}

const esis = (sent: Sent[]) => sent.map((x) => ('source' in x.symbol ? x.symbol.source : 'repair'));
const sources = (K: number, from = 0) => Array.from({ length: K }, (_, i) => (from + i) % K);

const CHUNK = (file: number, n: number) => walkPosition(file, n);
const TREE = -1;

describe('SendScheduler: rounds and trickle', () => {
  it('gives a new listener the K source symbols, holds for the grace time, sends the margin, then trickles a repair symbol every TRICKLE_MS', () => {
    const s = mld();
    const K = 32;
    start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    const first = drain(s, 0);
    expect(esis(first)).toEqual(sources(K));
    // The hold: 1.5 x the assumed leave latency (50 ms) before any repair symbol.
    expect(s.graceMs).toBe(75);
    expect(s.next(74)).toBeUndefined();
    // Asked again when the hold ends, and at least every TRICKLE_MS meanwhile.
    expect(s.wakeAt(20)).toBe(75);
    expect(s.wakeAt(10)).toBe(10 + TRICKLE_MS);
    const margin = drain(s, 75, roundSize(K) - K);
    expect(margin).toHaveLength(roundSize(K) - K);
    expect(margin.every((x) => 'repair' in x.symbol)).toBe(true);
    // The round is over: one trickle at once (none was sent yet), then one every TRICKLE_MS.
    const trickle = runUntil(s, 75, 75 + 5 * TRICKLE_MS);
    expect(trickle.map((x) => x.at)).toEqual([75, 75 + TRICKLE_MS, 75 + 2 * TRICKLE_MS, 75 + 3 * TRICKLE_MS, 75 + 4 * TRICKLE_MS, 75 + 5 * TRICKLE_MS]);
    expect(trickle.every((x) => 'repair' in x.symbol)).toBe(true);
  });

  it('push mode sends its round (and the one trickle due when it ends) and then nothing until the next join', () => {
    const s = mld({ trickle: false, gather: false });
    start(s, 'g%e0', 'push-1', CHUNK(0, 0), 8, 0);
    expect(runUntil(s, 0, 5000)).toHaveLength(roundSize(8) + 1);
    expect(s.join('g%e0', 'e0', 'push-2', CHUNK(0, 0), 6000)).toBe('joined');
    expect(esis(runUntil(s, 6000, 9000))).toEqual([...sources(8), ...Array(roundSize(8) - 8).fill('repair')]);
  });

  it('a repeated report during the round changes nothing; after the round it buys a repair round', () => {
    const s = mld();
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), 64, 0);
    drain(s, 0, 10);
    expect(s.join('g%e0', 'e0', 'A', CHUNK(0, 0), 1)).toBe('joined');
    expect(st.budget).toBe(roundSize(64) - 10);
    expect(runUntil(s, 1, 1000).filter((x) => x.at < 1000 && 'repair' in x.symbol).length).toBeGreaterThan(0);
    expect(st.budget).toBe(0);
    s.join('g%e0', 'e0', 'A', CHUNK(0, 0), 1000);
    expect(st.budget).toBe(repairRoundSize(64));
    expect(drain(s, 1000)).toHaveLength(repairRoundSize(64));
    expect(st.asks).toEqual({ listener: 1, reask: 0, repeat: 1, lacking: 0 });
  });

  it("a lone listener's lacking report ends the hold at once; with two listeners, during the round, or from a stranger it does not", () => {
    const s = mld();
    const K = 32;
    // One listener: the source symbols, then the hold; the report ends it and the margin goes out now.
    const st = start(s, 'a%e0', 'A', CHUNK(0, 0), K, 0);
    expect(esis(drain(s, 0))).toEqual(sources(K));
    expect(st.holdUntil).toBe(s.graceMs);
    expect(drain(s, 2)).toHaveLength(0);
    expect(s.join('a%e0', 'e0', 'A', CHUNK(0, 0), 2, false, true)).toBe('joined');
    expect(st.holdUntil).toBe(2);
    // The margin, and the trickle datagram due by then.
    expect(esis(drain(s, 2))).toEqual(Array(roundSize(K) - K + 1).fill('repair'));
    expect(st.budget).toBe(0);
    expect(st.asks).toEqual({ listener: 1, reask: 0, repeat: 0, lacking: 1 });
    // Still lacking after the round (it lost more than the margin): a small burst, not the trickle's one symbol.
    s.join('a%e0', 'e0', 'A', CHUNK(0, 0), 3, false, true);
    expect(st.budget).toBe(repeatBurstSize(K));
    expect(st.asks).toEqual({ listener: 1, reask: 0, repeat: 0, lacking: 2 });
    expect(esis(drain(s, 3))).toEqual(Array(repeatBurstSize(K)).fill('repair'));
    // A report while the burst is still going out adds nothing.
    s.join('a%e0', 'e0', 'A', CHUNK(0, 0), 4, false, true);
    s.join('a%e0', 'e0', 'A', CHUNK(0, 0), 4, false, true);
    expect(st.asks.lacking).toBe(3);
    expect(st.budget).toBe(repeatBurstSize(K));
    expect(drain(s, 4)).toHaveLength(repeatBurstSize(K));

    // During the round (source symbols still going out) it changes nothing.
    const t = start(s, 'b%e0', 'A', CHUNK(0, 1), K, 10);
    drain(s, 10, K - 5);
    s.join('b%e0', 'e0', 'A', CHUNK(0, 1), 10, false, true);
    expect(t.budget).toBe(roundSize(K) - (K - 5));
    expect(t.asks.lacking).toBe(0);

    // Two listeners: the hold stays (joins during it share the round).
    const u = start(s, 'c%e0', 'A', CHUNK(0, 2), K, 20);
    s.join('c%e0', 'e0', 'B', CHUNK(0, 2), 20);
    drain(s, 20);
    const hold = u.holdUntil;
    expect(hold).toBeGreaterThan(20);
    s.join('c%e0', 'e0', 'A', CHUNK(0, 2), 21, false, true);
    expect(u.holdUntil).toBe(hold);
    expect(u.asks.lacking).toBe(0);
    // After the round, with the other receiver walking the share, it is A's repeated report like any other:
    // a small burst this soon after its join.
    runUntil(s, hold, hold + 5);
    expect(u.budget).toBe(0);
    s.join('c%e0', 'e0', 'A', CHUNK(0, 2), hold + 6, false, true);
    expect(u.budget).toBe(repeatBurstSize(K));
    expect(u.asks).toMatchObject({ repeat: 1, lacking: 0 });
    drain(s, hold + 6);

    // Another receiver walking the share on the interface (it joined something within FRONTIER_TTL_MS): it
    // may join during the hold, so the hold stays; once it has been quiet that long, the report ends it.
    const w = start(s, 'e%e0', 'A', CHUNK(0, 4), K, 40);
    expect(s.join('other%e0', 'e0', 'B', CHUNK(2, 0), 40)).toBe('start');
    drain(s, 40);
    const wHold = w.holdUntil;
    expect(wHold).toBeGreaterThan(41);
    s.join('e%e0', 'e0', 'A', CHUNK(0, 4), 41, false, true);
    expect(w.holdUntil).toBe(wHold);
    const x = start(s, 'f%e0', 'A', CHUNK(0, 5), K, 40 + FRONTIER_TTL_MS);
    drain(s, 40 + FRONTIER_TTL_MS);
    s.join('f%e0', 'e0', 'A', CHUNK(0, 5), 41 + FRONTIER_TTL_MS, false, true);
    expect(x.holdUntil).toBe(41 + FRONTIER_TTL_MS);

    // A host that is not a listener of the stream: a new listener (a full round), not a lacking one.
    const v = start(s, 'd%e0', 'A', CHUNK(0, 3), K, 30);
    drain(s, 30);
    s.join('d%e0', 'e0', 'C', CHUNK(0, 3), 31, false, true);
    expect(v.asks).toEqual({ listener: 2, reask: 0, repeat: 0, lacking: 0 });
  });

  it("a repeated report soon after the listener's join (the kernel's own repeat) buys a small burst, not a repair round", () => {
    const s = mld();
    const K = 100;
    const st = start(s, 'g%e0', 'A', TREE, K, 0);
    expect(drain(s, 0)).toHaveLength(K);
    runUntil(s, 1, 200);
    expect(st.budget).toBe(0);
    expect(s.join('g%e0', 'e0', 'A', TREE, 300)).toBe('joined');
    expect(repeatBurstSize(K)).toBe(4);
    expect(repeatBurstSize(K)).toBeLessThan(repairRoundSize(K));
    expect(st.budget).toBe(repeatBurstSize(K));
    // The burst, and the trickle datagram due by then.
    expect(drain(s, 300)).toHaveLength(repeatBurstSize(K) + 1);
    // Once REPORT_REPEAT_MS has passed, a repeated report is the listener asking: a repair round.
    s.join('g%e0', 'e0', 'A', TREE, REPORT_REPEAT_MS + 1);
    expect(st.budget).toBe(repairRoundSize(K));
    expect(st.asks).toEqual({ listener: 1, reask: 0, repeat: 2, lacking: 0 });
  });

  it("a bundle part's listener buys the small burst for a repeated report at any time; leaving and joining again still buys a repair round", () => {
    const s = mld();
    const K = 400;
    const p = startPart(s, 'p%e0', 'A', K, 0);
    runUntil(s, 0, 2000);
    expect(p.budget).toBe(0);
    s.join('p%e0', 'e0', 'A', TREE, 2 * REPORT_REPEAT_MS);
    expect(p.budget).toBe(repeatBurstSize(K));
    drain(s, 2 * REPORT_REPEAT_MS);
    expect(p.budget).toBe(0);
    s.part('p%e0', 'A', 2500);
    s.leave('p%e0', 2500);
    s.join('p%e0', 'e0', 'A', TREE, 2600);
    expect(p.budget).toBe(repairRoundSize(K));
    expect(p.asks).toEqual({ listener: 1, reask: 1, repeat: 1, lacking: 0 });
  });
});

/** A bundle part (gathered by joins) of K symbols, started for `host`. */
function startPart(s: SendScheduler<string>, key: string, host: string, K: number, now: number): ScheduledStream<string> {
  expect(s.join(key, 'e0', host, TREE, now)).toBe('start');
  return s.open(key, { ifname: 'e0', position: TREE, K, gather: 'joins', item: key }, host, now);
}

describe('SendScheduler: the hold of a bundle part whose repair symbols need an encoder', () => {
  it('lasts COSTLY_REPAIR_GRACE_MS above the small-block code; a chunk, a small part and a big tree keep the measured grace', () => {
    const s = mld();
    const big = 440;
    const bigStream = startPart(s, 'b%e0', 'A', big, 0);
    const chunk = start(s, 'c%e0', 'A', CHUNK(0, 0), 32, 0);
    const smallPart = startPart(s, 's%e0', 'A', 40, 0);
    const tree = start(s, 't%e0', 'A', TREE, 200, 0);
    drain(s, 0);
    expect(s.graceMs).toBeLessThan(COSTLY_REPAIR_GRACE_MS);
    expect(chunk.holdUntil).toBe(s.graceMs);
    expect(smallPart.holdUntil).toBe(s.graceMs);
    expect(tree.holdUntil).toBe(s.graceMs);
    expect(bigStream.holdUntil).toBe(COSTLY_REPAIR_GRACE_MS);
    // Between the two holds only the chunk's margin goes out; the part's waits for its leave.
    const mid = runUntil(s, 1, COSTLY_REPAIR_GRACE_MS - 1);
    expect(mid.filter((x) => x.key === 'b%e0')).toEqual([]);
    expect(mid.filter((x) => x.key === 'c%e0' && 'repair' in x.symbol).length).toBeGreaterThan(0);
    // A leave within the hold: no repair symbol (and so no encoder) for the part at all.
    s.part('b%e0', 'A', COSTLY_REPAIR_GRACE_MS - 1);
    s.leave('b%e0', COSTLY_REPAIR_GRACE_MS - 1);
    expect(runUntil(s, COSTLY_REPAIR_GRACE_MS, COSTLY_REPAIR_GRACE_MS + 500).filter((x) => x.key === 'b%e0')).toEqual([]);
  });

  it('a listener still there after it gets the margin then', () => {
    const s = mld();
    const st = startPart(s, 'b%e0', 'A', 440, 0);
    drain(s, 0);
    expect(drain(s, COSTLY_REPAIR_GRACE_MS - 1)).toEqual([]);
    expect(esis(drain(s, COSTLY_REPAIR_GRACE_MS, roundSize(440) - 440))).toEqual(Array(roundSize(440) - 440).fill('repair'));
    expect(st.budget).toBe(0);
  });
});

describe('SendScheduler: a late joiner', () => {
  it('gets the source symbols it missed after the rest, and the ones before it lose nothing', () => {
    const s = mld();
    const K = 20;
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    const before = drain(s, 0, 7);
    expect(esis(before)).toEqual(sources(7));
    // B joins after ESIs 0..6 went out: the cycle goes on from 7 and wraps to 0..6 for B.
    expect(s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 5)).toBe('joined');
    const after = drain(s, 5);
    expect(esis(after)).toEqual(sources(K, 7));
    // B's join granted a whole new round: after the hold, its margin of repair symbols.
    expect(st.budget).toBe(roundSize(K) - K);
    expect(st.holdUntil).toBe(5 + s.graceMs);
    expect(esis(drain(s, 5 + s.graceMs, roundSize(K) - K))).toEqual(Array(roundSize(K) - K).fill('repair'));
  });
});

describe('SendScheduler: leaves', () => {
  it('stops at once when the last listener leaves, lingers, and drops the stream after LINGER_MS', () => {
    const dropped: string[] = [];
    const s = mld({ dropped });
    start(s, 'g%e0', 'A', CHUNK(0, 0), 40, 0);
    drain(s, 0, 10);
    // MLD asks whether anyone else listens: nothing is sent meanwhile.
    s.part('g%e0', 'A', 1);
    expect(runUntil(s, 1, 400)).toEqual([]);
    s.leave('g%e0', 400);
    expect(runUntil(s, 400, 400 + LINGER_MS - 1)).toEqual([]);
    expect(dropped).toEqual([]);
    expect(s.size).toBe(1);
    // Lingering streams are looked at every SWEEP_MS, when the share asks (at least every TRICKLE_MS).
    runUntil(s, 400 + LINGER_MS, 400 + LINGER_MS + SWEEP_MS + TRICKLE_MS);
    expect(dropped).toEqual(['g%e0']);
    expect(s.size).toBe(0);
  });

  it('keeps silent streams out of the way of the others: only listened ones are served, a re-joined one is served again in its place, and removal works for both', () => {
    const dropped: string[] = [];
    const s = mld({ dropped });
    for (let i = 0; i < 300; i++) start(s, `c${i}`, 'A', CHUNK(0, i), 4, 0);
    for (let i = 0; i < 298; i++) {
      s.part(`c${i}`, 'A', 0);
      s.leave(`c${i}`, 0);
    }
    expect(new Set(drain(s, 0).map((x) => x.key))).toEqual(new Set(['c298', 'c299']));
    // c5 is asked for again: it comes back before c298 and c299 in the walk order (the cursor), and is served.
    expect(s.join('c5', 'e0', 'A', CHUNK(0, 5), 10)).toBe('joined');
    expect(s.cursorOf('e0', 0)).toBe(5);
    expect(drain(s, 10).map((x) => x.key)).toEqual(Array(4).fill('c5'));
    s.remove('c7');
    s.remove('c298');
    expect(s.get('c7')).toBeUndefined();
    expect(s.size).toBe(298);
    // The others lingering are dropped after LINGER_MS; the ones listened to stay.
    runUntil(s, 10, LINGER_MS + 2 * SWEEP_MS + TRICKLE_MS);
    expect(s.size).toBe(2);
    expect(dropped).toHaveLength(296);
    expect(dropped).not.toContain('c7');
    expect(s.cursorOf('e0', 0)).toBe(5);
    s.leave('c5', LINGER_MS + 2 * SWEEP_MS + TRICKLE_MS + 10);
    expect(s.cursorOf('e0', 0)).toBe(299);
  });

  it('goes on for the listeners that remain, and a re-join soon after leaving once the round ran out is a re-ask (a repair round, not a new one)', () => {
    const s = mld();
    const K = 40;
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 0);
    drain(s, 0, 10);
    s.part('g%e0', 'A', 1);
    expect(drain(s, 1, 5)).toHaveLength(5);
    // B stays past the round (it lost symbols): the round runs out, B stalls, leaves and joins again.
    runUntil(s, 1, 400);
    expect(st.budget).toBe(0);
    s.part('g%e0', 'B', 401);
    s.leave('g%e0', 401);
    expect(s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 402)).toBe('joined');
    expect(st.asks).toEqual({ listener: 2, reask: 1, repeat: 0, lacking: 0 });
    expect(st.budget).toBe(repairRoundSize(K));
    expect(esis(drain(s, 402))).toEqual(Array(repairRoundSize(K)).fill('repair'));
  });

  it('gives a host that left while a round ran a new round when it joins again (another sync on the same host), not a repair round', () => {
    const s = mld();
    const K = 32;
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    expect(esis(drain(s, 0))).toEqual(sources(K));
    // A had every source symbol and left during the hold; the stream lingers.
    s.part('g%e0', 'A', 20);
    s.leave('g%e0', 20);
    expect(runUntil(s, 20, 200)).toEqual([]);
    // A new process on the same host asks for the object within REJOIN_MS: it has none of it.
    expect(s.join('g%e0', 'e0', 'A', CHUNK(0, 0), 300)).toBe('joined');
    expect(st.asks).toEqual({ listener: 2, reask: 0, repeat: 0, lacking: 0 });
    expect(st.budget).toBe(roundSize(K));
    expect(esis(drain(s, 300))).toEqual(sources(K));
  });

  it('counts a leave during a repair round as a stall: the host joining again gets a repair round', () => {
    const s = mld();
    const K = 32;
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 0);
    runUntil(s, 0, 400);
    expect(st.budget).toBe(0);
    // A re-asks: a repair round runs; B, stalled as well, leaves during it and joins again.
    s.part('g%e0', 'A', 401);
    expect(s.join('g%e0', 'e0', 'A', CHUNK(0, 0), 401)).toBe('joined');
    expect(st.budget).toBe(repairRoundSize(K));
    s.part('g%e0', 'B', 402);
    expect(s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 402)).toBe('joined');
    expect(st.asks).toEqual({ listener: 2, reask: 2, repeat: 0, lacking: 0 });
    expect(st.budget).toBe(repairRoundSize(K));
  });

  it('holds after the source symbols for 1.5 x the measured leave latency, within GRACE_MIN_MS..GRACE_MAX_MS', () => {
    const s = mld();
    // One leave 20 ms after the last source symbol: the latency moves a sixteenth of the way from 50 to 20.
    let t = 1000;
    const round = (latency: number) => {
      const key = `g${t}%e0`;
      start(s, key, 'A', CHUNK(0, t), 4, t);
      drain(s, t);
      s.part(key, 'A', t + latency);
      s.leave(key, t + latency);
      t += 10_000;
    };
    round(20);
    expect(s.graceMs).toBeCloseTo(1.5 * (50 + (20 - 50) / 16), 10);
    for (let i = 0; i < 100; i++) round(500);
    // Samples are capped at GRACE_MAX_MS and the hold too.
    expect(s.graceMs).toBe(GRACE_MAX_MS);
    for (let i = 0; i < 200; i++) round(0);
    expect(s.graceMs).toBe(GRACE_MIN_MS);
    // A stream that sent repair symbols before the leave says nothing about leave latency.
    const before = s.graceMs;
    start(s, 'late%e0', 'A', CHUNK(0, 999), 4, t);
    runUntil(s, t, t + 200);
    s.part('late%e0', 'A', t + 201);
    expect(s.graceMs).toBe(before);
  });

  it('a leave while the object is being read cancels the stream', () => {
    const s = mld();
    expect(s.join('g%e0', 'e0', 'A', CHUNK(0, 0), 0)).toBe('start');
    expect(s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 1)).toBe('waiting');
    expect(s.isStarting('g%e0')).toBe(true);
    s.leave('g%e0', 2);
    expect(s.isStarting('g%e0')).toBe(false);
  });
});

describe('SendScheduler: probing for lost leaves', () => {
  it('asks who still listens PROBE_AFTER_MS into the trickle (never during a round) and again as often; an answer buys nothing; the listeners that did not answer part, and the stream stops', () => {
    const probed: { key: string; at: number }[] = [];
    let clock = 0;
    const s = new SendScheduler<string>({ trickle: true, gather: true, onProbe: (x) => probed.push({ key: x.key, at: clock }) });
    const K = 32;
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), K, 0);
    s.join('g%e0', 'e0', 'B', CHUNK(0, 0), 0);
    const tick = (to: number) => {
      for (; clock <= to; clock += 10) drain(s, clock);
    };
    tick(200);
    expect(st.budget).toBe(0);
    const roundEnd = st.roundDoneAt;
    expect(roundEnd).toBeGreaterThan(0);
    // A left as it should; B's leave was lost (both copies): the stream trickles on for B.
    s.part('g%e0', 'A', 150);
    tick(roundEnd + PROBE_AFTER_MS - SWEEP_MS - 10);
    expect(probed).toEqual([]);
    tick(roundEnd + PROBE_AFTER_MS + SWEEP_MS);
    expect(probed).toHaveLength(1);
    const at = probed[0]!.at;
    expect(at - roundEnd).toBeGreaterThanOrEqual(PROBE_AFTER_MS);
    // B answers (its report marked as an answer): no round, no burst, only the trickle goes on.
    // (The same report not marked would buy a repair round.)
    expect(s.join('g%e0', 'e0', 'B', CHUNK(0, 0), clock, true)).toBe('joined');
    expect(st.budget).toBe(0);
    expect(st.asks).toEqual({ listener: 2, reask: 0, repeat: 0, lacking: 0 });
    tick(at + PROBE_AFTER_MS + SWEEP_MS);
    expect(probed).toHaveLength(2);
    // The watcher heard nobody: B parts and the group is left; no more probes, nothing more sent.
    s.part('g%e0', 'B', clock);
    s.leave('g%e0', clock);
    const sentBefore = st.sent;
    tick(clock + 3 * PROBE_AFTER_MS);
    expect(probed).toHaveLength(2);
    expect(st.sent).toBe(sentBefore);
  });

  it('does not probe a stream while its round (or a repair round) is going, nor in push mode', () => {
    const probed: string[] = [];
    const s = new SendScheduler<string>({ trickle: true, gather: true, onProbe: (x) => probed.push(x.key) });
    const st = start(s, 'g%e0', 'A', CHUNK(0, 0), 400, 0);
    // A datagram every 10 ms: the round (and the hold in it) lasts beyond 3 x PROBE_AFTER_MS.
    for (let now = 0; now < PROBE_AFTER_MS * 3; now += 10) drain(s, now, 1);
    expect(st.budget).toBeGreaterThan(0);
    expect(probed).toEqual([]);
    const push: string[] = [];
    const p = new SendScheduler<string>({ trickle: false, gather: false, onProbe: (x) => push.push(x.key) });
    start(p, 'g%e0', 'A', CHUNK(0, 0), 8, 0);
    for (let now = 0; now < PROBE_AFTER_MS * 3; now += 10) drain(p, now);
    expect(push).toEqual([]);
  });
});

describe('SendScheduler: order, active window, several streams', () => {
  it('serves metadata first, then chunks by file and offset, and round-robins over the streams with a round left', () => {
    const s = mld({ gather: false });
    start(s, 'c1%e0', 'A', CHUNK(1, 0), 100, 0);
    start(s, 'c0b%e0', 'A', CHUNK(0, 1), 100, 0);
    start(s, 't%e0', 'A', TREE, 100, 0);
    start(s, 'c0a%e0', 'A', CHUNK(0, 0), 100, 0);
    expect(drain(s, 0, 8).map((x) => x.key)).toEqual(['t%e0', 'c0a%e0', 'c0b%e0', 'c1%e0', 't%e0', 'c0a%e0', 'c0b%e0', 'c1%e0']);
  });

  it('serves the first ACTIVE_WINDOW (32) ready streams side by side; those behind wait until a place frees', () => {
    const s = mld({ gather: false });
    for (let i = 0; i < 40; i++) start(s, `c${i}%e0`, 'A', CHUNK(0, i), 100, 0);
    const window = Array.from({ length: 32 }, (_, i) => `c${i}%e0`);
    expect(drain(s, 0, 3 * 32).map((x) => x.key)).toEqual([...window, ...window, ...window]);
    // Two of them pause (their listener left): the next two in order move up.
    s.part('c0%e0', 'A', 1);
    s.part('c5%e0', 'A', 1);
    const moved = new Set(drain(s, 1, 32 * 5).map((x) => x.key));
    expect(moved).toEqual(new Set([...window.filter((k) => k !== 'c0%e0' && k !== 'c5%e0'), 'c32%e0', 'c33%e0']));
  });

  it('small objects sent once do not hold the window while their leaves are pending: a fresh join is served at once', () => {
    // Issue 13: many one-symbol tree objects whose receiver has them but whose leave has not arrived
    // yet (a busy receiver leaves 100 ms or more late). They hold (grace), then trickle: neither
    // takes a place among the ACTIVE_WINDOW, so the next object asked for goes out with the next datagram.
    const s = mld({ gather: false });
    for (let i = 0; i < 100; i++) start(s, `t${i}%e0`, 'A', TREE, 1, 0);
    const first = drain(s, 0).map((x) => x.key);
    expect(first).toHaveLength(100);
    expect(new Set(first).size).toBe(100);
    start(s, 'fresh%e0', 'A', TREE, 1, 1);
    expect(drain(s, 1, 1).map((x) => x.key)).toEqual(['fresh%e0']);
    // After the hold the margin of each round goes out, then trickles; a join then is still next.
    const later = GRACE_MAX_MS + 1;
    drain(s, later);
    start(s, 'late%e0', 'A', TREE, 1, later + 1);
    expect(drain(s, later + 1, 1).map((x) => x.key)).toEqual(['late%e0']);
    // With 101 streams due a trickle, one trickle at most goes before the streams with a round left
    // (late%e0's margin after its hold, and the fresh one), then trickles wait until those are done.
    const t = later + 2 * TRICKLE_MS;
    start(s, 'next%e0', 'A', TREE, 1, t);
    const burst = drain(s, t, 3).map((x) => x.key);
    expect(burst).toContain('next%e0');
    expect(burst.filter((k) => k !== 'next%e0' && k !== 'late%e0')).toHaveLength(1);
  });

  it('keeps streams of different interfaces apart, and trickles a stream whose round is over even while others have rounds', () => {
    const s = mld({ gather: false });
    start(s, 'g%e0', 'A', CHUNK(0, 0), 2, 0);
    start(s, 'g%e1', 'A', CHUNK(0, 0), 2, 0, 'e1');
    expect(drain(s, 0).map((x) => `${x.key}`)).toEqual(['g%e0', 'g%e1', 'g%e0', 'g%e1']);
    expect(s.get('g%e1')!.ifname).toBe('e1');
    runUntil(s, 0, 200);
    // g%e0 trickles; a big stream with a long round starts: the trickle still gets its turn.
    start(s, 'big%e0', 'B', CHUNK(0, 5), 1000, 200);
    const sent = runUntil(s, 200, 200 + 3 * TRICKLE_MS);
    const trickles = sent.filter((x) => x.key === 'g%e0');
    expect(trickles.length).toBeGreaterThanOrEqual(3);
    expect(sent.filter((x) => x.key === 'big%e0').length).toBeGreaterThan(100);
  });
});

describe('SendScheduler: gather', () => {
  it('holds a chunk for a receiver behind in the same file until it joins too, so one pass serves both', () => {
    const s = mld();
    const K = 16;
    // B is still reading the index; A is ahead and asks for the first chunk.
    expect(s.join('t%e0', 'e0', 'B', TREE, 0)).toBe('start');
    s.abandon('t%e0');
    const st = start(s, 'c%e0', 'A', CHUNK(0, 0), K, 10);
    expect(st.waitingFor).toEqual(new Set(['B']));
    expect(drain(s, 10)).toEqual([]);
    // B reaches the chunk 100 ms later: the stream goes, once, for both.
    expect(s.join('c%e0', 'e0', 'B', CHUNK(0, 0), 110)).toBe('joined');
    expect(st.waitingFor).toBeUndefined();
    expect(esis(drain(s, 110))).toEqual(sources(K));
    // No second pass of source symbols for anyone.
    expect(esis(runUntil(s, 111, 2000)).every((e) => e === 'repair')).toBe(true);
    expect(st.asks.listener).toBe(2);
  });

  it('stops waiting for a receiver that stopped moving (GATHER_IDLE_MS, checked every GATHER_CHECK_MS)', () => {
    const s = mld();
    s.join('c0%e0', 'e0', 'B', CHUNK(0, 0), 0);
    s.abandon('c0%e0');
    start(s, 'c9%e0', 'A', CHUNK(0, 9), 4, 10);
    // Checks at 60, 110, ...: B last moved at 0, so the first check at or after 300 lets go.
    const firstCheckAfterIdle = 10 + Math.ceil((GATHER_IDLE_MS - 10) / GATHER_CHECK_MS) * GATHER_CHECK_MS;
    const sent = runUntil(s, 10, 1000);
    expect(sent[0]!.at).toBe(firstCheckAfterIdle);
  });

  it('waits at most GATHER_LIMIT_MS for a receiver that keeps moving but never arrives', () => {
    const s = mld();
    start(s, 'c500%e0', 'A', CHUNK(0, 500), 4, 0);
    // No one behind: no hold.
    expect(drain(s, 0)).toHaveLength(4);
    s.join('c1%e0', 'e0', 'B', CHUNK(0, 1), 0);
    s.abandon('c1%e0');
    const st = start(s, 'c400%e0', 'A', CHUNK(0, 400), 4, 0);
    expect(st.waitingFor).toEqual(new Set(['B']));
    let firstSend: number | undefined;
    for (let t = 0, chunk = 2; t <= GATHER_LIMIT_MS + 100 && firstSend === undefined; t += 20, chunk++) {
      s.join(`c${chunk}%e0`, 'e0', 'B', CHUNK(0, chunk), t);
      s.abandon(`c${chunk}%e0`);
      if (drain(s, t).some((x) => x.key === 'c400%e0')) firstSend = t;
    }
    // Longer than GATHER_MAX_MS: a receiver in the file that keeps moving is coming.
    expect(firstSend).toBeGreaterThanOrEqual(GATHER_LIMIT_MS);
    expect(firstSend).toBeLessThanOrEqual(GATHER_LIMIT_MS + GATHER_CHECK_MS);
  });

  it('waits on for a receiver behind that has not moved but listens to a round still going out (it waits for the share, not stalled)', () => {
    const s = mld();
    start(s, 'c1%e0', 'B', CHUNK(0, 1), 1000, 0);
    const held = start(s, 'c9%e0', 'A', CHUNK(0, 9), 4, 10);
    expect(held.waitingFor).toEqual(new Set(['B']));
    // B's chunk goes out slowly (5 datagrams per 10 ms, as on a loaded share): long past GATHER_IDLE_MS
    // B has not moved, but its round is still being sent.
    let t = 10;
    for (; t <= 1000; t += 10) expect(drain(s, t, 5).filter((x) => x.key === 'c9%e0')).toEqual([]);
    expect(held.waitingFor).toEqual(new Set(['B']));
    // B leaves its chunk and joins nothing more (stopped): the hold ends at the next check.
    s.leave('c1%e0', t);
    const sent = runUntil(s, t, t + 3 * GATHER_CHECK_MS).filter((x) => x.key === 'c9%e0');
    expect(esis(sent).slice(0, 4)).toEqual(sources(4));
    expect(sent[0]!.at).toBeLessThanOrEqual(t + GATHER_CHECK_MS);
  });

  it('waits for a receiver still reading the index while it keeps joining, at most GATHER_MAX_MS', () => {
    const s = mld();
    s.join('t0%e0', 'e0', 'B', TREE, 0);
    s.abandon('t0%e0');
    const held = start(s, 'c0%e0', 'A', CHUNK(0, 0), 4, 10);
    expect(held.waitingFor).toEqual(new Set(['B']));
    // B's tree parts, every 200 ms: alive, though its walk position does not move.
    for (let t = 10; t < 1000; t += 10) {
      if (t % 200 === 0) {
        s.join(`t${t}%e0`, 'e0', 'B', TREE, t);
        s.abandon(`t${t}%e0`);
      }
      expect(drain(s, t)).toEqual([]);
    }
    // It stops joining at 800: let go GATHER_IDLE_MS later, at the next check.
    const sent = runUntil(s, 1000, 1400);
    expect(sent[0]!.at).toBeGreaterThanOrEqual(800 + GATHER_IDLE_MS);
    expect(sent[0]!.at).toBeLessThanOrEqual(800 + GATHER_IDLE_MS + GATHER_CHECK_MS);
    // One that keeps joining the index is waited for GATHER_MAX_MS at most.
    const s2 = mld();
    s2.join('t0%e0', 'e0', 'B', TREE, 0);
    s2.abandon('t0%e0');
    start(s2, 'c0%e0', 'A', CHUNK(0, 0), 4, 10);
    let firstSend: number | undefined;
    for (let t = 10; t <= GATHER_MAX_MS + 200 && firstSend === undefined; t += 10) {
      s2.join(`t${t}%e0`, 'e0', 'B', TREE, t);
      s2.abandon(`t${t}%e0`);
      if (drain(s2, t).length > 0) firstSend = t;
    }
    expect(firstSend).toBeGreaterThanOrEqual(10 + GATHER_MAX_MS);
    expect(firstSend).toBeLessThanOrEqual(10 + GATHER_MAX_MS + GATHER_CHECK_MS);
  });

  it('a stream that has sent nothing yet waits for a receiver that shows up after it opened; one already sending does not', () => {
    const s = mld();
    const sending = start(s, 'c0%e0', 'A', CHUNK(0, 0), 4, 0);
    expect(drain(s, 0, 2)).toHaveLength(2);
    // A's next chunk is open but not sent yet (the share is busy, or paced) when B starts.
    const unsent = start(s, 'c1%e0', 'A', CHUNK(0, 1), 4, 1);
    expect(unsent.waitingFor).toBeUndefined();
    s.join('t%e0', 'e0', 'B', TREE, 2);
    s.abandon('t%e0');
    expect(unsent.waitingFor).toEqual(new Set(['B']));
    expect(sending.waitingFor).toBeUndefined();
    expect(drain(s, 2).every((x) => x.key === 'c0%e0')).toBe(true);
    // B reaches it: one round for both.
    expect(s.join('c1%e0', 'e0', 'B', CHUNK(0, 1), 100)).toBe('joined');
    expect(esis(drain(s, 100).filter((x) => x.key === 'c1%e0'))).toEqual(sources(4));
  });

  it('does not wait for receivers in another file, ones whose frontier is stale, or any in push mode', () => {
    const other = mld();
    other.join('x%e0', 'e0', 'B', CHUNK(0, 3), 0);
    expect(start(other, 'c%e0', 'A', CHUNK(1, 0), 4, 10).waitingFor).toBeUndefined();
    const stale = mld();
    stale.join('x%e0', 'e0', 'B', TREE, 0);
    expect(start(stale, 'c%e0', 'A', CHUNK(0, 0), 4, 1000).waitingFor).toBeUndefined();
    const push = mld({ trickle: false, gather: false });
    push.join('x%e0', 'e0', 'B', TREE, 0);
    expect(start(push, 'c%e0', 'A', CHUNK(0, 0), 4, 10).waitingFor).toBeUndefined();
    const otherIf = mld();
    otherIf.join('x%e1', 'e1', 'B', TREE, 0);
    expect(start(otherIf, 'c%e0', 'A', CHUNK(0, 0), 4, 10).waitingFor).toBeUndefined();
  });
});

describe('SendScheduler: cohort window (share --gather) and the cursor', () => {
  const withWindow = (cohortMs: number) => new SendScheduler<string>({ trickle: true, gather: true, cohortMs });

  it('without --gather a single receiver is served at once, exactly as with a zero window', () => {
    // The same receiver, the same joins, the same clock: the datagrams and their times are identical.
    const play = (s: SendScheduler<string>) => {
      start(s, 't', 'A', TREE, 3, 0);
      const tree = runUntil(s, 0, 4);
      start(s, 'c0', 'A', CHUNK(0, 0), 4, 5);
      start(s, 'c1', 'A', CHUNK(0, 1), 4, 5);
      return [...tree, ...runUntil(s, 5, 400)];
    };
    const plain = play(mld());
    expect(plain.filter((x) => x.key === 'c0')[0]!.at).toBe(5);
    expect(play(withWindow(0))).toEqual(plain);
  });

  it('holds the chunks of a new cohort until the window closes, so receivers starting within it share one round', () => {
    const s = withWindow(1000);
    start(s, 't', 'A', TREE, 3, 0);
    start(s, 'c0', 'A', CHUNK(0, 0), 4, 10);
    // Metadata is never held: the tree went out at once.
    expect(runUntil(s, 0, 500).filter((x) => x.key === 't').length).toBeGreaterThanOrEqual(3);
    expect(drain(s, 500).filter((x) => x.key === 'c0')).toEqual([]);
    // B starts 0.6 s later and reaches the same chunk while it is held: one listener more, no second round.
    expect(s.join('c0', 'e0', 'B', CHUNK(0, 0), 600)).toBe('joined');
    start(s, 'c1', 'B', CHUNK(0, 1), 4, 650);
    expect(drain(s, 1009).filter((x) => x.key.startsWith('c'))).toEqual([]);
    expect(s.wakeAt(1000)).toBe(1010);
    const sent = runUntil(s, 1010, 1100).filter((x) => x.key === 'c0' || x.key === 'c1');
    expect(sent[0]!.at).toBe(1010);
    // One round each (K source symbols, then the margin after the grace): not one per receiver.
    expect(sent.filter((x) => x.key === 'c0' && 'source' in x.symbol).length).toBe(4);
  });

  it('at the end of the window, waits on for a receiver still reading the index (it started late in the window)', () => {
    const s = withWindow(1000);
    start(s, 'c0', 'A', CHUNK(0, 0), 4, 10);
    // B starts late: it asks for the tree at 900, and keeps moving (another tree part at 1100).
    start(s, 't', 'B', TREE, 2, 900);
    expect(runUntil(s, 900, 1009).filter((x) => x.key === 'c0')).toEqual([]);
    expect(drain(s, 1010).filter((x) => x.key === 'c0')).toEqual([]);
    start(s, 't2', 'B', TREE, 2, 1100);
    expect(runUntil(s, 1011, 1199).filter((x) => x.key === 'c0')).toEqual([]);
    // B reaches the chunk: one round for both.
    expect(s.join('c0', 'e0', 'B', CHUNK(0, 0), 1200)).toBe('joined');
    const sent = runUntil(s, 1200, 1300).filter((x) => x.key === 'c0');
    expect(sent[0]!.at).toBe(1200);
    expect(sent.filter((x) => 'source' in x.symbol).length).toBe(4);
  });

  it('opens no window while the cohort is running: a chunk started later is served at once', () => {
    const s = withWindow(1000);
    start(s, 'c0', 'A', CHUNK(0, 0), 4, 0);
    runUntil(s, 0, 1200);
    const late = start(s, 'c9', 'C', CHUNK(0, 9), 4, 1300);
    expect(late.ready(1300)).toBe(true);
  });

  it('opens a new window once every chunk stream of the last cohort is gone', () => {
    const s = withWindow(500);
    start(s, 'c0', 'A', CHUNK(0, 0), 4, 0);
    runUntil(s, 0, 700);
    s.part('c0', 'A', 700);
    s.leave('c0', 700);
    runUntil(s, 700, 700 + LINGER_MS + SWEEP_MS + 1);
    expect(s.get('c0')).toBeUndefined();
    const next = start(s, 'c1', 'D', CHUNK(0, 1), 4, 2000);
    expect(next.ready(2000)).toBe(false);
    expect(next.ready(2500)).toBe(true);
  });

  it('the cursor of a file is its lowest chunk with a listener on that interface, undefined when none runs', () => {
    const s = mld();
    expect(s.cursorOf('e0', 0)).toBeUndefined();
    start(s, 'a5', 'A', CHUNK(0, 5), 4, 0);
    start(s, 'a7', 'A', CHUNK(0, 7), 4, 0);
    start(s, 'b2', 'A', CHUNK(1, 2), 4, 0);
    start(s, 'x1', 'A', CHUNK(0, 1), 4, 0, 'e1');
    expect(s.cursorOf('e0', 0)).toBe(5);
    expect(s.cursorOf('e0', 1)).toBe(2);
    expect(s.cursorOf('e1', 0)).toBe(1);
    s.part('a5', 'A', 10);
    expect(s.cursorOf('e0', 0)).toBe(7);
  });
});

describe('SendScheduler: gather by joins (bundle parts)', () => {
  /**
   * Three receivers, each working through the tree (a join of something every 50 ms), ask for the
   * same bundle part at 0, 300 and 900 ms; each listener leaves 20 ms after its round. Returns
   * the datagrams the part cost.
   */
  function threeReceivers(gather: boolean | 'joins'): { sent: Sent[]; st: ScheduledStream<string> } {
    const s = mld();
    const K = 100;
    const arrivals: [string, number][] = [['A', 0], ['B', 300], ['C', 900]];
    const sent: Sent[] = [];
    let st: ScheduledStream<string> | undefined;
    let left = 0;
    for (let now = 0; now <= 3000; now++) {
      // Every receiver still working joins some other object every 50 ms (its frontier is fresh).
      if (now % 50 === 0) {
        for (const [h, at] of arrivals) {
          if (now < at + 1500) {
            s.join(`other-${h}-${now}%e0`, 'e0', h, TREE, now);
            s.abandon(`other-${h}-${now}%e0`);
          }
        }
      }
      for (const [h, at] of arrivals) {
        if (now !== at) continue;
        if (!st) {
          expect(s.join('part%e0', 'e0', h, TREE, now)).toBe('start');
          st = s.open('part%e0', { ifname: 'e0', position: TREE, K, gather, item: 'part%e0' }, h, now);
        } else expect(s.join('part%e0', 'e0', h, TREE, now)).toBe('joined');
      }
      sent.push(...drain(s, now));
      // Each listener leaves once the round it was granted is out (as a receiver that decoded the part).
      if (st && st.budget === 0 && st.reporters.size > 0 && now > left + 20) {
        left = now;
        for (const h of [...st.reporters]) s.part('part%e0', h, now);
        s.leave('part%e0', now);
      }
    }
    return { sent: sent.filter((x) => x.key === 'part%e0'), st: st! };
  }

  it('holds a new part for the receivers active on the interface that have not joined it, trickling its source symbols meanwhile, so one round serves all', () => {
    const { sent, st } = threeReceivers('joins');
    expect(st.asks.listener).toBe(3);
    // One round (K + margin) and the trickle of the hold: not a round per receiver.
    expect(sent.length).toBeLessThanOrEqual(st.round + Math.ceil(900 / TRICKLE_MS) + 1);
    // Held: before C arrived only the trickle went out, one symbol per TRICKLE_MS, each a source symbol.
    const beforeC = sent.filter((x) => x.at < 900);
    expect(beforeC.length).toBeLessThanOrEqual(Math.ceil(900 / TRICKLE_MS) + 1);
    expect(beforeC.every((x) => 'source' in x.symbol)).toBe(true);
    expect(sent.some((x) => x.at < 100)).toBe(true);
  });

  it('without the hold (a part started as any tree object) each receiver costs a round: the baseline the hold is measured against', () => {
    const { sent, st } = threeReceivers(false);
    expect(st.asks.listener).toBe(3);
    expect(sent.length).toBeGreaterThanOrEqual(3 * st.K);
  });

  it('does not wait for a receiver that joined the part before, one idle for JOIN_GATHER_IDLE_MS, or longer than JOIN_GATHER_MAX_MS', () => {
    const s = mld();
    // B joined the part before (its stream was dropped since): not waited for again.
    s.join('x%e0', 'e0', 'C', TREE, 0);
    s.abandon('x%e0');
    expect(s.join('p%e0', 'e0', 'B', TREE, 0)).toBe('start');
    const first = s.open('p%e0', { ifname: 'e0', position: TREE, K: 4, gather: 'joins', item: 'p' }, 'B', 0);
    expect(first.waitingFor).toEqual(new Set(['C']));
    s.remove('p%e0');
    expect(s.join('p%e0', 'e0', 'A', TREE, 10)).toBe('start');
    expect(s.open('p%e0', { ifname: 'e0', position: TREE, K: 4, gather: 'joins', item: 'p' }, 'A', 10).waitingFor).toEqual(new Set(['C']));
    s.remove('p%e0');
    // C idle for JOIN_GATHER_IDLE_MS: not waited for; B, as idle, joined a bundle part (p) within
    // JOIN_GATHER_MAX_MS: it walks the tree by bundles, and is.
    expect(s.join('q%e0', 'e0', 'A', TREE, JOIN_GATHER_IDLE_MS)).toBe('start');
    expect(s.open('q%e0', { ifname: 'e0', position: TREE, K: 4, gather: 'joins', item: 'q' }, 'A', JOIN_GATHER_IDLE_MS).waitingFor).toEqual(new Set(['B']));
    s.remove('q%e0');
    // D keeps joining other things and never this part: the round goes at JOIN_GATHER_MAX_MS at the latest.
    const t0 = 10_000;
    s.join('y%e0', 'e0', 'D', TREE, t0);
    s.abandon('y%e0');
    expect(s.join('r%e0', 'e0', 'A', TREE, t0)).toBe('start');
    const r = s.open('r%e0', { ifname: 'e0', position: TREE, K: 40, gather: 'joins', item: 'r' }, 'A', t0);
    expect(r.waitingFor).toEqual(new Set(['D']));
    let roundAt: number | undefined;
    for (let t = t0; t <= t0 + JOIN_GATHER_MAX_MS + 200 && roundAt === undefined; t += 10) {
      if (t % 100 === 0) {
        s.join(`y${t}%e0`, 'e0', 'D', TREE, t);
        s.abandon(`y${t}%e0`);
      }
      if (drain(s, t).filter((x) => x.key === 'r%e0').length > 1) roundAt = t;
    }
    expect(roundAt).toBeGreaterThanOrEqual(t0 + JOIN_GATHER_MAX_MS);
    expect(roundAt).toBeLessThanOrEqual(t0 + JOIN_GATHER_MAX_MS + GATHER_CHECK_MS);
  });
});

describe('SendScheduler: gather by joins, receivers busy or late', () => {
  const part = (s: SendScheduler<string>, key: string, host: string, now: number, K = 40) => {
    expect(s.join(key, 'e0', host, TREE, now)).toBe('start');
    return s.open(key, { ifname: 'e0', position: TREE, K, gather: 'joins', item: key }, host, now);
  };

  it('waits for a receiver that has joined nothing for JOIN_GATHER_IDLE_MS while it still listens to another stream (decoding what it has, its fetches all taken)', () => {
    const s = mld();
    // C listens to a part of its own and then joins nothing (it decodes, starved of CPU).
    const other = part(s, 'other%e0', 'C', 0);
    runUntil(s, 0, 200);
    expect(other.budget).toBe(0);
    // A opens a new part well after C's last join: C is waited for all the same.
    const t0 = 1000;
    const p = part(s, 'p%e0', 'A', t0);
    expect(p.waitingFor).toEqual(new Set(['C']));
    // Still held after the idle time, at the checks, while C listens; C joins: one round for both.
    const before = runUntil(s, t0, t0 + JOIN_GATHER_IDLE_MS + 2 * GATHER_CHECK_MS).filter((x) => x.key === 'p%e0');
    expect(before.length).toBeLessThanOrEqual(Math.ceil((JOIN_GATHER_IDLE_MS + 2 * GATHER_CHECK_MS) / TRICKLE_MS) + 1);
    expect(p.waitingFor).toEqual(new Set(['C']));
    const tC = t0 + JOIN_GATHER_IDLE_MS + 3 * GATHER_CHECK_MS;
    expect(s.join('p%e0', 'e0', 'C', TREE, tC)).toBe('joined');
    expect(p.waitingFor).toBeUndefined();
    expect(drain(s, tC).filter((x) => x.key === 'p%e0').length).toBeGreaterThanOrEqual(p.K);
  });

  it('a receiver that has left every stream and joined nothing lately is not waited for, unless it joined a bundle part within JOIN_GATHER_MAX_MS', () => {
    const s = mld();
    expect(s.join('other%e0', 'e0', 'C', TREE, 0)).toBe('start');
    s.open('other%e0', { ifname: 'e0', position: TREE, K: 4, gather: false, item: 'other%e0' }, 'C', 0);
    drain(s, 0);
    s.part('other%e0', 'C', 10);
    s.leave('other%e0', 10);
    expect(part(s, 'p%e0', 'A', 1000).waitingFor).toBeUndefined();
    // D fetched a part (the top's bundle) and left it; starved of CPU, it joins nothing for a while
    // before its first subdirectories' parts: those wait for it.
    part(s, 'top%e0', 'D', 3000, 4);
    drain(s, 3000);
    s.part('top%e0', 'D', 3010);
    s.leave('top%e0', 3010);
    expect(part(s, 'q%e0', 'A', 3000 + JOIN_GATHER_MAX_MS - 100).waitingFor).toEqual(new Set(['D']));
    expect(part(s, 'r%e0', 'A', 3000 + JOIN_GATHER_MAX_MS).waitingFor).toBeUndefined();
  });

  it('holds a part for a receiver that shows up while it is held (started later than the others), and not for one that came after the hold', () => {
    const s = mld();
    s.join('top%e0', 'e0', 'B', TREE, 0);
    s.abandon('top%e0');
    const p = part(s, 'p%e0', 'A', 10);
    expect(p.waitingFor).toEqual(new Set(['B']));
    // C starts 300 ms after the others: its first join (the top) comes while p is held.
    s.join('top2%e0', 'e0', 'C', TREE, 300);
    s.abandon('top2%e0');
    expect(p.waitingFor).toEqual(new Set(['B', 'C']));
    // B joins: still held for C; C joins: one round serves all three.
    expect(s.join('p%e0', 'e0', 'B', TREE, 320)).toBe('joined');
    expect(p.waitingFor).toEqual(new Set(['C']));
    expect(drain(s, 320).filter((x) => x.key === 'p%e0').length).toBeLessThanOrEqual(1);
    expect(s.join('p%e0', 'e0', 'C', TREE, 400)).toBe('joined');
    expect(p.waitingFor).toBeUndefined();
    const round = drain(s, 400).filter((x) => x.key === 'p%e0');
    expect(round.length).toBeGreaterThanOrEqual(p.K);
    expect(p.asks.listener).toBe(3);
    // D shows up after the round went: nothing held any more, nothing waits for it.
    s.join('top3%e0', 'e0', 'D', TREE, 500);
    s.abandon('top3%e0');
    expect(p.waitingFor).toBeUndefined();
  });

  it('holds a part in mid-round for a receiver that shows up while most of its source symbols are still owed, so the newcomer costs what went before it, not a round', () => {
    const s = mld();
    const K = 200;
    // A and B open and join the part; nobody else is known: it goes at once.
    s.join('top%e0', 'e0', 'B', TREE, 0);
    s.abandon('top%e0');
    const p = part(s, 'p%e0', 'A', 0, K);
    expect(s.join('p%e0', 'e0', 'B', TREE, 0)).toBe('joined');
    expect(p.waitingFor).toBeUndefined();
    const early = drain(s, 5, 40).filter((x) => x.key === 'p%e0');
    expect(early).toHaveLength(40);
    // C starts late: its first join (the top) holds the part, which only trickles until C joins it.
    s.join('top2%e0', 'e0', 'C', TREE, 10);
    s.abandon('top2%e0');
    expect(p.waitingFor).toEqual(new Set(['C']));
    const held = runUntil(s, 10, 200).filter((x) => x.key === 'p%e0');
    expect(held.length).toBeLessThanOrEqual(Math.ceil(190 / TRICKLE_MS) + 1);
    expect(s.join('p%e0', 'e0', 'C', TREE, 200)).toBe('joined');
    expect(p.waitingFor).toBeUndefined();
    const rest: Sent[] = [];
    for (let now = 200; p.budget > 0 && now < 2000; now++) rest.push(...drain(s, now, 1));
    // One round for C from where the cycle stood (K + margin): the part cost what went before C
    // came, not a second round.
    expect(p.budget).toBe(0);
    expect(rest).toHaveLength(p.round);
    expect(p.sent).toBe(early.length + held.length + p.round);
    expect(new Set(rest.filter((x) => 'source' in x.symbol).map((x) => (x.symbol as { source: number }).source)).size).toBe(K);
  });

  it('a receiver whose joins were lost and that is first seen leaving the top counts as one that showed up: the running part waits for it', () => {
    const s = mld();
    const K = 200;
    const top = part(s, 'top%e0', 'A', 0, 4);
    drain(s, 0);
    const p = part(s, 'p%e0', 'A', 10, K);
    expect(p.waitingFor).toBeUndefined();
    drain(s, 15, 30);
    // C's join of the top was lost; its leave comes through.
    top.reporters.add('C');
    s.part('top%e0', 'C', 20);
    expect(p.waitingFor).toEqual(new Set(['C']));
    // A known receiver leaving something does not hold anything.
    s.part('top%e0', 'A', 25);
    expect(p.waitingFor).toEqual(new Set(['C']));
    expect(s.join('p%e0', 'e0', 'C', TREE, 100)).toBe('joined');
    expect(p.waitingFor).toBeUndefined();
  });

  it('does not hold a part for a newcomer once most of its source symbols went, nor after its round or its hold bound', () => {
    const s = mld();
    const K = 100;
    s.join('top%e0', 'e0', 'B', TREE, 0);
    s.abandon('top%e0');
    const p = part(s, 'p%e0', 'A', 0, K);
    s.join('p%e0', 'e0', 'B', TREE, 0);
    drain(s, 5, K - Math.floor(K * HOLD_RUNNING_PART_OWED) + 1);
    expect(p.sourceLeft).toBeLessThan(K * HOLD_RUNNING_PART_OWED);
    s.join('top2%e0', 'e0', 'C', TREE, 10);
    s.abandon('top2%e0');
    expect(p.waitingFor).toBeUndefined();
    // A part opened longer than JOIN_GATHER_MAX_MS ago is not held either, however much it owes.
    const q = part(s, 'q%e0', 'A', 20, K);
    for (const h of ['B', 'C']) s.join('q%e0', 'e0', h, TREE, 20);
    expect(q.waitingFor).toBeUndefined();
    s.join('top3%e0', 'e0', 'D', TREE, 20 + JOIN_GATHER_MAX_MS);
    s.abandon('top3%e0');
    expect(q.sourceLeft).toBeGreaterThanOrEqual(K * HOLD_RUNNING_PART_OWED);
    expect(q.waitingFor).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------------
// Share over fakes

class FakeSink implements DatagramSink {
  readonly sent: { group: string; payload: Buffer; at: number }[] = [];
  closed = false;
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    // The share reuses its batch buffer once this resolves: keep copies.
    for (const i of items) this.sent.push({ group: i.group, payload: Buffer.from(i.payload), at: Date.now() });
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

class FakeListeners extends EventEmitter implements ListenerSource {
  closed = false;
  activeGroups(): { group: string; ifname: string }[] {
    return [];
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  report(kind: MldEvent['kind'], key: Uint8Array, from: string, ifname = 'f0'): void {
    const ev: MldEvent = { kind, group: groupBytes(key), ifname, from };
    this.emit(kind, ev);
  }
}

describe('Share over fake sinks and listeners (no root, no sockets)', () => {
  let dir: string;
  let index: ShareIndex;
  const content = Buffer.alloc(3 * 32768 + 1000);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-scheduler-'));
    writeFileSync(path.join(dir, 'file.bin'), content);
    index = await ShareIndex.build([path.join(dir, 'file.bin')]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sends a chunk on its group when it is joined, enough to decode it, and stops after the leave', async () => {
    const sinks = new Map<string, FakeSink>();
    const listeners = new FakeListeners();
    const share = await Share.start(index, {
      ifnames: ['f0'],
      openSink: async (ifname) => {
        const s = new FakeSink();
        sinks.set(ifname, s);
        return s;
      },
      listeners,
    });
    try {
      const sink = sinks.get('f0')!;
      const chunk = [...index.hashes()].map((h) => index.get(h)!).find((o): o is Extract<IndexObject, { kind: 'chunk' }> => o.kind === 'chunk' && o.offset === 32768)!;
      // Silent without listeners.
      await sleep(100);
      expect(sink.sent).toEqual([]);
      listeners.report('join', chunk.hash, 'fe80::1');
      await until(() => sink.sent.length >= 32);
      const dec = new ObjectDecoder(chunk.length);
      let got: Buffer | undefined;
      for (const s of sink.sent) {
        const d = decodeDatagram(s.payload)!;
        expect(d.oid.equals(chunk.hash)).toBe(true);
        expect(s.group).toBe(share.status().streams[0]!.group);
        got ??= dec.add(d.esi, d.symbol);
      }
      dec.free();
      expect(got && hash(got).equals(chunk.hash)).toBe(true);
      // The round goes out, then the trickle.
      await until(() => sink.sent.length >= roundSize(32) + 2);
      listeners.report('part', chunk.hash, 'fe80::1');
      const atPart = sink.sent.length;
      await sleep(50);
      listeners.report('leave', chunk.hash, 'fe80::1');
      await sleep(300);
      // Nothing after the part (a batch in flight at that moment at most).
      expect(sink.sent.length - atPart).toBeLessThanOrEqual(1);
      const st = share.status();
      expect(st.streamsStarted).toBe(1);
      expect(st.datagrams).toBe(sink.sent.length);
      expect(st.streams).toEqual([expect.objectContaining({ kind: 'chunk', name: 'file.bin', ifname: 'f0', datagrams: sink.sent.length })]);
    } finally {
      await share.stop();
    }
    expect(sinks.get('f0')!.closed).toBe(true);
    expect(listeners.closed).toBe(true);
  });

  it('serves the tree object with its length (OTI) and ignores groups that name nothing', async () => {
    const sink = new FakeSink();
    const listeners = new FakeListeners();
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners });
    try {
      listeners.report('join', Buffer.alloc(32, 0xee), 'fe80::2');
      await sleep(100);
      expect(sink.sent).toEqual([]);
      const root = index.roots[0]!;
      listeners.report('join', root.hash, 'fe80::2');
      await until(() => sink.sent.length > 0);
      const d = decodeDatagram(sink.sent[0]!.payload)!;
      const tree = index.get(root.hash)!;
      expect(tree.kind).toBe('tree');
      expect(d.transferLength).toBe(tree.kind === 'tree' ? tree.bytes.length : -1);
    } finally {
      await share.stop();
    }
  });
});

describe('SendScheduler: what --bwlimit auto is told (onAsk)', () => {
  it('reports a round per new listener and a re-ask per re-join or repeated report after the round, nothing for a repeat during it', () => {
    const asks: string[] = [];
    const s = new SendScheduler<string>({ trickle: true, gather: false, onAsk: (k) => asks.push(k) });
    // Two listeners: the starter and one that joined while the stream was set up.
    expect(s.join('g', 'e0', 'a', 0, 0)).toBe('start');
    expect(s.join('g', 'e0', 'b', 0, 0)).toBe('waiting');
    s.open('g', { ifname: 'e0', position: 0, K: 4, gather: false, item: 'g' }, 'a', 0);
    expect(asks).toEqual(['listener', 'listener']);
    // A repeated report while the round is still going: nothing.
    expect(s.join('g', 'e0', 'a', 0, 1)).toBe('joined');
    expect(asks).toEqual(['listener', 'listener']);
    // A third listener later, then the round runs out and a's repeated report asks for more.
    s.join('g', 'e0', 'c', 0, 2);
    drain(s, 1000);
    drain(s, 1000 + GRACE_MAX_MS);
    s.join('g', 'e0', 'a', 0, 1001 + GRACE_MAX_MS);
    expect(asks).toEqual(['listener', 'listener', 'listener', 'reask']);
    // b leaves and joins again soon: a re-ask.
    s.part('g', 'b', 1002 + GRACE_MAX_MS);
    s.join('g', 'e0', 'b', 0, 1003 + GRACE_MAX_MS);
    expect(asks).toEqual(['listener', 'listener', 'listener', 'reask', 'reask']);
  });
});

describe('SendScheduler: how rounds come out of their hold (onOutcome, --bwlimit auto)', () => {
  function withOutcomes() {
    const outcomes: { key: string; kept: number; late: number; startedAt: number }[] = [];
    const s = new SendScheduler<string>({ trickle: true, gather: false, onOutcome: (st, kept, late) => outcomes.push({ key: st.key, kept, late, startedAt: st.roundStartedAt }) });
    return { s, outcomes };
  }

  it('a listener that leaves during the hold kept up; one still joined when the stream sends again was late', () => {
    const { s, outcomes } = withOutcomes();
    expect(s.join('g', 'e0', 'a', 0, 10)).toBe('start');
    expect(s.join('g', 'e0', 'b', 0, 10)).toBe('waiting');
    s.open('g', { ifname: 'e0', position: 0, K: 4, gather: false, item: 'g' }, 'a', 10);
    // The source symbols go out at 20; the hold follows: nothing is known yet.
    expect(drain(s, 20)).toHaveLength(4);
    expect(outcomes).toEqual([]);
    // a leaves in the hold: it had them all.
    s.part('g', 'a', 20 + GRACE_MIN_MS / 2);
    expect(outcomes).toEqual([{ key: 'g', kept: 1, late: 0, startedAt: 20 }]);
    // b is still there when the hold ends and the margin goes out: late, once.
    expect(drain(s, 20 + GRACE_MAX_MS).length).toBeGreaterThan(0);
    expect(outcomes).toEqual([{ key: 'g', kept: 1, late: 0, startedAt: 20 }, { key: 'g', kept: 0, late: 1, startedAt: 20 }]);
    // Its leave after the margin says nothing more, nor do trickles.
    s.part('g', 'b', 30 + GRACE_MAX_MS);
    runUntil(s, 31 + GRACE_MAX_MS, 1000);
    expect(outcomes).toHaveLength(2);
  });

  it('a new listener during the hold starts another pass: the first round is not judged', () => {
    const { s, outcomes } = withOutcomes();
    s.join('g', 'e0', 'a', 0, 0);
    s.open('g', { ifname: 'e0', position: 0, K: 4, gather: false, item: 'g' }, 'a', 0);
    drain(s, 0);
    s.join('g', 'e0', 'b', 0, 5);
    // Its source symbols go out after the hold: a and b are judged on that pass (begun then), not as late for the first.
    drain(s, GRACE_MAX_MS);
    expect(outcomes).toEqual([]);
    s.part('g', 'a', GRACE_MAX_MS + 1);
    s.part('g', 'b', GRACE_MAX_MS + 2);
    expect(outcomes).toEqual([
      { key: 'g', kept: 1, late: 0, startedAt: GRACE_MAX_MS },
      { key: 'g', kept: 1, late: 0, startedAt: GRACE_MAX_MS },
    ]);
  });
});
