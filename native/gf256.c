/*
 * gf256: RaptorQ's symbol arithmetic (RFC 6330 section 5.7), out ^= sum over j of w[j] * symbol j in GF(256),
 * the one operation encoding and decoding a chunk spend their time in (src/core/fec/symbolmath.ts).
 *
 * Why in C when a wasm module does it too: a receiver that decodes (any loss) had to compile that module,
 * and V8's wasm decoder and optimizing compiler paged 3.8 MiB of the node binary into its RSS (measured
 * per page against a clean sync; 4.5 MiB of peak RSS in all, 66.8 against 62.3 MiB at 5% loss). Here the symbols are also read where they
 * lie, where the wasm path copies each into the module's memory and the result out again. The wasm module
 * stays the fallback without the addon.
 *
 * The method is the wasm module's: c * x = LO[c][x & 15] ^ HI[c][x >> 4], sixteen or thirty-two table
 * lookups at once with a byte shuffle (SSSE3 pshufb, AVX2 vpshufb, NEON tbl), or one byte at a time in
 * portable C. The tables come from JavaScript, made from the field's one multiplication (rfc6330.ts).
 *
 *   gf256Combine(out, symbols, weights, count, tables) -> undefined
 *     out: Uint8Array; symbols: array of Uint8Array, the first `count` used, each out.length bytes;
 *     weights: Uint8Array of at least `count` factors; tables: Uint8Array of 8192 bytes, 32 per factor c
 *     (LO[c]: c * 0..15, then HI[c]: c * 0x00, 0x10, .., 0xf0). Throws on any other shape.
 *   gf256CombineAt(out, base, offsets, weights, count, tables) -> undefined
 *     The same with symbol j at base[offsets[j] .. offsets[j] + out.length) (offsets: Uint32Array, each
 *     range inside base): for symbols that share one buffer (a chunk's source symbols), one typed array
 *     instead of one N-API lookup per symbol, which was most of the cost of a 32-symbol sum.
 */
#include "napi_util.h"
#include "addon.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define TABLES_LEN 8192

static void mul_add_portable(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *lo, const uint8_t *hi) {
  for (size_t i = 0; i < len; i++) dst[i] ^= (uint8_t)(lo[src[i] & 15] ^ hi[src[i] >> 4]);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void mul_add_avx2(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *lo,
                                                           const uint8_t *hi) {
  /* vpshufb looks up within each 128-bit lane: both lanes get the same 16-byte table. */
  const __m256i tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lo));
  const __m256i thi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)hi));
  const __m256i mask = _mm256_set1_epi8(15);
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(src + i));
    __m256i p = _mm256_xor_si256(_mm256_shuffle_epi8(tlo, _mm256_and_si256(v, mask)),
                                 _mm256_shuffle_epi8(thi, _mm256_and_si256(_mm256_srli_epi16(v, 4), mask)));
    _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(dst + i)), p));
  }
  mul_add_portable(dst + i, src + i, len - i, lo, hi);
}

__attribute__((target("ssse3"))) static void mul_add_ssse3(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *lo,
                                                             const uint8_t *hi) {
  const __m128i tlo = _mm_loadu_si128((const __m128i *)lo);
  const __m128i thi = _mm_loadu_si128((const __m128i *)hi);
  const __m128i mask = _mm_set1_epi8(15);
  size_t i = 0;
  for (; i + 16 <= len; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
    __m128i p = _mm_xor_si128(_mm_shuffle_epi8(tlo, _mm_and_si128(v, mask)),
                              _mm_shuffle_epi8(thi, _mm_and_si128(_mm_srli_epi16(v, 4), mask)));
    _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(_mm_loadu_si128((const __m128i *)(dst + i)), p));
  }
  mul_add_portable(dst + i, src + i, len - i, lo, hi);
}
#elif defined(__aarch64__)
static void mul_add_neon(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *lo, const uint8_t *hi) {
  const uint8x16_t tlo = vld1q_u8(lo);
  const uint8x16_t thi = vld1q_u8(hi);
  const uint8x16_t mask = vdupq_n_u8(15);
  size_t i = 0;
  for (; i + 16 <= len; i += 16) {
    uint8x16_t v = vld1q_u8(src + i);
    uint8x16_t p = veorq_u8(vqtbl1q_u8(tlo, vandq_u8(v, mask)), vqtbl1q_u8(thi, vshrq_n_u8(v, 4)));
    vst1q_u8(dst + i, veorq_u8(vld1q_u8(dst + i), p));
  }
  mul_add_portable(dst + i, src + i, len - i, lo, hi);
}
#endif

typedef void (*mul_add_fn)(uint8_t *, const uint8_t *, size_t, const uint8_t *, const uint8_t *);

/*
 * The best the CPU has, chosen once. LCSYNC_GF256_ISA=portable (or ssse3 on x86-64) caps the choice, so that
 * the tests can hold every path against the others on a machine that has them all.
 */
