/*
 * relay_fwd: the data path of `lcsync relay` (src/core/net/relay-forwarder.ts) in C, a multicast forwarding
 * table in user space. Datagrams that arrive on the upstream interface for a group with a route go out on the
 * route's downstream interfaces, bytes unchanged, to the same group and port: recvmmsg in, sendmmsg out, no JS
 * per datagram. JS only sets routes and memberships (from MLD) and reads counters.
 *
 * Why C: the relay must keep up with the share on the link above, whatever else the machine does; in JS each
 * datagram costs a node:dgram receive, a Buffer and a callback (about 40 us each on the lab machine under load),
 * which let a relay fall behind a 200 Mbit/s share, and a receiver further down then made the share send longer.
 *
 * API (all arguments checked; bad input throws TypeError/RangeError, never crashes):
 *   relayOpen(upIfindex, port, rcvbuf, downIfindexes, hopLimit, maxGroups, onError) -> handle
 *       receive socket [::]:port with SO_REUSEADDR, SO_RCVBUF = rcvbuf (SO_RCVBUFFORCE where permitted, so
 *       beyond net.core.rmem_max), IPV6_RECVPKTINFO (the group and
 *       the arrival interface of each datagram) and IPV6_MULTICAST_ALL off (only groups this socket joined);
 *       one send socket per downstream interface (downIfindexes: Uint32Array, 1..8 of them), bound to [::]:0
 *       with IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS = hopLimit and IPV6_MULTICAST_LOOP off (so nothing the
 *       relay sends comes back to it). maxGroups (1..65536) bounds the route table. onError(errors) is
 *       called when a receive call failed (never per datagram).
 *   relayRoute(handle, group, mask)     route `group` (16 bytes) to the downstreams of bit mask `mask` (bit i:
 *       downIfindexes[i]); mask 0 removes the route. RangeError when the table holds maxGroups routes.
 *   relayJoin(handle, group), relayLeave(handle, group)   IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP on upIfindex.
 *   relayStats(handle, out)             out: Float64Array(7), totals since open: received datagrams and
 *       bytes (routed, from upstream), forwarded datagrams and bytes (a datagram sent on two downstreams
 *       counts twice), dropped (refused by a send socket: its buffer full), unrouted (no route: a group
 *       left a moment ago), foreign (arrived on another interface than upstream, or cut: never forwarded).
 *   relayGroupStats(handle, group, out) -> bool   out: Float64Array(4): datagrams, bytes, ms since the last
 *       one (the loop's clock), datagrams of the group dropped (as in relayStats); false when the group has
 *       no route.
 *   relayClose(handle)                  closes every socket; the handle is dead afterwards (EBADF).
 *
 * Nothing is queued: what a send socket does not take at once is dropped and counted (RaptorQ repair and the
 * receivers' re-joins make up for it), so memory is the fixed receive slots and the route table.
 */
#include "napi_util.h"
#include "addon.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#ifndef IPV6_MULTICAST_ALL
#define IPV6_MULTICAST_ALL 29
#endif

#define SLOTS 64
#define SLOT_BYTES 2048
#define CALLS 16
#define MAX_DOWN 8
#define MAX_GROUPS 65536

typedef struct {
  uint8_t group[16];
  uint32_t mask; /* 0: empty slot */
  double datagrams, bytes;
  uint64_t last_ms;
  double dropped;
} route_t;

typedef struct {
  polled_fd_t io; /* first: poll.data points at it, and at this struct */
  int up;
  uint16_t port;
  int ndown;
  int down_fd[MAX_DOWN];
  uint32_t cap; /* power of two, >= 2 x max */
  uint32_t count, max;
  route_t *table;
  double st[7];
  struct mmsghdr msgs[SLOTS];
  struct iovec iov[SLOTS];
  char ctrl[SLOTS][CMSG_SPACE(sizeof(struct in6_pktinfo))];
  struct sockaddr_in6 dst[SLOTS];
  struct iovec siov[SLOTS];
  struct mmsghdr out[MAX_DOWN][SLOTS];
  route_t *out_route[MAX_DOWN][SLOTS]; /* whose datagram each of out[] is, to count its drops */
  uint8_t scratch[SLOTS * SLOT_BYTES];
} relay_t;

