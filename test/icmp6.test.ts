/**
 * The raw ICMPv6 half of the lcsync addon (native/icmp6.c) without a network: argument checks that throw
 * before any socket is opened, and fds it never opened. Receiving and sending MLD through it is tested in
 * mld-lab.root.test.ts inside lab namespaces.
 */
import { expect, it } from 'vitest';
import { closeSync, existsSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonPath, loadAddon } from '../src/core/base/addon.js';
import { icmp6UnavailableReason } from '../src/core/net/icmp6.js';
import { describeUnless } from './skip.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = path.join(repo, 'build/Release/lcsync.node');
const built = existsSync(ADDON);
// Without the addon these skip, saying why; with CI_REQUIRE_ADDON=1 they run and fail instead.
const addonWhy = built || process.env.CI_REQUIRE_ADDON === '1' ? undefined : `${ADDON} is not built (npm ci builds it)`;

const group = Buffer.from('ff020000000000000000000000000016', 'hex');
const noop = (): void => undefined;

describeUnless(addonWhy, 'icmp6 in the addon', () => {
  it('loads through node-gyp-build from the source build, with every function', () => {
    expect(addonPath()).toBe(ADDON);
    expect(loadAddon().error).toBeUndefined();
    expect(icmp6UnavailableReason()).toBeUndefined();
  });

  it('checks icmp6Open arguments before opening anything', () => {
    const a = loadAddon().addon!;
    const types = Uint8Array.from([130, 143]);
    expect(() => (a.icmp6Open as (...x: unknown[]) => number)('lo', group, types)).toThrow(/takes 4 arguments/);
    expect(() => a.icmp6Open(42 as unknown as string, group, types, noop)).toThrow(TypeError);
    expect(() => a.icmp6Open('', group, types, noop)).toThrow(/1\.\.15 bytes/);
    expect(() => a.icmp6Open('a-name-far-too-long', group, types, noop)).toThrow(/1\.\.15 bytes/);
    expect(() => a.icmp6Open('lo\0x', group, types, noop)).toThrow(/without NUL/);
    expect(() => a.icmp6Open('lo', group.subarray(0, 15), types, noop)).toThrow(/16 bytes per group/);
    expect(() => a.icmp6Open('lo', Buffer.alloc(17 * 16, 0xff), types, noop)).toThrow(/at most 16 groups/);
    expect(() => a.icmp6Open('lo', Buffer.alloc(16), types, noop)).toThrow(/multicast/);
    expect(() => a.icmp6Open('lo', group, new Uint8Array(0), noop)).toThrow(/1\.\.256 ICMPv6 types/);
    expect(() => a.icmp6Open('lo', group, [130] as unknown as Uint8Array, noop)).toThrow(TypeError);
    expect(() => a.icmp6Open('lo', group, types, 'f' as unknown as () => void)).toThrow(/onMessage must be a function/);
  });

  it('refuses fds it did not open, so it can never touch a file Node owns', () => {
    const a = loadAddon().addon!;
    const fd = openSync(fileURLToPath(import.meta.url), 'r');
    try {
      expect(() => a.icmp6Send(fd, group, Buffer.alloc(8))).toThrow(/not a socket opened by icmp6Open/);
      expect(() => a.icmp6MrouteInit(fd)).toThrow(/not a socket opened by icmp6Open/);
      expect(() => a.icmp6Close(fd)).toThrow(/not a socket opened by icmp6Open/);
      expect(() => a.icmp6Close(-1)).toThrow(RangeError);
    } finally {
      closeSync(fd);
    }
  });
});
