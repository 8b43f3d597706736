/**
 * The MLD listener and querier state of one interface (docs/protocol.md#mld-and-when-a-share-sends), as a pure
 * state machine: MldWatcher (mldsocket.ts) decodes what its raw socket receives, feeds it here with
 * `onMessage(msg, from, now)`, calls `tick(now)` on its timer, emits the events and sends the queries that come
 * back. No sockets, no timers, no clock of its own: tests drive it with messages and times.
 *
 * Listener state per group follows RFC 3810 section 7 in its any-source form:
 *  - a join or refresh (IS_EX, TO_EX, ALLOW, IS_IN/TO_IN with sources, v1 report) gives 'join' (every time: the
 *    share dedups, and a refresh is a cue to restart a stalled stream) and sets the listener timer to the
 *    Multicast Address Listening Interval;
 *  - explicit tracking (default): MLDv2 hosts never suppress each other's reports, so each group keeps the set
 *    of hosts that reported it. A leave from one of several gives 'part' and nothing else; a leave from the last
 *    one gives 'part' and 'leave' at once, with no query (fast leave: a stream stops within one report, and no
 *    query traffic per leave). Hosts that have not reported for a listener interval drop out of the set.
 *  - where an MLDv1 report was seen for a group (v1 hosts do suppress), or with explicitTracking off,
 *    a leave (TO_IN/IS_IN with no sources, BLOCK, v1 done) starts a check: as querier the address-specific
 *    query goes out twice (now and after half of lastListenerQueryMs, both with max response
 *    lastListenerQueryMs/2), and if no report for the group comes within lastListenerQueryMs (+ 200 ms margin) the
 *    group is gone: 'leave'. When not querier we cannot ask, so the deadline is two of a standard querier's last
 *    listener intervals (2 x lastListenerQueryMs + 500 ms); a listener that remains re-reports on the other
 *    querier's query, or re-joins when its stream stalls;
 *  - a listener timer that expires (nobody answered the general queries) gives 'leave' too.
 *
 * Querier (opts.querier): a general query at start and every queryIntervalSec; RFC 3810 election: a query from a
 * lower link-local address makes us stop until that querier has been silent for the Other Querier Present
 * Interval (robustness x QI + QRI/2), then we resume with a general query at once.
 */
import { LcsyncError } from '../base/errors.js';
import { formatIPv6, parseIPv6 } from '../wire/address.js';
import { listenerEvents, type MldMessage } from '../wire/mld.js';

/**
 * Events, each emitted under its kind ('join', 'part', 'leave'):
 *  - join: a report for the group (new listener or refresh);
 *  - part: a listener left and the watcher is checking whether any other remains (a sender may pause); a 'join'
 *    (someone answered) or a 'leave' (nobody did) follows;
 *  - leave: no listener left on that interface.
 */
export interface MldEvent {
  kind: 'join' | 'part' | 'leave';
  group: Buffer;
  ifname: string;
  /** join: the reporting host; part/leave: the host whose leave started the check, or the last reporter. */
  from: string;
  /** join: true when the group already had a listener on this interface. */
  refresh?: boolean;
  /** join: a known listener reporting while we probe the group (probe()): most likely an answer to our query, not a request. */
  answer?: boolean;
  /** join: the host says it lacks symbols of the group's object (an ALLOW record with no sources, wire/mld.ts). */
  lacking?: boolean;
  /** leave: 'left' = leave message then silence; 'expired' = listener timer ran out. */
  reason?: 'left' | 'expired';
  /** The text of `group`, once groupTextOf() made it: several consumers key their maps by it. */
  groupText?: string;
}

/**
 * The text of an event's group, formatted once per event: the share, its announcer and the
 * stream scheduler each key by it, and a share handles thousands of events a second at line rate.
 */
export function groupTextOf(e: MldEvent): string {
  return (e.groupText ??= formatIPv6(e.group));
}

export interface MldListenerInfo {
  group: string;
  ifname: string;
  expiresInSec: number;
  lastReporter: string;
}

