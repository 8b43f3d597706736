/**
 * Membership changes in bursts (src/core/net/membership.ts), with a clock of plain numbers: the first
 * change after a quiet gap goes at once, later ones wait for one burst at least BATCH_MS after the
 * last, so the kernel (which sends its MLD report 2 jiffies after the last change) is left a quiet gap
 * to report in; a join and a leave in one wait cancel out; a rejoin is kept; a socket out of
 * memberships tries again.
 */
import { InterfaceIndexes } from '../src/core/net/mcast-receiver.js';
import { describe, expect, it } from 'vitest';
import { BATCH_MS, MembershipBatch, type MembershipChange } from '../src/core/net/membership.js';

/** Make a burst at `now` as MulticastReceiver does when every change succeeds. */
function burst(b: MembershipBatch, now: number): MembershipChange[] {
  const changes = b.burst(now);
  for (const c of changes) b.done(c);
  return changes;
}

describe('MembershipBatch', () => {
  it('with credits, lets that many bursts follow each other at once, then one per BATCH_MS', () => {
    const b = new MembershipBatch(BATCH_MS, 3);
    // Three serial steps, each joined as soon as the one before arrived (a directory, an entry, a chunk).
    for (let i = 0; i < 3; i++) {
      b.join(`ff1e::${i + 1}`);
      expect(b.dueAt()).toBeLessThanOrEqual(1000 + i);
      expect(burst(b, 1000 + i)).toHaveLength(1);
    }
    // Spent: the next waits until a credit has come back.
    b.join('ff1e::9');
    expect(b.dueAt()).toBeCloseTo(1002 + BATCH_MS - 2, 6);
    expect(burst(b, b.dueAt())).toHaveLength(1);
    // A steady flow gets one burst per BATCH_MS, as with one credit: the kernel keeps its quiet gaps.
    let at = b.dueAt();
    for (let i = 0; i < 10; i++) {
      b.join(`ff1e::1${i}`);
      const due = b.dueAt();
      expect(due - at).toBeCloseTo(i === 0 ? 0 : BATCH_MS, 6);
      burst(b, due);
      at = due;
    }
    // A leave waits BATCH_MS for a join to go with it; with one credit only until the next burst may be made.
    expect(new MembershipBatch(BATCH_MS, 3).leaveDueAt(5000)).toBe(5000 + BATCH_MS);
    expect(new MembershipBatch(BATCH_MS, 1).leaveDueAt(5000)).toBe(5000);
    expect(() => new MembershipBatch(BATCH_MS, 0)).toThrow(RangeError);
  });

  it('makes the first change at once and gathers the next ones into one burst a quiet gap later', () => {
    const b = new MembershipBatch();
    b.join('ff1e::1');
    expect(b.dueAt()).toBeLessThanOrEqual(0);
    expect(burst(b, 1000)).toEqual([{ group: 'ff1e::1', op: 'join' }]);
    expect(b.pending).toBe(false);
    // 300 requests within the gap: nothing goes to the kernel until it is over, then all at once.
    for (let i = 2; i < 302; i++) b.join(`ff1e::${i.toString(16)}`);
    b.leave('ff1e::1');
    expect(b.pending).toBe(true);
    expect(b.dueAt()).toBe(1000 + BATCH_MS);
    expect(b.joined.has('ff1e::1')).toBe(false);
    expect(b.inKernel.has('ff1e::1')).toBe(true);
    const next = burst(b, 1000 + BATCH_MS);
    expect(next).toHaveLength(301);
    expect(next.filter((c) => c.op === 'join')).toHaveLength(300);
    expect(next).toContainEqual({ group: 'ff1e::1', op: 'leave' });
    expect(b.inKernel.size).toBe(300);
    expect(b.pending).toBe(false);
  });

  it('a join and a leave of the same group within one wait need no change at all', () => {
    const b = new MembershipBatch();
    burst(b, 0);
    b.join('ff1e::a');
    b.leave('ff1e::a');
    b.join('ff1e::b');
    expect(burst(b, BATCH_MS)).toEqual([{ group: 'ff1e::b', op: 'join' }]);
    expect(b.joined.has('ff1e::a')).toBe(false);
    // Left and joined again while joined in the kernel: nothing to change either.
    b.leave('ff1e::b');
    b.join('ff1e::b');
    expect(burst(b, 2 * BATCH_MS)).toEqual([]);
    expect(b.inKernel.has('ff1e::b')).toBe(true);
  });

  it('keeps a rejoin (leave and join in one burst, for a fresh report) of a joined group', () => {
    const b = new MembershipBatch();
    b.join('ff1e::c');
    burst(b, 0);
    b.rejoin('ff1e::c');
    expect(burst(b, BATCH_MS)).toEqual([{ group: 'ff1e::c', op: 'rejoin' }]);
    // A rejoin of a group whose join is still waiting is that join.
    b.join('ff1e::d');
    b.rejoin('ff1e::d');
    expect(burst(b, 2 * BATCH_MS)).toEqual([{ group: 'ff1e::d', op: 'join' }]);
  });

  it('a join refused for want of memberships is asked again with the next burst; a refused one is forgotten', () => {
    const b = new MembershipBatch();
    b.join('ff1e::1');
    burst(b, 0);
    b.join('ff1e::2');
    b.join('ff1e::3');
    const [two, three] = b.burst(BATCH_MS);
    b.retry(two!.group);
    b.refused(three!.group);
    expect(b.pending).toBe(true);
    expect(b.joined.has('ff1e::3')).toBe(false);
    b.leave('ff1e::1');
    // Leaves first: they free memberships for the joins.
    expect(burst(b, 2 * BATCH_MS)).toEqual([
      { group: 'ff1e::1', op: 'leave' },
      { group: 'ff1e::2', op: 'join' },
    ]);
    expect([...b.inKernel]).toEqual(['ff1e::2']);
  });

  it('with a gap of 0 every change goes at once', () => {
    const b = new MembershipBatch(0);
    b.join('ff1e::1');
    expect(b.dueAt()).toBeLessThanOrEqual(0);
    burst(b, 5);
    b.join('ff1e::2');
    expect(b.dueAt()).toBe(5);
  });
});

