/*
 * rx_assembler: the receive data plane of lcsync in C. Chunk datagrams are parsed, checked, placed
 * and verified here; JavaScript hears once per object, not once per datagram.
 *
 * Why: with node:dgram or plain recvmmsg batches every datagram still crosses into JS (a call, a
 * parse, a map lookup, a copy into a decoder), about 1.5-2.5 CPU-s per 64 MiB received and a
 * ceiling of a few thousand junk datagrams/s under a flood. Here a datagram costs a header check,
 * one hash-table probe and one memcpy into the chunk's own buffer.
 *
 * The assembler (an object owned by JS, freed by the GC):
 *   rxasmCreate() -> asm
 *   rxasmRegister(asm, id, oid, length, buf, T)   a chunk request: OID (32 bytes, its BLAKE3), length
 *       1..MAX_OBJECT, T the symbol size it travels in (1024 or 1368), buf (a Uint8Array of at least `length` bytes, kept alive while registered)
 *       that source symbols are written into; id (u32) names it in events. An OID is registered once.
 *       buf null: the request takes a buffer when its first source symbol arrives, a spare (below) of at
 *       least `length` bytes if there is one, else memory of its own; the event that ends it (COMPLETE,
 *       or DECODE with source symbols in it) hands that buffer to JS (batch.buffers).
 *   rxasmSpare(asm, buf) -> spares             give the assembler a spare buffer for such requests (buf
 *       null: give nothing); returns how many it holds now. A request unregistered before it ends gives
 *       its spare back to the pool.
 *   rxasmUnregister(asm, oid) -> bool          forget a request (false when none was registered)
 *   rxasmClaim(asm, claimed)                   claimed true: from now on chunk datagrams of OIDs nobody
 *       registered are dropped here (counted); false (the start): every datagram goes up to JS as it arrived
 *   rxasmFeed(asm, buf, lengths, count, gsoSizes) -> batch | undefined   in-memory entry: buf holds
 *       `count` messages back to back (lengths[i] each); gsoSizes (Uint32Array or null) splits message i
 *       into segments of gsoSizes[i] bytes as UDP GRO coalesces them (0: not split). The socket loop
 *       below runs exactly this code on what recvmmsg returns; undefined when JS need not hear yet
 *       (see "held back" below).
 *   rxasmDrain(asm) -> batch | undefined       what was held back (progress and counters), as a batch;
 *       undefined when there is nothing.
 *   rxParse(buf) -> undefined | [oidOffset, transferLength (0 without OTI), esi, symbolOffset, T]
 *       the header rules alone (for the fuzz test against src/core/wire/packet.ts decodeDatagram).
 *
 * Header rules (the same as decodeDatagram in packet.ts, which is the specification): length 36 + T
 * or 48 + T exactly for a symbol size T of 1024 or 1368 (1060, 1072, 1404, 1416); with OTI: its T the
 * same, reserved byte 0, 1 <= F <= 10120 * 1024, Z = 1, N = 1 (any Al); SBN = 0.
 *
 * A request has the symbol size JS registered it with (the share's, as the verified tree objects
 * showed: src/core/sync/receiver.ts); its datagrams of the other size are dropped, counted. Learning
 * it from the first datagram instead would let one forged datagram of the wrong size shut the
 * request out for good.
 *
 * What happens to each datagram (segment):
 *   - valid, no OTI (a chunk), OID registered and collecting: source symbol (ESI < K) copied into
 *     buf at ESI * T (the last one cut to `length`), arrival bitmap updated; repair symbol
 *     (ESI >= K) kept in a per-request store. All K source symbols: BLAKE3 of buf[0, length) checked
 *     against the OID: event COMPLETE (and the request is forgotten) or REJECTED (a forged or
 *     corrupted symbol: bitmap and repairs reset, collecting starts over, as the JS path does).
 *     Source + repair symbols reach K first: event DECODE with the source ESIs present and the
 *     repair symbols, and the request is handed over: its later datagrams go up to JS, which runs
 *     the RaptorQ decoder (src/core/fec) from there.
 *     The last source symbol (ESI K - 1) placed while others are missing and too few repair symbols
 *     are in: event LACKING, once per request (the request goes on collecting). A share sends a chunk's
 *     source symbols in order and then holds (for the leaves of those that got them all) before its
 *     repair symbols; the receiver tells it at once that it will need them (sync/receiver.ts).
 *   - valid chunk of an OID nobody registered, after rxasmClaim: dropped, counted.
 *   - anything invalid whose length is not a gone notice's (40 or 80 bytes), after rxasmClaim:
 *     dropped, counted.
 *   - everything else (tree/directory/symlink datagrams with OTI, gone notices, handed-over
 *     requests, anything before rxasmClaim): up to JS, in arrival order, as udp_batch delivers it.
 *
 * A batch goes to JS only when it holds something JS must act on now: datagrams for it (whose bytes are
 * valid only until the next recvmmsg), events or errors. Progress and the counters alone are held back
 * and accumulate (each id once) until such a batch or rxasmDrain: JS reads progress only in its stall
 * checks (every 100 ms), and a call into JS per recvmmsg that merely placed symbols was most of the
 * receiver's calls into JS (a 64 MiB file: about 3,400 of them, against 2,048 completed chunks).
 *
 * A batch (the result of rxasmFeed and rxasmDrain; the argument of onBatch):
 *   { buf, lengths, count }      the datagrams for JS, back to back (a fresh Buffer)
 *   errors                       datagrams lost in the socket since the last batch: MSG_TRUNC, failed calls, and
 *                                those its receive buffer had no room for (the kernel's count, SO_RXQ_OVFL)
 *   datagrams, bytes, dropped    counters since the last batch (all datagrams seen, their bytes, dropped)
 *   coalesced                    messages since the last batch that held several datagrams (GRO)
 *   progressed                   Uint32Array of ids that received a new symbol in this batch
 *   events                       Uint32Array of [kind, id] pairs (1 COMPLETE, 2 REJECTED, 3 DECODE, 4 LACKING)
 *   decodes                      for each DECODE event in order: [sourceEsis (Uint32Array),
 *                                repairEsis (Uint32Array), repair (Buffer, T bytes per ESI), T]
 *   buffers                      present when an event ended a request registered without a buffer: per
 *                                event in order, the buffer its bytes are in (the spare it took, or a copy of
 *                                its own memory), undefined for the others and for a DECODE with no source symbol
 *
 * Why requests without a buffer: a receiver keeps 128 chunk requests in flight, but a share sends their
 * chunks nearly one after the other; a buffer per request, given at registration, kept 128 x 32 KiB
 * resident (4 MiB of a 60 MiB receiver), most of them waiting for their first symbol.
 *
 * The socket:
 *   rxasmOpen(asm, port, rcvbuf, gro, onBatch) -> sock   non-blocking [::]:port, SO_REUSEADDR,
 *       SO_RCVBUF; with gro true, UDP_GRO is asked for (the kernel may refuse it: then plain).
 *       A libuv poll handle keeps the loop alive while open; when readable, up to RX_CALLS recvmmsg
 *       calls, each fed to the assembler; onBatch(batch) is called when the batch has something JS
 *       must hear now (datagrams, events or errors; progress waits for rxasmDrain): a flood of junk,
 *       and symbols merely placed, wake no JS at all.
 *   rxasmGro(sock) -> bool, rxasmRecvBufferSize(sock) -> bytes
 *   rxasmJoin(sock, group, ifindex), rxasmLeave(sock, group, ifindex)   as udp_batch's recvJoin
 *   rxasmClose(sock)                                      safe inside onBatch; not twice
 */
