/**
 * One send stream's state in the policy (scheduler.ts), pure: the round a join grants (source
 * symbols first, cycling, then repair symbols), the hold after the source symbols, the trickle
 * after the round, and the listeners it serves. No clock of its own: every call takes the time.
 */

/**
 * Datagrams a stream sends at full speed for a new listener: K plus a small
 * margin. A bigger round costs every receiver on every chunk, because the
 * kernel delays leave reports by tens of milliseconds and rounds mostly run out
 * before the leave arrives; a receiver that lost more asks again (re-joins) and
 * gets a repair round (below), and the trickle serves listeners that never ask.
 */
export function roundSize(K: number): number {
  return K + Math.ceil(K / 20) + 1;
}

/** Datagrams granted when a listener asks again after a round: it is missing a few symbols, not all. */
export function repairRoundSize(K: number): number {
  return Math.max(4, Math.ceil(K / 8));
}

/**
 * Datagrams granted for a repeated report that comes within REPORT_REPEAT_MS of the listener's
 * join, after the round: mostly the kernel sending the join again (Linux repeats each membership
 * change, the second at a random time within a second), from a listener that may lack nothing or
 * a few symbols at the link's loss (at 5%, a round's shortfall is within a few percent of K). A
 * repair round per such report made 8% of the sender's bytes with three receivers at 5% loss; one
 * that lacks more than this asks again (re-joins) and gets a repair round, and the trickle goes on.
 *
 * A bundle part's listener (hundreds of symbols, held 300 ms before its margin) gets this burst for
 * a repeated report at any time: a receiver starved of CPU reads what it already has late and
 * re-joins, and the share, itself reading reports late, saw these repeats more than
 * REPORT_REPEAT_MS after the join. Each bought K/8 (57 datagrams for a part of 456 symbols): 15% of
 * the sender's datagrams in a 5,000-file run with three receivers at 5% loss and load 8, mostly to
 * receivers that had enough. One really short of symbols gets the burst and then the trickle.
 */
export function repeatBurstSize(K: number): number {
  return Math.max(2, Math.ceil(K / 25));
}
/** Linux's unsolicited report interval (MLDv2, net.ipv6.conf.*.mldv2_unsolicited_report_interval): a repeat this soon is the kernel's. */
export const REPORT_REPEAT_MS = 1000;

/** After its round a stream keeps trickling at this interval, so no listener is ever left without symbols. */
export const TRICKLE_MS = 60;
/**
 * A stream holds after its source symbols for about as long as leaves take to
 * arrive (measured: the kernel delays reports, and busy receivers answer late),
 * within these bounds. On a clean link every listener has what it needs by then
 * and leaves, so no repair symbol is made or sent; one that lost some gets the
 * rest of the round after the hold.
 */
export const GRACE_MIN_MS = 30;
export const GRACE_MAX_MS = 150;
/**
 * The hold of a bundle part whose repair symbols are costly to make lasts at least this long. Above
 * K' = FAST_MAX_K_PRIME (a part of hundreds of symbols) the first repair
 * symbol needs a whole RaptorQ encoder built in wasm: 8-50 ms of the share's one thread, which
 * sends nothing else meanwhile (8 parts that ran past their hold together blocked it for 300-400
 * ms). A receiver that got such an object whole still has to read the rest of what arrived with it
 * before its leave goes out: in captures of a 5,000-file first sync, 37 of 57 bundle parts ran
 * past a 150 ms hold, for 3% more datagrams, an encoder each and 1.2 s of the share's 2.2 CPU-s.
 * One that lost symbols gets its margin this much later, and a re-ask as before; parts are fetched
 * eight at a time, so that wait overlaps the others'.
 */
export const COSTLY_REPAIR_GRACE_MS = 300;
/** A join this soon after the same host left is a re-ask. */
export const REJOIN_MS = 2000;

/** What a stream sends next: a source symbol (its ESI) or a fresh repair symbol. */
export type SymbolChoice = { readonly source: number } | { readonly repair: true };

/**
 * take() answers with these shared, frozen objects rather than a new one per datagram (a share at
 * line rate sends tens of thousands a second, and each was garbage at once). One per ESI, made on
 * first use: at most the largest K served.
 */
