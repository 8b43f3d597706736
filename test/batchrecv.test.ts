/**
 * The recvmmsg half of the addon and its wrapper, without a network: argument checks, which path
 * a MulticastReceiver takes (LCSYNC_NO_RECVMMSG), and the life cycle of a socket that is opened
 * and closed (nothing here joins a group or sends a datagram). Receiving itself is tested in
 * batchrecv.root.test.ts, inside lab namespaces.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BatchReceiver, batchRecvAvailable, batchRecvUnavailableReason, batchSendAvailable } from '../src/core/net/batchsock.js';
import { MulticastReceiver } from '../src/core/net/mcast-receiver.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { describeUnless, itUnless, type SkipReason } from './skip.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(repo, 'build/Release/lcsync.node');
const built = existsSync(ADDON);
const required = process.env.CI_REQUIRE_ADDON === '1';
const saved = { recv: process.env.LCSYNC_NO_RECVMMSG, send: process.env.LCSYNC_NO_SENDMMSG };
/** A port no other test of this run uses; binding it sends nothing. */
const PORT = 30_000 + (process.pid % 10_000);

afterEach(() => {
  for (const [k, v] of [['LCSYNC_NO_RECVMMSG', saved.recv], ['LCSYNC_NO_SENDMMSG', saved.send]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

/** The addon's own tests run when it is built, and (failing when it is not) whenever CI_REQUIRE_ADDON=1. */
const addonWhy: SkipReason = built || required ? undefined : 'the udp_batch addon is not built (npm ci builds it; CI_REQUIRE_ADDON=1 requires it)';

const noop = (): void => undefined;

describe('which receive path is taken', () => {
  itUnless(addonWhy, 'the receive half of the addon loads (CI_REQUIRE_ADDON=1 requires it)', () => {
    delete process.env.LCSYNC_NO_RECVMMSG;
    expect(batchRecvUnavailableReason()).toBeUndefined();
    expect(batchRecvAvailable()).toBe(true);
  });

  it('LCSYNC_NO_RECVMMSG=1 selects node:dgram; unset, the addon is used when built; the send switch is separate', async () => {
    process.env.LCSYNC_NO_RECVMMSG = '1';
    delete process.env.LCSYNC_NO_SENDMMSG;
    expect(batchRecvAvailable()).toBe(false);
    expect(batchRecvUnavailableReason()).toBe('LCSYNC_NO_RECVMMSG=1');
    expect(batchSendAvailable()).toBe(built);
    expect(() => BatchReceiver.open({ port: PORT, recvBufferBytes: 65536, onBatch: noop })).toThrow(/LCSYNC_NO_RECVMMSG/);
    const viaDgram = await MulticastReceiver.open({ ifnames: ['lo'], port: PORT });
    expect(viaDgram.batching).toBe(false);
    expect(viaDgram.recvBufferBytes).toBeGreaterThan(0);
    await viaDgram.close();

    delete process.env.LCSYNC_NO_RECVMMSG;
    process.env.LCSYNC_NO_SENDMMSG = '1';
    expect(batchSendAvailable()).toBe(false);
    expect(batchRecvAvailable()).toBe(built);
    if (!built) expect(batchRecvUnavailableReason()).toMatch(/cannot load/);
    const rx = await MulticastReceiver.open({ ifnames: ['lo'], port: PORT });
    expect(rx.batching).toBe(built);
    await rx.close();
  });

  for (const mode of ['recvmmsg', 'dgram'] as const) {
    it(`${mode}: the receiver keeps its checks and its closed state`, async () => {
      if (mode === 'dgram') process.env.LCSYNC_NO_RECVMMSG = '1';
      else delete process.env.LCSYNC_NO_RECVMMSG;
      await expect(MulticastReceiver.open({ ifnames: ['lo'], port: PORT, recvBufferBytes: 0 })).rejects.toThrow(LcsyncError);
      await expect(MulticastReceiver.open({ ifnames: ['lo'], port: PORT, recvBufferBytes: 2 ** 31 })).rejects.toThrow(LcsyncError);
      // Two receivers share the port (SO_REUSEADDR), as several lcsync processes on one host do.
      const a = await MulticastReceiver.open({ ifnames: ['lo'], port: PORT, recvBufferBytes: 65536 });
      const b = await MulticastReceiver.open({ ifnames: ['lo'], port: PORT });
      try {
        expect(a.batching).toBe(mode === 'recvmmsg' && built);
        // Linux doubles the request for its bookkeeping and reports that.
        expect(a.recvBufferBytes).toBe(2 * 65536);
        for (const g of ['fe80::1', 'ff1e::1%lo', 'nonsense']) {
          const err = (() => {
            try {
              a.join(g);
            } catch (e) {
              return e;
            }
          })();
          expect((err as LcsyncError).code).toBe('USAGE');
        }
        expect(a.joined.size).toBe(0);
        a.leave('ff1e::1'); // Not joined: nothing to do.
      } finally {
        await a.close();
        await b.close();
      }
      await a.close();
      expect(() => a.join('ff1e::1')).toThrow(LcsyncError);
      expect(a.stats).toEqual({ datagrams: 0, bytes: 0, errors: 0 });
    });
  }
});

describeUnless(addonWhy, 'recvmmsg addon argument checks (nothing is joined or sent)', () => {
  interface Raw {
    open(...a: unknown[]): number;
    close(...a: unknown[]): void;
    ifindex(...a: unknown[]): number;
    recvOpen(...a: unknown[]): number;
    recvBufferSize(...a: unknown[]): number;
    recvJoin(...a: unknown[]): void;
    recvLeave(...a: unknown[]): void;
    recvClose(...a: unknown[]): void;
  }
  const raw = (): Raw => createRequire(import.meta.url)(ADDON) as Raw;

  it('recvOpen checks its arguments', () => {
    const b = raw();
    expect(() => b.recvOpen()).toThrow(TypeError);
    expect(() => b.recvOpen(PORT, 65536)).toThrow(TypeError);
    expect(() => b.recvOpen('4242', 65536, noop)).toThrow(TypeError);
    expect(() => b.recvOpen(0, 65536, noop)).toThrow(RangeError);
    expect(() => b.recvOpen(65536, 65536, noop)).toThrow(RangeError);
    expect(() => b.recvOpen(1.5, 65536, noop)).toThrow(RangeError);
    expect(() => b.recvOpen(PORT, 0, noop)).toThrow(RangeError);
    expect(() => b.recvOpen(PORT, 2 ** 31, noop)).toThrow(RangeError);
    expect(() => b.recvOpen(PORT, 65536, 'cb')).toThrow(TypeError);
    expect(() => b.recvOpen(PORT, 65536, {})).toThrow(TypeError);
  });

  it('recvJoin/recvLeave/recvBufferSize/recvClose refuse bad arguments, and descriptors that are not receivers', () => {
    const b = raw();
    const fd = b.recvOpen(PORT, 65536, noop);
    const g = Buffer.from('ff1e0000000000000000000000001234', 'hex');
    const lo = b.ifindex('lo');
    try {
      expect(b.recvBufferSize(fd)).toBe(2 * 65536);
      for (const f of [b.recvJoin, b.recvLeave]) {
        expect(() => f(fd, g)).toThrow(TypeError);
        expect(() => f(fd, 'ff1e::1234', lo)).toThrow(TypeError);
        expect(() => f(fd, new Uint16Array(8), lo)).toThrow(TypeError);
        expect(() => f(fd, g.subarray(1), lo)).toThrow(/16 bytes/);
        expect(() => f(fd, Buffer.concat([g, g]), lo)).toThrow(RangeError);
        expect(() => f(fd, Buffer.from('fe800000000000000000000000000001', 'hex'), lo)).toThrow(/not an IPv6 multicast/);
        expect(() => f(fd, g, 0)).toThrow(RangeError);
        expect(() => f(fd, g, '1')).toThrow(TypeError);
      }
      // Leaving a group never joined is the kernel's EADDRNOTAVAIL, thrown like a Node system error.
      let err: NodeJS.ErrnoException | undefined;
      try {
        b.recvLeave(fd, g, lo);
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      }
      expect(err).toBeInstanceOf(Error);
      expect(err!.code).toBe('EADDRNOTAVAIL');
      expect(err!.errno).toBeLessThan(0);
      expect(err!.syscall).toBe('setsockopt IPV6_LEAVE_GROUP');
      expect(() => b.recvClose()).toThrow(TypeError);
    } finally {
      b.recvClose(fd);
    }
    // Closed, or never a receiver: refused, so a wrong number cannot read from or close Node's files.
    expect(() => b.recvClose(fd)).toThrow(/not a receiver opened by udp_batch.recvOpen/);
    expect(() => b.recvBufferSize(fd)).toThrow(RangeError);
    expect(() => b.recvJoin(fd, g, lo)).toThrow(RangeError);
    const sender = b.open(lo, 1, false);
    try {
      expect(() => b.recvClose(sender)).toThrow(RangeError);
    } finally {
      b.close(sender);
    }
    const other = openSync('/dev/null', 'r');
    try {
      expect(() => b.recvClose(other)).toThrow(RangeError);
      expect(() => b.recvJoin(other, g, lo)).toThrow(RangeError);
    } finally {
      closeSync(other); // Throws EBADF if the addon had closed it.
    }
    expect(() => b.recvClose(-1)).toThrow(RangeError);
  });

  it('BatchReceiver: option checks, closed receiver', () => {
    delete process.env.LCSYNC_NO_RECVMMSG;
    const open = (o: object) => () => BatchReceiver.open(o as Parameters<typeof BatchReceiver.open>[0]);
    expect(open({ port: PORT, recvBufferBytes: 65536 })).toThrow(TypeError);
    expect(open({ port: 0, recvBufferBytes: 65536, onBatch: noop })).toThrow(RangeError);
    expect(open({ port: 70_000, recvBufferBytes: 65536, onBatch: noop })).toThrow(RangeError);
    expect(open({ port: PORT, recvBufferBytes: -1, onBatch: noop })).toThrow(RangeError);
    expect(open({ port: PORT, recvBufferBytes: 1.5, onBatch: noop })).toThrow(RangeError);
    expect(BatchReceiver.ifindex('lo')).toBeGreaterThan(0);
    expect(BatchReceiver.ifindex('nosuchif0')).toBe(0);
    const r = BatchReceiver.open({ port: PORT, recvBufferBytes: 65536, onBatch: noop });
    expect(r.closed).toBe(false);
    expect(r.recvBufferBytes).toBe(2 * 65536);
    r.close();
    r.close();
    expect(r.closed).toBe(true);
    const g = Buffer.from('ff1e0000000000000000000000001234', 'hex');
    expect(() => r.join(g, 1)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => r.recvBufferBytes).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
