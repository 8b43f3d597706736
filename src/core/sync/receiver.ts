/**
 * Receiving objects: join an object's group, feed its datagrams to a RaptorQ
 * decoder, verify what comes out, leave. Node's dgram cannot tell which group a
 * datagram came on, so everything is demultiplexed by OID:
 *  - chunks: the OID is the leaf hash we asked for, and the length is known;
 *  - tree, directory and symlink objects: the OID is not known in advance, so
 *    each OID seen on an OTI datagram gets a decoder, and a decoded object
 *    (BLAKE3 = OID) is offered to the pending requests, each of which checks that
 *    the object really is the one its hash names.
 * Equal content is one OID under several groups: the tree parts of a file with
 * long runs of equal chunks, equal parts of equal files, two directories with
 * equal entries. So a finished tree object is kept by OID and offered to every
 * later request, and its datagrams are dropped only while it is kept (never
 * "done" without the bytes at hand: a request for it would wait for ever).
 * Where the source assembles chunks natively (DatagramSource.assembly, net/rx-assembler.ts) and the
 * share is not encrypted, chunk requests are registered there: their datagrams never reach JS, and
 * a report says when one is complete (verified), rejected, or needs RaptorQ decoding, which then
 * goes on here as below. Encrypted shares keep the JS path (the bytes on the wire are sealed).
 * Nothing here trusts a datagram: the packet decoder validates every field, and
 * every object is verified before anyone sees it.
 */
import { LcsyncError } from '../base/errors.js';
import { allowOptimizing } from '../base/tiering.js';
import { hash, toHex, type Hash } from '../model/hash.js';
import { formatIPv6, groupAddress, groupBytes } from '../wire/address.js';
import { cursorKey, cursorTag, decodeCursor, decodeDatagram, decodeGoneNotice, goneNoticeKey, LARGE_SYMBOL_SIZE, OID_LEN, sourceSymbols, SYMBOL_SIZE } from '../wire/packet.js';
import { ObjectDecoder } from '../fec/fec.js';
import { ASSEMBLY_COMPLETE, ASSEMBLY_DECODE, ASSEMBLY_LACKING, ASSEMBLY_REJECTED, type AssemblyReport, type ChunkAssembly, type DatagramSource } from '../net/datagram.js';
import type { ObjectCipher } from '../wire/crypto.js';
import { KeptObjects } from './kept.js';

export interface ReceiveStats {
  datagrams: number;
  bytes: number;
  /** Datagrams that failed validation or belonged to no request. */
  ignored: number;
  objects: number;
  /** Tree, directory and symlink objects decoded off the wire and verified (each distinct one once, while kept). */
  treeObjects: number;
  /** Decoded objects that failed verification (spoofed or corrupted), undecryptable ones included. */
  rejected: number;
  /** Decoded objects that did not open with the key (forged, or sealed with another key): dropped like forged ones. */
  undecryptable: number;
  rejoins: number;
  /** Gone notices accepted: the share said an object we waited for will never come. */
  notices: number;
  /** Groups joined (a group joined by several requests at once counts once; rejoins not counted). */
  joins: number;
  /** Lacking reports of chunks (DatagramSource.reportLacking): when a chunk's last source symbol came with others lost, and again while it stays incomplete (LACKING_RECHECK_MS). */
  lackingReported: number;
}

export interface ReceiverOptions {
  cipher?: ObjectCipher;
  /** Re-join a group whose symbols stopped coming this long before the object completed: a round ran out. */
  stallMs?: number;
  /** Re-join a group that sent nothing at all this long after joining (a lost join, or a busy sender). */
  firstSymbolMs?: number;
  /** Give up on a request that has seen no datagram at all for this long. */
  idleTimeoutMs?: number;
  /** A check of a decoded object threw something other than an integrity error: a bug, reported with its stack. */
  onBug?: (error: Error) => void;
}

/** Most tree-object decoders alive at once: bounds memory under a flood of bogus OIDs. */
const MAX_TREE_DECODERS = 64;
/**
 * Most bytes the tree-object decoders may claim together. Any datagram with an OTI opens a
 * decoder whose length the sender chose (up to MAX_OBJECT, 10 MiB), so without this a flood of
 * 64 bogus OIDs would make us hold 640 MiB. The oldest decoders give way first, those of objects
 * decoded before ahead of the rest (treeDecoderToDrop).
 */
const MAX_TREE_DECODER_BYTES = 32 * 2 ** 20;
/**
 * How long objects may fail to open, with none opening, before the key is called wrong (or the
 * timeout, when shorter). A forger's object among the genuine ones does not count: once one
 * object opens, only the timeout rule of wrongKey() applies.
 */
const KEY_CHECK_MS = 5000;
/** Chunk OIDs remembered as finished so their leftover datagrams are dropped cheaply. */
const MAX_DONE = 4096;

interface Waiter {
  group: string;
  /** The gone-notice group joined after the request first stalled (packet.ts goneNoticeKey). */
  notice?: string;
  /** Whether anything arrived since the last (re)join. */
  progressed: boolean;
  /** When a symbol last arrived; rejoins do not reset it (it drives the timeout). */
  lastHeard: number;
  lastProgress: number;
  started: number;
  /** When the request was made (started is reset by rejoins). */
  asked: number;
  resolve(obj: Buffer): void;
  reject(err: Error): void;
}

interface ChunkWaiter extends Waiter {
  leaf: Hash;
  length: number;
  /** The symbol size its datagrams have (ObjectReceiver.symbolSize when it was asked for); others are ignored. */
  T: number;
  decoder?: ObjectDecoder;
  /** With native assembly: the request's id there, and the buffer it fills. */
  id?: number;
  buf?: Buffer;
  /** Another fetch of the same chunk waits on this one: its bytes have more than one user. */
  shared?: boolean;
}

/**
 * Chunk buffers kept for reuse (see ObjectReceiver.release): at least the chunks in flight
 * (sync --parallel, 128 by default) plus those being written.
 */
