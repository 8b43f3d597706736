/**
 * RaptorQ (RFC 6330) arithmetic for small source blocks, in plain TypeScript.
 *
 * Why this exists beside the npm `raptorq` wasm build: for a 32 KiB chunk
 * (K = K' = 32) that build spends about 0.6 ms building an encoder and
 * 0.7-0.8 ms on every decode that needs a repair symbol, because it solves
 * the whole L x L system each time. Every chunk of a transfer goes through
 * one or the other, so on the sender and on each receiver that was the
 * largest CPU cost of a lossy transfer (bench/transfer-bench.js).
 *
 * The system depends only on K', so it is solved once per K' here:
 * C = A^-1 * D (section 5.3.3.4), with D = S + H zero symbols followed by the
 * K' source symbols, gives every intermediate symbol as a GF(256) combination
 * of the source symbols; a repair symbol, the XOR of the intermediate symbols
 * its tuple names (section 5.3.5.3), is then the combination
 * w(ISI) . source, where w is the XOR of the rows of A^-1 its tuple selects.
 * Encoding a repair symbol costs K' multiply-adds of 1024 bytes; decoding m
 * lost source symbols from m repair symbols costs about m * K of them plus
 * an m x m solve, instead of a full RaptorQ decode.
 *
 * Only for small K': the inverse takes L^2 (L + K') field operations to
 * build and L * K' bytes to keep. fec.ts uses it up to FAST_MAX_K_PRIME and
 * the wasm codec above that.
 */
import { RAND_TABLES, SYSTEMATIC_TABLE } from './rfc6330-tables.js';
import { combine, combineConsecutive, deferSymbolMath } from './symbolmath.js';

/** Largest K' this module is used for (chunks have K <= 32, so K' <= 32). */
export const FAST_MAX_K_PRIME = 64;
/** A code keeps the weights of its first this many times K' repair ISIs (fec.ts cycles through 8 K'). */
const WEIGHTS_CACHED_FACTOR = 8;

// ---------------------------------------------------------------------------------------------
// GF(256) of section 5.7: polynomial x^8 + x^4 + x^3 + x^2 + 1, alpha = 2.

const OCT_EXP = new Uint8Array(510);
const OCT_LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 510; i++) {
    OCT_EXP[i] = x;
    if (i < 255) OCT_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
}

/** MUL[c * 256 + x] = c * x: one 256-byte row per factor, so a symbol multiply-add is a table walk. */
const MUL = new Uint8Array(256 * 256);
for (let c = 1; c < 256; c++) {
  for (let x = 1; x < 256; x++) MUL[c * 256 + x] = OCT_EXP[OCT_LOG[c]! + OCT_LOG[x]!]!;
}

deferSymbolMath((c, x) => MUL[c * 256 + x]!);

export function gfMul(a: number, b: number): number {
  return MUL[a * 256 + b]!;
}

export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('0 has no inverse in GF(256)');
  return OCT_EXP[255 - OCT_LOG[a]!]!;
}

/**
 * dst ^= c * src over equal-length byte arrays. Works a 32-bit word at a time
 * when both are aligned (twice as fast in V8 as a byte loop).
 */
export function mulAdd(dst: Uint8Array, src: Uint8Array, c: number): void {
  if (c === 0) return;
  const n = dst.length;
  const words = (dst.byteOffset & 3) === 0 && (src.byteOffset & 3) === 0 && (n & 3) === 0;
  if (!words) {
    const base = c * 256;
    for (let i = 0; i < n; i++) dst[i]! ^= MUL[base + src[i]!]!;
    return;
  }
  const d = new Int32Array(dst.buffer, dst.byteOffset, n >> 2);
  const s = new Int32Array(src.buffer, src.byteOffset, n >> 2);
  if (c === 1) {
    for (let i = 0; i < d.length; i++) d[i]! ^= s[i]!;
    return;
  }
  const T = MUL.subarray(c * 256, c * 256 + 256);
  for (let i = 0; i < d.length; i++) {
    const v = s[i]!;
    d[i]! ^= T[v & 255]! | (T[(v >>> 8) & 255]! << 8) | (T[(v >>> 16) & 255]! << 16) | (T[v >>> 24]! << 24);
  }
}

