/**
 * The multicast receiver: one UDP socket bound to [::]:port that joins groups on chosen interfaces and hands
 * every datagram to one consumer (the DatagramSource of datagram.ts). Knows sockets and interfaces, nothing
 * about packets.
 *
 * Facts it is built on:
 * - dgram wants an interface as '::%ifname'; a bare name is EINVAL, and an unknown name is
 *   silently accepted (scope id 0, the kernel picks a route), so names are checked first.
 * - dgram's receive side costs a 64 KiB buffer, an ArrayBuffer, a Buffer and a JS callback per
 *   datagram, so the receiver takes them in batches with recvmmsg(2) through the addon (batchsock.ts) when
 *   it is built (LCSYNC_NO_RECVMMSG=1 forces dgram); listeners see the same Buffers either way.
 * - With the native receive path (rx-assembler.ts) chunk datagrams are assembled in C and only the
 *   rest reaches listeners; LCSYNC_NO_NATIVE_RX=1 keeps every datagram in JS.
 * - Linux delivers a group's datagrams to every socket bound to the port on a host where any
 *   socket joined it (IPV6_MULTICAST_ALL defaults to on and dgram cannot clear it), so
 *   callers demultiplex by content (the OID), never by socket.
 */
import dgram from 'node:dgram';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { LCSYNC_PORT } from '../wire/address.js';
import { BatchReceiver, batchRecvAvailable } from './batchsock.js';
import type { ChunkAssembly, DatagramSource } from './datagram.js';
import { NativeAssembler, groWanted, nativeRxAvailable } from './rx-assembler.js';
import { validateInterfaces } from './interfaces.js';
import { JoinReporter } from './join-reporter.js';
import { BATCH_MS, MembershipBatch } from './membership.js';
import { bindSocket, checkGroup, checkPort, closeSocket } from './udp.js';

/**
 * Membership bursts that may follow each other at once where joins are reported at once (membership.ts):
 * the serial steps to one changed file (its directory's tree, its entry, its chunk) and one to spare.
 */
const QUICK_BURSTS = 3;

/** What the receiver asks for; the kernel caps it at rmem_max (and doubles it). */
const DEFAULT_RECV_BUFFER = 8 << 20;

export interface MulticastReceiverOptions {
  ifnames: string[];
  /** Default 4242. */
  port?: number;
  /** Default 8 MiB; the kernel caps it at twice net.core.rmem_max. */
  recvBufferBytes?: number;
  /** Least gap between bursts of membership changes (membership.ts); 0 makes every change at once. Default BATCH_MS. */
  membershipBatchMs?: number;
  /**
   * Send the MLD report of each burst's joins at once through a raw ICMPv6 socket where the process
   * may open one (join-reporter.ts), rather than only wait for the kernel's. Default true.
   */
  joinReports?: boolean;
}

/** What MulticastReceiver needs of a socket: a node:dgram one or the addon's batch receiver. */
interface RecvSocket {
  readonly batching: boolean;
  /** Whether the kernel coalesces datagrams for it (UDP GRO; native path only). */
  readonly gro?: boolean;
  recvBufferBytes(): number;
  /** Throw the system error (an Error with `code`) when the kernel refuses. */
  join(group: string, bytes: Buffer, ifname: string): void;
  leave(group: string, bytes: Buffer, ifname: string): void;
  close(): Promise<void>;
}

/** Where a socket hands what it receives: one datagram, or a count of lost ones. */
interface RecvSink {
  deliver(buf: Buffer): void;
  lost(n: number): void;
  /** Whether datagrams still in hand (the rest of a batch) should be dropped. */
  readonly closed: boolean;
}

/** Bind [::]:port with node:dgram: one 'message' event per datagram. */
async function openDgramSocket(port: number, recvBufferSize: number, sink: RecvSink): Promise<RecvSocket> {
  const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, recvBufferSize });
  sock.on('message', (buf: Buffer) => sink.deliver(buf));
  // A receiving socket reports no per-datagram errors; count anything else rather than crash.
  sock.on('error', () => sink.lost(1));
  await bindSocket(sock, port, `bind [::]:${port}`);
  return {
    batching: false,
    recvBufferBytes: () => sock.getRecvBufferSize(),
    join: (group, _bytes, ifname) => sock.addMembership(group, `::%${ifname}`),
    leave: (group, _bytes, ifname) => sock.dropMembership(group, `::%${ifname}`),
    close: () => closeSocket(sock),
  };
}

