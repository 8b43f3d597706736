/**
 * `--bwlimit auto`: the share's send rate, steered by what it can see of its receivers without a
 * back-channel. Pure: no timers, no sockets; every call takes the time, and the share sets the
 * pacer to `rate` whenever update() says it changed.
 *
 * Two signals, both the listeners' own behaviour under MLD (scheduler.ts, stream.ts):
 *
 * - Rounds (fast). After a round's K source symbols a stream holds for about the listeners' leave
 *   latency; a listener that got all K leaves during the hold, one that lost any (or is behind a
 *   queue, or too busy to read them) is still joined when it ends. outcome() is told which, per
 *   listener, within tens of milliseconds of the round. The fraction late, f, gives the loss per
 *   datagram: (1 - p)^K = 1 - f. Datagrams sent faster than the path or a receiver can take are
 *   dropped (a veth, a switch queue or a socket buffer gives no back-pressure), and that loss grows
 *   with the rate; loss on a noisy link does not. So each window's estimate is compared with the
 *   median of the recent ones (what the link loses anyway): a rise of LOSS_EXCESS over it (plus
 *   half of it) is overload, and so is a rise of the late share over its recent median by
 *   LATE_EXCESS. Only rounds begun after the last rate change count, so a window answers the rate
 *   it is judged for and the next raise needs no fixed wait: at 100 Mbit/s a window of
 *   MIN_OUTCOMES rounds takes about 100 ms, at 1 Gbit/s about 50.
 * - Re-asks (slow). One that lost more than a round's margin leaves and joins again after its stall
 *   time (400 ms), or keeps reporting: re-asks per round. They answer a rate long gone, so they only
 *   back off (heavy or rising re-asks, as before), and steer the rate alone where rounds say
 *   nothing: no rounds (push mode), or a link so lossy that nearly every round is late at any rate
 *   (SATURATED_LOSS), where raises wait SETTLE_MS for the re-asks to answer.
 *
 * Rates move like TCP's: doubling per clean window until the first sign of overload (slow start),
 * then a cut (BACKOFF, or half in slow start) and a climb that is quick up to near where the last
 * overload was seen and slow (PROBE_STEP) around it. On a clean link a lone overloaded window
 * holds the rate and a second one cuts it (CLEAR_WINDOWS): a receiver's stall looks like an
 * overload for a window, a filling queue for every window. A window in which the share sent much
 * less than the rate (nothing to send, or the CPU was the limit) does not raise it: a rate never
 * exercised says nothing about the path.
 */

export interface AutoRateOptions {
  /** Where to start, bits per second: safe for a 100 Mbit/s link. */
  startBps?: number;
  /** Never below this (a lossy link must still move data) nor above maxBps. */
  minBps?: number;
  maxBps?: number;
  /** How long one observation window lasts at least, in milliseconds. */
  windowMs?: number;
  /** How long the receivers' answer to a new rate takes to show (see SETTLE_MS). */
  settleMs?: number;
}

export const AUTO_START_BPS = 100e6;
export const AUTO_MIN_BPS = 10e6;
export const AUTO_MAX_BPS = 10e9;
export const AUTO_WINDOW_MS = 250;
/**
 * Receivers answer a rate late: one that lost symbols re-joins after its stall time (400 ms) or
 * when the kernel repeats its report (within a second). So after a raise the rate is not raised
 * again for this long (an overload seen meanwhile still cuts it), and after a cut the windows of
 * this long are not judged (their re-asks answer the rate that was cut).
 */
export const SETTLE_MS = 600;
/** Rounds (plus re-asks) a window needs before its ratio means anything; fewer: the window grows, up to MAX_WINDOWS. */
const MIN_EVENTS = 6;
const MAX_WINDOWS = 8;
/** Cut to this fraction of the rate on overload. */
export const BACKOFF = 0.7;
/** Growth per clean window after the first overload. */
export const STEP = 1.15;
/**
 * Re-asks per round above which receivers are swamped, whatever the baseline. A re-ask costs a repair
 * round of K/8, so 2 per round is about a quarter of the data again on the wire.
 */
