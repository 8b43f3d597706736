/**
 * The relay without a network: which groups it carries, its option checks, and the argument checks of the
 * native forwarding path (native/relay_fwd.c), all refused before any socket opens. The forwarding itself is
 * proven on a wire in test/relay.root.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../src/core/base/addon.js';
import { LcsyncError } from '../src/core/base/errors.js';
import { Relay, relayable } from '../src/core/ops/relay.js';
import { itUnless } from './skip.js';

describe('relayable groups', () => {
  it('carries transient groups wider than link scope, as lcsync ff1e:: groups', () => {
    expect(relayable('ff1e:1234:5678:9abc:def0:1234:5678:9abc')).toBe(true);
    expect(relayable('ff15::1234')).toBe(true);
    expect(relayable('ff13::1')).toBe(true);
  });
  it('leaves link-scope, interface-scope and permanent groups alone, and anything that is not a group', () => {
    expect(relayable('ff12::1:3')).toBe(false); // transient, link scope
    expect(relayable('ff02::1:ff00:1')).toBe(false); // solicited-node
    expect(relayable('ff02::16')).toBe(false); // MLDv2 reports
    expect(relayable('ff11::1')).toBe(false); // interface-local
    expect(relayable('ff05::1:3')).toBe(false); // permanent (DHCP servers), site scope
    expect(relayable('ff0e::101')).toBe(false); // permanent (NTP), global scope
    expect(relayable('fe80::1')).toBe(false);
    expect(relayable('not an address')).toBe(false);
  });
});

describe('relay options', () => {
  const usage = async (p: Promise<unknown>, text: RegExp) => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LcsyncError);
    expect((err as LcsyncError).code).toBe('USAGE');
    expect((err as LcsyncError).message).toMatch(text);
  };
  it('refuses no downstream, the upstream as downstream, and a hop limit outside 1..255, before opening anything', async () => {
    await usage(Relay.start({ upstream: 'lo', downstreams: [] }), /at least one --downstream/);
    await usage(Relay.start({ upstream: 'lo', downstreams: ['lo'] }), /cannot be upstream and downstream/);
    await usage(Relay.start({ upstream: 'lo', downstreams: ['nosuchif0'], hopLimit: 0 }), /hop limit 0/);
    await usage(Relay.start({ upstream: 'lo', downstreams: ['nosuchif0'], hopLimit: 256 }), /hop limit 256/);
  });
  it('refuses an interface that does not exist', async () => {
    await usage(Relay.start({ upstream: 'nosuchif0', downstreams: ['nosuchif1'] }), /nosuchif/);
  });
});

const addon = loadAddon().addon;
const native = typeof addon?.relayOpen === 'function' ? undefined : 'the lcsync addon is not built or lacks relay_fwd';

describe('native forwarding path: argument checks', () => {
  itUnless(native, 'relayOpen checks every argument and throws TypeError/RangeError, never crashes', () => {
    const open = addon!.relayOpen!.bind(addon) as (...a: unknown[]) => unknown;
    const ok = [1, 4242, 1 << 20, Uint32Array.of(2), 1, 16, () => {}];
    const with_ = (i: number, v: unknown) => ok.map((x, j) => (j === i ? v : x));
    expect(() => open(...ok.slice(0, 6))).toThrow(TypeError);
    expect(() => open(...with_(0, 0))).toThrow(RangeError);
    expect(() => open(...with_(1, 70000))).toThrow(RangeError);
    expect(() => open(...with_(3, [2]))).toThrow(TypeError);
    expect(() => open(...with_(3, new Uint32Array(0)))).toThrow(RangeError);
    expect(() => open(...with_(3, new Uint32Array(9).fill(2)))).toThrow(RangeError);
    expect(() => open(...with_(3, Uint32Array.of(1)))).toThrow(/other than upstream/);
    expect(() => open(...with_(4, 0))).toThrow(RangeError);
    expect(() => open(...with_(4, 256))).toThrow(RangeError);
    expect(() => open(...with_(5, 0))).toThrow(RangeError);
    expect(() => open(...with_(5, 65537))).toThrow(RangeError);
    expect(() => open(...with_(6, 'cb'))).toThrow(TypeError);
  });
  itUnless(native, 'the other functions take only a handle made by relayOpen', () => {
    const fake = {} as never;
    expect(() => addon!.relayRoute!(fake, Buffer.alloc(16, 0xff), 1)).toThrow(/made by relayOpen/);
    expect(() => addon!.relayStats!(fake, new Float64Array(7))).toThrow(/made by relayOpen/);
    expect(() => addon!.relayClose!(fake)).toThrow(/made by relayOpen/);
  });
});
