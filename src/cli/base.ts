/**
 * What every command shares: the output flags, the logger they configure, and
 * the one place where errors become a one-line message and an exit status.
 * Commands stay thin: parse flags, call core, render.
 */
import { Command, Flags, Errors } from '@oclif/core';
import { ExitCode, LcsyncError } from '../core/base/errors.js';
import { Logger } from './logger.js';
import { displayName, jsonNames } from '../core/base/names.js';
import { rawArgs } from './argv.js';

export abstract class LcsyncCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: 'Print one JSON document on stdout; nothing else goes to stdout.', default: false }),
    quiet: Flags.boolean({ char: 'q', description: 'Print errors only.', default: false }),
    verbose: Flags.boolean({ char: 'v', description: 'Print more detail (index and sync: a line per file).', default: false }),
    'log-format': Flags.option({ options: ['text', 'json'] as const, description: 'Format of log lines on stderr.', default: 'text' })(),
  };

  protected log_!: Logger;
  protected jsonOutput = false;

  override async init(): Promise<void> {
    await super.init();
    // Paths and share names are bytes: take arguments that are not UTF-8 as they were typed.
    this.argv = rawArgs(this.argv);
  }

  /** Set up the logger from the parsed base flags; commands call this after this.parse(). */
  protected setupOutput(flags: { json: boolean; quiet: boolean; verbose: boolean; 'log-format': string }): Logger {
    this.jsonOutput = flags.json;
    this.log_ = new Logger({
      level: flags.quiet ? 'error' : flags.verbose ? 'verbose' : 'info',
      format: flags['log-format'] === 'json' ? 'json' : 'text',
    });
    return this.log_;
  }

  /** Print the result document on stdout; names that are not UTF-8 as jsonNames (names.ts) says. */
  protected printJson(doc: unknown): void {
    process.stdout.write(JSON.stringify(jsonNames(doc), jsonReplacer, 2) + '\n');
  }

  override async catch(err: Error & { oclif?: { exit?: number }; code?: string }): Promise<void> {
    if (err instanceof Errors.ExitError) throw err;
    // A parse error comes before setupOutput(): --json still gets its document.
    if (this.argv.includes('--json')) this.jsonOutput = true;
    let code: number;
    let message: string;
    let kind: string;
    if (err instanceof LcsyncError) {
      code = err.exitCode;
      // Names in messages are shown with names.ts's escapes (\xHH): one line, whatever the bytes.
      message = displayName(err.message);
      kind = err.code;
    } else if (err.oclif?.exit !== undefined || err.name === 'CLIError' || /Parse|Flag|Arg/.test(err.constructor?.name ?? '')) {
      // oclif's own parse errors: unknown flags, missing arguments, bad option values.
      code = ExitCode.usage;
      message = `${missingArgsMessage(err, this.id, this.ctor.args, this.ctor.strict === false) ?? oneLine(err.message)} (see 'lcsync ${this.id ?? ''} --help')`;
      kind = 'USAGE';
    } else {
      code = ExitCode.internal;
      message = `internal error: ${firstLine(err.message)}`;
      kind = 'INTERNAL';
      if (process.env.LCSYNC_DEBUG) process.stderr.write(`${err.stack}\n`);
    }
    if (this.jsonOutput) this.printJson({ ok: false, error: { code: kind, exitCode: code, message } });
    if (this.log_) this.log_.error(message);
    else process.stderr.write(`lcsync: ${message}\n`);
    this.exit(code);
  }
}

/**
 * oclif lists missing arguments as "name  description" lines, which fold into an unreadable run of
 * words: say which are missing by their usage names instead, with the command's usage line.
 */
function missingArgsMessage(err: Error & { args?: unknown }, id: string | undefined, declared: Record<string, unknown> | undefined, variadic: boolean): string | undefined {
  if (err.constructor?.name !== 'RequiredArgsError' || !Array.isArray(err.args)) return undefined;
  const missing = (err.args as { name?: unknown }[]).map((a) => String(a.name ?? '?').toUpperCase());
  if (missing.length === 0) return undefined;
  const names = missing.length === 1 ? missing[0]! : `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]!}`;
  const usage = Object.keys(declared ?? {}).map((a) => a.toUpperCase()).join(' ') + (variadic ? '...' : '');
  return `missing ${names}; usage: lcsync ${id ?? ''} [FLAGS] ${usage}`;
}

/** oclif's parse errors span several lines (a title, the arguments, a hint): fold them into one. */
function oneLine(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^See more help/i.test(l))
    .join(' ')
    .replace(/\s*Note: .*$/, '')
    .replace(/^(Error:\s*)/, '')
    .replace(/\s+/g, ' ');
}

function firstLine(s: string): string {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? s;
  return line.replace(/^\s*(Error:\s*)?/, '').trim();
}

/** JSON.stringify helper: bigints as strings, Buffers as hex. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}
