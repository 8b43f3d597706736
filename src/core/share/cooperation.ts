/**
 * Redundant shares (docs/protocol.md#redundant-shares): the share's side of presence. Joins the
 * presence group, sends heartbeats while another share is there to hear them, keeps the peer table
 * (peers.ts) and tells the share (share.ts) which joins it should answer and when a dead peer's
 * groups are its to take over. A lone share joins the presence group and sends nothing on it.
 */
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { formatIPv6, parseIPv6 } from '../wire/address.js';
import { PRESENCE_GROUP, PRESENCE_PORT, decodeHeartbeat, encodeHeartbeat, KEY_TAG_SIZE, SHARE_ID_SIZE } from '../wire/presence.js';
import type { MldEvent } from '../net/mldsocket.js';
import { PresenceSocket } from '../net/presence-socket.js';
import type { ShareIndex } from '../index/mdex.js';
import { DEAD_AFTER_MISSES, PeerTable, offerDigest, type Peer } from './peers.js';

/** Heartbeat interval: 3 missed (DEAD_AFTER_MISSES) make about a second before a silent peer's groups are taken over. */
export const HEARTBEAT_MS = 280;
/**
 * After the start, joins wait this long before they are answered: long enough for the shares
 * already on the link to hear our presence join and answer with a heartbeat, so that a share
 * started beside a running one does not first send everything itself.
 */
export const DISCOVERY_MS = 300;

export interface CooperationOptions {
  ifnames: string[];
  index: ShareIndex;
  /** The cipher's key tag (crypto.ts keyTag); undefined: plaintext. */
  keyTag?: Buffer;
  /** What else co-servers must agree on (the signer's public key). */
  offerExtra?: Buffer;
  /** The share's symbol size (ShareOptions.symbolSize), part of its offer. */
  symbolSize?: number;
  log: (level: 'info' | 'verbose' | 'warn', msg: string) => void;
  /** Peers died on these interfaces: their groups may now be ours. */
  onTakeover: (ifnames: Set<string>) => void;
  /** The discovery wait is over: joins held meanwhile are to be answered now. */
  onDiscovered: () => void;
  /** A co-server came or went (the share splits its rate among them). */
  onPeersChanged?: () => void;
}

export class Cooperation {
  readonly table: PeerTable;
  heartbeatsSent = 0;
  private timer?: NodeJS.Timeout;
  private discoveryTimer?: NodeJS.Timeout;
  private discovering = true;
  private closed = false;
  private lastTickAt = Date.now();
  private own = new Set<string>();
  private ownBytes: Buffer[] = [];

  private constructor(
    private readonly opts: CooperationOptions,
    private socket?: PresenceSocket,
  ) {
    this.table = new PeerTable(
      { id: randomBytes(SHARE_ID_SIZE), digest: digestOf(opts.index, opts), keyTag: opts.keyTag ?? Buffer.alloc(KEY_TAG_SIZE) },
      opts.ifnames,
    );
    this.refreshOwn();
  }

  static async open(opts: CooperationOptions): Promise<Cooperation> {
    const coop = new Cooperation(opts);
    coop.socket = await PresenceSocket.open({
      ifnames: opts.ifnames,
      group: PRESENCE_GROUP,
      port: PRESENCE_PORT,
      onMessage: (buf, from) => coop.onMessage(buf, from),
      onError: (err) => opts.log('warn', `presence socket: ${err.message}`),
    });
    coop.timer = setInterval(() => coop.tick(), HEARTBEAT_MS);
    coop.timer.unref();
    coop.discoveryTimer = setTimeout(() => {
      coop.discovering = false;
      opts.onDiscovered();
    }, DISCOVERY_MS);
    coop.discoveryTimer.unref();
    return coop;
  }

  /** Whether joins are still held for discovery. */
  get holding(): boolean {
    return this.discovering && !this.closed;
  }

  /** Whether `e` is about the presence group (then it is ours, not a content group's). */
  consumes(e: MldEvent): boolean {
    if (!e.group.equals(PRESENCE_GROUP)) return false;
    let host: string;
    try {
      host = formatIPv6(parseIPv6(e.from.replace(/%.*$/, '')));
    } catch {
      return true;
    }
    if (this.own.has(host)) return true;
    if (e.kind === 'join') {
      const wasAlone = !this.table.foreignPresence;
      this.table.presenceJoin(e.ifname, host);
      // Someone new on the presence group: let it hear us now rather than at the next tick.
      if (wasAlone || !e.refresh) void this.beat(false);
    } else {
      const dead = this.table.presenceLeave(e.ifname, host);
      if (dead.length > 0) this.died(dead, 'left the presence group');
    }
    return true;
  }

