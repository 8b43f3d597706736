/**
 * The status document of a running share: what Share.status() reports, what the share service
 * adds (follow, cache), what the status socket serves (ops/ipc.ts) and what `lcsync status`
 * prints (as JSON, or read for its human form). One shape for all of them; its JSON is part of
 * the CLI's output, so fields are only ever added.
 */

/** One object being sent on one interface. */
export interface StreamStatus {
  group: string;
  ifname: string;
  /** As sent: a chunk, or an object with OTI (tree parts, directories, symlinks, signatures). */
  kind: 'chunk' | 'tree';
  name: string;
  datagrams: number;
  bytes: number;
  startedAt: number;
}

export interface ShareStatus {
  pid: number;
  startedAt: number;
  uptimeSec: number;
  interfaces: string[];
  roots: { path: string; shareName: string; type: string; hash: string }[];
  objects: number;
  /** The RaptorQ symbol size of everything it sends: 1024, or 1368 (share --symbol-size, lcsync receivers only). */
  symbolSize: number;
  listeners: { group: string; ifname: string }[];
  streams: StreamStatus[];
  datagrams: number;
  bytes: number;
  streamsStarted: number;
  /** Gone notices sent to receivers still fetching objects a re-index dropped. */
  noticesSent: number;
  /**
   * Mirrors following each share name (`sync --follow`), per interface: the hosts reporting the
   * name's watch group, as far as MLD shows them (share/announce.ts). Names nobody follows are left out.
   */
  followers: { shareName: string; ifname: string; hosts: number }[];
  /** Root announces sent to those mirrors. */
  announcesSent: number;
  /** Bytes per second over the last few seconds and since start. */
  rateNow: number;
  rateAvg: number;
  /** Added by the share service when it follows the files (ops/service.ts). */
  follow?: {
    events: boolean;
    rescanSec: number;
    reindexes: number;
    last?: { at: number; reason: string; changed: boolean; objects: number; seconds: number; roots: { hash: string; shareName: string; type: string; path: string }[] };
  };
  /**
   * Redundant shares (share/cooperation.ts), when cooperating: our share id, the co-serving shares
   * heard, heartbeats sent, and joins left to a co-server that owns their group.
   */
  cooperation?: { id: string; peers: { id: string; addresses: string[]; ifnames: string[]; lastSeenMsAgo: number }[]; heartbeatsSent: number; joinsDeferred: number };
  /** Added by the share service: its tree cache (ops/service.ts, index/cache.ts). */
  cache?: { dir: string | null; hits: number; misses: number; writes: number; corrupt: number };
}

/** How long byte counts are kept for the current rate. */
const RATE_WINDOW_MS = 5000;

/** Bytes sent over time: the current rate (over the last few seconds) and the average since start. */
export class RateMeter {
  private readonly samples: { t: number; bytes: number }[] = [];

  constructor(readonly startedAt: number) {}

  /** Note the bytes sent so far at `now` (every second or so, and at every status()). */
  sample(now: number, bytes: number): void {
    this.samples.push({ t: now, bytes });
    while (this.samples.length > 2 && now - this.samples[0]!.t > RATE_WINDOW_MS) this.samples.shift();
  }

  /** Sample, then rates in bytes per second. */
  rates(now: number, bytes: number): { rateNow: number; rateAvg: number; uptimeSec: number } {
    this.sample(now, bytes);
    const first = this.samples[0]!;
    const dt = (now - first.t) / 1000;
    const uptimeSec = (now - this.startedAt) / 1000;
    return { rateNow: dt > 0 ? (bytes - first.bytes) / dt : 0, rateAvg: uptimeSec > 0 ? bytes / uptimeSec : 0, uptimeSec };
  }
}
