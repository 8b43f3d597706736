/**
 * Join reports sent at once (docs/protocol.md#mld-and-when-a-share-sends): a receiver that may open a raw
 * ICMPv6 socket sends the MLDv2 report for the groups it just joined itself, right after the kernel
 * joined them, instead of waiting for the kernel's.
 *
 * Why: Linux sends its state-change report from delayed work, 2 jiffies after the interface's last
 * membership change (8 ms at HZ=250; 20 ms at HZ=100), and a share sends an object only once it has heard
 * a report. A sync that learns what to ask for next only from the object before (the top tree, then a
 * directory's tree, a file's entry, its chunk: the C format names children by hash) waits that delay once
 * per step. Captured in the lab with one changed file in a 5,000-file tree, each report went out 8-20 ms
 * after its join and the share answered 1-5 ms after the report.
 *
 * The kernel still sends its own report (a share takes the second as a refresh), so nothing depends on
 * this one: a send that fails is ignored, and a receiver that cannot open the socket (no CAP_NET_RAW, no
 * addon, LCSYNC_NO_JOIN_REPORTS=1) simply waits for the kernel as before. Leaves are never reported from
 * here: only the kernel knows whether another socket on the host still holds the group, and a report that
 * the host left while it has not would stop a share sending to that other socket.
 *
 * The records are what the kernel sends for an any-source join (RFC 3810 section 6.1: TO_EX with no
 * sources), to ff02::16 from the interface's link-local address with hop limit 1 and a router alert
 * (icmp6.ts sets those on the socket).
 */
import { Icmp6Socket, icmp6UnavailableReason } from './icmp6.js';
import { encodeReport, MAX_REPORT_RECORDS, MLD_QUERY, RecordType, type RecordTypeNumber } from '../wire/mld.js';

const ALL_MLDV2_ROUTERS = 'ff02::16';

export class JoinReporter {
  /** Reports sent and records in them, join and lacking alike (for tests and the benchmark's counters). */
  readonly stats = { reports: 0, records: 0, failures: 0 };

  private constructor(private readonly sockets: Map<string, Icmp6Socket>) {}

  /**
   * A reporter for `ifnames`, or undefined with the reason when this process cannot send reports (the
   * caller goes on without: the kernel's reports are enough, only later).
   */
  static open(ifnames: readonly string[]): { reporter?: JoinReporter; reason?: string } {
    if (process.env.LCSYNC_NO_JOIN_REPORTS === '1') return { reason: 'LCSYNC_NO_JOIN_REPORTS=1' };
    const missing = icmp6UnavailableReason();
    if (missing) return { reason: missing };
    const sockets = new Map<string, Icmp6Socket>();
    try {
      for (const ifname of ifnames) {
        // Sending only: no groups joined, and the filter passes queries alone, which are ignored (the
        // socket must pass some type; queries come every couple of minutes at most).
        sockets.set(
          ifname,
          Icmp6Socket.open({ ifname, groups: [], types: [MLD_QUERY], onMessage: () => undefined, onError: () => undefined }),
        );
      }
    } catch (err) {
      for (const s of sockets.values()) s.close();
      const code = (err as NodeJS.ErrnoException).code;
      return { reason: code === 'EPERM' ? 'no CAP_NET_RAW' : (err as Error).message };
    }
    return { reporter: new JoinReporter(sockets) };
  }

  /** Report `groups` (16 bytes each) joined on `ifname`, in as few messages as they fit. */
  joined(ifname: string, groups: readonly Uint8Array[]): void {
    this.send(ifname, groups, RecordType.CHANGE_TO_EXCLUDE);
  }

  private send(ifname: string, groups: readonly Uint8Array[], recordType: RecordTypeNumber): void {
    const socket = this.sockets.get(ifname);
    if (!socket || socket.closed || groups.length === 0) return;
    for (let i = 0; i < groups.length; i += MAX_REPORT_RECORDS) {
      const records = groups.slice(i, i + MAX_REPORT_RECORDS).map((group) => ({ recordType, group }));
      try {
        socket.send(ALL_MLDV2_ROUTERS, encodeReport(records));
        this.stats.reports++;
        this.stats.records += records.length;
      } catch {
        // A full socket buffer or an interface going away: the kernel's own report follows anyway.
        this.stats.failures++;
      }
    }
  }

  /**
   * Report on `ifname` that this host, joined to `groups`, still lacks symbols of their objects: ALLOW_NEW_SOURCES
   * records with no sources. RFC 3810 routers and snooping switches find nothing to change in them (no source is
   * added to an any-source membership); an lcsync share reads them as "send the repair symbols now" (share/stream.ts).
   */
  lacking(ifname: string, groups: readonly Uint8Array[]): void {
    this.send(ifname, groups, RecordType.ALLOW_NEW_SOURCES);
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }
}