  /** Whether this share should answer a join of `group` (16 bytes) on `ifname`. */
  owns(group: Buffer, ifname: string): boolean {
    return this.table.owns(group, ifname);
  }

  setIndex(index: ShareIndex): void {
    if (this.table.setOffer(digestOf(index, this.opts))) {
      this.opts.log('verbose', 'serving a new index: peers count again once their heartbeats show the same offer');
      this.opts.onPeersChanged?.();
      void this.beat(false);
    }
  }

  peers(): Peer[] {
    return this.table.list();
  }

  private onMessage(buf: Buffer, from: string): void {
    if (this.closed) return;
    const hb = decodeHeartbeat(buf);
    if (!hb) return;
    const outcome = this.table.hear(hb, from, Date.now());
    if (outcome === 'new') {
      this.opts.log('info', `co-serving with share ${hb.shareId.toString('hex').slice(0, 8)} at ${from}: each sends the groups it owns`);
      // Let it know us at once, so both split from now on.
      void this.beat(false);
      this.opts.onPeersChanged?.();
    } else if (outcome === 'bye') {
      this.died([{ idHex: hb.shareId.toString('hex'), ifnames: new Set(this.opts.ifnames) } as Peer], hb.bye ? 'stopped' : 'serves another index now');
    }
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    const stalled = now - this.lastTickAt > 2 * HEARTBEAT_MS;
    this.lastTickAt = now;
    if (this.table.foreignPresence || this.table.list().length > 0) void this.beat(false);
    // Timers run before the poll phase: after our own event loop was stalled (a busy machine), the
    // peers' heartbeats may be waiting in the socket. Look at them first (setImmediate runs after
    // the poll phase), and judge nobody dead by a silence that was ours.
    if (stalled) return;
    setImmediate(() => {
      if (this.closed) return;
      const dead = this.table.expire(Date.now());
      if (dead.length > 0) this.died(dead, `missed ${DEAD_AFTER_MISSES} heartbeats`);
    });
  }

  private died(dead: Peer[], why: string): void {
    const ifnames = new Set<string>();
    for (const p of dead) {
      for (const i of p.ifnames) ifnames.add(i);
      this.opts.log('info', `share ${p.idHex.slice(0, 8)} ${why}: taking over its groups`);
    }
    this.opts.onPeersChanged?.();
    if (ifnames.size > 0) this.opts.onTakeover(ifnames);
  }

  private async beat(bye: boolean): Promise<void> {
    if (!this.socket || (this.closed && !bye)) return;
    this.refreshOwn();
    const self = this.table.offer;
    const payload = encodeHeartbeat({
      bye,
      shareId: self.id,
      digest: self.digest,
      keyTag: self.keyTag,
      intervalMs: HEARTBEAT_MS,
      roots: this.opts.index.roots.map((r) => r.hash),
      addresses: this.ownBytes,
    });
    try {
      await this.socket.send(payload);
      this.heartbeatsSent++;
    } catch (err) {
      if (!this.closed) this.opts.log('warn', `heartbeat: ${(err as Error).message}`);
    }
  }

  /** Stop: a bye when anybody was listening (peers take over at once), then close. */
  async close(): Promise<void> {
    if (this.closed) return;
    const tell = this.table.foreignPresence || this.table.list().length > 0;
    if (tell) await this.beat(true);
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.discoveryTimer);
    await this.socket?.close();
  }

  private refreshOwn(): void {
    const own = new Set<string>();
    const bytes: Buffer[] = [];
    const all = networkInterfaces();
    for (const ifname of this.opts.ifnames) {
      for (const a of all[ifname] ?? []) {
        if (a.family !== 'IPv6') continue;
        try {
          const b = parseIPv6(a.address.replace(/%.*$/, ''));
          own.add(formatIPv6(b));
          bytes.push(b);
        } catch {
          // Not an address we can name: skip it.
        }
      }
    }
    this.own = own;
    this.ownBytes = bytes;
  }
}

function digestOf(index: ShareIndex, opts: Pick<CooperationOptions, 'offerExtra' | 'symbolSize'>): Buffer {
  return offerDigest(index.roots, index.objectCount, opts.offerExtra, opts.symbolSize);
}