typedef struct {
  relay_t *r;
} relaybox_t;

_Static_assert(offsetof(relay_t, io) == 0, "polled_fd_t must be the first member");

enum { ST_RX, ST_RX_BYTES, ST_FWD, ST_FWD_BYTES, ST_DROPPED, ST_UNROUTED, ST_FOREIGN };

static uint32_t hash16(const uint8_t *g) {
  uint64_t a, b;
  memcpy(&a, g, 8);
  memcpy(&b, g + 8, 8);
  uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
  return (uint32_t)(h >> 32);
}

/* The slot of `group`, or of the empty slot where it would go. */
static uint32_t slot_of(relay_t *r, const uint8_t *group) {
  uint32_t i = hash16(group) & (r->cap - 1);
  while (r->table[i].mask != 0 && memcmp(r->table[i].group, group, 16) != 0) i = (i + 1) & (r->cap - 1);
  return i;
}

static route_t *find(relay_t *r, const uint8_t *group) {
  route_t *e = &r->table[slot_of(r, group)];
  return e->mask != 0 ? e : NULL;
}

/* Linear probing without tombstones: move later entries of the run back over the hole. */
static void remove_at(relay_t *r, uint32_t i) {
  uint32_t mask = r->cap - 1, j = i;
  r->table[i].mask = 0;
  for (;;) {
    j = (j + 1) & mask;
    if (r->table[j].mask == 0) return;
    uint32_t k = hash16(r->table[j].group) & mask;
    /* Entry j may fill hole i unless its home k lies cyclically in (i, j]. */
    if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
      r->table[i] = r->table[j];
      r->table[j].mask = 0;
      i = j;
    }
  }
}

static void send_down(relay_t *r, int d, unsigned n) {
  unsigned off = 0;
  while (off < n) {
    int s = sendmmsg(r->down_fd[d], &r->out[d][off], n - off, MSG_DONTWAIT);
    if (s < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        r->st[ST_DROPPED] += n - off;
        for (unsigned k = off; k < n; k++) r->out_route[d][k]->dropped += 1;
        return;
      }
      /* This datagram was refused (say ENETDOWN): count it and go on with the next. */
      r->st[ST_DROPPED] += 1;
      r->out_route[d][off]->dropped += 1;
      off++;
      continue;
    }
    for (unsigned k = off; k < off + (unsigned)s; k++) {
      r->st[ST_FWD] += 1;
      r->st[ST_FWD_BYTES] += r->out[d][k].msg_hdr.msg_iov->iov_len;
    }
    off += (unsigned)s;
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  relay_t *r = h->data;
  if (r->io.closing) return;
  if (status < 0) {
    uv_poll_stop(h);
    napi_handle_scope scope;
    napi_value argv[1];
    if (napi_open_handle_scope(r->io.env, &scope) != napi_ok) return;
    if (napi_create_uint32(r->io.env, 1, &argv[0]) == napi_ok) polled_call(&r->io, 1, argv);
    napi_close_handle_scope(r->io.env, scope);
    return;
  }
  if (!(events & UV_READABLE)) return;
  uint64_t now = uv_now(uv_handle_get_loop((uv_handle_t *)h));
  for (int call = 0; call < CALLS && !r->io.closing; call++) {
    for (int i = 0; i < SLOTS; i++) {
      r->msgs[i].msg_hdr.msg_control = r->ctrl[i];
      r->msgs[i].msg_hdr.msg_controllen = sizeof r->ctrl[i];
      r->msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(r->io.fd, r->msgs, SLOTS, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN: drained; anything else: the poll handle tells again */
    }
    unsigned nout[MAX_DOWN] = {0};
    for (int i = 0; i < n; i++) {
      struct msghdr *m = &r->msgs[i].msg_hdr;
      struct in6_pktinfo *pi = NULL;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
          pi = (struct in6_pktinfo *)CMSG_DATA(c);
        }
      }
      if (pi == NULL || (int)pi->ipi6_ifindex != r->up || (m->msg_flags & MSG_TRUNC) || pi->ipi6_addr.s6_addr[0] != 0xff) {
        r->st[ST_FOREIGN] += 1;
        continue;
      }
      route_t *e = find(r, pi->ipi6_addr.s6_addr);
      if (e == NULL) {
        r->st[ST_UNROUTED] += 1;
        continue;
      }
      uint32_t len = r->msgs[i].msg_len;
      r->st[ST_RX] += 1;
      r->st[ST_RX_BYTES] += len;
      e->datagrams += 1;
      e->bytes += len;
      e->last_ms = now;
      memset(&r->dst[i], 0, sizeof r->dst[i]);
      r->dst[i].sin6_family = AF_INET6;
      r->dst[i].sin6_port = htons(r->port);
      memcpy(&r->dst[i].sin6_addr, &pi->ipi6_addr, 16);
      r->siov[i].iov_base = r->iov[i].iov_base;
      r->siov[i].iov_len = len;
      for (int d = 0; d < r->ndown; d++) {
        if (!(e->mask & (1u << d))) continue;
        r->out_route[d][nout[d]] = e;
        struct mmsghdr *o = &r->out[d][nout[d]++];
        memset(o, 0, sizeof *o);
        o->msg_hdr.msg_name = &r->dst[i];
        o->msg_hdr.msg_namelen = sizeof r->dst[i];
        o->msg_hdr.msg_iov = &r->siov[i];
        o->msg_hdr.msg_iovlen = 1;
      }
    }
    for (int d = 0; d < r->ndown; d++) send_down(r, d, nout[d]);
    if (n < SLOTS) return;
  }
}

