/** Durations on the command line: `3s`, `500ms`, `1.5s`, `2m`, or a bare number of seconds. */
import { LcsyncError } from '../core/base/errors.js';

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m)?$/i;
const SCALE: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `s` in milliseconds, at most `maxMs`; a USAGE error naming `flag` otherwise. */
export function parseDurationMs(s: string, flag: string, maxMs: number): number {
  const m = DURATION_RE.exec(s.trim());
  const ms = m ? Math.round(Number(m[1]) * SCALE[(m[2] ?? 's').toLowerCase()]!) : NaN;
  if (!Number.isFinite(ms) || ms > maxMs) throw new LcsyncError('USAGE', `invalid ${flag} "${s}" (a duration such as 3s or 500ms, at most ${maxMs / 1000} s)`);
  return ms;
}