#include "napi_util.h"
#include "addon.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "blake3/blake3.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define OID_LEN 32
#define SYMBOL 1024
#define LARGE_SYMBOL 1368
/* Bytes before the symbol: OID and PID; OID, OTI, scheme and PID. A datagram is that and T. */
#define DG_HEAD (OID_LEN + 4)
#define DG_OTI_HEAD (OID_LEN + 8 + 4 + 4)
#define MAX_OBJECT (10120u * SYMBOL)
#define NOTICE_LEN 40
#define NOTICE_SEALED_LEN 80

#define EV_COMPLETE 1
#define EV_REJECTED 2
#define EV_DECODE 3
#define EV_LACKING 4

/* Plain receive: 64 slots of 2 KiB (lcsync datagrams are at most 1416 bytes). With GRO one message
 * may hold up to 64 KiB of coalesced datagrams: as many slots, of 64 KiB each (4 MiB of address
 * space; the kernel touches only the pages it writes, so uncoalesced traffic costs what 2 KiB
 * slots cost in resident memory). */
#define RX_SLOTS 64
#define RX_SLOT_BYTES 2048
#define RX_GRO_SLOTS 64
#define RX_GRO_SLOT_BYTES 65536
#define RX_CALLS 16
_Static_assert(RX_GRO_SLOTS <= RX_SLOTS, "msgs, iov, ctrl, lens and gso hold RX_SLOTS");

/* ------------------------------------------------------------------------------------------ */
/* Header parsing: one place, the rules of packet.ts decodeDatagram                             */

typedef struct {
  uint64_t F; /* 0 without OTI */
  uint32_t esi;
  uint32_t T;
  size_t symbol_off;
} dg_t;

