/*
 * lcsync.node: the one native addon of lcsync (N-API, so one build serves every Node version).
 * Loaded by src/core/base/addon.ts through node-gyp-build: the prebuild shipped in the package, or a build
 * from source (binding.gyp) where none fits. Each feature lives in its own file and adds its
 * functions here with one call.
 */
#include "napi_util.h"
#include "addon.h"
#include "blake3_napi.h"

static napi_value init(napi_env env, napi_value exports) {
  if (!udp_batch_init(env, exports)) return NULL;
  if (!tx_rounds_init(env, exports)) return NULL;
  if (!icmp6_init(env, exports)) return NULL;
  if (!lcsync_blake3_init(env, exports)) return NULL;
  if (!fstimes_init(env, exports)) return NULL;
  if (!rx_assembler_init(env, exports)) return NULL;
  if (!relay_fwd_init(env, exports)) return NULL;
  if (!statbatch_init(env, exports)) return NULL;
  if (!smallfiles_init(env, exports)) return NULL;
  if (!syncfs_init(env, exports)) return NULL;
  if (!memtrim_init(env, exports)) return NULL;
  if (!gf256_init(env, exports)) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