export const HEAVY_REASKS = 2;
/**
 * A rise of the re-ask ratio over the recent minimum by this much (plus half the minimum) is overload:
 * about 10% more on the wire. Lower thresholds (0.25 was tried) cut the rate for a receiver that drops
 * a little at its socket buffer when its CPU is busy, which FEC repairs for little: on a loaded machine
 * auto then ran at 60% of an unlimited share's goodput for the same wire/file (1.14x).
 */
const EXCESS = 0.8;
/** Windows whose values make a baseline (re-asks: their minimum; rounds: their median). */
const BASELINE_WINDOWS = 8;
/** A window is rate-limited (worth raising the rate after) when it sent at least this share of the rate. */
const BUSY = 0.5;
/** A rounds window lasts at least this long (ms) and holds at least MIN_OUTCOMES listener outcomes. */
export const FAST_WINDOW_MS = 50;
export const MIN_OUTCOMES = 20;
const MIN_KEPT = 8;
/**
 * Late listeners that close a window at once where the link is clean and most of them are late:
 * each window at an overloaded rate lost datagrams at the bottleneck for as long as it lasted.
 */
const MIN_LATE = 10;
/**
 * Windows the loss estimate's baseline needs before it judges (the late share judges from the first):
 * at 5% link loss the second window of a share, against the first alone, ended slow start at 100M.
 */
const MIN_BASELINE = 3;
/**
 * Loss per datagram (estimated from late rounds) above the recent median by this much, plus half
 * the median, is overload. At 5% link loss (about 80% of 32-symbol rounds late anyway) a window
 * needs nearly all its rounds late to pass it: about one window in a hundred by chance.
 */
export const LOSS_EXCESS = 0.02;
/**
 * The fraction of listeners late above its recent median by this much is overload too, and a
 * window needs to be within LATE_RAISE of it to raise the rate. A queue that overflows drops
 * datagrams in runs, so a few rounds lose many each: the estimate above (which takes losses to be
 * independent) then reads 1-4% where the bottleneck dropped 10% (a 100 Mbit/s tbf in the lab),
 * while the late fraction reads 30-100% against a baseline near 0. On a lossy link (5%: about 80%
 * late at every rate) the median is high and only the estimate can move.
 */
export const LATE_EXCESS = 0.25;
export const LATE_RAISE = 0.15;
/** The late share judges only while its recent median is below this. */
const LATE_JUDGES = 0.5;
/**
 * Where the link itself loses this much, nearly every round is late at any rate and rounds cannot
 * tell overload from the link: the re-asks alone steer, as SETTLE_MS allows.
 */
export const SATURATED_LOSS = 0.08;
/**
 * Growth per clean window near the rate of the last overload (the ceiling). On a clean link each
 * further raise there in a row makes the step above 1 PROBE_GROWTH times larger (1.02, 1.03, 1.045,
 * 1.07, 1.1, then STEP), as CUBIC's probing speeds up the longer the old limit holds: a fixed 2%
 * crawled where the ceiling was a false alarm (a receiver too busy starting to leave its first
 * rounds in time: a 1 GiB sync's share at 25-50 Mbit/s for 8-11 s on a gigabit lab, in 4 runs of 5),
 * and a real bottleneck cuts it again within a few windows either way.
 */
export const PROBE_STEP = 1.02;
const PROBE_GROWTH = 1.5;
const NEAR_CEILING = 0.85;
/**
 * A rate this far above the last overload's without a new one: the ceiling is gone (the path got
 * faster, or it was a false alarm). On a clean link each raise from there in a row makes its step
 * PROBE_GROWTH times larger (1.15, 1.23, 1.34, 1.51, 1.76, then 2 as in slow start) until the next
 * overload; on a lossy link, whose overload shows only over several windows, the step stays STEP (a
 * faster one ran far past a bottleneck there, tests).
 */
