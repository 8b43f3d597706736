/**
 * The sendmmsg addon and its wrapper, without a network: argument checks (nothing here sends a
 * datagram), which path a sender takes, and that the addon loaded when it was built.
 * Sending itself is tested in batchsock.root.test.ts, inside lab namespaces.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BatchSocket, batchSendAvailable, batchSendUnavailableReason } from '../src/core/net/batchsock.js';
import { MulticastSender } from '../src/core/net/mcast-sender.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { describeUnless, itUnless, type SkipReason } from './skip.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(repo, 'build/Release/lcsync.node');
const built = existsSync(ADDON);
const required = process.env.CI_REQUIRE_ADDON === '1';
const saved = process.env.LCSYNC_NO_SENDMMSG;

afterEach(() => {
  if (saved === undefined) delete process.env.LCSYNC_NO_SENDMMSG;
  else process.env.LCSYNC_NO_SENDMMSG = saved;
});

/** The addon's own tests run when it is built, and (failing when it is not) whenever CI_REQUIRE_ADDON=1. */
const addonWhy: SkipReason = built || required ? undefined : 'the udp_batch addon is not built (npm ci builds it; CI_REQUIRE_ADDON=1 requires it)';

describe('the addon is there when it was built', () => {
  itUnless(addonWhy, 'the addon is built and loads (CI_REQUIRE_ADDON=1 requires it)', () => {
    delete process.env.LCSYNC_NO_SENDMMSG;
    expect(existsSync(ADDON), `${ADDON} is missing`).toBe(true);
    expect(batchSendUnavailableReason()).toBeUndefined();
    expect(batchSendAvailable()).toBe(true);
  });

  it('LCSYNC_NO_SENDMMSG=1 selects the node:dgram fallback; unset, the addon is used when built', async () => {
    process.env.LCSYNC_NO_SENDMMSG = '1';
    expect(batchSendAvailable()).toBe(false);
    expect(batchSendUnavailableReason()).toBe('LCSYNC_NO_SENDMMSG=1');
    expect(() => BatchSocket.open({ ifname: 'lo', hopLimit: 1, loopback: false })).toThrow(/LCSYNC_NO_SENDMMSG/);
    // Opening a sender binds a socket and sends nothing.
    const viaDgram = await MulticastSender.open({ ifname: 'lo' });
    expect(viaDgram.batching).toBe(false);
    await viaDgram.close();

    delete process.env.LCSYNC_NO_SENDMMSG;
    expect(batchSendAvailable()).toBe(built);
    if (!built) expect(batchSendUnavailableReason()).toMatch(/cannot load/);
    const tx = await MulticastSender.open({ ifname: 'lo' });
    expect(tx.batching).toBe(built);
    await tx.close();
  });
});