const CHUNK_POOL_MAX = 256;
/**
 * Chunks found lacking (onAssembled) are reported together this long after the first of them: each report
 * is a raw ICMPv6 send that the kernel carries through the link at once, about 20-40 us of the receiver's
 * CPU. At 5% loss (64 MiB, about 1,550 chunks reported) the batches of one turn of the event loop made 650-720
 * reports, this wait 200-240; against a hold of 30 ms or more it is nothing.
 */
const LACKING_REPORT_MS = 2;
/**
 * A chunk found lacking that is still incomplete this long after it was reported is reported again, up to
 * LACKING_REPORTS times in all: the share's answer to the first report (its hold ended, the rest of the round
 * sent) has come by then, so what is still lacking is more than that round's margin, and a lone listener's
 * share answers a report after the round with a small burst (share/stream.ts). Without it such a chunk waited
 * for the trickle (a symbol every 60 ms) or the stall re-ask (400 ms), with its buffer.
 */
const LACKING_RECHECK_MS = 20;
const LACKING_REPORTS = 4;
const POOLED_SIZE = 32768;
/**
 * The memory of a pooled buffer (a view of its first POOLED_SIZE bytes): room for a whole chunk's 24
 * source symbols at the larger symbol size (32,832 bytes), so that such a chunk too decodes where its
 * symbols were placed (decodeAssembled).
 */
const POOLED_BACKING = sourceSymbols(POOLED_SIZE, LARGE_SYMBOL_SIZE) * LARGE_SYMBOL_SIZE;
/**
 * Where a chunk of `length` bytes in symbols of T bytes can be decoded in place (ObjectDecoder's
 * space, all K symbols): its buffer when that is exactly their size (a whole chunk at T = 1024), or
 * the whole memory of a pooled one, which holds them at either size (a whole chunk at T = 1368);
 * else undefined, and the symbols are copied into a decoder of their own.
 */
function decodeSpace(buf: Buffer | undefined, length: number, T: number): Buffer | undefined {
  const need = sourceSymbols(length, T) * T;
  if (buf?.length === need) return buf;
  if (buf?.length === POOLED_SIZE && length === POOLED_SIZE && buf.byteOffset === 0 && buf.buffer.byteLength === POOLED_BACKING) return Buffer.from(buf.buffer, 0, need);
  return undefined;
}

/**
 * Spare buffers the native assembler holds for chunks registered without one (it takes one at a chunk's
 * first symbol): more than the chunks a share has under way at once between two reports to JS, which
 * tops them up after each. Fewer only cost an allocation in C and a copy.
 */
const ASSEMBLY_SPARES = 16;
/**
 * Chunks assembled natively after which a receiver lets TurboFan in after all (base/tiering.ts): its per-chunk
 * JavaScript, run in baseline code, cost 7% more CPU over 1 GiB and 28% over 4 GiB; within 128 MiB it cost
 * nothing measurable, and TurboFan's own memory is then most of what a receiver holds above node's.
 */
const OPTIMIZE_AFTER_CHUNKS = 4096;
/**
 * Symbols that chunks decoded in JavaScript took in (repair symbols handed over by the assembler, and every
 * later datagram of a handed-over chunk) after which a receiver lets TurboFan in: RaptorQ's arithmetic runs per
 * symbol. Measured (64 MiB, one receiver, `BENCH_SYNC_ENV` preload A/B, twentieth session): at 5% loss (3,260-3,380
 * symbols counted in three runs) baseline code cost no CPU and TurboFan 3 MiB of RSS (66.2 against 69.1 MiB), so this
 * is not reached; at 20% baseline code all through cost 15-25% more CPU, so heavy loss reaches it early.
 */
const OPTIMIZE_AFTER_DECODED_SYMBOLS = 4096;

interface TreeWaiter extends Waiter {
  key: Hash;
  /** Give up at this time whatever arrives (used for optional objects such as signatures). */
  deadline?: number;
  accept(obj: Buffer): boolean;
}

