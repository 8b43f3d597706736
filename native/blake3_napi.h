/* BLAKE3 functions of the lcsync addon (see blake3_napi.c); the addon's module init calls this once. */
#ifndef LCSYNC_BLAKE3_NAPI_H
#define LCSYNC_BLAKE3_NAPI_H

#include <node_api.h>

/* Adds the blake3* functions to `exports`; returns exports, or NULL with a JS exception pending. */
napi_value lcsync_blake3_init(napi_env env, napi_value exports);

#endif
