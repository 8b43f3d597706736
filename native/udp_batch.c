/*
 * udp_batch: send many UDP datagrams to IPv6 multicast groups in one system call (sendmmsg).
 *
 * Why: node:dgram costs a DNS-lookup tick, a SendWrap and a completion callback per datagram,
 * which is most of the sender's CPU at 100k datagrams/s. This addon is the smallest thing that
 * removes it: one non-blocking socket, one synchronous call that hands the kernel a batch.
 * It is optional: src/core/net/batchsock.ts falls back to node:dgram when the addon is missing.
 * Part of the lcsync addon: native/addon.c calls udp_batch_init; this file owns the env's instance data.
 *
 * API (all arguments checked; bad input throws TypeError/RangeError, never crashes):
 *   open(ifindex, hopLimit, loopback) -> fd        non-blocking [::]:0 with the multicast options set
 *   sendBatch(fd, port, addrs, payloads) -> sent   addrs: 16 bytes per payload (IPv6 groups, ff00::/8)
 *       EAGAIN/ENOBUFS ends the batch early and returns how many went (the caller retries the rest);
 *       any other error throws an Error with .code ('ENETUNREACH', ...), .errno (negative, like
 *       Node's) and .syscall, after the datagrams before the failing one were sent (so the caller
 *       counts the failing one and goes on after it).
 *   close(fd)
 *   ifindex(name) -> index, 0 when this network namespace has no such interface
 *
 * Receive side (the same cost, per received datagram, in node:dgram: a 64 KiB libuv buffer, a new
 * ArrayBuffer, a Buffer and a JS callback each, and the GC of all of them):
 *   recvOpen(port, rcvbuf, onBatch) -> fd    non-blocking [::]:port, SO_REUSEADDR (receivers on one
 *       host share the port, like node:dgram's reuseAddr), SO_RCVBUF = rcvbuf (the kernel caps it).
 *       While open, a libuv poll handle watches the fd and keeps the event loop alive, as a bound
 *       dgram socket does. When readable, up to RECV_CALLS recvmmsg calls of up to RECV_SLOTS
 *       datagrams each; after each call
 *         onBatch(buf, lengths, count, errors)
 *       buf (a fresh Buffer, never reused, so listeners may keep views into it) holds the `count`
 *       datagrams back to back, lengths (Uint32Array) their sizes; `errors` counts what was lost
 *       since the last call: datagrams longer than RECV_SLOT_BYTES (MSG_TRUNC: cut, so dropped,
 *       never delivered) and failed recvmmsg calls. An exception thrown by onBatch becomes an
 *       uncaught exception (napi_fatal_exception), as one thrown by a dgram 'message' listener
 *       does; the rest of that wakeup's datagrams stay in the kernel for the next one.
 *   recvBufferSize(fd) -> bytes              SO_RCVBUF as granted (Linux reports twice the request)
 *   recvJoin(fd, group, ifindex), recvLeave(fd, group, ifindex)   IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP;
 *       group: 16 bytes of an IPv6 multicast address; system errors thrown like sendBatch's.
 *   recvClose(fd)                            stops the poll handle and closes the socket; the
 *       handle's memory is freed in its libuv close callback. The fd is no longer known after it.
 *
 * Only fds that this addon opened (in this JS environment) are accepted by sendBatch and close
 * (send sockets) or by the recv* functions (receive sockets), so a stale or wrong number can never
 * write to, read from or close a file Node owns.
 */
#include "napi_util.h"
#include "addon.h"

#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "blake3_napi.h"

/* sendmmsg takes at most UIO_MAXIEV (1024) messages; 64 keeps the stack arrays small. */
#define CHUNK 64
/* Largest UDP payload over IPv6 without jumbograms as node:dgram allows it (65535 - 8 - 20). */
#define MAX_PAYLOAD 65507
/* One call never takes more than this many datagrams: bounds the iovec allocation. */
#define MAX_BATCH 65536
#define MAX_OPEN 1024

/* Receive: datagrams per recvmmsg call, bytes per datagram (lcsync's are at most 1416; a longer
 * one is cut and counted as an error), recvmmsg calls per wakeup (then the loop turns again). */
#define RECV_SLOTS 64
#define RECV_SLOT_BYTES 2048
#define RECV_CALLS 16

typedef struct receiver receiver_t;

typedef struct {
  int fds[MAX_OPEN];
  int count;
  /* Open receivers, for lookup by fd only: teardown frees them through their own cleanup hooks. */
  receiver_t *rx[MAX_OPEN];
  int rx_count;
} instance_t;

