#ifndef LCSYNC_NAPI_UTIL_H
#define LCSYNC_NAPI_UTIL_H
/*
 * Helpers shared by the C files of the lcsync addon (udp_batch.c, icmp6.c, ...): argument checks that
 * throw TypeError/RangeError, and system errors thrown the way Node throws them (.code, .errno, .syscall).
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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

#endif
