/**
 * ListenerTable, the MLD listener and querier state of one interface, driven without sockets or root: the
 * behaviours test/mld-lab.root.test.ts sees on a real link, here with messages and times chosen by the test.
 */
import { describe, expect, it } from 'vitest';
import { LcsyncError } from '../src/core/base/errors.js';
import { formatIPv6, parseIPv6 } from '../src/core/wire/address.js';
import { decodeMld, encodeQuery, RecordType, type MldMessage, type RecordTypeNumber } from '../src/core/wire/mld.js';
import {
  ListenerTable,
  MAX_GROUPS_PER_IFACE,
  listenerTimers,
  type ListenerActions,
  type ListenerPolicy,
  type MldEvent,
} from '../src/core/net/listeners.js';

const OURS = 'fe80::10';
const LOWER = 'fe80::1'; // outranks us in the querier election
const HIGHER = 'fe80::20';
const HOST_A = 'fe80::a1';
const HOST_B = 'fe80::b2';
const G = parseIPv6('ff1e::abcd:1');
const G_TEXT = 'ff1e::abcd:1';
const SRC = parseIPv6('2001:db8::5');

/** The lab's fast settings (test/mld-lab.root.test.ts): QI 2 s, QRI 1 s, listener timeout 3.5 s, LLQI 1 s. */
const FAST: ListenerPolicy = { querier: true, queryIntervalSec: 2, queryResponseMs: 1000, listenerTimeoutSec: 3.5 };

function table(policy: Partial<ListenerPolicy> = {}, own: () => readonly string[] = () => [`${OURS}%e0`, '2001:db8::10']) {
  const logs: string[] = [];
  const p = { ...FAST, ...policy };
  const t = new ListenerTable({ ...p, ifname: 'e0', timers: listenerTimers(p), ownAddresses: own, log: (m) => logs.push(m) }, 0);
  return { t, logs };
}

const v2 = (recordType: RecordTypeNumber, group = G, sources: Buffer[] = []): MldMessage => ({
  type: 'v2report',
  records: [{ recordType, group, sources }],
});
/** A query as another querier sends it, through the codec the watcher uses. */
const query = (group: Buffer | undefined, maxRespMs: number, sFlag = false): MldMessage =>
  decodeMld(encodeQuery({ group, maxRespMs, qrv: 2, qqicSec: 2, sFlag }))!;