static bool parse_datagram(const uint8_t *b, size_t len, dg_t *d) {
  size_t off = OID_LEN;
  bool oti;
  if (len == DG_HEAD + SYMBOL || len == DG_HEAD + LARGE_SYMBOL) oti = false;
  else if (len == DG_OTI_HEAD + SYMBOL || len == DG_OTI_HEAD + LARGE_SYMBOL) oti = true;
  else return false;
  d->T = (uint32_t)(len - (oti ? DG_OTI_HEAD : DG_HEAD));
  d->F = 0;
  if (oti) {
    uint64_t F = 0;
    for (int i = 0; i < 5; i++) F = (F << 8) | b[off + i];
    if (b[off + 5] != 0) return false;
    if (((unsigned)b[off + 6] << 8 | b[off + 7]) != d->T) return false;
    if (F < 1 || F > MAX_OBJECT) return false;
    off += 8;
    if (b[off] != 1 || ((unsigned)b[off + 1] << 8 | b[off + 2]) != 1) return false;
    off += 4;
    d->F = F;
  }
  if (b[off] != 0) return false;
  d->esi = (uint32_t)b[off + 1] << 16 | (uint32_t)b[off + 2] << 8 | b[off + 3];
  d->symbol_off = off + 4;
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* The request table: open addressing on the OID (a BLAKE3 hash, so its bytes are its hash)    */

typedef struct {
  uint8_t oid[OID_LEN];
  uint8_t used; /* 0 empty, 1 in use, 2 deleted */
  uint8_t handed; /* DECODE sent: datagrams go up to JS */
  uint8_t lacked; /* LACKING sent (once per request) */
  uint32_t id;
  /* The symbol size, and K = ceil(length / T). */
  uint32_t T, K;
  uint32_t have, nrepair, repair_cap;
  uint64_t mark; /* batch serial of the last progress report */
  size_t length;
  uint8_t *dst;
  /* The JS buffer dst is in (registered, or a spare taken); NULL when dst is memory of its own (owned). */
  napi_ref ref;
  size_t dst_cap;
  uint8_t lazy; /* registered without a buffer */
  uint8_t owned; /* dst malloc'd here */
  uint8_t *bitmap;
  uint32_t *repair_esi;
  uint8_t *repair;
} entry_t;

typedef struct {
  uint32_t kind, id;
  /* DECODE: owned here until turned into JS values. */
  uint32_t *src_esi, nsrc;
  uint32_t *repair_esi, nrepair;
  uint8_t *repair;
  uint32_t T;
  /* A request registered without a buffer: the buffer its bytes are in, handed to JS with the event. */
  bool has_buf;
  napi_ref buf_ref;
  uint8_t *owned;
  size_t owned_len;
} event_t;

typedef struct {
  napi_ref ref;
  uint8_t *data;
  size_t len;
} spare_t;

typedef struct {
  entry_t *slots;
  size_t cap, live, tombs;
  uint64_t seed;
  bool claimed;
  uint64_t serial;
  /* Counters since the last batch handed to JS. */
  double datagrams, bytes, dropped, coalesced;
  uint32_t errors;
  /* The batch being built. */
  event_t *events;
  size_t nevents, events_cap;
  uint32_t *progressed;
  size_t nprogressed, progressed_cap;
  /* Datagrams for JS: pointers into the caller's memory, valid until the batch is turned into JS. */
  const uint8_t **pass;
  uint32_t *pass_len;
  size_t npass, pass_cap;
  size_t pass_bytes;
  /* Buffers JS gave for requests registered without one. */
  spare_t *spares;
  size_t nspares, spares_cap;
  napi_env env;
} assembler_t;

static uint64_t oid_key(const assembler_t *a, const uint8_t *oid) {
  uint64_t k;
  memcpy(&k, oid, 8);
  k ^= a->seed;
  k *= 0x9e3779b97f4a7c15ull;
  return k ^ (k >> 29);
}

static entry_t *table_find(assembler_t *a, const uint8_t *oid) {
  if (a->cap == 0) return NULL;
  size_t mask = a->cap - 1, i = (size_t)oid_key(a, oid) & mask;
  for (size_t n = 0; n < a->cap; n++, i = (i + 1) & mask) {
    entry_t *e = &a->slots[i];
    if (e->used == 0) return NULL;
    if (e->used == 1 && memcmp(e->oid, oid, OID_LEN) == 0) return e;
  }
  return NULL;
}

static bool table_grow(assembler_t *a) {
  size_t ncap = a->cap == 0 ? 64 : a->cap * 2;
  /* Only tombstones made it full: rehash at the same size. */
  if (a->cap != 0 && (a->live + 1) * 2 < a->cap) ncap = a->cap;
  entry_t *ns = calloc(ncap, sizeof *ns);
  if (ns == NULL) return false;
  for (size_t i = 0; i < a->cap; i++) {
    entry_t *e = &a->slots[i];
    if (e->used != 1) continue;
    size_t mask = ncap - 1, j = (size_t)oid_key(a, e->oid) & mask;
    while (ns[j].used) j = (j + 1) & mask;
    ns[j] = *e;
  }
  free(a->slots);
  a->slots = ns;
  a->cap = ncap;
  a->tombs = 0;
  return true;
}

static void entry_reset(entry_t *e) {
  e->have = 0;
  e->nrepair = 0;
  memset(e->bitmap, 0, (e->K + 7) / 8);
}

static bool push_spare(assembler_t *a, napi_ref ref, uint8_t *data, size_t len) {
  if (a->nspares == a->spares_cap) {
    size_t n = a->spares_cap ? a->spares_cap * 2 : 16;
    spare_t *p = realloc(a->spares, n * sizeof *p);
    if (p == NULL) return false;
    a->spares = p;
    a->spares_cap = n;
  }
  a->spares[a->nspares++] = (spare_t){ref, data, len};
  return true;
}

/* A buffer for a request registered without one, at its first source symbol: the last spare given
 * that is big enough, else memory of its own. False when there is no memory (the symbol is dropped). */
static bool entry_take_buffer(assembler_t *a, entry_t *e) {
  for (size_t i = a->nspares; i-- > 0;) {
    if (a->spares[i].len < e->length) continue;
    e->ref = a->spares[i].ref;
    e->dst = a->spares[i].data;
    e->dst_cap = a->spares[i].len;
    a->spares[i] = a->spares[--a->nspares];
    return true;
  }
  e->dst = malloc(e->length);
  if (e->dst == NULL) return false;
  e->dst_cap = e->length;
  e->owned = 1;
  return true;
}

/* Move a lazy request's buffer into the event that ends it (JS gets it with the batch). */
static void entry_give_buffer(entry_t *e, event_t *ev) {
  if (!e->lazy) return;
  ev->has_buf = e->dst != NULL;
  if (e->owned) {
    ev->owned = e->dst;
    ev->owned_len = e->length;
  } else {
    ev->buf_ref = e->ref;
  }
  e->dst = NULL;
  e->ref = NULL;
  e->owned = 0;
  e->dst_cap = 0;
}

static void event_free_buffer(napi_env env, event_t *ev) {
  if (ev->buf_ref != NULL) napi_delete_reference(env, ev->buf_ref);
  free(ev->owned);
  ev->buf_ref = NULL;
  ev->owned = NULL;
  ev->has_buf = false;
}

static void entry_free(napi_env env, entry_t *e) {
  if (e->ref != NULL) napi_delete_reference(env, e->ref);
  if (e->owned) free(e->dst);
  free(e->bitmap);
  free(e->repair_esi);
  free(e->repair);
  memset(e, 0, sizeof *e);
  e->used = 2;
}

static void table_remove(assembler_t *a, entry_t *e) {
  entry_free(a->env, e);
  a->live--;
  a->tombs++;
}

/* ------------------------------------------------------------------------------------------ */
/* Assembling                                                                                   */

/* Room for one more event in the batch. */
static bool reserve_event(assembler_t *a) {
  if (a->nevents == a->events_cap) {
    size_t n = a->events_cap ? a->events_cap * 2 : 16;
    event_t *p = realloc(a->events, n * sizeof *p);
    if (p == NULL) return false;
    a->events = p;
    a->events_cap = n;
  }
  return true;
}

static bool push_event(assembler_t *a, event_t ev) {
  if (!reserve_event(a)) return false;
  a->events[a->nevents++] = ev;
  return true;
}

static void push_progress(assembler_t *a, entry_t *e) {
  if (e->mark == a->serial) return;
  if (a->nprogressed == a->progressed_cap) {
    size_t n = a->progressed_cap ? a->progressed_cap * 2 : 16;
    uint32_t *p = realloc(a->progressed, n * sizeof *p);
    if (p == NULL) return; /* progress is advisory: JS at worst asks again for the group */
    a->progressed = p;
    a->progressed_cap = n;
  }
  e->mark = a->serial;
  a->progressed[a->nprogressed++] = e->id;
}

static bool push_pass(assembler_t *a, const uint8_t *p, size_t len) {
  if (a->npass == a->pass_cap) {
    size_t n = a->pass_cap ? a->pass_cap * 2 : 64;
    const uint8_t **pp = realloc(a->pass, n * sizeof *pp);
    if (pp == NULL) return false;
    a->pass = pp;
    uint32_t *pl = realloc(a->pass_len, n * sizeof *pl);
    if (pl == NULL) return false;
    a->pass_len = pl;
    a->pass_cap = n;
  }
  a->pass[a->npass] = p;
  a->pass_len[a->npass++] = (uint32_t)len;
  a->pass_bytes += len;
  return true;
}

/* All K source symbols are in: verify, and report. */
static void entry_complete(assembler_t *a, entry_t *e) {
  blake3_hasher h;
  uint8_t digest[BLAKE3_OUT_LEN];
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, e->dst, e->length);
  blake3_hasher_finalize(&h, digest, sizeof digest);
  event_t ev = {0};
  ev.id = e->id;
  if (memcmp(digest, e->oid, OID_LEN) == 0) {
    ev.kind = EV_COMPLETE;
    if (reserve_event(a)) {
      entry_give_buffer(e, &ev);
      push_event(a, ev);
    }
    table_remove(a, e);
  } else {
    ev.kind = EV_REJECTED;
    push_event(a, ev);
    entry_reset(e);
  }
}