const PAST_CEILING = 1.25;
/**
 * On a clean link one overloaded rounds window alone does not cut the rate: it holds it, and the rate
 * is cut if another comes before CLEAR_WINDOWS clean ones in a row (which hold it too) clear the
 * suspicion. A receiver that stalls (busy with a file's tree at its start, or for a moment later)
 * leaves every round of that moment late without losing a datagram, and in the lab those windows came
 * alone: all of the cuts of 64 MiB runs on a clean gigabit link (no receive-buffer drops) were such
 * windows, each followed by a clean one, and one of them cost a run a second (ramping back from a cut
 * to 100 Mbit/s). A queue that overflows keeps the rounds late window after window: the cut comes one
 * window later.
 */
const CLEAR_WINDOWS = 2;

export type AutoRateDecision = 'raise' | 'hold' | 'backoff' | 'idle';

/** What one closed window held and what was decided on it (LCSYNC_AUTORATE_TRACE, tests). */
export interface AutoRateWindow {
  /** Which signal closed it: listener outcomes of rounds ('rounds') or re-asks ('reasks'). */
  signal: 'rounds' | 'reasks';
  /** When it closed, and how long it lasted (ms). */
  at: number;
  elapsedMs: number;
  /** Re-asks window: listener rounds granted and re-asks in it. */
  rounds: number;
  reasks: number;
  /** Rounds window: listeners that left in time and that were late, of rounds begun at this rate. */
  kept?: number;
  late?: number;
  /** What went on the wire in it, bits per second (a rounds window: from its first round on, if that began after it opened). */
  sentBps: number;
  /** The rate it was sent at, and the rate after the decision. */
  rateBefore: number;
  rate: number;
  decision: AutoRateDecision;
  /** The value judged (re-asks: the smoothed ratio; rounds: the loss per datagram) and its baseline (undefined: not judged). */
  smoothed?: number;
  baseline?: number;
}

/** Counts since a window opened. */
interface Tally {
  start: number;
  bytes: number;
}

export class AutoRate {
  readonly minBps: number;
  readonly maxBps: number;
  readonly windowMs: number;
  readonly settleMs: number;
  private rate_: number;
  /** Until the first overload the rate doubles per clean window. */
  private slowStart = true;
  /** The rate at the last overload (raises slow down near it); undefined: none yet, or left behind. */
  private ceiling: number | undefined;
  /** Raises near the ceiling, and past it, since the last overload (on a clean link their steps grow, see PROBE_STEP). */
  private nearRaises = 0;
  private freeRaises = 0;
  /** Whether the last rounds window found the link clean (few rounds late: the late share judges overload). */
  private cleanLink = false;
  /** An overloaded window was seen on a clean link and not yet cut for (see CLEAR_WINDOWS): clean windows still to hold. */
  private suspect = 0;
  /** When the rate last changed: only rounds begun since answer it. */
  private changedAt: number;
  /** Re-asks: no raise before raiseAfter (after a raise), no judgement before ignoreUntil (after a cut). */
  private raiseAfter = -Infinity;
  private ignoreUntil = -Infinity;
  private readonly slow: Tally;
  private rounds = 0;
  private reasks = 0;
  /** Smoothed re-ask ratio, and the recent windows' values of it (for the baseline). */
  private smoothed: number | undefined;
  private readonly recent: number[] = [];
  /** Rounds: outcomes of rounds begun at the current rate, and the recent windows' loss estimates. */
  private readonly fast: Tally;
  private kept = 0;
  private late = 0;
  private symbols = 0;
  /** When the first round counted in the rounds window began (the window's rate is measured from then). */
  private firstRoundAt = Infinity;
  private readonly recentLoss: number[] = [];
  private readonly recentLate: number[] = [];
  /** When a rounds window was last judged (while recent, it and not the re-asks raises the rate). */
  private fastJudgedAt = -Infinity;
  /** Decisions taken so far, for logs and tests. */
  readonly decisions: Record<AutoRateDecision, number> = { raise: 0, hold: 0, backoff: 0, idle: 0 };
  /** The window last closed by update(), and every window the last update() closed (oldest first). */
  lastWindow: AutoRateWindow | undefined;
  readonly closed: AutoRateWindow[] = [];
  private judged: { smoothed: number; baseline: number } | undefined = undefined;