/** The events in a compact form: kind, group, from, refresh/reason. */
const ev = (a: ListenerActions) =>
  a.events.map((e: MldEvent) => ({
    kind: e.kind,
    group: formatIPv6(e.group),
    from: e.from,
    ifname: e.ifname,
    ...(e.refresh !== undefined ? { refresh: e.refresh } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
  }));
const qs = (a: ListenerActions) => a.queries.map((q) => ({ group: q.group ? formatIPv6(q.group) : undefined, maxRespMs: q.maxRespMs }));

/** Tick every 100 ms (the watcher's period) from `from` to `to`, gathering what comes out with its time. */
function run(t: ListenerTable, from: number, to: number) {
  const out: { at: number; events: ReturnType<typeof ev>; queries: ReturnType<typeof qs> }[] = [];
  for (let now = from; now <= to; now += 100) {
    const a = t.tick(now);
    if (a.events.length > 0 || a.queries.length > 0) out.push({ at: now, events: ev(a), queries: qs(a) });
  }
  return out;
}

describe('listenerTimers', () => {
  it('gives the RFC 3810 defaults', () => {
    expect(listenerTimers({ querier: true })).toEqual({ qiMs: 125_000, qriMs: 10_000, maliMs: 260_000, llqiMs: 1000, rv: 2 });
  });
  it('derives from the options and bounds them', () => {
    expect(listenerTimers(FAST)).toEqual({ qiMs: 2000, qriMs: 1000, maliMs: 3500, llqiMs: 1000, rv: 2 });
    expect(listenerTimers({ querier: true, queryIntervalSec: 10, robustness: 9, lastListenerQueryMs: 10 })).toEqual({
      qiMs: 10_000, qriMs: 5000, maliMs: 7 * 10_000 + 5000, llqiMs: 100, rv: 7,
    });
  });
  it('refuses a query interval that is not positive', () => {
    expect(() => listenerTimers({ querier: true, queryIntervalSec: 0 })).toThrow(LcsyncError);
    expect(() => listenerTimers({ querier: true, queryIntervalSec: Number.NaN })).toThrow(/must be positive/);
  });
});

describe('ListenerTable: MLDv2 joins and leaves', () => {
  it('joins on IS_EX, TO_EX, ALLOW and IN with sources; every report after the first is a refresh', () => {
    const { t } = table();
    expect(ev(t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 10))).toEqual([
      { kind: 'join', group: G_TEXT, from: HOST_A, ifname: 'e0', refresh: false },
    ]);
    const refreshes = [
      v2(RecordType.MODE_IS_EXCLUDE),
      v2(RecordType.ALLOW_NEW_SOURCES, G, [SRC]),
      v2(RecordType.MODE_IS_INCLUDE, G, [SRC]),
      v2(RecordType.CHANGE_TO_INCLUDE, G, [SRC]),
    ];
    for (const m of refreshes) {
      expect(ev(t.onMessage(m, HOST_B, 20))).toEqual([{ kind: 'join', group: G_TEXT, from: HOST_B, ifname: 'e0', refresh: true }]);
    }
    expect(t.activeGroups(20)).toEqual([{ group: G_TEXT, ifname: 'e0', expiresInSec: 3.5, lastReporter: HOST_B }]);
  });

  it('one report may carry several groups; link-scope groups are the link plumbing and ignored', () => {
    const { t } = table();
    const g2 = parseIPv6('ff1e::abcd:2');
    const msg: MldMessage = {
      type: 'v2report',
      records: [
        { recordType: RecordType.CHANGE_TO_EXCLUDE, group: G, sources: [] },
        { recordType: RecordType.CHANGE_TO_EXCLUDE, group: parseIPv6('ff02::1:ff00:1'), sources: [] },
        { recordType: RecordType.MODE_IS_EXCLUDE, group: g2, sources: [] },
      ],
    };
    expect(ev(t.onMessage(msg, HOST_A, 0)).map((e) => e.group)).toEqual([G_TEXT, 'ff1e::abcd:2']);
    expect(t.activeGroups(0).map((l) => l.group).sort()).toEqual([G_TEXT, 'ff1e::abcd:2']);
  });

  it('explicit tracking: the last host leaving (TO_IN {}, IS_IN {}) ends the group at once, with no query', () => {
    for (const leave of [RecordType.CHANGE_TO_INCLUDE, RecordType.MODE_IS_INCLUDE] as const) {
      const { t, logs } = table();
      t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
      const a = t.onMessage(v2(leave), HOST_A, 500);
      expect(ev(a)).toEqual([
        { kind: 'part', group: G_TEXT, from: HOST_A, ifname: 'e0' },
        { kind: 'leave', group: G_TEXT, from: HOST_A, ifname: 'e0', reason: 'left' },
      ]);
      expect(a.queries).toEqual([]);
      expect(t.activeGroups(500)).toEqual([]);
      expect(logs).toContain(`e0: ${HOST_A} left ${G_TEXT}, the last listener`);
    }
  });

  it('explicit tracking: a leave (BLOCK) from one of two hosts is a part only; the second one leaving ends the group', () => {
    const { t } = table();
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_B, 0);
    const first = t.onMessage(v2(RecordType.BLOCK_OLD_SOURCES, G, [SRC]), HOST_A, 100);
    expect(ev(first)).toEqual([{ kind: 'part', group: G_TEXT, from: HOST_A, ifname: 'e0' }]);
    expect(first.queries).toEqual([]);
    expect(run(t, 200, 1500).flatMap((r) => r.events)).toEqual([]);
    expect(ev(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_B, 1600)).map((e) => e.kind)).toEqual(['part', 'leave']);
  });

  it('explicit tracking: a host silent for a listener interval no longer holds the group when the other leaves', () => {
    const { t } = table();
    t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_A, 0); // then A crashes without leaving
    for (let now = 1000; now <= 4000; now += 1000) t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_B, now);
    expect(ev(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_B, 4100)).map((e) => e.kind)).toEqual(['part', 'leave']);
  });

  it('a leave for a group nobody was heard on changes nothing', () => {
    const { t } = table();
    expect(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_A, 0)).toEqual({ events: [], queries: [] });
    expect(t.onMessage({ type: 'v1done', group: G }, HOST_A, 0).events).toEqual([]);
  });
});

