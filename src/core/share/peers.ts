/**
 * Who else serves this share's content on its links, and which share sends what
 * (docs/protocol.md#redundant-shares), pure: no sockets, no timers, every call takes the time.
 *
 * Shares that serve the same offer (offerDigest) with the same key (key tag) are co-servers. Each
 * group is owned by one live co-server on the link, by rendezvous hashing: the share whose
 * BLAKE3(share id || group) is highest. Only the owner starts a stream for a join, so two shares
 * send about what one would; when a co-server dies (its heartbeats stop, it says bye, or its
 * presence membership leaves) the groups it owned fall to the others, each group to the survivor
 * that ranks highest for it, without anything to agree on. A share that disagrees about who is
 * alive only ever sends too much (both send), never too little: a peer counts for ownership only
 * after its heartbeat was heard, and stops counting as soon as it is missed.
 */
import { hash, HASH_SIZE, type Hash } from '../model/hash.js';
import { formatIPv6 } from '../wire/address.js';
import type { Heartbeat } from '../wire/presence.js';
import { SYMBOL_SIZE } from '../wire/packet.js';

/** Heartbeats missed before a peer is taken for dead. */
export const DEAD_AFTER_MISSES = 3;
/** Added to DEAD_AFTER_MISSES intervals, for a heartbeat delayed by a busy peer. */
export const DEAD_SLACK_MS = 150;

/** The rank of share `id` for `group` (16 bytes): BLAKE3(id || group). */
export function rank(id: Uint8Array, group: Uint8Array): Hash {
  return hash(Buffer.concat([id, group]));
}

/** The owner of `group` among `ids` (non-empty): the id of highest rank, bytes compared as unsigned big-endian. */
export function ownerOf(group: Uint8Array, ids: readonly Buffer[]): Buffer {
  let best: Buffer | undefined;
  let bestRank: Buffer | undefined;
  for (const id of ids) {
    const r = rank(id, group);
    if (!bestRank || Buffer.compare(r, bestRank) > 0 || (Buffer.compare(r, bestRank) === 0 && Buffer.compare(id, best!) > 0)) {
      best = id;
      bestRank = r;
    }
  }
  if (!best) throw new RangeError('no candidate owner');
  return best;
}

/**
 * What a share offers, in 32 bytes: two shares with the same digest serve the same objects under the
 * same keys. BLAKE3("lcsync-offer" || object count u64 BE || extra || each root, sorted by hash then
 * name: hash || name length u16 BE || name). The object count tells bundles and signatures apart
 * (a share without them has fewer objects); `extra` is what else must agree (the signer's public key),
 * followed, at a symbol size other than 1024, by "T" and the size (u16 BE): a receiver takes a chunk's
 * symbols in one size only, so shares of two sizes must not split the groups.
 */
