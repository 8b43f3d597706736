/**
 * The socket of share presence (docs/protocol.md#redundant-shares): joins the presence group on each
 * interface a share serves, sends heartbeats there with hop limit 1 (presence is per link: cooperating
 * shares split a link's listeners), and hands on what arrives with its sender's address. Knows sockets,
 * nothing about heartbeats.
 */
import dgram from 'node:dgram';
import { formatIPv6 } from '../wire/address.js';
import { bindSocket, checkGroup, checkPort, closeSocket } from './udp.js';

export interface PresenceSocketOptions {
  ifnames: string[];
  group: Buffer;
  port: number;
  /** A datagram arrived (from: the sender's address, as dgram gives it). */
  onMessage: (buf: Buffer, from: string) => void;
  onError?: (err: Error) => void;
}

export class PresenceSocket {
  private closed = false;

  private constructor(
    private readonly sock: dgram.Socket,
    private readonly group: string,
    private readonly port: number,
    private readonly ifnames: string[],
  ) {}

  static async open(opts: PresenceSocketOptions): Promise<PresenceSocket> {
    const group = formatIPv6(checkGroup(formatIPv6(opts.group)));
    const port = checkPort(opts.port);
    const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true });
    sock.on('message', (buf: Buffer, rinfo: dgram.RemoteInfo) => opts.onMessage(buf, rinfo.address));
    sock.on('error', (err: Error) => opts.onError?.(err));
    await bindSocket(sock, port, `bind [::]:${port}`);
    try {
      // Our own heartbeats are not news to us.
      sock.setMulticastLoopback(false);
      sock.setMulticastTTL(1);
      for (const ifname of opts.ifnames) sock.addMembership(group, `::%${ifname}`);
    } catch (err) {
      await closeSocket(sock);
      throw err;
    }
    return new PresenceSocket(sock, group, port, opts.ifnames);
  }

  /** Send `payload` to the group on every interface; a failure on one is reported, not thrown. */
  async send(payload: Buffer): Promise<void> {
    for (const ifname of this.ifnames) {
      if (this.closed) return;
      this.sock.setMulticastInterface(`::%${ifname}`);
      await new Promise<void>((resolve, reject) => this.sock.send(payload, this.port, this.group, (err) => (err ? reject(err) : resolve())));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeSocket(this.sock);
  }
}