describe('ListenerTable: leave latency when leaves are checked by query', () => {
  it('as querier: the address-specific query now and after LLQI/2, then the group is gone LLQI + 200 ms after the leave', () => {
    const { t, logs } = table({ explicitTracking: false });
    t.tick(0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 1000);
    const leave = t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_A, 1050);
    expect(ev(leave)).toEqual([{ kind: 'part', group: G_TEXT, from: HOST_A, ifname: 'e0' }]);
    expect(leave.queries).toEqual([{ group: G, maxRespMs: 500, qrv: 2, qqicSec: 2 }]);
    expect(logs).toContain(`e0: ${HOST_A} left ${G_TEXT}, checking for other listeners`);
    // A second leave while the check runs starts nothing new.
    expect(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_A, 1060)).toEqual({ events: [], queries: [] });
    expect(t.activeGroups(1100)).toEqual([{ group: G_TEXT, ifname: 'e0', expiresInSec: 1.15, lastReporter: HOST_A }]);
    expect(run(t, 1100, 2500)).toEqual([
      { at: 1600, events: [], queries: [{ group: G_TEXT, maxRespMs: 500 }] },
      { at: 2000, events: [], queries: [{ group: undefined, maxRespMs: 1000 }] }, // the next general query
      { at: 2300, events: [{ kind: 'leave', group: G_TEXT, from: HOST_A, ifname: 'e0', reason: 'left' }], queries: [] },
    ]);
  });

  it('as querier: a host that answers the query keeps the group (a refresh, no repeat query, no leave)', () => {
    const { t } = table({ explicitTracking: false });
    t.tick(0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 100);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_B, 100);
    expect(ev(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_B, 200)).map((e) => [e.kind, e.from])).toEqual([['part', HOST_B]]);
    expect(ev(t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_A, 400))).toEqual([
      { kind: 'join', group: G_TEXT, from: HOST_A, ifname: 'e0', refresh: true },
    ]);
    expect(run(t, 500, 1900)).toEqual([]);
    expect(t.activeGroups(1900).map((l) => l.group)).toEqual([G_TEXT]);
  });

  it('MLDv1: reports and dones are logged, and a v1 group is checked by query even with explicit tracking', () => {
    const { t, logs } = table();
    t.tick(0);
    expect(ev(t.onMessage({ type: 'v1report', group: G }, HOST_A, 100))).toEqual([
      { kind: 'join', group: G_TEXT, from: HOST_A, ifname: 'e0', refresh: false },
    ]);
    expect(logs).toContain(`e0: MLDv1 report for ${G_TEXT} from ${HOST_A}`);
    const done = t.onMessage({ type: 'v1done', group: G }, HOST_A, 200);
    expect(logs).toContain(`e0: MLDv1 done for ${G_TEXT} from ${HOST_A}`);
    expect(ev(done).map((e) => e.kind)).toEqual(['part']);
    expect(qs(done)).toEqual([{ group: G_TEXT, maxRespMs: 500 }]);
    expect(run(t, 300, 1500).map((r) => [r.at, r.events.map((e) => e.reason), r.queries.length])).toEqual([
      [700, [], 1],
      [1400, ['left'], 0],
    ]);
  });

  it('not querier: no query of ours, the group is gone 2 x LLQI + 500 ms after the leave', () => {
    const { t } = table({ querier: false, explicitTracking: false });
    expect(t.isQuerier).toBe(false);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
    const leave = t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_A, 1000);
    expect(ev(leave).map((e) => e.kind)).toEqual(['part']);
    expect(leave.queries).toEqual([]);
    expect(run(t, 1100, 4000)).toEqual([
      { at: 3500, events: [{ kind: 'leave', group: G_TEXT, from: HOST_A, ifname: 'e0', reason: 'left' }], queries: [] },
    ]);
  });

  it("not querier: the querier's address-specific query lowers the group's timer (RFC 3810 7.6.2)", () => {
    const { t } = table({ querier: false });
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
    const q = t.onMessage(query(G, 1000), LOWER, 1000);
    expect(ev(q)).toEqual([{ kind: 'part', group: G_TEXT, from: LOWER, ifname: 'e0' }]);
    // A later query with the S flag (the router's repeat) changes nothing; nor one for another group.
    expect(t.onMessage(query(G, 1000, true), LOWER, 1100).events).toEqual([]);
    expect(t.onMessage(query(parseIPv6('ff1e::abcd:9'), 1000), LOWER, 1100).events).toEqual([]);
    // Deadline: qrv (2) x max response (1000 ms) + 200 ms.
    expect(run(t, 1100, 3500)).toEqual([
      { at: 3200, events: [{ kind: 'leave', group: G_TEXT, from: LOWER, ifname: 'e0', reason: 'left' }], queries: [] },
    ]);
  });
});

