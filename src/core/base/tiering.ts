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
 * and went further: late tiering saved 13-18% of its CPU for one 64 MiB file, about 30% for a first
 * sync of 2,000 small files (bench/README.md, "The receiver and late tiering"); without TurboFan at
 * all (baselineOnly(), which SyncSession.open calls after tierUpLate()) it spends no more CPU at 64 or 512 MiB
 * or 20,000 small files, since its JavaScript runs per object while the datagrams stay in the addon, and its
 * peak RSS is 4.5-7 MiB lower (15-30 MiB at 20,000 files): the compiler's code in the node binary is never
 * paged in and its zones never allocated (bench/README.md, "eighteenth session"). Over a long transfer the
 * baseline code costs (7% more CPU over 1 GiB, 28% over 4 GiB): the receiver lets TurboFan in after 4,096
 * chunks, and when its JavaScript turns hot (allowOptimizing).
 * A share keeps TurboFan: without it a share sending 512 MiB spent 15-20% more CPU.
 *
 * The flag is process-wide and takes effect for every later budget V8 hands out, so calling this
 * early in a command is enough. LCSYNC_DEFAULT_TIERING=1 keeps V8's default (to measure both).
 */
import { setFlagsFromString } from 'node:v8';

/** V8's default interrupt budget in node 20 (V8 11.3): bytecode run in a function before it is considered for optimization. */
export const V8_DEFAULT_INTERRUPT_BUDGET = 67_584;
/** How many times the default a share waits (8 and 32 times measured alike; 4 times saved half as much). */
export const LATE_TIERING_FACTOR = 16;

/** Whether tierUpLate() and baselineOnly() change anything (LCSYNC_DEFAULT_TIERING is not 1). */
export function lateTieringWanted(): boolean {
  return process.env.LCSYNC_DEFAULT_TIERING !== '1';
}

/** The highest of V8's tiers a receiver's functions reach (--max-opt): 1, the baseline compiler (Sparkplug). */
export const RECEIVER_MAX_TIER = 1;

/** Whether baselineOnly() holds (allowOptimizing() undoes it). */
let baseline = false;

/**
 * Never compile a function with TurboFan from now on (functions still reach V8's baseline code, from bytecode
 * on a short budget); returns whether it was set. V8 reads the flag at each tier-up decision, so calling this
 * before a receiver's work starts is enough (functions optimized before stay so).
 */
export function baselineOnly(): boolean {
  if (!lateTieringWanted()) return false;
  setFlagsFromString(`--max-opt=${RECEIVER_MAX_TIER}`);
  baseline = true;
  return true;
}

/**
 * Undo baselineOnly(): V8 may optimize again (on the budget tierUpLate set). For a receiver whose
 * JavaScript turns hot after all: one that decodes much RaptorQ (chunks lost many symbols: the solver's
 * arithmetic runs per symbol; sync/receiver.ts OPTIMIZE_AFTER_DECODED_SYMBOLS), handles every datagram
 * itself (encrypted, or no native receive path), or has received 4,096 chunks (128 MiB) and may have much
 * more to go.
 */
export function allowOptimizing(): void {
  if (!baseline) return;
  baseline = false;
  // --max-opt alone does not undo what it implied (--no-turbofan).
  setFlagsFromString('--max-opt=999');
  setFlagsFromString('--turbofan');
}

/** Let V8 optimize functions only after LATE_TIERING_FACTOR times its default budget; returns whether it was set. */
export function tierUpLate(): boolean {
  if (!lateTieringWanted()) return false;
  setFlagsFromString(`--interrupt-budget=${V8_DEFAULT_INTERRUPT_BUDGET * LATE_TIERING_FACTOR}`);
  return true;
}