/** Bind [::]:port with the recvmmsg addon: up to 64 datagrams per callback, each a view into one fresh Buffer. */
function openBatchSocket(port: number, recvBufferBytes: number, sink: RecvSink): RecvSocket {
  let rx: BatchReceiver;
  try {
    rx = BatchReceiver.open({
      port,
      recvBufferBytes,
      onBatch: (buf, lengths, count, errors) => {
        if (errors > 0) sink.lost(errors);
        let off = 0;
        // In arrival order, synchronously; a listener that closes the receiver ends the batch,
        // as closing a dgram socket ends its 'message' events.
        for (let i = 0; i < count && !sink.closed; i++) {
          const len = lengths[i]!;
          sink.deliver(buf.subarray(off, off + len));
          off += len;
        }
      },
    });
  } catch (err) {
    throw fromSystemError(err, `bind [::]:${port}`);
  }
  const indexes = new InterfaceIndexes();
  return {
    batching: true,
    recvBufferBytes: () => rx.recvBufferBytes,
    join: (_group, bytes, ifname) => indexes.apply(ifname, (i) => rx.join(bytes, i)),
    leave: (_group, bytes, ifname) => indexes.apply(ifname, (i) => rx.leave(bytes, i)),
    close: () => {
      rx.close();
      return Promise.resolve();
    },
  };
}

/**
 * Interface indexes, looked up once per name for the life of a receiver socket, not per burst of
 * membership changes: if_nametoindex(3) opens a socket and asks with an ioctl, and one 64 MiB transfer
 * without loss made 78 bursts (each one socket + ioctl + close, seen in strace; more with loss).
 * An interface may still go and come back with another index: a join or leave that fails with the
 * index known looks the name up again and, if the index changed, is made once more with the new one.
 * if_nametoindex also answers 0 when the process is out of descriptors (a sync of 100,000 files once
 * failed so with "no interface e0"): a name resolved before keeps its index then, and the change's own
 * error stands (ENODEV if the interface is really gone).
 */
export class InterfaceIndexes {
  private readonly known = new Map<string, number>();

  constructor(private readonly lookup: (ifname: string) => number = BatchReceiver.ifindex) {}

  /** Make a membership change `op` on ifname's index; throws ENODEV for a name that never resolved. */
  apply(ifname: string, op: (index: number) => void): void {
    const known = this.known.get(ifname);
    if (known === undefined) {
      const index = this.lookup(ifname);
      if (index === 0) throw Object.assign(new Error(`no interface ${ifname}`), { code: 'ENODEV' });
      this.known.set(ifname, index);
      op(index);
      return;
    }
    try {
      op(known);
    } catch (err) {
      const now = this.lookup(ifname);
      if (now === 0 || now === known) throw err;
      this.known.set(ifname, now);
      op(now);
    }
  }
}

/** Bind [::]:port with the native assembler (rx-assembler.ts): chunks are assembled in C, the rest comes up as with the batch socket. */
function openAssemblingSocket(port: number, recvBufferBytes: number, sink: RecvSink, onStats: (datagrams: number, bytes: number) => void): { sock: RecvSocket; assembly: NativeAssembler } {
  // Counted here too, so the receiver's stats cover what never reached JS.
  const assembly = new NativeAssembler((buf) => sink.deliver(buf), (r) => onStats(r.datagrams, r.bytes));
  let rx;
  try {
    rx = assembly.openSocket(port, recvBufferBytes, groWanted(), (n) => sink.lost(n), () => sink.closed);
  } catch (err) {
    throw fromSystemError(err, `bind [::]:${port}`);
  }
  const indexes = new InterfaceIndexes();
  return {
    assembly,
    sock: {
      batching: true,
      gro: rx.gro,
      recvBufferBytes: () => rx.recvBufferBytes,
      join: (_group, bytes, ifname) => indexes.apply(ifname, (i) => rx.join(bytes, i)),
      leave: (_group, bytes, ifname) => indexes.apply(ifname, (i) => rx.leave(bytes, i)),
      close: () => {
        rx.close();
        return Promise.resolve();
      },
    },
  };
}

