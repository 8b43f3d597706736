/*
 * smallfiles: make many new small files at once, off the JS thread (src/core/sync/smallfiles.ts). A first sync
 * of a tree of small files spent most of the receiver's main thread in the half-dozen system calls each new
 * file needs (and on ext4 without a journal an open(O_CREAT) alone can take a millisecond, see bench/README.md);
 * here a batch of them runs on a libuv pool thread while the JS thread goes on receiving and verifying.
 *
 * writeSmallFiles(names, data, params, out, done[, times]): undefined
 *   names   Uint8Array: per file its temporary path then its destination path, each followed by one NUL
 *   data    Array of Uint8Array: each file's contents, one per file (no copy into one buffer: the JS side
 *           made each file's bytes already, and concatenating them was a copy and a large allocation per batch)
 *   params  Float64Array, 3 values per file: mode (permission bits), uid and gid to give it (-1: keep the
 *           one it is created with); integers, exact in a double (a Float64Array, not a BigInt64Array, so
 *           the caller makes no BigInt per value)
 *   out     BigInt64Array, 5 values per file, filled before done is called:
 *             0 errno (0: the file is at its destination)   1 the step that failed (below)
 *             2 st_ino   3 st_dev (both as unsigned 64 bits)   4 mtime in nanoseconds since the epoch
 *   done    function(): called on the JS thread once every file was tried
 *   times   optional Float64Array, 4 values per file: atime seconds and nanoseconds, mtime seconds and
 *           nanoseconds, each file's times to give it (sync -t): set here with the file, not by a utimensat per
 *           file at the end of the run (5,000 of them were 30 ms of a first sync's tail). The exported
 *           `smallFilesSetTimes` (true) says this addon takes it.
 * Per file, as writeNewSmallFile in writer.ts does it one by one: (1) open the temporary path
 * O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600; (2) write all of its bytes; (2a) with times, futimens; (3) fstat (so
 * the mtime given back is the one given); (4) fchown when uid or gid differ from what it has, then fchmod to
 * mode (after chown, which clears set-id bits); (5) close; (6) rename over the destination. A step that fails
 * leaves the temporary path removed and the destination untouched, so a file is never partial under its final
 * name; the next file is tried all the same. Nothing is fsynced: the caller makes the files durable at the end of
 * the run (DeferredSync). The arrays stay referenced (not collected) until done; the caller must not touch them
 * meanwhile. Throws a TypeError/RangeError for bad arguments (counts that do not agree, a path left without its
 * NUL, an empty path).
 */
#include "napi_util.h"
#include "addon.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#define PARAMS 3
#define TIMES 4
#define OUTS 5
#define NARRAYS 5

enum { STEP_OPEN = 1, STEP_WRITE, STEP_FSTAT, STEP_OWNER, STEP_CLOSE, STEP_RENAME, STEP_TIMES };

typedef struct {
  napi_async_work work;
  napi_ref arrays[NARRAYS];
  napi_ref done;
  const char *names;
  const double *params;
  /* TIMES values per file, or NULL: leave the times the file is made with. */
  const double *times;
  int64_t *out;
  size_t count;
  /* Each file's bytes (views of the buffers in the data array, which the reference keeps alive). */
  struct file_bytes {
    const uint8_t *p;
    size_t len;
  } files[];
} batch_t;

