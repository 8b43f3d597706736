/**
 * The live MLD listener of a share: which multicast groups have listeners on which interface
 * (docs/protocol.md#mld-and-when-a-share-sends). Wire parsing lives in mld.ts; this file owns the sockets, the timers and the
 * querier role.
 *
 * API: `MldWatcher.open(opts)` -> watcher emitting 'join' / 'part' / 'leave' (MldEvent); `activeGroups(ifname?)`
 * lists the groups with listeners (not `listeners()`, which EventEmitter owns); `querierState(ifname)`; `close()`.
 *
 * How it sees reports (one raw ICMPv6 socket per interface, icmp6.ts over our addon's native/icmp6.c, needs
 * CAP_NET_RAW; without the addon MLD cannot run and open() fails with a one-line PERMISSION error):
 *  - SO_BINDTODEVICE ties the socket to its interface, so every message's interface is known; an ICMPv6 filter
 *    passes only types 130/131/132/143.
 *  - It joins ff02::16 (where MLDv2 reports go) and ff02::2 (where MLDv1 dones go): without a membership the
 *    host stack drops them before any socket sees them.
 *  - MLDv1 reports (only sent where an MLDv1 querier forced hosts into v1 mode) go to the group address itself.
 *    Joining every group a share could serve is not practical, so the first socket also registers as the
 *    namespace's multicast-routing socket (MRT6_INIT, as pim6sd or mrd6 do). That makes the kernel deliver every
 *    MLD message carrying a router alert, whatever group it is sent to. Nothing is routed: no multicast
 *    interfaces are added. Only one such socket may exist per network namespace; if another program holds it
 *    (EADDRINUSE) or the kernel lacks IPv6 multicast routing, MLDv1 reports stay invisible (logged), while MLDv2
 *    and MLDv1 dones still work.
 *  - Messages arrive without the IPv6 header; the addon reports the sender's address and arrival interface.
 *
 * Listener state per (interface, group) follows RFC 3810 section 7 in its any-source form:
 *  - a join or refresh (IS_EX, TO_EX, ALLOW, v1 report) emits 'join' (every time: the share dedups, and a
 *    refresh is a cue to restart a stalled stream) and sets the listener timer to listenerTimeoutSec;
 *  - explicit tracking (default): MLDv2 hosts never suppress each other's reports, so each group keeps the set
 *    of hosts that reported it. A leave from one of several emits 'part' and nothing else; a leave from the last
 *    one emits 'part' and 'leave' at once, with no query (fast leave: a stream stops within one report, and no
 *    query traffic per leave). Hosts that have not reported for a listener interval drop out of the set.
 *  - where an MLDv1 report was seen for a group (v1 hosts do suppress), or with explicitTracking off,
 *    a leave (TO_IN/IS_IN with no sources, BLOCK, v1 done) starts a check: as querier we send the
 *    address-specific query twice (now and after half of lastListenerQueryMs, both with max response
 *    lastListenerQueryMs/2), and if no report for the group comes within lastListenerQueryMs (+ 200 ms margin) the
 *    group is gone: 'leave'. When not querier we cannot ask, so the deadline is two of a standard querier's last
 *    listener intervals (2 x lastListenerQueryMs + 500 ms); a listener that remains re-reports on the other
 *    querier's query, or re-joins when its stream stalls;
 *  - a listener timer that expires (nobody answered the general queries) emits 'leave' too.
 *
 * Querier (opts.querier): a general query at start and every queryIntervalSec; RFC 3810 election: a query from a
 * lower link-local address makes us stop until that querier has been silent for the Other Querier Present
 * Interval (robustness x QI + QRI/2), then we resume with a general query at once.
 *
 * Queries are sent to ff02::1 with hop limit 1 and a router alert, from our link-local address. Address-specific
 * queries also go to ff02::1 rather than to the group (RFC 3810 section 5.1.15 says the group): the kernel picks
 * the source address by destination scope, and for an ff1e:: destination it would pick a global or ULA address
 * when the interface has one, and hosts ignore queries from non-link-local sources. Hosts (and snooping bridges)
 * read the group from the query body, not from the destination, so ff02::1 loses nothing.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { LcsyncError } from '../base/errors.js';
import { formatIPv6, parseIPv6 } from '../wire/address.js';
import { Icmp6Socket, icmp6UnavailableReason } from './icmp6.js';
import { decodeMld, encodeQuery, listenerEvents, MLD_QUERY, MLDV1_DONE, MLDV1_REPORT, MLDV2_REPORT } from '../wire/mld.js';

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
  /** leave: 'left' = leave message then silence; 'expired' = listener timer ran out. */
  reason?: 'left' | 'expired';
}

