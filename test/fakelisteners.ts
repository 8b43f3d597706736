/**
 * MLD listener events made by hand, for a Share on fake sockets: `report` is what the share's MLD
 * watcher would have seen on interface f0.
 */
import { EventEmitter } from 'node:events';
import { groupBytes } from '../src/core/wire/address.js';
import type { ListenerSource } from '../src/core/net/push.js';
import type { MldEvent } from '../src/core/net/mldsocket.js';

export class FakeListeners extends EventEmitter implements ListenerSource {
  activeGroups(): { group: string; ifname: string }[] {
    return [];
  }
  async close(): Promise<void> {}
  report(kind: MldEvent['kind'], key: Uint8Array, from: string): void {
    this.emit(kind, { kind, group: groupBytes(key), ifname: 'f0', from } satisfies MldEvent);
  }
}