export class ObjectReceiver {
  readonly stats: ReceiveStats = { datagrams: 0, bytes: 0, ignored: 0, objects: 0, treeObjects: 0, rejected: 0, undecryptable: 0, rejoins: 0, notices: 0, joins: 0, lackingReported: 0 };
  /** Objects that opened with the key and hashed to their OID: proof that the key is the share's. */
  private opened = 0;
  /** When an object first and last failed to open. */
  private firstUndecryptableAt = 0;
  private undecryptableAt = 0;
  private readonly onBug?: (error: Error) => void;
  /**
   * Set once a share said that an object we wait for is gone (its source changed and was
   * re-indexed): every request then fails with it, since what is being fetched can no longer
   * complete as one consistent version.
   */
  gone?: LcsyncError;
  private readonly chunks = new Map<string, ChunkWaiter>();
  /** Native chunk assembly (no cipher only), and its requests by id. */
  private readonly assembly?: ChunkAssembly;
  private readonly assembled = new Map<number, ChunkWaiter>();
  /** Groups of chunks found lacking (onAssembled), reported together LACKING_REPORT_MS after the first. */
  private readonly lacking: Buffer[] = [];
  private lackingQueued = false;
  /** Chunks reported lacking, oldest first: looked at again LACKING_RECHECK_MS after each report. */
  private lackingWatch: { w: ChunkWaiter; due: number; reports: number }[] = [];
  private lackingRecheck: NodeJS.Timeout | undefined;
  private stopAssembly?: () => void;
  private readonly trees = new Set<TreeWaiter>();
  /** Cursor asks waiting for their answer, by the tag the answer carries (packet.ts, the cursor). */
  private readonly cursors = new Map<string, (chunk: number | undefined) => void>();
  /** Decoders of tree objects by `OID/length`, oldest first. */
  private readonly treeDecoders = new Map<string, { dec: ObjectDecoder; length: number }>();
  private treeDecoderBytes = 0;
  private readonly done = new Set<string>();
  /**
   * Tree OIDs whose last decode did not verify. Their datagrams are still decoded (the genuine
   * object may come next) but no longer count as a sender answering: with no key, an encrypted
   * share's objects never verify, and the request must time out with a hint, not wait for ever.
   */
  private readonly failed = new Set<string>();
  /**
   * Verified tree objects by OID, least recently used first: those handed out (a later request
   * may name the same bytes under another key: an equal tree part, an equal directory) and those
   * wanted by nobody yet (another process on this host may have joined a group we are about to
   * ask for). Datagrams of a kept OID are dropped; once evicted, its datagrams decode again.
   */
  private readonly kept = new KeptObjects();
  /** Tree groups joined ahead of their fetch (holdTree), not released yet. */
  private treeHolds = 0;
  /**
   * Tree OIDs decoded and verified lately (at most MAX_DONE). Their datagrams still open a decoder
   * once they are no longer kept (a request may name the object again), but such a decoder is
   * the first to give way to another (treeDecoderToDrop).
   */
  private readonly treeDone = new Set<string>();
  private readonly groupUsers = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly stallMs: number;
  private readonly firstSymbolMs: number;
  private readonly cipher?: ObjectCipher;
  private readonly idleTimeoutMs: number;
  /**
   * When any request last made progress. A request times out only when the whole transfer has
   * been idle that long: a paced sender busy with other groups is still answering.
   */
  private lastHeardAny = Date.now();
  /** The tick's interval, and when it last ran (see tick). */
  private readonly tickMs: number;
  private lastTickAt = Date.now();
  /** When a tree datagram (of an OID not known to fail) last arrived. */
  private treeHeardAt = 0;
  private closed = false;
  /** Chunk buffers free for reuse, and those handed out that release() may take back. */
  private readonly chunkPool: Buffer[] = [];
  /** Whether this receiver has given the assembler spares (topUpSpares). */
  private sparesGiven = false;
  /** Chunks completed below JavaScript so far (OPTIMIZE_AFTER_CHUNKS). */
  private assembledChunks = 0;
  /** Symbols taken in by chunks decoded in JavaScript so far (OPTIMIZE_AFTER_DECODED_SYMBOLS). */
  private decodedSymbols = 0;
  private readonly handedOut = new WeakSet<Buffer>();
  /** The last OID a datagram carried, and its hex (oidHex). */
  private readonly lastOid = Buffer.alloc(OID_LEN);
  private lastOidHex: string | undefined;
  /** The last tree decoder's slot and what it was made of (onTreeDatagram). */
  private lastSlot = '';
  private lastSlotOid = '';
  private lastSlotLength = -1;
  private lastSlotT = -1;
  /**
   * The symbol size T chunks are asked for in: the share's, as the last object a request accepted
   * showed (the T its datagrams had). Learnt from verified objects only, so a forged datagram of
   * the other size cannot change it; 1024, the C protocol's, until then.
   */
  private symbolSize = SYMBOL_SIZE;
  /** The T each verified tree object came in (what takeKept learns symbolSize from). */
  private readonly objectSymbolSize = new WeakMap<Buffer, number>();