export interface MldListenerInfo {
  group: string;
  ifname: string;
  expiresInSec: number;
  lastReporter: string;
}

export interface MldWatcherOptions {
  ifnames: string[];
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
  logger?: { verbose(msg: string): void };
}

const ALL_NODES = 'ff02::1';
/** ff02::16 is where MLDv2 reports go, ff02::2 where MLDv1 dones go. */
const MLD_GROUPS = ['ff02::16', 'ff02::2'];

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
}

interface Iface {
  ifname: string;
  ifindex: number;
  socket: Icmp6Socket;
  closed: boolean;
  /** Our own IPv6 addresses on this interface (normalised text), for ignoring our own messages. */
  own: Set<string>;
  linkLocal?: Buffer;
  ownRefreshedAt: number;
  listeners: Map<string, Listener>;
  nextGeneralAt: number;
  /** Another querier that won the election, and until when we consider it present. */
  otherQuerier?: { addr: string; until: number };
}

const TICK_MS = 100;
/** Any host on the link can report any group: bound the state one interface may hold. */
const MAX_GROUPS_PER_IFACE = 65536;
const OWN_REFRESH_MS = 5000;

export class MldWatcher extends EventEmitter {
  private readonly ifaces: Iface[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly log: (msg: string) => void;
  private readonly qiMs: number;
  private readonly qriMs: number;
  private readonly maliMs: number;
  private readonly llqiMs: number;
  private readonly rv: number;
  private closed = false;

  private constructor(private readonly opts: MldWatcherOptions) {
    super();
    const qi = opts.queryIntervalSec ?? 125;
    if (!(qi > 0)) throw new LcsyncError('USAGE', 'MLD query interval must be positive');
    this.rv = Math.min(7, Math.max(1, Math.floor(opts.robustness ?? 2)));
    this.qiMs = qi * 1000;
    this.qriMs = Math.max(100, Math.min(opts.queryResponseMs ?? 10_000, this.qiMs / 2));
    this.maliMs = opts.listenerTimeoutSec !== undefined ? opts.listenerTimeoutSec * 1000 : this.rv * this.qiMs + this.qriMs;
    this.llqiMs = Math.max(100, opts.lastListenerQueryMs ?? 1000);
    this.log = (m) => opts.logger?.verbose(`mld: ${m}`);
    this.timer = setInterval(() => this.tick(Date.now()), TICK_MS);
  }

  /**
   * Open one raw ICMPv6 socket per interface. Throws LcsyncError PERMISSION without CAP_NET_RAW or without the
   * lcsync addon (nothing else can open a raw socket).
   */
  static async open(opts: MldWatcherOptions): Promise<MldWatcher> {
    if (opts.ifnames.length === 0) throw new LcsyncError('USAGE', 'MLD watcher needs at least one interface');
    const missing = icmp6UnavailableReason();
    if (missing !== undefined) {
      throw new LcsyncError('PERMISSION', `lcsync share cannot watch MLD: ${missing}; reinstall lcsync (npm rebuild lcsync builds the ` +
        'addon from source), or use --push (no MLD: every object in a loop)');
    }
    const w = new MldWatcher(opts);
    try {
      let mrouteHeld = false;
      for (const ifname of opts.ifnames) {
        const iface = w.openIface(ifname);
        w.ifaces.push(iface);
        if (!mrouteHeld) mrouteHeld = w.tryMroute(iface);
      }
      if (!mrouteHeld) w.log('MLDv1 reports (sent only under an MLDv1 querier) will not be seen');
    } catch (err) {
      await w.close();
      throw err;
    }
    w.tick(Date.now());
    return w;
  }

  private openIface(ifname: string): Iface {
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(ifname)) throw new LcsyncError('USAGE', `not an interface name: ${ifname}`);
    const ifindex = interfaceIndex(ifname);
    // The socket delivers from the next event loop turn on; `iface` is set before that.
    let iface: Iface | undefined;
    let socket: Icmp6Socket;
    try {
      socket = Icmp6Socket.open({
        ifname,
        groups: MLD_GROUPS,
        types: [MLD_QUERY, MLDV1_REPORT, MLDV1_DONE, MLDV2_REPORT],
        onMessage: (buf, source, arrivedOn) => {
          // Bound to the interface, so any other index would be a kernel surprise: ignore rather than misattribute.
          if (iface && arrivedOn === iface.ifindex) this.onMessage(iface, buf, source, Date.now());
        },
        onError: (err) => {
          this.log(`socket on ${ifname} failed: ${err.message}`);
          if (iface) iface.closed = true;
        },
      });
    } catch (err) {
      throw socketError(err, ifname);
    }
    iface = {
      ifname,
      ifindex,
      socket,
      closed: false,
      own: new Set(),
      ownRefreshedAt: 0,
      listeners: new Map(),
      nextGeneralAt: 0,
    };
    this.refreshOwn(iface, Date.now());
    this.log(`watching MLD on ${ifname} (index ${ifindex})`);
    return iface;
  }