static const napi_type_tag RELAY_TAG = {0x6c637379ull << 32 | 0x6e637265ull, 0x6c61790000000001ull};

static void box_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static relay_t *get_relay(napi_env env, napi_value v) {
  napi_valuetype t;
  bool ok = false;
  relaybox_t *box = NULL;
  if (!(napi_typeof(env, v, &t) == napi_ok && t == napi_external && napi_check_object_type_tag(env, v, &RELAY_TAG, &ok) == napi_ok && ok &&
        napi_get_value_external(env, v, (void **)&box) == napi_ok && box != NULL)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "handle must be made by relayOpen");
    return NULL;
  }
  if (box->r == NULL) {
    napi_value err = errno_error(env, EBADF, "relay_fwd");
    if (err != NULL) napi_throw(env, err);
    return NULL;
  }
  return box->r;
}

static bool get_group(napi_env env, napi_value v, uint8_t **g) {
  size_t len;
  if (!get_bytes(env, v, "group", g, &len)) return false;
  if (len != 16 || (*g)[0] != 0xff) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "group must be 16 bytes of an IPv6 multicast address");
    return false;
  }
  return true;
}

static void close_downs(relay_t *r) {
  for (int d = 0; d < r->ndown; d++) {
    if (r->down_fd[d] >= 0) close(r->down_fd[d]);
    r->down_fd[d] = -1;
  }
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  int64_t up, port, rcvbuf, hops, maxg;
  napi_valuetype t;
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 7) THROW_TYPE(env, "relayOpen(upIfindex, port, rcvbuf, downIfindexes, hopLimit, maxGroups, onError) takes 7 arguments");
  if (!get_int(env, argv[0], "upIfindex", 1, INT32_MAX, &up)) return NULL;
  if (!get_int(env, argv[1], "port", 1, 65535, &port)) return NULL;
  if (!get_int(env, argv[2], "rcvbuf", 1, INT32_MAX, &rcvbuf)) return NULL;
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t ndown = 0;
  void *downs = NULL;
  if (napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[3], &tt, &ndown, &downs, NULL, NULL) != napi_ok || tt != napi_uint32_array) {
    THROW_TYPE(env, "downIfindexes must be a Uint32Array");
  }
  if (ndown < 1 || ndown > MAX_DOWN) THROW_RANGE(env, "downIfindexes must hold 1..8 interfaces");
  for (size_t d = 0; d < ndown; d++) {
    uint32_t x = ((uint32_t *)downs)[d];
    if (x == 0 || x > INT32_MAX || (int64_t)x == up) THROW_RANGE(env, "downIfindexes must be interfaces other than upstream");
  }
  if (!get_int(env, argv[4], "hopLimit", 1, 255, &hops)) return NULL;
  if (!get_int(env, argv[5], "maxGroups", 1, MAX_GROUPS, &maxg)) return NULL;
  if (napi_typeof(env, argv[6], &t) != napi_ok || t != napi_function) THROW_TYPE(env, "onError must be a function");
  CHECK(env, napi_get_uv_event_loop(env, &loop));

  uint32_t cap = 16;
  while (cap < 2 * (uint32_t)maxg) cap <<= 1;
  relay_t *r = calloc(1, sizeof *r);
  relaybox_t *box = calloc(1, sizeof *box);
  route_t *table = calloc(cap, sizeof *table);
  if (r == NULL || box == NULL || table == NULL) {
    free(r);
    free(box);
    free(table);
    return throw_errno(env, ENOMEM, "malloc");
  }
  r->table = table;
  r->cap = cap;
  r->max = (uint32_t)maxg;
  r->up = (int)up;
  r->port = (uint16_t)port;
  r->ndown = (int)ndown;
  for (int d = 0; d < MAX_DOWN; d++) r->down_fd[d] = -1;
  const char *step = "socket";
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  int one = 1, zero = 0, size = (int)rcvbuf, h = (int)hops;
  struct sockaddr_in6 any;
  memset(&any, 0, sizeof any);
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  any.sin6_port = htons((uint16_t)port);
  step = "setsockopt SO_REUSEADDR";
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
  /* With CAP_NET_ADMIN beyond net.core.rmem_max (a relay runs privileged anyway: it watches MLD): a relay
   * that the scheduler leaves out for a few ms must not drop what a whole subnet waits for. */
  step = "setsockopt SO_RCVBUF";
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) goto fail;
  step = "setsockopt IPV6_RECVPKTINFO";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0) goto fail;
  /* Only groups this socket joined (a kernel before 4.20 lacks the option: the route table filters anyway). */
  (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, &zero, sizeof zero);
  step = "bind";
  if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) goto fail;
  for (size_t d = 0; d < ndown; d++) {
    unsigned int oif = ((uint32_t *)downs)[d];
    struct sockaddr_in6 src;
    memset(&src, 0, sizeof src);
    src.sin6_family = AF_INET6;
    src.sin6_addr = in6addr_any;
    step = "socket";
    int s = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) goto fail;
    r->down_fd[d] = s;
    step = "bind";
    if (bind(s, (struct sockaddr *)&src, sizeof src) != 0) goto fail;
    step = "setsockopt IPV6_MULTICAST_IF";
    if (setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &oif, sizeof oif) != 0) goto fail;
    step = "setsockopt IPV6_MULTICAST_HOPS";
    if (setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &h, sizeof h) != 0) goto fail;
    step = "setsockopt IPV6_MULTICAST_LOOP";
    if (setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero, sizeof zero) != 0) goto fail;
  }
  for (int i = 0; i < SLOTS; i++) {
    r->iov[i].iov_base = r->scratch + (size_t)i * SLOT_BYTES;
    r->iov[i].iov_len = SLOT_BYTES;
    r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
    r->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  if (napi_create_external(env, box, box_finalize, NULL, &result) != napi_ok || napi_type_tag_object(env, result, &RELAY_TAG) != napi_ok) {
    errno = ENOMEM;
    step = "napi_create_external";
    box = NULL; /* owned by the external if it was made */
    goto fail;
  }
  /* polled_start closes fd and frees r on failure: the send sockets and the table go first. */
  {
    int downs_fd[MAX_DOWN];
    memcpy(downs_fd, r->down_fd, sizeof downs_fd);
    if (!polled_start(env, loop, &r->io, fd, argv[6], "lcsync:relay_fwd", "relay_fwd", on_readable)) {
      for (int d = 0; d < MAX_DOWN; d++)
        if (downs_fd[d] >= 0) close(downs_fd[d]);
      free(table);
      return NULL;
    }
  }
  box->r = r;
  return result;
fail: {
  int e = errno;
  if (fd >= 0) close(fd);
  close_downs(r);
  free(table);
  free(r);
  free(box);
  return throw_errno(env, e, step);
}
}

