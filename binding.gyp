{
  # The lcsync addon (lcsync.node, N-API): sendmmsg/recvmmsg for data (native/udp_batch.c) and raw
  # ICMPv6 sockets for MLD (native/icmp6.c); native/addon.c registers each. Shipped prebuilt for
  # linux-x64 (prebuildify at pack time); node-gyp-build builds it from source where none fits.
  # lcsync falls back to node:dgram for data without it; MLD needs it.
  'targets': [
    {
      'target_name': 'lcsync',
      'sources': [
        'native/addon.c',
        'native/udp_batch.c',
        'native/icmp6.c',
      ],
      'conditions': [
        ['OS!="linux"', {
          # sendmmsg, recvmmsg and SO_BINDTODEVICE are Linux-only: build nothing elsewhere rather than fail.
          'type': 'none',
          'sources=': []
        }]
      ],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra', '-O2'],
      'defines': ['NAPI_DISABLE_CPP_EXCEPTIONS']
    }
  ]
}