const REPAIR: SymbolChoice = Object.freeze({ repair: true });
const SOURCE: SymbolChoice[] = [];
function sourceChoice(esi: number): SymbolChoice {
  return (SOURCE[esi] ??= Object.freeze({ source: esi }));
}

/**
 * How a round's listeners came out of its hold (--bwlimit auto's fast signal, net/autorate.ts):
 * `kept` left during the hold (they had every source symbol in time), `late` were still joined
 * when it ended (they lost symbols, or are behind a queue). `stream.roundStartedAt` says which
 * rate the round went at.
 */
export type RoundOutcome<T> = (stream: ScheduledStream<T>, kept: number, late: number) => void;

/** One stream's place in the policy: its round, its listeners, its hold. `item` is what the caller sends it with. */
export class ScheduledStream<T> {
  /** A listener left and we are asking whether anyone else still listens: hold off until we know. */
  paused = false;
  /** Datagrams still to send at full speed; then one every TRICKLE_MS. */
  budget: number;
  nextTrickleAt = 0;
  /** After the source symbols the stream holds for the grace time: leaves arrive then, and on a clean link nothing more is needed. */
  holdUntil = 0;
  /** When the last owed source symbol went out, and datagrams sent since (for measuring how long leaves take). */
  sourceDoneAt = 0;
  sentSinceSourceDone = 0;
  /** When the stream's last round ran out (0: not yet), and when its listeners were last probed (scheduler.ts PROBE_AFTER_MS). */
  roundDoneAt = 0;
  probedAt = 0;
  /** Datagrams sent so far (a stream that sent none is where a receiver may join at no cost: the cursor). */
  sent = 0;
  /** Of those, trickled: while the first round was held for more joiners, and after a round ran out (the share's -v log says where datagrams went). */
  readonly trickled = { held: 0, after: 0 };
  /** Hosts whose join this stream is serving. */
  readonly reporters = new Set<string>();
  /** When each listener's round (or repair round) was granted. */
  private readonly grantedAt = new Map<string, number>();
  /**
   * Hosts that left, when, and whether a round was still running then. One that left after the round
   * ran out and joins again soon is asking for more, not starting over (receiver.ts: a request that
   * stalls leaves and joins again). One that left while a round was running had what it needed (a
   * receiver leaves when its object is complete, and one that is still missing symbols makes progress
   * while a round runs, so it does not stall): its next join is a new need, such as another sync
   * started on the same host right after the first, or another file of the same content.
   */
  private readonly departed = new Map<string, { at: number; duringRound: boolean }>();
  /**
   * The budget is a new listener's round (K and the margin), not a repair round or a burst: a host
   * that stalled may leave while another's repair round runs, but not while a full one does (it would
   * be making progress).
   */
  private fullRound = true;
  /** After the last listener left: when the stream is dropped unless someone joins again. */
  lingerUntil = 0;
  /** Receivers behind this chunk that the first round waits for (until gatherUntil); undefined: none. */
  waitingFor: Set<string> | undefined;
  /** How the first round gathers listeners: 'joins' for a bundle part (scheduler.ts JOIN_GATHER_MAX_MS); otherwise by walk position, if at all. */
  gatherBy: 'joins' | undefined;
  /** When the first round began to wait (scheduler.ts: receivers whose pace is not known are waited for GATHER_MAX_MS from here). */
  gatherSince = 0;
  /** The hold ends then at the latest (scheduler.ts GATHER_LIMIT_MS; JOIN_GATHER_MAX_MS for a part). */
  gatherUntil = 0;
  readonly round: number;
  readonly repairRound: number;
  /**
   * Why rounds were given: new listeners, re-asks (leave and join), repeated reports after a round; and
   * lone listeners' reports that they lack symbols that were answered (a hold ended, or a small burst after the round).
   */
  readonly asks = { listener: 0, reask: 0, repeat: 0, lacking: 0 };
  /** Next source symbol, cycling: a listener that joins late gets the ones it missed after the rest. */
  private sourceCursor = 0;
  /** Source symbols still owed to the newest listener; repair symbols come only after them. */
  private sourceOwed: number;
  /** When the first source symbol of the current pass went out (the rate a round's outcome answers). */
  roundStartedAt = 0;
  /**
   * The source symbols are out and the hold runs: each listener that leaves before it ends kept
   * up, each one still joined when the stream sends again was late (onOutcome). Cleared when that
   * is known for all of them, or when a join makes the pass no longer one round's answer.
   */
  private outcomePending = false;

