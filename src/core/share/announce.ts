/**
 * Root announces (wire/announce.ts, docs/protocol.md#live-mirrors): how a share tells the mirrors
 * that follow its names (`sync --follow`) which root each name has, at almost no wire cost.
 *
 * A follower stays joined to its name's watch group and nothing else while idle. The share:
 *  - answers a host's first report on a watch group with one announce (so a mirror that joins, or
 *    a share that restarts and hears the hosts answer its first query, agree on the root at once);
 *  - when a re-index changes a name's root, announces the new root on each of that name's watch
 *    groups that have listeners, CHANGE_COPIES times over about a second (a lost datagram costs a
 *    copy, not the 2 s target);
 *  - every heartbeatSec, announces each listened name once, so a follower that missed every copy
 *    (or a share restart it could not hear) catches up, and knows the share is alive.
 * Nothing here is an object: no stream starts and nothing trickles for a watch group. In push mode
 * (no MLD) the announces go to every name's watch group on every interface instead.
 *
 * Followers are counted per (name, interface) as the distinct hosts reporting the watch group, as
 * far as MLD shows them: MLDv1 hosts suppress each other's reports, and hosts behind a router or
 * proxy look like one.
 */
import { groupAddress, GROUP_PREFIX_BYTES } from '../wire/address.js';
import { encodeAnnounce, watchKey } from '../wire/announce.js';
import type { Hash } from '../model/hash.js';
import type { ShareIndex } from '../index/mdex.js';
import { groupTextOf, type MldEvent } from '../net/listeners.js';
import type { ObjectCipher } from '../wire/crypto.js';

/** Default seconds between heartbeats: one datagram of about 100 bytes per listened name and interface. */
export const DEFAULT_HEARTBEAT_SEC = 30;
/** Copies of an announce of a new root, and when each leaves (ms after the re-index). */
const CHANGE_COPIES_AT = [0, 250, 1000];
/** A host's first report is answered, but one watch group gets at most one answer this often (a crowd rejoining at once). */
const ANSWER_GAP_MS = 300;

export interface AnnouncerOptions {
  ifnames: readonly string[];
  heartbeatSec: number;
  /** How long a host that stopped reporting still counts as a follower (the MLD listener interval). */
  hostTtlMs: number;
  cipher?: ObjectCipher;
  /** No MLD (push mode): announce every name on every interface. */
  always?: boolean;
  send(ifname: string, group: string, payload: Buffer): void;
  verbose?(msg: string): void;
}

interface Watched {
  name: string;
  ifname: string;
  group: string;
  /** Reporting hosts and when each was last heard. */
  hosts: Map<string, number>;
  lastAnswer: number;
}

export interface FollowerStatus {
  shareName: string;
  ifname: string;
  hosts: number;
}

export class RootAnnouncer {
  /** The current root of each share name, by the watch group's 14-byte prefix (hex). */
  private names = new Map<string, { name: string; root: Hash }>();
  /** Watch groups with listeners, by `group%ifname`. */
  private readonly watched = new Map<string, Watched>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private heartbeat?: NodeJS.Timeout;
  /** Announce datagrams sent (status and tests). */
  sent = 0;
  private stopped = false;

  constructor(
    index: ShareIndex,
    private readonly opts: AnnouncerOptions,
  ) {
    this.names = namesOf(index);
    if (opts.heartbeatSec > 0) {
      this.heartbeat = setInterval(() => this.beat(), opts.heartbeatSec * 1000);
      this.heartbeat.unref();
    }
  }

  /** After a re-index: announce each name whose root changed (a name that vanished is not announced; its followers time out and retry). */
  setIndex(index: ShareIndex): void {
    const before = this.names;
    this.names = namesOf(index);
    for (const [slot, now] of this.names) {
      const was = before.get(slot);
      if (was && was.root.equals(now.root)) continue;
      const targets = this.targetsOf(slot);
      if (targets.length === 0) continue;
      this.opts.verbose?.(`announcing root ${now.root.toString('hex')} of "${now.name}" to ${targets.length} watch ${targets.length === 1 ? 'group' : 'groups'}`);
      for (const at of CHANGE_COPIES_AT) this.later(at, () => this.announce(slot, targets));
    }
  }

