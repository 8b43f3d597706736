import { afterEach, describe, expect, it, vi } from 'vitest';
import { Pacer, parseRate } from '../src/core/net/pacer.js';
import { LcsyncError } from '../src/core/base/errors.js';

describe('parseRate', () => {
  it.each([
    ['800000', 800_000],
    ['500k', 500_000],
    ['500K', 500_000],
    ['100M', 100_000_000],
    ['100m', 100_000_000],
    ['1.5G', 1_500_000_000],
    ['2T', 2_000_000_000_000],
    ['10Mbit', 10_000_000],
    ['10mbps', 10_000_000],
    ['64kbit/s', 64_000],
    [' 1k ', 1000],
    ['.5k', 500],
    ['0', 0],
  ])('%s -> %d bit/s', (text, bps) => {
    expect(parseRate(text)).toBe(bps);
  });

  it.each(['', 'fast', '10X', '-5', '1e6', '10MB', '10 M bits', '0.4', 'k', '1..5M', 'NaN', 'Infinity'])(
    'rejects %j with a USAGE error naming it',
    (text) => {
      let caught: unknown;
      try {
        parseRate(text);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(LcsyncError);
      expect((caught as LcsyncError).code).toBe('USAGE');
      expect((caught as LcsyncError).message).toBe(`invalid rate "${text}"`);
    },
  );
});

describe('Pacer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is a no-op when unlimited (0 or Infinity)', () => {
    for (const bps of [0, Infinity]) {
      const p = new Pacer({ bitsPerSecond: bps });
      for (let i = 0; i < 1000; i++) expect(p.take(1 << 20)).toBeUndefined();
    }
  });

  it('rejects a negative or NaN rate', () => {
    expect(() => new Pacer({ bitsPerSecond: -1 })).toThrow(LcsyncError);
    expect(() => new Pacer({ bitsPerSecond: NaN })).toThrow(LcsyncError);
    expect(() => new Pacer({ bitsPerSecond: 1000, burstBytes: 0 })).toThrow(LcsyncError);
  });

  it('answers synchronously while the bucket holds tokens, then with a promise', () => {
    let t = 0;
    const p = new Pacer({ bitsPerSecond: 8000, burstBytes: 3000, now: () => t });
    expect(p.take(1000)).toBeUndefined();
    expect(p.take(1000)).toBeUndefined();
    expect(p.take(1000)).toBeUndefined();
    const wait = p.take(1000);
    expect(wait).toBeInstanceOf(Promise);
    expect(p.waiting).toBe(1);
    // Refill: 1000 bytes/s, so one second later a 1000-byte request passes at once again...
    t = 2000;
    // ...but not before the queued request: first come, first served.
    expect(p.take(1)).toBeInstanceOf(Promise);
  });

  it('releases queued requests at the configured rate (fake time)', async () => {
    vi.useFakeTimers();
    // 8 Mbit/s = 1000 bytes per ms; bucket 10 000 bytes.
    const p = new Pacer({ bitsPerSecond: 8_000_000, burstBytes: 10_000, now: () => Date.now() });
    let immediate = 0;
    const released: number[] = [];
    const start = Date.now();
    for (let i = 0; i < 210; i++) {
      const w = p.take(1000);
      if (w === undefined) immediate++;
      else void w.then(() => released.push(Date.now() - start));
    }
    expect(immediate).toBe(10);
    await vi.advanceTimersByTimeAsync(50);
    // 50 ms at 1000 bytes/ms: 50 more requests of 1000 bytes (timer granularity: one either way).
    expect(released.length).toBeGreaterThanOrEqual(49);
    expect(released.length).toBeLessThanOrEqual(51);
    await vi.advanceTimersByTimeAsync(200);
    expect(released.length).toBe(200);
    // Request k (after the burst) is released no earlier than k ms in.
    released.forEach((ms, k) => expect(ms).toBeGreaterThanOrEqual(k));
    expect(released.at(-1)).toBeLessThanOrEqual(202);
    expect(p.waiting).toBe(0);
  });

  it('keeps requests in order and lets one larger than the bucket through, in debt', async () => {
    vi.useFakeTimers();
    // 1000 bytes per ms, bucket 2000 bytes.
    const p = new Pacer({ bitsPerSecond: 8_000_000, burstBytes: 2000, now: () => Date.now() });
    expect(p.take(10_000)).toBeUndefined(); // full bucket: passes, leaves 8000 bytes of debt
    const order: string[] = [];
    const small = p.take(10);
    const big = p.take(5000);
    const after = p.take(10);
    for (const [name, w] of [['small', small], ['big', big], ['after', after]] as const) {
      expect(w).toBeInstanceOf(Promise);
      void (w as Promise<void>).then(() => order.push(`${name}@${Date.now()}`));
    }
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(8);
    expect(order).toEqual([]); // still paying off the debt
    await vi.advanceTimersByTimeAsync(30);
    // small needs 10 tokens: the 8000-byte debt paid plus 10 bytes, 9 ms. big needs a full
    // bucket (2000): 2 ms more, leaving 3000 of debt. after needs 3010 more: 4 ms.
    expect(order).toEqual([`small@${t0 + 9}`, `big@${t0 + 11}`, `after@${t0 + 15}`]);
  });

  it('holds the long-run rate for datagram-sized requests (fake time)', async () => {
    vi.useFakeTimers();
    const bps = 100_000_000; // 12 500 bytes per ms
    const p = new Pacer({ bitsPerSecond: bps, now: () => Date.now() });
    let bytes = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const w = p.take(1108);
        if (w) await w;
        bytes += 1108;
      }
    })();
    await vi.advanceTimersByTimeAsync(2000);
    stop = true;
    await vi.advanceTimersByTimeAsync(10);
    await loop;
    const expected = (bps / 8) * 2.01 + p.burstBytes;
    expect(bytes).toBeGreaterThan(expected * 0.98);
    expect(bytes).toBeLessThan(expected * 1.01);
  });

  it('paces on the real clock too (short)', async () => {
    // 8 Mbit/s = 1 MB/s; 150 kB past a 16 KiB bucket takes at least 133 ms.
    const p = new Pacer({ bitsPerSecond: 8_000_000, burstBytes: 16_384 });
    const t0 = performance.now();
    for (let sent = 0; sent < 150_000; sent += 1000) {
      const w = p.take(1000);
      if (w) await w;
    }
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(132);
    expect(ms).toBeLessThan(1000);
  });
});