static napi_value js_route(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *g;
  int64_t mask;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) THROW_TYPE(env, "relayRoute(handle, group, mask) takes 3 arguments");
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL || !get_group(env, argv[1], &g)) return NULL;
  if (!get_int(env, argv[2], "mask", 0, (1 << r->ndown) - 1, &mask)) return NULL;
  uint32_t i = slot_of(r, g);
  route_t *e = &r->table[i];
  if (mask == 0) {
    if (e->mask != 0) {
      remove_at(r, i);
      r->count--;
    }
    return NULL;
  }
  if (e->mask == 0) {
    if (r->count >= r->max) THROW_RANGE(env, "relay_fwd: route table full");
    memset(e, 0, sizeof *e);
    memcpy(e->group, g, 16);
    e->last_ms = uv_now(uv_handle_get_loop((uv_handle_t *)&r->io.poll));
    r->count++;
  }
  e->mask = (uint32_t)mask;
  return NULL;
}

static napi_value membership(napi_env env, napi_callback_info info, int opt, const char *what) {
  size_t argc = 2;
  napi_value argv[2], idx;
  char msg[96];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) {
    snprintf(msg, sizeof msg, "%s(handle, group) takes 2 arguments", what);
    THROW_TYPE(env, msg);
  }
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL) return NULL;
  CHECK(env, napi_create_int32(env, r->up, &idx));
  return set_membership(env, r->io.fd, argv[1], idx, opt);
}

