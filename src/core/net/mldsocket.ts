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
 * The listener and querier state of each interface (RFC 3810 section 7: joins, leaves, explicit tracking,
 * last-listener queries, expiry, querier election) is a pure ListenerTable (listeners.ts); this class feeds it the
 * decoded messages and its 100 ms ticks, emits the events it gives and sends the queries it asks for.
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
import { formatIPv6 } from '../wire/address.js';
import { Icmp6Socket, icmp6UnavailableReason } from './icmp6.js';
import { decodeMld, encodeQuery, MLD_QUERY, MLDV1_DONE, MLDV1_REPORT, MLDV2_REPORT } from '../wire/mld.js';
import {
  ListenerTable,
  listenerTimers,
  type ListenerActions,
  type ListenerPolicy,
  type ListenerTimers,
  type MldListenerInfo,
  type MldQuery,
} from './listeners.js';

export type { MldEvent, MldListenerInfo } from './listeners.js';

export interface MldWatcherOptions extends ListenerPolicy {
  ifnames: string[];
  /** `enabled('verbose')` false (the CLI's logger below -v): no line is made at all. */
  logger?: { verbose(msg: string): void; enabled?(level: 'verbose'): boolean };
}

const ALL_NODES = 'ff02::1';
/** ff02::16 is where MLDv2 reports go, ff02::2 where MLDv1 dones go. */
const MLD_GROUPS = ['ff02::16', 'ff02::2'];

interface Iface {
  ifname: string;
  ifindex: number;
  socket: Icmp6Socket;
  closed: boolean;
  table: ListenerTable;
}

const TICK_MS = 100;

export class MldWatcher extends EventEmitter {
  private readonly ifaces: Iface[] = [];
  private readonly timer: NodeJS.Timeout;
  /** Absent when verbose lines go nowhere: called as log?.(...), so their text is not even made then. */
  private readonly log: ((msg: string) => void) | undefined;
  private readonly timers: ListenerTimers;
  private closed = false;

  private constructor(private readonly opts: MldWatcherOptions) {
    super();
    this.timers = listenerTimers(opts);
    const logger = opts.logger;
    this.log = logger && logger.enabled?.('verbose') !== false ? (m) => logger.verbose(`mld: ${m}`) : undefined;
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
      if (!mrouteHeld) w.log?.('MLDv1 reports (sent only under an MLDv1 querier) will not be seen');
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
          this.log?.(`socket on ${ifname} failed: ${err.message}`);
          if (iface) iface.closed = true;
        },
      });
    } catch (err) {
      throw socketError(err, ifname);
    }
    const table = new ListenerTable({
      ...this.opts,
      ifname,
      timers: this.timers,
      ownAddresses: () => (networkInterfaces()[ifname] ?? []).filter((a) => a.family === 'IPv6').map((a) => a.address),
      log: this.log,
    }, Date.now());
    iface = { ifname, ifindex, socket, closed: false, table };
    this.log?.(`watching MLD on ${ifname} (index ${ifindex})`);
    return iface;
  }

  private tryMroute(iface: Iface): boolean {
    try {
      iface.socket.mrouteInit();
      return true;
    } catch (err) {
      this.log?.(`cannot register for MLDv1 reports on ${iface.ifname} (MRT6_INIT: ${(err as Error).message})`);
      return false;
    }
  }

  /** Groups with listeners now, optionally on one interface only. (Not `listeners()`: EventEmitter has that name.) */
  activeGroups(ifname?: string): MldListenerInfo[] {
    const now = Date.now();
    const out: MldListenerInfo[] = [];
    for (const iface of this.ifaces) {
      if (ifname !== undefined && iface.ifname !== ifname) continue;
      out.push(...iface.table.activeGroups(now));
    }
    return out;
  }

  /** Ask who still listens to `group` on `ifname` (ListenerTable.probe): hosts that do not answer get 'part', and 'leave' when none does. */
  probe(ifname: string, group: Buffer): void {
    const iface = this.ifaces.find((i) => i.ifname === ifname);
    if (!iface || iface.closed || this.closed) return;
    this.act(iface, iface.table.probe(group, Date.now()));
  }

  /** Whether we act as querier on an interface, and the querier that outranks us if any. */
  querierState(ifname: string): { querier: boolean; otherQuerier?: string } | undefined {
    const iface = this.ifaces.find((i) => i.ifname === ifname);
    if (!iface) return undefined;
    return { querier: iface.table.isQuerier && !iface.closed, otherQuerier: iface.table.otherQuerierAddress };
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
      iface.table.clear();
    }
  }

  // -------------------------------------------------------------------------------------------------------

  private tick(now: number): void {
    if (this.closed) return;
    for (const iface of this.ifaces) {
      if (!iface.closed) this.act(iface, iface.table.tick(now));
    }
  }

  private onMessage(iface: Iface, buf: Buffer, source: string, now: number): void {
    if (this.closed || iface.closed) return;
    const msg = decodeMld(buf);
    if (msg) this.act(iface, iface.table.onMessage(msg, source, now));
  }

  /** Send the queries the table asks for, then emit its events (none once a listener has closed the watcher). */
  private act(iface: Iface, actions: ListenerActions): void {
    for (const q of actions.queries) this.sendQuery(iface, q);
    for (const ev of actions.events) {
      if (iface.closed) return;
      this.emit(ev.kind, ev);
    }
  }

  private sendQuery(iface: Iface, query: MldQuery): void {
    const q = encodeQuery(query);
    const what = () => (query.group ? `query for ${formatIPv6(query.group)}` : 'general query');
    try {
      iface.socket.send(ALL_NODES, q);
      this.log?.(`${iface.ifname}: sent ${what()}`);
    } catch (err) {
      this.log?.(`${iface.ifname}: sending ${what()} failed: ${(err as Error).message}`);
    }
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