/** The listener and querier policy, the same on every interface of a watcher. */
export interface ListenerPolicy {
  /** Act as MLD querier (with RFC 3810 election). Operators turn this off where routers query. */
  querier: boolean;
  /** Count the host's own reports (a receiver on the same host as the share). */
  loopback?: boolean;
  /** Query Interval (RFC 3810 QI), default 125 s. */
  queryIntervalSec?: number;
  /** Max response delay in general queries, default min(10 s, QI/2). */
  queryResponseMs?: number;
  /** Multicast Address Listening Interval, default robustness x QI + QRI. */
  listenerTimeoutSec?: number;
  /** Last Listener Query Interval, default 1000 ms. */
  lastListenerQueryMs?: number;
  /** Robustness variable, default 2. */
  robustness?: number;
  /**
   * Track listening hosts from MLDv2 reports and drop a group as soon as its
   * last one leaves, without an address-specific query (default on; groups
   * where an MLDv1 report was seen are always checked by query).
   */
  explicitTracking?: boolean;
}

/** The RFC 3810 timers a policy comes to, in milliseconds (rv: the robustness variable). */
export interface ListenerTimers {
  qiMs: number;
  qriMs: number;
  maliMs: number;
  llqiMs: number;
  rv: number;
}

/** Resolve a policy's defaults; throws USAGE for a query interval that is not positive. */
export function listenerTimers(policy: ListenerPolicy): ListenerTimers {
  const qi = policy.queryIntervalSec ?? 125;
  if (!(qi > 0)) throw new LcsyncError('USAGE', 'MLD query interval must be positive');
  const rv = Math.min(7, Math.max(1, Math.floor(policy.robustness ?? 2)));
  const qiMs = qi * 1000;
  const qriMs = Math.max(100, Math.min(policy.queryResponseMs ?? 10_000, qiMs / 2));
  const maliMs = policy.listenerTimeoutSec !== undefined ? policy.listenerTimeoutSec * 1000 : rv * qiMs + qriMs;
  const llqiMs = Math.max(100, policy.lastListenerQueryMs ?? 1000);
  return { qiMs, qriMs, maliMs, llqiMs, rv };
}

/** A query to send to all nodes (the fields of wire/mld.ts encodeQuery). */
export interface MldQuery {
  /** The group of an address-specific query; undefined for a general query. */
  group?: Buffer;
  maxRespMs: number;
  qrv: number;
  qqicSec: number;
}

/** What a message or a tick calls for: events to emit, then queries to send, each in order. */
export interface ListenerActions {
  events: MldEvent[];
  queries: MldQuery[];
}

export interface ListenerTableOptions extends ListenerPolicy {
  /** The interface, named in events and log lines. */
  ifname: string;
  timers: ListenerTimers;
  /**
   * The host's own IPv6 addresses on the interface now (text, a %zone suffix allowed): messages from them are
   * our own, and the lowest link-local one is our querier address. Asked again every few seconds.
   */
  ownAddresses: () => readonly string[];
  log?: (msg: string) => void;
}

interface Listener {
  group: Buffer;
  expiresAt: number;
  lastReporter: string;
  /**
   * Explicit tracking: every host whose MLDv2 report says it listens, with the
   * time of its last report. MLDv2 has no report suppression, so when the last
   * of them leaves nobody is left, and the group can go at once, without a query.
   */
  hosts: Map<string, number>;
  /** An MLDv1 report was seen: v1 hosts suppress each other's reports, so leaves are checked by query. */
  v1: boolean;
  /** Set while a leave is being checked: when the group is declared gone if no report arrives. */
  checkDeadline?: number;
  checkFrom?: string;
  /** Repeats of the address-specific query still to send (times). */
  queryAt: number[];
  /** A probe (probe()) in progress: when it began, when its second query goes out, when it ends. */
  probe?: { since: number; repeatAt: number | undefined; deadline: number };
}

/** Any host on the link can report any group: bound the state one interface may hold. */
export const MAX_GROUPS_PER_IFACE = 65536;
/** How often the own addresses are read again (an address may come, or finish DAD, after the start). */
const OWN_REFRESH_MS = 5000;

