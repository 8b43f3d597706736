/**
 * What the multicast receiver and sender share: the checks of a group and a port, and binding and closing a
 * node:dgram socket.
 */
import type dgram from 'node:dgram';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { parseIPv6 } from '../wire/address.js';

/** Check that `group` is an IPv6 multicast address (no zone); return its 16 bytes. */
export function checkGroup(group: string): Buffer {
  let bytes: Buffer;
  try {
    if (group.includes('%')) throw new Error('zone');
    bytes = parseIPv6(group);
  } catch {
    throw new LcsyncError('USAGE', `not an IPv6 multicast group: ${group}`);
  }
  if (bytes[0] !== 0xff) throw new LcsyncError('USAGE', `not an IPv6 multicast group: ${group}`);
  return bytes;
}

/** Check that `port` is a UDP port number (1..65535); return it. */
export function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LcsyncError('USAGE', `invalid UDP port ${port}`);
  return port;
}

/** Bind `sock` and wait until it listens or fails. */
export function bindSocket(sock: dgram.Socket, port: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      sock.off('listening', onListening);
      try {
        sock.close();
      } catch {
        // Not running: nothing to close.
      }
      reject(fromSystemError(err, what));
    };
    const onListening = () => {
      sock.off('error', onError);
      resolve();
    };
    sock.once('error', onError);
    sock.once('listening', onListening);
    sock.bind(port, '::');
  });
}

/** Close `sock`; resolves once closed (at once when it was closed already). */
export function closeSocket(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve(); // Already closed.
    }
  });
}