/* Enough symbols to decode, but not all source ones: hand the request over to JS. */
static void entry_hand_over(assembler_t *a, entry_t *e) {
  event_t ev = {0};
  ev.kind = EV_DECODE;
  ev.id = e->id;
  ev.src_esi = malloc((size_t)(e->have ? e->have : 1) * sizeof *ev.src_esi);
  if (ev.src_esi == NULL) return; /* try again with the next symbol */
  for (uint32_t i = 0; i < e->K; i++)
    if (e->bitmap[i >> 3] & (1u << (i & 7))) ev.src_esi[ev.nsrc++] = i;
  ev.repair_esi = e->repair_esi;
  ev.nrepair = e->nrepair;
  ev.repair = e->repair;
  ev.T = e->T;
  if (!reserve_event(a)) {
    free(ev.src_esi);
    return;
  }
  /* From here the request's datagrams go to JS, which decodes into the buffer its source symbols are in. */
  entry_give_buffer(e, &ev);
  push_event(a, ev);
  e->repair_esi = NULL;
  e->repair = NULL;
  e->nrepair = e->repair_cap = 0;
  e->handed = 1;
}

static void add_symbol(assembler_t *a, entry_t *e, uint32_t esi, uint32_t T, const uint8_t *sym) {
  if (T != e->T) {
    a->dropped++;
    return;
  }
  if (esi < e->K) {
    uint8_t bit = (uint8_t)(1u << (esi & 7));
    if (e->bitmap[esi >> 3] & bit) return;
    if (e->dst == NULL && !entry_take_buffer(a, e)) return;
    size_t off = (size_t)esi * T;
    size_t n = e->length - off < T ? e->length - off : T;
    memcpy(e->dst + off, sym, n);
    e->bitmap[esi >> 3] |= bit;
    e->have++;
    /* The last source symbol of a pass that began at ESI 0, and some before it were lost: say so at once
     * (see LACKING above), rather than leave the share to find out when its hold ends. */
    if (esi == e->K - 1 && e->have < e->K && e->have + e->nrepair < e->K && !e->lacked) {
      event_t ev = {0};
      ev.kind = EV_LACKING;
      ev.id = e->id;
      if (reserve_event(a)) {
        push_event(a, ev);
        e->lacked = 1;
      }
    }
  } else {
    for (uint32_t i = 0; i < e->nrepair; i++)
      if (e->repair_esi[i] == esi) return;
    /* K repair symbols always make a hand-over; only a failed one (no memory) gets here with K kept. */
    if (e->nrepair >= e->K) return;
    if (e->nrepair == e->repair_cap) {
      uint32_t n = e->repair_cap ? e->repair_cap * 2 : 4;
      if (n > e->K) n = e->K;
      uint32_t *pe = realloc(e->repair_esi, (size_t)n * sizeof *pe);
      if (pe == NULL) return;
      e->repair_esi = pe;
      uint8_t *pr = realloc(e->repair, (size_t)n * T);
      if (pr == NULL) return;
      e->repair = pr;
      e->repair_cap = n;
    }
    memcpy(e->repair + (size_t)e->nrepair * T, sym, T);
    e->repair_esi[e->nrepair++] = esi;
  }
  push_progress(a, e);
  if (e->have == e->K) entry_complete(a, e);
  else if (e->have + e->nrepair >= e->K) entry_hand_over(a, e);
}

/* One datagram (or GRO segment). `p` must stay valid until the batch is turned into JS values. */
static void assemble_one(assembler_t *a, const uint8_t *p, size_t len) {
  dg_t d;
  a->datagrams++;
  a->bytes += (double)len;
  if (!a->claimed) {
    push_pass(a, p, len);
    return;
  }
  if (!parse_datagram(p, len, &d)) {
    if (len == NOTICE_LEN || len == NOTICE_SEALED_LEN) push_pass(a, p, len);
    else a->dropped++;
    return;
  }
  if (d.F != 0) {
    push_pass(a, p, len);
    return;
  }
  entry_t *e = table_find(a, p);
  if (e == NULL) {
    a->dropped++;
    return;
  }
  if (e->handed) {
    push_pass(a, p, len);
    return;
  }
  add_symbol(a, e, d.esi, d.T, p + d.symbol_off);
}

/* Messages back to back in buf; gso[i] > 0 splits message i into segments of that size. */
static void assemble_messages(assembler_t *a, const uint8_t *buf, const uint32_t *lens, size_t count, size_t stride,
                              const uint32_t *gso) {
  size_t off = 0;
  for (size_t i = 0; i < count; i++) {
    const uint8_t *m = buf + (stride ? i * stride : off);
    size_t len = lens[i];
    size_t seg = gso != NULL && gso[i] > 0 ? gso[i] : len;
    if (seg < len) a->coalesced++;
    for (size_t s = 0; s < len; s += seg) assemble_one(a, m + s, len - s < seg ? len - s : seg);
    off += len;
  }
}

/* Whether JS must hear now (see "held back" in the header). */
static bool batch_needs_js(const assembler_t *a) {
  return a->npass > 0 || a->nevents > 0 || a->errors > 0;
}

/* Whether anything at all waits for JS: what must go now, or progress and counts held back. */
static bool batch_has_news(const assembler_t *a) {
  return batch_needs_js(a) || a->nprogressed > 0 || a->datagrams > 0;
}

static void batch_clear(assembler_t *a) {
  for (size_t i = 0; i < a->nevents; i++) {
    free(a->events[i].src_esi);
    free(a->events[i].repair_esi);
    free(a->events[i].repair);
    event_free_buffer(a->env, &a->events[i]);
  }
  a->nevents = 0;
  a->nprogressed = 0;
  a->npass = 0;
  a->pass_bytes = 0;
  a->serial++;
}

