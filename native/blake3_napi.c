/*
 * BLAKE3-256 for lcsync, from the official C implementation (native/blake3/, with its SIMD code;
 * the best of SSE2/SSE4.1/AVX2/AVX-512 or NEON is picked at run time by blake3_dispatch.c).
 *
 * Why: lcsync hashes every 32 KiB leaf of every file it shares. The wasm fallback has no SIMD and
 * pays a copy into wasm memory and a JS call per leaf; this does a whole read block of leaves, or a
 * whole level of parent nodes, per call, straight from the caller's buffer.
 * src/core/model/hash.ts uses it when the addon loads (and LCSYNC_NO_NATIVE_BLAKE3 is not set).
 *
 * API (every argument checked; bad input throws TypeError/RangeError, never reads or writes out of
 * bounds; Uint8Array (Buffer) only):
 *   blake3HashInto(data, out, outOffset)           BLAKE3-256 of data into out[outOffset, +32)
 *       (Outputs go into caller buffers everywhere: a Buffer made in C, napi_create_buffer_copy, costs
 *       1.5 us, five times a whole call that hashes 64 bytes into a Buffer from Node's pool.)
 *   blake3Leaves(data, leafSize, out, outOffset) -> n
 *       hashes data in consecutive leafSize-byte pieces (the last may be shorter; none if data is
 *       empty) and writes the n = ceil(len / leafSize) digests back to back into out at outOffset.
 *   blake3Pairs(src, srcOffset, count, dst, dstOffset)
 *       for i < count: dst[dstOffset + 32i, +32) = BLAKE3(src[srcOffset + 64i, +64)): one level of
 *       Merkle parents from the level below. The two ranges must not overlap.
 *   blake3Hasher() -> hasher, blake3Update(hasher, data), blake3Final(hasher, out, outOffset)
 *       an incremental hasher for streams (an object owning a C blake3_hasher, freed by the GC);
 *       blake3Final does not change the state, so more updates may follow.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blake3/blake3.h"
#include "blake3_napi.h"

#define PAIR_BYTES (2 * BLAKE3_OUT_LEN)

static bool get_u8(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) == napi_ok && is_ta &&
      napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) == napi_ok && type == napi_uint8_array) {
    *data = p;
    return true;
  }
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be a Uint8Array", what);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

/* A non-negative integer no larger than `max`. */
static bool get_index(napi_env env, napi_value v, const char *what, size_t max, size_t *out) {
  double d;
  char msg[96];
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)max) {
    snprintf(msg, sizeof msg, "%s out of range", what);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  *out = (size_t)d;
  return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < want) {
    napi_throw_type_error(env, NULL, "blake3: too few arguments");
    return false;
  }
  return true;
}

static void hash_into(const uint8_t *data, size_t len, uint8_t *out) {
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
}

static napi_value js_hash_into(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t *data, *out;
  size_t len, out_len, at;
  if (!get_args(env, info, 3, argv) || !get_u8(env, argv[0], "data", &data, &len) ||
      !get_u8(env, argv[1], "out", &out, &out_len) || !get_index(env, argv[2], "outOffset", out_len, &at)) {
    return NULL;
  }
  if (out_len - at < BLAKE3_OUT_LEN) {
    napi_throw_range_error(env, NULL, "out is too small for a digest");
    return NULL;
  }
  hash_into(data, len, out + at);
  return NULL;
}

static napi_value js_leaves(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *data, *out;
  size_t len, out_len, leaf, at;
  if (!get_args(env, info, 4, argv) || !get_u8(env, argv[0], "data", &data, &len) ||
      !get_index(env, argv[1], "leafSize", SIZE_MAX, &leaf) || !get_u8(env, argv[2], "out", &out, &out_len) ||
      !get_index(env, argv[3], "outOffset", out_len, &at)) {
    return NULL;
  }
  if (leaf == 0) {
    napi_throw_range_error(env, NULL, "leafSize must be positive");
    return NULL;
  }
  size_t n = len / leaf + (len % leaf != 0);
  if (n > (out_len - at) / BLAKE3_OUT_LEN) {
    napi_throw_range_error(env, NULL, "out is too small for the leaves");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    size_t off = i * leaf;
    size_t l = len - off < leaf ? len - off : leaf;
    hash_into(data + off, l, out + at + i * BLAKE3_OUT_LEN);
  }
  napi_value r;
  if (napi_create_double(env, (double)n, &r) != napi_ok) return NULL;
  return r;
}

