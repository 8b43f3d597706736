/**
 * MLD messages (RFC 2710 MLDv1, RFC 3810 MLDv2): one decoder for everything the share reads off the wire, one
 * encoder for the queries it sends and one for the MLDv2 reports a receiver sends for its joins
 * (net/join-reporter.ts). Pure: no sockets, no clocks.
 *
 * Input and output are ICMPv6 messages without the IPv6 header (what a raw ICMPv6 socket delivers). Checksums
 * are neither checked nor written: on a raw ICMPv6 socket the kernel verifies incoming ones and fills in
 * outgoing ones (RFC 3542 section 3.1), so encodeQuery leaves bytes 2..3 zero.
 */

export const MLD_QUERY = 130;
export const MLDV1_REPORT = 131;
export const MLDV1_DONE = 132;
export const MLDV2_REPORT = 143;

/** MLDv2 multicast address record types (RFC 3810 section 5.2.12). */
export const RecordType = {
  MODE_IS_INCLUDE: 1,
  MODE_IS_EXCLUDE: 2,
  CHANGE_TO_INCLUDE: 3,
  CHANGE_TO_EXCLUDE: 4,
  ALLOW_NEW_SOURCES: 5,
  BLOCK_OLD_SOURCES: 6,
} as const;
export type RecordTypeNumber = 1 | 2 | 3 | 4 | 5 | 6;

export interface MldRecord {
  recordType: RecordTypeNumber;
  group: Buffer;
  sources: Buffer[];
}

export type MldMessage =
  | { type: 'v2report'; records: MldRecord[] }
  | { type: 'v1report'; group: Buffer }
  | { type: 'v1done'; group: Buffer }
  | {
      type: 'query';
      version: 1 | 2;
      /** All zero (::) for a general query. */
      group: Buffer;
      maxRespMs: number;
      /** MLDv2 only: querier's robustness variable (0 means "not set": use the default 2). */
      qrv?: number;
      /** MLDv2 only: querier's query interval in seconds. */
      qqicSec?: number;
      /** MLDv2 only: "suppress router-side processing" flag. */
      sFlag?: boolean;
      /** MLDv2 only: sources of an address-and-source-specific query. */
      sources?: Buffer[];
    };

const V1_LENGTH = 24;
const V2_QUERY_MIN = 28;
const V2_REPORT_HEADER = 8;
const RECORD_HEADER = 20;

/** Decode an ICMPv6 MLD message. Anything else, truncated or inconsistent gives undefined; never throws. */
export function decodeMld(icmp6: Uint8Array): MldMessage | undefined {
  if (!(icmp6 instanceof Uint8Array) || icmp6.length < 4) return undefined;
  const b = Buffer.from(icmp6.buffer, icmp6.byteOffset, icmp6.length);
  switch (b[0]) {
    case MLD_QUERY:
      return decodeQuery(b);
    case MLDV1_REPORT:
    case MLDV1_DONE:
      // RFC 2710: exactly 24 bytes; longer messages are accepted and the rest ignored (section 3.7 of RFC 3810
      // says MLDv1 messages longer than 24 are fine), shorter ones are invalid.
      if (b.length < V1_LENGTH) return undefined;
      return { type: b[0] === MLDV1_REPORT ? 'v1report' : 'v1done', group: copy(b, 8, 16) };
    case MLDV2_REPORT:
      return decodeV2Report(b);
    default:
      return undefined;
  }
}

function decodeQuery(b: Buffer): MldMessage | undefined {
  // RFC 3810 section 8.1: 24 bytes is MLDv1, >= 28 is MLDv2, anything else is ignored.
  if (b.length === V1_LENGTH) {
    return { type: 'query', version: 1, group: copy(b, 8, 16), maxRespMs: b.readUInt16BE(4) };
  }
  if (b.length < V2_QUERY_MIN) return undefined;
  const nsrc = b.readUInt16BE(26);
  if (b.length < V2_QUERY_MIN + 16 * nsrc) return undefined;
  const sources: Buffer[] = [];
  for (let i = 0; i < nsrc; i++) sources.push(copy(b, V2_QUERY_MIN + 16 * i, 16));
  return {
    type: 'query',
    version: 2,
    group: copy(b, 8, 16),
    maxRespMs: decodeMaxRespCode(b.readUInt16BE(4)),
    qrv: b[24]! & 0x07,
    sFlag: (b[24]! & 0x08) !== 0,
    qqicSec: decodeQqic(b[25]!),
    sources,
  };
}

