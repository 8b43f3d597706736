import { describe, expect, it } from 'vitest';
import { AUTO_MAX_BPS, AUTO_MIN_BPS, AUTO_START_BPS, AUTO_WINDOW_MS, AutoRate, BACKOFF, FAST_WINDOW_MS, HEAVY_REASKS, MIN_OUTCOMES, SETTLE_MS } from '../src/core/net/autorate.js';

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
      signal: 'reasks', at: AUTO_WINDOW_MS, elapsedMs: AUTO_WINDOW_MS, rounds: 10, reasks: 1, sentBps: 80e6,
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

/**
 * A model of the rounds signal: the share sends at `rate` (or `busy` of it), and each 32-symbol
 * round (of 32 KiB) comes out of its hold `lagMs` after it began, late with probability
 * `lateAt(rate it began at, when)`. Every TICK_MS the controller is told what came out and asked.
 */
const TICK_MS = 10;
const ROUND_BITS = 32 * 1100 * 8;
function driveRounds(a: AutoRate, ms: number, lateAt: (rate: number, startedAt: number) => number, opts: { lagMs?: number; busy?: number; capBps?: number; t0?: number; seed?: number } = {}) {
  const lag = opts.lagMs ?? 60;
  let seed = opts.seed ?? 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const inFlight: { at: number; rate: number }[] = [];
  const rates: { t: number; rate: number }[] = [];
  let carry = 0;
  let late = 0;
  let all = 0;
  const t0 = opts.t0 ?? 0;
  for (let t = t0; t < t0 + ms; t += TICK_MS) {
    const bits = Math.min(a.rate * (opts.busy ?? 1), opts.capBps ?? Infinity) * (TICK_MS / 1000);
    a.sent(bits / 8);
    carry += bits / ROUND_BITS;
    for (; carry >= 1; carry--) {
      inFlight.push({ at: t, rate: Math.min(a.rate, opts.capBps ?? Infinity) });
      a.round();
    }
    while (inFlight.length > 0 && inFlight[0]!.at + lag <= t) {
      const r = inFlight.shift()!;
      const isLate = random() < lateAt(r.rate, r.at);
      late += isLate ? 1 : 0;
      all++;
      a.outcome(isLate ? 0 : 1, isLate ? 1 : 0, 32, r.at);
    }
    a.update(t + TICK_MS);
    rates.push({ t: t + TICK_MS, rate: a.rate });
  }
  return { rates, lateShare: late / Math.max(1, all) };
}

/** Late rounds behind a drop-tail queue of `capacity`: above it, most rounds lose something. */
const queueAt = (capacity: number, base = 0) => (rate: number) => 1 - (1 - base) * (rate > capacity ? Math.max(0, 1 - 10 * (rate / capacity - 1)) : 1);

