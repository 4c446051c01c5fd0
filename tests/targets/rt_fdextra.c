/* Round-trip target: fd state the other targets leave out.
 *
 *   rt_fdextra <trigger-file> <work-dir> [refuse]
 *
 * - a pipe whose write end is in packet mode (O_DIRECT) holding packets of
 *   3, 5 and 8 bytes, then 3 plain bytes; a FIFO in <work-dir> opened
 *   read-write in packet mode holding packets of 4 and 6 bytes;
 * - a directory fd part-way through getdents (on ext4 its offset is a hash
 *   cookie past 2^53), an O_PATH fd, and /proc/self/status read 10 bytes in;
 * - sockets with options set: an IPv4 UDP socket (IP_TTL, SO_MARK,
 *   IP_MULTICAST_TTL/LOOP, SO_TIMESTAMP, IP_PKTINFO, IP_RECVERR,
 *   IP_FREEBIND, IP_MTU_DISCOVER, SO_BINDTODEVICE "lo"), an IPv4 TCP
 *   listener (TCP_MAXSEG, TCP_SYNCNT, TCP_LINGER2, IP_TTL), a TCP socket
 *   never connected (SO_MARK, TCP_WINDOW_CLAMP), an IPv6 UDP socket
 *   (IPV6_UNICAST_HOPS, IPV6_RECVPKTINFO, SO_TIMESTAMPNS_NEW).
 * With "refuse": an IPv4 UDP socket and a unix datagram socket with a
 * classic BPF filter attached, IPv4 and IPv6 UDP sockets that joined
 * multicast groups on lo, /proc/1/stat held open, and a pipe holding a page of plain bytes
 * then a packet (one read returns both): the dump refuses them all but the UDP socket's
 * filter (saved since), the target runs on.
 *
 * Prints "ready pid=<pid> dirpos=<offset>", waits for the trigger file,
 * then checks each item (check lines, then PASS or FAIL).
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

static int opt(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  return getsockopt(fd, level, name, &v, &l) ? -999 : v;
}

static void set(int fd, int level, int name, int v) {
  if (setsockopt(fd, level, name, &v, sizeof v)) die("setsockopt");
}

static void put(int fd, const char *s) {
  if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

static void check_opt(const char *name, int fd, int level, int opt_name, int want) {
  int v = opt(fd, level, opt_name);
  check(name, v == want, "%d, not %d", v, want);
}

/* An option's bytes (getsockopt), kept to compare after the restore. */
struct saved_opt {
  unsigned char b[256];
  socklen_t len;
};

static void set_bytes(int fd, int level, int name, const void *v, socklen_t len, struct saved_opt *keep) {
  if (setsockopt(fd, level, name, v, len)) die("setsockopt bytes");
  keep->len = sizeof keep->b;
  if (getsockopt(fd, level, name, keep->b, &keep->len) || !keep->len) die("getsockopt bytes");
}

