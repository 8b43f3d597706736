/**
 * A network in memory for the sync side (a DatagramSource): what is served on a group is delivered, on
 * the next turn, each time the group is joined, for as long as it stays joined; `emit` hands one
 * datagram to the receiver at once, as a neighbour's stray datagram would arrive.
 */
import type { DatagramSource } from '../src/core/net/datagram.js';
import { hash } from '../src/core/model/hash.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { encodeDatagram } from '../src/core/wire/packet.js';

/** The source-symbol datagrams of object `obj` (a tree object carries its transfer length, a chunk does not). */
export function sourceDatagrams(obj: Buffer, withLength: boolean): Buffer[] {
  const enc = new ObjectEncoder(obj);
  const out: Buffer[] = [];
  for (let esi = 0; esi < enc.K; esi++) {
    out.push(encodeDatagram({ oid: hash(obj), ...(withLength ? { transferLength: obj.length } : {}), esi, symbol: enc.sourceSymbol(esi) }));
  }
  enc.free();
  return out;
}

export class FakeNet implements DatagramSource {
  private cb: ((b: Buffer) => void) | undefined;
  readonly joined = new Set<string>();
  /** Every join, in order (rejoins too). */
  readonly joinLog: string[] = [];
  private readonly served = new Map<string, Buffer[]>();

  onDatagram(cb: (b: Buffer) => void): void {
    this.cb = cb;
  }
  join(g: string): void {
    this.joined.add(g);
    this.joinLog.push(g);
    setImmediate(() => {
      for (const d of this.served.get(g) ?? []) if (this.joined.has(g)) this.emit(d);
    });
  }
  leave(g: string): void {
    this.joined.delete(g);
  }
  rejoin(g: string): void {
    this.leave(g);
    this.join(g);
  }
  async close(): Promise<void> {}

  /** Hand one datagram to the receiver now, as the socket would. */
  emit(b: Buffer): void {
    this.cb?.(b);
  }
  /** Add datagrams to what a join of `group` delivers. */
  serve(group: string, datagrams: Buffer[]): void {
    this.served.set(group, [...(this.served.get(group) ?? []), ...datagrams]);
  }
}