export class ListenerTable {
  readonly ifname: string;
  private readonly opts: ListenerTableOptions;
  private readonly t: ListenerTimers;
  /** Absent when nobody reads the lines: called as log?.(...), so no line (nor the group's text in it) is made then. */
  private readonly log: ((msg: string) => void) | undefined;
  /** Our own IPv6 addresses on this interface (normalised text), for ignoring our own messages. */
  private own = new Set<string>();
  private linkLocal: Buffer | undefined;
  private ownRefreshedAt = 0;
  private readonly listeners = new Map<string, Listener>();
  private nextGeneralAt = 0;
  /** Another querier that won the election, and until when we consider it present. */
  private otherQuerier: { addr: string; until: number } | undefined;

  constructor(opts: ListenerTableOptions, now: number) {
    this.opts = opts;
    this.ifname = opts.ifname;
    this.t = opts.timers;
    this.log = opts.log;
    this.refreshOwn(now);
  }

  /** Whether we are the querier: asked to be, outranked by nobody, and with a link-local address to query from. */
  get isQuerier(): boolean {
    return this.opts.querier && this.otherQuerier === undefined && this.linkLocal !== undefined;
  }

  /** The querier that outranks us (or, when we are not querier ourselves, any querier heard), if any. */
  get otherQuerierAddress(): string | undefined {
    return this.otherQuerier?.addr;
  }

  /** Groups with listeners now. */
  activeGroups(now: number): MldListenerInfo[] {
    const out: MldListenerInfo[] = [];
    for (const l of this.listeners.values()) {
      const until = Math.min(l.expiresAt, l.checkDeadline ?? Infinity);
      out.push({
        group: formatIPv6(l.group),
        ifname: this.ifname,
        expiresInSec: Math.max(0, (until - now) / 1000),
        lastReporter: l.lastReporter,
      });
    }
    return out;
  }

  /** Forget every listener (the watcher is closing). */
  clear(): void {
    this.listeners.clear();
  }

  /**
   * Ask who still listens to `group` (a sender that suspects a lost leave: MLD reports travel on the
   * same lossy links as the data, and a host that sends its leave twice can lose both, after which
   * the group would be served until its listener timer ran out, tens of seconds). As querier, with
   * explicit tracking and no MLDv1 host on the group: an address-specific query now and after half the
   * last listener interval; every host that has not reported the group by then (lastListenerQueryMs +
   * 200 ms) gets a 'part', and the last one a 'leave' as well. Otherwise nothing is asked.
   */
  probe(group: Buffer, now: number): ListenerActions {
    const out: ListenerActions = { events: [], queries: [] };
    const l = this.listeners.get(group.toString('hex'));
    if (!l || l.v1 || this.opts.explicitTracking === false || !this.isQuerier || l.probe || l.checkDeadline !== undefined) return out;
    l.probe = { since: now, repeatAt: now + this.t.llqiMs / 2, deadline: now + this.t.llqiMs + 200 };
    out.queries.push(this.query(l.group, this.t.llqiMs / 2));
    return out;
  }

  /** Timers: own addresses, querier election timeout, general queries, last-listener queries, expiries. */
  tick(now: number): ListenerActions {
    const out: ListenerActions = { events: [], queries: [] };
    if (!this.linkLocal || now - this.ownRefreshedAt >= OWN_REFRESH_MS) this.refreshOwn(now);
    if (this.opts.querier) {
      if (this.otherQuerier && now >= this.otherQuerier.until) {
        this.log?.(`${this.ifname}: querier ${this.otherQuerier.addr} went quiet, querying again`);
        this.otherQuerier = undefined;
        this.nextGeneralAt = now;
      }
      if (this.isQuerier && now >= this.nextGeneralAt) {
        this.nextGeneralAt = now + this.t.qiMs;
        out.queries.push(this.query(undefined, this.t.qriMs));
      }
    }
    for (const [key, l] of this.listeners) {
      while (l.queryAt.length > 0 && l.queryAt[0]! <= now) {
        l.queryAt.shift();
        if (this.isQuerier) out.queries.push(this.query(l.group, this.t.llqiMs / 2));
      }
      if (l.probe) this.probeTick(key, l, now, out);
      if (!this.listeners.has(key)) continue;
      if (l.checkDeadline !== undefined && now >= l.checkDeadline) {
        this.listeners.delete(key);
        out.events.push({ kind: 'leave', group: l.group, ifname: this.ifname, from: l.checkFrom ?? l.lastReporter, reason: 'left' });
      } else if (now >= l.expiresAt) {
        this.listeners.delete(key);
        out.events.push({ kind: 'leave', group: l.group, ifname: this.ifname, from: l.lastReporter, reason: 'expired' });
      }
    }
    return out;
  }

