/**
 * Token-bucket pacer: how fast a sender may put bytes on the wire.
 *
 * A veth (and many NICs with a large send buffer) gives no back-pressure: datagrams sent
 * faster than the receivers drain them are dropped silently. So a sender asks the pacer
 * before each datagram. Tokens are bytes; they refill at `bitsPerSecond / 8` per second up
 * to `burstBytes`. Requests are served first come, first served, so several streams that
 * share one pacer share the rate.
 */
import { LcsyncError } from '../base/errors.js';

export interface PacerOptions {
  /** Bits per second; 0 or Infinity means unlimited. */
  bitsPerSecond: number;
  /**
   * Bucket depth in bytes: how much may leave back to back after an idle spell. Default:
   * 64 KiB or 5 ms worth of traffic, whichever is larger (timers fire with ~1 ms jitter,
   * so a smaller bucket could not reach the rate; a larger one fills receivers' buffers).
   */
  burstBytes?: number;
  /** Clock in milliseconds; tests pass a fake one. Default performance.now. */
  now?: () => number;
}

const MIN_BURST_BYTES = 64 * 1024;
const BURST_SECONDS = 0.005;

interface Waiter {
  bytes: number;
  resolve: () => void;
}

export class Pacer {
  private bitsPerSecond_ = 0;
  private burstBytes_ = 0;
  private bytesPerMs = 0;
  private unlimited = true;
  /** The burst asked for at construction; undefined: derived from the rate. */
  private readonly fixedBurst: number | undefined;
  private readonly now: () => number;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: PacerOptions) {
    if (opts.burstBytes !== undefined && !(opts.burstBytes > 0)) throw new LcsyncError('USAGE', `invalid burst ${String(opts.burstBytes)}`);
    this.fixedBurst = opts.burstBytes;
    this.now = opts.now ?? (() => performance.now());
    this.last = this.now();
    this.configure(opts.bitsPerSecond);
    this.tokens = this.burstBytes_;
  }

  /** Bits per second; 0 or Infinity: unlimited. */
  get bitsPerSecond(): number {
    return this.bitsPerSecond_;
  }

  /** Bucket depth in bytes (Infinity when unlimited). */
  get burstBytes(): number {
    return this.burstBytes_;
  }

  /**
   * Change the rate from now on (--bwlimit auto). Tokens earned so far are kept (up to the new
   * bucket), and whoever waits is served at the new rate.
   */
  setRate(bitsPerSecond: number): void {
    this.refill();
    const wasUnlimited = this.unlimited;
    this.configure(bitsPerSecond);
    // Coming from unlimited, the bucket starts full, as a new pacer's does.
    this.tokens = wasUnlimited ? this.burstBytes_ : Math.min(this.tokens, this.burstBytes_);
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.unlimited) {
      while (this.waiting > 0) {
        const w = this.queue[this.head]!;
        this.queue[this.head++] = undefined as unknown as Waiter;
        w.resolve();
      }
      this.queue.length = 0;
      this.head = 0;
      return;
    }
    this.release();
  }

  private configure(bps: number): void {
    if (!(bps >= 0)) throw new LcsyncError('USAGE', `invalid rate ${String(bps)}`);
    this.bitsPerSecond_ = bps;
    this.unlimited = bps === 0 || bps === Infinity;
    this.bytesPerMs = this.unlimited ? Infinity : bps / 8 / 1000;
    this.burstBytes_ = this.unlimited ? Infinity : (this.fixedBurst ?? Math.max(MIN_BURST_BYTES, (bps / 8) * BURST_SECONDS));
  }

  /** Requests waiting for tokens. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /**
   * Returns undefined at once when `bytes` may be sent now, otherwise a promise that resolves
   * when they may. A request larger than the bucket is let through when the bucket is full and
   * leaves it in debt, so the long-run rate holds for any datagram size.
   */
  take(bytes: number): Promise<void> | void {
    if (this.unlimited) return;
    if (!(bytes >= 0)) throw new RangeError(`pacer: invalid byte count ${bytes}`);
    if (this.waiting === 0) {
      this.refill();
      if (this.tokens >= Math.min(bytes, this.burstBytes)) {
        this.tokens -= bytes;
        return;
      }
    }
    return new Promise<void>((resolve) => {
      this.queue.push({ bytes, resolve });
      this.schedule();
    });
  }

  private refill(): void {
    const t = this.now();
    const elapsed = t - this.last;
    this.last = t;
    if (this.unlimited) return;
    if (elapsed > 0) this.tokens = Math.min(this.burstBytes_, this.tokens + elapsed * this.bytesPerMs);
  }

  private schedule(): void {
    if (this.timer !== undefined || this.waiting === 0) return;
    const first = this.queue[this.head]!;
    const need = Math.min(first.bytes, this.burstBytes) - this.tokens;
    const ms = Math.max(1, Math.ceil(need / this.bytesPerMs));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, ms);
  }

  private release(): void {
    this.refill();
    while (this.waiting > 0) {
      const w = this.queue[this.head]!;
      if (this.tokens < Math.min(w.bytes, this.burstBytes)) break;
      this.tokens -= w.bytes;
      this.queue[this.head++] = undefined as unknown as Waiter;
      w.resolve();
    }
    // Drop the served prefix now and then instead of shifting on every release.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.schedule();
  }
}

const RATE_RE = /^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt])?(?:bit|bps|bit\/s)?$/i;
const SCALE: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9, t: 1e12 };

/**
 * Parse a rate in bits per second: `800000`, `500k`, `100M`, `1.5G`, `1T`, optionally
 * followed by `bit`, `bps` or `bit/s`; suffixes are decimal (x1000) and case-insensitive.
 */
export function parseRate(s: string): number {
  const m = RATE_RE.exec(s.trim());
  const fail = () => new LcsyncError('USAGE', `invalid rate "${s}"`);
  if (!m) throw fail();
  const value = Number(m[1]) * (m[2] ? SCALE[m[2].toLowerCase()]! : 1);
  // A rate that rounds to 0 would silently mean "unlimited".
  if (!Number.isFinite(value) || (value > 0 && value < 1)) throw fail();
  return Math.round(value);
}
