/*
 * icmp6: raw ICMPv6 sockets that see MLD reports and send MLD queries (src/core/net/mldsocket.ts).
 *
 * Why here: MLD messages are ICMPv6, which node:dgram cannot open; a raw socket needs C. Keeping it in
 * our own addon beside udp_batch.c leaves lcsync with one native dependency, built or prebuilt once.
 *
 * API (all arguments checked; bad input throws TypeError/RangeError, system errors throw an Error with
 * .code, .errno and .syscall like Node's):
 *   icmp6Open(ifname, groups, types, onMessage) -> fd
 *       socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6), non-blocking; needs CAP_NET_RAW (EPERM without).
 *       - SO_BINDTODEVICE ifname: only this interface's messages, and sends leave by it;
 *       - ICMP6_FILTER passes only the ICMPv6 types in `types` (Uint8Array, 1..256 of them);
 *       - IPV6_RECVPKTINFO: each message says which interface it came in on;
 *       - multicast out of ifname with hop limit 1 (MLD is link-local by definition, RFC 3810 5);
 *       - IPV6_HOPOPTS: a hop-by-hop header with a router alert (value 0, MLD) on everything sent, as
 *         RFC 3810 section 5 requires of MLD messages;
 *       - joins every group in `groups` (16 bytes each, ff00::/8, at most MAX_GROUPS) on ifname: without a
 *         membership the stack drops multicast (ff02::16 reports) before any socket sees it.
 *       While open, a libuv poll handle watches the fd and keeps the event loop alive. For each message
 *         onMessage(null, buf, source, ifindex)
 *       buf: the ICMPv6 message (a fresh Buffer; the kernel strips the IPv6 header), source: the sender's
 *       address as text, ifindex: the interface it arrived on. A receive that fails calls
 *       onMessage(err) once and stops receiving; the socket stays open until icmp6Close. An exception
 *       thrown by onMessage becomes an uncaught exception, as one from a dgram 'message' listener does.
 *   icmp6MrouteInit(fd)
 *       MRT6_INIT: make this the namespace's multicast-routing socket, so the kernel hands it every MLD
 *       message with a router alert whatever group it is sent to (MLDv1 reports). Nothing is routed.
 *       EADDRINUSE when another socket holds the role; EOPNOTSUPP/ENOPROTOOPT without IPv6 mroute.
 *   icmp6Send(fd, dest, payload) -> bytes
 *       sendto dest (16 bytes, multicast) on the socket's interface; payload is the ICMPv6 message
 *       (4..MAX_SEND bytes), whose checksum the kernel fills in. Never blocks: EAGAIN throws.
 *   icmp6Close(fd)
 *       stops the poll handle and closes the socket (and with it any MRT6_INIT role and memberships).
 *
 * Only fds this file opened (in this JS environment) are accepted, so a stale or wrong number can
 * never touch a file Node owns.
 */
#include "napi_util.h"
#include "addon.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#ifndef MRT6_INIT
#define MRT6_INIT 200 /* linux/mroute6.h: MRT6_BASE */
#endif

#define MAX_OPEN 256
#define MAX_GROUPS 16
/* The largest IPv6 payload; a message cannot be longer, so none is ever cut. */
#define MAX_MESSAGE 65535
/* 1280 (the IPv6 minimum MTU) - 40 (IPv6 header) - 8 (hop-by-hop header): never fragmented. */
#define MAX_SEND 1232
/* Messages read per wakeup before the loop turns again. */
#define RECV_PER_WAKEUP 64

typedef struct raw raw_t;

typedef struct {
  raw_t *open[MAX_OPEN];
  int count;
} icmp6_state_t;

struct raw {
  polled_fd_t io; /* first: the poll handle's data and the close callbacks' free() point here */
  unsigned int ifindex;
  uint8_t buf[MAX_MESSAGE];
};
_Static_assert(offsetof(raw_t, io) == 0, "polled_fd_t must be the first member");

/* Hop-by-hop options header: next header (the kernel fills it), length 0 (8 bytes in all), router alert
 * (type 5, length 2, value 0 = MLD), then PadN of 0 bytes to fill the 8. */
static const uint8_t ROUTER_ALERT_HOPOPTS[8] = {0, 0, 5, 2, 0, 0, 1, 0};

static icmp6_state_t *state_of(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, NULL, &data) != napi_ok) return NULL;
  return data;
}

static int find_raw(icmp6_state_t *st, int fd) {
  for (int i = 0; st != NULL && i < st->count; i++)
    if (st->open[i]->io.fd == fd) return i;
  return -1;
}