  constructor(
    readonly key: string,
    readonly ifname: string,
    /** Where the object sits in a receiver's walk (walkPosition). */
    readonly position: number,
    /** Source symbols of the object. */
    readonly K: number,
    readonly item: T,
    private readonly trickle: boolean,
    /** How long to hold after the source symbols (SendScheduler.graceMs). */
    private readonly grace: () => number,
    /** Told how each round's listeners came out of its hold. */
    private readonly onOutcome?: RoundOutcome<T>,
  ) {
    this.round = roundSize(K);
    this.repairRound = repairRoundSize(K);
    this.budget = this.round;
    this.sourceOwed = K;
  }

  /**
   * A join report from `from`. A new listener gets a full round (it has seen
   * nothing yet): the K source symbols from where the cycle stands, so those
   * already listening lose nothing, then the margin; so does a host that left while a round ran
   * (see departed). One asking again after the round ran out (it lost some) gets a repair round; a repeated report while a
   * round is still going (the kernel sends each change twice) changes nothing; one after the round
   * buys a repair round, or a small burst if it came within REPORT_REPEAT_MS of the listener's join.
   * A listener's `answer` to a probe (scheduler.ts PROBE_AFTER_MS) asks for nothing: it says it is still there.
   *
   * `lacking`: the listener says it lacks symbols (an lcsync receiver that saw the last source symbol go by
   * with others lost: wire/mld.ts). When it is the stream's only listener and the stream holds after its
   * source symbols, the hold ends now: the hold waits for the leaves of listeners that have everything, and
   * the only one has said it has not (a 64 MiB transfer at 5% loss, one receiver: 1.78 -> 1.55 s and 0.6 MiB
   * of its peak RSS; chunks waited 30 ms and more each, with their buffers). With several listeners the hold
   * stays: it is also what lets joins that come during it share the round; so it does while other receivers
   * walk the share on the interface (scheduler.ts passes `lacking` only when none does). From the only listener
   * after the round (the receiver reports a chunk again while it stays incomplete, sync/receiver.ts), it buys a
   * small burst instead of the trickle's symbol every TRICKLE_MS (64 MiB at 5% loss, one receiver, three
   * alternating rounds: 1.57-1.81 -> 1.49-1.58 s, peak RSS 60.5-60.8 -> 60.1-60.3 MiB). When scheduler.ts does
   * not pass `lacking` (other receivers walk the share), the report is the listener's repeated report like any
   * other (below); from a listener of several, with `lacking`, it asks for nothing.
   */
  joined(from: string, now: number, answer = false, lacking = false): void {
    const left = this.departed.get(from);
    if (left !== undefined) this.departed.delete(from);
    if (lacking && left === undefined && this.reporters.has(from)) {
      if (this.reporters.size === 1 && this.holding(now)) {
        this.holdUntil = now;
        this.asks.lacking++;
      } else if (this.reporters.size === 1 && this.budget === 0) {
        // Still lacking after the round: it lost more than the margin. A small burst now rather than the
        // trickle's symbol every TRICKLE_MS (the receiver reports again while it lacks, sync/receiver.ts).
        this.budget = repeatBurstSize(this.K);
        this.fullRound = false;
        this.asks.lacking++;
      }
    } else if (left !== undefined && !left.duringRound && now - left.at < REJOIN_MS) {
      // Left and joined again: a receiver asking for more after losing some.
      this.outcomePending = false;
      if (this.budget < this.repairRound) this.fullRound = false;
      this.budget = Math.max(this.budget, this.repairRound);
      this.asks.reask++;
      this.grantedAt.set(from, now);
    } else if (!this.reporters.has(from)) {
      this.outcomePending = false;
      this.budget = Math.max(this.budget, this.round);
      this.fullRound = true;
      this.sourceOwed = this.K;
      this.asks.listener++;
      this.grantedAt.set(from, now);
    } else if (this.budget === 0 && !answer) {
      // A bundle part's listener gets the small burst whenever it repeats (see repeatBurstSize).
      const small = this.gatherBy === 'joins' || now - (this.grantedAt.get(from) ?? -Infinity) < REPORT_REPEAT_MS;
      this.budget = small ? repeatBurstSize(this.K) : this.repairRound;
      this.fullRound = false;
      this.asks.repeat++;
    }
    this.reporters.add(from);
  }