struct receiver {
  polled_fd_t io; /* first: the poll handle's data and the close callbacks' free() point here */
  /* Losses not yet reported to onBatch. */
  uint32_t errors;
  struct mmsghdr msgs[RECV_SLOTS];
  struct iovec iov[RECV_SLOTS];
  /* The kernel writes here; each batch is then copied, packed, into a fresh Buffer of its own size,
   * so a listener that keeps one datagram keeps only the bytes of its batch, not 64 slots. */
  uint8_t scratch[RECV_SLOTS * RECV_SLOT_BYTES];
};
_Static_assert(offsetof(receiver_t, io) == 0, "polled_fd_t must be the first member");

static instance_t *instance(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (instance_t *)data;
}

static int find_fd(instance_t *in, int fd) {
  for (int i = 0; in != NULL && i < in->count; i++)
    if (in->fds[i] == fd) return i;
  return -1;
}

bool udp_batch_owns_fd(napi_env env, int fd) {
  return find_fd(instance(env), fd) >= 0;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  int64_t ifindex, hops;
  bool loop;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) THROW_TYPE(env, "open(ifindex, hopLimit, loopback) takes 3 arguments");
  if (!get_int(env, argv[0], "ifindex", 1, INT32_MAX, &ifindex)) return NULL;
  if (!get_int(env, argv[1], "hopLimit", 1, 255, &hops)) return NULL;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_boolean) THROW_TYPE(env, "loopback must be a boolean");
  CHECK(env, napi_get_value_bool(env, argv[2], &loop));
  instance_t *in = instance(env);
  if (in == NULL) THROW_RANGE(env, "udp_batch: no instance data");
  if (in->count >= MAX_OPEN) THROW_RANGE(env, "udp_batch: too many sockets open");

  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  struct sockaddr_in6 any;
  memset(&any, 0, sizeof any);
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  unsigned int oif = (unsigned int)ifindex;
  int h = (int)hops, l = loop ? 1 : 0;
  const char *step = "bind";
  if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) goto fail;
  step = "setsockopt IPV6_MULTICAST_IF";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &oif, sizeof oif) != 0) goto fail;
  step = "setsockopt IPV6_MULTICAST_HOPS";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &h, sizeof h) != 0) goto fail;
  step = "setsockopt IPV6_MULTICAST_LOOP";
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &l, sizeof l) != 0) goto fail;
  in->fds[in->count++] = fd;
  CHECK(env, napi_create_int32(env, fd, &result));
  return result;
fail: {
  int e = errno;
  close(fd);
  return throw_errno(env, e, step);
}
}

static napi_value js_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  int64_t fd, port;
  uint8_t *addrs;
  size_t addrs_len;
  bool is_array = false;
  uint32_t n = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) THROW_TYPE(env, "sendBatch(fd, port, addrs, payloads) takes 4 arguments");
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  if (!get_int(env, argv[1], "port", 1, 65535, &port)) return NULL;
  if (!get_bytes(env, argv[2], "addrs", &addrs, &addrs_len)) return NULL;
  if (napi_is_array(env, argv[3], &is_array) != napi_ok || !is_array) THROW_TYPE(env, "payloads must be an array of Buffers");
  CHECK(env, napi_get_array_length(env, argv[3], &n));
  if (n > MAX_BATCH) THROW_RANGE(env, "payloads: more than 65536 datagrams in one batch");
  if (addrs_len != (size_t)n * 16) THROW_RANGE(env, "addrs must hold 16 bytes per payload");
  if (find_fd(instance(env), (int)fd) < 0) THROW_RANGE(env, "fd is not a socket opened by udp_batch.open");
  if (n == 0) {
    CHECK(env, napi_create_uint32(env, 0, &result));
    return result;
  }

  /* Check every payload before sending any, so bad input never leaves a batch half sent. The
   * pointers stay valid: no JS runs during this call, so nothing can detach or free them. */
  struct iovec *iov = malloc((size_t)n * sizeof *iov);
  if (iov == NULL) return throw_errno(env, ENOMEM, "malloc");
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    uint8_t *p;
    size_t len;
    char what[48];
    snprintf(what, sizeof what, "payloads[%u]", i);
    if (napi_get_element(env, argv[3], i, &el) != napi_ok || !get_bytes(env, el, what, &p, &len)) {
      free(iov);
      return NULL;
    }
    if (len < 1 || len > MAX_PAYLOAD) {
      char msg[96];
      free(iov);
      snprintf(msg, sizeof msg, "%s must be 1..%d bytes, not %zu", what, MAX_PAYLOAD, len);
      THROW_RANGE(env, msg);
    }
    /* Multicast only: this socket exists to send to groups, and a stray unicast is a bug. */
    if (addrs[(size_t)i * 16] != 0xff) {
      char msg[96];
      free(iov);
      snprintf(msg, sizeof msg, "addrs[%u] is not an IPv6 multicast address", i);
      THROW_RANGE(env, msg);
    }
    iov[i].iov_base = p;
    iov[i].iov_len = len;
  }

  struct mmsghdr msgs[CHUNK];
  struct sockaddr_in6 dst[CHUNK];
  uint32_t sent = 0;
  int err = 0;
  while (sent < n) {
    unsigned int m = n - sent < CHUNK ? n - sent : CHUNK;
    memset(msgs, 0, m * sizeof msgs[0]);
    for (unsigned int j = 0; j < m; j++) {
      memset(&dst[j], 0, sizeof dst[j]);
      dst[j].sin6_family = AF_INET6;
      dst[j].sin6_port = htons((uint16_t)port);
      memcpy(&dst[j].sin6_addr, addrs + (size_t)(sent + j) * 16, 16);
      msgs[j].msg_hdr.msg_name = &dst[j];
      msgs[j].msg_hdr.msg_namelen = sizeof dst[j];
      msgs[j].msg_hdr.msg_iov = &iov[sent + j];
      msgs[j].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg((int)fd, msgs, m, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    sent += (uint32_t)r;
    /* Fewer than asked: the kernel stopped at a full buffer or an error; the next call says which. */
  }
  free(iov);
  if (err != 0 && err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS) {
    if (sent == 0) return throw_errno(env, err, "sendmmsg");
    /* Report what went; the caller's next call (starting at the failing datagram) throws. */
  }
  CHECK(env, napi_create_uint32(env, sent, &result));
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t fd;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "close(fd) takes 1 argument");
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  instance_t *in = instance(env);
  int i = find_fd(in, (int)fd);
  if (i < 0) THROW_RANGE(env, "fd is not a socket opened by udp_batch.open");
  in->fds[i] = in->fds[--in->count];
  /* Linux releases the descriptor even when close reports an error, so there is nothing to retry. */
  close((int)fd);
  return NULL;
}

