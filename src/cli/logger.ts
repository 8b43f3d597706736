/**
 * Human and machine log lines on stderr. stdout is reserved for results (and
 * for the JSON document with --json), so scripts can parse it. Names in messages
 * are escaped as names.ts's displayName says (`\xHH` for bytes that are not
 * UTF-8 and for control characters); JSON fields as its jsonNames says.
 */
import { displayName, jsonNames } from '../core/base/names.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'verbose';
const rank: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, verbose: 3 };

export class Logger {
  readonly level: LogLevel;
  readonly format: 'text' | 'json';
  private readonly write: (s: string) => void;

  constructor(opts: { level?: LogLevel; format?: 'text' | 'json'; write?: (s: string) => void } = {}) {
    this.level = opts.level ?? 'info';
    this.format = opts.format ?? 'text';
    this.write = opts.write ?? ((s) => process.stderr.write(s));
  }

  enabled(level: LogLevel): boolean {
    return rank[level] <= rank[this.level];
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.emit('error', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.emit('warn', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.emit('info', msg, fields);
  }
  verbose(msg: string, fields?: Record<string, unknown>): void {
    this.emit('verbose', msg, fields);
  }

  private emit(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (!this.enabled(level)) return;
    if (this.format === 'json') {
      this.write(JSON.stringify({ time: new Date().toISOString(), level, msg: displayName(msg), ...(jsonNames(fields ?? {}) as Record<string, unknown>) }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
    } else {
      const prefix = level === 'error' ? 'lcsync: ' : level === 'warn' ? 'lcsync: warning: ' : '';
      this.write(`${prefix}${displayName(msg)}\n`);
    }
  }
}
