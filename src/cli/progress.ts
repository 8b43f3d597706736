/**
 * Spinner and progress line on a TTY only (never under cron, with --json or -q).
 * ora is imported lazily: it costs start-up time that non-interactive runs should not pay.
 */
import type { Ora } from 'ora';

export interface ProgressState {
  bytesReceived: number;
  chunksFetched: number;
  chunksWanted: number;
}

export class Progress {
  private spinner?: Ora;
  private readonly started = Date.now();
  private last = 0;

  constructor(private readonly opts: { enabled: boolean }) {}

  /**
   * Progress only on a terminal that has a width, never with --json, -q or JSON
   * logs. (A pseudo-terminal of 0 columns, as `script` makes, would have ora
   * clear an endless number of lines.)
   */
  static wanted(flags: { json: boolean; quiet: boolean; 'log-format': string }): boolean {
    return process.stderr.isTTY === true && (process.stderr.columns ?? 0) > 0 && !flags.json && !flags.quiet && flags['log-format'] === 'text';
  }

  async start(text: string): Promise<void> {
    if (!this.opts.enabled) return;
    const { default: ora } = await import('ora');
    this.spinner = ora({ text, stream: process.stderr, isEnabled: true, discardStdin: false }).start();
  }

  update(p: ProgressState): void {
    if (!this.spinner) return;
    const now = Date.now();
    if (now - this.last < 100) return;
    this.last = now;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? p.bytesReceived / secs / 1e6 : 0;
    this.spinner.text = `${(p.bytesReceived / 1e6).toFixed(1)} MB received, chunks ${p.chunksFetched}/${p.chunksWanted}, ${rate.toFixed(1)} MB/s`;
  }

  /** Print a line without tearing the spinner. */
  pause(print: () => void): void {
    if (!this.spinner) return print();
    this.spinner.clear();
    print();
    this.spinner.render();
  }

  stop(): void {
    this.spinner?.stop();
    this.spinner = undefined;
  }
}