// ---------------------------------------------------------------------------------------------
// Section 5.3.5: Rand, Deg and Tuple; section 5.6: the parameters of K'.

/** Rand[y, i, m] of section 5.3.5.1. */
export function rand(y: number, i: number, m: number): number {
  const x =
    RAND_TABLES[(y + i) & 0xff]! ^
    RAND_TABLES[256 + (((y >>> 8) + i) & 0xff)]! ^
    RAND_TABLES[512 + (((y >>> 16) + i) & 0xff)]! ^
    RAND_TABLES[768 + (((y >>> 24) + i) & 0xff)]!;
  return (x >>> 0) % m;
}

/** The degree distribution of section 5.3.5.2. */
const DEGREE_TABLE = [
  0, 5243, 529531, 704294, 791675, 844104, 879057, 904023, 922747, 937311, 948962, 958494, 966438, 973160, 978921,
  983914, 988283, 992138, 995565, 998631, 1001391, 1003887, 1006157, 1008229, 1010129, 1011876, 1013490, 1014983,
  1016370, 1017662, 1048576,
];

/** Deg[v] of section 5.3.5.2, for 0 <= v < 2^20. */
export function degree(v: number, W: number): number {
  let d = 1;
  while (DEGREE_TABLE[d]! <= v) d++;
  return Math.min(d, W - 2);
}

export interface BlockParameters {
  /** K', J(K'), S(K'), H(K'), W(K') of table 2. */
  KP: number;
  J: number;
  S: number;
  H: number;
  W: number;
  /** L = K' + S + H intermediate symbols. */
  L: number;
  /** P = L - W permanently inactivated symbols; P1, the smallest prime >= P. */
  P: number;
  P1: number;
  /** B = W - S LT symbols that are not LDPC symbols. */
  B: number;
}

function smallestPrimeAtLeast(n: number): number {
  for (let p = Math.max(2, n); ; p++) {
    let prime = true;
    for (let d = 2; d * d <= p; d++) {
      if (p % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) return p;
  }
}

/** The parameters of a K' from table 2; throws RangeError for a value not in it. */
export function blockParameters(KP: number): BlockParameters {
  const rows = SYSTEMATIC_TABLE.length / 5;
  let lo = 0;
  let hi = rows - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const k = SYSTEMATIC_TABLE[mid * 5]!;
    if (k === KP) {
      const [J, S, H, W] = [1, 2, 3, 4].map((j) => SYSTEMATIC_TABLE[mid * 5 + j]!) as [number, number, number, number];
      const L = KP + S + H;
      const P = L - W;
      return { KP, J, S, H, W, L, P, P1: smallestPrimeAtLeast(P), B: W - S };
    }
    if (k < KP) lo = mid + 1;
    else hi = mid - 1;
  }
  throw new RangeError(`${KP} is not a K' of RFC 6330 table 2`);
}

/**
 * The intermediate symbols whose XOR is encoding symbol `isi` (section 5.3.5.3,
 * Enc[] with the tuple of section 5.3.5.4). An index may appear twice; XOR
 * makes such a pair cancel, as the RFC's additions do.
 */
