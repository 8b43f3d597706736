/**
 * Redundant shares, without a network: the heartbeat format (wire/presence.ts) with its bounds
 * checks, the ownership rule and the peer table (share/peers.ts).
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { hash } from '../src/core/model/hash.js';
import { parseIPv6 } from '../src/core/wire/address.js';
import { MAX_ADDRESSES, MAX_HEARTBEAT, MAX_ROOTS, PRESENCE_GROUP, PRESENCE_PORT, decodeHeartbeat, encodeHeartbeat, type Heartbeat } from '../src/core/wire/presence.js';
import { keyTag } from '../src/core/wire/crypto.js';
import { DEAD_AFTER_MISSES, DEAD_SLACK_MS, PeerTable, offerDigest, ownerOf, rank } from '../src/core/share/peers.js';

function heartbeat(over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    bye: false,
    shareId: randomBytes(16),
    digest: randomBytes(32),
    keyTag: Buffer.alloc(8),
    intervalMs: 280,
    roots: [randomBytes(32), randomBytes(32)],
    addresses: [parseIPv6('fe80::1'), parseIPv6('fd00::1')],
    ...over,
  };
}

describe('heartbeat encoding', () => {
  it('round-trips every field, and the bye flag', () => {
    const hb = heartbeat({ bye: true });
    const buf = encodeHeartbeat(hb);
    expect(buf.length).toBe(68 + 2 * 32 + 2 * 16);
    expect(buf.subarray(0, 6).toString('ascii')).toBe('LCPRS1');
    expect(decodeHeartbeat(buf)).toEqual(hb);
    expect(decodeHeartbeat(encodeHeartbeat({ ...hb, bye: false }))!.bye).toBe(false);
  });

  it('the largest heartbeat fits the IPv6 minimum MTU; more roots or addresses than it carries are cut', () => {
    const hb = heartbeat({ roots: Array.from({ length: 40 }, () => randomBytes(32)), addresses: Array.from({ length: 20 }, () => randomBytes(16)) });
    const buf = encodeHeartbeat(hb);
    expect(buf.length).toBe(MAX_HEARTBEAT);
    expect(MAX_HEARTBEAT + 48).toBeLessThanOrEqual(1280);
    const back = decodeHeartbeat(buf)!;
    expect(back.roots).toEqual(hb.roots.slice(0, MAX_ROOTS));
    expect(back.addresses).toEqual(hb.addresses.slice(0, MAX_ADDRESSES));
  });

  it('refuses bad magic, version, flags, interval, counts and any length that does not match', () => {
    const good = encodeHeartbeat(heartbeat());
    const bad = (f: (b: Buffer) => Buffer) => decodeHeartbeat(f(Buffer.from(good)));
    expect(bad((b) => b)).toBeDefined();
    expect(bad((b) => (b.write('X', 0), b))).toBeUndefined();
    expect(bad((b) => ((b[6] = 2), b))).toBeUndefined();
    expect(bad((b) => ((b[7] = 0x02), b))).toBeUndefined();
    expect(bad((b) => (b.writeUInt16BE(10, 64), b))).toBeUndefined();
    expect(bad((b) => (b.writeUInt16BE(20_000, 64), b))).toBeUndefined();
    expect(bad((b) => ((b[66] = 3), b))).toBeUndefined(); // claims a root that is not there
    expect(bad((b) => ((b[66] = 1), b))).toBeUndefined(); // trailing bytes
    expect(bad((b) => ((b[67] = 200), b))).toBeUndefined();
    expect(bad((b) => Buffer.concat([b, Buffer.alloc(1)]))).toBeUndefined();
    expect(bad((b) => b.subarray(0, b.length - 1))).toBeUndefined();
    expect(bad((b) => b.subarray(0, 67))).toBeUndefined();
    expect(decodeHeartbeat(Buffer.alloc(0))).toBeUndefined();
    expect(decodeHeartbeat(Buffer.alloc(MAX_HEARTBEAT + 16))).toBeUndefined();
    // A data datagram is never a heartbeat.
    expect(decodeHeartbeat(Buffer.alloc(1072))).toBeUndefined();
  });

  it('refuses to encode fields of the wrong size', () => {
    expect(() => encodeHeartbeat(heartbeat({ shareId: randomBytes(15) }))).toThrow(RangeError);
    expect(() => encodeHeartbeat(heartbeat({ keyTag: randomBytes(9) }))).toThrow(RangeError);
    expect(() => encodeHeartbeat(heartbeat({ intervalMs: 49 }))).toThrow(RangeError);
  });

  it('the presence group is ff1e + BLAKE3("lcsync-presence")[0..14], on its own port', () => {
    expect(PRESENCE_GROUP.subarray(0, 2)).toEqual(Buffer.from([0xff, 0x1e]));
    expect(PRESENCE_GROUP.subarray(2)).toEqual(hash(Buffer.from('lcsync-presence')).subarray(0, 14));
    expect(PRESENCE_PORT).not.toBe(4242);
  });

  it('key tags tell keys apart and say nothing of the key', () => {
    const k = randomBytes(32);
    expect(keyTag(k)).toEqual(keyTag(Buffer.from(k)));
    expect(keyTag(k)).not.toEqual(keyTag(randomBytes(32)));
    expect(keyTag(k).length).toBe(8);
  });
});

describe('ownership', () => {
  const groups = Array.from({ length: 4000 }, (_, i) => Buffer.concat([Buffer.from([0xff, 0x1e]), hash(Buffer.from(`g${i}`)).subarray(0, 14)]));

  it('the owner is the id of highest BLAKE3(id || group), whatever the order of the candidates', () => {
    const ids = [randomBytes(16), randomBytes(16), randomBytes(16)];
    for (const g of groups.slice(0, 50)) {
      const o = ownerOf(g, ids);
      for (const id of ids) expect(Buffer.compare(rank(o, g), rank(id, g))).toBeGreaterThanOrEqual(0);
      expect(ownerOf(g, [...ids].reverse())).toEqual(o);
    }
    expect(() => ownerOf(groups[0]!, [])).toThrow();
  });

  it('splits groups about evenly, and a dead share\'s groups go to the survivors while the others keep theirs', () => {
    const ids = [randomBytes(16), randomBytes(16), randomBytes(16)];
    const owners = groups.map((g) => ownerOf(g, ids));
    for (const id of ids) {
      const n = owners.filter((o) => o.equals(id)).length;
      expect(n).toBeGreaterThan(4000 / 3 - 200);
      expect(n).toBeLessThan(4000 / 3 + 200);
    }
    const survivors = ids.slice(1);
    groups.forEach((g, i) => {
      const after = ownerOf(g, survivors);
      if (!owners[i]!.equals(ids[0]!)) expect(after).toEqual(owners[i]);
    });
  });

  it('the offer digest depends on roots, names, object count and extra, not on root order', () => {
    const a = { hash: randomBytes(32), shareName: 'a' };
    const b = { hash: randomBytes(32), shareName: 'b' };
    const d = offerDigest([a, b], 10);
    expect(offerDigest([b, a], 10)).toEqual(d);
    expect(offerDigest([a, b], 11)).not.toEqual(d);
    expect(offerDigest([a, { ...b, shareName: 'c' }], 10)).not.toEqual(d);
    expect(offerDigest([a], 10)).not.toEqual(d);
    expect(offerDigest([a, b], 10, Buffer.from('pubkey'))).not.toEqual(d);
    // A share at the larger symbol size offers something else; at 1024 the digest is as before.
    expect(offerDigest([a, b], 10, undefined, 1368)).not.toEqual(d);
    expect(offerDigest([a, b], 10, undefined, 1024)).toEqual(d);
  });
});

describe('the peer table', () => {
  const digest = randomBytes(32);
  const tag = Buffer.alloc(8);
  const self = { id: randomBytes(16), digest, keyTag: tag };
  const g = PRESENCE_GROUP; // any 16 bytes will do as a group here

  it('counts only shares of the same offer and key, and owns everything while alone', () => {
    const t = new PeerTable(self, ['e0']);
    expect(t.owns(g, 'e0')).toBe(true);
    expect(t.hear(heartbeat({ shareId: self.id, digest, keyTag: tag }), 'fe80::9', 0)).toBe('self');
    expect(t.hear(heartbeat({ digest: randomBytes(32), keyTag: tag }), 'fe80::2', 0)).toBe('foreign');
    expect(t.hear(heartbeat({ digest, keyTag: Buffer.alloc(8, 1) }), 'fe80::3', 0)).toBe('foreign');
    expect(t.list()).toEqual([]);
    const peer = heartbeat({ digest, keyTag: tag });
    expect(t.hear(peer, 'fe80::4', 0)).toBe('new');
    expect(t.hear(peer, 'fe80::4', 100)).toBe('known');
    // The same share serving another index: a co-server no more.
    expect(t.hear({ ...peer, digest: randomBytes(32) }, 'fe80::4', 150)).toBe('bye');
    expect(t.hear(peer, 'fe80::4', 200)).toBe('new');
    expect(t.on('e0').map((p) => p.idHex)).toEqual([peer.shareId.toString('hex')]);
    expect(t.owns(g, 'e0')).toBe(ownerOf(g, [self.id, peer.shareId]).equals(self.id));
  });

  it('forgets a peer after missed heartbeats, on bye, on its presence leave, and when the offer changes', () => {
    const t = new PeerTable(self, ['e0']);
    const peer = heartbeat({ digest, keyTag: tag, addresses: [parseIPv6('fe80::4')] });
    t.hear(peer, 'fe80::4', 0);
    const limit = DEAD_AFTER_MISSES * peer.intervalMs + DEAD_SLACK_MS;
    expect(t.expire(limit)).toEqual([]);
    expect(t.expire(limit + 1).map((p) => p.idHex)).toEqual([peer.shareId.toString('hex')]);
    expect(t.owns(g, 'e0')).toBe(true);

    t.hear(peer, 'fe80::4', 0);
    expect(t.hear({ ...peer, bye: true }, 'fe80::4', 10)).toBe('bye');
    expect(t.list()).toEqual([]);

    t.hear(peer, 'fe80::4', 0);
    t.presenceJoin('e0', 'fe80::4');
    expect(t.foreignPresence).toBe(true);
    expect(t.presenceLeave('e0', 'fe80::4').map((p) => [...p.ifnames])).toEqual([['e0']]);
    expect(t.foreignPresence).toBe(false);
    expect(t.list()).toEqual([]);

    t.hear(peer, 'fe80::4', 0);
    expect(t.setOffer(randomBytes(32))).toBe(true);
    expect(t.list()).toEqual([]);
  });

  it('with several interfaces, a peer counts only where its presence membership was seen', () => {
    const t = new PeerTable(self, ['e0', 'e1']);
    const peer = heartbeat({ digest, keyTag: tag, addresses: [parseIPv6('fe80::4')] });
    t.hear(peer, 'fe80::4', 0);
    expect(t.on('e0')).toEqual([]);
    expect(t.on('e1')).toEqual([]);
    t.presenceJoin('e1', 'fe80::4');
    expect(t.on('e0')).toEqual([]);
    expect(t.on('e1').length).toBe(1);
    expect(t.owns(g, 'e0')).toBe(true);
  });
});
