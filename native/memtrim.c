/*
 * memtrim: hand the C heap's free pages back to the kernel (glibc's malloc_trim), for a long sync.
 *
 * Why: Node allocates ArrayBuffers' bytes with malloc, and buffers below glibc's mmap threshold (tree
 * parts, chunks, anything once the threshold has risen after a large free) come from the brk heap. When
 * they are freed, glibc returns only the heap's free top to the kernel; free pages between live
 * allocations stay resident. A 4 GiB sync kept 15 MiB of such a heap from its tree's arrival to its
 * end. malloc_trim(0) releases every whole free page (MADV_DONTNEED), wherever it lies.
 *
 *   mallocTrim() -> boolean   whether any memory was released; false without glibc
 */
#include "napi_util.h"
#include "addon.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static napi_value MallocTrim(napi_env env, napi_callback_info info) {
  (void)info;
  bool released = false;
#if defined(__GLIBC__)
  released = malloc_trim(0) != 0;
#endif
  napi_value out;
  napi_get_boolean(env, released, &out);
  return out;
}

bool memtrim_init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, MallocTrim, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "mallocTrim", fn) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register mallocTrim");
    return false;
  }
  return true;
}