describe('InterfaceIndexes (the receiver resolving interface names for its joins and leaves)', () => {
  it('looks a name up once, not per burst: if_nametoindex opens a socket each time', async () => {
    let calls = 0;
    const indexes = new InterfaceIndexes(() => {
      calls++;
      return 7;
    });
    const used: number[] = [];
    for (let burst = 0; burst < 5; burst++) {
      for (let i = 0; i < 100; i++) indexes.apply('e0', (index) => used.push(index));
      // A burst ends; the next one comes from a later task.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(used).toHaveLength(500);
    expect(new Set(used)).toEqual(new Set([7]));
    expect(calls).toBe(1);
  });

  it('looks the name up again when a change fails, and retries once if the interface came back with another index', () => {
    const answers = [7, 9];
    let calls = 0;
    const indexes = new InterfaceIndexes(() => {
      calls++;
      return answers.shift() ?? 0;
    });
    const tried: number[] = [];
    const joinOn = (live: number) => (index: number) => {
      tried.push(index);
      if (index !== live) throw Object.assign(new Error('setsockopt IPV6_JOIN_GROUP: ENODEV'), { code: 'ENODEV' });
    };
    indexes.apply('e0', joinOn(7));
    // e0 went away and came back as index 9.
    indexes.apply('e0', joinOn(9));
    expect(tried).toEqual([7, 7, 9]);
    expect(calls).toBe(2);
    // And 9 is kept from then on.
    indexes.apply('e0', joinOn(9));
    expect(calls).toBe(2);
  });

  it('keeps the change\'s own error when the lookup fails or finds the same index, and fails for a name never resolved', () => {
    const answers = [7, 0, 7];
    const indexes = new InterfaceIndexes(() => answers.shift() ?? 0);
    indexes.apply('e0', () => undefined);
    const gone = () => {
      throw Object.assign(new Error('setsockopt IPV6_JOIN_GROUP: ENODEV'), { code: 'ENODEV' });
    };
    // if_nametoindex answered 0 (as it does when out of descriptors): the join's own error stands.
    expect(() => indexes.apply('e0', gone)).toThrow(/IPV6_JOIN_GROUP/);
    // The same index again: no retry, the error stands.
    expect(() => indexes.apply('e0', gone)).toThrow(/IPV6_JOIN_GROUP/);
    expect(() => indexes.apply('e9', () => undefined)).toThrow(/no interface e9/);
  });
});
