/**
 * TreePartChain (src/core/wire/partchain.ts): a file's tree parts accepted in order when parts
 * look alike but for the nodes that straddle into the next part, offered as a receiver offers
 * them (what it kept first, most recent first, then what arrives).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TreePartChain } from '../src/core/wire/partchain.js';
import { encodeNetTree, splitParts, NET_TREE_HEADER } from '../src/core/wire/nettree.js';
import { MerkleTree, CHUNK_SIZE } from '../src/core/model/tree.js';
import { hash } from '../src/core/model/hash.js';
import { Joined, partAgreesWith, partFitsAt } from '../src/core/wire/verify.js';
import { randomBytes } from 'node:crypto';

const meta = { mode: 0o100644, uid: 0, gid: 0, mtimeSec: 1n, mtimeNsec: 0n, atimeSec: 1n, atimeNsec: 0n };

/** A file object of `chunks` chunks whose leaves are the zero chunk's hash but at `marked` (a hash of their index). */
function sparseObject(name: string, chunks: number, marked: number[]): { parts: Buffer[]; obj: Buffer; payloadOffset: number } {
  const size = chunks * CHUNK_SIZE;
  const tree = MerkleTree.blank(size);
  const zero = hash(Buffer.alloc(CHUNK_SIZE));
  for (let i = 0; i < chunks; i++) tree.leaf(i).set(marked.includes(i) ? hash(Buffer.from(`chunk ${i}`)) : zero);
  tree.seal();
  const obj = encodeNetTree({ type: 'file', size, meta, name, payload: tree.nodes });
  return { parts: splitParts(obj), obj, payloadOffset: NET_TREE_HEADER + Buffer.byteLength(name) };
}

/**
 * Run the chain as session.ts and the receiver do: for each part asked for, first every object
 * kept so far (most recent first, as fetchTree scans them), then arrivals in `order(z)` until the
 * part settles (later arrivals are kept). Returns the joined object, or undefined if some part never settled.
 */
function receive(parts: Buffer[], payloadOffset: number, order: (z: number) => Buffer[]): Buffer | undefined {
  const chain = new TreePartChain(parts[0]!, payloadOffset, (z) => parts[z]!.length, parts.length);
  const kept: Buffer[] = [];
  const keep = (o: Buffer) => {
    const at = kept.findIndex((k) => k.equals(o));
    if (at >= 0) kept.splice(at, 1);
    kept.push(o);
  };
  for (let z = 1; z < parts.length; z++) {
    let settled = false;
    for (const k of [...kept].reverse()) {
      if (chain.offer(k)) {
        keep(k);
        settled = true;
        break;
      }
    }
    // What arrives is decoded and kept whether or not it settles the part: the rest of the
    // arrivals are only offered to the next part's request, from the kept objects.
    for (const o of order(z)) {
      keep(o);
      if (!settled && chain.offer(o)) settled = true;
    }
    if (!settled) return undefined;
  }
  return Buffer.concat(chain.buffers());
}