describe('ListenerTable: probe (a sender suspecting a lost leave)', () => {
  it('asks with the address-specific query twice; a host that answers stays (its report marked as an answer), one that does not gets a part', () => {
    const { t } = table();
    t.tick(0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 100);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_B, 100);
    // HOST_B left, but both copies of its leave were lost: the table still counts it.
    const probe = t.probe(G, 1000);
    expect(qs(probe)).toEqual([{ group: G_TEXT, maxRespMs: 500 }]);
    expect(probe.events).toEqual([]);
    // A second probe while one runs asks nothing.
    expect(t.probe(G, 1100)).toEqual({ events: [], queries: [] });
    const answer = t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_A, 1200);
    expect(answer.events.map((e) => [e.kind, e.from, e.answer])).toEqual([['join', HOST_A, true]]);
    const out = run(t, 1300, 2300).map((r) => ({ at: r.at, events: r.events, queries: r.queries.filter((q) => q.group === G_TEXT) }));
    expect(out.filter((r) => r.events.length > 0 || r.queries.length > 0)).toEqual([
      { at: 1500, events: [], queries: [{ group: G_TEXT, maxRespMs: 500 }] },
      { at: 2200, events: [{ kind: 'part', group: G_TEXT, from: HOST_B, ifname: 'e0' }], queries: [] },
    ]);
    expect(t.activeGroups(2300).map((l) => l.group)).toEqual([G_TEXT]);
    // A report outside a probe is not an answer.
    expect(t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_A, 2400).events[0]!.answer).toBeUndefined();
  });

  it('nobody answering ends the group (part, then leave); a new host reporting meanwhile is not an answer', () => {
    const { t, logs } = table();
    t.tick(0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 100);
    t.probe(G, 1000);
    expect(t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_B, 1100).events[0]!.answer).toBeUndefined();
    t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), HOST_B, 1150);
    expect(run(t, 1200, 2300).flatMap((r) => r.events)).toEqual([
      { kind: 'part', group: G_TEXT, from: HOST_A, ifname: 'e0' },
      { kind: 'leave', group: G_TEXT, from: HOST_B, ifname: 'e0', reason: 'left' },
    ]);
    expect(t.activeGroups(2300)).toEqual([]);
    expect(logs).toContain(`e0: nobody answered for ${G_TEXT}, no listener left`);
  });

  it('asks nothing when it cannot learn anything: not querier, an MLDv1 group, explicit tracking off, or no listener', () => {
    const notQuerier = table({ querier: false }).t;
    notQuerier.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
    expect(notQuerier.probe(G, 1000)).toEqual({ events: [], queries: [] });
    const v1 = table().t;
    v1.tick(0);
    v1.onMessage({ type: 'v1report', group: G }, HOST_A, 0);
    expect(v1.probe(G, 1000)).toEqual({ events: [], queries: [] });
    const noTracking = table({ explicitTracking: false }).t;
    noTracking.tick(0);
    noTracking.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 0);
    expect(noTracking.probe(G, 1000)).toEqual({ events: [], queries: [] });
    const empty = table().t;
    empty.tick(0);
    expect(empty.probe(G, 1000)).toEqual({ events: [], queries: [] });
  });
});