static bool make_u32_array(napi_env env, const uint32_t *src, size_t n, napi_value *out) {
  void *data = NULL;
  napi_value ab;
  if (napi_create_arraybuffer(env, n * 4, &data, &ab) != napi_ok) return false;
  if (n) memcpy(data, src, n * 4);
  return napi_create_typedarray(env, napi_uint32_array, n, ab, 0, out) == napi_ok;
}

static bool set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, obj, name, n) == napi_ok;
}

/* The batch as a JS object (see the header); resets the batch and its counters. NULL on failure. */
static napi_value batch_to_js(napi_env env, assembler_t *a) {
  napi_value obj, buf, lens, prog, evs, decodes;
  void *data = NULL;
  uint32_t *pairs = NULL;
  napi_value result = NULL;
  if (napi_create_object(env, &obj) != napi_ok) goto out;
  if (napi_create_buffer(env, a->pass_bytes, &data, &buf) != napi_ok) goto out;
  {
    uint8_t *dst = data;
    for (size_t i = 0; i < a->npass; i++) {
      memcpy(dst, a->pass[i], a->pass_len[i]);
      dst += a->pass_len[i];
    }
  }
  if (!make_u32_array(env, a->pass_len, a->npass, &lens)) goto out;
  if (!make_u32_array(env, a->progressed, a->nprogressed, &prog)) goto out;
  pairs = malloc((a->nevents ? a->nevents : 1) * 2 * sizeof *pairs);
  if (pairs == NULL) goto out;
  size_t ndecode = 0;
  for (size_t i = 0; i < a->nevents; i++) {
    pairs[2 * i] = a->events[i].kind;
    pairs[2 * i + 1] = a->events[i].id;
    if (a->events[i].kind == EV_DECODE) ndecode++;
  }
  if (!make_u32_array(env, pairs, a->nevents * 2, &evs)) goto out;
  if (napi_create_array_with_length(env, ndecode, &decodes) != napi_ok) goto out;
  for (size_t i = 0, k = 0; i < a->nevents; i++) {
    event_t *ev = &a->events[i];
    if (ev->kind != EV_DECODE) continue;
    napi_value triple, se, re, rb, tv;
    void *rd = NULL;
    if (napi_create_array_with_length(env, 4, &triple) != napi_ok) goto out;
    if (!make_u32_array(env, ev->src_esi, ev->nsrc, &se)) goto out;
    if (!make_u32_array(env, ev->repair_esi, ev->nrepair, &re)) goto out;
    if (napi_create_buffer(env, (size_t)ev->nrepair * ev->T, &rd, &rb) != napi_ok) goto out;
    if (ev->nrepair) memcpy(rd, ev->repair, (size_t)ev->nrepair * ev->T);
    if (napi_create_uint32(env, ev->T, &tv) != napi_ok) goto out;
    if (napi_set_element(env, triple, 0, se) != napi_ok || napi_set_element(env, triple, 1, re) != napi_ok ||
        napi_set_element(env, triple, 2, rb) != napi_ok || napi_set_element(env, triple, 3, tv) != napi_ok ||
        napi_set_element(env, decodes, (uint32_t)k++, triple) != napi_ok)
      goto out;
  }
  {
    bool any = false;
    for (size_t i = 0; i < a->nevents && !any; i++) any = a->events[i].has_buf;
    if (any) {
      napi_value buffers, undef;
      if (napi_create_array_with_length(env, a->nevents, &buffers) != napi_ok || napi_get_undefined(env, &undef) != napi_ok) goto out;
      for (size_t i = 0; i < a->nevents; i++) {
        event_t *ev = &a->events[i];
        napi_value v = undef;
        if (ev->has_buf && ev->buf_ref != NULL) {
          if (napi_get_reference_value(env, ev->buf_ref, &v) != napi_ok || v == NULL) goto out;
        } else if (ev->has_buf && ev->owned != NULL) {
          /* No spare was left for it: its bytes in a buffer of their own. */
          if (napi_create_buffer_copy(env, ev->owned_len, ev->owned, NULL, &v) != napi_ok) goto out;
        }
        if (napi_set_element(env, buffers, (uint32_t)i, v) != napi_ok) goto out;
      }
      if (napi_set_named_property(env, obj, "buffers", buffers) != napi_ok) goto out;
    }
  }
  if (napi_set_named_property(env, obj, "buf", buf) != napi_ok || napi_set_named_property(env, obj, "lengths", lens) != napi_ok ||
      !set_num(env, obj, "count", (double)a->npass) || !set_num(env, obj, "errors", a->errors) ||
      !set_num(env, obj, "datagrams", a->datagrams) || !set_num(env, obj, "bytes", a->bytes) ||
      !set_num(env, obj, "dropped", a->dropped) || !set_num(env, obj, "coalesced", a->coalesced) || napi_set_named_property(env, obj, "progressed", prog) != napi_ok ||
      napi_set_named_property(env, obj, "events", evs) != napi_ok || napi_set_named_property(env, obj, "decodes", decodes) != napi_ok)
    goto out;
  result = obj;
out:
  free(pairs);
  a->datagrams = a->bytes = a->dropped = a->coalesced = 0;
  a->errors = 0;
  batch_clear(a);
  return result;
}

/* ------------------------------------------------------------------------------------------ */
/* The assembler object                                                                         */

static void assembler_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  assembler_t *a = data;
  a->env = env;
  for (size_t i = 0; i < a->cap; i++)
    if (a->slots[i].used == 1) entry_free(env, &a->slots[i]);
  batch_clear(a);
  for (size_t i = 0; i < a->nspares; i++) napi_delete_reference(env, a->spares[i].ref);
  free(a->spares);
  free(a->slots);
  free(a->events);
  free(a->progressed);
  free(a->pass);
  free(a->pass_len);
  free(a);
}

/* A type tag so that no other external can pass for an assembler or a socket. */
static const napi_type_tag ASM_TAG = {0x6c637379ull << 32 | 0x6e636173ull, 0x6d626c6572000001ull};
static const napi_type_tag SOCK_TAG = {0x6c637379ull << 32 | 0x6e636173ull, 0x6d626c6572000002ull};