function decodeV2Report(b: Buffer): MldMessage | undefined {
  if (b.length < V2_REPORT_HEADER) return undefined;
  const nrec = b.readUInt16BE(6);
  const records: MldRecord[] = [];
  let off = V2_REPORT_HEADER;
  for (let r = 0; r < nrec; r++) {
    if (off + RECORD_HEADER > b.length) return undefined;
    const recordType = b[off]!;
    const auxWords = b[off + 1]!;
    const nsrc = b.readUInt16BE(off + 2);
    // Every record is stepped over whole (sources and aux data), whatever its type, so that one record we do not
    // understand cannot shift the ones after it.
    const end = off + RECORD_HEADER + 16 * nsrc + 4 * auxWords;
    if (end > b.length) return undefined;
    if (recordType >= 1 && recordType <= 6) {
      const sources: Buffer[] = [];
      for (let i = 0; i < nsrc; i++) sources.push(copy(b, off + RECORD_HEADER + 16 * i, 16));
      records.push({ recordType: recordType as RecordTypeNumber, group: copy(b, off + 4, 16), sources });
    }
    // RFC 3810 section 5.2.12: records of unknown types are ignored, not the whole report.
    off = end;
  }
  return { type: 'v2report', records };
}

/** `len` bytes of `b` from `off`, copied (the message buffer is reused); no view is made on the way (one per record). */
function copy(b: Buffer, off: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  b.copy(out, 0, off, off + len);
  return out;
}

/** RFC 3810 section 5.1.3: Maximum Response Code to milliseconds. */
export function decodeMaxRespCode(code: number): number {
  if (code < 0x8000) return code;
  const mant = code & 0x0fff;
  const exp = (code >> 12) & 0x07;
  return (mant | 0x1000) * 2 ** (exp + 3);
}

/** Milliseconds to a Maximum Response Code; values that cannot be exact are rounded down. */
export function encodeMaxRespCode(ms: number): number {
  const v = Math.max(0, Math.floor(ms));
  if (v < 0x8000) return v;
  for (let exp = 0; exp < 8; exp++) {
    const mant = Math.floor(v / 2 ** (exp + 3)) - 0x1000;
    if (mant >= 0 && mant <= 0x0fff) return 0x8000 | (exp << 12) | mant;
  }
  return 0xffff; // the largest representable delay (about 8.4 min)
}

/** RFC 3810 section 5.1.9: Querier's Query Interval Code to seconds. */
export function decodeQqic(code: number): number {
  if (code < 0x80) return code;
  const mant = code & 0x0f;
  const exp = (code >> 4) & 0x07;
  return (mant | 0x10) * 2 ** (exp + 3);
}

/** Seconds to a QQIC; values that cannot be exact are rounded down. */
export function encodeQqic(sec: number): number {
  const v = Math.max(0, Math.floor(sec));
  if (v < 0x80) return v;
  for (let exp = 0; exp < 8; exp++) {
    const mant = Math.floor(v / 2 ** (exp + 3)) - 0x10;
    if (mant >= 0 && mant <= 0x0f) return 0x80 | (exp << 4) | mant;
  }
  return 0xff;
}

export interface QueryOptions {
  /** The group of an address-specific query; undefined for a general query (group ::). */
  group?: Uint8Array;
  /** Sources of an address-and-source-specific query (rarely used). */
  sources?: Uint8Array[];
  maxRespMs: number;
  /** Robustness variable, 1..7 (0 would mean "unset"). */
  qrv: number;
  qqicSec: number;
  /** S flag: set on the repeats of an address-specific query (RFC 3810 section 7.6.3.1). */
  sFlag?: boolean;
}

/** Encode an MLDv2 query: type 130, 28 bytes plus 16 per source, checksum left 0 for the kernel. */
export function encodeQuery(opts: QueryOptions): Buffer {
  const sources = opts.sources ?? [];
  if (opts.group !== undefined && opts.group.length !== 16) throw new RangeError('MLD query group must be 16 bytes');
  if (sources.some((s) => s.length !== 16)) throw new RangeError('MLD query sources must be 16 bytes each');
  if (sources.length > 89) throw new RangeError('too many sources for one MLD query in a 1500-byte MTU');
  const b = Buffer.alloc(V2_QUERY_MIN + 16 * sources.length);
  b[0] = MLD_QUERY;
  b.writeUInt16BE(encodeMaxRespCode(opts.maxRespMs), 4);
  if (opts.group) Buffer.from(opts.group).copy(b, 8);
  const qrv = opts.qrv >= 1 && opts.qrv <= 7 ? Math.floor(opts.qrv) : 0;
  b[24] = (opts.sFlag ? 0x08 : 0) | qrv;
  b[25] = encodeQqic(opts.qqicSec);
  b.writeUInt16BE(sources.length, 26);
  sources.forEach((s, i) => Buffer.from(s).copy(b, V2_QUERY_MIN + 16 * i));
  return b;
}

/**
 * Records in one report of at most 1232 bytes (the IPv6 minimum MTU less the IPv6 and hop-by-hop
 * headers, so never fragmented): 8 bytes of header and 20 per record without sources.
 */
export const MAX_REPORT_RECORDS = 61;

export interface ReportRecord {
  recordType: RecordTypeNumber;
  /** 16 bytes, a multicast address. */
  group: Uint8Array;
}

/**
 * Encode an MLDv2 report (type 143) of records without sources (what an any-source join or leave is):
 * 8 bytes of header and 20 per record, checksum left 0 for the kernel. decodeMld reads it back.
 */
