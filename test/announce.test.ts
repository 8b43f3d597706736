/**
 * Root announces without a network: the packet form (wire/announce.ts), with its bounds checks,
 * and what a share does with watch-group reports and re-indexes (share/announce.ts): it answers a
 * host's first report, announces a changed root a few times, sends heartbeats only to listened
 * names, and counts followers per name and interface.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { MAX_ANNOUNCE_LEN, decodeAnnounce, encodeAnnounce, watchKey } from '../src/core/wire/announce.js';
import { objectCipher } from '../src/core/wire/crypto.js';
import { aliasHash } from '../src/core/model/entry.js';
import { groupAddress, groupBytes, GROUP_PREFIX_BYTES } from '../src/core/wire/address.js';
import { RootAnnouncer } from '../src/core/share/announce.js';
import type { ShareIndex } from '../src/core/index/mdex.js';
import type { MldEvent } from '../src/core/net/listeners.js';

const root = randomBytes(32);
const key = objectCipher(randomBytes(32));

describe('root announce datagram', () => {
  it('round-trips plain and sealed, with any name bytes', () => {
    for (const name of ['music', 'x', 'ü'.repeat(127), 'caf\udce9']) {
      const plain = encodeAnnounce({ root, heartbeatSec: 30, name });
      expect(decodeAnnounce(plain)).toEqual({ root, heartbeatSec: 30, name });
      const sealed = encodeAnnounce({ root, heartbeatSec: 0, name }, (p) => key.seal(p));
      expect(sealed.length).toBe(plain.length + 40);
      expect(decodeAnnounce(sealed, (s) => key.open(s))).toEqual({ root, heartbeatSec: 0, name });
    }
  });

  it('is never the length of a datagram or a gone notice', () => {
    expect(MAX_ANNOUNCE_LEN).toBeLessThan(1060);
    const shortest = encodeAnnounce({ root, heartbeatSec: 1, name: 'a' });
    expect(shortest.length).toBe(47);
    expect(encodeAnnounce({ root, heartbeatSec: 1, name: 'a'.repeat(255) }, (p) => key.seal(p)).length).toBe(MAX_ANNOUNCE_LEN);
  });

  it('refuses fields out of range when encoding', () => {
    expect(() => encodeAnnounce({ root: root.subarray(1), heartbeatSec: 1, name: 'a' })).toThrow(RangeError);
    expect(() => encodeAnnounce({ root, heartbeatSec: 70000, name: 'a' })).toThrow(RangeError);
    expect(() => encodeAnnounce({ root, heartbeatSec: -1, name: 'a' })).toThrow(RangeError);
    expect(() => encodeAnnounce({ root, heartbeatSec: 1, name: '' })).toThrow(RangeError);
    expect(() => encodeAnnounce({ root, heartbeatSec: 1, name: 'a'.repeat(256) })).toThrow(RangeError);
  });

  it('decodes nothing but a well-formed announce, never throwing', () => {
    const good = encodeAnnounce({ root, heartbeatSec: 30, name: 'music' });
    // Every truncation and every extension.
    for (let n = 0; n < good.length; n++) expect(decodeAnnounce(good.subarray(0, n))).toBeUndefined();
    expect(decodeAnnounce(Buffer.concat([good, Buffer.from([0])]))).toBeUndefined();
    const bad = (at: number, v: number) => {
      const b = Buffer.from(good);
      b[at] = v;
      return decodeAnnounce(b);
    };
    expect(bad(0, 0x4d)).toBeUndefined(); // magic
    expect(bad(8, 2)).toBeUndefined(); // version
    expect(bad(9, 0x02)).toBeUndefined(); // unknown flag
    expect(bad(9, 0x01)).toBeUndefined(); // claims sealed, no key given
    expect(bad(45, 4)).toBeUndefined(); // name length too short for what follows
    expect(bad(45, 6)).toBeUndefined(); // name length beyond the end
    expect(bad(44, 1)).toBeUndefined(); // name length 261
    const zero = Buffer.from(good);
    zero.writeUInt16BE(0, 44);
    expect(decodeAnnounce(zero.subarray(0, 46))).toBeUndefined(); // empty name
    expect(decodeAnnounce(Buffer.alloc(1060))).toBeUndefined();
    expect(decodeAnnounce(Buffer.alloc(MAX_ANNOUNCE_LEN + 1))).toBeUndefined();
    expect(decodeAnnounce('LCSYROOT' as never)).toBeUndefined();
  });

  it('with a key believes only sealed announces that open', () => {
    const plain = encodeAnnounce({ root, heartbeatSec: 30, name: 'music' });
    const other = objectCipher(randomBytes(32));
    const sealed = encodeAnnounce({ root, heartbeatSec: 30, name: 'music' }, (p) => other.seal(p));
    expect(decodeAnnounce(plain, (s) => key.open(s))).toBeUndefined();
    expect(decodeAnnounce(sealed, (s) => key.open(s))).toBeUndefined();
    expect(decodeAnnounce(sealed)).toBeUndefined();
  });

  it('lives on a group of its own, not the name\'s', () => {
    expect(groupAddress(watchKey('music'))).not.toBe(groupAddress(aliasHash('music')));
    expect(groupAddress(watchKey('music'))).not.toBe(groupAddress(watchKey('music2')));
    expect(groupAddress(watchKey('music')).startsWith('ff1e:')).toBe(true);
  });
});

describe('RootAnnouncer', () => {
  const group = groupBytes(watchKey('music'));
  const prefix = Buffer.from(watchKey('music').subarray(0, GROUP_PREFIX_BYTES));
  const indexOf = (r: Buffer) => ({ roots: [{ shareName: 'music', hash: r }] }) as unknown as ShareIndex;
  const join = (from: string, ifname = 'e0'): MldEvent => ({ kind: 'join', group, ifname, from });
  let sent: { ifname: string; group: string; payload: Buffer }[];
  let a: RootAnnouncer;

  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    a = new RootAnnouncer(indexOf(root), { ifnames: ['e0', 'e1'], heartbeatSec: 30, hostTtlMs: 50_000, send: (ifname, g, payload) => sent.push({ ifname, group: g, payload }) });
  });
  afterEach(() => {
    a.stop();
    vi.useRealTimers();
  });

  it('answers a host\'s first report with the root, not its refreshes; a crowd at once gets one answer', () => {
    expect(a.onJoin(join('fe80::1'), prefix)).toBe(true);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.group).toBe(groupAddress(watchKey('music')));
    expect(decodeAnnounce(sent[0]!.payload)).toEqual({ root, heartbeatSec: 30, name: 'music' });
    a.onJoin(join('fe80::1'), prefix);
    a.onJoin(join('fe80::2'), prefix); // within ANSWER_GAP of the first answer: it heard that one
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(400);
    a.onJoin(join('fe80::3'), prefix);
    expect(sent).toHaveLength(2);
    expect(a.followers()).toEqual([{ shareName: 'music', ifname: 'e0', hosts: 3 }]);
  });

  it('claims only watch groups of names it serves, on its interfaces', () => {
    expect(a.onJoin(join('fe80::1'), Buffer.from(aliasHash('music').subarray(0, GROUP_PREFIX_BYTES)))).toBe(false);
    expect(a.onJoin({ ...join('fe80::1'), group: groupBytes(watchKey('other')) }, Buffer.from(watchKey('other').subarray(0, GROUP_PREFIX_BYTES)))).toBe(false);
    expect(a.onJoin(join('fe80::1', 'eth9'), prefix)).toBe(false);
    expect(sent).toHaveLength(0);
  });

  it('announces a changed root three times over a second, only where someone listens, and nothing for an equal one', () => {
    a.setIndex(indexOf(randomBytes(32)));
    vi.advanceTimersByTime(2000);
    expect(sent).toHaveLength(0); // nobody follows
    a.onJoin(join('fe80::1', 'e0'), prefix);
    a.onJoin(join('fe80::9', 'e1'), prefix);
    sent = [];
    const next = randomBytes(32);
    a.setIndex(indexOf(next));
    expect(sent).toHaveLength(2);
    vi.advanceTimersByTime(1100);
    expect(sent).toHaveLength(6);
    expect(sent.every((s) => decodeAnnounce(s.payload)!.root.equals(next))).toBe(true);
    expect(new Set(sent.map((s) => s.ifname))).toEqual(new Set(['e0', 'e1']));
    sent = [];
    a.setIndex(indexOf(Buffer.from(next)));
    vi.advanceTimersByTime(1100);
    expect(sent).toHaveLength(0);
  });

  it('sends a heartbeat per listened group; hosts that part, leave or go silent stop counting', () => {
    a.onJoin(join('fe80::1'), prefix);
    vi.advanceTimersByTime(400);
    a.onJoin(join('fe80::2'), prefix);
    sent = [];
    vi.advanceTimersByTime(30_000);
    expect(sent).toHaveLength(1);
    a.onPart({ kind: 'part', group, ifname: 'e0', from: 'fe80::2' });
    expect(a.followers()).toEqual([{ shareName: 'music', ifname: 'e0', hosts: 1 }]);
    // fe80::1 keeps reporting; then stops: after the listener interval it no longer counts.
    vi.advanceTimersByTime(20_000);
    a.onJoin(join('fe80::1'), prefix);
    vi.advanceTimersByTime(55_000);
    expect(a.followers()).toEqual([]);
    sent = [];
    vi.advanceTimersByTime(60_000);
    expect(sent).toHaveLength(0);
    a.onJoin(join('fe80::1'), prefix); // back: answered as new
    expect(sent).toHaveLength(1);
    a.onLeave({ kind: 'leave', group, ifname: 'e0', from: 'fe80::1' });
    expect(a.followers()).toEqual([]);
  });

  it('in push mode announces every name on every interface without reports', () => {
    a.stop();
    a = new RootAnnouncer(indexOf(root), { ifnames: ['e0', 'e1'], heartbeatSec: 10, hostTtlMs: 50_000, always: true, send: (ifname, g, payload) => sent.push({ ifname, group: g, payload }) });
    vi.advanceTimersByTime(10_000);
    expect(sent.map((s) => s.ifname).sort()).toEqual(['e0', 'e1']);
  });

  it('seals announces with the share\'s key', () => {
    a.stop();
    a = new RootAnnouncer(indexOf(root), { ifnames: ['e0'], heartbeatSec: 30, hostTtlMs: 50_000, cipher: key, send: (ifname, g, payload) => sent.push({ ifname, group: g, payload }) });
    a.onJoin(join('fe80::1'), prefix);
    expect(decodeAnnounce(sent[0]!.payload)).toBeUndefined();
    expect(decodeAnnounce(sent[0]!.payload, (s) => key.open(s))!.root).toEqual(root);
  });
});
