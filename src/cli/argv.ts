/**
 * Command-line arguments as bytes. Node decodes argv as UTF-8 and turns bytes that are not
 * UTF-8 into U+FFFD, so `lcsync index $'bad\xff.txt'` would look for another file. Linux
 * keeps the exact bytes in /proc/self/cmdline: the arguments are taken from there, in the
 * string form of names.ts, when they are recognisably the same arguments.
 */
import { readFileSync } from 'node:fs';
import { nameFromBytes } from '../core/base/names.js';

/**
 * `args` (the last arguments Node decoded) with their exact bytes from `cmdline` (NUL-separated,
 * as /proc/self/cmdline). Returns `args` unchanged unless the last args.length entries of
 * cmdline decode, the way Node decodes them, to exactly `args`.
 */
export function argsFromCmdline(args: readonly string[], cmdline: Buffer): string[] {
  if (args.length === 0) return [...args];
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < cmdline.length; i++) {
    if (cmdline[i] === 0) {
      parts.push(cmdline.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < cmdline.length) parts.push(cmdline.subarray(start));
  if (parts.length < args.length) return [...args];
  const tail = parts.slice(parts.length - args.length);
  if (!tail.every((b, i) => b.toString('utf8') === args[i])) return [...args];
  return tail.map((b) => nameFromBytes(b));
}

/** `args` with their bytes restored from /proc/self/cmdline where it can be read. */
export function rawArgs(args: readonly string[]): string[] {
  if (!args.some((a) => a.includes('\ufffd'))) return [...args];
  try {
    return argsFromCmdline(args, readFileSync('/proc/self/cmdline'));
  } catch {
    return [...args];
  }
}