  /** `from` left (MLD): during the hold it had what it needed in time. */
  left(from: string, now: number): void {
    if (this.outcomePending && this.reporters.has(from)) this.onOutcome?.(this, 1, 0);
    this.reporters.delete(from);
    this.departed.set(from, { at: now, duringRound: this.budget > 0 && this.fullRound });
    if (this.reporters.size === 0) this.outcomePending = false;
  }

  /** Source symbols still owed to the newest listener (scheduler.ts: a running part is held for a newcomer while many are). */
  get sourceLeft(): number {
    return this.sourceOwed;
  }

  /** Whether the stream holds after its source symbols with the rest of its round to send (see holdUntil). */
  private holding(now: number): boolean {
    return this.budget > 0 && this.sourceOwed === 0 && now < this.holdUntil;
  }

  /** Whether the stream has a round to send now. */
  ready(now: number): boolean {
    return !this.paused && this.budget > 0 && now >= this.holdUntil && (this.waitingFor === undefined || now >= this.gatherUntil);
  }

  /** Whether the stream's round is over, or held for more joiners (gatherBy 'joins'), and it is due a trickle datagram. */
  trickleDue(now: number): boolean {
    return !this.paused && (this.budget === 0 || this.heldForJoins(now)) && now >= this.nextTrickleAt;
  }

  /** Whether the first round waits for more joiners (a bundle part): it trickles meanwhile, out of the round. */
  private heldForJoins(now: number): boolean {
    return this.gatherBy === 'joins' && this.waitingFor !== undefined && now < this.gatherUntil;
  }

  /** When this stream next wants to send, if it is waiting. */
  wakeAt(): number {
    if (this.paused) return Infinity;
    if (this.budget === 0) return this.nextTrickleAt;
    if (this.gatherBy === 'joins' && this.waitingFor) return Math.min(this.nextTrickleAt, Math.max(this.holdUntil, this.gatherUntil));
    return this.waitingFor ? Math.max(this.holdUntil, this.gatherUntil) : this.holdUntil;
  }

  /**
   * Account for one datagram sent now and say which symbol it carries: source symbols (cycling)
   * while a listener is owed them, then repair symbols with fresh ESIs. Source symbols need no
   * RaptorQ work at all, so on a clean link no encoder is ever built, however late listeners join.
   */
  take(now: number): SymbolChoice {
    this.sent++;
    if (this.outcomePending) {
      // Sending again after the source symbols: the hold is over and these listeners are still here.
      this.outcomePending = false;
      if (this.reporters.size > 0) this.onOutcome?.(this, 0, this.reporters.size);
    }
    let trickling = false;
    if (this.budget > 0) {
      if (this.heldForJoins(now)) {
        this.nextTrickleAt = now + TRICKLE_MS;
        this.trickled.held++;
      }
      if (--this.budget === 0) this.roundDoneAt = now;
    } else {
      this.nextTrickleAt = this.trickle ? now + TRICKLE_MS : Infinity;
      trickling = true;
      this.trickled.after++;
    }
    // A trickle is a fresh repair symbol: whatever a listener still lacks, each one is worth a lost
    // symbol to it (a cycled source symbol would only help the listener that lost that one).
    if (this.sourceOwed > 0 && !trickling) {
      if (this.sourceOwed === this.K) this.roundStartedAt = now;
      const esi = this.sourceCursor;
      this.sourceCursor = (this.sourceCursor + 1) % this.K;
      this.sentSinceSourceDone++;
      if (--this.sourceOwed === 0) {
        this.sourceDoneAt = now;
        this.sentSinceSourceDone = 0;
        if (this.budget > 0) {
          this.holdUntil = now + this.grace();
          this.outcomePending = this.reporters.size > 0;
        }
      }
      return sourceChoice(esi);
    }
    this.sentSinceSourceDone++;
    return REPAIR;
  }
}