static void *get_tagged(napi_env env, napi_value v, const napi_type_tag *tag, const char *what) {
  napi_valuetype t;
  bool ok = false;
  void *p = NULL;
  char msg[96];
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_external && napi_check_object_type_tag(env, v, tag, &ok) == napi_ok && ok &&
      napi_get_value_external(env, v, &p) == napi_ok && p != NULL)
    return p;
  snprintf(msg, sizeof msg, "%s must be made by rxasm%s", what, tag == &ASM_TAG ? "Create" : "Open");
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  assembler_t *a = calloc(1, sizeof *a);
  if (a == NULL) return throw_errno(env, ENOMEM, "malloc");
  a->env = env;
  a->seed = (uint64_t)(uintptr_t)a ^ 0x5bd1e9955bd1e995ull;
  a->serial = 1;
  if (napi_create_external(env, a, assembler_finalize, NULL, &result) != napi_ok) {
    free(a);
    CHECK(env, napi_generic_failure);
  }
  CHECK(env, napi_type_tag_object(env, result, &ASM_TAG));
  return result;
}

static napi_value js_register(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int64_t id, length, T;
  uint8_t *oid, *dst;
  size_t oid_len, dst_len;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6) THROW_TYPE(env, "rxasmRegister(asm, id, oid, length, buf, T) takes 6 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  if (!get_int(env, argv[1], "id", 0, UINT32_MAX, &id)) return NULL;
  if (!get_bytes(env, argv[2], "oid", &oid, &oid_len)) return NULL;
  if (oid_len != OID_LEN) THROW_RANGE(env, "oid must be 32 bytes");
  if (!get_int(env, argv[3], "length", 1, MAX_OBJECT, &length)) return NULL;
  if (!get_int(env, argv[5], "T", SYMBOL, LARGE_SYMBOL, &T)) return NULL;
  if (T != SYMBOL && T != LARGE_SYMBOL) THROW_RANGE(env, "T must be 1024 or 1368");
  napi_valuetype t;
  CHECK(env, napi_typeof(env, argv[4], &t));
  bool lazy = t == napi_null;
  dst = NULL;
  dst_len = 0;
  if (!lazy) {
    if (!get_bytes(env, argv[4], "buf", &dst, &dst_len)) return NULL;
    if (dst_len < (size_t)length) THROW_RANGE(env, "buf is shorter than length");
  }
  if (table_find(a, oid) != NULL) THROW_RANGE(env, "oid is already registered");
  if ((a->live + a->tombs + 1) * 4 > a->cap * 3 && !table_grow(a)) return throw_errno(env, ENOMEM, "malloc");
  uint32_t K = (uint32_t)((length + T - 1) / T);
  uint8_t *bitmap = calloc((K + 7) / 8, 1);
  if (bitmap == NULL) return throw_errno(env, ENOMEM, "malloc");
  napi_ref ref = NULL;
  if (!lazy && napi_create_reference(env, argv[4], 1, &ref) != napi_ok) {
    free(bitmap);
    CHECK(env, napi_generic_failure);
  }
  a->env = env;
  size_t mask = a->cap - 1, i = (size_t)oid_key(a, oid) & mask;
  while (a->slots[i].used == 1) i = (i + 1) & mask;
  entry_t *e = &a->slots[i];
  if (e->used == 2) a->tombs--;
  memset(e, 0, sizeof *e);
  memcpy(e->oid, oid, OID_LEN);
  e->used = 1;
  e->id = (uint32_t)id;
  e->T = (uint32_t)T;
  e->K = K;
  e->length = (size_t)length;
  e->dst = dst;
  e->dst_cap = dst_len;
  e->ref = ref;
  e->lazy = lazy;
  e->bitmap = bitmap;
  a->live++;
  return NULL;
}

static napi_value js_spare(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) THROW_TYPE(env, "rxasmSpare(asm, buf) takes 2 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  CHECK(env, napi_typeof(env, argv[1], &t));
  if (t != napi_null) {
    uint8_t *data;
    size_t len;
    napi_ref ref;
    if (!get_bytes(env, argv[1], "buf", &data, &len)) return NULL;
    if (len == 0) THROW_RANGE(env, "buf must not be empty");
    CHECK(env, napi_create_reference(env, argv[1], 1, &ref));
    if (!push_spare(a, ref, data, len)) {
      napi_delete_reference(env, ref);
      return throw_errno(env, ENOMEM, "malloc");
    }
  }
  CHECK(env, napi_create_uint32(env, (uint32_t)a->nspares, &result));
  return result;
}

static napi_value js_unregister(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  uint8_t *oid;
  size_t oid_len;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) THROW_TYPE(env, "rxasmUnregister(asm, oid) takes 2 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  if (!get_bytes(env, argv[1], "oid", &oid, &oid_len)) return NULL;
  if (oid_len != OID_LEN) THROW_RANGE(env, "oid must be 32 bytes");
  entry_t *e = table_find(a, oid);
  a->env = env;
  if (e != NULL && e->lazy && e->ref != NULL && push_spare(a, e->ref, e->dst, e->dst_cap)) {
    /* The spare it took goes back to the pool. */
    e->ref = NULL;
    e->dst = NULL;
  }
  if (e != NULL) table_remove(a, e);
  CHECK(env, napi_get_boolean(env, e != NULL, &result));
  return result;
}

static napi_value js_claim(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_valuetype t;
  bool claimed;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) THROW_TYPE(env, "rxasmClaim(asm, claimed) takes 2 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_boolean) THROW_TYPE(env, "claimed must be a boolean");
  CHECK(env, napi_get_value_bool(env, argv[1], &claimed));
  a->claimed = claimed;
  return NULL;
}