static mul_add_fn pick_mul_add(void) {
  const char *cap = getenv("LCSYNC_GF256_ISA");
  if (cap && strcmp(cap, "portable") == 0) return mul_add_portable;
#if defined(__x86_64__)
  __builtin_cpu_init();
  bool ssse3_only = cap && strcmp(cap, "ssse3") == 0;
  if (__builtin_cpu_supports("avx2") && !ssse3_only) return mul_add_avx2;
  if (__builtin_cpu_supports("ssse3")) return mul_add_ssse3;
  return mul_add_portable;
#elif defined(__aarch64__)
  return mul_add_neon;
#else
  return mul_add_portable;
#endif
}

static mul_add_fn mul_add;

static bool typed_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, (void **)data, &ab, &off) != napi_ok) return false;
  return type == napi_uint8_array;
}

static napi_value Gf256Combine(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) THROW_TYPE(env, "gf256Combine(out, symbols, weights, count, tables)");
  uint8_t *out, *weights, *tables;
  size_t len, wlen, tlen;
  if (!typed_bytes(env, argv[0], &out, &len)) THROW_TYPE(env, "out must be a Uint8Array");
  bool is_array = false;
  CHECK(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) THROW_TYPE(env, "symbols must be an array");
  if (!typed_bytes(env, argv[2], &weights, &wlen)) THROW_TYPE(env, "weights must be a Uint8Array");
  uint32_t count, listed;
  if (napi_get_value_uint32(env, argv[3], &count) != napi_ok) THROW_TYPE(env, "count must be a number");
  if (!typed_bytes(env, argv[4], &tables, &tlen) || tlen != TABLES_LEN) THROW_TYPE(env, "tables must be a Uint8Array of 8192 bytes");
  CHECK(env, napi_get_array_length(env, argv[1], &listed));
  if (count > listed || count > wlen) THROW_RANGE(env, "count exceeds the symbols or weights given");
  for (uint32_t j = 0; j < count; j++) {
    if (weights[j] == 0) continue;
    napi_value s;
    uint8_t *src;
    size_t slen;
    CHECK(env, napi_get_element(env, argv[1], j, &s));
    if (!typed_bytes(env, s, &src, &slen)) THROW_TYPE(env, "each symbol must be a Uint8Array");
    if (slen != len) THROW_RANGE(env, "each symbol must be as long as out");
    const uint8_t *t = tables + (size_t)weights[j] * 32;
    mul_add(out, src, len, t, t + 16);
  }
  return NULL;
}

static napi_value Gf256CombineAt(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) THROW_TYPE(env, "gf256CombineAt(out, base, offsets, weights, count, tables)");
  uint8_t *out, *base, *weights, *tables;
  size_t len, blen, wlen, tlen, olen;
  if (!typed_bytes(env, argv[0], &out, &len)) THROW_TYPE(env, "out must be a Uint8Array");
  if (!typed_bytes(env, argv[1], &base, &blen)) THROW_TYPE(env, "base must be a Uint8Array");
  bool is = false;
  napi_typedarray_type type;
  uint32_t *offsets;
  napi_value ab;
  size_t off;
  CHECK(env, napi_is_typedarray(env, argv[2], &is));
  if (!is) THROW_TYPE(env, "offsets must be a Uint32Array");
  CHECK(env, napi_get_typedarray_info(env, argv[2], &type, &olen, (void **)&offsets, &ab, &off));
  if (type != napi_uint32_array) THROW_TYPE(env, "offsets must be a Uint32Array");
  if (!typed_bytes(env, argv[3], &weights, &wlen)) THROW_TYPE(env, "weights must be a Uint8Array");
  uint32_t count;
  if (napi_get_value_uint32(env, argv[4], &count) != napi_ok) THROW_TYPE(env, "count must be a number");
  if (!typed_bytes(env, argv[5], &tables, &tlen) || tlen != TABLES_LEN) THROW_TYPE(env, "tables must be a Uint8Array of 8192 bytes");
  if (count > olen || count > wlen) THROW_RANGE(env, "count exceeds the offsets or weights given");
  for (uint32_t j = 0; j < count; j++) {
    if (weights[j] == 0) continue;
    if (len > blen || offsets[j] > blen - len) THROW_RANGE(env, "a symbol lies outside base");
  }
  for (uint32_t j = 0; j < count; j++) {
    if (weights[j] == 0) continue;
    const uint8_t *t = tables + (size_t)weights[j] * 32;
    mul_add(out, base + offsets[j], len, t, t + 16);
  }
  return NULL;
}

bool gf256_init(napi_env env, napi_value exports) {
  mul_add = pick_mul_add();
  napi_value fn, at;
  if (napi_create_function(env, "gf256Combine", NAPI_AUTO_LENGTH, Gf256Combine, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "gf256Combine", fn) != napi_ok ||
      napi_create_function(env, "gf256CombineAt", NAPI_AUTO_LENGTH, Gf256CombineAt, NULL, &at) != napi_ok ||
      napi_set_named_property(env, exports, "gf256CombineAt", at) != napi_ok) {
    napi_throw_error(env, NULL, "cannot register gf256Combine");
    return false;
  }
  return true;
}
