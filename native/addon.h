#ifndef LCSYNC_ADDON_H
#define LCSYNC_ADDON_H
/*
 * The features of the lcsync addon (lcsync.node). Each C file adds its functions to `exports` in its
 * own *_init and returns false after throwing. Only udp_batch.c uses the env's instance data (there is
 * one per env); other features keep their state behind the `data` pointer of their properties.
 */
#include <node_api.h>
#include <stdbool.h>

/* sendmmsg/recvmmsg for multicast data (native/udp_batch.c). */
bool udp_batch_init(napi_env env, napi_value exports);
/* Whether `fd` is a send socket udp_batch.open made in this env (tx_rounds.c sends only on those). */
bool udp_batch_owns_fd(napi_env env, int fd);
/* Framing and sending whole batches from a symbol plan, with UDP GSO (native/tx_rounds.c). */
bool tx_rounds_init(napi_env env, napi_value exports);
/* Raw ICMPv6 sockets for MLD (native/icmp6.c). */
bool icmp6_init(napi_env env, napi_value exports);

/* Nanosecond times on a path without following symlinks (native/fstimes.c). */
bool fstimes_init(napi_env env, napi_value exports);

/* The receive data plane: chunk datagrams parsed, placed and verified in C (native/rx_assembler.c). */
bool rx_assembler_init(napi_env env, napi_value exports);
bool relay_fwd_init(napi_env env, napi_value exports);

/* lstat of many paths in one call (native/statbatch.c). */
bool statbatch_init(napi_env env, napi_value exports);
/* new small files made in batches on a pool thread (native/smallfiles.c). */
bool smallfiles_init(napi_env env, napi_value exports);
/* syncfs(2) of a file system on a pool thread (native/syncfs.c). */
bool syncfs_init(napi_env env, napi_value exports);

/* malloc_trim for a long sync (native/memtrim.c). */
bool memtrim_init(napi_env env, napi_value exports);

/* RaptorQ's GF(256) symbol arithmetic with SIMD (native/gf256.c). */
bool gf256_init(napi_env env, napi_value exports);

#endif
