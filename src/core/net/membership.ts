/**
 * Group membership changes in bursts, pure: no sockets, no timers. MulticastReceiver asks it what to
 * change in the kernel and when.
 *
 * Why: Linux sends an MLDv2 state-change report a couple of jiffies after the LAST membership change of
 * an interface; every join or leave moves that report later (mld_ifc_event re-arms the delayed work). A
 * receiver that joins and leaves groups without a pause, as one with many small objects in flight does,
 * keeps postponing its reports: measured in the lab with 128 tree fetches in flight, reports went out
 * in bursts 100-270 ms apart, so the share heard joins late (receivers waited) and leaves late (it kept
 * sending rounds and trickles to receivers that had their objects). Changes made together, with a quiet
 * gap of at least BATCH_MS between bursts, let the kernel send one report per burst, carrying every
 * record of it, soon after the burst.
 *
 * The first change after a quiet gap is made at once (one object at a time pays no delay); changes
 * asked for within BATCH_MS of the last burst wait for the next one. A join and a leave of the same
 * group in one wait cancel out; a rejoin (leave and join again, for a fresh report) is kept.
 *
 * A receiver that reports its joins itself (join-reporter.ts) does not wait for the kernel's report of a
 * join, so it may make a few bursts in quick succession: `credits` bursts may follow each other at once,
 * one more every BATCH_MS (a token bucket; with one credit, the rule above). A sync that learns what to
 * ask for next only from what just came (a directory's tree, then a file's entry, then its chunk) then
 * asks at once each time instead of BATCH_MS after its previous join. Under a steady flow of changes the
 * bursts are still BATCH_MS apart, so the kernel's own reports (the only ones carrying leaves) still go
 * out in the gaps.
 */

/**
 * The least gap between bursts of membership changes. The kernel's report goes out 2 jiffies after
 * the last change (8 ms at HZ=250, 2 ms at HZ=1000), so this leaves it room at the usual HZ
 * while adding at most this much to a join's latency under load.
 */
export const BATCH_MS = 12;

/** One change for the kernel: join, leave, or leave then join (a rejoin) of a group. */
export type MembershipChange = { group: string; op: 'join' | 'leave' | 'rejoin' };

/** What the caller wants joined, what the kernel has, and what changes are waiting for the next burst. */
export class MembershipBatch {
  /** Groups the caller wants (the intent, at once). */
  private readonly wanted = new Set<string>();
  /** Groups the kernel has joined (applied bursts). */
  private readonly applied = new Set<string>();
  /** Groups touched since the last burst, in order, with whether a fresh report was asked for. */
  private readonly touched = new Map<string, { rejoin: boolean }>();
  /** Bursts that may be made at once (at most `credits`), as of `creditAt`. */
  private credit: number;
  private creditAt = -Infinity;

  constructor(
    private readonly batchMs = BATCH_MS,
    /** Bursts that may follow each other at once (see above); 1 keeps them all BATCH_MS apart. */
    readonly credits = 1,
  ) {
    if (!Number.isInteger(credits) || credits < 1) throw new RangeError('membership credits must be a positive integer');
    this.credit = credits;
  }

  /** Groups wanted (joined as far as the caller is concerned). */
  get joined(): ReadonlySet<string> {
    return this.wanted;
  }

  /** Groups the kernel has joined now. */
  get inKernel(): ReadonlySet<string> {
    return this.applied;
  }

  /** Whether changes wait for a burst. */
  get pending(): boolean {
    return this.touched.size > 0;
  }

  join(group: string): void {
    if (this.wanted.has(group)) return;
    this.wanted.add(group);
    if (!this.touched.has(group)) this.touched.set(group, { rejoin: false });
  }

  leave(group: string): void {
    if (!this.wanted.delete(group)) return;
    if (!this.touched.has(group)) this.touched.set(group, { rejoin: false });
  }

  /** Leave and join again in one burst, so the kernel reports the group afresh. */
  rejoin(group: string): void {
    this.wanted.add(group);
    this.touched.set(group, { rejoin: true });
  }

  /** When the next burst may be made: now if a credit is left (with one credit: the last burst was at least batchMs ago). */
  dueAt(): number {
    if (this.batchMs <= 0 || this.credit >= 1) return this.creditAt;
    return this.creditAt + (1 - this.credit) * this.batchMs;
  }

  /**
   * How long a leave asked for `now` waits for a join to go with it: with one credit only until the
   * next burst may be made (at least the end of the caller's turn); with more, BATCH_MS, so that the
   * leave does not spend the credit the join that usually follows it (the next object of a fetch
   * whose object just came) would need.
   */
  leaveDueAt(now: number): number {
    return Math.max(this.dueAt(), this.credits > 1 ? now + this.batchMs : now);
  }

  /**
   * The changes of a burst made `now`: the leaves first (they free memberships for the joins), then
   * the joins and rejoins in the order they were asked for. The caller makes them and reports each
   * outcome with done(), retry() or refused(). Groups joined and left again meanwhile need none.
   */
  burst(now: number): MembershipChange[] {
    if (this.batchMs > 0) {
      this.credit = Math.min(this.credits, this.credit + (now - this.creditAt) / this.batchMs) - 1;
    }
    this.creditAt = now;
    // Leaves first, then joins, in one array (a receiver makes a burst per chunk or two: no spreads).
    const out: MembershipChange[] = [];
    let leaves = 0;
    this.touched.forEach((t, group) => {
      const want = this.wanted.has(group);
      const have = this.applied.has(group);
      if (want && !have) out.push({ group, op: 'join' });
      else if (!want && have) out.splice(leaves++, 0, { group, op: 'leave' });
      else if (want && have && t.rejoin) out.push({ group, op: 'rejoin' });
    });
    this.touched.clear();
    return out;
  }

  /** The kernel made `change`. */
  done(change: MembershipChange): void {
    if (change.op === 'leave') this.applied.delete(change.group);
    else this.applied.add(change.group);
  }

  /** The kernel refused to join `group`: it is not wanted any more (the caller says why to whoever asked). */
  refused(group: string): void {
    this.wanted.delete(group);
    this.applied.delete(group);
  }

  /** The kernel is out of memberships for now: ask again at the next burst (a leave frees one). */
  retry(group: string): void {
    if (this.wanted.has(group) && !this.touched.has(group)) this.touched.set(group, { rejoin: false });
  }

  /** Forget everything (the socket closes; the kernel drops its memberships with it). */
  clear(): void {
    this.wanted.clear();
    this.applied.clear();
    this.touched.clear();
  }
}
