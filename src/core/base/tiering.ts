/**
 * When V8 compiles a function with its optimizing compiler (TurboFan): later than by default, in a
 * process whose work is one hot loop that runs for seconds (a share sending a file, a sync receiving).
 *
 * Why: by default V8 optimizes a function after a small amount of bytecode has run in it (node 20:
 * `--interrupt-budget=67584`), on a background thread. In a share sending 64 MiB that meant about a
 * hundred compilations during the transfer, several of the same function again after a
 * deoptimization (code first optimized on a few joins' worth of type feedback meets a case it
 * had not seen), and the compiler was a fifth of the share's CPU in `perf` (more than the
 * JavaScript it compiled). Most of those functions run per join or per round, not per datagram (the
 * datagrams are framed natively, net/txplan.ts), and never repaid their compilation. With a budget
 * 16 times the default only the truly hot ones are optimized, and on more type feedback; the share's
 * CPU for the transfer of 64 MiB fell by about a fifth (bench/README.md, "eighth session").
 * A receiver is the same kind of process (per batch, per object, per file for as long as a sync runs),
 * and SyncSession.open calls this too: 13-18% less CPU for one 64 MiB file, about 30% less for a
 * first sync of 2,000 small files (bench/README.md, "The receiver and late tiering").
 *
 * The flag is process-wide and takes effect for every later budget V8 hands out, so calling this
 * early in a command is enough. LCSYNC_DEFAULT_TIERING=1 keeps V8's default (to measure both).
 */
import { setFlagsFromString } from 'node:v8';

/** V8's default interrupt budget in node 20 (V8 11.3): bytecode run in a function before it is considered for optimization. */
export const V8_DEFAULT_INTERRUPT_BUDGET = 67_584;
/** How many times the default a share waits (8 and 32 times measured alike; 4 times saved half as much). */
export const LATE_TIERING_FACTOR = 16;

/** Whether tierUpLate() changes anything (LCSYNC_DEFAULT_TIERING is not 1). */
export function lateTieringWanted(): boolean {
  return process.env.LCSYNC_DEFAULT_TIERING !== '1';
}

/** Let V8 optimize functions only after LATE_TIERING_FACTOR times its default budget; returns whether it was set. */
export function tierUpLate(): boolean {
  if (!lateTieringWanted()) return false;
  setFlagsFromString(`--interrupt-budget=${V8_DEFAULT_INTERRUPT_BUDGET * LATE_TIERING_FACTOR}`);
  return true;
}