  /** A join the index did not claim: when it is a name's watch group, track the host and answer a new one. Returns whether it was. */
  onJoin(e: MldEvent, prefix: Buffer): boolean {
    const slot = prefix.toString('hex');
    const named = this.names.get(slot);
    if (!named || !this.opts.ifnames.includes(e.ifname)) return false;
    const group = groupTextOf(e);
    const key = `${group}%${e.ifname}`;
    let w = this.watched.get(key);
    if (!w) this.watched.set(key, (w = { name: named.name, ifname: e.ifname, group, hosts: new Map(), lastAnswer: 0 }));
    const now = Date.now();
    const known = w.hosts.has(e.from) && now - w.hosts.get(e.from)! < this.opts.hostTtlMs;
    w.hosts.set(e.from, now);
    if (!known && now - w.lastAnswer >= ANSWER_GAP_MS) {
      w.lastAnswer = now;
      this.announce(slot, [w]);
    }
    return true;
  }

  /** A host left a group (others may remain). */
  onPart(e: MldEvent): void {
    this.watched.get(`${groupTextOf(e)}%${e.ifname}`)?.hosts.delete(e.from);
  }

  /** Nobody listens on the group any more. */
  onLeave(e: MldEvent): void {
    this.watched.delete(`${groupTextOf(e)}%${e.ifname}`);
  }

  /** Hosts following each name, per interface (names nobody follows are left out). */
  followers(): FollowerStatus[] {
    const now = Date.now();
    const out: FollowerStatus[] = [];
    for (const w of this.watched.values()) {
      const hosts = [...w.hosts.values()].filter((t) => now - t < this.opts.hostTtlMs).length;
      if (hosts > 0) out.push({ shareName: w.name, ifname: w.ifname, hosts });
    }
    return out;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private beat(): void {
    const now = Date.now();
    for (const [key, w] of this.watched) {
      for (const [host, t] of w.hosts) if (now - t >= this.opts.hostTtlMs) w.hosts.delete(host);
      if (w.hosts.size === 0) this.watched.delete(key);
    }
    for (const slot of this.names.keys()) {
      const targets = this.targetsOf(slot);
      if (targets.length > 0) this.announce(slot, targets);
    }
  }

  /** Where an announce of `slot` goes: its listened watch groups, or with `always` the group on every interface. */
  private targetsOf(slot: string): { ifname: string; group: string }[] {
    if (this.opts.always) {
      const named = this.names.get(slot)!;
      const group = groupAddress(watchKey(named.name));
      return this.opts.ifnames.map((ifname) => ({ ifname, group }));
    }
    const named = this.names.get(slot)!;
    return [...this.watched.values()].filter((w) => w.name === named.name && w.hosts.size > 0);
  }

  private announce(slot: string, targets: readonly { ifname: string; group: string }[]): void {
    if (this.stopped) return;
    const named = this.names.get(slot);
    if (!named) return;
    const payload = encodeAnnounce({ root: named.root, heartbeatSec: this.opts.heartbeatSec, name: named.name }, this.opts.cipher ? (p) => this.opts.cipher!.seal(p) : undefined);
    for (const t of targets) {
      this.sent++;
      this.opts.send(t.ifname, t.group, payload);
    }
  }

  private later(ms: number, fn: () => void): void {
    if (ms === 0) return fn();
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }
}

/** Each share name's root, by its watch group's prefix. */
function namesOf(index: ShareIndex): Map<string, { name: string; root: Hash }> {
  const out = new Map<string, { name: string; root: Hash }>();
  for (const r of index.roots) {
    const slot = watchKey(r.shareName).subarray(0, GROUP_PREFIX_BYTES).toString('hex');
    if (!out.has(slot)) out.set(slot, { name: r.shareName, root: r.hash });
  }
  return out;
}
