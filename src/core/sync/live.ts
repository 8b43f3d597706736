/**
 * A live mirror (`lcsync sync --follow`, docs/protocol.md#live-mirrors): sync a share name, then
 * keep the destination current until stopped. Between syncs the mirror holds one membership, the
 * name's watch group (wire/announce.ts), and nothing else: the share announces each new root of
 * the name there as soon as it re-indexes (share/announce.ts), and the mirror syncs again, pinned
 * to that root (no wait for a second answer). Each sync is an ordinary one (sync.ts): atomic per
 * file, --delete and --exec as asked, in a session of its own that is closed afterwards, so no
 * object group stays joined and no stream keeps trickling for an idle mirror.
 *
 * It never gives up on the network: a sync that fails (no share answers, the share restarted or
 * changed again under it, the link went down) is tried again after a backoff of 1, 2, 4 ... up
 * to 60 s, at once when a new root is announced meanwhile. When no announce was heard for three
 * of the share's heartbeats, the watch is opened afresh (a new report, which a share answers with
 * the root; an interface that came back is joined again), and if none was ever heard (a share
 * without announces, such as the C one) it syncs by name then too. Only what no retry can fix ends it:
 * a usage or permission error. An abort of `signal` (SIGINT/SIGTERM) ends it between or during
 * syncs and it returns normally; a sync interrupted leaves complete old or new files only and no
 * temporary copy (writer.ts), never a partial one.
 */
import { LcsyncError } from '../base/errors.js';
import { trimCHeapNow } from '../base/malloctrim.js';
import { collectOldGenerationNow } from '../base/oldgen.js';
import { toHex } from '../model/hash.js';
import { groupAddress } from '../wire/address.js';
import { decodeAnnounce, watchKey, type RootAnnounce } from '../wire/announce.js';
import { MulticastReceiver } from '../net/mcast-receiver.js';
import type { DatagramSource } from '../net/datagram.js';
import { parseSource } from './source.js';
import { syncRemote } from './sync.js';
import type { SyncOptions, SyncSummary } from './types.js';

/** Backoff after a failed sync: doubling from the first to the last, in seconds. */
const BACKOFF_FIRST_SEC = 1;
const BACKOFF_MAX_SEC = 60;
/** Heartbeat assumed until the share announced its own (share/announce.ts DEFAULT_HEARTBEAT_SEC). */
const ASSUMED_HEARTBEAT_SEC = 30;
/** Heartbeats missed before the watch is opened afresh. */
const MISSED_HEARTBEATS = 3;
/** After the watch could not be opened (an interface missing for now), try again this soon. */
const WATCH_RETRY_SEC = 10;
/** A sync's wait for a sender before it counts as failed and is retried (the --timeout given wins). */
const DEFAULT_CYCLE_TIMEOUT_SEC = 30;

export interface FollowCycle {
  /** 1 for the first sync, then one more per sync. */
  cycle: number;
  /** Why it ran: the first sync, a new root announced, a retry after a failure, or a poll of a share that never announced. */
  reason: 'start' | 'announce' | 'retry' | 'poll';
  summary: SyncSummary;
  /** Entries created, updated, changed in metadata only, or deleted. */
  changed: number;
}

export interface FollowOptions {
  /** After each sync that completed (one log line each). */
  onCycle?: (c: FollowCycle) => void;
  /** A sync failed and is tried again in `delaySec` (or at once on an announce). */
  onRetry?: (e: { error: LcsyncError | Error; delaySec: number; failures: number }) => void;
  /** An announce of a root not synced yet was heard. */
  onAnnounce?: (a: RootAnnounce) => void;
  /** No announce for `silentSec`: the watch is opened afresh (also after it failed to open: `error`). */
  onRewatch?: (e: { silentSec: number; error?: string }) => void;
  /** Receive announces from this source instead of opening a socket (tests). */
  watchChannel?: () => Promise<DatagramSource>;
}

export interface FollowResult {
  cycles: number;
  failures: number;
  /** The root the destination holds now (undefined when no sync completed). */
  rootHash?: string;
}

