/**
 * Long synchronous runs of work cut into turns of the event loop.
 *
 * Why: a receiver's event loop is also its network. Datagrams are read, objects completed, and
 * group memberships changed (net/membership.ts makes changes in bursts on a timer) only between
 * runs of JavaScript. A directory's bundle part arriving with a hundred small files was verified
 * and its children started in one run of 100-300 ms; meanwhile the other parts in flight, all
 * received by then, sat unread in the socket buffer, and the leaves of those done and the joins
 * of the next ones waited on a timer that could not fire. The share saw each batch of parts left
 * about 600 ms late (a profile and a capture of a 5,000-file first sync): it built a RaptorQ
 * encoder to send repair symbols to a receiver that lacked nothing, and heard the next joins only
 * after the receiver had finished, so receiver and share took turns instead of overlapping.
 *
 * A TurnBudget lets such a loop hand the event loop back once its turn has run for the budget:
 * `const p = budget.pause(); if (p) await p;` between items. Within budget it costs a clock read.
 */
export const DEFAULT_TURN_BUDGET_MS = 8;

export class TurnBudget {
  private turnStart = 0;
  /** Whether a setImmediate is armed to notice that the event loop turned. */
  private armed = false;
  /** Turns given back to the event loop (for tests and stats). */
  pauses = 0;

  constructor(private readonly budgetMs = DEFAULT_TURN_BUDGET_MS) {}

  /**
   * Undefined while the work of this turn is within the budget; else a promise that resolves in a
   * later turn, after the event loop has run its timers and read its sockets.
   */
  pause(): Promise<void> | undefined {
    const now = performance.now();
    if (!this.armed) {
      // The first call of a turn starts its clock; the setImmediate runs once the loop has turned.
      this.armed = true;
      this.turnStart = now;
      setImmediate(this.turned);
      return undefined;
    }
    if (now - this.turnStart < this.budgetMs) return undefined;
    this.pauses++;
    return new Promise<void>((resolve) => setImmediate(resolve));
  }

  private readonly turned = (): void => {
    this.armed = false;
  };
}