static napi_value js_join(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_JOIN_GROUP, "relayJoin");
}

static napi_value js_leave(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_LEAVE_GROUP, "relayLeave");
}

static bool get_out(napi_env env, napi_value v, size_t want, double **out) {
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t n = 0;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta || napi_get_typedarray_info(env, v, &tt, &n, &p, NULL, NULL) != napi_ok ||
      tt != napi_float64_array || n < want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", want == 7 ? "out must be a Float64Array of 7" : "out must be a Float64Array of 4");
    return false;
  }
  *out = p;
  return true;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  double *out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) THROW_TYPE(env, "relayStats(handle, out) takes 2 arguments");
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL || !get_out(env, argv[1], 7, &out)) return NULL;
  memcpy(out, r->st, sizeof r->st);
  return NULL;
}

static napi_value js_group_stats(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  uint8_t *g;
  double *out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) THROW_TYPE(env, "relayGroupStats(handle, group, out) takes 3 arguments");
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL || !get_group(env, argv[1], &g) || !get_out(env, argv[2], 4, &out)) return NULL;
  route_t *e = find(r, g);
  if (e != NULL) {
    uint64_t now = uv_now(uv_handle_get_loop((uv_handle_t *)&r->io.poll));
    out[0] = e->datagrams;
    out[1] = e->bytes;
    out[2] = (double)(now - e->last_ms);
    out[3] = e->dropped;
  }
  CHECK(env, napi_get_boolean(env, e != NULL, &result));
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "relayClose(handle) takes 1 argument");
  relay_t *r = get_relay(env, argv[0]);
  if (r == NULL) return NULL;
  relaybox_t *box;
  CHECK(env, napi_get_value_external(env, argv[0], (void **)&box));
  box->r = NULL;
  close_downs(r);
  free(r->table);
  r->table = NULL;
  /* r itself goes with its libuv handle (polled_free). */
  polled_close(env, &r->io);
  return NULL;
}

bool relay_fwd_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"relayOpen", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayRoute", NULL, js_route, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayJoin", NULL, js_join, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayLeave", NULL, js_leave, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayStats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayGroupStats", NULL, js_group_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relayClose", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
