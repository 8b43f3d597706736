#ifndef LCSYNC_NAPI_UTIL_H
#define LCSYNC_NAPI_UTIL_H
/*
 * Helpers shared by the C files of the lcsync addon (udp_batch.c, icmp6.c, ...): argument checks that
 * throw TypeError/RangeError, system errors thrown the way Node throws them (.code, .errno, .syscall), and
 * a socket watched for reads on the libuv loop with its JS callback (polled_fd_t).
 * Static inline so that each file that includes this gets its own copy and no symbol is exported.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

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
      if (!pending) napi_throw_error((env), NULL, "lcsync addon: N-API call failed: " #call); \
      return NULL;                                                \
    }                                                             \
  } while (0)

static inline const char *errno_name(int e) {
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
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    default: return "EIO";
  }
}

/* An Error like Node's system errors: message "syscall CODE (text)", .code, .errno, .syscall; NULL if
 * even that could not be made. */
static inline napi_value errno_error(napi_env env, int e, const char *syscall) {
  char msg[160];
  napi_value code, text, err, num, sc;
  const char *name = errno_name(e);
  snprintf(msg, sizeof msg, "%s %s (%s)", syscall, name, strerror(e));
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_create_error(env, code, text, &err) != napi_ok) {
    return NULL;
  }
  if (napi_create_int32(env, -e, &num) == napi_ok) napi_set_named_property(env, err, "errno", num);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc) == napi_ok) napi_set_named_property(env, err, "syscall", sc);
  return err;
}

/* Throw errno_error(...) and return NULL from the calling N-API function. */
static inline napi_value throw_errno(napi_env env, int e, const char *syscall) {
  napi_value err = errno_error(env, e, syscall);
  if (err != NULL) {
    napi_throw(env, err);
  } else {
    char msg[160];
    snprintf(msg, sizeof msg, "%s %s (%s)", syscall, errno_name(e), strerror(e));
    napi_throw_error(env, errno_name(e), msg);
  }
  return NULL;
}