export function encodeReport(records: readonly ReportRecord[]): Buffer {
  if (records.length < 1 || records.length > MAX_REPORT_RECORDS) {
    throw new RangeError(`an MLD report carries 1..${MAX_REPORT_RECORDS} records here`);
  }
  const b = Buffer.alloc(V2_REPORT_HEADER + RECORD_HEADER * records.length);
  b[0] = MLDV2_REPORT;
  b.writeUInt16BE(records.length, 6);
  records.forEach((r, i) => {
    if (r.group.length !== 16 || r.group[0] !== 0xff) throw new RangeError('MLD report groups must be 16-byte multicast addresses');
    if (!Number.isInteger(r.recordType) || r.recordType < 1 || r.recordType > 6) throw new RangeError('MLD record type must be 1..6');
    const off = V2_REPORT_HEADER + RECORD_HEADER * i;
    b[off] = r.recordType;
    Buffer.from(r.group.buffer, r.group.byteOffset, 16).copy(b, off + 4);
  });
  return b;
}

/**
 * How a record bears on "does anyone on this link listen to the group" (any-source view, docs/protocol.md#mld-and-when-a-share-sends):
 *  - IS_EX (2) and TO_EX (4): the host wants the group from (almost) all sources: join or refresh.
 *  - ALLOW (5): the host adds sources it wants: a source-specific join; counted as a join. With no sources it
 *    adds nothing (RFC 3810 routers change no state for it): an lcsync receiver sends it to say that it is still
 *    joined and lacks symbols of the group's object (listenerEvents marks it `lacking`).
 *  - IS_IN (1) and TO_IN (3) with sources: the host still wants those sources: a (source-specific) join/refresh.
 *  - IS_IN (1) and TO_IN (3) with no sources: the host wants nothing: a leave.
 *  - BLOCK (6): the host drops some sources. Whether anything is left is only known to the host, so it is
 *    treated like a leave only in the sense that it should trigger a query: isLeaveRecord says yes, and the
 *    query (or the listener timer) settles the matter. An operator wanting exactness uses any-source joins,
 *    which is all lcsync receivers do.
 */
export function isJoinRecord(recordType: number, nsrc = 0): boolean {
  switch (recordType) {
    case RecordType.MODE_IS_EXCLUDE:
    case RecordType.CHANGE_TO_EXCLUDE:
    case RecordType.ALLOW_NEW_SOURCES:
      return true;
    case RecordType.MODE_IS_INCLUDE:
    case RecordType.CHANGE_TO_INCLUDE:
      return nsrc > 0;
    default:
      return false;
  }
}

/** See isJoinRecord. */
export function isLeaveRecord(recordType: number, nsrc: number): boolean {
  switch (recordType) {
    case RecordType.MODE_IS_INCLUDE:
    case RecordType.CHANGE_TO_INCLUDE:
      return nsrc === 0;
    case RecordType.BLOCK_OLD_SOURCES:
      return true;
    default:
      return false;
  }
}

/** ff02::/16 (link-local scope) groups are the link's own plumbing (all-nodes, solicited-node, MLD...): ignored. */
export function isLinkScopeGroup(group: Uint8Array): boolean {
  return group.length === 16 && group[0] === 0xff && (group[1]! & 0x0f) === 0x02;
}

/** A group worth tracking: a 16-byte multicast address that is not link-scope. */
export function isTrackedGroup(group: Uint8Array): boolean {
  return group.length === 16 && group[0] === 0xff && !isLinkScopeGroup(group) && (group[1]! & 0x0f) > 0x02;
}

export interface GroupEvent {
  kind: 'join' | 'leave';
  group: Buffer;
  /** join: an ALLOW record with no sources, which an lcsync receiver sends when it lacks symbols (see isJoinRecord). */
  lacking?: true;
}

/**
 * The group-level meaning of a listener message: one event per tracked group (link-scope and interface/node-local
 * groups dropped). Queries give no events.
 */
export function listenerEvents(msg: MldMessage): GroupEvent[] {
  const out: GroupEvent[] = [];
  switch (msg.type) {
    case 'v2report':
      for (const r of msg.records) {
        if (!isTrackedGroup(r.group)) continue;
        if (r.recordType === RecordType.ALLOW_NEW_SOURCES && r.sources.length === 0) out.push({ kind: 'join', group: r.group, lacking: true });
        else if (isJoinRecord(r.recordType, r.sources.length)) out.push({ kind: 'join', group: r.group });
        else if (isLeaveRecord(r.recordType, r.sources.length)) out.push({ kind: 'leave', group: r.group });
      }
      break;
    case 'v1report':
      if (isTrackedGroup(msg.group)) out.push({ kind: 'join', group: msg.group });
      break;
    case 'v1done':
      if (isTrackedGroup(msg.group)) out.push({ kind: 'leave', group: msg.group });
      break;
    default:
      break;
  }
  return out;
}
