/**
 * A file's tree object accepted part by part (session.ts), when parts arrive in any order and
 * several of them may look alike.
 *
 * A part is checked against the parts before it (partAgreesWith): every sibling pair that ends
 * inside it must hash to its parent. The pair that straddles into the next part cannot be checked
 * yet: the header before the nodes is 56 bytes plus the name, so a part usually ends inside a
 * node, and a node whose sibling begins the next part is unchecked too. A part is therefore only
 * known but for its last one or two nodes until the next part arrives.
 *
 * That tail is what tells apart parts that are otherwise equal. A sparse file's tree repeats
 * whole parts (every node of a level is the hash of the same zeros) except for the nodes on the
 * path to the one chunk that differs, which may sit exactly in such a tail. Taking the first part
 * that agreed, as the receiver did, could take an equal neighbour whose tail is wrong; the genuine
 * next part then never agreed and the sync stalled until its timeout (a 1 GiB sparse file named
 * with 7 bytes, whose last chunk held data).
 *
 * So a part stays open: every distinct candidate that agrees is kept until a candidate for the
 * next part agrees with one of them, which settles it (a wrong tail and a genuine successor, or
 * the reverse, cannot both hash to the known parent). The last part has no tail and is settled
 * by its own check; the whole tree is verified against its root afterwards (verifiedTree) anyway.
 * A candidate for the next part that follows no open one yet is held only if its pairs hash to
 * the settled parents (partFitsAt), so what a link floods with cannot push the genuine one out.
 */
import { Joined, partAgreesWith, partFitsAt } from './verify.js';

/**
 * Candidates held for one part at most. Every tree object the receiver decodes meanwhile is
 * offered, but only those that fit what is settled (fits) are held: the genuine part and those
 * equal to it but for their ends.
 */
const MAX_CANDIDATES = 128;

export class TreePartChain {
  /** Parts settled for good: 0 .. next - 2. */
  private readonly known = new Joined();
  /** Candidates for part next - 1, equal but for their unchecked tail. */
  private open: Buffer[];
  /** Part 0 is named by the key the request gave (objectMatches): no other candidate for it. */
  private openFixed = true;
  /** Part 0 alone, what part 1's candidates are checked against (fits). */
  private firstOnly: Joined | undefined;
  /** Candidates offered for part `next`. */
  private candidates: Buffer[] = [];
  /** The part being asked for (1 .. parts - 1); `parts` once every part is settled. */
  next = 1;

  /**
   * @param first part 0, already matched to the request's key
   * @param payloadOffset where the nodes begin in the object (header and name)
   * @param partLength bytes part z must have
   * @param parts how many parts the object has
   */
  constructor(
    first: Buffer,
    private readonly payloadOffset: number,
    private readonly partLength: (z: number) => number,
    readonly parts: number,
  ) {
    this.open = [first];
  }

  get complete(): boolean {
    return this.next >= this.parts;
  }

  /**
   * An object decoded or kept while part `next` is asked for. It may be part `next`, or part
   * `next - 1` arriving after an equal-looking one was taken. True once it settled part
   * `next - 1` together with a candidate for part `next` (which moves on to the part after).
   */
  offer(x: Buffer): boolean {
    if (this.complete) return false;
    if (x.length === this.partLength(this.next) && !holds(this.candidates, x)) {
      // Following an open candidate settles it at once (the common case: one check, as for a part
      // that is not open to doubt); otherwise x waits as a candidate if it fits what is settled.
      for (const c of this.open) if (this.follows(c, x)) return this.settle(c, x);
      if (this.fits(x)) {
        if (this.candidates.length >= MAX_CANDIDATES) this.candidates.shift();
        this.candidates.push(x);
      }
    }
    if (!this.openFixed && x.length === this.partLength(this.next - 1) && !holds(this.open, x) && partAgreesWith(this.known, x, this.payloadOffset)) {
      if (this.open.length >= MAX_CANDIDATES) this.open.shift();
      this.open.push(x);
      for (const o of this.candidates) if (this.follows(x, o)) return this.settle(x, o);
    }
    return false;
  }

  /** The whole object's parts, once complete. */
  buffers(): readonly Buffer[] {
    if (!this.complete) throw new Error('tree part chain not complete');
    return [...this.known.buffers(), this.open[0]!];
  }

  /**
   * Whether `x` can be part `next` as far as the settled parts tell (partFitsAt): junk and other
   * places' parts never become candidates, so a flood of well-formed objects cannot push the
   * genuine one out of the bounded list.
   */
  private fits(x: Buffer): boolean {
    const settled = this.openFixed ? (this.firstOnly ??= new Joined([this.open[0]!])) : this.known;
    const at = this.known.length + this.partLength(this.next - 1);
    return partFitsAt(settled, x, at, this.payloadOffset);
  }

  /** Whether `o` agrees as the part after the settled ones followed by `c`. */
  private follows(c: Buffer, o: Buffer): boolean {
    this.known.push(c);
    try {
      return partAgreesWith(this.known, o, this.payloadOffset);
    } finally {
      this.known.pop();
    }
  }

  /** Part next - 1 is `c`; `o`, which follows it, and the other candidates that agree with it (all distinct: offer holds each once) are open for part next. */
  private settle(c: Buffer, o: Buffer): true {
    this.known.push(c);
    this.open = [o, ...this.candidates.filter((y) => y !== o && partAgreesWith(this.known, y, this.payloadOffset))];
    this.openFixed = false;
    this.candidates = [];
    this.next++;
    return true;
  }
}

function holds(list: readonly Buffer[], x: Buffer): boolean {
  return list.some((b) => b === x || b.equals(x));
}