/**
 * After a sync, what it left is handed back while the mirror waits: one full collection of V8's old
 * generation (a session's requests, promises and buffers die there, and an idle process would keep them until
 * the next sync made V8 collect), then, once V8 has freed the ArrayBuffers' bytes on its background thread,
 * one trim of the C heap (the chunk buffers' freed pages: a session trims only while it runs). Measured on a
 * mirror taking a 64 MiB file seven times (bench/README.md, twenty-fourth session): without, its RSS between
 * syncs rose from 54 to 71 MiB and stayed there.
 */
const RELEASE_TRIM_DELAY_MS = 300;
function releaseAfterSync(): void {
  collectOldGenerationNow();
  setTimeout(() => trimCHeapNow(), RELEASE_TRIM_DELAY_MS).unref();
}

/** Errors no retry can fix: the mirror stops with them. */
function fatal(e: unknown): boolean {
  return e instanceof LcsyncError && (e.code === 'USAGE' || e.code === 'PERMISSION' || e.code === 'INTERRUPTED');
}

/** The name's watch group, joined on a receiver of its own; the latest root announced, and a wake-up on each. */
class Watch {
  latest?: string;
  heartbeatSec = ASSUMED_HEARTBEAT_SEC;
  heardAt = Date.now();
  private rx?: DatagramSource;
  private wake?: () => void;
  /** Told of every new root announced (follow: a sync pinned to an older root gives way). */
  onNewRoot?: (root: string) => void;

  constructor(
    private readonly name: string,
    private readonly opts: SyncOptions,
    private readonly follow: FollowOptions,
  ) {}

  async open(): Promise<void> {
    await this.close();
    const rx = this.follow.watchChannel ? await this.follow.watchChannel() : await MulticastReceiver.open({ ifnames: this.opts.ifnames });
    // A sync's datagrams reach this socket too (the port is shared; IPV6_MULTICAST_ALL): each is
    // dropped by its length in decodeAnnounce. The native assembler is not claimed: claimed, it
    // would drop announces below JS with the rest of what is not a datagram.
    const open = this.opts.cipher ? (s: Uint8Array) => this.opts.cipher!.open(s) : undefined;
    rx.onDatagram((buf) => {
      const a = decodeAnnounce(buf, open);
      if (!a || a.name !== this.name) return;
      this.heardAt = Date.now();
      if (a.heartbeatSec > 0) this.heartbeatSec = a.heartbeatSec;
      const root = toHex(a.root);
      if (root !== this.latest) {
        this.latest = root;
        this.follow.onAnnounce?.(a);
        this.onNewRoot?.(root);
        this.wake?.();
      }
    });
    this.rx = rx;
    this.heardAt = Date.now();
    rx.join(groupAddress(watchKey(this.name)));
  }

  /** Seconds of silence after which the watch is opened afresh. */
  get quietSec(): number {
    return this.heartbeatSec * MISSED_HEARTBEATS + 5;
  }