  constructor(now: number, opts: AutoRateOptions = {}) {
    this.minBps = opts.minBps ?? AUTO_MIN_BPS;
    this.maxBps = Math.max(this.minBps, opts.maxBps ?? AUTO_MAX_BPS);
    this.windowMs = opts.windowMs ?? AUTO_WINDOW_MS;
    this.settleMs = opts.settleMs ?? SETTLE_MS;
    this.rate_ = clamp(opts.startBps ?? AUTO_START_BPS, this.minBps, this.maxBps);
    this.slow = { start: now, bytes: 0 };
    this.fast = { start: now, bytes: 0 };
    this.changedAt = now;
  }

  /** The rate to send at now, in bits per second. */
  get rate(): number {
    return this.rate_;
  }

  /** A listener was granted a round (a new listener on a stream). */
  round(): void {
    this.rounds++;
  }

  /** A listener asked for more after its round (a re-join or a repeated report). */
  reask(): void {
    this.reasks++;
  }

  /**
   * A round of K source symbols begun at `startedAt` came out of its hold: `kept` listeners left
   * in time, `late` were still joined. Rounds begun before the last rate change answer another rate
   * and are not counted.
   */
  outcome(kept: number, late: number, K: number, startedAt: number): void {
    if (startedAt < this.changedAt || K < 1) return;
    if (startedAt < this.firstRoundAt) this.firstRoundAt = startedAt;
    this.kept += kept;
    this.late += late;
    this.symbols += (kept + late) * K;
  }

  /** Bytes went on the wire. */
  sent(bytes: number): void {
    this.slow.bytes += bytes;
    this.fast.bytes += bytes;
  }

  /**
   * Close a window when one is due and decide; returns the decision (undefined: no window closed).
   * The caller reads `rate` after 'raise' or 'backoff'.
   */
  update(now: number): AutoRateDecision | undefined {
    this.closed.length = 0;
    const fromRounds = this.updateRounds(now);
    if (fromRounds === 'backoff') {
      // The re-asks counted so far answer the rate just cut: start their window afresh.
      this.resetSlow(now);
      return fromRounds;
    }
    const fromReasks = this.updateReasks(now);
    return fromReasks === 'backoff' || fromReasks === 'raise' || fromRounds === undefined ? fromReasks : fromRounds;
  }