/* An integer argument within [lo, hi]; returns false after throwing. */
static inline bool get_int(napi_env env, napi_value v, const char *what, int64_t lo, int64_t hi, int64_t *out) {
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
static inline bool get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
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

/*
 * Join or leave (opt: IPV6_JOIN_GROUP or IPV6_LEAVE_GROUP) the multicast group `group_v` (16 bytes) on
 * interface `ifindex_v` for socket `fd`, checking both arguments: what the batch receiver (udp_batch.c)
 * and the assembling receiver (rx_assembler.c) share. Returns NULL, with an exception pending on failure.
 */
static inline napi_value set_membership(napi_env env, int fd, napi_value group_v, napi_value ifindex_v, int opt) {
  uint8_t *group;
  size_t glen;
  int64_t ifindex;
  if (!get_bytes(env, group_v, "group", &group, &glen)) return NULL;
  if (glen != 16) THROW_RANGE(env, "group must be 16 bytes");
  if (group[0] != 0xff) THROW_RANGE(env, "group is not an IPv6 multicast address");
  if (!get_int(env, ifindex_v, "ifindex", 1, INT32_MAX, &ifindex)) return NULL;
  struct ipv6_mreq mreq;
  memset(&mreq, 0, sizeof mreq);
  memcpy(&mreq.ipv6mr_multiaddr, group, 16);
  mreq.ipv6mr_interface = (unsigned int)ifindex;
  if (setsockopt(fd, IPPROTO_IPV6, opt, &mreq, sizeof mreq) != 0)
    return throw_errno(env, errno, opt == IPV6_JOIN_GROUP ? "setsockopt IPV6_JOIN_GROUP" : "setsockopt IPV6_LEAVE_GROUP");
  return NULL;
}

/*
 * A socket watched for reads on the libuv loop, with the JS function its reads are handed to: what the raw
 * ICMPv6 socket (icmp6.c) and the batch receiver (udp_batch.c) share. The owner's struct embeds it as its
 * FIRST member and is allocated with calloc: poll.data points at it, which is the owner too, and the close
 * callbacks free it.
 *
 * Life cycle: polled_start() (the fd is then owned here), reads in the owner's uv_poll_cb, which checks
 * `closing` before and after every polled_call(); polled_close() from JS (may run inside the callback), or
 * polled_teardown() by Node when the environment goes with the socket still open.
 */
typedef struct {
  uv_poll_t poll; /* poll.data points back here */
  napi_env env;
  napi_ref callback;
  napi_async_context ctx;
  napi_async_cleanup_hook_handle hook;
  int fd;
  bool closing;
} polled_fd_t;

static inline void polled_free(uv_handle_t *h) {
  free(h->data);
}

static inline void polled_teardown_closed(uv_handle_t *h) {
  polled_fd_t *p = h->data;
  napi_remove_async_cleanup_hook(p->hook);
  free(p);
}

/* Environment teardown with the socket still open (worker exit, process exit): close it without JS, and
 * tell Node when the handle is gone so that the loop can be closed. */
static inline void polled_teardown(napi_async_cleanup_hook_handle hook, void *arg) {
  polled_fd_t *p = arg;
  (void)hook;
  p->closing = true;
  uv_poll_stop(&p->poll);
  /* uv_close drops the fd from epoll now; only then may the number be closed and reused. */
  uv_close((uv_handle_t *)&p->poll, polled_teardown_closed);
  close(p->fd);
}

/* Watch `fd` (set up, and from now on owned by p) for reads with on_readable; reads go to `callback`
 * through an async context named `resource`. On failure: closes fd, frees p (at once, or when libuv lets
 * go of the handle), throws (`what` names the module) and returns false. */
static inline bool polled_start(napi_env env, uv_loop_t *loop, polled_fd_t *p, int fd, napi_value callback,
                                const char *resource, const char *what, uv_poll_cb on_readable) {
  napi_value name;
  p->env = env;
  p->fd = fd;
  int uerr = uv_poll_init(loop, &p->poll, fd);
  if (uerr != 0) {
    close(fd);
    free(p);
    throw_errno(env, -uerr, "uv_poll_init");
    return false;
  }
  p->poll.data = p;
  /* From here on the handle is initialized: undo with uv_close, whose callback frees p. */
  if (napi_create_reference(env, callback, 1, &p->callback) != napi_ok ||
      napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &p->ctx) != napi_ok) {
    if (p->callback) napi_delete_reference(env, p->callback);
    uv_close((uv_handle_t *)&p->poll, polled_free);
    close(fd);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) {
      char msg[128];
      snprintf(msg, sizeof msg, "%s: cannot set up the receive callback", what);
      napi_throw_error(env, NULL, msg);
    }
    return false;
  }
  uerr = uv_poll_start(&p->poll, UV_READABLE, on_readable);
  if (uerr == 0 && napi_add_async_cleanup_hook(env, polled_teardown, p, &p->hook) != napi_ok) uerr = UV_ENOMEM;
  if (uerr != 0) {
    napi_async_destroy(env, p->ctx);
    napi_delete_reference(env, p->callback);
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, polled_free);
    close(fd);
    throw_errno(env, -uerr, "uv_poll_start");
    return false;
  }
  return true;
}

/* Call the callback with argv (inside the caller's handle scope). Returns false when the wakeup must end:
 * the callback threw or JS cannot run. */
static inline bool polled_call(polled_fd_t *p, size_t argc, napi_value *argv) {
  napi_env env = p->env;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, p->callback, &fn) != napi_ok || fn == NULL) return false;
  /* napi_make_callback wants an object as `this`. */
  if (napi_get_global(env, &recv) != napi_ok) return false;
  if (napi_make_callback(env, p->ctx, recv, fn, argc, argv, &result) == napi_ok) return true;
  bool pending = false;
  napi_value exc;
  /* No JS frame is below us to rethrow into: report it like any uncaught exception. */
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
    napi_fatal_exception(env, exc);
  }
  return false;
}

/* Close from JS. May run inside the callback: the owner's uv_poll_cb sees `closing` and stops; p lives
 * until polled_free. */
static inline void polled_close(napi_env env, polled_fd_t *p) {
  p->closing = true;
  napi_remove_async_cleanup_hook(p->hook);
  napi_async_destroy(env, p->ctx);
  napi_delete_reference(env, p->callback);
  p->callback = NULL;
  uv_poll_stop(&p->poll);
  /* uv_close drops the fd from epoll now; only then may the number be closed and reused. */
  uv_close((uv_handle_t *)&p->poll, polled_free);
  close(p->fd);
}

#endif