export class MulticastReceiver implements DatagramSource {
  readonly ifnames: readonly string[];
  readonly port: number;
  readonly stats = { datagrams: 0, bytes: 0, errors: 0 };
  /** Groups wanted and joined, and the changes waiting for the next burst. */
  private readonly batch: MembershipBatch;
  private readonly batchMs: number;
  private burstTimer: NodeJS.Timeout | undefined;
  /** When burstTimer fires. */
  private burstAt = 0;
  private readonly joinFailedListeners: ((group: string, err: Error) => void)[] = [];
  private readonly listeners: ((buf: Buffer) => void)[] = [];
  private closed = false;
  /** Set by open() right after construction: the socket needs the sink this object is. */
  private sock!: RecvSocket;
  /** Set by open() on the native receive path. */
  assembly?: ChunkAssembly;
  /** Set by open() where join reports can be sent at once (join-reporter.ts). */
  private readonly reporter?: JoinReporter;
  /** Why join reports wait for the kernel, when they do. */
  readonly joinReportsOff?: string;

  /** Datagrams lost in the socket so far (see DatagramSource; counted by the native paths only). */
  get lostDatagrams(): number {
    return this.stats.errors;
  }
  /**
   * The bytes of groups wanted or still in the kernel, parsed once: checkGroup parses the text
   * (splits, a regular expression per word), and a receiver of a big file changes two groups per
   * chunk, each parsed at the ask and again at the burst.
   */
  private readonly groupBytes = new Map<string, Buffer>();

  private constructor(ifnames: string[], port: number, batchMs: number, reports: { reporter?: JoinReporter; reason?: string }) {
    this.ifnames = [...ifnames];
    this.port = port;
    this.batchMs = batchMs;
    this.reporter = reports.reporter;
    this.joinReportsOff = reports.reason;
    this.batch = new MembershipBatch(batchMs, this.reporter ? QUICK_BURSTS : 1);
  }

  /**
   * Bind [::]:port with SO_REUSEADDR, so several receivers on one host can share the port.
   * Receives with recvmmsg through the addon when batchRecvAvailable(), else with node:dgram.
   */
  static async open(opts: MulticastReceiverOptions): Promise<MulticastReceiver> {
    validateInterfaces(opts.ifnames);
    const port = checkPort(opts.port ?? LCSYNC_PORT);
    const recvBufferSize = opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER;
    if (!Number.isInteger(recvBufferSize) || recvBufferSize <= 0 || recvBufferSize > 0x7fffffff) {
      throw new LcsyncError('USAGE', `invalid receive buffer size ${recvBufferSize}`);
    }
    const reports = opts.joinReports === false ? { reason: 'not asked for' } : JoinReporter.open(opts.ifnames);
    const rx = new MulticastReceiver(opts.ifnames, port, opts.membershipBatchMs ?? BATCH_MS, reports);
    // The one path for stats and listeners, whichever socket receives.
    const sink: RecvSink = {
      deliver: (buf) => {
        rx.stats.datagrams++;
        rx.stats.bytes += buf.length;
        for (const cb of rx.listeners) cb(buf);
      },
      lost: (n) => {
        rx.stats.errors += n;
      },
      get closed() {
        return rx.closed;
      },
    };
    try {
      if (nativeRxAvailable()) {
        const opened = openAssemblingSocket(port, recvBufferSize, sink, (datagrams, bytes) => {
          rx.stats.datagrams += datagrams;
          rx.stats.bytes += bytes;
        });
        rx.sock = opened.sock;
        rx.assembly = opened.assembly;
      } else {
        rx.sock = batchRecvAvailable() ? openBatchSocket(port, recvBufferSize, sink) : await openDgramSocket(port, recvBufferSize, sink);
      }
    } catch (err) {
      // The reporter's raw sockets would keep the process alive.
      reports.reporter?.close();
      throw err;
    }
    return rx;
  }

