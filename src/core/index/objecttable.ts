/**
 * The objects of an index other than chunks (file tree parts, directories, symlinks, bundle
 * parts, signatures) and the aliases that name them, findable by full hash or by the 14 bytes of
 * a hash a group address carries.
 *
 * A share holds an object and an alias for every file and directory: as maps with hex-string keys
 * (the object's hash, its prefix, the alias, the alias's prefix and its target: five strings and
 * three map entries, about 450 bytes a file) they were a good part of what a share of 100,000
 * files held. Here the hashes are copied once into a slab, an entry per hash, and found through
 * two HashTables (full hash; prefix): a few dozen bytes an entry.
 */
import { HASH_SIZE, type Hash } from '../model/hash.js';
import { HashTable } from '../model/hashtable.js';

/** Bytes of a hash a group address carries (address.ts GROUP_PREFIX_BYTES; kept here to stay in this layer). */
const PREFIX_BYTES = 14;
const INITIAL_ENTRIES = 256;
/** ref of an entry named as an alias's target before any object was put under it. */
const NO_OBJECT = -1;

export class ObjectTable<T> {
  /** Entry e's hash at e * HASH_SIZE. */
  private keys = Buffer.alloc(INITIAL_ENTRIES * HASH_SIZE);
  /** Per entry: its object's index in `objects` (>= 0), NO_OBJECT, or for an alias -2 - (its target's entry). */
  private ref = new Int32Array(INITIAL_ENTRIES);
  private entries = 0;
  private readonly objects: T[] = [];
  private objectEntries = 0;
  private readonly byHash = new HashTable(() => this.keys, (e) => e * HASH_SIZE);
  /** Entries put or aliased, by the first PREFIX_BYTES of their hash (the last one put wins, as a group carries no more). */
  private readonly byPrefix = new HashTable(() => this.keys, (e) => e * HASH_SIZE, 0, PREFIX_BYTES);

  /** Objects held (an alias is not one). */
  get size(): number {
    return this.objectEntries;
  }

  /** Serve `obj` under `hash`; an object already under that hash is replaced (the last one indexed wins, as in the C mdex). */
  put(hash: Hash, obj: T): void {
    let e = this.byHash.get(hash);
    if (e < 0) {
      e = this.add(hash);
      this.ref[e] = NO_OBJECT;
    }
    const r = this.ref[e]!;
    if (r >= 0) this.objects[r] = obj;
    else {
      this.ref[e] = this.objects.push(obj) - 1;
      this.objectEntries++;
    }
    this.byPrefix.set(e);
  }

  /** Let `alias` name whatever is put under `target` (now or later). */
  alias(alias: Hash, target: Hash): void {
    if (alias.equals(target)) return;
    let t = this.byHash.get(target);
    if (t < 0) {
      t = this.add(target);
      this.ref[t] = NO_OBJECT;
    }
    let a = this.byHash.get(alias);
    if (a < 0) a = this.add(alias);
    else if (this.ref[a]! >= 0) this.objectEntries--;
    this.ref[a] = -2 - t;
    this.byPrefix.set(a);
  }

  /** The object `hash` names (through an alias too). */
  get(hash: Uint8Array): T | undefined {
    return this.objectOf(this.byHash.get(hash));
  }

  /**
   * What the hash starting with the PREFIX_BYTES of `prefix` names: `found` false when no hash put
   * or aliased here starts so (a chunk's may), else its object (undefined for an alias whose
   * target has none).
   */
  getByPrefix(prefix: Uint8Array): { found: boolean; obj?: T } {
    if (prefix.length < PREFIX_BYTES) return { found: false };
    const e = this.byPrefix.get(prefix);
    return e < 0 ? { found: false } : { found: true, obj: this.objectOf(e) };
  }

  /** Every hash put or aliased here (one per prefix). */
  *hashes(): Iterable<Buffer> {
    for (const e of this.byPrefix.values()) yield Buffer.from(this.keys.subarray(e * HASH_SIZE, (e + 1) * HASH_SIZE));
  }

  private objectOf(e: number): T | undefined {
    if (e < 0) return undefined;
    let r = this.ref[e]!;
    if (r <= -2) r = this.ref[-2 - r]!;
    return r >= 0 ? this.objects[r] : undefined;
  }

  /** A new entry for `hash`, found by it (not yet by prefix). */
  private add(hash: Uint8Array): number {
    if (this.entries === this.ref.length) {
      const keys = Buffer.alloc(this.keys.length * 2);
      this.keys.copy(keys);
      this.keys = keys;
      const ref = new Int32Array(this.ref.length * 2);
      ref.set(this.ref);
      this.ref = ref;
    }
    const e = this.entries++;
    this.keys.set(hash.subarray(0, HASH_SIZE), e * HASH_SIZE);
    this.byHash.set(e);
    return e;
  }
}
