/**
 * The network interfaces lcsync may use: which ones carry multicast when none are named, whether named ones
 * exist, and whether a loopback interface has the route multicast needs. Reads os.networkInterfaces(), sysfs
 * and /proc/net/ipv6_route; opens no socket.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { LcsyncError } from '../base/errors.js';
import { parseIPv6 } from '../wire/address.js';

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_MULTICAST = 0x1000;

function isIPv6(family: string | number): boolean {
  // Node 18.0-18.3 reported the family as a number.
  return family === 'IPv6' || family === 6;
}

/** Interface flags from sysfs, or undefined when they cannot be read. */
function sysFlags(ifname: string): number | undefined {
  if (!/^[^/\0]+$/.test(ifname) || ifname === '.' || ifname === '..') return undefined;
  try {
    const text = readFileSync(`/sys/class/net/${ifname}/flags`, 'utf8').trim();
    const v = Number.parseInt(text, 16);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The interfaces a share or sync uses when none are named: those with an IPv6 address that
 * are not loopback and, where sysfs tells, are up and multicast-capable. Sorted by name.
 */
export function multicastInterfaces(): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (!addrs || !addrs.some((a) => isIPv6(a.family))) continue;
    if (addrs.some((a) => a.internal)) continue;
    const flags = sysFlags(name);
    if (flags !== undefined) {
      if (flags & IFF_LOOPBACK) continue;
      if ((flags & (IFF_UP | IFF_MULTICAST)) !== (IFF_UP | IFF_MULTICAST)) continue;
    }
    out.push(name);
  }
  return out.sort();
}

/** Throw a USAGE error naming the first interface this host does not have. */
export function validateInterfaces(names: string[]): void {
  if (names.length === 0) throw new LcsyncError('USAGE', 'no network interface to use (name one with --interface)');
  const known = Object.keys(os.networkInterfaces()).sort();
  for (const name of names) {
    if (!known.includes(name)) {
      const list = known.length > 0 ? known.join(', ') : 'none';
      throw new LcsyncError('USAGE', `unknown interface "${name}" (available: ${list})`);
    }
  }
}

/** Bits of the flags column of /proc/net/ipv6_route. */
const RTF_UP = 0x0001;
const RTF_REJECT = 0x0200;
/**
 * Where lcsync sends: every object and signature group is in ff1e::/16. (MLD reports need no route:
 * the kernel sends them straight on the device.)
 */
const NEEDED_GROUPS = ['ff1e::'];

/** The command that gives `lo` what it lacks (see loopbackRoutesMulticast). */
export const LOOPBACK_ROUTE_COMMAND = 'ip -6 route add local ff00::/8 dev lo';

/**
 * Whether the IPv6 routing table (the text of /proc/net/ipv6_route, every table) lets multicast
 * travel on the loopback interface `ifname`. Linux gives lo no ff00::/8 route (other interfaces get
 * one in table local), so every send there fails with ENETUNREACH, while MLD reports, which the
 * kernel sends on the device without a route, still reach the share: it would see its listeners and
 * "send" to them in vain. Linux also turns every route via lo into a reject route unless the route
 * is of type local, so `ip -6 route add multicast ff00::/8 dev lo` silently drops what it carries. A
 * `local` route for ff00::/8 on lo works: datagrams loop back through lo to the sockets that joined
 * the group there, and the share sees its local listeners by MLD as on any link.
 * Pure: true when non-reject routes on `ifname` cover the object groups (ff1e::/16).
 */
export function loopbackRoutesMulticast(ipv6Route: string, ifname: string): boolean {
  const routes: { prefix: Buffer; len: number }[] = [];
  for (const line of ipv6Route.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] !== ifname || !/^[0-9a-f]{32}$/i.test(f[0]!)) continue;
    const flags = Number.parseInt(f[8]!, 16);
    const len = Number.parseInt(f[1]!, 16);
    if (!Number.isFinite(flags) || !(flags & RTF_UP) || flags & RTF_REJECT || !(len >= 0 && len <= 128)) continue;
    routes.push({ prefix: Buffer.from(f[0]!, 'hex'), len });
  }
  return NEEDED_GROUPS.every((g) => {
    const addr = parseIPv6(g);
    return routes.some((r) => prefixCovers(r.prefix, r.len, addr));
  });
}

function prefixCovers(prefix: Buffer, len: number, addr: Buffer): boolean {
  for (let bit = 0; bit < len; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((prefix[bit >> 3]! & mask) !== (addr[bit >> 3]! & mask)) return false;
  }
  return true;
}

/**
 * Why `ifname` cannot carry lcsync's multicast, as a one-line message, or undefined when it can
 * (or is no loopback interface: other links get their multicast route from the kernel).
 */
export function loopbackMulticastProblem(ifname: string): string | undefined {
  const flags = sysFlags(ifname);
  const loopback = flags !== undefined ? (flags & IFF_LOOPBACK) !== 0 : (os.networkInterfaces()[ifname] ?? []).some((a) => a.internal);
  if (!loopback) return undefined;
  let routes: string;
  try {
    routes = readFileSync('/proc/net/ipv6_route', 'utf8');
  } catch {
    // No routing table to read (IPv6 off, or not Linux): the join or send will say what is wrong.
    return undefined;
  }
  if (loopbackRoutesMulticast(routes, ifname)) return undefined;
  return `${ifname} carries no IPv6 multicast until it has a route for it: run "${LOOPBACK_ROUTE_COMMAND.replace(/ lo$/, ` ${ifname}`)}" once as root, or share and sync over a veth pair (see "Try it on one machine" in the README)`;
}
