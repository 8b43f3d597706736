/*
 * statbatch: lstat many paths in one call, for the receiver's checks of thousands of small files
 * (src/core/base/lstatmany.ts). Node's lstatSync with { bigint: true } builds a BigIntStats object of
 * eighteen BigInts per call, which cost a sync of 5,000 small files more than the system calls did.
 *
 * lstatMany(names, out): number
 *   names  Uint8Array: the paths' bytes, each followed by one NUL (names need not be UTF-8)
 *   out    BigInt64Array with room for 9 values per path, filled per path i at 9*i:
 *            0 errno of lstat (0: the rest is valid; EOVERFLOW also when a time does not fit below)
 *            1 st_mode   2 st_size   3 st_ino (as unsigned 64 bits)   4 st_dev (as unsigned 64 bits)
 *            5 mtime in nanoseconds since the epoch   6 ctime likewise
 *            7 st_uid * 2^32 + st_gid   8 atime in nanoseconds since the epoch
 * Returns the number of paths. Throws a TypeError/RangeError for bad arguments (a name left without its
 * NUL, an empty name, more paths than out holds); a path that cannot be lstat-ed is its errno, not an error.
 */
#include "napi_util.h"
#include "addon.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define FIELDS 9

/* sec * 1e9 + nsec, or false when it does not fit an int64 (beyond the years 1677..2262). */
static bool time_ns(int64_t sec, long nsec, int64_t *out) {
  __int128 v = (__int128)sec * 1000000000 + nsec;
  if (v > INT64_MAX || v < INT64_MIN) return false;
  *out = (int64_t)v;
  return true;
}

static napi_value LstatMany(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *names;
  size_t len;
  bool is = false;
  napi_typedarray_type type;
  size_t slots = 0;
  void *outp = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) THROW_TYPE(env, "lstatMany(names, out)");
  if (!get_bytes(env, argv[0], "names", &names, &len)) return NULL;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[1], &type, &slots, &outp, NULL, NULL) != napi_ok || type != napi_bigint64_array) {
    THROW_TYPE(env, "out must be a BigInt64Array");
  }
  if (len > 0 && names[len - 1] != 0) THROW_TYPE(env, "names must end with a NUL");
  int64_t *out = (int64_t *)outp;
  size_t count = 0;
  for (size_t i = 0; i < len; i++) if (names[i] == 0) count++;
  if (count > slots / FIELDS) THROW_RANGE(env, "out has room for fewer paths than names holds");
  size_t at = 0;
  for (size_t n = 0; n < count; n++) {
    const char *p = (const char *)names + at;
    size_t plen = strlen(p);
    if (plen == 0) THROW_TYPE(env, "names holds an empty path");
    at += plen + 1;
    int64_t *o = out + FIELDS * n;
    struct stat st;
    memset(o, 0, FIELDS * sizeof *o);
    if (lstat(p, &st) != 0) {
      o[0] = errno;
      continue;
    }
    o[1] = (int64_t)st.st_mode;
    o[2] = (int64_t)st.st_size;
    o[3] = (int64_t)(uint64_t)st.st_ino;
    o[4] = (int64_t)(uint64_t)st.st_dev;
    o[7] = (int64_t)(((uint64_t)st.st_uid << 32) | (uint64_t)(uint32_t)st.st_gid);
    if (!time_ns((int64_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, &o[5]) || !time_ns((int64_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec, &o[6]) ||
        !time_ns((int64_t)st.st_atim.tv_sec, st.st_atim.tv_nsec, &o[8])) {
      o[0] = EOVERFLOW;
    }
  }
  napi_value result;
  CHECK(env, napi_create_uint32(env, (uint32_t)count, &result));
  return result;
}

bool statbatch_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "lstatMany", NAPI_AUTO_LENGTH, LstatMany, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "lstatMany", fn) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register lstatMany");
    return false;
  }
  return true;
}
