{
  # Optional native addon: batched multicast sends with sendmmsg(2) (see native/udp_batch.c).
  # Built by the package's install script; lcsync falls back to node:dgram without it.
  'targets': [
    {
      'target_name': 'udp_batch',
      'sources': ['native/udp_batch.c'],
      'conditions': [
        ['OS!="linux"', {
          # sendmmsg is Linux-only: build nothing elsewhere rather than fail.
          'type': 'none',
          'sources!': ['native/udp_batch.c']
        }]
      ],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra', '-O2'],
      'defines': ['NAPI_DISABLE_CPP_EXCEPTIONS']
    }
  ]
}