describe('ListenerTable: general queries and expiry', () => {
  it('as querier: a general query at the first tick and every query interval, with QRI, QRV and QQIC', () => {
    const { t } = table();
    expect(t.isQuerier).toBe(true);
    expect(t.tick(0).queries).toEqual([{ group: undefined, maxRespMs: 1000, qrv: 2, qqicSec: 2 }]);
    expect(run(t, 100, 6000).map((r) => r.at)).toEqual([2000, 4000, 6000]);
  });

  it('keeps a listener that answers the general queries, and lets one that vanished expire after the listener interval', () => {
    const { t } = table();
    t.tick(0);
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), HOST_A, 100);
    // The host answers the general queries at 2 s and 4 s...
    const before: ListenerActions[] = [];
    for (let now = 200; now <= 6000; now += 100) {
      before.push(t.tick(now));
      if (now === 2500 || now === 4500) t.onMessage(v2(RecordType.MODE_IS_EXCLUDE), HOST_A, now);
    }
    expect(before.flatMap((a) => a.events)).toEqual([]);
    // ...then is cut off: nothing answers the query at 6 s, and the group expires 3.5 s after its last report.
    expect(run(t, 6100, 9000).flatMap((r) => r.events.map((e) => ({ ...e, at: r.at })))).toEqual([
      { at: 8000, kind: 'leave', group: G_TEXT, from: HOST_A, ifname: 'e0', reason: 'expired' },
    ]);
    expect(t.activeGroups(9000)).toEqual([]);
  });

  it('waits for a link-local address before querying, and reads the own addresses again every 5 s', () => {
    let own: string[] = ['2001:db8::10'];
    const { t, logs } = table({}, () => own);
    expect(t.tick(0).queries).toEqual([]);
    expect(t.isQuerier).toBe(false);
    own = [`${OURS}%e0`];
    // Without a link-local address every tick reads them again.
    expect(t.tick(100).queries).toHaveLength(1);
    expect(logs).toContain(`e0: our link-local address is ${OURS}`);
    own = [`${LOWER}%e0`];
    t.tick(5000);
    expect(logs).not.toContain(`e0: our link-local address is ${LOWER}`);
    t.tick(5100);
    expect(logs).toContain(`e0: our link-local address is ${LOWER}`);
    // fe80::1 is now ours: its reports are our own and do not count.
    expect(t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), LOWER, 5200).events).toEqual([]);
  });

  it('bounds the groups one interface tracks', () => {
    const { t, logs } = table();
    const g = Buffer.from(G);
    for (let i = 0; i < MAX_GROUPS_PER_IFACE; i++) {
      g.writeUInt32BE(i, 12);
      t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE, Buffer.from(g)), HOST_A, 0);
    }
    g.writeUInt32BE(MAX_GROUPS_PER_IFACE, 12);
    expect(t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE, Buffer.from(g)), HOST_A, 0).events).toEqual([]);
    expect(logs.some((l) => l.includes(`${MAX_GROUPS_PER_IFACE} groups tracked already`))).toBe(true);
    expect(t.activeGroups(0)).toHaveLength(MAX_GROUPS_PER_IFACE);
  });
});

