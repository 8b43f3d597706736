/**
 * Receiving multicast datagrams together with the group each was sent to: one node:dgram socket per group,
 * bound to the group address itself, joined on one interface. For a relay (ops/relay.ts), which must send each
 * datagram on to the group it came on and cannot tell that from the bytes (a group is named by its key hash, the
 * datagram by its OID, and these differ for tree objects, manifests and signatures).
 *
 * Facts it is built on:
 * - Linux lets a UDP socket bind to a multicast address (the local-address check skips multicast), and then
 *   delivers to it only datagrams sent to that address: the socket demultiplexes by group, while a socket bound
 *   to [::] would get every group any socket of the namespace joined (IPV6_MULTICAST_ALL, which node:dgram
 *   cannot clear).
 * - The host accepts a group's datagrams only on an interface where some socket joined it, so joining on the
 *   upstream interface alone keeps the same group on another interface out (unless another program of the
 *   namespace joined it there).
 * - Dropping and adding a membership again makes the kernel send a fresh state-change report, which is how a
 *   receiver asks a sender that sends only on new reports (the C lcsync) to send again.
 * - The addon's recvmmsg receiver binds [::] and reports no destination address, so it cannot serve here.
 */
import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { LCSYNC_PORT } from '../wire/address.js';
import { validateInterfaces } from './interfaces.js';
import { checkGroup, checkPort, closeSocket } from './udp.js';

/** Receive buffer asked for per group; the kernel caps it at twice net.core.rmem_max. */
const DEFAULT_RECV_BUFFER = 1 << 20;
/** Groups joined at once, at most (each is a socket and a kernel membership). */
export const DEFAULT_MAX_GROUPS = 1024;
/** How often the host's own addresses are read again for the loop guard. */
const OWN_REFRESH_MS = 5000;

export interface GroupSocketsOptions {
  /** The interface every group is joined on. */
  ifname: string;
  /** Default 4242. */
  port?: number;
  /** Per group; default 1 MiB. */
  recvBufferBytes?: number;
  /** Default DEFAULT_MAX_GROUPS. */
  maxGroups?: number;
  /** Each datagram received, with its group; not called for datagrams this host sent. */
  onDatagram: (group: string, buf: Buffer) => void;
}

export class GroupSockets {
  readonly ifname: string;
  readonly port: number;
  /** Datagrams received (own ones excluded), their bytes, receive errors, and own datagrams dropped. */
  readonly stats = { datagrams: 0, bytes: 0, errors: 0, own: 0 };
  private readonly socks = new Map<string, dgram.Socket>();
  private readonly recvBufferBytes: number;
  private readonly maxGroups: number;
  private own = new Set<string>();
  private ownAt = 0;
  private closed = false;

  private constructor(private readonly opts: GroupSocketsOptions) {
    this.ifname = opts.ifname;
    this.port = checkPort(opts.port ?? LCSYNC_PORT);
    this.recvBufferBytes = opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER;
    this.maxGroups = opts.maxGroups ?? DEFAULT_MAX_GROUPS;
  }

  /** Check the interface and options; opens nothing until the first join. */
  static open(opts: GroupSocketsOptions): GroupSockets {
    validateInterfaces([opts.ifname]);
    const g = new GroupSockets(opts);
    if (!Number.isInteger(g.recvBufferBytes) || g.recvBufferBytes < 1 || g.recvBufferBytes > 0x7fffffff) {
      throw new LcsyncError('USAGE', `invalid receive buffer size ${g.recvBufferBytes}`);
    }
    if (!Number.isInteger(g.maxGroups) || g.maxGroups < 1) throw new LcsyncError('USAGE', `invalid group limit ${g.maxGroups}`);
    return g;
  }

  /** Groups joined now. */
  get groups(): string[] {
    return [...this.socks.keys()];
  }

  has(group: string): boolean {
    return this.socks.has(group);
  }

  /**
   * Join `group` on the interface with a socket of its own; a second join does nothing. Throws USAGE for a
   * group that is not multicast, IO when the group limit is reached, or the system error of bind/join.
   */
  async join(group: string): Promise<void> {
    if (this.closed) throw new LcsyncError('INTERRUPTED', 'group sockets are closed');
    checkGroup(group);
    if (this.socks.has(group)) return;
    if (this.socks.size >= this.maxGroups) throw new LcsyncError('IO', `${this.maxGroups} groups joined already, not joining ${group}`);
    const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, recvBufferSize: this.recvBufferBytes });
    this.socks.set(group, sock);
    sock.on('message', (buf, rinfo) => this.onMessage(group, buf, rinfo.address));
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind({ port: this.port, address: group, exclusive: false }, () => {
          sock.off('error', reject);
          resolve();
        });
      });
      sock.on('error', () => this.stats.errors++);
      sock.addMembership(group, `::%${this.ifname}`);
    } catch (err) {
      this.socks.delete(group);
      await closeSocket(sock);
      throw fromSystemError(err, `join ${group} on ${this.ifname}`);
    }
    // A leave or close while binding: it found the socket in the map and closed it.
    if (this.closed || this.socks.get(group) !== sock) await closeSocket(sock);
  }

  /** Leave `group` and close its socket; leaving a group not joined does nothing. */
  async leave(group: string): Promise<void> {
    const sock = this.socks.get(group);
    if (!sock) return;
    this.socks.delete(group);
    await closeSocket(sock);
  }

  /** Drop the membership and add it again: the kernel reports the group afresh upstream. */
  rejoin(group: string): void {
    const sock = this.socks.get(group);
    if (!sock) return;
    try {
      sock.dropMembership(group, `::%${this.ifname}`);
    } catch {
      // Not joined yet (still binding): the join that follows reports it anyway.
    }
    try {
      sock.addMembership(group, `::%${this.ifname}`);
    } catch {
      this.stats.errors++;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const socks = [...this.socks.values()];
    this.socks.clear();
    await Promise.all(socks.map((s) => closeSocket(s)));
  }

  private onMessage(group: string, buf: Buffer, from: string): void {
    if (this.closed) return;
    if (this.isOwn(from)) {
      // Never pass on what this host sent (multicast loopback turned on by someone, or a second relay here).
      this.stats.own++;
      return;
    }
    this.stats.datagrams++;
    this.stats.bytes += buf.length;
    this.opts.onDatagram(group, buf);
  }

  private isOwn(address: string): boolean {
    const bare = address.split('%')[0]!.toLowerCase();
    const now = Date.now();
    if (now - this.ownAt >= OWN_REFRESH_MS) {
      this.ownAt = now;
      const own = new Set<string>();
      for (const addrs of Object.values(networkInterfaces())) {
        for (const a of addrs ?? []) if (a.family === 'IPv6') own.add(a.address.split('%')[0]!.toLowerCase());
      }
      this.own = own;
    }
    return this.own.has(bare);
  }
}
