/**
 * When a receiver asks again (receiver.ts tick): a request whose symbols stopped coming is joined
 * again after stallMs, but not because the receiver's own event loop was held up. Timers run
 * before the loop reads its sockets, so after a long synchronous stretch (decoding, writing a
 * directory's small files) the symbols that came meanwhile are still unread when the overdue tick
 * runs; taking every request for stalled then re-joined them all, and each re-join cost the share
 * a repair round.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { groupAddress } from '../src/core/wire/address.js';
import { hash } from '../src/core/model/hash.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { FakeNet, sourceDatagrams } from './fakenet.js';

const STALL_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keep the event loop busy for `ms` (a long synchronous stretch of the receiver's own work). */
function busy(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // spin
  }
}

/** A receiver asking for a random chunk whose first half (16 datagrams) is served on the join. */
function halfServed() {
  const net = new FakeNet();
  const rx = new ObjectReceiver(net, { stallMs: STALL_MS, firstSymbolMs: 10 * STALL_MS, idleTimeoutMs: 10_000 });
  const chunk = randomBytes(32768);
  const group = groupAddress(hash(chunk));
  const datagrams = sourceDatagrams(chunk, false);
  net.serve(group, datagrams.slice(0, 16));
  const got = rx.fetchChunk(hash(chunk), chunk.length);
  return { net, rx, chunk, group, datagrams, got };
}

describe('a receiver whose event loop was held up', () => {
  it('does not re-join a request whose symbols arrived while it was busy (they are read after the overdue tick)', async () => {
    // The first half arrives on the join: the request has made progress.
    const { net, rx, chunk, group, datagrams, got } = halfServed();
    try {
      // Right after that half (delivered by a check-phase callback queued by the join): busy for
      // three stall times; the rest of the symbols reach the socket meanwhile and are read (a
      // check-phase callback queued then) only after the overdue tick of the timers phase.
      setImmediate(() => {
        busy(3 * STALL_MS);
        setImmediate(() => {
          for (const d of datagrams.slice(16)) net.emit(d);
        });
      });
      expect((await got).equals(chunk)).toBe(true);
      expect(net.joinLog.filter((g) => g === group)).toHaveLength(1);
      expect(rx.stats.rejoins).toBe(0);
    } finally {
      rx.close();
    }
  });

  it('still re-joins a request that stalled, busy loop or not (at the next tick)', async () => {
    const { net, rx, chunk, group, datagrams, got } = halfServed();
    try {
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          busy(3 * STALL_MS);
          resolve();
        }),
      );
      // Nothing more came: asked again within a tick or two after the late one.
      const t0 = Date.now();
      while (net.joinLog.filter((g) => g === group).length < 2 && Date.now() - t0 < 10 * STALL_MS) await sleep(5);
      expect(Date.now() - t0).toBeLessThan(8 * STALL_MS);
      expect(rx.stats.rejoins).toBeGreaterThanOrEqual(1);
      // The re-join brings the served half again; the rest completes the chunk.
      for (const d of datagrams.slice(16)) net.emit(d);
      expect((await got).equals(chunk)).toBe(true);
    } finally {
      rx.close();
    }
  });
});