static int write_one(const char *tmp, const char *dest, const uint8_t *bytes, size_t len, const double *p, const double *t, int64_t *o) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return STEP_OPEN;
  int step = 0;
  size_t at = 0;
  while (at < len) {
    ssize_t n = write(fd, bytes + at, len - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      step = STEP_WRITE;
      break;
    }
    at += (size_t)n;
  }
  if (!step && t) {
    struct timespec ts[2] = {{(time_t)t[0], (long)t[1]}, {(time_t)t[2], (long)t[3]}};
    if (futimens(fd, ts) != 0) step = STEP_TIMES;
  }
  struct stat st;
  if (!step && fstat(fd, &st) != 0) step = STEP_FSTAT;
  if (!step) {
    uid_t uid = p[1] < 0 ? st.st_uid : (uid_t)p[1];
    gid_t gid = p[2] < 0 ? st.st_gid : (gid_t)p[2];
    if ((uid != st.st_uid || gid != st.st_gid) && fchown(fd, uid, gid) != 0) step = STEP_OWNER;
    else if (fchmod(fd, (mode_t)p[0] & 07777) != 0) step = STEP_OWNER;
  }
  int saved = errno;
  if (close(fd) != 0 && !step) {
    saved = errno;
    step = STEP_CLOSE;
  }
  if (!step && rename(tmp, dest) != 0) {
    saved = errno;
    step = STEP_RENAME;
  }
  if (step) {
    unlink(tmp);
    errno = saved;
    return step;
  }
  o[2] = (int64_t)(uint64_t)st.st_ino;
  o[3] = (int64_t)(uint64_t)st.st_dev;
  o[4] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  return 0;
}

static void execute(napi_env env, void *arg) {
  (void)env;
  batch_t *b = arg;
  const char *name = b->names;
  for (size_t i = 0; i < b->count; i++) {
    const char *tmp = name;
    const char *dest = tmp + strlen(tmp) + 1;
    name = dest + strlen(dest) + 1;
    int64_t *o = b->out + OUTS * i;
    memset(o, 0, OUTS * sizeof *o);
    int step = write_one(tmp, dest, b->files[i].p, b->files[i].len, b->params + PARAMS * i, b->times ? b->times + TIMES * i : NULL, o);
    if (step) {
      o[0] = errno ? errno : EIO;
      o[1] = step;
    }
  }
}

static void complete(napi_env env, napi_status status, void *arg) {
  (void)status;
  batch_t *b = arg;
  napi_value done = NULL, global, ignored;
  napi_get_reference_value(env, b->done, &done);
  for (int i = 0; i < NARRAYS; i++) if (b->arrays[i]) napi_delete_reference(env, b->arrays[i]);
  napi_delete_reference(env, b->done);
  napi_delete_async_work(env, b->work);
  free(b);
  if (done && napi_get_global(env, &global) == napi_ok) napi_call_function(env, global, done, 0, NULL, &ignored);
}

static bool get_typed(napi_env env, napi_value v, const char *what, napi_typedarray_type want, const char *kind, void **data, size_t *len) {
  bool is = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok ||
      type != want) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a %s", what, kind);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *data = p;
  return true;
}

/* A whole number in [lo, hi] (NaN and fractions are not). */
static bool whole_in(double v, double lo, double hi) {
  return v >= lo && v <= hi && v == (double)(int64_t)v;
}