static napi_value js_pairs(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *src, *dst;
  size_t src_len, dst_len, src_at, count, dst_at;
  if (!get_args(env, info, 5, argv) || !get_u8(env, argv[0], "src", &src, &src_len) ||
      !get_index(env, argv[1], "srcOffset", src_len, &src_at) ||
      !get_index(env, argv[2], "count", (src_len - src_at) / PAIR_BYTES, &count) ||
      !get_u8(env, argv[3], "dst", &dst, &dst_len) || !get_index(env, argv[4], "dstOffset", dst_len, &dst_at)) {
    return NULL;
  }
  if (count > (dst_len - dst_at) / BLAKE3_OUT_LEN) {
    napi_throw_range_error(env, NULL, "dst is too small for the parents");
    return NULL;
  }
  const uint8_t *s = src + src_at;
  uint8_t *d = dst + dst_at;
  if (count > 0 && s < d + count * BLAKE3_OUT_LEN && d < s + count * PAIR_BYTES) {
    napi_throw_range_error(env, NULL, "src and dst overlap");
    return NULL;
  }
  for (size_t i = 0; i < count; i++) hash_into(s + i * PAIR_BYTES, PAIR_BYTES, d + i * BLAKE3_OUT_LEN);
  return NULL;
}

/* Tags the objects that own a hasher, so that no other object is ever taken for one. */
static const napi_type_tag HASHER_TAG = {0x6c6373796e63b3b3ULL, 0x2d6861736865722dULL};

static void free_hasher(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static bool get_hasher(napi_env env, napi_value v, blake3_hasher **h) {
  bool ours = false;
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_object &&
      napi_check_object_type_tag(env, v, &HASHER_TAG, &ours) == napi_ok && ours &&
      napi_unwrap(env, v, &p) == napi_ok && p != NULL) {
    *h = p;
    return true;
  }
  napi_throw_type_error(env, NULL, "not a hasher made by blake3Hasher()");
  return false;
}

static napi_value js_hasher(napi_env env, napi_callback_info info) {
  (void)info;
  blake3_hasher *h = malloc(sizeof *h);
  if (h == NULL) {
    napi_throw_error(env, NULL, "blake3: out of memory");
    return NULL;
  }
  blake3_hasher_init(h);
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok || napi_type_tag_object(env, obj, &HASHER_TAG) != napi_ok ||
      napi_wrap(env, obj, h, free_hasher, NULL, NULL) != napi_ok) {
    free(h);
    return NULL;
  }
  return obj;
}

static napi_value js_update(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  blake3_hasher *h;
  uint8_t *data;
  size_t len;
  if (!get_args(env, info, 2, argv) || !get_hasher(env, argv[0], &h) || !get_u8(env, argv[1], "data", &data, &len)) {
    return NULL;
  }
  blake3_hasher_update(h, data, len);
  return NULL;
}

static napi_value js_final(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  blake3_hasher *h;
  uint8_t *out;
  size_t out_len, at;
  if (!get_args(env, info, 3, argv) || !get_hasher(env, argv[0], &h) || !get_u8(env, argv[1], "out", &out, &out_len) ||
      !get_index(env, argv[2], "outOffset", out_len, &at)) {
    return NULL;
  }
  if (out_len - at < BLAKE3_OUT_LEN) {
    napi_throw_range_error(env, NULL, "out is too small for a digest");
    return NULL;
  }
  blake3_hasher_finalize(h, out + at, BLAKE3_OUT_LEN);
  return NULL;
}

napi_value lcsync_blake3_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"blake3HashInto", NULL, js_hash_into, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blake3Leaves", NULL, js_leaves, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blake3Pairs", NULL, js_pairs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blake3Hasher", NULL, js_hasher, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blake3Update", NULL, js_update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"blake3Final", NULL, js_final, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