describe('Pacer.setRate (--bwlimit auto)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('serves waiters at the new rate from the moment it changes', async () => {
    vi.useFakeTimers();
    // 1000 bytes per ms, then 100 bytes per ms; bucket 2000 bytes.
    const p = new Pacer({ bitsPerSecond: 8_000_000, burstBytes: 2000, now: () => Date.now() });
    expect(p.take(2000)).toBeUndefined();
    const released: number[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) void (p.take(1000) as Promise<void>).then(() => released.push(Date.now() - t0));
    await vi.advanceTimersByTimeAsync(10);
    expect(released.length).toBe(10);
    p.setRate(800_000);
    expect(p.bitsPerSecond).toBe(800_000);
    await vi.advanceTimersByTimeAsync(50);
    // 50 ms at 100 bytes per ms: no more than 5 of the next 1000-byte requests.
    expect(released.length).toBeLessThanOrEqual(15);
    expect(released.length).toBeGreaterThanOrEqual(14);
    p.setRate(80_000_000);
    await vi.advanceTimersByTimeAsync(5);
    expect(released.length).toBe(20);
  });

  it('lets everything through at once when set to unlimited, and paces again when limited', async () => {
    vi.useFakeTimers();
    const p = new Pacer({ bitsPerSecond: 8000, burstBytes: 1000, now: () => Date.now() });
    expect(p.take(1000)).toBeUndefined();
    const waits = [p.take(1000), p.take(1000)];
    let done = 0;
    for (const w of waits) void (w as Promise<void>).then(() => done++);
    p.setRate(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(2);
    expect(p.waiting).toBe(0);
    for (let i = 0; i < 100; i++) expect(p.take(1 << 20)).toBeUndefined();
    p.setRate(8000);
    expect(p.burstBytes).toBe(1000);
    expect(p.take(1000)).toBeUndefined();
    expect(p.take(1000)).toBeInstanceOf(Promise);
  });

  it('derives the bucket from the new rate unless one was given', () => {
    const p = new Pacer({ bitsPerSecond: 100e6 });
    expect(p.burstBytes).toBe(64 * 1024);
    p.setRate(1e9);
    expect(p.burstBytes).toBe(625_000);
    expect(() => p.setRate(-1)).toThrow(LcsyncError);
  });
});
