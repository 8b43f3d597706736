/**
 * Verified tree objects a receiver keeps by OID (receiver.ts): a later request may name the same
 * bytes under another key (an equal tree part, an equal directory), and while an OID is kept its
 * datagrams are dropped. Bounded in count and bytes, least recently used out first.
 */

/**
 * Verified tree objects kept for requests not made yet or made again (equal tree parts, equal
 * directories). A sparse 5 GiB image has 320 tree parts of which a handful are distinct.
 */
const MAX_KEPT = 64;
/** Most bytes they may take together. */
const MAX_KEPT_BYTES = 8 * 2 ** 20;

/** A few verified objects by key, oldest first, bounded in count and bytes. */
export class KeptObjects {
  private readonly map = new Map<string, Buffer>();
  private bytes = 0;

  has(key: string): boolean {
    return this.map.has(key);
  }

  /** Mark `key` as just used: it is evicted last. */
  touch(key: string): void {
    const o = this.map.get(key);
    if (!o) return;
    this.map.delete(key);
    this.map.set(key, o);
  }

  entries(): [string, Buffer][] {
    return [...this.map.entries()];
  }

  set(key: string, obj: Buffer): void {
    this.delete(key);
    // One object may not push out all the others.
    if (obj.length > MAX_KEPT_BYTES / 4) return;
    while (this.map.size > 0 && (this.map.size >= MAX_KEPT || this.bytes + obj.length > MAX_KEPT_BYTES)) {
      this.delete(this.map.keys().next().value!);
    }
    this.map.set(key, obj);
    this.bytes += obj.length;
  }

  delete(key: string): void {
    const o = this.map.get(key);
    if (!o) return;
    this.map.delete(key);
    this.bytes -= o.length;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}
