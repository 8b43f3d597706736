/*
 * The lab's raw UDP multicast ceiling, for transfer-bench.js --line-rate: a plain sender and a plain
 * receiver with no protocol at all, so lcsync's goodput can be put beside what the same wire, kernel
 * and machine carry at most. Built by the benchmark with the system C compiler (cc); no libraries.
 *
 *   mcast-blast send IFNAME GROUP PORT SIZE SECONDS   datagrams of SIZE bytes as fast as sendmmsg
 *                                                      goes (a blocking socket: a full send queue
 *                                                      waits, it does not drop), for SECONDS
 *   mcast-blast recv IFNAME GROUP PORT SECONDS RCVBUF  join GROUP on IFNAME and count what arrives
 *                                                      until SECONDS pass or 1 s of silence after
 *                                                      the first datagram
 * Each prints one line: "sent <datagrams> <bytes> <seconds>" or "recv <datagrams> <bytes> <seconds>"
 * (seconds from the first datagram to the last). Exit 2 on bad arguments, 1 on a system error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SIZE 65507

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int fail(const char *what) {
  fprintf(stderr, "mcast-blast: %s: %s\n", what, strerror(errno));
  return 1;
}

static int usage(void) {
  fprintf(stderr, "usage: mcast-blast send IFNAME GROUP PORT SIZE SECONDS | recv IFNAME GROUP PORT SECONDS RCVBUF\n");
  return 2;
}

static int blast(unsigned ifindex, struct sockaddr_in6 *dst, long size, double seconds) {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return fail("socket");
  int hops = 1, loop = 0;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) < 0) return fail("IPV6_MULTICAST_IF");
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) < 0) return fail("IPV6_MULTICAST_HOPS");
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop) < 0) return fail("IPV6_MULTICAST_LOOP");
  static char buf[MAX_SIZE];
  memset(buf, 0xa5, sizeof buf);
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = buf;
    iov[i].iov_len = (size_t)size;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = dst;
    msgs[i].msg_hdr.msg_namelen = sizeof *dst;
  }
  long long count = 0;
  double t0 = now(), t = t0;
  while (t - t0 < seconds) {
    int n = sendmmsg(fd, msgs, BATCH, 0);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
      return fail("sendmmsg");
    }
    count += n;
    t = now();
  }
  printf("sent %lld %lld %.6f\n", count, count * size, t - t0);
  close(fd);
  return 0;
}

static int sink(unsigned ifindex, struct sockaddr_in6 *grp, double seconds, int rcvbuf) {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return fail("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) return fail("SO_RCVBUF");
  struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_port = grp->sin6_port, .sin6_addr = in6addr_any};
  if (bind(fd, (struct sockaddr *)&any, sizeof any) < 0) return fail("bind");
  struct ipv6_mreq mreq = {.ipv6mr_multiaddr = grp->sin6_addr, .ipv6mr_interface = ifindex};
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mreq, sizeof mreq) < 0) return fail("IPV6_JOIN_GROUP");
  struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  /* Ready: the caller starts the sender once it sees this line. */
  fprintf(stderr, "joined\n");
  static char bufs[BATCH][2048];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    iov[i].iov_base = bufs[i];
    iov[i].iov_len = sizeof bufs[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  long long count = 0, bytes = 0;
  double start = now(), first = 0, last = 0;
  for (;;) {
    double t = now();
    if (t - start > seconds || (count > 0 && t - last > 1.0)) break;
    int n = recvmmsg(fd, msgs, BATCH, 0, NULL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return fail("recvmmsg");
    }
    t = now();
    if (count == 0) first = t;
    last = t;
    count += n;
    for (int i = 0; i < n; i++) bytes += msgs[i].msg_len;
  }
  printf("recv %lld %lld %.6f\n", count, bytes, count > 0 ? last - first : 0.0);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6) return usage();
  unsigned ifindex = if_nametoindex(argv[2]);
  if (ifindex == 0) return fail(argv[2]);
  struct sockaddr_in6 grp = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)atoi(argv[4])), .sin6_scope_id = ifindex};
  if (inet_pton(AF_INET6, argv[3], &grp.sin6_addr) != 1) return usage();
  if (strcmp(argv[1], "send") == 0 && argc == 7) {
    long size = atol(argv[5]);
    double seconds = atof(argv[6]);
    if (size < 1 || size > MAX_SIZE || !(seconds > 0)) return usage();
    return blast(ifindex, &grp, size, seconds);
  }
  if (strcmp(argv[1], "recv") == 0 && argc == 7) {
    double seconds = atof(argv[5]);
    int rcvbuf = atoi(argv[6]);
    if (!(seconds > 0) || rcvbuf < 1) return usage();
    return sink(ifindex, &grp, seconds, rcvbuf);
  }
  return usage();
}
