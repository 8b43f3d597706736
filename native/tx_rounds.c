/*
 * tx_rounds: frame and send a batch of lcsync datagrams from a symbol plan, without one JS object
 * per datagram.
 *
 * Why: framing each datagram in JS (a header write, a 1 KiB copy, a payload Buffer and an item
 * object each) and handing sendmmsg one Buffer per datagram costs the share a JS object, a
 * napi_get_element and a bounds check per datagram. Here JavaScript says, for a whole batch,
 * which symbol of which object goes to which group (the plan); this file writes the datagrams
 * (PID and symbol after the stream's constant header) and sends them. Part of the lcsync addon:
 * native/addon.c calls tx_rounds_init. Optional: src/core/net/txplan.ts says whether it loaded,
 * and without it the share frames in JS (wire/packet.ts encodeDatagram) as before.
 *
 * The header format has one encoder, wire/packet.ts: the constant part of a stream's datagrams
 * (OID, and OTI + scheme for objects that carry them) is built there once per stream
 * (datagramPrefix) and handed in as `prefixes`; this file only appends the PID (SBN 0, 24-bit
 * ESI, big-endian) and the symbol (T bytes, 1024 or 1368), zero-padded when the plan gives fewer bytes.
 *
 * Plan: a Uint32Array of PLAN_WORDS words per datagram:
 *   slot    index into prefixes (and into addrs: the group is addrs[16 slot .. 16 slot + 16))
 *   esi     0..0xffffff
 *   buf     index into bufs
 *   offset  where the symbol's bytes start in bufs[buf]
 *   length  1..T bytes taken from there (the rest of the symbol is zeros)
 *   T       the symbol size, 1024 or 1368 (wire/packet.ts SYMBOL_SIZES)
 * Every row is checked before anything is written or sent.
 *
 * API:
 *   txFrame(prefixes, bufs, plan, out) -> bytes    the datagrams back to back in out (RangeError
 *       when out is too short); what txSend sends, for tests and for the JS reference comparison
 *   txSend(fd, port, prefixes, addrs, bufs, plan, gso, info) -> sent
 *       frames as txFrame, then sends with sendmmsg(2) on a socket udp_batch.open made. With gso,
 *       consecutive datagrams of one slot (so one group) and one length go as one message with a
 *       UDP_SEGMENT control message (UDP GSO: the kernel cuts it into equal datagrams, in
 *       hardware when the NIC can), at most GSO_MAX_SEGS or 65000 bytes per message; without it,
 *       one message per datagram. Returns how many datagrams (from the front of the plan) the
 *       kernel took; errors as udp_batch.sendBatch (EAGAIN/ENOBUFS end the call early; any other
 *       error throws when nothing was sent, else the count is returned and the next call throws).
 *       When the kernel refuses GSO (EIO: no checksum offload on the route; EINVAL/EOPNOTSUPP/
 *       ENOPROTOOPT: no UDP_SEGMENT), the same call goes on without it and info[1] is set to 1 so
 *       the caller stops asking. info (Uint32Array of 2): [0] sendmsg messages handed to the
 *       kernel (a GSO message counts once), [1] GSO refused.
 *   txGsoAvailable(fd) -> boolean   whether this kernel knows UDP_SEGMENT on that socket
 */
