/*
 * syncfs: make a whole file system durable at once, off the JS thread, for the end of a sync that wrote
 * many small files (DeferredSync in src/core/sync/writer.ts). Node has no syncfs(2); without this function
 * writer.ts runs coreutils `sync -f`, which costs a process start (a fork of the whole receiver) and its wait.
 *
 * syncFs(dir, done): undefined
 *   dir   Uint8Array, the bytes of a directory's path on that file system (no NUL; names need not be UTF-8)
 *   done  function(errno): called on the JS thread once done; errno 0 when open and syncfs succeeded, else
 *         the errno of the step that failed (the caller falls back to fsyncing each file)
 * Throws a TypeError for bad arguments (an empty path, one with a NUL, a missing callback).
 */
#include "napi_util.h"
#include "addon.h"

#include <fcntl.h>
#include <unistd.h>

typedef struct {
  napi_async_work work;
  napi_ref done;
  int err;
  char path[];
} job_t;

static void execute(napi_env env, void *arg) {
  (void)env;
  job_t *j = arg;
  int fd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno ? errno : EIO;
    return;
  }
  if (syncfs(fd) != 0) j->err = errno ? errno : EIO;
  close(fd);
}

static void complete(napi_env env, napi_status status, void *arg) {
  job_t *j = arg;
  napi_value done = NULL, global, code, ignored;
  napi_get_reference_value(env, j->done, &done);
  napi_delete_reference(env, j->done);
  napi_delete_async_work(env, j->work);
  int err = status == napi_ok ? j->err : ECANCELED;
  free(j);
  if (done && napi_get_global(env, &global) == napi_ok && napi_create_int32(env, err, &code) == napi_ok) {
    napi_call_function(env, global, done, 1, &code, &ignored);
  }
}

static napi_value SyncFs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *bytes;
  size_t len;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) THROW_TYPE(env, "syncFs(dir, done)");
  if (!get_bytes(env, argv[0], "dir", &bytes, &len)) return NULL;
  if (len == 0 || memchr(bytes, 0, len) != NULL) THROW_TYPE(env, "dir must be a non-empty path without NUL");
  CHECK(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) THROW_TYPE(env, "done must be a function");
  job_t *j = calloc(1, sizeof *j + len + 1);
  if (!j) {
    napi_throw_error(env, "ENOMEM", "syncFs: out of memory");
    return NULL;
  }
  memcpy(j->path, bytes, len);
  napi_value resource_name;
  bool ok = napi_create_string_utf8(env, "lcsync.syncFs", NAPI_AUTO_LENGTH, &resource_name) == napi_ok;
  ok = ok && napi_create_reference(env, argv[1], 1, &j->done) == napi_ok;
  ok = ok && napi_create_async_work(env, NULL, resource_name, execute, complete, j, &j->work) == napi_ok;
  ok = ok && napi_queue_async_work(env, j->work) == napi_ok;
  if (!ok) {
    // Not queued: nothing will call complete, so undo here.
    if (j->done) napi_delete_reference(env, j->done);
    if (j->work) napi_delete_async_work(env, j->work);
    free(j);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, NULL, "syncFs: cannot queue the work");
    return NULL;
  }
  return NULL;
}

bool syncfs_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "syncFs", NAPI_AUTO_LENGTH, SyncFs, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "syncFs", fn) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register syncFs");
    return false;
  }
  return true;
}
