/**
 * The include/exclude matcher (src/core/sync/filter.ts) against the examples of rsync(1),
 * "INCLUDE/EXCLUDE PATTERN RULES", and the order of rules on a command line.
 */
import { describe, expect, it } from 'vitest';
import { LcsyncError } from '../src/core/base/errors.js';
import { PathFilter, rulesFromArgv, type FilterRule } from '../src/core/sync/filter.js';

const ex = (pattern: string): FilterRule => ({ include: false, pattern });
const inc = (pattern: string): FilterRule => ({ include: true, pattern });
const f = (...rules: FilterRule[]) => new PathFilter(rules);

describe('rsync pattern rules', () => {
  it('"- *.o" excludes every name matching *.o, at any depth', () => {
    const p = f(ex('*.o'));
    expect(p.wants('a.o', false)).toBe(false);
    expect(p.wants('src/deep/b.o', false)).toBe(false);
    expect(p.wants('a.c', false)).toBe(true);
    expect(p.wants('a.o/x', false)).toBe(true);
  });

  it('"- /foo" excludes foo in the transfer root only, file or directory', () => {
    const p = f(ex('/foo'));
    expect(p.wants('foo', false)).toBe(false);
    expect(p.wants('foo', true)).toBe(false);
    expect(p.wants('bar/foo', false)).toBe(true);
  });

  it('"- foo/" excludes any directory named foo, not a file', () => {
    const p = f(ex('foo/'));
    expect(p.wants('foo', true)).toBe(false);
    expect(p.wants('a/b/foo', true)).toBe(false);
    expect(p.wants('foo', false)).toBe(true);
  });

  it('"- /foo/*/bar" excludes bar exactly two levels below /foo', () => {
    const p = f(ex('/foo/*/bar'));
    expect(p.wants('foo/x/bar', false)).toBe(false);
    expect(p.wants('foo/bar', false)).toBe(true);
    expect(p.wants('foo/x/y/bar', false)).toBe(true);
    expect(p.wants('z/foo/x/bar', false)).toBe(true);
  });

  it('"- /foo/**/bar" excludes bar two or more levels below /foo', () => {
    const p = f(ex('/foo/**/bar'));
    expect(p.wants('foo/x/bar', false)).toBe(false);
    expect(p.wants('foo/x/y/bar', false)).toBe(false);
    expect(p.wants('foo/bar', false)).toBe(true);
  });

  it('"+ */", "+ *.c", "- *" keeps all directories and C sources and nothing else', () => {
    const p = f(inc('*/'), inc('*.c'), ex('*'));
    expect(p.wants('src', true)).toBe(true);
    expect(p.wants('src/a.c', false)).toBe(true);
    expect(p.wants('src/a.h', false)).toBe(false);
    expect(p.wants('README', false)).toBe(false);
  });

  it('"+ foo/", "+ foo/bar.c", "- *" keeps only foo and foo/bar.c', () => {
    const p = f(inc('foo/'), inc('foo/bar.c'), ex('*'));
    expect(p.wants('foo', true)).toBe(true);
    expect(p.wants('foo/bar.c', false)).toBe(true);
    expect(p.wants('foo/baz.c', false)).toBe(false);
    expect(p.wants('other', true)).toBe(false);
  });

  it('first match wins', () => {
    expect(f(inc('keep.o'), ex('*.o')).wants('keep.o', false)).toBe(true);
    expect(f(ex('*.o'), inc('keep.o')).wants('keep.o', false)).toBe(false);
  });

  it('a pattern with a / but no leading / matches the end of the path on a component boundary', () => {
    const p = f(ex('foo/bar'));
    expect(p.wants('foo/bar', false)).toBe(false);
    expect(p.wants('x/foo/bar', false)).toBe(false);
    expect(p.wants('xfoo/bar', false)).toBe(true);
    expect(p.wants('foo/bar/baz', false)).toBe(true);
  });

  it('* does not cross /, ** does; ? is one character; [...] classes, negated with ! or ^', () => {
    expect(f(ex('/a*z')).wants('abz', false)).toBe(false);
    expect(f(ex('/a*z')).wants('a/z', false)).toBe(true);
    expect(f(ex('/a**z')).wants('a/b/z', false)).toBe(false);
    expect(f(ex('/?.txt')).wants('x.txt', false)).toBe(false);
    expect(f(ex('/?.txt')).wants('xy.txt', false)).toBe(true);
    expect(f(ex('f[0-9].log')).wants('f7.log', false)).toBe(false);
    expect(f(ex('f[0-9].log')).wants('fx.log', false)).toBe(true);
    expect(f(ex('f[!0-9].log')).wants('fx.log', false)).toBe(false);
    expect(f(ex('f[^0-9].log')).wants('f7.log', false)).toBe(true);
    expect(f(ex('/a[/]b')).wants('a/b', false)).toBe(true);
    expect(f(ex('a\\*b')).wants('a*b', false)).toBe(false);
    expect(f(ex('a\\*b')).wants('axb', false)).toBe(true);
    expect(f(ex('a.b')).wants('axb', false)).toBe(true);
  });

  it('"dir/***" matches the directory and everything in it', () => {
    const p = f(ex('/cache/***'));
    expect(p.wants('cache', true)).toBe(false);
    expect(p.wants('cache/a/b', false)).toBe(false);
    expect(p.wants('cachex', true)).toBe(true);
  });

  it('no rules: everything is wanted; an empty pattern is a usage error', () => {
    expect(f().active).toBe(false);
    expect(f().wants('anything', true)).toBe(true);
    expect(() => f(ex(''))).toThrow(LcsyncError);
  });
});

describe('rules from the command line', () => {
  it('keeps the order of --include and --exclude across both flags, in both spellings', () => {
    expect(rulesFromArgv(['src/', '--include', '*.c', '-r', '--exclude=*', '--include=x', 'dest'])).toEqual([inc('*.c'), ex('*'), inc('x')]);
    expect(rulesFromArgv(['a', 'b', '--', '--exclude', 'z'])).toEqual([]);
  });
});