static napi_value js_ifindex(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_valuetype t;
  char name[IF_NAMESIZE + 1];
  size_t len = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "ifindex(name) takes 1 argument");
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) THROW_TYPE(env, "name must be a string");
  /* A name that does not fit is no interface; the buffer is one longer so that is detectable. */
  CHECK(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  unsigned int idx = (len == 0 || len >= IF_NAMESIZE || strlen(name) != len) ? 0 : if_nametoindex(name);
  CHECK(env, napi_create_uint32(env, idx, &result));
  return result;
}


/* ------------------------------------------------------------------------------------------ */
/* Receive                                                                                      */

static int find_rx(instance_t *in, int fd) {
  for (int i = 0; in != NULL && i < in->rx_count; i++)
    if (in->rx[i]->io.fd == fd) return i;
  return -1;
}

/* Hand one batch (maybe empty, when only errors are to be reported) to onBatch. Returns false when
 * the wakeup must end: the callback threw or JS cannot run. */
static bool rx_deliver(receiver_t *r, unsigned int count) {
  napi_env env = r->io.env;
  napi_handle_scope scope;
  napi_value argv[4], ab;
  void *data = NULL, *lens = NULL;
  size_t total = 0;
  bool ok = false;
  for (unsigned int i = 0; i < count; i++) total += r->msgs[i].msg_len;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  if (napi_create_buffer(env, total, &data, &argv[0]) != napi_ok) goto out;
  if (napi_create_arraybuffer(env, (size_t)count * 4, &lens, &ab) != napi_ok) goto out;
  if (napi_create_typedarray(env, napi_uint32_array, count, ab, 0, &argv[1]) != napi_ok) goto out;
  {
    uint8_t *dst = data;
    uint32_t *l = lens;
    for (unsigned int i = 0; i < count; i++) {
      uint32_t n = r->msgs[i].msg_len;
      memcpy(dst, r->scratch + (size_t)i * RECV_SLOT_BYTES, n);
      dst += n;
      l[i] = n;
    }
  }
  if (napi_create_uint32(env, count, &argv[2]) != napi_ok) goto out;
  if (napi_create_uint32(env, r->errors, &argv[3]) != napi_ok) goto out;
  r->errors = 0;
  ok = polled_call(&r->io, 4, argv);
out:
  napi_close_handle_scope(env, scope);
  return ok;
}