export function offerDigest(roots: readonly { hash: Hash; shareName: string }[], objectCount: number, extra: Uint8Array = Buffer.alloc(0), symbolSize = SYMBOL_SIZE): Hash {
  const sorted = [...roots].sort((a, b) => Buffer.compare(a.hash, b.hash) || (a.shareName < b.shareName ? -1 : a.shareName > b.shareName ? 1 : 0));
  const parts: Buffer[] = [Buffer.from('lcsync-offer', 'ascii')];
  const count = Buffer.alloc(8);
  count.writeBigUInt64BE(BigInt(objectCount));
  parts.push(count, Buffer.from(extra));
  if (symbolSize !== SYMBOL_SIZE) {
    const tag = Buffer.alloc(3);
    tag.write('T', 0, 'latin1');
    tag.writeUInt16BE(symbolSize, 1);
    parts.push(tag);
  }
  for (const r of sorted) {
    const name = Buffer.from(r.shareName, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(Math.min(name.length, 0xffff));
    parts.push(r.hash, len, name);
  }
  return hash(Buffer.concat(parts));
}

export interface Peer {
  id: Buffer;
  idHex: string;
  /** Its addresses, as text. */
  addresses: string[];
  roots: Hash[];
  intervalMs: number;
  lastSeen: number;
  /** Interfaces it is known to be on (where its presence membership was seen, or the only one). */
  ifnames: Set<string>;
}

export interface SelfOffer {
  id: Buffer;
  digest: Hash;
  keyTag: Buffer;
}

/** What hearing a heartbeat did. */
export type HeardOutcome = 'self' | 'foreign' | 'new' | 'known' | 'bye';

export class PeerTable {
  private readonly peers = new Map<string, Peer>();
  /** Per interface, hosts (other than us) whose presence membership MLD shows. */
  private readonly presence = new Map<string, Set<string>>();

  constructor(
    private self: SelfOffer,
    private readonly ifnames: readonly string[],
  ) {
    for (const i of ifnames) this.presence.set(i, new Set());
  }

  get id(): Buffer {
    return this.self.id;
  }

  /** The share serves another index: peers that served the old one are co-servers no more until they say otherwise. */
  setOffer(digest: Hash): boolean {
    if (digest.equals(this.self.digest)) return false;
    this.self = { ...this.self, digest };
    this.peers.clear();
    return true;
  }

  get offer(): SelfOffer {
    return this.self;
  }

  /** Live co-servers, any interface. */
  list(): Peer[] {
    return [...this.peers.values()];
  }

  /**
   * A heartbeat from `from`. Our own: 'self'. Another offer or key: 'foreign' (not a co-server), or
   * 'bye' when it was one (forgotten: its groups are no longer served for us). A bye: the peer is gone
   * ('bye'). Else it is (again) a live co-server.
   */
  hear(hb: Heartbeat, from: string, now: number): HeardOutcome {
    if (hb.shareId.equals(this.self.id)) return 'self';
    const idHex = hb.shareId.toString('hex');
    const compatible = hb.digest.length === HASH_SIZE && hb.digest.equals(this.self.digest) && hb.keyTag.equals(this.self.keyTag);
    if (!compatible) {
      // A co-server that now serves another index (or key) is one no more: as good as gone.
      return this.peers.delete(idHex) ? 'bye' : 'foreign';
    }
    if (hb.bye) return this.peers.delete(idHex) ? 'bye' : 'foreign';
    const addresses = [...new Set([...hb.addresses.map((a) => formatIPv6(a)), stripZone(from)])];
    let p = this.peers.get(idHex);
    const isNew = !p;
    if (!p) {
      p = { id: Buffer.from(hb.shareId), idHex, addresses, roots: hb.roots, intervalMs: hb.intervalMs, lastSeen: now, ifnames: new Set() };
      this.peers.set(idHex, p);
    }
    p.addresses = addresses;
    p.roots = hb.roots;
    p.intervalMs = hb.intervalMs;
    p.lastSeen = now;
    this.associate(p);
    return isNew ? 'new' : 'known';
  }

  /** MLD shows `host` a member of the presence group on `ifname`. */
  presenceJoin(ifname: string, host: string): void {
    this.presence.get(ifname)?.add(host);
    for (const p of this.peers.values()) if (p.addresses.includes(host)) this.associate(p);
  }

  /** MLD shows `host` left the presence group on `ifname`: returns the peers that died with it (each with that interface). */
  presenceLeave(ifname: string, host: string): Peer[] {
    this.presence.get(ifname)?.delete(host);
    const dead: Peer[] = [];
    for (const p of this.peers.values()) {
      if (!p.addresses.includes(host) || !p.ifnames.delete(ifname)) continue;
      // Its membership went with its process (killed): gone from that link at once.
      if (p.ifnames.size === 0) {
        this.peers.delete(p.idHex);
        dead.push({ ...p, ifnames: new Set([ifname]) });
      }
    }
    return dead;
  }

  /** Whether any host but us is a member of the presence group: then heartbeats have somebody to reach. */
  get foreignPresence(): boolean {
    for (const s of this.presence.values()) if (s.size > 0) return true;
    return false;
  }

  /** Peers whose heartbeats stopped: forgotten and returned. */
  expire(now: number): Peer[] {
    const dead: Peer[] = [];
    for (const p of this.peers.values()) {
      if (now - p.lastSeen > DEAD_AFTER_MISSES * p.intervalMs + DEAD_SLACK_MS) {
        this.peers.delete(p.idHex);
        dead.push(p);
      }
    }
    return dead;
  }

  /** The live co-servers on `ifname`. */
  on(ifname: string): Peer[] {
    return [...this.peers.values()].filter((p) => p.ifnames.has(ifname));
  }

  /** Whether we own `group` on `ifname`: we do unless a live co-server there ranks higher. */
  owns(group: Uint8Array, ifname: string): boolean {
    const here = this.on(ifname);
    if (here.length === 0) return true;
    return ownerOf(group, [this.self.id, ...here.map((p) => p.id)]).equals(this.self.id);
  }

  /**
   * A peer is on an interface where MLD showed one of its addresses in the presence group; with one
   * interface, a heartbeat heard (hop limit 1) is from that link.
   */
  private associate(p: Peer): void {
    if (this.ifnames.length === 1) {
      p.ifnames.add(this.ifnames[0]!);
      return;
    }
    for (const [ifname, hosts] of this.presence) if (p.addresses.some((a) => hosts.has(a))) p.ifnames.add(ifname);
  }
}

function stripZone(addr: string): string {
  const i = addr.indexOf('%');
  return i < 0 ? addr : addr.slice(0, i);
}
