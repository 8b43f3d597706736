{
  # The lcsync addon (lcsync.node, N-API): sendmmsg/recvmmsg for data (native/udp_batch.c), batches
  # framed from a symbol plan and sent with UDP GSO (native/tx_rounds.c), raw
  # ICMPv6 sockets for MLD (native/icmp6.c) and BLAKE3 from the official C implementation with its
  # SIMD code (native/blake3_napi.c, native/blake3/), nanosecond file times (native/fstimes.c),
  # the chunk-assembling receiver (native/rx_assembler.c), the relay's forwarding path (native/relay_fwd.c),
  # lstat of many paths at once (native/statbatch.c), new small files written in batches off the JS
  # thread (native/smallfiles.c), syncfs of a file system off the JS thread (native/syncfs.c),
  # malloc_trim for a long sync (native/memtrim.c), RaptorQ's GF(256) arithmetic (native/gf256.c);
  # native/addon.c registers each. Shipped prebuilt
  # for linux-x64 (prebuildify at pack time); node-gyp-build builds it from source where none fits.
  # lcsync falls back to node:dgram for data and to wasm BLAKE3 without it; MLD needs it.
  'targets': [
    {
      'target_name': 'lcsync',
      'sources': [
        'native/addon.c',
        'native/udp_batch.c',
        'native/tx_rounds.c',
        'native/icmp6.c',
        'native/fstimes.c',
        'native/rx_assembler.c',
        'native/relay_fwd.c',
        'native/statbatch.c',
        'native/smallfiles.c',
        'native/syncfs.c',
        'native/memtrim.c',
        'native/gf256.c',
        'native/blake3_napi.c',
        'native/blake3/blake3.c',
        'native/blake3/blake3_dispatch.c',
        'native/blake3/blake3_portable.c'
      ],
      'conditions': [
        ['target_arch=="x64"', {
          # The upstream x86-64 assembly: no per-file -mavx* flags needed (gyp has one set of
          # cflags per target), and blake3_dispatch.c picks the best one the CPU has at run time.
          'sources': [
            'native/blake3/blake3_sse2_x86-64_unix.S',
            'native/blake3/blake3_sse41_x86-64_unix.S',
            'native/blake3/blake3_avx2_x86-64_unix.S',
            'native/blake3/blake3_avx512_x86-64_unix.S'
          ]
        }],
        ['target_arch=="arm64"', {
          # NEON is part of AArch64: blake3_impl.h turns it on there, no flags needed.
          'sources': ['native/blake3/blake3_neon.c']
        }],
        ['target_arch!="x64" and target_arch!="arm64"', {
          # Any other CPU (including 32-bit x86): the portable C code only.
          'defines': ['BLAKE3_NO_SSE2', 'BLAKE3_NO_SSE41', 'BLAKE3_NO_AVX2', 'BLAKE3_NO_AVX512', 'BLAKE3_USE_NEON=0']
        }],
        ['OS!="linux"', {
          # sendmmsg, recvmmsg and SO_BINDTODEVICE are Linux-only: build nothing elsewhere rather than
          # fail (last, so it empties what the conditions above added; BLAKE3 falls back to wasm).
          'type': 'none',
          'sources=': []
        }]
      ],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra', '-O2'],
      'defines': ['NAPI_DISABLE_CPP_EXCEPTIONS']
    }
  ]
}
