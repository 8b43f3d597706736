import { describe, expect, it } from 'vitest';
import { AUTO_MAX_BPS, AUTO_MIN_BPS, AUTO_START_BPS, AUTO_WINDOW_MS, AutoRate, BACKOFF, HEAVY_REASKS, SETTLE_MS } from '../src/core/net/autorate.js';

/**
 * A model of what the share sees: per window, `rounds` listener rounds, and re-asks from the
 * receivers that lost more than a round's margin. `lossAt(rate)` is the fraction of rounds that
 * needed a re-ask at that rate; the share sends at the full rate while anything is asked for.
 */
function drive(a: AutoRate, windows: number, reaskRatio: (rate: number) => number, opts: { rounds?: number; busy?: number; t0?: number; lag?: number } = {}) {
  let t = opts.t0 ?? 0;
  const rates: number[] = [];
  for (let w = 0; w < windows; w++) {
    const rounds = opts.rounds ?? 20;
    for (let i = 0; i < rounds; i++) a.round();
    // Re-asks answer the rate of `lag` windows ago (receivers stall, then re-join).
    const answered = opts.lag ? (rates[rates.length - opts.lag] ?? AUTO_START_BPS) : a.rate;
    const reasks = Math.round(rounds * reaskRatio(answered));
    for (let i = 0; i < reasks; i++) a.reask();
    a.sent(((a.rate * (opts.busy ?? 1)) / 8) * (AUTO_WINDOW_MS / 1000));
    t += AUTO_WINDOW_MS;
    a.update(t);
    rates.push(a.rate);
  }
  return { rates, t };
}

/** A path that carries `capacity` bit/s: above it the excess is dropped and rounds need re-asks in proportion. */
const bottleneck = (capacity: number, base = 0) => (rate: number) => base + (rate > capacity ? Math.min(8, 20 * (1 - capacity / rate)) : 0);

