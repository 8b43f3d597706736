/**
 * A raw ICMPv6 socket on one interface, for MLD: a typed wrapper over native/icmp6.c (loaded by addon.ts).
 *
 * What the socket does (all set up in C, see the file's header): bound to the interface, an ICMPv6
 * type filter, joined to the given groups, multicast with hop limit 1 and a router alert hop-by-hop
 * option on what it sends, and the arrival interface of each message (IPV6_PKTINFO). Needs
 * CAP_NET_RAW: without it open() throws an Error with code EPERM.
 */
import { parseIPv6 } from '../wire/address.js';
import { loadAddon, type LcsyncAddon } from '../base/addon.js';

export interface Icmp6SocketOptions {
  ifname: string;
  /** Multicast groups (text) to join on the interface. */
  groups: string[];
  /** ICMPv6 types to receive; all others are filtered out by the kernel. */
  types: number[];
  /** One ICMPv6 message (without the IPv6 header), its sender's address and its arrival interface. */
  onMessage(buf: Buffer, source: string, ifindex: number): void;
  /** Receiving failed; nothing more arrives (close the socket). */
  onError(err: Error): void;
}

/** Why raw ICMPv6 sockets cannot be had (the addon is missing), or undefined when they can. */
export function icmp6UnavailableReason(): string | undefined {
  return loadAddon().error;
}

export class Icmp6Socket {
  private fd: number;

  private constructor(
    private readonly native: LcsyncAddon,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Throws when the addon is missing (check icmp6UnavailableReason() first) or with the system error. */
  static open(opts: Icmp6SocketOptions): Icmp6Socket {
    const { addon, error } = loadAddon();
    if (!addon) throw new Error(error);
    const groups = Buffer.concat(opts.groups.map((g) => parseIPv6(g)));
    const fd = addon.icmp6Open(opts.ifname, groups, Uint8Array.from(opts.types), (err, buf, source, ifindex) => {
      if (err) opts.onError(err);
      else opts.onMessage(buf!, source!, ifindex!);
    });
    return new Icmp6Socket(addon, fd);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** Become the namespace's multicast-routing socket (MRT6_INIT) to see MLDv1 reports to any group. */
  mrouteInit(): void {
    this.native.icmp6MrouteInit(this.ensureOpen());
  }

  /** Send one ICMPv6 message (checksum filled in by the kernel) to a multicast address; throws the system error. */
  send(dest: string, payload: Uint8Array): void {
    this.native.icmp6Send(this.ensureOpen(), parseIPv6(dest), payload);
  }

  /** Safe to call twice, also from onMessage. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    this.native.icmp6Close(fd);
  }

  private ensureOpen(): number {
    if (this.fd < 0) throw Object.assign(new Error('ICMPv6 socket is closed'), { code: 'EBADF' });
    return this.fd;
  }
}