  /** Whether datagrams arrive in recvmmsg batches through the addon (else through node:dgram). */
  get batching(): boolean {
    return this.sock.batching;
  }

  /** Whether chunk datagrams are assembled natively (rx-assembler.ts). */
  get native(): boolean {
    return this.assembly !== undefined;
  }

  /** Whether the kernel coalesces received datagrams (UDP GRO, native path only). */
  get gro(): boolean {
    return this.sock.gro ?? false;
  }

  /** See DatagramSource.reportLacking: on every interface, where this receiver sends its own reports. */
  reportLacking(groups: readonly Uint8Array[]): void {
    if (this.reporter && groups.length > 0) for (const ifname of this.ifnames) this.reporter.lacking(ifname, groups);
  }

  /** Join reports sent at once and records in them (zeros when the kernel's alone are sent). */
  get joinReportStats(): { reports: number; records: number; failures: number } {
    return this.reporter?.stats ?? { reports: 0, records: 0, failures: 0 };
  }

  /** Groups joined as far as callers are concerned (the kernel may get some with the next burst). */
  get joined(): ReadonlySet<string> {
    return this.batch.joined;
  }

  /** Kernel receive buffer actually granted. */
  get recvBufferBytes(): number {
    return this.sock.recvBufferBytes();
  }

  /**
   * Join `group` on every interface; a second join of the same group does nothing. Membership changes
   * are made in bursts (membership.ts): the first after a quiet gap at once, where a refusal throws;
   * later ones with the next burst, where a refusal goes to the onJoinFailed callbacks. A socket out of
   * memberships (ENOBUFS, ENOMEM: net.core.optmem_max) while it holds others tries again with the next
   * burst, after a leave freed one.
   */
  join(group: string, bytes?: Buffer): void {
    this.ensureOpen();
    if (bytes === undefined) this.bytesOf(group);
    else if (!this.groupBytes.has(group)) this.groupBytes.set(group, bytes);
    this.batch.join(group);
    this.changed(group);
  }

  /** Leave `group` on every interface; leaving a group not joined does nothing. */
  leave(group: string): void {
    this.ensureOpen();
    this.batch.leave(group);
    // Never made in the kernel (joined and left within one wait): the burst has nothing to leave.
    if (!this.batch.inKernel.has(group)) this.groupBytes.delete(group);
    this.changed();
  }

  /**
   * Leave and join again: the kernel sends a fresh leave and join report, which is how a
   * stalled transfer asks a C sender (which sends only on a new report) to send again.
   */
  rejoin(group: string): void {
    this.ensureOpen();
    this.bytesOf(group);
    this.batch.rejoin(group);
    this.changed(group);
  }

  /** Call `cb` when a join made with a later burst was refused by the kernel (the group is not joined). */
  onJoinFailed(cb: (group: string, err: Error) => void): void {
    this.joinFailedListeners.push(cb);
  }

  /** Groups the kernel has joined now (the rest of `joined` waits for the next burst). */
  get inKernel(): ReadonlySet<string> {
    return this.batch.inKernel;
  }

  /**
   * Make the waiting changes now if the last burst was long enough ago, else with the next one. A
   * leave (no `asked`) waits for the end of this turn at least: the join that usually follows it (the
   * next object of a fetch whose object just came) then goes in the same burst and the same report,
   * where made at once the leave would have held that join back for BATCH_MS. Where joins are reported
   * at once (several credits, membership.ts), a leave waits BATCH_MS for such a join, and a join due
   * now is made at once even while a leave waits, taking the leave along.
   */
  private changed(asked?: string): void {
    if (!this.batch.pending) return;
    const quick = this.batch.credits > 1;
    if (this.burstTimer && !(quick && asked !== undefined)) return;
    const now = Date.now();
    const due = this.batch.dueAt();
    if (asked === undefined && this.batchMs > 0) this.armBurst(Math.max(0, this.batch.leaveDueAt(now) - now));
    else if (now >= due) {
      this.disarmBurst();
      this.makeBurst(now, asked);
    } else if (!this.burstTimer || this.burstAt > due) {
      this.disarmBurst();
      this.armBurst(due - now);
    }
  }

