/**
 * ObjectTable (index/objecttable.ts), which holds a share's non-chunk objects and aliases in
 * typed arrays instead of hex-keyed maps: it answers as the maps did (by hash, through aliases,
 * by 14-byte prefix with the last one put winning, every hash once per prefix), and takes a few
 * dozen bytes an entry (146 a pair measured), not the 450 the maps took for a file's object and alias.
 */
import { describe, expect, it } from 'vitest';
import v8 from 'node:v8';
import vm from 'node:vm';
import { hash } from '../src/core/model/hash.js';
import { ObjectTable } from '../src/core/index/objecttable.js';

const h = (s: string) => hash(Buffer.from(s));

describe('ObjectTable', () => {
  it('finds objects by hash and through aliases, whenever the target is put', () => {
    const t = new ObjectTable<string>();
    t.alias(h('alias of a'), h('a'));
    expect(t.get(h('alias of a'))).toBeUndefined();
    t.put(h('a'), 'A');
    t.put(h('b'), 'B');
    expect(t.get(h('a'))).toBe('A');
    expect(t.get(h('alias of a'))).toBe('A');
    // The last one put under a hash wins, aliases follow it.
    t.put(h('a'), 'A2');
    expect(t.get(h('alias of a'))).toBe('A2');
    expect(t.size).toBe(2);
    t.alias(h('b'), h('b'));
    expect(t.get(h('b'))).toBe('B');
    expect(t.get(h('nothing'))).toBeUndefined();
  });

  it('finds by the 14-byte prefix a group carries: found or not, and the last one put wins', () => {
    const t = new ObjectTable<string>();
    const a = h('a');
    const twin = Buffer.concat([a.subarray(0, 14), h('other').subarray(14)]);
    t.put(a, 'A');
    t.alias(h('alias'), a);
    expect(t.getByPrefix(a.subarray(0, 14))).toEqual({ found: true, obj: 'A' });
    expect(t.getByPrefix(h('alias').subarray(0, 14))).toEqual({ found: true, obj: 'A' });
    expect(t.getByPrefix(h('chunk').subarray(0, 14))).toEqual({ found: false });
    expect(t.getByPrefix(a.subarray(0, 13))).toEqual({ found: false });
    t.put(twin, 'TWIN');
    expect(t.getByPrefix(a.subarray(0, 14))).toEqual({ found: true, obj: 'TWIN' });
    expect(t.get(a)).toBe('A');
    // One hash per prefix: the alias's and the twin's (which took a's prefix).
    const listed = [...t.hashes()].map((x) => x.toString('hex')).sort();
    expect(listed).toEqual([h('alias').toString('hex'), twin.toString('hex')].sort());
  });

  it('holds 100,000 objects with an alias each in under 240 bytes a pair beside the objects (the maps took 450)', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const n = 100_000;
    const keys = Array.from({ length: 2 * n }, (_, i) => h(`k${i}`));
    const slab = Buffer.concat(keys);
    const objs = Array.from({ length: n }, (_, i) => ({ i }));
    gc();
    gc();
    const before = process.memoryUsage();
    const t = new ObjectTable<{ i: number }>();
    for (let i = 0; i < n; i++) {
      t.put(keys[i]!, objs[i]!);
      t.alias(keys[n + i]!, keys[i]!);
    }
    gc();
    gc();
    const after = process.memoryUsage();
    const bytes = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
    expect(t.size).toBe(n);
    expect(t.get(keys[n + 77]!)).toBe(objs[77]);
    expect(slab.length).toBe(64 * n);
    expect(bytes / n).toBeLessThan(240);
  });
});