  constructor(
    private readonly rx: DatagramSource,
    opts: ReceiverOptions = {},
  ) {
    this.cipher = opts.cipher;
    this.stallMs = opts.stallMs ?? 400;
    this.firstSymbolMs = opts.firstSymbolMs ?? 3000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? Infinity;
    this.onBug = opts.onBug;
    rx.onDatagram((buf) => this.onDatagram(buf));
    if (rx.assembly && !this.cipher) {
      this.assembly = rx.assembly;
      this.stopAssembly = this.assembly.onAssembled((r) => this.onAssembled(r));
    } else {
      // Every datagram comes through JavaScript: that code is hot enough to optimize (base/tiering.ts).
      allowOptimizing();
    }
    rx.onJoinFailed?.((group, err) => this.onJoinFailed(group, err));
    this.tickMs = Math.min(100, this.stallMs / 2);
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  /**
   * Done with the bytes of a chunk fetchChunk() resolved with: they may be reused for another chunk,
   * so the caller must not touch them afterwards (nor have handed them to anyone who will). A
   * receiver assembling chunks natively fills a buffer per chunk in flight; each new one, freed
   * only when the garbage collector got round to it, was tens of MiB of a receiver's peak RSS
   * (ArrayBuffers of written chunks waiting for collection). Optional: bytes never released are
   * left to the garbage collector.
   */
  release(bytes: Buffer): void {
    if (!this.handedOut.delete(bytes)) return;
    this.giveBuffer(bytes);
    // Straight on to the assembler when it is short of spares: the buffer just written is the next one filled.
    if (this.sparesGiven && !this.closed) this.topUpSpares();
  }

  private takeBuffer(length: number): Buffer {
    if (length !== POOLED_SIZE) return Buffer.allocUnsafe(length);
    return this.chunkPool.pop() ?? Buffer.allocUnsafeSlow(POOLED_BACKING).subarray(0, POOLED_SIZE);
  }

  /** Give the native assembler spare buffers up to ASSEMBLY_SPARES. */
  private topUpSpares(): void {
    const a = this.assembly;
    if (!a?.spare) return;
    this.sparesGiven = true;
    for (let n = a.spare(); n < ASSEMBLY_SPARES; ) n = a.spare(this.takeBuffer(POOLED_SIZE));
  }

  private giveBuffer(buf: Buffer): void {
    if (buf.length === POOLED_SIZE && buf.byteOffset === 0 && buf.buffer.byteLength === POOLED_BACKING && this.chunkPool.length < CHUNK_POOL_MAX) this.chunkPool.push(buf);
  }

  /** Fetch a chunk: resolves with bytes whose BLAKE3 is `leaf`. */
  fetchChunk(leaf: Hash, length: number): Promise<Buffer> {
    if (this.gone) return Promise.reject(this.gone);
    if (this.closed) return Promise.reject(new LcsyncError('INTERRUPTED', 'interrupted'));
    const key = toHex(leaf);
    const existing = this.chunks.get(key);
    if (existing) {
      existing.shared = true;
      return new Promise((resolve, reject) => chainWaiter(existing, resolve, reject));
    }
    this.done.delete(key);
    return new Promise((resolve, reject) => {
      const now = Date.now();
      // The group's bytes go to the join as they are: formatted for the maps, not parsed back.
      const bytes = groupBytes(leaf);
      const w: ChunkWaiter = { group: formatIPv6(bytes), leaf, length, T: this.symbolSize, progressed: false, lastProgress: now, lastHeard: now, started: now, asked: now, resolve, reject };
      if (this.assembly) {
        // A whole chunk gets its buffer at its first symbol, from the assembler's spares: of the chunks
        // in flight, only those the share is sending hold one (a buffer each was 4 MiB of peak RSS).
        const lazy = length === POOLED_SIZE && this.assembly.spare !== undefined;
        const buf = lazy ? undefined : this.takeBuffer(length);
        // Topped up after each report with events (onAssembled), and here before the first.
        if (lazy && !this.sparesGiven) this.topUpSpares();
        // Undefined when another consumer of the source has it registered: then it comes to them, and
        // to us only once they are done with it (a rejoin brings it again).
        const id = this.assembly.register(leaf, length, w.T, buf);
        if (id !== undefined) {
          w.id = id;
          w.buf = buf;
          this.assembled.set(id, w);
        } else if (buf) this.giveBuffer(buf);
      }
      this.chunks.set(key, w);
      this.join(w.group, bytes);
    });
  }

  /**
   * Fetch the tree/dir/link object named by `key`: resolves with the first
   * verified object that `accept` confirms is the one `key` names.
   */
  fetchTree(key: Hash, accept: (obj: Buffer) => boolean, opts: { deadlineMs?: number } = {}): Promise<Buffer> {
    if (this.gone) return Promise.reject(this.gone);
    // Closed: no timer would ever end the request.
    if (this.closed) return Promise.reject(new LcsyncError('INTERRUPTED', 'interrupted'));
    const kept = this.takeKept(accept);
    if (kept) return Promise.resolve(kept);
    return new Promise((resolve, reject) => {
      const now = Date.now();
      const w: TreeWaiter = { group: groupAddress(key), key, accept, progressed: false, lastProgress: now, lastHeard: now, started: now, asked: now, resolve, reject };
      if (opts.deadlineMs !== undefined) w.deadline = now + opts.deadlineMs;
      this.trees.add(w);
      this.join(w.group);
    });
  }

  /**
   * The first verified tree object kept from earlier that `accept` confirms, without joining
   * anything: what fetchTree answers at once with.
   */
  takeKept(accept: (obj: Buffer) => boolean): Buffer | undefined {
    // Most recently used first: the equal part just before this one is the likeliest match.
    for (const [oid, obj] of this.kept.entries().reverse()) {
      if (tryAccept({ accept }, obj, this.onBug)) {
        this.symbolSize = this.objectSymbolSize.get(obj) ?? this.symbolSize;
        this.kept.touch(oid);
        this.stats.objects++;
        return obj;
      }
    }
    return undefined;
  }

  /**
   * Join the group of a tree object that will be asked for soon, so that it travels now, beside
   * the object being fetched: what decodes is kept (KeptObjects) and answers the fetchTree that
   * asks for it later at once. A file's tree parts are checked one after another (each against the
   * parts before it, session.ts), but need not travel one after another: a join, the share's answer
   * and the leave per part were a round trip each. Returns the release of the join (once).
   */
  holdTree(key: Hash): () => void {
    if (this.closed || this.gone) return () => undefined;
    const group = groupAddress(key);
    try {
      this.join(group);
    } catch {
      return () => undefined; // best effort: the fetch itself joins (and reports a failure) later
    }
    // Its datagrams are decoded while held, also between two fetches (onTreeDatagram).
    this.treeHolds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.treeHolds--;
      this.leave(group);
    };
  }