describe('AutoRate: the rounds signal (listeners kept up or late)', () => {
  it('doubles per rounds window while every listener keeps up: 100 Mbit/s to 1.6 Gbit/s within half a second', () => {
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 500, () => 0);
    expect(rates.at(-1)!.rate).toBeGreaterThanOrEqual(16 * AUTO_START_BPS);
    expect(a.decisions.backoff).toBe(0);
    // No window shorter than FAST_WINDOW_MS, none with fewer than MIN_OUTCOMES outcomes.
    const firstRaise = rates.find((r) => r.rate > AUTO_START_BPS)!;
    expect(firstRaise.t).toBeGreaterThanOrEqual(FAST_WINDOW_MS);
    expect(firstRaise.t * 1e-3 * AUTO_START_BPS).toBeGreaterThanOrEqual(MIN_OUTCOMES * ROUND_BITS * 0.9);
  });

  it('judges a rate only by the rounds begun at it: a raise waits for them', () => {
    const a = new AutoRate(0);
    // Rounds come out 200 ms after they began: none of those begun after a raise is in for 200 ms.
    const { rates } = driveRounds(a, 1000, () => 0, { lagMs: 200 });
    const raises = rates.filter((r, i) => i > 0 && r.rate !== rates[i - 1]!.rate).map((r) => r.t);
    expect(raises.length).toBeGreaterThan(1);
    for (let i = 1; i < raises.length; i++) expect(raises[i]! - raises[i - 1]!).toBeGreaterThanOrEqual(200);
    // Rounds that began before the change say nothing about the new rate.
    const b = new AutoRate(0);
    for (let i = 0; i < 40; i++) b.outcome(0, 1, 32, -1);
    b.sent(10e6);
    expect(b.update(100)).not.toBe('backoff');
    expect(b.rate).toBe(AUTO_START_BPS);
  });

  it('finds a bottleneck from late rounds and stays near it, mostly below', () => {
    const capacity = 300e6;
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 10_000, queueAt(capacity));
    expect(a.decisions.backoff).toBeGreaterThan(0);
    const after = rates.filter((r) => r.t > 3000).map((r) => r.rate);
    expect(Math.max(...after)).toBeLessThan(capacity * 1.25);
    expect(after.filter((r) => r > capacity * 1.05).length / after.length).toBeLessThan(0.2);
    expect(after.reduce((s, r) => s + r, 0) / after.length).toBeGreaterThan(0.7 * capacity);
  });

  it('recovers within two seconds from a false alarm: a receiver too busy starting to leave its first rounds in time', () => {
    // Seen in the lab (1 GiB, a clean gigabit link): most rounds of the first half second late, so
    // slow start ended at 100M and two more cuts followed, down to 24.5M; the climb back crept by 2%
    // a window near that false ceiling and took 8-11 s to pass 500 Mbit/s.
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 3000, (_rate, at) => (at > 150 && at < 600 ? 0.9 : 0));
    expect(a.decisions.backoff).toBeGreaterThan(0);
    const at500 = rates.find((r) => r.t > 600 && r.rate > 500e6)?.t;
    expect(at500).toBeDefined();
    // The late rounds end at 600 ms (begun then, judged about 100 ms later); the code before took longer than the run.
    expect(at500!).toBeLessThan(2700);
  });

  it('keeps no ceiling from an overload seen while the share sent under half its rate', () => {
    // The lab's false alarms came while the share sent 17-47 Mbit/s of 100-200: cut, but not remembered.
    const idle = new AutoRate(0);
    driveRounds(idle, 600, (_rate, at) => (at > 150 ? 0.9 : 0), { busy: 0.4 });
    expect(idle.decisions.backoff).toBeGreaterThan(0);
    const { rates } = driveRounds(idle, 2000, () => 0, { t0: 600 });
    const used = new AutoRate(0);
    driveRounds(used, 600, (_rate, at) => (at > 150 ? 0.9 : 0));
    const usedRates = driveRounds(used, 2000, () => 0, { t0: 600 }).rates;
    const at500 = (rs: { t: number; rate: number }[]) => rs.find((r) => r.rate > 500e6)?.t ?? Infinity;
    expect(at500(rates)).toBeLessThan(at500(usedRates));
    expect(at500(rates)).toBeLessThan(1900);
  });

  it('holds the rate for one overloaded window on a clean link (a receiver that stalled) and cuts on a second', () => {
    // One rounds window of FAST_WINDOW_MS at the current rate, all its rounds begun in it.
    let t = 0;
    const window = (a: AutoRate, kept: number, late: number) => {
      for (let i = 0; i < kept + late; i++) a.outcome(i < kept ? 1 : 0, i < kept ? 0 : 1, 32, t);
      a.sent((a.rate / 8) * (FAST_WINDOW_MS / 1000));
      t += FAST_WINDOW_MS;
      return a.update(t);
    };
    const a = new AutoRate(0);
    expect([window(a, MIN_OUTCOMES, 0), window(a, MIN_OUTCOMES, 0)]).toEqual(['raise', 'raise']);
    expect(a.rate).toBe(4 * AUTO_START_BPS);
    // Every round of one window late, the next ones clean: held, not cut; raised again once the suspicion clears.
    expect([window(a, 0, MIN_OUTCOMES), window(a, MIN_OUTCOMES, 0), window(a, MIN_OUTCOMES, 0)]).toEqual(['hold', 'hold', 'hold']);
    expect(a.rate).toBe(4 * AUTO_START_BPS);
    expect(window(a, MIN_OUTCOMES, 0)).toBe('raise');
    expect(a.rate).toBe(8 * AUTO_START_BPS);
    // Two overloaded windows with a clean one between: the second cuts (slow start: by half).
    expect([window(a, 0, MIN_OUTCOMES), window(a, MIN_OUTCOMES, 0), window(a, 2, MIN_OUTCOMES)]).toEqual(['hold', 'hold', 'backoff']);
    expect(a.rate).toBe(4 * AUTO_START_BPS);
    // After the cut, a lone overloaded window is a suspect again.
    expect(window(a, 0, MIN_OUTCOMES)).toBe('hold');
    expect(a.decisions.backoff).toBe(1);
  });

  it("measures a window's rate from its first round: the share idle before a receiver came still raises at once", () => {
    // Seen in the lab: the share's first rounds window opened at its start and closed 0.6-0.8 s later,
    // its rounds all begun in the last 100 ms (the receiver busy with the file's tree before): "sent 16
    // Mbit/s" at 100, held, and the first raise came a window later.
    const a = new AutoRate(0);
    a.sent(50_000); // the tree, early on
    for (let i = 0; i < MIN_OUTCOMES + 5; i++) a.outcome(1, 0, 32, 620 + i * 3);
    a.sent((AUTO_START_BPS / 8) * 0.1); // 100 ms at the rate
    expect(a.update(730)).toBe('raise');
    expect(a.lastWindow!.sentBps).toBeGreaterThan(0.5 * AUTO_START_BPS);
    // A window whose rounds span it, with as little sent, is still a rate not used.
    const b = new AutoRate(0);
    for (let i = 0; i < MIN_OUTCOMES + 5; i++) b.outcome(1, 0, 32, i * 25);
    b.sent((AUTO_START_BPS / 8) * 0.1);
    expect(b.update(730)).toBe('hold');
  });

  it('does not take the late rounds of a lossy link (5%: about 80% late at every rate) for overload', () => {
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 3000, () => 0.8);
    expect(rates.at(-1)!.rate).toBeGreaterThanOrEqual(8 * AUTO_START_BPS);
    // A window of nearly all late rounds comes now and then by chance; a cut or two, not a collapse.
    expect(a.decisions.backoff).toBeLessThanOrEqual(3);
  });

  it('does not collapse on a lossy link where windows are small (the share or receiver CPU-bound at 150 Mbit/s)', () => {
    // Some 20-40 outcomes per window, and the loss comes in spells (the lab's windows at 5% ranged
    // from 40% to 90% late): a baseline made of the lowest windows took ordinary ones for overload
    // (seen in the lab: 800M down to 10M in 20 s).
    for (let seed = 1; seed <= 5; seed++) {
      let x = seed;
      let spell = 0.8;
      let calls = 0;
      const lateAt = () => {
        if (++calls % 15 === 0) spell = 0.55 + 0.4 * ((x = (x * 69069 + 1) % 2 ** 32) / 2 ** 32);
        return spell;
      };
      const a = new AutoRate(0);
      const { rates } = driveRounds(a, 10_000, lateAt, { capBps: 150e6, seed });
      const after = rates.filter((r) => r.t > 1000).map((r) => r.rate);
      expect(Math.min(...after)).toBeGreaterThan(100e6);
    }
  });

  it('still finds a bottleneck behind a 5%-lossy link', () => {
    const capacity = 300e6;
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 10_000, queueAt(capacity, 0.8));
    const after = rates.filter((r) => r.t > 3000).map((r) => r.rate);
    expect(Math.max(...after)).toBeLessThan(capacity * 1.5);
    expect(after.reduce((s, r) => s + r, 0) / after.length).toBeGreaterThan(0.6 * capacity);
  });

  it('leaves raises to the re-asks where nearly every round is late at any rate', () => {
    const a = new AutoRate(0);
    const { rates } = driveRounds(a, 3000, () => 0.995);
    // The re-asks raise at most once per SETTLE_MS (and double until the first overload).
    const raises = rates.filter((r, i) => i > 0 && r.rate > rates[i - 1]!.rate).map((r) => r.t);
    expect(raises.length).toBeGreaterThan(0);
    for (let i = 1; i < raises.length; i++) expect(raises[i]! - raises[i - 1]!).toBeGreaterThanOrEqual(SETTLE_MS);
  });

  it('does not raise a rate the share never used, whatever the rounds say', () => {
    const a = new AutoRate(0);
    driveRounds(a, 2000, () => 0, { busy: 0.2 });
    expect(a.rate).toBe(AUTO_START_BPS);
  });

  it('records rounds windows for LCSYNC_AUTORATE_TRACE', () => {
    const a = new AutoRate(0);
    for (let i = 0; i < MIN_OUTCOMES; i++) a.outcome(i < 5 ? 0 : 1, i < 5 ? 1 : 0, 32, 0);
    a.sent(1_000_000); // 8 Mbit in 50 ms: 160 Mbit/s
    expect(a.update(FAST_WINDOW_MS)).toBe('raise');
    expect(a.closed).toHaveLength(1);
    expect(a.lastWindow).toMatchObject({ signal: 'rounds', kept: MIN_OUTCOMES - 5, late: 5, rateBefore: AUTO_START_BPS, rate: 2 * AUTO_START_BPS, decision: 'raise' });
    expect(a.lastWindow!.smoothed).toBeCloseTo(1 - Math.pow(1 - 5 / MIN_OUTCOMES, 1 / 32), 6);
  });
});