static void check_bytes(const char *name, int fd, int level, int opt_name, const struct saved_opt *was) {
  unsigned char b[256];
  socklen_t l = sizeof b;
  int r = getsockopt(fd, level, opt_name, b, &l);
  check(name, !r && l == was->len && !memcmp(b, was->b, l), "%u bytes, not %u", r ? 0 : l, was->len);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_fdextra <trigger-file> <work-dir> [refuse]");
  const char *trigger = argv[1], *work = argv[2];
  int refuse = argc > 3 && !strcmp(argv[3], "refuse");
  char path[4096];

  int pp[2];
  if (pipe2(pp, O_DIRECT)) die("pipe2");
  put(pp[1], "abc");
  put(pp[1], "defgh");
  put(pp[1], "ijklmnop");
  fcntl(pp[1], F_SETFL, 0);
  put(pp[1], "xyz");
  fcntl(pp[1], F_SETFL, O_DIRECT);

  snprintf(path, sizeof path, "%s/fifo", work);
  if (mkfifo(path, 0600)) die("mkfifo");
  int ff = open(path, O_RDWR);
  if (ff < 0 || fcntl(ff, F_SETFL, O_DIRECT)) die("fifo");
  put(ff, "1234");
  put(ff, "567890");

  snprintf(path, sizeof path, "%s/dir", work);
  if (mkdir(path, 0755)) die("mkdir");
  for (int i = 0; i < 40; i++) {
    char name[4200];
    snprintf(name, sizeof name, "%s/entry-%02d", path, i);
    close(open(name, O_CREAT | O_WRONLY, 0644));
  }
  int dir = open(path, O_RDONLY | O_DIRECTORY);
  char dents[256];
  if (dir < 0 || syscall(SYS_getdents64, dir, dents, sizeof dents) <= 0) die("getdents");
  off_t dirpos = lseek(dir, 0, SEEK_CUR);
  int opath = open(path, O_PATH);
  if (opath < 0) die("O_PATH");
  char first[16];
  int own = open("/proc/self/status", O_RDONLY);
  if (own < 0 || read(own, first, 10) != 10) die("/proc/self/status");

  int u4 = socket(AF_INET, SOCK_DGRAM, 0);
  set(u4, IPPROTO_IP, IP_TTL, 9);
  set(u4, SOL_SOCKET, SO_MARK, 7);
  set(u4, IPPROTO_IP, IP_MULTICAST_TTL, 5);
  set(u4, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
  set(u4, SOL_SOCKET, SO_TIMESTAMP, 1);
  set(u4, IPPROTO_IP, IP_PKTINFO, 1);
  set(u4, IPPROTO_IP, IP_RECVERR, 1);
  set(u4, IPPROTO_IP, IP_FREEBIND, 1);
  set(u4, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO);
  if (setsockopt(u4, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3)) die("SO_BINDTODEVICE");
  set(u4, SOL_SOCKET, SO_TIMESTAMPING, 0x18 /* SOF_TIMESTAMPING_RX_SOFTWARE | SOFTWARE */);
  struct saved_opt ipopts, hop, dst;
  /* Record route with room for one address, then the end of the list. */
  static const unsigned char rr[8] = {7, 7, 4, 0, 0, 0, 0, 0};
  set_bytes(u4, IPPROTO_IP, IP_OPTIONS, rr, sizeof rr, &ipopts);

  int tl = socket(AF_INET, SOCK_STREAM, 0);
  set(tl, IPPROTO_TCP, TCP_MAXSEG, 1000);
  set(tl, IPPROTO_TCP, TCP_SYNCNT, 3);
  set(tl, IPPROTO_TCP, TCP_LINGER2, 17);
  set(tl, IPPROTO_IP, IP_TTL, 11);
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(tl, (struct sockaddr *)&lo, sizeof lo) || listen(tl, 4)) die("listen");

  int tc = socket(AF_INET, SOCK_STREAM, 0);
  set(tc, SOL_SOCKET, SO_MARK, 3);
  set(tc, IPPROTO_TCP, TCP_WINDOW_CLAMP, 4000);
  set(tc, SOL_SOCKET, 65 /* SO_TIMESTAMPING_NEW: flags shown only in this form */, 0x18);

  int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
  set(u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 12);
  set(u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  set(u6, SOL_SOCKET, 64 /* SO_TIMESTAMPNS_NEW */, 1);
  set(u6, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
  set(u6, IPPROTO_IPV6, IPV6_RECVHOPOPTS, 1);
  set(u6, IPPROTO_IPV6, IPV6_RECVRTHDR, 1);
  set(u6, IPPROTO_IPV6, IPV6_RECVDSTOPTS, 1);
  /* Sticky extension headers: hop-by-hop and destination options, a PadN
   * each (this kernel takes no routing header from setsockopt). */
  static const unsigned char padn[8] = {0, 0, 1, 4, 0, 0, 0, 0};
  set_bytes(u6, IPPROTO_IPV6, IPV6_HOPOPTS, padn, sizeof padn, &hop);
  set_bytes(u6, IPPROTO_IPV6, IPV6_DSTOPTS, padn, sizeof padn, &dst);


  int fu = -1, fx[2] = {-1, -1}, mixed[2] = {-1, -1}, other = -1, m4 = -1, m6 = -1, ts = -1;
  if (refuse) {
    ts = socket(AF_INET, SOCK_DGRAM, 0);
    set(ts, SOL_SOCKET, SO_TIMESTAMPING, 0x80 | 0x2 /* SOF_TIMESTAMPING_OPT_ID | TX_SOFTWARE */);
    struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0xffff)};
    struct sock_fprog prog = {1, code};
    fu = socket(AF_INET, SOCK_DGRAM, 0);
    if (setsockopt(fu, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog)) die("filter");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, fx)) die("socketpair");
    if (setsockopt(fx[1], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog)) die("filter");
    /* A full page of plain bytes (a write merges into a plain buffer with
     * room, packet mode or not), then a packet. */
    m4 = socket(AF_INET, SOCK_DGRAM, 0);
    struct ip_mreqn mr = {.imr_ifindex = 1};
    inet_pton(AF_INET, "239.1.2.3", &mr.imr_multiaddr);
    if (setsockopt(m4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr)) die("IP_ADD_MEMBERSHIP");
    m6 = socket(AF_INET6, SOCK_DGRAM, 0);
    struct ipv6_mreq mr6 = {.ipv6mr_interface = 1};
    inet_pton(AF_INET6, "ff02::1:3", &mr6.ipv6mr_multiaddr);
    if (setsockopt(m6, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mr6, sizeof mr6)) die("IPV6_ADD_MEMBERSHIP");
    other = open("/proc/1/stat", O_RDONLY);
    if (other < 0) die("/proc/1/stat");
    if (pipe(mixed)) die("pipe");
    static char page[4096];
    memset(page, 'a', sizeof page);
    if (write(mixed[1], page, sizeof page) != (ssize_t)sizeof page) die("write");
    fcntl(mixed[1], F_SETFL, O_DIRECT);
    put(mixed[1], "cd");
  }

  print_ready("pid=%d dirpos=%lld", getpid(), (long long)dirpos);
  wait_trigger(trigger);

  char b[64];
  ssize_t r1 = read(pp[0], b, 2); /* the rest of this packet is dropped */
  ssize_t r2 = read(pp[0], b, sizeof b), r3 = read(pp[0], b, sizeof b);
  check("pipe-packets", r1 == 2 && r2 == 5 && r3 == 8 && !memcmp(b, "ijklmnop", 8),
        "%zd %zd %zd", r1, r2, r3);
  ssize_t r4 = read(pp[0], b, 1), r5 = read(pp[0], b + 1, sizeof b - 1);
  check("pipe-plain-tail", r4 == 1 && r5 == 2 && !memcmp(b, "xyz", 3), "%zd %zd", r4, r5);
  check("pipe-odirect", (fcntl(pp[1], F_GETFL) & O_DIRECT) != 0, "");
  fcntl(ff, F_SETFL, O_NONBLOCK);
  ssize_t f1 = read(ff, b, sizeof b), f2 = read(ff, b + 8, sizeof b - 8);
  check("fifo-packets", f1 == 4 && f2 == 6 && !memcmp(b, "1234", 4) && !memcmp(b + 8, "567890", 6),
        "%zd %zd", f1, f2);

  off_t now = lseek(dir, 0, SEEK_CUR);
  check("dir-pos", now == dirpos, "%lld, not %lld", (long long)now, (long long)dirpos);
  long more = syscall(SYS_getdents64, dir, dents, sizeof dents);
  check("dir-more", more > 0, "%ld", more);
  int fl = fcntl(opath, F_GETFL);
  check("o-path", fl >= 0 && (fl & O_PATH), "%x", fl);

  off_t ownpos = lseek(own, 0, SEEK_CUR);
  check("proc-own", ownpos == 10, "%lld", (long long)ownpos);

  check_opt("udp-ttl", u4, IPPROTO_IP, IP_TTL, 9);
  check_opt("udp-mark", u4, SOL_SOCKET, SO_MARK, 7);
  check_opt("udp-mcast-ttl", u4, IPPROTO_IP, IP_MULTICAST_TTL, 5);
  check_opt("udp-mcast-loop", u4, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
  check_opt("udp-timestamp", u4, SOL_SOCKET, SO_TIMESTAMP, 1);
  check_opt("udp-pktinfo", u4, IPPROTO_IP, IP_PKTINFO, 1);
  check_opt("udp-recverr", u4, IPPROTO_IP, IP_RECVERR, 1);
  check_opt("udp-freebind", u4, IPPROTO_IP, IP_FREEBIND, 1);
  check_opt("udp-pmtu", u4, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO);
  char dev[IFNAMSIZ] = {0};
  socklen_t dl = sizeof dev;
  getsockopt(u4, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl);
  check("udp-bindtodevice", !strcmp(dev, "lo"), "'%s'", dev);
  check_opt("tcp-maxseg", tl, IPPROTO_TCP, TCP_MAXSEG, 1000);
  check_opt("tcp-syncnt", tl, IPPROTO_TCP, TCP_SYNCNT, 3);
  check_opt("tcp-linger2", tl, IPPROTO_TCP, TCP_LINGER2, 17);
  check_opt("tcp-ttl", tl, IPPROTO_IP, IP_TTL, 11);
  check_opt("tcp-listening", tl, SOL_SOCKET, SO_ACCEPTCONN, 1);
  check_opt("tcp-mark", tc, SOL_SOCKET, SO_MARK, 3);
  check_opt("tcp-window-clamp", tc, IPPROTO_TCP, TCP_WINDOW_CLAMP, 4000);
  check_opt("udp6-hops", u6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 12);
  check_opt("udp6-recvpktinfo", u6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  check_opt("udp6-timestampns-new", u6, SOL_SOCKET, 64, 1);
  check_opt("udp-timestamping", u4, SOL_SOCKET, SO_TIMESTAMPING, 0x18);
  check_bytes("udp-ip-options", u4, IPPROTO_IP, IP_OPTIONS, &ipopts);
  check_opt("udp6-tclass", u6, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
  check_opt("tcp-timestamping-new", tc, SOL_SOCKET, 65, 0x18);
  check_opt("udp6-recvhopopts", u6, IPPROTO_IPV6, IPV6_RECVHOPOPTS, 1);
  check_opt("udp6-recvrthdr", u6, IPPROTO_IPV6, IPV6_RECVRTHDR, 1);
  check_opt("udp6-recvdstopts", u6, IPPROTO_IPV6, IPV6_RECVDSTOPTS, 1);
  check_bytes("udp6-hopopts", u6, IPPROTO_IPV6, IPV6_HOPOPTS, &hop);
  check_bytes("udp6-dstopts", u6, IPPROTO_IPV6, IPV6_DSTOPTS, &dst);


  if (refuse) {
    socklen_t n = 0;
    getsockopt(fu, SOL_SOCKET, SO_GET_FILTER, NULL, &n);
    check("refused-udp-filter", n == 1, "%u", n);
    n = 0;
    getsockopt(fx[1], SOL_SOCKET, SO_GET_FILTER, NULL, &n);
    check("refused-unix-filter", n == 1, "%u", n);
    static char all[8192];
    ssize_t m = read(mixed[0], all, sizeof all);
    struct ip_mreqn again = {.imr_ifindex = 1};
    inet_pton(AF_INET, "239.1.2.3", &again.imr_multiaddr);
    int e4 = setsockopt(m4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &again, sizeof again) ? errno : 0;
    check("refused-multicast", e4 == EADDRINUSE, "%d", e4); /* still a member */
    (void)m6;
    check_opt("refused-timestamping-id", ts, SOL_SOCKET, SO_TIMESTAMPING, 0x82);
    check("refused-proc-other", fcntl(other, F_GETFD) >= 0, "");
    check("refused-mixed-pipe", m == 4098 && !memcmp(all + 4096, "cd", 2), "%zd", m);
  }
  return verdict();
}
