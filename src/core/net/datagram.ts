/**
 * The seams between the data plane and the sides above it. The sync side takes a
 * DatagramSource and the share side DatagramSinks, so a test (or another data plane, such as a
 * native receive path) plugs in without casts. MulticastReceiver and MulticastSender
 * (mcast-receiver.ts, mcast-sender.ts) are the implementations on real sockets.
 */

import type { TxPlan } from './txplan.js';

/** Datagrams arriving on the multicast groups joined. */
export interface DatagramSource {
  /** Start receiving a group's datagrams (idempotent). */
  join(group: string): void;
  /** Stop receiving a group's datagrams. */
  leave(group: string): void;
  /** Leave and join again at once, so the sender hears a fresh report. */
  rejoin(group: string): void;
  /**
   * Where joins are made later than asked (MulticastReceiver makes changes in bursts), a join the
   * kernel refused then is reported here instead of thrown by join().
   */
  onJoinFailed?(cb: (group: string, err: Error) => void): void;
  /** The one consumer of every datagram received, on any group. */
  onDatagram(cb: (buf: Buffer) => void): void;
  close(): Promise<void>;
}

/** Datagrams sent to multicast groups on one interface. */
export interface DatagramSink {
  /** Send in order; resolves when the datagrams are handed to the kernel (or dropped by it). */
  sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void>;
  /**
   * Whether sendPlan frames natively (net/txplan.ts); a sink without it, or that says false, gets
   * datagrams framed in JS through sendBatch.
   */
  readonly framesPlans?: boolean;
  /** Frame and send a plan's datagrams in order; as sendBatch otherwise. Only when framesPlans. */
  sendPlan?(plan: TxPlan): Promise<void>;
  close(): Promise<void>;
}