  /** A decoded MLD message that arrived on this interface from `source` (an IPv6 address, text). */
  onMessage(msg: MldMessage, source: string, now: number): ListenerActions {
    const out: ListenerActions = { events: [], queries: [] };
    const src = tryParse(source);
    if (!src) return out;
    const from = formatIPv6(src);
    if (!this.own.has(from) && src[0] === 0xfe && now - this.ownRefreshedAt > 1000) this.refreshOwn(now);
    const self = this.own.has(from);

    if (msg.type === 'query') {
      this.onQuery(msg, src, from, self, now, out);
      return out;
    }

    if (self && !this.opts.loopback) return out;
    if (msg.type === 'v1report' || msg.type === 'v1done') {
      this.log?.(`${this.ifname}: MLDv1 ${msg.type === 'v1report' ? 'report' : 'done'} for ${formatIPv6(msg.group)} from ${from}`);
    }
    for (const ev of listenerEvents(msg)) {
      if (ev.kind === 'join') this.onJoin(ev.group, from, msg.type === 'v1report', now, out, ev.lacking === true);
      else this.onLeave(ev.group, from, now, out);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------------

  private onQuery(
    msg: Extract<MldMessage, { type: 'query' }>,
    src: Buffer,
    from: string,
    self: boolean,
    now: number,
    out: ListenerActions,
  ): void {
    // RFC 3810 section 5.1.14: queries must come from a link-local address; our own loop back to us.
    if (self || !(src[0] === 0xfe && (src[1]! & 0xc0) === 0x80)) return;
    // For a non-querier any querier is "the querier"; a querier yields only to a lower address (RFC 3810 7.6.1).
    const outranks = !this.opts.querier || !this.linkLocal || Buffer.compare(src, this.linkLocal) < 0;
    if (outranks) {
      const qrv = msg.qrv !== undefined && msg.qrv > 0 ? msg.qrv : this.t.rv;
      const qiMs = msg.qqicSec !== undefined && msg.qqicSec > 0 ? msg.qqicSec * 1000 : this.t.qiMs;
      const until = now + qrv * qiMs + msg.maxRespMs / 2;
      if (this.otherQuerier?.addr !== from) {
        this.log?.(`${this.ifname}: MLDv${msg.version} querier ${from} present` +
          (this.opts.querier ? ' (lower address than ours: we stop querying)' : ''));
      }
      this.otherQuerier = { addr: from, until };
    }
    // RFC 3810 section 7.6.2: a non-querier lowers a group's timer when the querier asks about that group.
    const l = this.listeners.get(msg.group.toString('hex'));
    if (l && !this.isQuerier && !msg.sFlag && msg.group.some((x) => x !== 0)) {
      const qrv = msg.qrv !== undefined && msg.qrv > 0 ? msg.qrv : this.t.rv;
      const deadline = now + qrv * msg.maxRespMs + 200;
      if (l.checkDeadline === undefined || deadline < l.checkDeadline) {
        const started = l.checkDeadline === undefined;
        l.checkDeadline = deadline;
        l.checkFrom ??= from;
        if (started) out.events.push({ kind: 'part', group: l.group, ifname: this.ifname, from: l.checkFrom });
      }
    }
  }

  /** A probe's second query, and at its end a 'part' for each host that did not report (and 'leave' when none did). */
  private probeTick(key: string, l: Listener, now: number, out: ListenerActions): void {
    const p = l.probe!;
    if (p.repeatAt !== undefined && now >= p.repeatAt) {
      p.repeatAt = undefined;
      if (this.isQuerier) out.queries.push(this.query(l.group, this.t.llqiMs / 2));
    }
    if (now < p.deadline) return;
    l.probe = undefined;
    for (const [h, t] of l.hosts) {
      if (t >= p.since) continue;
      l.hosts.delete(h);
      out.events.push({ kind: 'part', group: l.group, ifname: this.ifname, from: h });
    }
    if (l.hosts.size > 0) return;
    this.listeners.delete(key);
    this.log?.(`${this.ifname}: nobody answered for ${formatIPv6(l.group)}, no listener left`);
    out.events.push({ kind: 'leave', group: l.group, ifname: this.ifname, from: l.lastReporter, reason: 'left' });
  }

  private onJoin(group: Buffer, from: string, v1: boolean, now: number, out: ListenerActions, lacking = false): void {
    const key = group.toString('hex');
    let l = this.listeners.get(key);
    const refresh = l !== undefined;
    if (!l) {
      if (this.listeners.size >= MAX_GROUPS_PER_IFACE) {
        this.log?.(`${this.ifname}: ${MAX_GROUPS_PER_IFACE} groups tracked already, ignoring ${formatIPv6(group)}`);
        return;
      }
      l = { group, expiresAt: 0, lastReporter: from, queryAt: [], hosts: new Map(), v1: false };
      this.listeners.set(key, l);
    }
    l.expiresAt = now + this.t.maliMs;
    l.lastReporter = from;
    const answer = l.probe !== undefined && l.hosts.has(from);
    l.hosts.set(from, now);
    if (v1) l.v1 = true;
    l.checkDeadline = undefined;
    l.checkFrom = undefined;
    l.queryAt = [];
    if (v1) l.probe = undefined;
    const ev: MldEvent = answer ? { kind: 'join', group, ifname: this.ifname, from, refresh, answer } : { kind: 'join', group, ifname: this.ifname, from, refresh };
    if (lacking) ev.lacking = true;
    out.events.push(ev);
  }

  private onLeave(group: Buffer, from: string, now: number, out: ListenerActions): void {
    const key = group.toString('hex');
    const l = this.listeners.get(key);
    if (!l) return; // a leave for a group nobody was known to hear changes nothing
    l.hosts.delete(from);
    if (!l.v1 && this.opts.explicitTracking !== false) {
      // Hosts silent for a whole listener interval are gone (crashed without leaving).
      for (const [h, t] of l.hosts) if (now - t > this.t.maliMs) l.hosts.delete(h);
      if (l.hosts.size > 0) {
        // Others are known to listen: nothing to ask.
        out.events.push({ kind: 'part', group: l.group, ifname: this.ifname, from });
        return;
      }
      // The last known listener left: gone now, no query round.
      this.listeners.delete(key);
      this.log?.(`${this.ifname}: ${from} left ${formatIPv6(l.group)}, the last listener`);
      out.events.push({ kind: 'part', group: l.group, ifname: this.ifname, from });
      out.events.push({ kind: 'leave', group: l.group, ifname: this.ifname, from, reason: 'left' });
      return;
    }
    if (l.checkDeadline !== undefined) return; // already being checked
    l.checkFrom = from;
    if (this.isQuerier) {
      out.queries.push(this.query(l.group, this.t.llqiMs / 2));
      l.queryAt = [now + this.t.llqiMs / 2];
      l.checkDeadline = now + this.t.llqiMs + 200;
    } else {
      l.checkDeadline = now + 2 * this.t.llqiMs + 500;
    }
    this.log?.(`${this.ifname}: ${from} left ${formatIPv6(l.group)}, checking for other listeners`);
    out.events.push({ kind: 'part', group: l.group, ifname: this.ifname, from });
  }

  private query(group: Buffer | undefined, maxRespMs: number): MldQuery {
    return { group, maxRespMs, qrv: this.t.rv, qqicSec: this.t.qiMs / 1000 };
  }

  private refreshOwn(now: number): void {
    this.ownRefreshedAt = now;
    const own = new Set<string>();
    let ll: Buffer | undefined;
    for (const address of this.opts.ownAddresses()) {
      const b = tryParse(address.replace(/%.*$/, ''));
      if (!b) continue;
      own.add(formatIPv6(b));
      if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80 && (!ll || Buffer.compare(b, ll) < 0)) ll = b;
    }
    this.own = own;
    if (ll && !(this.linkLocal && ll.equals(this.linkLocal))) this.log?.(`${this.ifname}: our link-local address is ${formatIPv6(ll)}`);
    this.linkLocal = ll;
  }
}

function tryParse(s: string): Buffer | undefined {
  try {
    const b = parseIPv6(s);
    return b.length === 16 ? b : undefined;
  } catch {
    return undefined;
  }
}