static napi_value js_feed(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int64_t count;
  uint8_t *buf;
  size_t buf_len, nlens = 0, ngso = 0;
  uint32_t *lens = NULL, *gso = NULL;
  napi_typedarray_type type;
  bool is = false;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 5) THROW_TYPE(env, "rxasmFeed(asm, buf, lengths, count, gsoSizes) takes 5 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  if (!get_bytes(env, argv[1], "buf", &buf, &buf_len)) return NULL;
  if (napi_is_typedarray(env, argv[2], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[2], &type, &nlens, (void **)&lens, NULL, NULL) != napi_ok || type != napi_uint32_array)
    THROW_TYPE(env, "lengths must be a Uint32Array");
  if (!get_int(env, argv[3], "count", 0, (int64_t)nlens, &count)) return NULL;
  CHECK(env, napi_typeof(env, argv[4], &t));
  if (t != napi_null && t != napi_undefined) {
    if (napi_is_typedarray(env, argv[4], &is) != napi_ok || !is ||
        napi_get_typedarray_info(env, argv[4], &type, &ngso, (void **)&gso, NULL, NULL) != napi_ok || type != napi_uint32_array)
      THROW_TYPE(env, "gsoSizes must be a Uint32Array or null");
    if (ngso < (size_t)count) THROW_RANGE(env, "gsoSizes is shorter than count");
  }
  size_t total = 0;
  for (int64_t i = 0; i < count; i++) total += lens[i];
  if (total > buf_len) THROW_RANGE(env, "lengths add up to more than buf holds");
  a->env = env;
  /* The batch points into buf: no JS runs until batch_to_js has copied what it keeps. */
  assemble_messages(a, buf, lens, (size_t)count, 0, gso);
  napi_value r;
  if (!batch_needs_js(a)) {
    CHECK(env, napi_get_undefined(env, &r));
    return r;
  }
  r = batch_to_js(env, a);
  if (r == NULL) CHECK(env, napi_generic_failure);
  return r;
}

static napi_value js_drain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "rxasmDrain(asm) takes 1 argument");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  /* Outside a wakeup no datagram is pending (rx_flush hands them on before the next recvmmsg). */
  if (!batch_has_news(a)) {
    CHECK(env, napi_get_undefined(env, &r));
    return r;
  }
  a->env = env;
  r = batch_to_js(env, a);
  if (r == NULL) CHECK(env, napi_generic_failure);
  return r;
}

static napi_value js_parse(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  uint8_t *buf;
  size_t len;
  dg_t d;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "rxParse(buf) takes 1 argument");
  if (!get_bytes(env, argv[0], "buf", &buf, &len)) return NULL;
  if (!parse_datagram(buf, len, &d)) {
    CHECK(env, napi_get_undefined(env, &result));
    return result;
  }
  double fields[5] = {0, (double)d.F, d.esi, (double)d.symbol_off, d.T};
  CHECK(env, napi_create_array_with_length(env, 5, &result));
  for (uint32_t i = 0; i < 5; i++) {
    CHECK(env, napi_create_double(env, fields[i], &v));
    CHECK(env, napi_set_element(env, result, i, v));
  }
  return result;
}

/* ------------------------------------------------------------------------------------------ */
/* The socket                                                                                   */

typedef struct {
  polled_fd_t io; /* first: see napi_util.h */
  assembler_t *a;
  napi_ref asm_ref;
  bool gro;
  /* SO_RXQ_OVFL: a datagram queued after drops carries the socket's drop count (none while it is 0, as
   * it is when the socket is made); the last count seen. */
  bool ovfl;
  uint32_t drops;
  unsigned slots;
  size_t slot_bytes;
  struct mmsghdr msgs[RX_SLOTS];
  struct iovec iov[RX_SLOTS];
  char ctrl[RX_SLOTS][CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t))];
  uint32_t lens[RX_SLOTS];
  uint32_t gso[RX_SLOTS];
  uint8_t *scratch; /* points at tail: one allocation, freed with the handle (polled_free) */
  uint8_t tail[];
} rxsock_t;

/* What the JS object holds: the socket until rxasmClose, then NULL (the socket's memory goes with its
 * libuv handle, which may be before the GC takes the JS object). */
typedef struct {
  rxsock_t *r;
} rxbox_t;
_Static_assert(offsetof(rxsock_t, io) == 0, "polled_fd_t must be the first member");

/* Hand the batch to onBatch when JS must hear now; progress and counters alone are held back (see the
 * header). Returns false when the wakeup must end. */
static bool rx_flush(rxsock_t *r) {
  napi_env env = r->io.env;
  napi_handle_scope scope;
  if (!batch_needs_js(r->a)) return true;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  r->a->env = env;
  napi_value batch = batch_to_js(env, r->a);
  bool ok = batch != NULL && polled_call(&r->io, 1, &batch);
  napi_close_handle_scope(env, scope);
  return ok;
}

static void rx_readable(uv_poll_t *h, int status, int events) {
  rxsock_t *r = h->data;
  if (r->io.closing) return;
  if (status < 0) {
    uv_poll_stop(h);
    r->a->errors++;
    rx_flush(r);
    return;
  }
  if (!(events & UV_READABLE)) return;
  for (int call = 0; call < RX_CALLS && !r->io.closing; call++) {
    for (unsigned i = 0; i < r->slots; i++) {
      r->msgs[i].msg_hdr.msg_flags = 0;
      if (r->gro || r->ovfl) {
        r->msgs[i].msg_hdr.msg_control = r->ctrl[i];
        r->msgs[i].msg_hdr.msg_controllen = sizeof r->ctrl[i];
      }
    }
    int n = recvmmsg(r->io.fd, r->msgs, r->slots, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        r->a->errors++;
        rx_flush(r);
      }
      return;
    }
    unsigned kept = 0;
    for (int i = 0; i < n; i++) {
      if (r->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        r->a->errors++;
        continue;
      }
      uint32_t seg = 0;
      if (r->gro || r->ovfl) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&r->msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&r->msgs[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int g;
            memcpy(&g, CMSG_DATA(c), sizeof g);
            if (g > 0) seg = (uint32_t)g;
          } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL && c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
            uint32_t d;
            memcpy(&d, CMSG_DATA(c), sizeof d);
            /* A cumulative count (wrapping): what grew since the last datagram is what the buffer lost. */
            if (d - r->drops < UINT32_MAX / 2) {
              r->a->errors += d - r->drops;
              r->drops = d;
            }
          }
        }
      }
      /* Slot i's bytes stay in slot i: assemble_messages reads them by stride. */
      r->lens[kept] = r->msgs[i].msg_len;
      r->gso[kept] = seg;
      if (kept != (unsigned)i) memmove(r->scratch + (size_t)kept * r->slot_bytes, r->scratch + (size_t)i * r->slot_bytes, r->msgs[i].msg_len);
      kept++;
    }
    r->a->env = r->io.env;
    assemble_messages(r->a, r->scratch, r->lens, kept, r->slot_bytes, r->gso);
    if (!rx_flush(r)) return;
    if (n < (int)r->slots) return;
  }
}