export function ltIndices(p: BlockParameters, isi: number): number[] {
  let A = 53591 + p.J * 997;
  if (A % 2 === 0) A++;
  const Bc = 10267 * (p.J + 1);
  // y = (B + X * A) mod 2^32; X * A < 2^24 * 2^21, exact in a double.
  const y = (Bc + isi * A) % 4294967296;
  const d = degree(rand(y, 0, 1 << 20), p.W);
  const a = 1 + rand(y, 1, p.W - 1);
  let b = rand(y, 2, p.W);
  const d1 = d < 4 ? 2 + rand(isi, 3, 2) : 2;
  const a1 = 1 + rand(isi, 4, p.P1 - 1);
  let b1 = rand(isi, 5, p.P1);
  const out = [b];
  for (let j = 1; j < d; j++) {
    b = (b + a) % p.W;
    out.push(b);
  }
  while (b1 >= p.P) b1 = (b1 + a1) % p.P1;
  out.push(p.W + b1);
  for (let j = 1; j < d1; j++) {
    b1 = (b1 + a1) % p.P1;
    while (b1 >= p.P) b1 = (b1 + a1) % p.P1;
    out.push(p.W + b1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The constraint matrix of section 5.3.3.4.2 for ISIs 0..K'-1, and its inverse.

/** A, L x L, row-major: S LDPC rows, H HDPC rows, then the LT rows of ISI 0..K'-1. */
export function constraintMatrix(p: BlockParameters): Uint8Array {
  const { KP, S, H, W, L, P, B } = p;
  const A = new Uint8Array(L * L);
  // LDPC (section 5.3.3.3): G_LDPC,1, the identity I_S, then G_LDPC,2.
  for (let i = 0; i < B; i++) {
    const a = 1 + Math.floor(i / S);
    let b = i % S;
    A[b * L + i]! ^= 1;
    b = (b + a) % S;
    A[b * L + i]! ^= 1;
    b = (b + a) % S;
    A[b * L + i]! ^= 1;
  }
  for (let i = 0; i < S; i++) {
    A[i * L + B + i] = 1;
    A[i * L + W + (i % P)]! ^= 1;
    A[i * L + W + ((i + 1) % P)]! ^= 1;
  }
  // HDPC: G_HDPC = MT * GAMMA over the first K' + S columns, then I_H.
  const KS = KP + S;
  for (let h = 0; h < H; h++) {
    const row = (S + h) * L;
    // MT column K'+S-1 is alpha^h; GAMMA[j][c] = alpha^(j-c) for j >= c, so
    // G[h][c] = MT[h][c] + alpha * G[h][c+1], walking c down from K'+S-1.
    let acc = OCT_EXP[h]!;
    A[row + KS - 1] = acc;
    for (let c = KS - 2; c >= 0; c--) {
      const r6 = rand(c + 1, 6, H);
      const mt = (r6 === h ? 1 : 0) ^ ((r6 + rand(c + 1, 7, H - 1) + 1) % H === h ? 1 : 0);
      acc = gfMul(acc, 2) ^ mt;
      A[row + c] = acc;
    }
    A[row + KS + h] = 1;
  }
  // LT rows: encoding symbol ISI x is the XOR of the intermediate symbols its tuple names.
  for (let x = 0; x < KP; x++) {
    const row = (S + H + x) * L;
    for (const c of ltIndices(p, x)) A[row + c]! ^= 1;
  }
  return A;
}

/**
 * The last K' columns of A^-1 (L x K', row-major): intermediate symbol i is
 * sum over j of INV[i][j] * source symbol j. Gauss-Jordan elimination on
 * [A | E], E holding the identity in the rows of the source symbols.
 */
export function sourceToIntermediate(p: BlockParameters): Uint8Array {
  const { KP, L } = p;
  const A = constraintMatrix(p);
  const first = L - KP; // rows S + H .. L-1 are the LT rows of the source symbols
  const E = new Uint8Array(L * KP);
  for (let j = 0; j < KP; j++) E[(first + j) * KP + j] = 1;
  for (let col = 0; col < L; col++) {
    let piv = col;
    while (piv < L && A[piv * L + col] === 0) piv++;
    if (piv === L) throw new Error(`RFC 6330 constraint matrix for K'=${KP} is singular`);
    if (piv !== col) {
      swapRows(A, L, piv, col);
      swapRows(E, KP, piv, col);
    }
    const inv = gfInv(A[col * L + col]!);
    if (inv !== 1) {
      scaleRow(A, L, col, inv);
      scaleRow(E, KP, col, inv);
    }
    for (let r = 0; r < L; r++) {
      const f = r === col ? 0 : A[r * L + col]!;
      if (f === 0) continue;
      addRow(A, L, r, col, f);
      addRow(E, KP, r, col, f);
    }
  }
  return E;
}

function swapRows(M: Uint8Array, width: number, a: number, b: number): void {
  const t = M.slice(a * width, (a + 1) * width);
  M.copyWithin(a * width, b * width, (b + 1) * width);
  M.set(t, b * width);
}

function scaleRow(M: Uint8Array, width: number, r: number, f: number): void {
  for (let i = r * width; i < (r + 1) * width; i++) M[i] = gfMul(M[i]!, f);
}

/** Row dst += f * row src. */
function addRow(M: Uint8Array, width: number, dst: number, src: number, f: number): void {
  const d = dst * width;
  const s = src * width;
  for (let i = 0; i < width; i++) {
    const v = M[s + i]!;
    if (v !== 0) M[d + i]! ^= gfMul(v, f);
  }
}

// ---------------------------------------------------------------------------------------------
// Codes for one K': repair weights, encoding and decoding.

/** Stands in for the residual of a repair symbol that has weight zero in every missing symbol (never read). */
const NO_RESIDUAL = new Uint8Array(0);

/**
 * The systematic RaptorQ code of one K', solved once. Symbols are given and
 * returned as byte arrays of one symbol size; source symbols past K (the
 * padding up to K') are zero and never passed.
 */
export class SmallBlockCode {
  readonly params: BlockParameters;
  /** L x K' (see sourceToIntermediate). */
  private readonly inv: Uint8Array;

  private constructor(KP: number) {
    this.params = blockParameters(KP);
    this.inv = sourceToIntermediate(this.params);
  }

  private static readonly cache = new Map<number, SmallBlockCode>();

  /** The code of K' (cached: every chunk shares the same few). */
  static of(KP: number): SmallBlockCode {
    if (!Number.isInteger(KP) || KP < 1 || KP > FAST_MAX_K_PRIME) {
      throw new RangeError(`K' ${KP} is outside 1..${FAST_MAX_K_PRIME} for the small-block code`);
    }
    let c = SmallBlockCode.cache.get(KP);
    if (!c) {
      c = new SmallBlockCode(KP);
      SmallBlockCode.cache.set(KP, c);
    }
    return c;
  }

  /**
   * Weights of the ISIs a share's repair cycle uses (below K' + WEIGHTS_CACHED_FACTOR * K'), by ISI - K':
   * every chunk of one K' asks for the same ones, and computing them (the LT indices, a row of the
   * inverse each) cost more than the symbol arithmetic itself.
   */
  private readonly repairWeights: (Uint8Array | undefined)[] = [];

  /**
   * w with encoding symbol `isi` = sum over j < K' of w[j] * source symbol j. Shared between calls
   * for repair ISIs: read it, do not change it.
   */
  weights(isi: number): Uint8Array {
    const KP = this.params.KP;
    const slot = isi - KP;
    const cacheable = slot >= 0 && slot < WEIGHTS_CACHED_FACTOR * KP;
    if (cacheable) {
      const known = this.repairWeights[slot];
      if (known) return known;
    }
    const w = new Uint8Array(KP);
    for (const i of ltIndices(this.params, isi)) {
      const row = i * KP;
      for (let j = 0; j < KP; j++) w[j]! ^= this.inv[row + j]!;
    }
    if (cacheable) this.repairWeights[slot] = w;
    return w;
  }

  /**
   * Encoding symbol `isi` (any ISI; repair symbols have ISI >= K') from the K
   * source symbols `source(j)`, j < K, into `out`.
   */
  encode(isi: number, K: number, source: (j: number) => Uint8Array, out: Uint8Array): void {
    out.fill(0);
    combine(out, K, source, this.weights(isi), mulAdd);
  }

  /**
   * encode() for source symbols that lie one after another: symbol j < `full` is
   * data[j * T, (j + 1) * T) (T = out.length), and when K > full, symbol K - 1 is `last`
   * (the object's short tail, zero-padded). No view per symbol: one pass over `data`.
   */
  encodeFrom(isi: number, K: number, data: Uint8Array, full: number, last: Uint8Array | undefined, out: Uint8Array): void {
    out.fill(0);
    const w = this.weights(isi);
    combineConsecutive(out, data, full, w, mulAdd);
    if (K > full) {
      if (!last || K !== full + 1) throw new RangeError(`encodeFrom: ${K} source symbols, ${full} whole ones and ${last ? 'a' : 'no'} last one`);
      mulAdd(out, last, w[K - 1]!);
    }
  }

  /**
   * Recover the missing source symbols in place. `data` holds the K source symbols one after
   * another (symbol j is data[j * T, (j + 1) * T), T the repair symbols' size), `have(j)` tells
   * which of them are known, `repairs` are received repair symbols by ISI (>= K'). On success writes
   * each missing symbol into its place in `data` and returns true; returns false (writing nothing)
   * when the repair symbols do not determine the missing ones yet. Symbols are read where they lie:
   * a view per symbol was most of a lossy receiver's garbage (about 14 MiB per 64 MiB at 5% loss).
   */
  decode(K: number, have: (j: number) => boolean, data: Uint8Array, repairs: ReadonlyMap<number, Uint8Array>): boolean {
    const missing: number[] = [];
    for (let j = 0; j < K; j++) if (!have(j)) missing.push(j);
    const m = missing.length;
    if (m === 0) return true;
    if (repairs.size < m) return false;
    // Coefficients of the unknowns in each repair equation, beside an identity
    // that records which combination of repairs each row has become.
    const isis = [...repairs.keys()];
    const n = isis.length;
    const ws = isis.map((isi) => this.weights(isi));
    const width = m + n;
    const M = new Uint8Array(n * width);
    for (let r = 0; r < n; r++) {
      for (let t = 0; t < m; t++) M[r * width + t] = ws[r]![missing[t]!]!;
      M[r * width + m + r] = 1;
    }
    for (let col = 0; col < m; col++) {
      let piv = col;
      while (piv < n && M[piv * width + col] === 0) piv++;
      if (piv === n) return false;
      if (piv !== col) swapRows(M, width, piv, col);
      const inv = gfInv(M[col * width + col]!);
      if (inv !== 1) scaleRow(M, width, col, inv);
      for (let r = 0; r < n; r++) {
        const f = r === col ? 0 : M[r * width + col]!;
        if (f !== 0) addRow(M, width, r, col, f);
      }
    }
    // Row t now says: missing[t] = sum over r of M[t][m + r] * y_r, where
    // y_r = repair r minus the known source symbols' share of it.
    const size = repairs.get(isis[0]!)!.length;
    if (data.length < K * size) throw new RangeError(`decode: ${K} symbols of ${size} bytes in ${data.length}`);
    // Every residual is made before a missing symbol's place is written: the places of the missing
    // symbols are never read (their weights are zero), but the residuals are.
    const ys: Uint8Array[] = [];
    for (let r = 0; r < n; r++) {
      // A repair symbol no missing one is made of (more came than were lost) needs no residual.
      let used = false;
      for (let t = 0; t < m && !used; t++) used = M[t * width + m + r] !== 0;
      if (!used) {
        ys.push(NO_RESIDUAL);
        continue;
      }
      const v = new Uint8Array(repairs.get(isis[r]!)!);
      const known = ws[r]!.slice(0, K);
      for (let t = 0; t < m; t++) known[missing[t]!] = 0;
      combineConsecutive(v, data, K, known, mulAdd);
      ys.push(v);
    }
    for (let t = 0; t < m; t++) {
      const place = data.subarray(missing[t]! * size, (missing[t]! + 1) * size);
      place.fill(0);
      combine(place, n, (r) => ys[r]!, M.subarray(t * width + m, (t + 1) * width), mulAdd);
    }
    return true;
  }
}
