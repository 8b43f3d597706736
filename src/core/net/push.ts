/**
 * Push mode: listeners without MLD. For hosts where the share cannot have
 * CAP_NET_RAW, or networks where MLD reports never reach it, this stands in for
 * the MLD watcher: every `periodSec` it reports a join, from a new pseudo
 * listener, for every object's group on every interface. The share then sends
 * each object a round per period (a carousel paced by --bwlimit), which any
 * receiver can pick up at any time; nothing ever leaves.
 */
import { EventEmitter } from 'node:events';
import { groupBytes, formatIPv6 } from '../wire/address.js';
import type { MldEvent } from './listeners.js';
import type { Hash } from '../model/hash.js';

export interface ListenerSource extends EventEmitter {
  activeGroups(ifname?: string): { group: string; ifname: string }[];
  close(): Promise<void>;
  /** Ask who still listens to `group` on `ifname` (MldWatcher.probe); a source that cannot ask has none. */
  probe?(ifname: string, group: Buffer): void;
}

export class PushSource extends EventEmitter implements ListenerSource {
  private readonly timer: NodeJS.Timeout;
  private round = 0;
  private last: { group: string; ifname: string }[] = [];

  constructor(
    private readonly ifnames: string[],
    /** The keys to push now (the share's current index: objects and aliases). */
    private readonly keys: () => Iterable<Hash>,
    periodSec: number,
  ) {
    super();
    this.timer = setInterval(() => this.pushAll(), periodSec * 1000);
    // The first round goes out as soon as the share has subscribed.
    setImmediate(() => this.pushAll());
  }

  private pushAll(): void {
    const from = `push-${++this.round}`;
    const now: { group: string; ifname: string }[] = [];
    for (const key of this.keys()) {
      const group = groupBytes(key);
      for (const ifname of this.ifnames) {
        now.push({ group: formatIPv6(group), ifname });
        const ev: MldEvent = { kind: 'join', group, ifname, from };
        this.emit('join', ev);
      }
    }
    this.last = now;
  }

  activeGroups(ifname?: string): { group: string; ifname: string }[] {
    return ifname === undefined ? this.last : this.last.filter((g) => g.ifname === ifname);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
