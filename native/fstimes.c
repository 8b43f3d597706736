/*
 * fstimes: set a path's access and modification times to the nanosecond, never following a symlink
 * (utimensat with AT_SYMLINK_NOFOLLOW), for `lcsync sync -t` (src/core/sync/fsmeta.ts). Node's
 * fs.lutimes takes doubles, which cannot carry nanoseconds at today's epoch, and entry hashes include
 * them. Without this function fsmeta.ts runs coreutils touch, a process per distinct time: about two
 * processes per file, which made a tree of small files spend most of its sync starting processes.
 *
 * lutimensNs(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): void
 *   path       Uint8Array, the name's bytes (no NUL; names need not be UTF-8)
 *   *Sec       bigint, seconds since the epoch (negative allowed)
 *   *Nsec      number, 0..999999999
 * Throws a system error like Node's (code, errno, syscall "utimensat") when the call fails.
 */
#include "napi_util.h"
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static bool get_seconds(napi_env env, napi_value v, const char *what, time_t *out) {
  napi_valuetype t;
  int64_t s;
  bool lossless = false;
  char msg[96];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_bigint ||
      napi_get_value_bigint_int64(env, v, &s, &lossless) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a bigint", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (!lossless || (sizeof(time_t) < sizeof(int64_t) && (s > (int64_t)INT32_MAX || s < (int64_t)INT32_MIN))) {
    snprintf(msg, sizeof msg, "%s is out of range for time_t", what);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = (time_t)s;
  return true;
}

static napi_value LutimensNs(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t *name;
  size_t len;
  char path[PATH_MAX];
  struct timespec ts[2];
  int64_t ans, mns;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW_TYPE(env, "lutimensNs(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
  if (!get_bytes(env, argv[0], "path", &name, &len)) return NULL;
  if (len == 0 || memchr(name, 0, len) != NULL) THROW_TYPE(env, "path must be non-empty and hold no NUL byte");
  if (len >= sizeof path) return throw_errno(env, ENAMETOOLONG, "utimensat");
  memcpy(path, name, len);
  path[len] = '\0';
  if (!get_seconds(env, argv[1], "atimeSec", &ts[0].tv_sec)) return NULL;
  if (!get_int(env, argv[2], "atimeNsec", 0, 999999999, &ans)) return NULL;
  if (!get_seconds(env, argv[3], "mtimeSec", &ts[1].tv_sec)) return NULL;
  if (!get_int(env, argv[4], "mtimeNsec", 0, 999999999, &mns)) return NULL;
  ts[0].tv_nsec = (long)ans;
  ts[1].tv_nsec = (long)mns;
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat");
  return NULL;
}

bool fstimes_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "lutimensNs", NAPI_AUTO_LENGTH, LutimensNs, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "lutimensNs", fn) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register lutimensNs");
    return false;
  }
  return true;
}