  private armBurst(delayMs: number): void {
    this.burstAt = Date.now() + delayMs;
    this.burstTimer = setTimeout(() => {
      this.burstTimer = undefined;
      if (!this.closed) this.makeBurst(Date.now());
    }, delayMs);
    this.burstTimer.unref();
  }

  private disarmBurst(): void {
    clearTimeout(this.burstTimer);
    this.burstTimer = undefined;
  }

  /** Make a burst of changes; a refused join of `asked` (made at once for the caller) throws. */
  private makeBurst(now: number, asked?: string): void {
    let thrown: Error | undefined;
    const joined: Buffer[] = [];
    // Indexed loops: a burst is made per chunk or two, and the receiver runs baseline code
    // (base/tiering.ts), where for-of allocates an iterator result per step.
    const changes = this.batch.burst(now);
    const ifnames = this.ifnames;
    for (let k = 0; k < changes.length; k++) {
      const c = changes[k]!;
      const bytes = this.bytesOf(c.group);
      if (c.op !== 'join') for (let i = 0; i < ifnames.length; i++) this.drop(c.group, bytes, ifnames[i]!);
      if (c.op === 'leave') {
        this.batch.done(c);
        this.groupBytes.delete(c.group);
        continue;
      }
      let done = 0;
      try {
        for (; done < ifnames.length; done++) this.sock.join(c.group, bytes, ifnames[done]!);
        this.batch.done(c);
        joined.push(bytes);
      } catch (err) {
        // All or nothing: a group joined on some interfaces only would confuse leave().
        for (let i = 0; i < done; i++) this.drop(c.group, bytes, ifnames[i]!);
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === 'ENOBUFS' || code === 'ENOMEM') && this.batch.inKernel.size > 0) {
          this.batch.retry(c.group);
          continue;
        }
        this.batch.refused(c.group);
        this.groupBytes.delete(c.group);
        const e = fromSystemError(err, `join ${c.group}`);
        if (c.group === asked) thrown = e;
        else for (const cb of this.joinFailedListeners) cb(c.group, e);
      }
    }
    if (this.reporter && joined.length > 0) for (const ifname of this.ifnames) this.reporter.joined(ifname, joined);
    if (this.batch.pending) this.armBurst(Math.max(0, this.batch.dueAt() - now));
    if (thrown) throw thrown;
  }

  /**
   * Call `cb` with every datagram, in arrival order. With the addon `buf` is a view into a
   * batch's Buffer (fresh per batch, so it may be kept); an exception `cb` throws is uncaught
   * either way, and with the addon the rest of that batch is not delivered.
   */
  onDatagram(cb: (buf: Buffer) => void): void {
    this.listeners.push(cb);
  }

  /** Leave every group and close the socket. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.burstTimer);
    this.burstTimer = undefined;
    for (const g of this.batch.inKernel) for (const ifname of this.ifnames) this.drop(g, this.bytesOf(g), ifname);
    this.batch.clear();
    this.groupBytes.clear();
    this.reporter?.close();
    this.closed = true;
    await this.sock.close();
  }

  /** The bytes of `group` (checked: an IPv6 multicast address, else a usage error), parsed once while it is in use. */
  private bytesOf(group: string): Buffer {
    let bytes = this.groupBytes.get(group);
    if (bytes === undefined) this.groupBytes.set(group, (bytes = checkGroup(group)));
    return bytes;
  }

  /** Groups whose parsed bytes are kept (for tests: bounded by the groups wanted or in the kernel). */
  get parsedGroups(): number {
    return this.groupBytes.size;
  }

  private drop(group: string, bytes: Buffer, ifname: string): void {
    try {
      this.sock.leave(group, bytes, ifname);
    } catch {
      // The interface may have gone away; the kernel dropped the membership with it.
    }
  }

  private ensureOpen(): void {
    if (this.closed) throw new LcsyncError('INTERNAL', 'multicast receiver is closed');
  }
}