  private tryMroute(iface: Iface): boolean {
    try {
      iface.socket.mrouteInit();
      return true;
    } catch (err) {
      this.log(`cannot register for MLDv1 reports on ${iface.ifname} (MRT6_INIT: ${(err as Error).message})`);
      return false;
    }
  }

  /** Groups with listeners now, optionally on one interface only. (Not `listeners()`: EventEmitter has that name.) */
  activeGroups(ifname?: string): MldListenerInfo[] {
    const now = Date.now();
    const out: MldListenerInfo[] = [];
    for (const iface of this.ifaces) {
      if (ifname !== undefined && iface.ifname !== ifname) continue;
      for (const l of iface.listeners.values()) {
        const until = Math.min(l.expiresAt, l.checkDeadline ?? Infinity);
        out.push({
          group: formatIPv6(l.group),
          ifname: iface.ifname,
          expiresInSec: Math.max(0, (until - now) / 1000),
          lastReporter: l.lastReporter,
        });
      }
    }
    return out;
  }

  /** Whether we act as querier on an interface, and the querier that outranks us if any. */
  querierState(ifname: string): { querier: boolean; otherQuerier?: string } | undefined {
    const iface = this.ifaces.find((i) => i.ifname === ifname);
    if (!iface) return undefined;
    return { querier: this.isQuerier(iface), otherQuerier: iface.otherQuerier?.addr };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const iface of this.ifaces) {
      if (!iface.closed) {
        iface.closed = true;
        try {
          iface.socket.close();
        } catch {
          // Closing is best effort; the descriptor goes with the process anyway.
        }
      }
      iface.listeners.clear();
    }
  }

  // -------------------------------------------------------------------------------------------------------

  private isQuerier(iface: Iface): boolean {
    return this.opts.querier && iface.otherQuerier === undefined && iface.linkLocal !== undefined && !iface.closed;
  }

  private refreshOwn(iface: Iface, now: number): void {
    iface.ownRefreshedAt = now;
    const own = new Set<string>();
    let ll: Buffer | undefined;
    for (const a of networkInterfaces()[iface.ifname] ?? []) {
      if (a.family !== 'IPv6') continue;
      const b = tryParse(a.address.replace(/%.*$/, ''));
      if (!b) continue;
      own.add(formatIPv6(b));
      if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80 && (!ll || Buffer.compare(b, ll) < 0)) ll = b;
    }
    iface.own = own;
    if (ll && !(iface.linkLocal && ll.equals(iface.linkLocal))) this.log(`${iface.ifname}: our link-local address is ${formatIPv6(ll)}`);
    iface.linkLocal = ll;
  }

  private tick(now: number): void {
    if (this.closed) return;
    for (const iface of this.ifaces) {
      if (iface.closed) continue;
      if (!iface.linkLocal || now - iface.ownRefreshedAt >= OWN_REFRESH_MS) this.refreshOwn(iface, now);
      if (this.opts.querier) {
        if (iface.otherQuerier && now >= iface.otherQuerier.until) {
          this.log(`${iface.ifname}: querier ${iface.otherQuerier.addr} went quiet, querying again`);
          iface.otherQuerier = undefined;
          iface.nextGeneralAt = now;
        }
        if (this.isQuerier(iface) && now >= iface.nextGeneralAt) {
          iface.nextGeneralAt = now + this.qiMs;
          this.sendQuery(iface, undefined, this.qriMs);
        }
      }
      for (const [key, l] of iface.listeners) {
        while (l.queryAt.length > 0 && l.queryAt[0]! <= now) {
          l.queryAt.shift();
          if (this.isQuerier(iface)) this.sendQuery(iface, l.group, this.llqiMs / 2);
        }
        if (l.checkDeadline !== undefined && now >= l.checkDeadline) {
          iface.listeners.delete(key);
          this.emitEvent({ kind: 'leave', group: l.group, ifname: iface.ifname, from: l.checkFrom ?? l.lastReporter, reason: 'left' });
        } else if (now >= l.expiresAt) {
          iface.listeners.delete(key);
          this.emitEvent({ kind: 'leave', group: l.group, ifname: iface.ifname, from: l.lastReporter, reason: 'expired' });
        }
      }
    }
  }

  private onMessage(iface: Iface, buf: Buffer, source: string, now: number): void {
    if (this.closed || iface.closed) return;
    const msg = decodeMld(buf);
    const src = tryParse(source);
    if (!msg || !src) return;
    const from = formatIPv6(src);
    if (!iface.own.has(from) && src[0] === 0xfe && now - iface.ownRefreshedAt > 1000) this.refreshOwn(iface, now);
    const self = iface.own.has(from);

    if (msg.type === 'query') {
      // RFC 3810 section 5.1.14: queries must come from a link-local address; our own loop back to us.
      if (self || !(src[0] === 0xfe && (src[1]! & 0xc0) === 0x80)) return;
      // For a non-querier any querier is "the querier"; a querier yields only to a lower address (RFC 3810 7.6.1).
      const outranks = !this.opts.querier || !iface.linkLocal || Buffer.compare(src, iface.linkLocal) < 0;
      if (outranks) {
        const qrv = msg.qrv !== undefined && msg.qrv > 0 ? msg.qrv : this.rv;
        const qiMs = msg.qqicSec !== undefined && msg.qqicSec > 0 ? msg.qqicSec * 1000 : this.qiMs;
        const until = now + qrv * qiMs + msg.maxRespMs / 2;
        if (iface.otherQuerier?.addr !== from) {
          this.log(`${iface.ifname}: MLDv${msg.version} querier ${from} present` +
            (this.opts.querier ? ' (lower address than ours: we stop querying)' : ''));
        }
        iface.otherQuerier = { addr: from, until };
      }
      // RFC 3810 section 7.6.2: a non-querier lowers a group's timer when the querier asks about that group.
      const l = iface.listeners.get(msg.group.toString('hex'));
      if (l && !this.isQuerier(iface) && !msg.sFlag && msg.group.some((x) => x !== 0)) {
        const qrv = msg.qrv !== undefined && msg.qrv > 0 ? msg.qrv : this.rv;
        const deadline = now + qrv * msg.maxRespMs + 200;
        if (l.checkDeadline === undefined || deadline < l.checkDeadline) {
          const started = l.checkDeadline === undefined;
          l.checkDeadline = deadline;
          l.checkFrom ??= from;
          if (started) this.emitEvent({ kind: 'part', group: l.group, ifname: iface.ifname, from: l.checkFrom });
        }
      }
      return;
    }

    if (self && !this.opts.loopback) return;
    if (msg.type === 'v1report' || msg.type === 'v1done') {
      this.log(`${iface.ifname}: MLDv1 ${msg.type === 'v1report' ? 'report' : 'done'} for ${formatIPv6(msg.group)} from ${from}`);
    }
    for (const ev of listenerEvents(msg)) {
      const key = ev.group.toString('hex');
      let l = iface.listeners.get(key);
      if (ev.kind === 'join') {
        const refresh = l !== undefined;
        if (!l) {
          if (iface.listeners.size >= MAX_GROUPS_PER_IFACE) {
            this.log(`${iface.ifname}: ${MAX_GROUPS_PER_IFACE} groups tracked already, ignoring ${formatIPv6(ev.group)}`);
            continue;
          }
          l = { group: ev.group, expiresAt: 0, lastReporter: from, queryAt: [], hosts: new Map(), v1: false };
          iface.listeners.set(key, l);
        }
        l.expiresAt = now + this.maliMs;
        l.lastReporter = from;
        l.hosts.set(from, now);
        if (msg.type === 'v1report') l.v1 = true;
        l.checkDeadline = undefined;
        l.checkFrom = undefined;
        l.queryAt = [];
        this.emitEvent({ kind: 'join', group: ev.group, ifname: iface.ifname, from, refresh });
      } else {
        if (!l) continue; // a leave for a group nobody was known to hear changes nothing
        l.hosts.delete(from);
        if (!l.v1 && this.opts.explicitTracking !== false) {
          // Hosts silent for a whole listener interval are gone (crashed without leaving).
          for (const [h, t] of l.hosts) if (now - t > this.maliMs) l.hosts.delete(h);
          if (l.hosts.size > 0) {
            // Others are known to listen: nothing to ask.
            this.emitEvent({ kind: 'part', group: l.group, ifname: iface.ifname, from });
            continue;
          }
          // The last known listener left: gone now, no query round.
          iface.listeners.delete(key);
          this.log(`${iface.ifname}: ${from} left ${formatIPv6(l.group)}, the last listener`);
          this.emitEvent({ kind: 'part', group: l.group, ifname: iface.ifname, from });
          this.emitEvent({ kind: 'leave', group: l.group, ifname: iface.ifname, from, reason: 'left' });
          continue;
        }
        if (l.checkDeadline !== undefined) continue; // already being checked
        l.checkFrom = from;
        if (this.isQuerier(iface)) {
          this.sendQuery(iface, l.group, this.llqiMs / 2);
          l.queryAt = [now + this.llqiMs / 2];
          l.checkDeadline = now + this.llqiMs + 200;
        } else {
          l.checkDeadline = now + 2 * this.llqiMs + 500;
        }
        this.log(`${iface.ifname}: ${from} left ${formatIPv6(l.group)}, checking for other listeners`);
        this.emitEvent({ kind: 'part', group: l.group, ifname: iface.ifname, from });
      }
    }
  }

  private sendQuery(iface: Iface, group: Buffer | undefined, maxRespMs: number): void {
    const q = encodeQuery({ group, maxRespMs, qrv: this.rv, qqicSec: this.qiMs / 1000 });
    const what = group ? `query for ${formatIPv6(group)}` : 'general query';
    try {
      iface.socket.send(ALL_NODES, q);
      this.log(`${iface.ifname}: sent ${what}`);
    } catch (err) {
      this.log(`${iface.ifname}: sending ${what} failed: ${(err as Error).message}`);
    }
  }

  private emitEvent(ev: MldEvent): void {
    this.emit(ev.kind, ev);
  }
}