  /**
   * The rounds window: judged once it is FAST_WINDOW_MS old and holds MIN_OUTCOMES outcomes at this
   * rate, of which MIN_KEPT kept up (fewer: it grows, up to 4 x MIN_OUTCOMES, unless the late share
   * already says overload). On a lossy link most listeners are late anyway, and the kept ones carry
   * what the window knows: with few of them chance windows looked like overload.
   */
  private updateRounds(now: number): AutoRateDecision | undefined {
    const n = this.kept + this.late;
    const elapsed = now - this.fast.start;
    // MIN_LATE late listeners at a clean link's share (below LATE_JUDGES) are overload enough: judged at once.
    const early = this.late >= MIN_LATE && this.late / n > LATE_JUDGES && this.recentLate.length > 0 && median(this.recentLate) < LATE_JUDGES - LATE_EXCESS;
    if (!early && (n < MIN_OUTCOMES || elapsed < FAST_WINDOW_MS)) return undefined;
    const rateBefore = this.rate_;
    const { kept, late } = this;
    // The loss per datagram that makes this many rounds of this mean K late (all late: as if one was not).
    const f = Math.min(late, n - 0.5) / n;
    const loss = 1 - Math.pow(1 - f, n / this.symbols);
    // The link's own loss: the median of the recent windows not taken for overload (their minimum is
    // biased low where every window's estimate is noisy, as on a lossy link, and then ordinary
    // windows looked like overload). The same for the late share.
    const baseline = this.recentLoss.length > 0 ? median(this.recentLoss) : loss;
    const lateShare = late / n;
    const baseLate = this.recentLate.length > 0 ? median(this.recentLate) : lateShare;
    // Where most rounds are late anyway (a lossy link) the late share has no room to rise: the estimate judges.
    const lateJudges = baseLate < LATE_JUDGES;
    this.cleanLink = lateJudges;
    const lateOverload = lateJudges && lateShare > baseLate + LATE_EXCESS;
    if (kept < MIN_KEPT && n < 4 * MIN_OUTCOMES && !lateOverload) return undefined;
    // What the share sent, over the time since the window's first round began: a window that opened
    // long before its rounds (the share idle until a receiver came, or busy with its tree) would
    // otherwise read as a rate never used, and the first raise waited a window more (60-80 ms of a
    // 64 MiB transfer's one second).
    const sentBps = (this.fast.bytes * 8) / (Math.min(elapsed, Math.max(FAST_WINDOW_MS, now - this.firstRoundAt)) / 1000);
    this.fastJudgedAt = now;
    let decision: AutoRateDecision;
    if (baseline >= SATURATED_LOSS) {
      // Nearly every round is late at any rate here: the re-asks judge (the estimate still makes the baseline).
      this.pushLoss(loss, lateShare);
      this.fastJudgedAt = -Infinity;
      decision = 'hold';
    } else if (lateOverload || (this.recentLoss.length >= MIN_BASELINE && loss > baseline * 1.5 + LOSS_EXCESS)) {
      if (lateJudges && this.suspect === 0) {
        // A stall or a queue: the next windows tell (CLEAR_WINDOWS). Not a baseline sample either way.
        this.suspect = CLEAR_WINDOWS;
        decision = 'hold';
      } else {
        decision = this.backoff(now, this.slowStart ? 0.5 : BACKOFF, sentBps >= this.rate_ * BUSY);
      }
    } else {
      // Not overloaded: a baseline sample (every one: keeping only the low ones biased the baseline
      // down, and on a 5%-lossy link ordinary windows then looked like overload), and room to raise
      // when near the link's own loss, unless a suspect window is still being cleared.
      this.pushLoss(loss, lateShare);
      const near = loss <= baseline * 1.2 + LOSS_EXCESS / 4 && (!lateJudges || lateShare <= baseLate + LATE_RAISE);
      const busy = sentBps >= this.rate_ * BUSY;
      if (this.suspect > 0) {
        this.suspect--;
        decision = 'hold';
      } else {
        decision = near && busy && this.rate_ < this.maxBps ? this.raise(now) : 'hold';
      }
    }
    this.record({ signal: 'rounds', at: now, elapsedMs: elapsed, rounds: 0, reasks: 0, kept, late, sentBps, rateBefore, rate: this.rate_, decision, smoothed: loss, baseline });
    this.openRoundsWindow(now);
    return decision;
  }

  /** The re-asks window (windowMs, longer while few rounds came). */
  private updateReasks(now: number): AutoRateDecision | undefined {
    const elapsed = now - this.slow.start;
    if (elapsed < this.windowMs) return undefined;
    const events = this.rounds + this.reasks;
    const ignored = now < this.ignoreUntil;
    if (events < MIN_EVENTS && elapsed < this.windowMs * MAX_WINDOWS && !ignored) return undefined;
    const rateBefore = this.rate_;
    this.judged = undefined;
    const decision = ignored ? 'hold' : this.decideReasks(now, elapsed);
    // decideReasks() sets it (TypeScript keeps the narrowing from the assignment above across the call).
    const judged = this.judged as { smoothed: number; baseline: number } | undefined;
    this.record({
      signal: 'reasks', at: now, elapsedMs: elapsed, rounds: this.rounds, reasks: this.reasks, sentBps: (this.slow.bytes * 8) / (elapsed / 1000),
      rateBefore, rate: this.rate_, decision, smoothed: judged?.smoothed, baseline: judged?.baseline,
    });
    this.resetSlow(now);
    return decision;
  }

