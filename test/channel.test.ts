/**
 * Multicast channel: the checks that run anywhere. The network part (needs root): test/channel.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import os from 'node:os';
import { loopbackMulticastProblem, loopbackRoutesMulticast, multicastInterfaces, validateInterfaces } from '../src/core/net/interfaces.js';
import { MulticastReceiver } from '../src/core/net/mcast-receiver.js';
import { MulticastSender } from '../src/core/net/mcast-sender.js';
import { LcsyncError } from '../src/core/base/errors.js';

function usageError(fn: () => unknown): LcsyncError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LcsyncError);
    expect((err as LcsyncError).code).toBe('USAGE');
    return err as LcsyncError;
  }
  throw new Error('expected a USAGE error');
}

async function usageRejection(p: Promise<unknown>): Promise<LcsyncError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LcsyncError);
  expect((err as LcsyncError).code).toBe('USAGE');
  return err as LcsyncError;
}

describe('interfaces', () => {
  it('rejects an unknown interface, listing the ones there are', () => {
    const names = Object.keys(os.networkInterfaces()).sort();
    const err = usageError(() => validateInterfaces([...names, 'nosuchif0']));
    expect(err.message).toBe(`unknown interface "nosuchif0" (available: ${names.join(', ')})`);
    usageError(() => validateInterfaces([]));
    expect(() => validateInterfaces(['lo'])).not.toThrow();
  });

  it('lo carries multicast only with a non-reject route covering ff1e:: (read from /proc/net/ipv6_route)', () => {
    const line = (dest: string, len: number, flags: number, dev: string) =>
      `${dest} ${len.toString(16).padStart(2, '0')} ${'0'.repeat(32)} 00 ${'0'.repeat(32)} 00000400 00000001 00000000 ${flags.toString(16).padStart(8, '0')}       ${dev}`;
    const base = [line('0'.repeat(31) + '1', 128, 0x80200001, 'lo'), line('0'.repeat(32), 0, 0x00200200, 'lo')];
    const ff00 = 'ff' + '0'.repeat(30);
    // A fresh namespace: no route for ff00::/8 on lo.
    expect(loopbackRoutesMulticast(base.join('\n'), 'lo')).toBe(false);
    // `ip -6 route add local ff00::/8 dev lo`: RTF_LOCAL|RTF_UP.
    expect(loopbackRoutesMulticast([...base, line(ff00, 8, 0x80000001, 'lo')].join('\n'), 'lo')).toBe(true);
    // `ip -6 route add multicast ff00::/8 dev lo`: the kernel makes it a reject route.
    expect(loopbackRoutesMulticast([...base, line(ff00, 8, 0x00200200, 'lo')].join('\n'), 'lo')).toBe(false);
    // The route on another interface, or one that leaves out ff1e::/16, is not enough; ff1e::/16 alone is.
    expect(loopbackRoutesMulticast([...base, line(ff00, 8, 0x80000001, 'eth0')].join('\n'), 'lo')).toBe(false);
    expect(loopbackRoutesMulticast([...base, line('ff02' + '0'.repeat(28), 16, 0x80000001, 'lo')].join('\n'), 'lo')).toBe(false);
    expect(loopbackRoutesMulticast([...base, line('ff1e' + '0'.repeat(28), 16, 0x80000001, 'lo')].join('\n'), 'lo')).toBe(true);
    // Garbage lines are ignored.
    expect(loopbackRoutesMulticast('nonsense\n\n' + line(ff00, 8, 0x80000001, 'lo'), 'lo')).toBe(true);
    // Not loopback: nothing to check.
    expect(loopbackMulticastProblem('nosuchif0')).toBeUndefined();
  });

  it('the default set leaves out loopback and names only real interfaces', () => {
    const all = os.networkInterfaces();
    const got = multicastInterfaces();
    expect(got).not.toContain('lo');
    for (const name of got) {
      expect(all[name]).toBeDefined();
      expect(all[name]!.some((a) => a.family === 'IPv6')).toBe(true);
      expect(all[name]!.some((a) => a.internal)).toBe(false);
    }
    expect([...got].sort()).toEqual(got);
  });

  it('checks options before touching the network', async () => {
    await usageRejection(MulticastReceiver.open({ ifnames: ['nosuchif0'] }));
    await usageRejection(MulticastSender.open({ ifname: 'nosuchif0' }));
    await usageRejection(MulticastSender.open({ ifname: 'lo', hopLimit: 0 }));
    await usageRejection(MulticastSender.open({ ifname: 'lo', hopLimit: 256 }));
    await usageRejection(MulticastSender.open({ ifname: 'lo', maxInFlight: 0 }));
    await usageRejection(MulticastSender.open({ ifname: 'lo', port: 70000 }));
    await usageRejection(MulticastReceiver.open({ ifnames: ['lo'], port: 0 }));
  });

  it('a receiver refuses groups that are not IPv6 multicast, and a closed sender refuses to send', async () => {
    // Binding and closing sockets sends nothing; no group is joined here.
    const rx = await MulticastReceiver.open({ ifnames: ['lo'], port: 40_000 + (process.pid % 20_000) });
    try {
      for (const g of ['fe80::1', 'ff1e::1%lo', '224.0.0.1', 'nonsense']) usageError(() => rx.join(g));
      expect(rx.joined.size).toBe(0);
      expect(rx.recvBufferBytes).toBeGreaterThan(0);
    } finally {
      await rx.close();
    }
    expect(() => rx.join('ff1e::1')).toThrow(LcsyncError);
    const tx = await MulticastSender.open({ ifname: 'lo' });
    await tx.close();
    await tx.close();
    const err = await tx.send('ff1e::1', Buffer.alloc(8)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as LcsyncError).code).toBe('INTERRUPTED');
    expect(tx.stats.datagrams).toBe(0);
  });
});