describe('TreePartChain', () => {
  it('settles a sparse tree whose marked last chunk puts a differing node across a part boundary', () => {
    // 7-byte name: nodes start at byte 63, every part ends 1 byte into a node. The last chunk's
    // ancestors are the last node of each level; several sit across part boundaries, after parts
    // equal to the one before them but for that byte.
    const { parts, obj, payloadOffset } = sparseObject('big.bin', 32768, [32767]);
    expect(parts.length).toBe(65);
    // Arrivals: the parts held ahead (this one and the seven after it), in order.
    const got = receive(parts, payloadOffset, (z) => parts.slice(z, z + 8));
    expect(got?.equals(obj)).toBe(true);
  });

  it('would stall taking the first part that agrees (what the receiver did before)', () => {
    const { parts, payloadOffset } = sparseObject('big.bin', 32768, [32767]);
    const known = new Joined([parts[0]!]);
    const kept: Buffer[] = [];
    let stalledAt = -1;
    for (let z = 1; z < parts.length && stalledAt < 0; z++) {
      const pick = [...kept].reverse().find((k) => k.length === parts[z]!.length && partAgreesWith(known, k, payloadOffset));
      const arrival = pick ? undefined : parts.slice(z, z + 8).find((o) => o.length === parts[z]!.length && partAgreesWith(known, o, payloadOffset));
      const chosen = pick ?? arrival;
      if (!chosen) stalledAt = z;
      else {
        for (const o of parts.slice(z, z + 8)) if (!kept.some((k) => k.equals(o))) kept.push(o);
        known.push(chosen);
      }
    }
    expect(stalledAt).toBeGreaterThan(0);
  });

  it('takes the genuine part that arrives after an equal-looking one was offered, and the reverse', () => {
    const { parts, obj, payloadOffset } = sparseObject('big.bin', 32768, [32767]);
    // Each part's arrivals: the part before it again (late), decoys (parts from elsewhere in the
    // object), then the part itself.
    const late = receive(parts, payloadOffset, (z) => [parts[Math.max(1, z - 3)]!, parts[z - 1]!, parts[(z * 7) % parts.length]!, parts[z]!]);
    expect(late?.equals(obj)).toBe(true);
    const early = receive(parts, payloadOffset, (z) => [parts[z]!, parts[Math.max(1, z - 3)]!]);
    expect(early?.equals(obj)).toBe(true);
  });

  it('never settles on a wrong part: any name length, any marked chunks, parts offered in any order among decoys', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1100, max: 4096 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 16, maxLength: 16 }),
        (nameLen, chunks, marks, shuffle) => {
          const { parts, obj, payloadOffset } = sparseObject('n'.repeat(nameLen), chunks, marks.map((m) => m % chunks));
          const got = receive(parts, payloadOffset, (z) => {
            // The parts near z (held ahead, the one before again), in an order drawn per part, plus decoys.
            const near = [z - 1, z, z + 1, z + 2, (z * 5) % parts.length, parts.length - 1].filter((i) => i >= 1 && i < parts.length).map((i) => parts[i]!);
            const s = shuffle[z % shuffle.length]!;
            return near.map((p, i) => ({ p, k: (i * 2654435761 + s) % 97 })).sort((a, b) => a.k - b.k).map((x) => x.p).concat([parts[z]!]);
          });
          expect(got?.equals(obj)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('partFitsAt: the genuine part and those equal to it fit its place; junk and parts of other places do not', () => {
    const { parts, payloadOffset } = sparseObject('big.bin', 32768, [32767]);
    const known = new Joined(parts.slice(0, 20));
    const at = 20 * parts[0]!.length;
    // The genuine part 20 (inner nodes, parents in parts 9-10), and part 21 equal to it but for its ends.
    expect(partFitsAt(known, parts[20]!, at, payloadOffset)).toBe(true);
    expect(parts[21]!.subarray(64, -64).equals(parts[20]!.subarray(64, -64))).toBe(true);
    expect(partFitsAt(known, parts[21]!, at, payloadOffset)).toBe(true);
    expect(partFitsAt(known, randomBytes(parts[20]!.length), at, payloadOffset)).toBe(false);
    // A part of another level (the leaves, hashes of zeros) is not this level's.
    expect(partFitsAt(known, parts[40]!, at, payloadOffset)).toBe(false);
    // Nothing known: nothing to judge by.
    expect(partFitsAt(new Joined(), randomBytes(100), 0, payloadOffset)).toBe(true);
  });

  it('partFitsAt never refuses the genuine part, for any name length and marked chunks', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1100, max: 4096 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), (nameLen, chunks, marks) => {
        const { parts, payloadOffset } = sparseObject('n'.repeat(nameLen), chunks, marks.map((m) => m % chunks));
        for (let z = 0; z < parts.length; z++) {
          // As the chain asks it: what is settled lags one part behind the part judged.
          const settled = new Joined(parts.slice(0, Math.max(1, z - 1)));
          expect(partFitsAt(settled, parts[z]!, z * parts[0]!.length, payloadOffset), `part ${z}`).toBe(true);
        }
      }),
      { numRuns: 30 },
    );
  });

  it('a flood of well-formed junk while a part waits for its predecessor does not push the genuine part out', () => {
    const { parts, obj, payloadOffset } = sparseObject('big.bin', 32768, [32767]);
    const chain = new TreePartChain(parts[0]!, payloadOffset, (z) => parts[z]!.length, parts.length);
    for (let z = 1; z < parts.length; z++) {
      if (z === 7) {
        // Part 5's bytes (equal to part 6) taken for part 7 (equal but for the node across part 7's end), as from the kept objects.
        expect(chain.offer(parts[5]!)).toBe(true);
        continue;
      }
      if (z === 8) {
        // The genuine part 8 does not follow that; 300 objects of its length arrive; then the genuine part 7.
        expect(chain.offer(parts[8]!)).toBe(false);
        for (let i = 0; i < 300; i++) expect(chain.offer(i % 2 ? randomBytes(parts[8]!.length) : parts[30 + (i % 30)]!)).toBe(false);
        expect(chain.offer(parts[7]!)).toBe(true);
        continue;
      }
      expect(chain.offer(parts[z]!), `part ${z}`).toBe(true);
    }
    expect(Buffer.concat(chain.buffers()).equals(obj)).toBe(true);
  });

  it('a one-part object is complete at once', () => {
    const { parts, obj, payloadOffset } = sparseObject('small', 4, [1]);
    expect(parts.length).toBe(1);
    const chain = new TreePartChain(parts[0]!, payloadOffset, (z) => parts[z]!.length, 1);
    expect(chain.complete).toBe(true);
    expect(Buffer.concat(chain.buffers()).equals(obj)).toBe(true);
  });
});
