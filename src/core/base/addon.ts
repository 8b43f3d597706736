/**
 * The lcsync native addon (lcsync.node; C sources in native/, one file per feature), loaded once.
 *
 * node-gyp-build finds it: a build from source in build/Release when there is one (a clone after
 * `npm ci`), else the prebuild shipped in the package (prebuilds/linux-x64/, made by prebuildify at
 * pack time). It may be missing (another platform and no compiler at install, or `node --no-addons`):
 * loadAddon() then says why, and each caller decides what that costs (data falls back to node:dgram,
 * MLD cannot run).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root, where node-gyp-build looks for build/ and prebuilds/: the nearest directory above this
 * module with a package.json. This module is src/core/base/addon.ts in a clone, dist/core/base/addon.js for the
 * library, and part of a chunk in dist/bundle/chunks/ for the CLI, so no fixed number of levels fits all three.
 */
function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return here;
  }
}

/** What the addon exports; see the header comment of each C file for the exact checks. */
export interface LcsyncAddon {
  // native/udp_batch.c
  open(ifindex: number, hopLimit: number, loopback: boolean): number;
  sendBatch(fd: number, port: number, addrs: Uint8Array, payloads: Uint8Array[]): number;
  close(fd: number): void;
  ifindex(name: string): number;
  recvOpen(port: number, rcvbuf: number, onBatch: (buf: Buffer, lengths: Uint32Array, count: number, errors: number) => void): number;
  recvBufferSize(fd: number): number;
  recvJoin(fd: number, group: Uint8Array, ifindex: number): void;
  recvLeave(fd: number, group: Uint8Array, ifindex: number): void;
  recvClose(fd: number): void;
  // native/tx_rounds.c (optional: an older build lacks them, and the share then frames in JS)
  txFrame?(prefixes: Uint8Array[], bufs: Uint8Array[], plan: Uint32Array, out: Uint8Array): number;
  txSend?(fd: number, port: number, prefixes: Uint8Array[], addrs: Uint8Array, bufs: Uint8Array[], plan: Uint32Array, gso: boolean, info: Uint32Array): number;
  txGsoAvailable?(fd: number): boolean;
  // native/icmp6.c
  icmp6Open(ifname: string, groups: Uint8Array, types: Uint8Array, onMessage: Icmp6Handler): number;
  icmp6MrouteInit(fd: number): void;
  icmp6Send(fd: number, dest: Uint8Array, payload: Uint8Array): number;
  icmp6Close(fd: number): void;
  // native/rx_assembler.c (optional: an older build without it still serves everything else)
  rxasmCreate?(): RxAssemblerHandle;
  rxasmRegister?(asm: RxAssemblerHandle, id: number, oid: Uint8Array, length: number, buf: Uint8Array | null, symbolSize: number): void;
  rxasmSpare?(asm: RxAssemblerHandle, buf: Uint8Array | null): number;
  rxasmUnregister?(asm: RxAssemblerHandle, oid: Uint8Array): boolean;
  rxasmClaim?(asm: RxAssemblerHandle, claimed: boolean): void;
  rxasmFeed?(asm: RxAssemblerHandle, buf: Uint8Array, lengths: Uint32Array, count: number, gsoSizes: Uint32Array | null): RxBatch | undefined;
  rxasmDrain?(asm: RxAssemblerHandle): RxBatch | undefined;
  rxParse?(buf: Uint8Array): [number, number, number, number, number] | undefined;
  rxasmOpen?(asm: RxAssemblerHandle, port: number, rcvbuf: number, gro: boolean, onBatch: (batch: RxBatch) => void): RxSocketHandle;
  rxasmGro?(sock: RxSocketHandle): boolean;
  rxasmRecvBufferSize?(sock: RxSocketHandle): number;
  rxasmJoin?(sock: RxSocketHandle, group: Uint8Array, ifindex: number): void;
  rxasmLeave?(sock: RxSocketHandle, group: Uint8Array, ifindex: number): void;
  rxasmClose?(sock: RxSocketHandle): void;
  // native/relay_fwd.c (optional: an older build lacks it, and the relay forwards through node:dgram)
  relayOpen?(upIfindex: number, port: number, rcvbuf: number, downIfindexes: Uint32Array, hopLimit: number, maxGroups: number, onError: (errors: number) => void): RelayHandle;
  relayRoute?(relay: RelayHandle, group: Uint8Array, mask: number): void;
  relayJoin?(relay: RelayHandle, group: Uint8Array): void;
  relayLeave?(relay: RelayHandle, group: Uint8Array): void;
  relayStats?(relay: RelayHandle, out: Float64Array): void;
  relayGroupStats?(relay: RelayHandle, group: Uint8Array, out: Float64Array): boolean;
  relayClose?(relay: RelayHandle): void;
  // native/statbatch.c (optional: an older build without it is served by lstatSync)
  lstatMany?(names: Uint8Array, out: BigInt64Array): number;
  // native/smallfiles.c (optional: an older build without it writes small files one by one on the JS thread)
  writeSmallFiles?(names: Uint8Array, data: Uint8Array[], params: Float64Array, out: BigInt64Array, done: () => void): void;
  // native/syncfs.c (optional: an older build without it makes writer.ts run coreutils `sync -f`)
  syncFs?(dir: Uint8Array, done: (errno: number) => void): void;
  // native/memtrim.c (optional: an older build without it leaves the C heap as glibc keeps it)
  mallocTrim?(): boolean;
  // native/gf256.c (optional: an older build without it leaves RaptorQ's arithmetic to wasm)
  gf256Combine?(out: Uint8Array, symbols: Uint8Array[], weights: Uint8Array, count: number, tables: Uint8Array): void;
  gf256CombineAt?(out: Uint8Array, base: Uint8Array, offsets: Uint32Array, weights: Uint8Array, count: number, tables: Uint8Array): void;
}