static napi_value WriteSmallFiles(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  uint8_t *names;
  size_t nlen, plen, olen;
  double *params;
  int64_t *out;
  napi_valuetype t;
  bool is_array = false;
  uint32_t count = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW_TYPE(env, "writeSmallFiles(names, data, params, out, done[, times])");
  if (!get_bytes(env, argv[0], "names", &names, &nlen)) return NULL;
  CHECK(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) THROW_TYPE(env, "data must be an Array of Uint8Array");
  CHECK(env, napi_get_array_length(env, argv[1], &count));
  if (!get_typed(env, argv[2], "params", napi_float64_array, "Float64Array", (void **)&params, &plen) ||
      !get_typed(env, argv[3], "out", napi_bigint64_array, "BigInt64Array", (void **)&out, &olen)) {
    return NULL;
  }
  CHECK(env, napi_typeof(env, argv[4], &t));
  if (t != napi_function) THROW_TYPE(env, "done must be a function");
  if (plen != (size_t)PARAMS * count) THROW_RANGE(env, "params must hold 3 values per file of data");
  if (olen < (size_t)OUTS * count) THROW_RANGE(env, "out has room for fewer files than data holds");
  double *times = NULL;
  bool with_times = false;
  if (argc > 5) {
    CHECK(env, napi_typeof(env, argv[5], &t));
    with_times = t != napi_undefined;
  }
  if (with_times) {
    size_t tlen;
    if (!get_typed(env, argv[5], "times", napi_float64_array, "Float64Array", (void **)&times, &tlen)) return NULL;
    if (tlen != (size_t)TIMES * count) THROW_RANGE(env, "times must hold 4 values per file of data");
    for (size_t i = 0; i < count; i++) {
      const double *tv = times + TIMES * i;
      /* Seconds exact in a double (and in time_t), nanoseconds below a second. */
      for (int k = 0; k < TIMES; k += 2) {
        if (!whole_in(tv[k], -9007199254740991.0, 9007199254740991.0) || !whole_in(tv[k + 1], 0, 999999999)) THROW_RANGE(env, "times out of range");
      }
    }
  }
  if (nlen == 0 || names[nlen - 1] != 0) THROW_TYPE(env, "names must end with a NUL");
  size_t paths = 0;
  for (size_t i = 0; i < nlen; i++) {
    if (names[i] != 0) continue;
    if (i == 0 || names[i - 1] == 0) THROW_TYPE(env, "names holds an empty path");
    paths++;
  }
  if (paths != 2 * (size_t)count) THROW_RANGE(env, "names must hold two paths per file");
  for (size_t i = 0; i < count; i++) {
    const double *p = params + PARAMS * i;
    if (!whole_in(p[0], 0, 07777) || !whole_in(p[1], -1, UINT32_MAX) || !whole_in(p[2], -1, UINT32_MAX)) {
      THROW_RANGE(env, "params out of range");
    }
  }
  batch_t *b = calloc(1, sizeof *b + count * sizeof b->files[0]);
  if (!b) {
    napi_throw_error(env, "ENOMEM", "writeSmallFiles: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    uint8_t *p;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || !get_bytes(env, v, "data[i]", &p, &b->files[i].len)) {
      free(b);
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (!pending) napi_throw_error(env, NULL, "writeSmallFiles: cannot read data");
      return NULL;
    }
    b->files[i].p = p;
  }
  b->names = (const char *)names;
  b->params = params;
  b->times = times;
  b->out = out;
  b->count = count;
  napi_value resource_name;
  bool ok = napi_create_string_utf8(env, "lcsync.writeSmallFiles", NAPI_AUTO_LENGTH, &resource_name) == napi_ok;
  for (int i = 0; ok && i < NARRAYS - 1; i++) ok = napi_create_reference(env, argv[i], 1, &b->arrays[i]) == napi_ok;
  if (ok && times) ok = napi_create_reference(env, argv[5], 1, &b->arrays[NARRAYS - 1]) == napi_ok;
  ok = ok && napi_create_reference(env, argv[4], 1, &b->done) == napi_ok;
  ok = ok && napi_create_async_work(env, NULL, resource_name, execute, complete, b, &b->work) == napi_ok;
  ok = ok && napi_queue_async_work(env, b->work) == napi_ok;
  if (!ok) {
    // Not queued: nothing will call complete, so undo here (the references made so far included).
    for (int i = 0; i < NARRAYS; i++) if (b->arrays[i]) napi_delete_reference(env, b->arrays[i]);
    if (b->done) napi_delete_reference(env, b->done);
    if (b->work) napi_delete_async_work(env, b->work);
    free(b);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, NULL, "writeSmallFiles: cannot queue the work");
    return NULL;
  }
  return NULL;
}

bool smallfiles_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "writeSmallFiles", NAPI_AUTO_LENGTH, WriteSmallFiles, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "writeSmallFiles", fn) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register writeSmallFiles");
    return false;
  }
  napi_value yes;
  if (napi_get_boolean(env, true, &yes) != napi_ok || napi_set_named_property(env, exports, "smallFilesSetTimes", yes) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register smallFilesSetTimes");
    return false;
  }
  return true;
}