describe('ListenerTable: querier election', () => {
  it('a query from a lower link-local address stops our queries; we resume when that querier goes silent', () => {
    const { t, logs } = table();
    expect(t.tick(0).queries).toHaveLength(1);
    const q = t.onMessage(query(undefined, 1000), LOWER, 500);
    expect(q).toEqual({ events: [], queries: [] });
    expect(t.isQuerier).toBe(false);
    expect(t.otherQuerierAddress).toBe(LOWER);
    expect(logs).toContain(`e0: MLDv2 querier ${LOWER} present (lower address than ours: we stop querying)`);
    // Its next query (QI later) keeps it present; then it goes silent. Other Querier Present Interval:
    // its QRV (2) x its QQIC (2 s) + half its max response (0.5 s) after its last query.
    const out = run(t, 600, 2400);
    expect(out).toEqual([]);
    expect(t.onMessage(query(undefined, 1000), LOWER, 2500)).toEqual({ events: [], queries: [] });
    expect(run(t, 2600, 7100)).toEqual([{ at: 7000, events: [], queries: [{ group: undefined, maxRespMs: 1000 }] }]);
    expect(logs).toContain(`e0: querier ${LOWER} went quiet, querying again`);
    expect(t.isQuerier).toBe(true);
    expect(run(t, 7200, 9000).map((r) => r.at)).toEqual([9000]);
  });

  it('a query from a higher address, from ourselves or from a non-link-local address does not stop us', () => {
    const { t, logs } = table();
    t.tick(0);
    for (const from of [HIGHER, OURS, '2001:db8::1']) {
      expect(t.onMessage(query(undefined, 1000), from, 100)).toEqual({ events: [], queries: [] });
      expect(t.isQuerier).toBe(true);
    }
    expect(t.otherQuerierAddress).toBeUndefined();
    expect(logs.filter((l) => l.includes('present'))).toEqual([]);
    expect(run(t, 100, 2000).map((r) => r.at)).toEqual([2000]);
  });

  it('not querier: any querier is noted, without the election wording', () => {
    const { t, logs } = table({ querier: false });
    t.onMessage(query(undefined, 1000), HIGHER, 0);
    expect(t.otherQuerierAddress).toBe(HIGHER);
    expect(logs).toContain(`e0: MLDv2 querier ${HIGHER} present`);
    expect(run(t, 0, 6000)).toEqual([]);
  });

  it('an MLDv1 querier counts too', () => {
    const { t, logs } = table();
    const v1q: MldMessage = { type: 'query', version: 1, group: Buffer.alloc(16), maxRespMs: 1000 };
    t.onMessage(v1q, LOWER, 0);
    expect(t.isQuerier).toBe(false);
    expect(logs).toContain(`e0: MLDv1 querier ${LOWER} present (lower address than ours: we stop querying)`);
    // No QRV or QQIC in MLDv1: ours (2 x 2 s) + 0.5 s.
    expect(run(t, 100, 4500).map((r) => r.at)).toEqual([4500]);
  });
});

describe('ListenerTable: the own host', () => {
  it('ignores its own reports unless loopback is on', () => {
    const plain = table().t;
    expect(plain.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), OURS, 0).events).toEqual([]);
    expect(plain.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), '2001:db8::10', 0).events).toEqual([]);
    expect(plain.activeGroups(0)).toEqual([]);

    const loop = table({ loopback: true, querier: false }).t;
    expect(ev(loop.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), OURS, 0))).toEqual([
      { kind: 'join', group: G_TEXT, from: OURS, ifname: 'e0', refresh: false },
    ]);
    expect(ev(loop.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), OURS, 1000)).map((e) => e.kind)).toEqual(['part', 'leave']);
  });

  it('with loopback and without explicit tracking, its own leave is checked like any other (not querier: 2.5 s)', () => {
    const { t } = table({ loopback: true, querier: false, explicitTracking: false });
    t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), OURS, 0);
    expect(ev(t.onMessage(v2(RecordType.CHANGE_TO_INCLUDE), OURS, 1000)).map((e) => e.kind)).toEqual(['part']);
    expect(run(t, 1100, 4000).map((r) => [r.at, r.events.map((e) => e.reason)])).toEqual([[3500, ['left']]]);
  });

  it('ignores messages whose source is no IPv6 address', () => {
    const { t } = table();
    expect(t.onMessage(v2(RecordType.CHANGE_TO_EXCLUDE), 'not an address', 0)).toEqual({ events: [], queries: [] });
  });
});
