/**
 * Include/exclude rules with rsync's meaning (rsync(1), "INCLUDE/EXCLUDE PATTERN RULES"), for
 * choosing which paths of a recursive sync are wanted. Pure: paths are relative to the transfer
 * root, '/'-separated, without a leading '/'.
 *
 * - The first rule whose pattern matches decides; a path no rule matches is included.
 * - A pattern ending in '/' matches only directories. "dir/***" matches the directory and
 *   everything below it.
 * - A pattern starting with '/' is anchored to the transfer root; one that contains another '/'
 *   or a "**" is matched against the end of the path on a component boundary ("foo/bar" matches
 *   "x/foo/bar"); any other is matched against the last component only.
 * - '*' matches anything but '/', "**" anything including '/', '?' one character but '/',
 *   "[...]" a class ("[!...]" or "[^...]" negated, never '/'), and '\' makes the next character
 *   literal.
 * An excluded directory is not descended into, so nothing below it is looked at (the walker's job).
 */
import { LcsyncError } from '../base/errors.js';

export interface FilterRule {
  include: boolean;
  pattern: string;
}

interface CompiledRule {
  include: boolean;
  dirOnly: boolean;
  regex: RegExp;
}

export class PathFilter {
  private readonly rules: CompiledRule[];

  constructor(rules: readonly FilterRule[]) {
    this.rules = rules.flatMap(compile);
  }

  /** Whether there are any rules (without, every path is wanted and nothing is looked up). */
  get active(): boolean {
    return this.rules.length > 0;
  }

  /** Whether `rel` (relative to the transfer root) is wanted; `isDir` for directories. */
  wants(rel: string, isDir: boolean): boolean {
    for (const r of this.rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.regex.test(rel)) return r.include;
    }
    return true;
  }
}

/**
 * The rules of `--include`/`--exclude` flags in the order they were given on the command line
 * (oclif hands each flag's values apart, so the order comes from argv).
 */
export function rulesFromArgv(argv: readonly string[]): FilterRule[] {
  const rules: FilterRule[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    for (const [flag, include] of [['--include', true], ['--exclude', false]] as const) {
      if (a === flag && i + 1 < argv.length) rules.push({ include, pattern: argv[++i]! });
      else if (a.startsWith(`${flag}=`)) rules.push({ include, pattern: a.slice(flag.length + 1) });
    }
    if (a === '--') break;
  }
  return rules;
}

function compile(rule: FilterRule): CompiledRule[] {
  let p = rule.pattern;
  if (p === '') throw new LcsyncError('USAGE', `an empty ${rule.include ? '--include' : '--exclude'} pattern matches nothing`);
  // "dir/***": the directory itself (as "dir/") and everything in it (as "dir/**").
  if (p.endsWith('/***')) {
    const base = p.slice(0, -4);
    return [...compile({ include: rule.include, pattern: `${base}/` }), ...compile({ include: rule.include, pattern: `${base}/**` })];
  }
  let dirOnly = false;
  while (p.length > 1 && p.endsWith('/')) {
    dirOnly = true;
    p = p.slice(0, -1);
  }
  const anchored = p.startsWith('/');
  if (anchored) p = p.slice(1);
  const body = globToRegex(p);
  // Unanchored, a pattern matches the end of the path on a component boundary: with a '/' or
  // "**" that is a tail of components, without it the last component alone ('*' stops at '/').
  const prefix = anchored ? '^' : '(?:^|/)';
  return [{ include: rule.include, dirOnly, regex: new RegExp(`${prefix}${body}$`, 's') }];
}

/** The regex source of one glob (see the module comment). */
export function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '\\' && i + 1 < glob.length) {
      out += escape(glob[++i]!);
    } else if (c === '*') {
      if (glob[i + 1] === '*') {
        while (glob[i + 1] === '*') i++;
        out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const end = classEnd(glob, i);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      const inner = body.replace(/\\/g, '\\\\').replace(/\]/g, '\\]').replace(/\[/g, '\\[');
      // A class never matches '/': a negated one says so, a plain one is intersected by a lookahead.
      out += negate ? `[^/${inner}]` : `(?!/)[${inner}]`;
      i = end;
    } else out += escape(c);
  }
  return out;
}

/** Index of the ']' closing the class opened at `open`, or -1 (then '[' is literal). A ']' first in the class is part of it. */
function classEnd(glob: string, open: number): number {
  let j = open + 1;
  if (glob[j] === '!' || glob[j] === '^') j++;
  if (glob[j] === ']') j++;
  for (; j < glob.length; j++) if (glob[j] === ']') return j;
  return -1;
}

function escape(c: string): string {
  return /[.*+?^${}()|[\]\\/-]/.test(c) ? `\\${c}` : c;
}
