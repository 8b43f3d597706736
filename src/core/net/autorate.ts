/**
 * `--bwlimit auto`: the share's send rate, steered by what it can see of its receivers without a
 * back-channel. Pure: no timers, no sockets; every call takes the time, and the share sets the
 * pacer to `rate` whenever update() says it changed.
 *
 * The signal is the listeners' own behaviour under MLD (scheduler.ts, stream.ts). Every listener
 * that joins an object's group is granted a round (K source symbols and a small margin); one that
 * lost more than the margin leaves and joins again, or keeps reporting after its round, to ask for
 * more. So re-asks per round is the fraction of receivers that lost more than about 5% of a round.
 * Datagrams sent faster than the path or a receiver can take are dropped (a veth, a switch queue or
 * a socket buffer gives no back-pressure), and that loss grows with the rate; loss on a noisy link
 * does not. The controller therefore compares each window's re-ask ratio with the lowest it saw
 * lately (what the link loses anyway) and backs off only when the ratio rises well above that, or
 * when it is so high that receivers barely get anything (HEAVY_REASKS).
 *
 * Rates move like TCP's: doubling per clean window until the first sign of overload (slow start),
 * then a cut to BACKOFF of the rate and a slow climb (STEP per clean window) that probes for room
 * again. A window in which the share sent much less than the rate (nothing to send, or the CPU
 * was the limit) does not raise it: a rate never exercised says nothing about the path.
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
/** Windows whose ratios make the baseline (the recent minimum). */
const BASELINE_WINDOWS = 8;
/** A window is rate-limited (worth raising the rate after) when it sent at least this share of the rate. */
const BUSY = 0.5;

export type AutoRateDecision = 'raise' | 'hold' | 'backoff' | 'idle';

/** What one closed window held and what was decided on it (LCSYNC_AUTORATE_TRACE, tests). */
export interface AutoRateWindow {
  /** When it closed, and how long it lasted (ms). */
  at: number;
  elapsedMs: number;
  rounds: number;
  reasks: number;
  /** What went on the wire in it, bits per second. */
  sentBps: number;
  /** The rate it was sent at, and the rate after the decision. */
  rateBefore: number;
  rate: number;
  decision: AutoRateDecision;
  /** The smoothed re-ask ratio and the baseline it was judged against (undefined: not judged). */
  smoothed?: number;
  baseline?: number;
}

export class AutoRate {
  readonly minBps: number;
  readonly maxBps: number;
  readonly windowMs: number;
  readonly settleMs: number;
  private rate_: number;
  /** Until the first overload the rate doubles per clean window. */
  private slowStart = true;
  private windowStart: number;
  /** No raise before this time (after a raise), no decision at all before ignoreUntil (after a cut). */
  private raiseAfter = -Infinity;
  private ignoreUntil = -Infinity;
  private rounds = 0;
  private reasks = 0;
  private bytes = 0;
  /** Smoothed re-ask ratio, and the recent windows' values of it (for the baseline). */
  private smoothed: number | undefined;
  private readonly recent: number[] = [];
  /** Decisions taken so far, for logs and tests. */
  readonly decisions: Record<AutoRateDecision, number> = { raise: 0, hold: 0, backoff: 0, idle: 0 };
  /** The window last closed by update(). */
  lastWindow: AutoRateWindow | undefined;
  private judged: { smoothed: number; baseline: number } | undefined = undefined;

  constructor(now: number, opts: AutoRateOptions = {}) {
    this.minBps = opts.minBps ?? AUTO_MIN_BPS;
    this.maxBps = Math.max(this.minBps, opts.maxBps ?? AUTO_MAX_BPS);
    this.windowMs = opts.windowMs ?? AUTO_WINDOW_MS;
    this.settleMs = opts.settleMs ?? SETTLE_MS;
    this.rate_ = clamp(opts.startBps ?? AUTO_START_BPS, this.minBps, this.maxBps);
    this.windowStart = now;
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

  /** Bytes went on the wire. */
  sent(bytes: number): void {
    this.bytes += bytes;
  }

  /**
   * Close the window when it is due and decide; returns the decision (undefined: window still
   * open). The caller reads `rate` after 'raise' or 'backoff'.
   */
  update(now: number): AutoRateDecision | undefined {
    const elapsed = now - this.windowStart;
    if (elapsed < this.windowMs) return undefined;
    const events = this.rounds + this.reasks;
    const ignored = now < this.ignoreUntil;
    if (events < MIN_EVENTS && elapsed < this.windowMs * MAX_WINDOWS && !ignored) return undefined;
    const rateBefore = this.rate_;
    this.judged = undefined;
    const decision = ignored ? 'hold' : this.decide(now, elapsed);
    // decide() sets it (TypeScript keeps the narrowing from the assignment above across the call).
    const judged = this.judged as { smoothed: number; baseline: number } | undefined;
    this.lastWindow = {
      at: now,
      elapsedMs: elapsed,
      rounds: this.rounds,
      reasks: this.reasks,
      sentBps: (this.bytes * 8) / (elapsed / 1000),
      rateBefore,
      rate: this.rate_,
      decision,
      smoothed: judged?.smoothed,
      baseline: judged?.baseline,
    };
    if (decision === 'raise') this.raiseAfter = now + this.settleMs;
    if (decision === 'backoff') this.ignoreUntil = now + this.settleMs;
    this.decisions[decision]++;
    this.windowStart = now;
    this.rounds = 0;
    this.reasks = 0;
    this.bytes = 0;
    return decision;
  }

  private decide(now: number, elapsedMs: number): AutoRateDecision {
    const events = this.rounds + this.reasks;
    // Nobody asked for anything (or almost): nothing learnt, nothing to change.
    if (events < MIN_EVENTS && this.bytes === 0) return 'idle';
    const ratio = this.reasks / Math.max(1, this.rounds);
    this.smoothed = this.smoothed === undefined ? ratio : (this.smoothed + ratio) / 2;
    const baseline = this.recent.length > 0 ? Math.min(...this.recent) : this.smoothed;
    this.judged = { smoothed: this.smoothed, baseline };
    const overloaded = ratio >= HEAVY_REASKS || this.smoothed > baseline * 1.5 + EXCESS;
    if (overloaded) {
      this.slowStart = false;
      this.rate_ = clamp(this.rate_ * BACKOFF, this.minBps, this.maxBps);
      // The ratio just seen answered a rate that is gone: start the smoothing afresh.
      this.smoothed = undefined;
      return 'backoff';
    }
    this.recent.push(this.smoothed);
    if (this.recent.length > BASELINE_WINDOWS) this.recent.shift();
    const busy = (this.bytes * 8) / (elapsedMs / 1000) >= this.rate_ * BUSY;
    if (!busy || this.rate_ >= this.maxBps || now < this.raiseAfter) return 'hold';
    this.rate_ = clamp(this.rate_ * (this.slowStart ? 2 : STEP), this.minBps, this.maxBps);
    return 'raise';
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
