/**
 * A set of small integers looked up by the 32-byte hash each one stands for, in typed arrays: a
 * few bytes an entry instead of a hex string, an array and a map entry (about 150 bytes; 20 MiB
 * for the 131,072 chunks of a 4 GiB file).
 *
 * The hashes themselves are not copied: the owner keeps them in a byte buffer (a tree's nodes, a
 * slab of leaves) and says where each value's hash starts (`offsetOf`). Open addressing with
 * linear probing; removal shifts later entries back, so no tombstones build up. The probe start
 * mixes two words of the hash with seeds drawn per process: hashes come from the network, and a
 * sender that chose leaves alike in their first bytes must not make every lookup a long walk.
 */
import { randomBytes } from 'node:crypto';
import { HASH_SIZE } from './hash.js';

const SEEDS = randomBytes(8);
const SEED_A = SEEDS.readUInt32LE(0);
const SEED_B = SEEDS.readUInt32LE(4);
const MIN_SLOTS = 16;

/** Whether the `n` bytes of `a` at `ao` equal those of `b` at `bo`. */
function sameBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

function word(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

export class HashTable {
  /** Value + 1 per slot; 0: empty. At most half full. */
  private slots: Int32Array;
  private count = 0;

  /**
   * `keys()`: the buffer holding the hashes (asked anew at each call, so the owner may replace it
   * with a larger one); `offsetOf(v)`: where value v's hash starts in it. `expected`: entries
   * to size the table for at once. `keyLength`: how many bytes of a hash are the key (8 to 32;
   * a group address carries the first 14 bytes of a hash).
   */
  constructor(
    private readonly keys: () => Uint8Array,
    private readonly offsetOf: (value: number) => number,
    expected = 0,
    private readonly keyLength = HASH_SIZE,
  ) {
    if (keyLength < 8 || keyLength > HASH_SIZE) throw new RangeError(`key length ${keyLength}`);
    let n = MIN_SLOTS;
    while (n < expected * 2) n *= 2;
    this.slots = new Int32Array(n);
  }

  get size(): number {
    return this.count;
  }

  /** The value whose hash is (starts with) the keyLength bytes of `hash` at `offset`, or -1. */
  get(hash: Uint8Array, offset = 0): number {
    const keys = this.keys();
    const mask = this.slots.length - 1;
    for (let i = this.start(hash, offset) & mask; ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) return -1;
      if (sameBytes(keys, this.offsetOf(s - 1), hash, offset, this.keyLength)) return s - 1;
    }
  }

  /**
   * Enter `value`, whose hash the owner has already put where offsetOf(value) says. A value of
   * an equal hash already there is replaced; returns it (or -1 when the hash is new).
   */
  set(value: number): number {
    if ((this.count + 1) * 2 > this.slots.length) this.grow();
    return this.place(value);
  }

  /** Remove the entry of `value` (found by its hash); whether it was there. */
  delete(value: number): boolean {
    const keys = this.keys();
    const at = this.offsetOf(value);
    const mask = this.slots.length - 1;
    let i = this.start(keys, at) & mask;
    for (; ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) return false;
      if (s - 1 === value) break;
    }
    // Backward shift: later entries of the same run move into the gap when their probe start allows.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const s = this.slots[j]!;
      if (s === 0) break;
      const home = this.start(keys, this.offsetOf(s - 1)) & mask;
      // s may move to i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.slots[i] = s;
      i = j;
    }
    this.slots[i] = 0;
    this.count--;
    return true;
  }

  /** Every value in the table (in no particular order). */
  *values(): IterableIterator<number> {
    for (const s of this.slots) if (s !== 0) yield s - 1;
  }

  private place(value: number): number {
    const keys = this.keys();
    const at = this.offsetOf(value);
    const mask = this.slots.length - 1;
    for (let i = this.start(keys, at) & mask; ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) {
        this.slots[i] = value + 1;
        this.count++;
        return -1;
      }
      if (sameBytes(keys, this.offsetOf(s - 1), keys, at, this.keyLength)) {
        this.slots[i] = value + 1;
        return s - 1;
      }
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2);
    this.count = 0;
    for (const s of old) if (s !== 0) this.place(s - 1);
  }

  private start(b: Uint8Array, o: number): number {
    const h = Math.imul(word(b, o) ^ SEED_A, 0x9e3779b1) ^ Math.imul(word(b, o + 4) ^ SEED_B, 0x85ebca77);
    return (h ^ (h >>> 15)) >>> 0;
  }
}