/** Opaque handle of native/relay_fwd.c (a type-tagged external). */
export type RelayHandle = { readonly __relay: unique symbol };

/** Opaque handles of native/rx_assembler.c (type-tagged externals). */
export type RxAssemblerHandle = { readonly __rxAssembler: unique symbol };
export type RxSocketHandle = { readonly __rxSocket: unique symbol };

/** What rx_assembler hands JS per batch (see the header of native/rx_assembler.c). */
export interface RxBatch {
  /** Datagrams for JS, back to back; lengths[i] each. */
  buf: Buffer;
  lengths: Uint32Array;
  count: number;
  /** Datagrams lost in the socket since the last batch. */
  errors: number;
  /** All datagrams and bytes seen since the last batch, and how many of them were dropped as junk or unasked. */
  datagrams: number;
  bytes: number;
  dropped: number;
  /** Messages that held several datagrams (UDP GRO coalesced them). */
  coalesced: number;
  /** Ids of requests that got a new symbol. */
  progressed: Uint32Array;
  /** [kind, id] pairs: 1 complete, 2 rejected, 3 needs decoding. */
  events: Uint32Array;
  /** Per "needs decoding" event, in order: source ESIs present, repair ESIs, repair symbols (T bytes each), T. */
  decodes: [Uint32Array, Uint32Array, Buffer, number][];
  /** When an event ended a request registered without a buffer: per event, the buffer its bytes are in (else undefined). */
  buffers?: (Buffer | undefined)[];
}

/** onMessage of a raw ICMPv6 socket: a message, or (once, then nothing more) the error that stopped receiving. */
export type Icmp6Handler = (err: Error | null, buf?: Buffer, source?: string, ifindex?: number) => void;

const REQUIRED: (keyof LcsyncAddon)[] = [
  'open', 'sendBatch', 'close', 'ifindex', 'recvOpen', 'recvBufferSize', 'recvJoin', 'recvLeave', 'recvClose',
  'icmp6Open', 'icmp6MrouteInit', 'icmp6Send', 'icmp6Close',
];

let loaded: { addon?: LcsyncAddon; error?: string } | undefined;

/** The addon, or why it cannot be had (one line). Loads at the first call only. */
export function loadAddon(): { addon?: LcsyncAddon; error?: string } {
  if (!loaded) {
    try {
      const require = createRequire(import.meta.url);
      const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
      const file = nodeGypBuild.path(packageRoot());
      const mod = require(file) as Partial<LcsyncAddon>;
      const missing = REQUIRED.filter((k) => typeof mod[k] !== 'function');
      if (missing.length > 0) throw new Error(`${file} lacks ${missing.join('/')} (rebuild it: npm rebuild lcsync)`);
      loaded = { addon: mod as LcsyncAddon };
    } catch (err) {
      loaded = { error: `cannot load the lcsync addon: ${(err as Error).message.split('\n')[0]}` };
    }
  }
  return loaded;
}

/** Where the addon would be loaded from, or undefined when node-gyp-build finds none (for tests and diagnostics). */
export function addonPath(): string | undefined {
  try {
    const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string };
    return nodeGypBuild.path(packageRoot());
  } catch {
    return undefined;
  }
}
