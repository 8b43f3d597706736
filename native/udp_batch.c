/*
 * udp_batch: send many UDP datagrams to IPv6 multicast groups in one system call (sendmmsg).
 *
 * Why: node:dgram costs a DNS-lookup tick, a SendWrap and a completion callback per datagram,
 * which is most of the sender's CPU at 100k datagrams/s. This addon is the smallest thing that
 * removes it: one non-blocking socket, one synchronous call that hands the kernel a batch.
 * It is optional: src/core/batchsock.ts falls back to node:dgram when it is not built.
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
 * Only fds that this addon opened (in this JS environment) are accepted by sendBatch and close,
 * so a stale or wrong number can never write to or close a file Node owns.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* sendmmsg takes at most UIO_MAXIEV (1024) messages; 64 keeps the stack arrays small. */
#define CHUNK 64
/* Largest UDP payload over IPv6 without jumbograms as node:dgram allows it (65535 - 8 - 20). */
#define MAX_PAYLOAD 65507
/* One call never takes more than this many datagrams: bounds the iovec allocation. */
#define MAX_BATCH 65536
#define MAX_OPEN 1024

typedef struct {
  int fds[MAX_OPEN];
  int count;
} instance_t;

/* Throw and return NULL from the calling N-API function. */
#define THROW_TYPE(env, msg) \
  do {                       \
    napi_throw_type_error((env), "ERR_INVALID_ARG_TYPE", (msg)); \
    return NULL;             \
  } while (0)
#define THROW_RANGE(env, msg) \
  do {                        \
    napi_throw_range_error((env), "ERR_OUT_OF_RANGE", (msg)); \
    return NULL;              \
  } while (0)
/* An N-API call failed: an exception is pending or the engine is in trouble; give up. */
#define CHECK(env, call)                                          \
  do {                                                            \
    if ((call) != napi_ok) {                                      \
      bool pending = false;                                       \
      napi_is_exception_pending((env), &pending);                 \
      if (!pending) napi_throw_error((env), NULL, "udp_batch: N-API call failed: " #call); \
      return NULL;                                                \
    }                                                             \
  } while (0)

static const char *errno_name(int e) {
  switch (e) {
    case EAGAIN: return "EAGAIN";
    case ENOBUFS: return "ENOBUFS";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETDOWN: return "ENETDOWN";
    case EMSGSIZE: return "EMSGSIZE";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case ENOTSOCK: return "ENOTSOCK";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOSYS: return "ENOSYS";
    default: return "EIO";
  }
}

/* Throw an Error like Node's system errors: message "syscall CODE (text)", .code, .errno, .syscall. */
static napi_value throw_errno(napi_env env, int e, const char *syscall) {
  char msg[160];
  napi_value code, text, err, num, sc;
  const char *name = errno_name(e);
  snprintf(msg, sizeof msg, "%s %s (%s)", syscall, name, strerror(e));
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_create_error(env, code, text, &err) != napi_ok) {
    napi_throw_error(env, name, msg);
    return NULL;
  }
  if (napi_create_int32(env, -e, &num) == napi_ok) napi_set_named_property(env, err, "errno", num);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc) == napi_ok) napi_set_named_property(env, err, "syscall", sc);
  napi_throw(env, err);
  return NULL;
}

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

/* An integer argument within [lo, hi]; returns false after throwing. */
static bool get_int(napi_env env, napi_value v, const char *what, int64_t lo, int64_t hi, int64_t *out) {
  napi_valuetype t;
  double d;
  char msg[128];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "%s must be an integer in %lld..%lld", what, (long long)lo, (long long)hi);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

/* A Uint8Array (Buffer) argument; returns false after throwing. */
static bool get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is = false;
  napi_typedarray_type type;
  void *p = NULL;
  char msg[128];
  if (napi_is_typedarray(env, v, &is) == napi_ok && is &&
      napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) == napi_ok && type == napi_uint8_array) {
    /* An empty view may have no backing store; nothing is read from it then. */
    *data = (uint8_t *)p;
    return true;
  }
  snprintf(msg, sizeof msg, "%s must be a Buffer or Uint8Array", what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
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

static void free_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *in = data;
  for (int i = 0; i < in->count; i++) close(in->fds[i]);
  free(in);
}

static napi_value init(napi_env env, napi_value exports) {
  instance_t *in = calloc(1, sizeof *in);
  if (in == NULL) {
    napi_throw_error(env, NULL, "udp_batch: out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, in, free_instance, NULL) != napi_ok) {
    free(in);
    napi_throw_error(env, NULL, "udp_batch: cannot set instance data");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, js_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ifindex", NULL, js_ifindex, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