/* The raw socket named by v; NULL after throwing. */
static raw_t *get_raw(napi_env env, icmp6_state_t *st, napi_value v, int *index) {
  int64_t fd;
  if (!get_int(env, v, "fd", 0, INT32_MAX, &fd)) return NULL;
  int i = find_raw(st, (int)fd);
  if (i < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd is not a socket opened by icmp6Open");
    return NULL;
  }
  if (index) *index = i;
  return st->open[i];
}

static bool raw_deliver(raw_t *r, size_t len, const char *source, unsigned int ifindex) {
  napi_env env = r->io.env;
  napi_handle_scope scope;
  napi_value argv[4];
  void *data = NULL;
  bool ok = false;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  if (napi_get_null(env, &argv[0]) == napi_ok && napi_create_buffer_copy(env, len, r->buf, &data, &argv[1]) == napi_ok &&
      napi_create_string_utf8(env, source, NAPI_AUTO_LENGTH, &argv[2]) == napi_ok &&
      napi_create_uint32(env, ifindex, &argv[3]) == napi_ok) {
    ok = polled_call(&r->io, 4, argv);
  }
  napi_close_handle_scope(env, scope);
  return ok;
}

static void raw_deliver_error(raw_t *r, int e, const char *syscall) {
  napi_env env = r->io.env;
  napi_handle_scope scope;
  napi_value argv[1];
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  argv[0] = errno_error(env, e, syscall);
  if (argv[0] != NULL) polled_call(&r->io, 1, argv);
  napi_close_handle_scope(env, scope);
}

static void raw_on_readable(uv_poll_t *h, int status, int events) {
  raw_t *r = h->data;
  if (r->io.closing) return;
  if (status < 0) {
    uv_poll_stop(h);
    raw_deliver_error(r, -status, "uv_poll");
    return;
  }
  if (!(events & UV_READABLE)) return;
  for (int i = 0; i < RECV_PER_WAKEUP && !r->io.closing; i++) {
    struct sockaddr_in6 from;
    union {
      char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
      struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = r->buf, .iov_len = sizeof r->buf};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    memset(&from, 0, sizeof from);
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control.buf;
    m.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(r->io.fd, &m, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      int e = errno;
      uv_poll_stop(h);
      raw_deliver_error(r, e, "recvmsg");
      return;
    }
    if ((m.msg_flags & MSG_TRUNC) || from.sin6_family != AF_INET6) continue;
    unsigned int ifindex = r->ifindex;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        ifindex = pi.ipi6_ifindex;
      }
    }
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, &from.sin6_addr, text, sizeof text) == NULL) continue;
    if (!raw_deliver(r, (size_t)n, text, ifindex)) return;
  }
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  napi_valuetype t;
  char ifname[IF_NAMESIZE + 1];
  size_t nlen = 0;
  uint8_t *groups, *types;
  size_t glen, tlen;
  uv_loop_t *loop = NULL;
  icmp6_state_t *st = state_of(env, info, &argc, argv);
  if (st == NULL) THROW_RANGE(env, "icmp6: no state");
  if (argc != 4) THROW_TYPE(env, "icmp6Open(ifname, groups, types, onMessage) takes 4 arguments");
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) THROW_TYPE(env, "ifname must be a string");
  CHECK(env, napi_get_value_string_utf8(env, argv[0], ifname, sizeof ifname, &nlen));
  if (nlen == 0 || nlen >= IF_NAMESIZE || strlen(ifname) != nlen) THROW_RANGE(env, "ifname must be 1..15 bytes without NUL");
  if (!get_bytes(env, argv[1], "groups", &groups, &glen)) return NULL;
  if (glen % 16 != 0 || glen / 16 > MAX_GROUPS) THROW_RANGE(env, "groups must hold 16 bytes per group, at most 16 groups");
  for (size_t i = 0; i < glen; i += 16)
    if (groups[i] != 0xff) THROW_RANGE(env, "groups must be IPv6 multicast addresses");
  if (!get_bytes(env, argv[2], "types", &types, &tlen)) return NULL;
  if (tlen < 1 || tlen > 256) THROW_RANGE(env, "types must hold 1..256 ICMPv6 types");
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) THROW_TYPE(env, "onMessage must be a function");
  if (st->count >= MAX_OPEN) THROW_RANGE(env, "icmp6: too many sockets open");
  CHECK(env, napi_get_uv_event_loop(env, &loop));

  int fd = socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return throw_errno(env, errno, "socket");
  raw_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    close(fd);
    return throw_errno(env, ENOMEM, "malloc");
  }
  struct icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  for (size_t i = 0; i < tlen; i++) ICMP6_FILTER_SETPASS(types[i], &filter);
  int one = 1, hops = 1;
  const char *step = "setsockopt SO_BINDTODEVICE";
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)nlen + 1) != 0) goto fail;
  unsigned int ifindex = if_nametoindex(ifname);
  step = "if_nametoindex";
  if (ifindex == 0) {
    errno = ENODEV;
    goto fail;
  }
  step = "setsockopt ICMP6_FILTER";
  if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) != 0) goto fail;
  step = "setsockopt IPV6_RECVPKTINFO";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0) goto fail;
  step = "setsockopt IPV6_MULTICAST_IF";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) != 0) goto fail;
  step = "setsockopt IPV6_MULTICAST_HOPS";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) != 0) goto fail;
  step = "setsockopt IPV6_HOPOPTS";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_HOPOPTS, ROUTER_ALERT_HOPOPTS, sizeof ROUTER_ALERT_HOPOPTS) != 0) goto fail;
  step = "setsockopt IPV6_JOIN_GROUP";
  for (size_t i = 0; i < glen; i += 16) {
    struct ipv6_mreq mreq;
    memset(&mreq, 0, sizeof mreq);
    memcpy(&mreq.ipv6mr_multiaddr, groups + i, 16);
    mreq.ipv6mr_interface = ifindex;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof mreq) != 0) goto fail;
  }

  r->ifindex = ifindex;
  if (!polled_start(env, loop, &r->io, fd, argv[3], "lcsync:icmp6.recv", "icmp6", raw_on_readable)) return NULL;
  st->open[st->count++] = r;
  CHECK(env, napi_create_int32(env, fd, &result));
  return result;