describeUnless(addonWhy, 'addon argument checks (nothing is sent)', () => {
  interface Raw {
    open(...a: unknown[]): number;
    sendBatch(...a: unknown[]): number;
    close(...a: unknown[]): void;
    ifindex(...a: unknown[]): number;
  }
  const raw = (): Raw => createRequire(import.meta.url)(ADDON) as Raw;

  it('open checks its arguments', () => {
    const b = raw();
    expect(() => b.open()).toThrow(TypeError);
    expect(() => b.open('1', 1, false)).toThrow(TypeError);
    expect(() => b.open(0, 1, false)).toThrow(RangeError);
    expect(() => b.open(1.5, 1, false)).toThrow(RangeError);
    expect(() => b.open(1, 0, false)).toThrow(RangeError);
    expect(() => b.open(1, 256, false)).toThrow(RangeError);
    expect(() => b.open(1, 1, 1)).toThrow(TypeError);
    expect(b.ifindex('lo')).toBeGreaterThan(0);
    expect(b.ifindex('nosuchif0')).toBe(0);
    expect(b.ifindex('x'.repeat(40))).toBe(0);
    expect(b.ifindex('')).toBe(0);
    expect(() => b.ifindex(1)).toThrow(TypeError);
  });

  it('sendBatch and close refuse bad arguments, and descriptors the addon did not open', () => {
    const b = raw();
    const fd = b.open(b.ifindex('lo'), 1, false);
    const g = Buffer.from('ff1e0000000000000000000000001234', 'hex');
    const two = Buffer.concat([g, g]);
    try {
      expect(() => b.sendBatch(fd, 4242, g)).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 0, g, [Buffer.alloc(1)])).toThrow(RangeError);
      expect(() => b.sendBatch(fd, 65536, g, [Buffer.alloc(1)])).toThrow(RangeError);
      expect(() => b.sendBatch(fd, '4242', g, [Buffer.alloc(1)])).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, 'ff1e::1', [Buffer.alloc(1)])).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, new Uint16Array(8), [Buffer.alloc(1)])).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, g, Buffer.alloc(1))).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, g, ['abc'])).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, g, [null])).toThrow(TypeError);
      expect(() => b.sendBatch(fd, 4242, two, [Buffer.alloc(1)])).toThrow(/16 bytes per payload/);
      expect(() => b.sendBatch(fd, 4242, g.subarray(1), [Buffer.alloc(1)])).toThrow(RangeError);
      // Every payload is checked before any is sent: the good first one must not go out either.
      expect(() => b.sendBatch(fd, 4242, two, [Buffer.alloc(1), Buffer.alloc(0)])).toThrow(/payloads\[1\] must be 1\.\.65507/);
      expect(() => b.sendBatch(fd, 4242, two, [Buffer.alloc(1), Buffer.alloc(65508)])).toThrow(RangeError);
      expect(() => b.sendBatch(fd, 4242, two, [Buffer.alloc(1), new Float32Array(4)])).toThrow(TypeError);
      // Not a group: the socket is for multicast only.
      const unicast = Buffer.concat([g, Buffer.from('fe800000000000000000000000000001', 'hex')]);
      expect(() => b.sendBatch(fd, 4242, unicast, [Buffer.alloc(1), Buffer.alloc(1)])).toThrow(/addrs\[1\] is not an IPv6 multicast/);
      expect(b.sendBatch(fd, 4242, Buffer.alloc(0), [])).toBe(0);
    } finally {
      b.close(fd);
    }
    // Closed, or never ours: refused, so a wrong number cannot write to or close Node's files.
    expect(() => b.sendBatch(fd, 4242, g, [Buffer.alloc(1)])).toThrow(/not a socket opened by udp_batch/);
    expect(() => b.close(fd)).toThrow(RangeError);
    const other = openSync('/dev/null', 'r');
    try {
      expect(() => b.close(other)).toThrow(RangeError);
      expect(() => b.sendBatch(other, 4242, g, [Buffer.alloc(1)])).toThrow(RangeError);
    } finally {
      closeSync(other); // Throws EBADF if the addon had closed it.
    }
    expect(() => b.close(-1)).toThrow(RangeError);
    expect(() => b.close()).toThrow(TypeError);
  });

  it('BatchSocket: unknown interface, closed socket', () => {
    delete process.env.LCSYNC_NO_SENDMMSG;
    expect(() => BatchSocket.open({ ifname: 'nosuchif0', hopLimit: 1, loopback: false })).toThrow(
      expect.objectContaining({ code: 'ENODEV' }),
    );
    const s = BatchSocket.open({ ifname: 'lo', hopLimit: 255, loopback: true });
    expect(s.ifindex).toBeGreaterThan(0);
    expect(s.closed).toBe(false);
    s.close();
    s.close();
    expect(s.closed).toBe(true);
    expect(() => s.send(4242, Buffer.alloc(16, 0xff), [Buffer.alloc(1)])).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('MulticastSender.sendBatch checks everything before it sends anything', () => {
  for (const mode of ['sendmmsg', 'dgram'] as const) {
    it(`${mode}: bad group, bad payload size, closed sender`, async () => {
      if (mode === 'dgram') process.env.LCSYNC_NO_SENDMMSG = '1';
      else delete process.env.LCSYNC_NO_SENDMMSG;
      const charged: number[] = [];
      const pacer = { take: (b: number) => void charged.push(b) } as unknown as import('../src/core/net/pacer.js').Pacer;
      const tx = await MulticastSender.open({ ifname: 'lo', pacer });
      expect(tx.batching).toBe(mode === 'sendmmsg' && built);
      const ok = { group: 'ff1e::1234', payload: Buffer.alloc(10) };
      for (const g of ['fe80::1', 'ff1e::1%lo', 'nonsense']) {
        const err = await tx.sendBatch([ok, { group: g, payload: Buffer.alloc(10) }]).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LcsyncError);
        expect((err as LcsyncError).code).toBe('USAGE');
      }
      await expect(tx.sendBatch([ok, { group: 'ff1e::1', payload: Buffer.alloc(0) }])).rejects.toThrow(RangeError);
      await expect(tx.sendBatch([ok, { group: 'ff1e::1', payload: Buffer.alloc(65508) }])).rejects.toThrow(RangeError);
      await tx.sendBatch([]);
      // Nothing was paced or sent.
      expect(charged).toEqual([]);
      expect(tx.stats).toEqual({ datagrams: 0, bytes: 0, errors: 0 });
      await tx.close();
      const err = await tx.sendBatch([ok]).catch((e: unknown) => e);
      expect((err as LcsyncError).code).toBe('INTERRUPTED');
      expect(tx.batching).toBe(false);
    });
  }
});