  /**
   * Ask the share where it is in the file whose Merkle root is `root` (packet.ts, the cursor):
   * resolves with the chunk it is sending now, CURSOR_IDLE when it sends none of the file, or
   * undefined when no answer came within `waitMs` (a C share never answers).
   */
  askCursor(root: Hash, waitMs: number): Promise<number | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const key = cursorKey(root);
    const tag = cursorTag(key);
    if (this.cursors.has(tag)) return Promise.resolve(undefined);
    const group = groupAddress(key);
    return new Promise((resolve) => {
      const done = (chunk: number | undefined) => {
        clearTimeout(timer);
        this.cursors.delete(tag);
        this.leave(group);
        resolve(chunk);
      };
      const timer = setTimeout(() => done(undefined), waitMs);
      this.cursors.set(tag, done);
      try {
        this.join(group);
      } catch {
        clearTimeout(timer);
        this.cursors.delete(tag);
        resolve(undefined);
      }
    });
  }

  /**
   * Whether symbols of tree objects arrived within `ms`; with `unfinished`, only while some tree
   * object is still being decoded (something is on its way).
   */
  treeHeardWithin(ms: number, unfinished = false): boolean {
    return (!unfinished || this.treeDecoders.size > 0) && Date.now() - this.treeHeardAt < ms;
  }

  /** Datagrams the socket lost so far (DatagramSource.lostDatagrams); 0 where it cannot tell. */
  get lostDatagrams(): number {
    return this.rx.lostDatagrams ?? 0;
  }

  /**
   * Take in what the native assembler holds back (which requests progressed, datagrams and bytes
   * counted below JS): before stats are read. The stall checks do it themselves.
   */
  catchUp(): void {
    this.assembly?.drain?.();
  }

  close(): void {
    if (this.closed) return;
    // The counts of the last datagrams, for the summary.
    this.catchUp();
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.lackingRecheck);
    this.lackingWatch = [];
    const err = new LcsyncError('INTERRUPTED', 'interrupted');
    for (const w of this.chunks.values()) this.finishChunk(w, err);
    for (const w of [...this.trees]) this.finishTree(w, err);
    for (const answer of [...this.cursors.values()]) answer(undefined);
    this.stopAssembly?.();
    for (const d of this.treeDecoders.values()) d.dec.free();
    this.treeDecoders.clear();
    this.treeDecoderBytes = 0;
    this.kept.clear();
    this.failed.clear();
    this.treeDone.clear();
  }

  private join(group: string, bytes?: Buffer): void {
    const n = this.groupUsers.get(group) ?? 0;
    // Counted only once joined: a join that throws must not leave a user that never leaves.
    if (n === 0) {
      this.rx.join(group, bytes);
      this.stats.joins++;
    }
    this.groupUsers.set(group, n + 1);
  }

  private leave(group: string): void {
    const n = (this.groupUsers.get(group) ?? 1) - 1;
    if (n > 0) {
      this.groupUsers.set(group, n);
      return;
    }
    this.groupUsers.delete(group);
    if (!this.closed) this.rx.leave(group);
  }

  /** The kernel refused a join made after it was asked for: the requests on that group fail as if join() had thrown. */
  private onJoinFailed(group: string, err: Error): void {
    if (this.closed) return;
    // Not joined: nothing to leave when those requests finish.
    this.groupUsers.delete(group);
    // A gone-notice group is best effort (see tick): the request goes on without it.
    for (const w of [...this.chunks.values(), ...this.trees]) if (w.notice === group) w.notice = undefined;
    for (const w of this.chunks.values()) if (w.group === group) this.finishChunk(w, err);
    for (const w of [...this.trees]) if (w.group === group) this.finishTree(w, err);
  }

  private markDone(oid: string): void {
    if (this.done.size >= MAX_DONE) {
      const first = this.done.values().next().value;
      if (first !== undefined) this.done.delete(first);
    }
    this.done.add(oid);
  }

  private onDatagram(buf: Buffer): void {
    this.stats.datagrams++;
    this.stats.bytes += buf.length;
    const d = decodeDatagram(buf);
    if (!d) {
      const c = decodeCursor(buf);
      const answer = c && this.cursors.get(c.tag);
      if (answer) return answer(c.chunk);
      const n = decodeGoneNotice(buf);
      if (!n || !this.onGoneNotice(n.body, n.sealed)) this.stats.ignored++;
      return;
    }
    const oid = this.oidHex(d.oid);
    // A chunk and a tree part may have equal bytes (one OID); the OTI tells them apart.
    if (d.transferLength === undefined ? this.done.has(oid) : this.kept.has(oid)) {
      this.stats.ignored++;
      return;
    }
    if (d.transferLength === undefined) this.onChunkDatagram(oid, d.esi, d.symbol);
    else this.onTreeDatagram(oid, d.transferLength, d.esi, d.symbol);
  }

  /**
   * toHex(oid), remembered for the last OID seen: a tree object's datagrams come in runs (a bundle
   * part is a thousand of them), and a new hex string per datagram was garbage for nothing.
   */
  private oidHex(oid: Buffer): string {
    if (this.lastOidHex !== undefined && oid.equals(this.lastOid)) return this.lastOidHex;
    oid.copy(this.lastOid);
    return (this.lastOidHex = toHex(oid));
  }

  private onChunkDatagram(oid: string, esi: number, symbol: Buffer): void {
    const w = this.chunks.get(oid);
    if (!w) {
      this.stats.ignored++;
      return;
    }
    if (symbol.length !== w.T) {
      this.stats.ignored++;
      return;
    }
    w.decoder ??= new ObjectDecoder(w.length + (this.cipher?.overhead ?? 0), undefined, w.T);
    this.noteDecodedSymbols(1);
    const before = w.decoder.received;
    const coded = w.decoder.add(esi, symbol);
    if (w.decoder.received > before) {
      w.lastProgress = w.lastHeard = this.lastHeardAny = Date.now();
      w.progressed = true;
    }
    if (coded) this.chunkDecoded(w, oid, coded);
  }

  /** Count symbols decoded in JavaScript; let TurboFan in at OPTIMIZE_AFTER_DECODED_SYMBOLS. */
  private noteDecodedSymbols(n: number): void {
    const before = this.decodedSymbols;
    this.decodedSymbols += n;
    if (before < OPTIMIZE_AFTER_DECODED_SYMBOLS && this.decodedSymbols >= OPTIMIZE_AFTER_DECODED_SYMBOLS) allowOptimizing();
  }

  private chunkDecoded(w: ChunkWaiter, oid: string, coded: Buffer): void {
    let obj: Buffer;
    try {
      obj = this.cipher ? this.cipher.open(coded) : coded;
    } catch {
      // A forger's box (or a forged symbol in a genuine one) must not end the sync: dropped like
      // a forged symbol set, and the genuine chunk awaited. A wrong key shows at the timeout (tick).
      this.undecryptable();
      w.decoder?.free();
      w.decoder = undefined;
      return;
    }
    if (hash(obj).equals(w.leaf)) {
      if (this.cipher) this.opened++;
      this.stats.objects++;
      this.markDone(oid);
      this.finishChunk(w, undefined, obj);
    } else {
      // Wrong bytes under the right OID: a spoofer or a corrupted symbol. Start over with fresh symbols.
      this.stats.rejected++;
      w.decoder?.free();
      w.decoder = undefined;
    }
  }

  /** What the native assembler did: counts, progress, and objects complete or to be decoded here. */
  private onAssembled(r: AssemblyReport): void {
    this.stats.datagrams += r.datagrams;
    this.stats.bytes += r.bytes;
    this.stats.ignored += r.dropped;
    if (r.progressed.length > 0) {
      const now = Date.now();
      this.lastHeardAny = now;
      for (const id of r.progressed) {
        const w = this.assembled.get(id);
        if (!w) continue;
        w.lastProgress = w.lastHeard = now;
        w.progressed = true;
      }
    }
    let d = 0;
    for (let i = 0; i < r.events.length; i += 2) {
      const kind = r.events[i];
      const w = this.assembled.get(r.events[i + 1]!);
      const decode = kind === ASSEMBLY_DECODE ? r.decodes[d++] : undefined;
      const taken = r.buffers?.[i / 2];
      // Another consumer's request (its buffer is theirs), or ours after close (the buffer is free again).
      if (!w) continue;
      if (this.closed) {
        if (taken) this.giveBuffer(taken);
        continue;
      }
      // A chunk registered without a buffer: the one it took at its first symbol.
      if (taken) w.buf = taken;
      if (kind === ASSEMBLY_COMPLETE) {
        // Verified natively (BLAKE3 of the buffer = the OID), and forgotten there.
        this.stats.objects++;
        if (++this.assembledChunks === OPTIMIZE_AFTER_CHUNKS) allowOptimizing();
        this.markDone(toHex(w.leaf));
        this.finishChunk(w, undefined, w.buf!);
      } else if (kind === ASSEMBLY_REJECTED) {
        this.stats.rejected++;
      } else if (kind === ASSEMBLY_LACKING) {
        this.lacking.push(groupBytes(w.leaf));
        this.watchLacking(w, 1);
      } else if (decode) {
        this.decodeAssembled(w, decode);
      }
    }
    // Chunks whose source symbols all went by with some lost: the share holds their repair symbols until
    // leaves stop coming (30 ms or more) unless told now; each held its buffer that long.
    this.queueLackingReport();
    this.armLackingRecheck();
    if (r.events.length > 0 && !this.closed) this.topUpSpares();
  }

  /** Report the chunks found lacking LACKING_REPORT_MS from now, together with those found meanwhile. */
  private queueLackingReport(): void {
    if (this.lacking.length === 0 || this.lackingQueued) return;
    this.lackingQueued = true;
    setTimeout(() => this.reportLacking(), LACKING_REPORT_MS).unref();
  }

  /** Tell the share about the chunks found lacking since the last report (see onAssembled). */
  private reportLacking(): void {
    this.lackingQueued = false;
    const groups = this.lacking.splice(0);
    if (this.closed || groups.length === 0) return;
    this.stats.lackingReported += groups.length;
    this.rx.reportLacking?.(groups);
  }

  /** Look at `w` again LACKING_RECHECK_MS after its lacking report number `reports` goes out. */
  private watchLacking(w: ChunkWaiter, reports: number): void {
    if (reports >= LACKING_REPORTS) return;
    this.lackingWatch.push({ w, due: Date.now() + LACKING_REPORT_MS + LACKING_RECHECK_MS, reports });
  }

  /** Run recheckLacking when the oldest chunk watched is due. */
  private armLackingRecheck(): void {
    if (this.lackingRecheck || this.lackingWatch.length === 0 || this.closed) return;
    this.lackingRecheck = setTimeout(() => this.recheckLacking(), Math.max(1, this.lackingWatch[0]!.due - Date.now())).unref();
  }

  /** Report again the chunks still incomplete since their last lacking report (LACKING_RECHECK_MS). */
  private recheckLacking(): void {
    if (this.closed) return;
    // What the assembler completed meanwhile is not lacking (the timer stays set meanwhile: nothing re-arms it).
    this.catchUp();
    this.lackingRecheck = undefined;
    const now = Date.now();
    const watch = this.lackingWatch;
    let i = 0;
    for (; i < watch.length && watch[i]!.due <= now; i++) {
      const { w, reports } = watch[i]!;
      if (w.id === undefined || this.assembled.get(w.id) !== w) continue;
      this.lacking.push(groupBytes(w.leaf));
      this.watchLacking(w, reports + 1);
    }
    this.lackingWatch = i === watch.length ? [] : watch.slice(i);
    this.queueLackingReport();
    this.armLackingRecheck();
  }

  /** Not all source symbols came, but enough symbols: RaptorQ here, and the request's later datagrams come through onDatagram. */
  private decodeAssembled(w: ChunkWaiter, [sources, repairEsis, repair, T]: [Uint32Array, Uint32Array, Buffer, number]): void {
    // Symbols were lost: from here RaptorQ runs in JavaScript, per symbol; hot enough to optimize once
    // there are many of them (base/tiering.ts).
    this.noteDecodedSymbols(repairEsis.length);
    // No buffer only for a chunk registered without one that got no source symbol before it was handed over.
    const buf = w.buf;
    let coded: Buffer | undefined;
    // A whole chunk decodes in the buffer its source symbols are already in: no copy, no new buffer,
    // no view per symbol.
    const space = w.decoder ? undefined : decodeSpace(buf, w.length, T);
    if (space) {
      // The last source symbol's zero padding, past the chunk (at T = 1368, 64 bytes).
      space.fill(0, w.length);
      w.decoder = new ObjectDecoder(w.length, space, T);
      coded = w.decoder.addAssembled(sources, repairEsis, repair);
    } else {
      const dec = (w.decoder ??= new ObjectDecoder(w.length, undefined, T));
      for (let i = 0; i < sources.length && buf; i++) {
        const off = sources[i]! * T;
        let sym = buf.subarray(off, off + T);
        if (sym.length < T) {
          // The last symbol, cut to the object's length there: padded with zeros on the wire.
          const padded = Buffer.alloc(T);
          sym.copy(padded);
          sym = padded;
        }
        coded ??= dec.add(sources[i]!, sym);
      }
      for (let i = 0; i < repairEsis.length; i++) coded ??= dec.add(repairEsis[i]!, repair.subarray(i * T, (i + 1) * T));
    }
    if (coded) this.chunkDecoded(w, toHex(w.leaf), coded);
  }

  private onTreeDatagram(oid: string, length: number, esi: number, symbol: Buffer): void {
    if (this.trees.size === 0 && this.treeHolds === 0) {
      this.stats.ignored++;
      return;
    }
    // One OID cannot have two lengths (or symbol sizes), but which sender lies is unknown until an
    // object decodes: each (OID, length, T) gets its own decoder, so one datagram with a false length
    // or size cannot shut out the genuine object.
    const T = symbol.length;
    const slot = oid === this.lastSlotOid && length === this.lastSlotLength && T === this.lastSlotT ? this.lastSlot : `${oid}/${length}/${T}`;
    this.lastSlotOid = oid;
    this.lastSlotLength = length;
    this.lastSlotT = T;
    this.lastSlot = slot;
    let entry = this.treeDecoders.get(slot);
    if (!entry) {
      while (this.treeDecoders.size > 0 && (this.treeDecoders.size >= MAX_TREE_DECODERS || this.treeDecoderBytes + length > MAX_TREE_DECODER_BYTES)) {
        this.dropTreeDecoder(this.treeDecoderToDrop());
      }
      entry = { dec: new ObjectDecoder(length, undefined, T), length };
      this.treeDecoders.set(slot, entry);
      this.treeDecoderBytes += length;
    }
    const now = Date.now();
    if (!this.failed.has(oid)) {
      // Which tree request a datagram serves is only known once its object decodes: it counts for
      // all of them (tick() hands it on: once per tick, not once per datagram and request).
      this.lastHeardAny = now;
      this.treeHeardAt = now;
    }
    const coded = entry.dec.add(esi, symbol);
    if (!coded) return;
    this.dropTreeDecoder(slot);
    let obj: Buffer;
    try {
      obj = this.cipher ? this.cipher.open(coded) : coded;
    } catch {
      // As for a chunk: dropped, and its OID no longer counts as a sender answering.
      this.undecryptable();
      this.markFailed(oid);
      return;
    }
    if (toHex(hash(obj)) !== oid) {
      // A forged symbol was among those decoded (or, with no key, an encrypted share's object).
      // The OID is not done: its next datagrams start a fresh decoder, so a spoofer cannot make
      // the genuine object unreachable by getting a few bad symbols in first.
      this.stats.rejected++;
      this.markFailed(oid);
      return;
    }
    if (this.cipher) this.opened++;
    this.failed.delete(oid);
    this.markTreeDone(oid);
    this.stats.treeObjects++;
    // Every request it answers gets it: two requests may name the same object (equal entry
    // hashes, equal tree parts). Kept, it also answers requests still to come, and its
    // leftover datagrams are dropped meanwhile.
    this.objectSymbolSize.set(obj, T);
    for (const w of [...this.trees]) {
      if (tryAccept(w, obj, this.onBug)) {
        this.symbolSize = T;
        this.stats.objects++;
        this.finishTree(w, undefined, obj);
      }
    }
    this.kept.set(oid, obj);
  }

  /**
   * A share says the object `body` names is gone. Believed only for a request that asked (joined
   * its notice group) and, from an encrypted share, only when sealed with its key. Every request
   * then fails: the source changed under this sync.
   */
  private onGoneNotice(body: Buffer, sealed: boolean): boolean {
    if (sealed !== !!this.cipher) return false;
    let key: Buffer;
    try {
      key = this.cipher ? this.cipher.open(body) : body;
    } catch {
      return false;
    }
    const hex = toHex(key);
    const asked = this.chunks.get(hex)?.notice !== undefined || [...this.trees].some((w) => w.notice !== undefined && w.key.equals(key));
    if (!asked || this.gone) return false;
    this.stats.notices++;
    this.gone = new LcsyncError('SOURCE_CHANGED', 'source changed during sync; run again');
    for (const w of [...this.chunks.values()]) this.finishChunk(w, this.gone);
    for (const w of [...this.trees]) this.finishTree(w, this.gone);
    return true;
  }

  private markFailed(oid: string): void {
    if (this.failed.size >= MAX_DONE) this.failed.delete(this.failed.values().next().value!);
    this.failed.add(oid);
  }

  private undecryptable(): void {
    this.stats.rejected++;
    this.stats.undecryptable++;
    this.undecryptableAt = Date.now();
    if (this.stats.undecryptable === 1) this.firstUndecryptableAt = this.undecryptableAt;
  }

  /**
   * Why a request that timed out did so because of the key, or undefined: "wrong key or password"
   * only when no object of the share opened at all, or when undecryptable objects arrived while
   * this request (made at `asked`) waited in vain. One forger cannot make it say so of a share
   * whose objects open, as long as the objects asked for arrive.
   */
  private wrongKey(asked: number): LcsyncError | undefined {
    if (!this.cipher || this.stats.undecryptable === 0) return undefined;
    if (this.opened > 0 && this.undecryptableAt < asked) return undefined;
    const n = this.stats.undecryptable;
    const why = this.opened === 0 ? 'none opened' : `${this.opened} opened, but not the one waited for`;
    return new LcsyncError('INTEGRITY', `cannot decrypt: wrong key or password (${n} ${n === 1 ? 'object' : 'objects'} did not open, ${why})`);
  }

  private markTreeDone(oid: string): void {
    if (this.treeDone.size >= MAX_DONE) this.treeDone.delete(this.treeDone.values().next().value!);
    this.treeDone.add(oid);
  }

  /**
   * The decoder to give way for a new one: the oldest of an object decoded before (leftovers of
   * its stream, which a share sends until our leave reaches it), else the oldest. The oldest alone
   * was often an object still arriving, a directory's bundle: its symbols were lost with it and
   * the request timed out (test/leftovers.test.ts).
   */
  private treeDecoderToDrop(): string {
    for (const slot of this.treeDecoders.keys()) if (this.treeDone.has(slot.slice(0, slot.indexOf('/')))) return slot;
    return this.treeDecoders.keys().next().value!;
  }

  private dropTreeDecoder(slot: string): void {
    const d = this.treeDecoders.get(slot);
    if (!d) return;
    d.dec.free();
    this.treeDecoders.delete(slot);
    this.treeDecoderBytes -= d.length;
  }

  private finishChunk(w: ChunkWaiter, err?: Error, obj?: Buffer): void {
    this.chunks.delete(toHex(w.leaf));
    if (w.id !== undefined) {
      this.assembled.delete(w.id);
      this.assembly?.unregister(w.leaf);
    }
    // Unregistered: nothing below JavaScript writes into the buffer any more.
    if (w.buf) {
      if (obj === w.buf || (obj && obj.buffer === w.buf.buffer && obj.byteOffset === w.buf.byteOffset && obj.length === w.buf.length)) {
        if (!w.shared) this.handedOut.add(obj!);
      } else if (!obj || obj.buffer !== w.buf.buffer) {
        // Decoded into a buffer of its own (RaptorQ): that one is reusable once released instead.
        this.giveBuffer(w.buf);
        if (obj && !w.shared && !this.cipher) this.handedOut.add(obj);
      }
      w.buf = undefined;
    }
    w.decoder?.free();
    w.decoder = undefined;
    this.leave(w.group);
    if (w.notice) this.leave(w.notice);
    if (err) w.reject(err);
    else w.resolve(obj!);
  }

  private finishTree(w: TreeWaiter, err?: Error, obj?: Buffer): void {
    this.trees.delete(w);
    this.leave(w.group);
    if (w.notice) this.leave(w.notice);
    if (err) w.reject(err);
    else w.resolve(obj!);
  }

  private tick(): void {
    // Progress is judged below: hear what the assembler held back first.
    this.catchUp();
    const now = Date.now();
    // How long the event loop was held up since the tick before (decoding, or a directory's small
    // files written in one go: half a second to a second and a half on a starved host). Timers
    // run before the loop reads its sockets, so what arrived meanwhile is not seen yet: silence
    // then says nothing about the sender. Counted as silence, every request looked stalled, all
    // were joined again at once, and each re-join cost the share a repair round (a fifth of its
    // datagrams with three receivers at 5% loss). A request stalls on silence before that.
    const heldUp = Math.max(0, now - this.lastTickAt - this.tickMs);
    this.lastTickAt = now;
    if (this.cipher && this.opened === 0 && this.stats.undecryptable > 0 && now - this.firstUndecryptableAt > Math.min(KEY_CHECK_MS, this.idleTimeoutMs)) {
      const err = this.wrongKey(now)!; // nothing opened: the time does not matter
      for (const w of [...this.chunks.values()]) this.finishChunk(w, err);
      for (const w of [...this.trees]) this.finishTree(w, err);
      return;
    }
    const check = (w: Waiter, key: Hash, fail: (e: Error) => void) => {
      if (now - Math.max(w.lastHeard, this.lastHeardAny) > this.idleTimeoutMs) {
        const wrongKey = this.wrongKey(w.asked);
        if (wrongKey) return fail(wrongKey);
        const hint = this.stats.rejected > 0 && !this.cipher ? ' (objects arrived but did not verify: is the share encrypted? give --keyfile or LCSYNC_PASSWORD)' : '';
        fail(new LcsyncError('TIMEOUT', `no sender answered on ${w.group} within ${Math.round(this.idleTimeoutMs / 1000)} s${hint}`));
        return;
      }
      // Symbols came and then stopped (a round ran out before we had enough), or nothing came at
      // all for long (a lost join, or a sender that only answers fresh reports): ask again.
      const stalled = w.progressed ? now - heldUp - w.lastProgress > this.stallMs : now - heldUp - w.started > this.firstSymbolMs;
      if (stalled) {
        // Not done within stallMs of joining: leave and join again. The fresh MLD reports make a
        // sender send a new round (ours after its round ran out, the C one on every report).
        w.started = now;
        w.lastProgress = now;
        w.progressed = false;
        this.stats.rejoins++;
        this.rx.rejoin(w.group);
        // Also ask whether the object is gone (the share re-indexed and can never send it): a
        // fresh report on its notice group each time, so a share that re-indexes later still answers.
        try {
          if (w.notice) this.rx.rejoin(w.notice);
          else {
            const notice = groupAddress(goneNoticeKey(key));
            this.join(notice);
            w.notice = notice;
          }
        } catch {
          // Best effort (the socket may be out of memberships): without it the request still
          // completes or times out as before, it only cannot hear that its object is gone.
        }
      }
    };
    for (const w of [...this.chunks.values()]) check(w, w.leaf, (e) => this.finishChunk(w, e));
    for (const w of [...this.trees]) {
      // A tree datagram since the request's last (re)join is progress for it (onTreeDatagram).
      if (this.treeHeardAt > w.lastProgress) {
        w.lastProgress = w.lastHeard = this.treeHeardAt;
        w.progressed = true;
      }
      if (w.deadline !== undefined && now > w.deadline) {
        this.finishTree(w, new LcsyncError('TIMEOUT', `nothing arrived on ${w.group} in time`));
        continue;
      }
      check(w, w.key, (e) => this.finishTree(w, e));
    }
  }
}

/**
 * Whether the request takes `obj`. An integrity error (a malformed or lying object) is simply a
 * refusal; anything else is a bug in a check, reported (with its stack) and then also a refusal,
 * so that a neighbour cannot end the sync by finding it.
 */
function tryAccept(w: { accept(obj: Buffer): boolean }, obj: Buffer, onBug?: (e: Error) => void): boolean {
  try {
    return w.accept(obj);
  } catch (e) {
    if (!(e instanceof LcsyncError && e.code === 'INTEGRITY')) onBug?.(e instanceof Error ? e : new Error(String(e)));
    return false;
  }
}

function chainWaiter(w: Waiter, resolve: (b: Buffer) => void, reject: (e: Error) => void): void {
  const r = w.resolve;
  const j = w.reject;
  w.resolve = (b) => {
    r(b);
    resolve(b);
  };
  w.reject = (e) => {
    j(e);
    reject(e);
  };
}
