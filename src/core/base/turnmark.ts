/**
 * "At most once per interval" for housekeeping that every process using a directory would
 * otherwise repeat (sweeping a cache for old files): the mtime of a mark file says when it last
 * ran. Racy on purpose: two processes starting together may both run it, which a sweep survives;
 * what matters is that the thousandth cron run of the hour does not stat every file again.
 */
import { stat, writeFile } from 'node:fs/promises';

/**
 * Whether the housekeeping marked by `mark` is due (last run `intervalMs` ago or more, never, or
 * in the future of a clock that was set back); if so the mark is touched, claiming this turn.
 */
export async function claimTurn(mark: string, intervalMs: number): Promise<boolean> {
  const last = await stat(mark).then((st) => st.mtimeMs, () => 0);
  const now = Date.now();
  if (last <= now && now - last < intervalMs) return false;
  await writeFile(mark, '').catch(() => undefined);
  return true;
}