#include "napi_util.h"
#include "addon.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define PLAN_WORDS 6
#define SYMBOL_SIZE 1024
#define LARGE_SYMBOL_SIZE 1368
#define PID_LEN 4
/* wire/packet.ts: OID (32) for chunks, OID + OTI + scheme (44) for objects with OTI. */
#define PREFIX_CHUNK 32
#define PREFIX_OTI 44
#define MAX_DATAGRAM (PREFIX_OTI + PID_LEN + LARGE_SYMBOL_SIZE)
#define MAX_ESI 0xffffffu
/* One call frames at most this many datagrams: bounds the scratch allocation (about 1 MiB). */
#define MAX_TX 1024
/* Messages per sendmmsg call. */
#define CHUNK 64
/* The kernel's UDP_MAX_SEGMENTS (64 since 5.x; 64 in 4.18 too), and the IPv6 payload limit. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000

typedef struct {
  uint8_t *p;
  size_t len;
} bytes_t;

/* The Buffers of a JS array; false after throwing. `out` has room for `max` entries. */
static bool get_buffer_array(napi_env env, napi_value arr, const char *what, bytes_t *out, uint32_t max, uint32_t *n) {
  bool is_array = false;
  char msg[96];
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) {
    snprintf(msg, sizeof msg, "%s must be an array of Buffers", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_array_length(env, arr, n) != napi_ok) return false;
  if (*n > max) {
    snprintf(msg, sizeof msg, "%s: more than %u entries", what, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  for (uint32_t i = 0; i < *n; i++) {
    napi_value el;
    snprintf(msg, sizeof msg, "%s[%u]", what, i);
    if (napi_get_element(env, arr, i, &el) != napi_ok || !get_bytes(env, el, msg, &out[i].p, &out[i].len)) return false;
  }
  return true;
}

typedef struct {
  bytes_t prefixes[MAX_TX];
  bytes_t bufs[MAX_TX];
  uint32_t nprefixes, nbufs, rows;
  const uint32_t *plan;
} plan_t;

/* Read and check prefixes, bufs and plan (argv[0..2]); false after throwing. */
static bool get_plan(napi_env env, napi_value *argv, plan_t *pl) {
  char msg[128];
  size_t plen;
  napi_typedarray_type type;
  bool is = false;
  void *data = NULL;
  if (!get_buffer_array(env, argv[0], "prefixes", pl->prefixes, MAX_TX, &pl->nprefixes)) return false;
  for (uint32_t i = 0; i < pl->nprefixes; i++) {
    if (pl->prefixes[i].len != PREFIX_CHUNK && pl->prefixes[i].len != PREFIX_OTI) {
      snprintf(msg, sizeof msg, "prefixes[%u] must be %d or %d bytes, not %zu", i, PREFIX_CHUNK, PREFIX_OTI, pl->prefixes[i].len);
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
      return false;
    }
  }
  if (!get_buffer_array(env, argv[1], "bufs", pl->bufs, MAX_TX, &pl->nbufs)) return false;
  if (napi_is_typedarray(env, argv[2], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[2], &type, &plen, &data, NULL, NULL) != napi_ok || type != napi_uint32_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "plan must be a Uint32Array");
    return false;
  }
  if (plen % PLAN_WORDS != 0 || plen / PLAN_WORDS > MAX_TX) {
    snprintf(msg, sizeof msg, "plan must hold %d words per datagram, at most %d datagrams", PLAN_WORDS, MAX_TX);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  pl->rows = (uint32_t)(plen / PLAN_WORDS);
  pl->plan = data;
  for (uint32_t i = 0; i < pl->rows; i++) {
    const uint32_t *r = pl->plan + (size_t)i * PLAN_WORDS;
    const char *bad = NULL;
    if (r[0] >= pl->nprefixes) bad = "slot is not an index into prefixes";
    else if (r[1] > MAX_ESI) bad = "ESI is not a 24-bit number";
    else if (r[2] >= pl->nbufs) bad = "buf is not an index into bufs";
    else if (r[5] != SYMBOL_SIZE && r[5] != LARGE_SYMBOL_SIZE) bad = "symbol size must be 1024 or 1368";
    else if (r[4] < 1 || r[4] > r[5]) bad = "length must be 1..T";
    else if ((uint64_t)r[3] + r[4] > pl->bufs[r[2]].len) bad = "offset + length is past the end of its buffer";
    if (bad != NULL) {
      snprintf(msg, sizeof msg, "plan row %u: %s", i, bad);
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
      return false;
    }
  }
  return true;
}

static size_t row_len(const plan_t *pl, uint32_t i) {
  const uint32_t *r = pl->plan + (size_t)i * PLAN_WORDS;
  return pl->prefixes[r[0]].len + PID_LEN + r[5];
}

/* Write every datagram of the plan to out, back to back (the caller checked that it fits). */
static size_t frame(const plan_t *pl, uint8_t *out) {
  uint8_t *d = out;
  for (uint32_t i = 0; i < pl->rows; i++) {
    const uint32_t *r = pl->plan + (size_t)i * PLAN_WORDS;
    const bytes_t *pre = &pl->prefixes[r[0]];
    memcpy(d, pre->p, pre->len);
    d += pre->len;
    /* PID: SBN 0 in the top byte, then the ESI, big-endian. */
    d[0] = 0;
    d[1] = (uint8_t)(r[1] >> 16);
    d[2] = (uint8_t)(r[1] >> 8);
    d[3] = (uint8_t)r[1];
    d += PID_LEN;
    memcpy(d, pl->bufs[r[2]].p + r[3], r[4]);
    if (r[4] < r[5]) memset(d + r[4], 0, r[5] - r[4]);
    d += r[5];
  }
  return (size_t)(d - out);
}

static size_t plan_bytes(const plan_t *pl) {
  size_t total = 0;
  for (uint32_t i = 0; i < pl->rows; i++) total += row_len(pl, i);
  return total;
}

static napi_value js_tx_frame(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  uint8_t *out;
  size_t out_len;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) THROW_TYPE(env, "txFrame(prefixes, bufs, plan, out) takes 4 arguments");
  plan_t *pl = malloc(sizeof *pl);
  if (pl == NULL) return throw_errno(env, ENOMEM, "malloc");
  if (!get_plan(env, argv, pl) || !get_bytes(env, argv[3], "out", &out, &out_len)) {
    free(pl);
    return NULL;
  }
  size_t need = plan_bytes(pl);
  if (need > out_len) {
    char msg[96];
    free(pl);
    snprintf(msg, sizeof msg, "out has %zu bytes, the plan needs %zu", out_len, need);
    THROW_RANGE(env, msg);
  }
  size_t wrote = frame(pl, out);
  free(pl);
  CHECK(env, napi_create_double(env, (double)wrote, &result));
  return result;
}

/* One sendmmsg message: `segs` datagrams of `seg_len` bytes each, starting at datagram `first`. */
typedef struct {
  uint32_t first, segs;
  size_t seg_len;
  uint8_t *data;
} msg_span_t;

static bool gso_refused(int e) {
  return e == EIO || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT;
}

static napi_value js_tx_send(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], result;
  int64_t fd, port;
  uint8_t *addrs;
  size_t addrs_len, info_len = 0;
  bool gso;
  napi_valuetype t;
  napi_typedarray_type type;
  bool is = false;
  void *info_data = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 8) THROW_TYPE(env, "txSend(fd, port, prefixes, addrs, bufs, plan, gso, info) takes 8 arguments");
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  if (!get_int(env, argv[1], "port", 1, 65535, &port)) return NULL;
  if (!get_bytes(env, argv[3], "addrs", &addrs, &addrs_len)) return NULL;
  if (napi_typeof(env, argv[6], &t) != napi_ok || t != napi_boolean) THROW_TYPE(env, "gso must be a boolean");
  CHECK(env, napi_get_value_bool(env, argv[6], &gso));
  if (napi_is_typedarray(env, argv[7], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[7], &type, &info_len, &info_data, NULL, NULL) != napi_ok || type != napi_uint32_array ||
      info_len < 2)
    THROW_TYPE(env, "info must be a Uint32Array of at least 2");
  if (!udp_batch_owns_fd(env, (int)fd)) THROW_RANGE(env, "fd is not a socket opened by udp_batch.open");

  plan_t *pl = malloc(sizeof *pl);
  if (pl == NULL) return throw_errno(env, ENOMEM, "malloc");
  napi_value plan_args[3] = {argv[2], argv[4], argv[5]};
  if (!get_plan(env, plan_args, pl)) {
    free(pl);
    return NULL;
  }
  uint32_t *counters = info_data;
  counters[0] = 0;
  counters[1] = 0;
  if (addrs_len != (size_t)pl->nprefixes * 16) {
    free(pl);
    THROW_RANGE(env, "addrs must hold 16 bytes per prefix");
  }
  for (uint32_t i = 0; i < pl->nprefixes; i++) {
    /* Multicast only: this socket exists to send to groups, and a stray unicast is a bug. */
    if (addrs[(size_t)i * 16] != 0xff) {
      char msg[96];
      free(pl);
      snprintf(msg, sizeof msg, "addrs[%u] is not an IPv6 multicast address", i);
      THROW_RANGE(env, msg);
    }
  }
  uint32_t n = pl->rows;
  if (n == 0) {
    free(pl);
    CHECK(env, napi_create_uint32(env, 0, &result));
    return result;
  }
  uint8_t *wire = malloc(plan_bytes(pl));
  msg_span_t *spans = malloc((size_t)n * sizeof *spans);
  if (wire == NULL || spans == NULL) {
    free(wire);
    free(spans);
    free(pl);
    return throw_errno(env, ENOMEM, "malloc");
  }
  frame(pl, wire);

  /* Cut the datagrams into messages: runs of one slot and one length under GSO, else one each. */
  uint32_t nspans = 0;
  {
    uint8_t *d = wire;
    for (uint32_t i = 0; i < n;) {
      uint32_t slot = pl->plan[(size_t)i * PLAN_WORDS];
      size_t len = row_len(pl, i);
      uint32_t segs = 1;
      size_t max_segs = GSO_MAX_BYTES / len < GSO_MAX_SEGS ? GSO_MAX_BYTES / len : GSO_MAX_SEGS;
      while (gso && i + segs < n && segs < max_segs && pl->plan[(size_t)(i + segs) * PLAN_WORDS] == slot && row_len(pl, i + segs) == len) segs++;
      spans[nspans++] = (msg_span_t){.first = i, .segs = segs, .seg_len = len, .data = d};
      d += len * segs;
      i += segs;
    }
  }

  struct mmsghdr msgs[CHUNK];
  struct sockaddr_in6 dst[CHUNK];
  struct iovec iov[CHUNK];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl[CHUNK];
  uint32_t sent = 0, span = 0;
  int err = 0;
  while (span < nspans) {
    unsigned int m = nspans - span < CHUNK ? nspans - span : CHUNK;
    memset(msgs, 0, m * sizeof msgs[0]);
    for (unsigned int j = 0; j < m; j++) {
      const msg_span_t *s = &spans[span + j];
      uint32_t slot = pl->plan[(size_t)s->first * PLAN_WORDS];
      memset(&dst[j], 0, sizeof dst[j]);
      dst[j].sin6_family = AF_INET6;
      dst[j].sin6_port = htons((uint16_t)port);
      memcpy(&dst[j].sin6_addr, addrs + (size_t)slot * 16, 16);
      iov[j].iov_base = s->data;
      iov[j].iov_len = s->seg_len * s->segs;
      msgs[j].msg_hdr.msg_name = &dst[j];
      msgs[j].msg_hdr.msg_namelen = sizeof dst[j];
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      if (s->segs > 1) {
        memset(&ctrl[j], 0, sizeof ctrl[j]);
        msgs[j].msg_hdr.msg_control = ctrl[j].buf;
        msgs[j].msg_hdr.msg_controllen = sizeof ctrl[j].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)s->seg_len;
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
      }
    }
    int r = sendmmsg((int)fd, msgs, m, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (gso && gso_refused(errno) && spans[span].segs > 1) {
        /* This route or kernel cannot segment: split what is left into single datagrams. */
        counters[1] = 1;
        gso = false;
        uint32_t k = 0;
        uint32_t first = spans[span].first;
        uint8_t *d = spans[span].data;
        for (uint32_t i = first; i < n; i++) {
          size_t len = row_len(pl, i);
          spans[span + k++] = (msg_span_t){.first = i, .segs = 1, .seg_len = len, .data = d};
          d += len;
        }
        nspans = span + k;
        continue;
      }
      err = errno;
      break;
    }
    for (int j = 0; j < r; j++) sent += spans[span + j].segs;
    counters[0] += (uint32_t)r;
    span += (uint32_t)r;
    /* Fewer than asked: the kernel stopped at a full buffer or an error; the next call says which. */
    if ((unsigned int)r < m) {
      int r2 = sendmmsg((int)fd, msgs + r, 1, MSG_DONTWAIT);
      if (r2 == 1) {
        sent += spans[span].segs;
        counters[0]++;
        span++;
        continue;
      }
      if (r2 < 0 && errno == EINTR) continue;
      if (r2 < 0 && gso && gso_refused(errno) && spans[span].segs > 1) continue; /* handled above on the next turn */
      err = r2 < 0 ? errno : EAGAIN;
      break;
    }
  }
  free(wire);
  free(spans);
  free(pl);
  if (err != 0 && err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS) {
    if (sent == 0) return throw_errno(env, err, "sendmmsg");
    /* Report what went; the caller's next call (starting at the failing datagram) throws. */
  }
  CHECK(env, napi_create_uint32(env, sent, &result));
  return result;
}

static napi_value js_tx_gso_available(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int64_t fd;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "txGsoAvailable(fd) takes 1 argument");
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  if (!udp_batch_owns_fd(env, (int)fd)) THROW_RANGE(env, "fd is not a socket opened by udp_batch.open");
  int seg = 0;
  socklen_t len = sizeof seg;
  bool ok = getsockopt((int)fd, SOL_UDP, UDP_SEGMENT, &seg, &len) == 0;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

bool tx_rounds_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"txFrame", NULL, js_tx_frame, NULL, NULL, NULL, napi_enumerable, NULL},
      {"txSend", NULL, js_tx_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"txGsoAvailable", NULL, js_tx_gso_available, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