describe('AutoRate (--bwlimit auto)', () => {
  it('starts at a safe rate and ramps up while receivers keep up, to its ceiling', () => {
    const a = new AutoRate(0);
    expect(a.rate).toBe(AUTO_START_BPS);
    const { rates } = drive(a, 40, () => 0);
    // Doubling per clean window, once the last raise had time to show (SETTLE_MS).
    expect(rates[0]).toBe(2 * AUTO_START_BPS);
    expect(rates[1]).toBe(2 * AUTO_START_BPS);
    expect(rates[Math.ceil(SETTLE_MS / AUTO_WINDOW_MS)]).toBe(4 * AUTO_START_BPS);
    expect(rates.at(-1)).toBe(AUTO_MAX_BPS);
    for (let i = 1; i < rates.length; i++) expect(rates[i]!).toBeGreaterThanOrEqual(rates[i - 1]!);
    expect(a.decisions.backoff).toBe(0);
  });

  it('backs off on a bottleneck and then stays near it, mostly below', () => {
    const capacity = 300e6;
    const a = new AutoRate(0);
    const { rates } = drive(a, 200, bottleneck(capacity));
    expect(a.decisions.backoff).toBeGreaterThan(0);
    const late = rates.slice(100);
    // Never far above the capacity, never collapsed far below it.
    expect(Math.max(...late)).toBeLessThan(capacity * 1.25);
    expect(Math.min(...late)).toBeGreaterThan(capacity * BACKOFF * BACKOFF * 0.95);
    // Most of the time at or under the capacity: the overload it probes into is brief.
    const over = late.filter((r) => r > capacity * 1.05).length;
    expect(over / late.length).toBeLessThan(0.35);
    const mean = late.reduce((s, r) => s + r, 0) / late.length;
    expect(mean).toBeGreaterThan(0.7 * capacity);
  });

  it('finds the bottleneck when receivers answer two windows late', () => {
    const capacity = 300e6;
    const a = new AutoRate(0);
    const { rates } = drive(a, 200, bottleneck(capacity), { lag: 2 });
    const late = rates.slice(100);
    expect(Math.max(...late)).toBeLessThan(capacity * 1.35);
    expect(late.filter((r) => r > capacity * 1.05).length / late.length).toBeLessThan(0.35);
    expect(late.reduce((s, r) => s + r, 0) / late.length).toBeGreaterThan(0.6 * capacity);
  });

  it('does not mistake loss the link has at every rate for overload', () => {
    // About half the rounds of a 5%-loss link need a re-ask, whatever the rate.
    const a = new AutoRate(0);
    const { rates } = drive(a, 60, () => 0.5);
    expect(a.decisions.backoff).toBe(0);
    expect(rates.at(-1)).toBe(AUTO_MAX_BPS);
  });

  it('still finds a bottleneck behind a lossy link', () => {
    const capacity = 200e6;
    const a = new AutoRate(0);
    const { rates } = drive(a, 200, bottleneck(capacity, 0.5));
    const late = rates.slice(100);
    expect(Math.max(...late)).toBeLessThan(capacity * 1.25);
    expect(late.reduce((s, r) => s + r, 0) / late.length).toBeGreaterThan(0.6 * capacity);
  });

  it('backs off at once when receivers are swamped, and is bounded below', () => {
    const a = new AutoRate(0, { startBps: 1e9 });
    const { rates } = drive(a, 60, () => HEAVY_REASKS + 1);
    expect(rates[0]).toBeCloseTo(1e9 * BACKOFF);
    for (let i = 1; i < rates.length; i++) expect(rates[i]!).toBeLessThanOrEqual(rates[i - 1]!);
    expect(rates.at(-1)).toBe(AUTO_MIN_BPS);
  });

  it('does not raise a rate the share never used (nothing to send, or CPU-bound)', () => {
    const a = new AutoRate(0);
    drive(a, 20, () => 0, { busy: 0.2 });
    expect(a.rate).toBe(AUTO_START_BPS);
    expect(a.decisions.raise).toBe(0);
  });

  it('keeps its rate through silence, and waits for enough rounds to judge', () => {
    const a = new AutoRate(0);
    // No listener for a minute.
    for (let t = 50; t <= 60_000; t += 50) a.update(t);
    expect(a.rate).toBe(AUTO_START_BPS);
    expect(a.decisions.backoff + a.decisions.raise).toBe(0);
    // Two rounds and a re-ask are too few to call overload within one window.
    a.round();
    a.round();
    a.reask();
    a.sent(1e6);
    expect(a.update(60_000 + AUTO_WINDOW_MS)).toBeUndefined();
  });

  it('records each closed window for LCSYNC_AUTORATE_TRACE: what it held and what was decided', () => {
    const a = new AutoRate(0);
    expect(a.lastWindow).toBeUndefined();
    for (let i = 0; i < 10; i++) a.round();
    a.reask();
    a.sent(2_500_000); // 20 Mbit in 250 ms: 80 Mbit/s, busy at 100
    expect(a.update(AUTO_WINDOW_MS)).toBe('raise');
    expect(a.lastWindow).toEqual({
      at: AUTO_WINDOW_MS, elapsedMs: AUTO_WINDOW_MS, rounds: 10, reasks: 1, sentBps: 80e6,
      rateBefore: AUTO_START_BPS, rate: 2 * AUTO_START_BPS, decision: 'raise', smoothed: 0.1, baseline: 0.1,
    });
    // A window that sent nothing is not raised after, and says so.
    for (let i = 0; i < 10; i++) a.round();
    expect(a.update(2 * AUTO_WINDOW_MS)).toBe('hold');
    expect(a.lastWindow).toMatchObject({ sentBps: 0, rateBefore: 2 * AUTO_START_BPS, rate: 2 * AUTO_START_BPS, decision: 'hold' });
  });

  it('honours its bounds', () => {
    const a = new AutoRate(0, { startBps: 5e9, minBps: 50e6, maxBps: 400e6 });
    expect(a.rate).toBe(400e6);
    drive(a, 50, () => 5);
    expect(a.rate).toBe(50e6);
  });
});