static void rx_on_readable(uv_poll_t *h, int status, int events) {
  receiver_t *r = h->data;
  if (r->io.closing) return;
  if (status < 0) {
    /* The fd cannot be polled (it never happens to an open UDP socket): stop rather than spin. */
    uv_poll_stop(h);
    r->errors++;
    rx_deliver(r, 0);
    return;
  }
  if (!(events & UV_READABLE)) return;
  for (int call = 0; call < RECV_CALLS && !r->io.closing; call++) {
    int n = recvmmsg(r->io.fd, r->msgs, RECV_SLOTS, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        r->errors++;
        rx_deliver(r, 0);
      }
      return;
    }
    /* Pack the datagrams that arrived whole to the front of msgs/scratch; count the cut ones. */
    unsigned int kept = 0;
    for (int i = 0; i < n; i++) {
      if (r->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        r->errors++;
        continue;
      }
      if (kept != (unsigned int)i) {
        memmove(r->scratch + (size_t)kept * RECV_SLOT_BYTES, r->scratch + (size_t)i * RECV_SLOT_BYTES, r->msgs[i].msg_len);
        r->msgs[kept].msg_len = r->msgs[i].msg_len;
      }
      kept++;
    }
    if ((kept > 0 || r->errors > 0) && !rx_deliver(r, kept)) return;
    /* Fewer than asked: the queue is empty now; the poll handle says when more comes. */
    if (n < RECV_SLOTS) return;
  }
}

static napi_value js_recv_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  int64_t port, rcvbuf;
  napi_valuetype t;
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) THROW_TYPE(env, "recvOpen(port, rcvbuf, onBatch) takes 3 arguments");
  if (!get_int(env, argv[0], "port", 1, 65535, &port)) return NULL;
  if (!get_int(env, argv[1], "rcvbuf", 1, INT32_MAX, &rcvbuf)) return NULL;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) THROW_TYPE(env, "onBatch must be a function");
  instance_t *in = instance(env);
  if (in == NULL) THROW_RANGE(env, "udp_batch: no instance data");
  if (in->rx_count >= MAX_OPEN) THROW_RANGE(env, "udp_batch: too many receivers open");
  CHECK(env, napi_get_uv_event_loop(env, &loop));

  receiver_t *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, ENOMEM, "malloc");
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    free(r);
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

  for (int i = 0; i < RECV_SLOTS; i++) {
    r->iov[i].iov_base = r->scratch + (size_t)i * RECV_SLOT_BYTES;
    r->iov[i].iov_len = RECV_SLOT_BYTES;
    r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
    r->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  if (!polled_start(env, loop, &r->io, fd, argv[2], "lcsync:udp_batch.recv", "udp_batch", rx_on_readable)) return NULL;
  in->rx[in->rx_count++] = r;
  CHECK(env, napi_create_int32(env, fd, &result));
  return result;
fail: {
  int e = errno;
  close(fd);
  free(r);
  return throw_errno(env, e, step);
}
}

/* The receiver named by argv[0]; NULL after throwing. */
static receiver_t *get_rx(napi_env env, napi_value v, int *index) {
  int64_t fd;
  if (!get_int(env, v, "fd", 0, INT32_MAX, &fd)) return NULL;
  instance_t *in = instance(env);
  int i = find_rx(in, (int)fd);
  if (i < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd is not a receiver opened by udp_batch.recvOpen");
    return NULL;
  }
  if (index) *index = i;
  return in->rx[i];
}

static napi_value js_recv_buffer_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "recvBufferSize(fd) takes 1 argument");
  receiver_t *r = get_rx(env, argv[0], NULL);
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
    snprintf(msg, sizeof msg, "%s(fd, group, ifindex) takes 3 arguments", what);
    THROW_TYPE(env, msg);
  }
  receiver_t *r = get_rx(env, argv[0], NULL);
  if (r == NULL) return NULL;
  return set_membership(env, r->io.fd, argv[1], argv[2], opt);
}

static napi_value js_recv_join(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_JOIN_GROUP, "recvJoin");
}

static napi_value js_recv_leave(napi_env env, napi_callback_info info) {
  return membership(env, info, IPV6_LEAVE_GROUP, "recvLeave");
}

static napi_value js_recv_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int i;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) THROW_TYPE(env, "recvClose(fd) takes 1 argument");
  receiver_t *r = get_rx(env, argv[0], &i);
  if (r == NULL) return NULL;
  instance_t *in = instance(env);
  in->rx[i] = in->rx[--in->rx_count];
  /* May run inside onBatch: rx_on_readable sees `closing` and stops; r lives until polled_free. */
  polled_close(env, &r->io);
  return NULL;
}

static void free_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *in = data;
  for (int i = 0; i < in->count; i++) close(in->fds[i]);
  free(in);
}

bool udp_batch_init(napi_env env, napi_value exports) {
  instance_t *in = calloc(1, sizeof *in);
  if (in == NULL) {
    napi_throw_error(env, NULL, "udp_batch: out of memory");
    return false;
  }
  if (napi_set_instance_data(env, in, free_instance, NULL) != napi_ok) {
    free(in);
    napi_throw_error(env, NULL, "udp_batch: cannot set instance data");
    return false;
  }
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, js_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ifindex", NULL, js_ifindex, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvOpen", NULL, js_recv_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvBufferSize", NULL, js_recv_buffer_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvJoin", NULL, js_recv_join, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvLeave", NULL, js_recv_leave, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvClose", NULL, js_recv_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
