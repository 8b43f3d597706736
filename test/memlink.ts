/**
 * A link in memory between one Share and one receiver (no root, no sockets): the receiver's joins
 * and leaves reach the share as listener events, and what the share sends on a group reaches the
 * receiver while it has that group joined. `tamper` sees every datagram on its way and may drop
 * or replace it (a spoofer, a lossy link); `inject` hands the receiver a datagram of its own.
 */
import { EventEmitter } from 'node:events';
import { parseIPv6 } from '../src/core/wire/address.js';
import type { DatagramSink, DatagramSource } from '../src/core/net/datagram.js';
import type { ListenerSource } from '../src/core/net/push.js';

export const MEM_IF = 'mem0';

export class MemoryLink {
  readonly joined = new Set<string>();
  /** Every join the receiver made, rejoins too. */
  readonly joinLog: string[] = [];
  /** Datagrams the share sent (whether anyone listened or not). */
  sent = 0;
  tamper?: (group: string, payload: Buffer) => Buffer | undefined;
  private deliver?: (b: Buffer) => void;
  private readonly events = new (class extends EventEmitter implements ListenerSource {
    constructor(private readonly link: MemoryLink) {
      super();
    }
    activeGroups(): { group: string; ifname: string }[] {
      return [...this.link.joined].map((group) => ({ group, ifname: MEM_IF }));
    }
    async close(): Promise<void> {}
  })(this);

  /** What the share listens to. */
  get listeners(): ListenerSource {
    return this.events;
  }

  /** What the share sends into. */
  readonly sink: DatagramSink = {
    sendBatch: async (items) => {
      for (const { group, payload } of items) {
        this.sent++;
        if (!this.joined.has(group)) continue;
        // The share reuses its batch buffer: the receiver gets its own copy, as from a socket.
        const copy = Buffer.from(payload);
        const out = this.tamper ? this.tamper(group, copy) : copy;
        if (out) this.deliver?.(out);
      }
    },
    close: async () => {},
  };

  /** What the receiver reads from. */
  readonly source: DatagramSource = {
    onDatagram: (cb) => {
      this.deliver = cb;
    },
    join: (g) => {
      this.joined.add(g);
      this.joinLog.push(g);
      this.emitLater('join', g);
    },
    leave: (g) => {
      this.joined.delete(g);
      this.emitLater('leave', g);
    },
    rejoin: (g) => {
      this.source.leave(g);
      this.source.join(g);
    },
    close: async () => {},
  };

  /** Hand the receiver a datagram now. */
  inject(b: Buffer): void {
    this.deliver?.(b);
  }

  private emitLater(kind: 'join' | 'leave', group: string): void {
    // Reports reach a share after the join returns, as over a wire.
    setImmediate(() => this.events.emit(kind, { kind, group: parseIPv6(group), ifname: MEM_IF, from: 'fe80::2' }));
  }
}