fail: {
  int e = errno;
  close(fd);
  free(r);
  return throw_errno(env, e, step);
}
}

static napi_value js_mroute_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  icmp6_state_t *st = state_of(env, info, &argc, argv);
  if (argc != 1) THROW_TYPE(env, "icmp6MrouteInit(fd) takes 1 argument");
  raw_t *r = get_raw(env, st, argv[0], NULL);
  if (r == NULL) return NULL;
  int one = 1;
  if (setsockopt(r->io.fd, IPPROTO_IPV6, MRT6_INIT, &one, sizeof one) != 0) return throw_errno(env, errno, "setsockopt MRT6_INIT");
  return NULL;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  uint8_t *dest, *payload;
  size_t dlen, plen;
  icmp6_state_t *st = state_of(env, info, &argc, argv);
  if (argc != 3) THROW_TYPE(env, "icmp6Send(fd, dest, payload) takes 3 arguments");
  raw_t *r = get_raw(env, st, argv[0], NULL);
  if (r == NULL) return NULL;
  if (!get_bytes(env, argv[1], "dest", &dest, &dlen)) return NULL;
  if (dlen != 16 || dest[0] != 0xff) THROW_RANGE(env, "dest must be 16 bytes of an IPv6 multicast address");
  if (!get_bytes(env, argv[2], "payload", &payload, &plen)) return NULL;
  if (plen < 4 || plen > MAX_SEND) THROW_RANGE(env, "payload must be 4..1232 bytes (an ICMPv6 message)");
  struct sockaddr_in6 dst;
  memset(&dst, 0, sizeof dst);
  dst.sin6_family = AF_INET6;
  memcpy(&dst.sin6_addr, dest, 16);
  dst.sin6_scope_id = r->ifindex;
  ssize_t n;
  do {
    n = sendto(r->io.fd, payload, plen, MSG_DONTWAIT, (struct sockaddr *)&dst, sizeof dst);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "sendto");
  CHECK(env, napi_create_uint32(env, (uint32_t)n, &result));
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int i;
  icmp6_state_t *st = state_of(env, info, &argc, argv);
  if (argc != 1) THROW_TYPE(env, "icmp6Close(fd) takes 1 argument");
  raw_t *r = get_raw(env, st, argv[0], &i);
  if (r == NULL) return NULL;
  st->open[i] = st->open[--st->count];
  /* May run inside onMessage: raw_on_readable sees `closing` and stops; r lives until polled_free. */
  polled_close(env, &r->io);
  return NULL;
}

/* The sockets themselves are closed by their own cleanup hooks; this frees only the table. */
static void free_state(void *arg) {
  free(arg);
}

bool icmp6_init(napi_env env, napi_value exports) {
  icmp6_state_t *st = calloc(1, sizeof *st);
  if (st == NULL) {
    napi_throw_error(env, NULL, "icmp6: out of memory");
    return false;
  }
  if (napi_add_env_cleanup_hook(env, free_state, st) != napi_ok) {
    free(st);
    napi_throw_error(env, NULL, "icmp6: cannot add a cleanup hook");
    return false;
  }
  napi_property_descriptor props[] = {
      {"icmp6Open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, st},
      {"icmp6MrouteInit", NULL, js_mroute_init, NULL, NULL, NULL, napi_enumerable, st},
      {"icmp6Send", NULL, js_send, NULL, NULL, NULL, napi_enumerable, st},
      {"icmp6Close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, st},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