  private decideReasks(now: number, elapsedMs: number): AutoRateDecision {
    const events = this.rounds + this.reasks;
    // Nobody asked for anything (or almost): nothing learnt, nothing to change.
    if (events < MIN_EVENTS && this.slow.bytes === 0) return 'idle';
    const ratio = this.reasks / Math.max(1, this.rounds);
    this.smoothed = this.smoothed === undefined ? ratio : (this.smoothed + ratio) / 2;
    const baseline = this.recent.length > 0 ? Math.min(...this.recent) : this.smoothed;
    this.judged = { smoothed: this.smoothed, baseline };
    const overloaded = ratio >= HEAVY_REASKS || this.smoothed > baseline * 1.5 + EXCESS;
    if (overloaded) return this.backoff(now, BACKOFF, true);
    this.recent.push(this.smoothed);
    if (this.recent.length > BASELINE_WINDOWS) this.recent.shift();
    // Rounds judged lately own the raises: they answer the rate within a window, re-asks only after SETTLE_MS.
    if (now - this.fastJudgedAt < 2 * this.windowMs) return 'hold';
    const busy = (this.slow.bytes * 8) / (elapsedMs / 1000) >= this.rate_ * BUSY;
    if (!busy || this.rate_ >= this.maxBps || now < this.raiseAfter) return 'hold';
    return this.raise(now);
  }

  private raise(now: number): AutoRateDecision {
    if (this.ceiling !== undefined && this.rate_ > this.ceiling * PAST_CEILING) this.ceiling = undefined;
    const near = this.ceiling !== undefined && this.rate_ >= this.ceiling * NEAR_CEILING;
    // Only a clean link's overload shows at once (the late share jumps); on a lossy one the estimate
    // needs several windows near the limit to see it, and a faster probe ran past it (tests).
    let factor = STEP;
    if (this.slowStart) factor = 2;
    else if (near) factor = this.cleanLink ? Math.min(STEP, 1 + (PROBE_STEP - 1) * PROBE_GROWTH ** this.nearRaises++) : PROBE_STEP;
    else if (this.ceiling === undefined && this.cleanLink) factor = Math.min(2, 1 + (STEP - 1) * PROBE_GROWTH ** this.freeRaises++);
    this.setRate(now, this.rate_ * factor);
    this.raiseAfter = now + this.settleMs;
    return 'raise';
  }

  /**
   * Cut the rate. `used`: the share sent at least BUSY of the rate in the window judged. Only then
   * is the rate remembered as the ceiling: an overload seen while the share sent much less says
   * little about where the path's limit is (a receiver busy starting, late to leave its first
   * rounds while the share sent 17-47 Mbit/s of 100-200, left a ceiling that held the climb back).
   */
  private backoff(now: number, factor: number, used: boolean): AutoRateDecision {
    this.slowStart = false;
    this.suspect = 0;
    if (used) this.ceiling = this.rate_;
    this.nearRaises = 0;
    this.freeRaises = 0;
    this.setRate(now, this.rate_ * factor);
    // Re-asks answer the rate that was cut for a while: they are not judged meanwhile.
    this.ignoreUntil = now + this.settleMs;
    // The ratio just seen answered a rate that is gone: start the smoothing afresh.
    this.smoothed = undefined;
    return 'backoff';
  }

  private setRate(now: number, bps: number): void {
    this.rate_ = clamp(bps, this.minBps, this.maxBps);
    this.changedAt = now;
    // Outcomes so far answer the old rate.
    this.openRoundsWindow(now);
  }

  private openRoundsWindow(now: number): void {
    this.fast.start = now;
    this.fast.bytes = 0;
    this.kept = 0;
    this.late = 0;
    this.symbols = 0;
    this.firstRoundAt = Infinity;
  }

  private pushLoss(loss: number, lateShare: number): void {
    this.recentLoss.push(loss);
    this.recentLate.push(lateShare);
    if (this.recentLoss.length > BASELINE_WINDOWS) this.recentLoss.shift();
    if (this.recentLate.length > BASELINE_WINDOWS) this.recentLate.shift();
  }

  private resetSlow(now: number): void {
    this.slow.start = now;
    this.slow.bytes = 0;
    this.rounds = 0;
    this.reasks = 0;
  }

  private record(w: AutoRateWindow): void {
    this.lastWindow = w;
    this.closed.push(w);
    this.decisions[w.decision]++;
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