  /** Wait until an announce changes `latest`, `ms` pass, or `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      this.wake = done;
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async close(): Promise<void> {
    const rx = this.rx;
    this.rx = undefined;
    await rx?.close();
  }
}

/** Sync SOURCE (a share name, or a path inside one) into DEST and keep it current until `opts.signal` aborts. */
export async function followRemote(source: string, dest: string, opts: SyncOptions, follow: FollowOptions = {}): Promise<FollowResult> {
  const spec = parseSource(source);
  if (spec.name === undefined) throw new LcsyncError('USAGE', '--follow needs a share name: a root hash names one version, which never changes');
  if (opts.expectRoot) throw new LcsyncError('USAGE', '--follow takes each new root the share announces: --expect-root would pin one');
  const shareName = spec.name.split('/')[0]!;
  const signal = opts.signal;
  const watch = new Watch(shareName, opts, follow);
  const result: FollowResult = { cycles: 0, failures: 0 };
  // The share root the destination was last synced to ('?' when synced before any announce named one, for a path inside a share).
  let synced: string | undefined;
  let failures = 0;
  let retryAt = 0;
  // Set when the watch was quiet and no announce was ever heard: a share without announces (the C one) is polled by name.
  let poll = false;
  // An announced root that a sync by name did not find (a forged announce, or another share's root): not chased again.
  let declined: string | undefined;
  const openWatch = async () => {
    try {
      await watch.open();
    } catch (e) {
      // The interface may be gone for now: syncs fail and retry, and the watch is tried again when it is quiet too long.
      follow.onRewatch?.({ silentSec: 0, error: (e as Error).message });
      // Try again in WATCH_RETRY_SEC rather than after a whole quiet period (nor at once, in a loop).
      watch.heardAt = Date.now() - Math.max(0, watch.quietSec - WATCH_RETRY_SEC) * 1000;
    }
  };
  await openWatch();
  try {
    while (!signal?.aborted) {
      const now = Date.now();
      const due = poll || synced === undefined || (watch.latest !== undefined && watch.latest !== synced && watch.latest !== declined);
      if (!due || now < retryAt) {
        const quietAt = watch.heardAt + watch.quietSec * 1000;
        if (now >= quietAt) {
          follow.onRewatch?.({ silentSec: Math.round((now - watch.heardAt) / 1000) });
          await openWatch();
          if (watch.latest === undefined) poll = true;
          continue;
        }
        // A new announce ends a backoff early: the share is back, with a root to take.
        const until = due ? Math.min(retryAt, quietAt) : quietAt;
        const before = watch.latest;
        await watch.wait(until - now, signal);
        if (due && watch.latest !== before) retryAt = 0;
        continue;
      }
      // Pinned to the announced root, a sync skips the wait for a second answer (resolve.ts); after
      // a failure it asks by name again, in case what was announced is not what answers.
      const pinned = synced !== undefined && failures === 0 ? watch.latest : undefined;
      const reason: FollowCycle['reason'] = failures > 0 ? 'retry' : synced === undefined ? 'start' : poll ? 'poll' : 'announce';
      // A newer root announced during a pinned sync ends it (complete files stay) and the next sync takes that root.
      const superseded = new AbortController();
      const announcedAtStart = watch.latest;
      watch.onNewRoot = (root) => {
        if (pinned !== undefined && root !== pinned) superseded.abort();
      };
      try {
        const summary = await syncRemote(source, dest, {
          ...opts,
          signal: signal ? AbortSignal.any([signal, superseded.signal]) : superseded.signal,
          timeoutSec: opts.timeoutSec ?? DEFAULT_CYCLE_TIMEOUT_SEC,
          ...(pinned !== undefined ? { expectRoot: Buffer.from(pinned, 'hex') } : {}),
        });
        failures = 0;
        retryAt = 0;
        poll = false;
        // A share name's sync reports the share's root; a path inside a share reports its own entry's.
        synced = pinned ?? (spec.name === shareName ? summary.rootHash : (watch.latest ?? '?'));
        // Asked by name while this root was announced (and nothing newer came), the share answered with another.
        if (pinned === undefined && announcedAtStart !== undefined && watch.latest === announcedAtStart && announcedAtStart !== synced) declined = announcedAtStart;
        result.cycles++;
        result.rootHash = synced;
        const f = summary.files;
        follow.onCycle?.({ cycle: result.cycles, reason, summary, changed: f.created + f.updated + f.metadata + summary.deleted });
      } catch (e) {
        if (signal?.aborted) break;
        if (superseded.signal.aborted) continue;
        if (fatal(e)) throw e;
        failures++;
        result.failures++;
        const delaySec = Math.min(BACKOFF_FIRST_SEC * 2 ** (failures - 1), BACKOFF_MAX_SEC);
        retryAt = Date.now() + delaySec * 1000;
        follow.onRetry?.({ error: e as Error, delaySec, failures });
      } finally {
        watch.onNewRoot = undefined;
        releaseAfterSync();
      }
    }
  } finally {
    await watch.close();
  }
  return result;
}