function interfaceIndex(ifname: string): number {
  try {
    const n = Number.parseInt(readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim(), 10);
    if (Number.isInteger(n) && n > 0) return n;
  } catch {
    // /sys may show another namespace's view (a process moved with setns); fall back to getifaddrs.
  }
  const entry = (networkInterfaces()[ifname] ?? []).find((a) => a.family === 'IPv6' && a.scopeid);
  if (entry?.scopeid) return entry.scopeid;
  throw new LcsyncError('USAGE', `no network interface ${ifname} with IPv6`);
}

function tryParse(s: string): Buffer | undefined {
  try {
    const b = parseIPv6(s);
    return b.length === 16 ? b : undefined;
  } catch {
    return undefined;
  }
}

function socketError(err: unknown, ifname: string): LcsyncError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/operation not permitted|permission denied|EPERM|EACCES/i.test(msg)) {
    return new LcsyncError(
      'PERMISSION',
      'lcsync share needs CAP_NET_RAW to watch MLD: run it as root, grant the capability to a dedicated node binary ' +
        '(`setcap cap_net_raw+ep`) or with AmbientCapabilities=CAP_NET_RAW under systemd, or use --push (no MLD: every object in a loop)',
      { cause: err },
    );
  }
  if (/no such device/i.test(msg)) return new LcsyncError('USAGE', `no network interface ${ifname}`, { cause: err });
  return new LcsyncError('IO', `cannot watch MLD on ${ifname}: ${msg}`, { cause: err });
}