static void rxbox_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  int64_t port, rcvbuf;
  bool want_gro;
  napi_valuetype t;
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 5) THROW_TYPE(env, "rxasmOpen(asm, port, rcvbuf, gro, onBatch) takes 5 arguments");
  assembler_t *a = get_tagged(env, argv[0], &ASM_TAG, "asm");
  if (a == NULL) return NULL;
  if (!get_int(env, argv[1], "port", 1, 65535, &port)) return NULL;
  if (!get_int(env, argv[2], "rcvbuf", 1, INT32_MAX, &rcvbuf)) return NULL;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_boolean) THROW_TYPE(env, "gro must be a boolean");
  CHECK(env, napi_get_value_bool(env, argv[3], &want_gro));
  if (napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function) THROW_TYPE(env, "onBatch must be a function");
  CHECK(env, napi_get_uv_event_loop(env, &loop));

  unsigned slots = want_gro ? RX_GRO_SLOTS : RX_SLOTS;
  size_t slot_bytes = want_gro ? RX_GRO_SLOT_BYTES : RX_SLOT_BYTES;
  rxbox_t *box = calloc(1, sizeof *box);
  rxsock_t *r = calloc(1, sizeof *r + slots * slot_bytes);
  if (r == NULL || box == NULL) {
    free(r);
    free(box);
    return throw_errno(env, ENOMEM, "malloc");
  }
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    free(r);
    free(box);
    return throw_errno(env, e, "socket");
  }
  int one = 1, size = (int)rcvbuf;
  struct sockaddr_in6 any;
  memset(&any, 0, sizeof any);
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  any.sin6_port = htons((uint16_t)port);
  const char *step = "setsockopt SO_REUSEADDR";
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
  step = "setsockopt SO_RCVBUF";
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) goto fail;
  step = "bind";
  if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) goto fail;
  /* A kernel without UDP GRO (before 5.0) refuses the option: receive plain datagrams then. */
  r->gro = want_gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  /* Drops are only counted, never needed to receive: a kernel that refuses the option loses nothing else. */
  r->ovfl = setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) == 0;
  r->slots = slots;
  r->slot_bytes = slot_bytes;
  r->scratch = r->tail;
  for (unsigned i = 0; i < r->slots; i++) {
    r->iov[i].iov_base = r->scratch + (size_t)i * r->slot_bytes;
    r->iov[i].iov_len = r->slot_bytes;
    r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
    r->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  r->a = a;
  if (napi_create_reference(env, argv[0], 1, &r->asm_ref) != napi_ok) {
    errno = ENOMEM;
    step = "napi_create_reference";
    goto fail;
  }
  if (napi_create_external(env, box, rxbox_finalize, NULL, &result) != napi_ok ||
      napi_type_tag_object(env, result, &SOCK_TAG) != napi_ok) {
    /* The external (if made) owns box now; an unmade one leaks 8 bytes, once, on an engine failure. */
    errno = ENOMEM;
    step = "napi_create_external";
    box = NULL;
    goto fail;
  }
  {
    napi_ref aref = r->asm_ref;
    /* polled_start closes fd and frees r itself on failure (not the reference). */
    if (!polled_start(env, loop, &r->io, fd, argv[4], "lcsync:rx_assembler", "rx_assembler", rx_readable)) {
      napi_delete_reference(env, aref);
      return NULL;
    }
  }
  box->r = r;
  return result;
fail: {
  int e = errno;
  close(fd);
  if (r->asm_ref) napi_delete_reference(env, r->asm_ref);
  free(r);
  free(box);
  return throw_errno(env, e, step);
}
}

static rxsock_t *get_sock(napi_env env, napi_value v) {
  rxbox_t *box = get_tagged(env, v, &SOCK_TAG, "sock");
  if (box == NULL) return NULL;
  if (box->r == NULL) {
    napi_value err = errno_error(env, EBADF, "rx_assembler");
    if (err != NULL) napi_throw(env, err);
    return NULL;
  }
  return box->r;
}

static napi_value js_gro(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "rxasmGro(sock) takes 1 argument");
  rxsock_t *r = get_sock(env, argv[0]);
  if (r == NULL) return NULL;
  CHECK(env, napi_get_boolean(env, r->gro, &result));
  return result;
}

static napi_value js_rcvbuf(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "rxasmRecvBufferSize(sock) takes 1 argument");
  rxsock_t *r = get_sock(env, argv[0]);
  if (r == NULL) return NULL;
  int size = 0;
  socklen_t len = sizeof size;
  if (getsockopt(r->io.fd, SOL_SOCKET, SO_RCVBUF, &size, &len) != 0) return throw_errno(env, errno, "getsockopt SO_RCVBUF");
  CHECK(env, napi_create_int32(env, size, &result));
  return result;
}

static napi_value membership(napi_env env, napi_callback_info info, int opt, const char *what) {
  size_t argc = 3;
  napi_value argv[3];
  char msg[96];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) {
    snprintf(msg, sizeof msg, "%s(sock, group, ifindex) takes 3 arguments", what);
    THROW_TYPE(env, msg);
  }
  rxsock_t *r = get_sock(env, argv[0]);
  if (r == NULL) return NULL;
  return set_membership(env, r->io.fd, argv[1], argv[2], opt);
}

static napi_value js_join(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_JOIN_GROUP, "rxasmJoin");
}

static napi_value js_leave(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_LEAVE_GROUP, "rxasmLeave");
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "rxasmClose(sock) takes 1 argument");
  rxsock_t *r = get_sock(env, argv[0]);
  if (r == NULL) return NULL;
  rxbox_t *box;
  CHECK(env, napi_get_value_external(env, argv[0], (void **)&box));
  box->r = NULL;
  napi_delete_reference(env, r->asm_ref);
  r->asm_ref = NULL;
  /* May run inside onBatch: rx_readable sees `closing` and stops; r lives until polled_free. The
   * assembler stays alive meanwhile: rx_readable's caller (this batch) still holds it through JS. */
  polled_close(env, &r->io);
  return NULL;
}

bool rx_assembler_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"rxasmCreate", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmRegister", NULL, js_register, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmUnregister", NULL, js_unregister, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmSpare", NULL, js_spare, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmClaim", NULL, js_claim, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmFeed", NULL, js_feed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmDrain", NULL, js_drain, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxParse", NULL, js_parse, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmOpen", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmGro", NULL, js_gro, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmRecvBufferSize", NULL, js_rcvbuf, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmJoin", NULL, js_join, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmLeave", NULL, js_leave, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rxasmClose", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
