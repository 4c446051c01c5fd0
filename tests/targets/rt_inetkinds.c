/* Round-trip target: IPv4/IPv6 sockets other than TCP and UDP.
 *
 *   rt_inetkinds <trigger-file> <mode>
 *
 * Each mode sets its sockets up, prints "ready pid=<pid>", waits for the
 * trigger file (the test dumps and restores it meanwhile), then checks
 * them (check lines, then PASS or FAIL). Modes:
 *   ping     ICMP echo sockets (SOCK_DGRAM, IPPROTO_ICMP / IPPROTO_ICMPV6, as
 *            iputils ping uses them): an IPv4 one that pinged 127.0.0.1 (its
 *            echo identifier chosen then) with IP_TTL and SO_RCVTIMEO set, an
 *            IPv6 one bound to ::1 with an identifier of its own and connected
 *            to ::1 (port 0: getpeername says ENOTCONN); each pings again after;
 *            a third one shut down for receiving
 *   udplite  UDP-Lite sockets: two bound to 127.0.0.1, one connected to the
 *            other, with the checksum coverage options (UDPLITE_SEND_CSCOV,
 *            UDPLITE_RECV_CSCOV), one shut down for writing; datagrams both ways
 *   raw      raw sockets: IPPROTO_UDP with IP_HDRINCL and IP options
 *            (IP_OPTIONS), bound to 127.0.0.9; IPPROTO_ICMP with an ICMP_FILTER;
 *            IPv6 ICMPV6 with an ICMPV6_FILTER; protocol 253 bound to and
 *            connected to 127.0.0.11 (port 0), which sends to itself after; one
 *            shut down both ways
 *   queued   an IPv4 ping socket (fd 3) with an echo reply not read yet and a
 *            UDP-Lite socket (fd 4) with a datagram queued: the dump refuses them;
 *            both are still there after
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "common.h"

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define SOL_UDPLITE 136
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11

static int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len)) return -errno;
  return v;
}

static void set_int(int fd, int level, int name, int v) {
  if (setsockopt(fd, level, name, &v, sizeof v)) die("setsockopt");
}

static struct sockaddr_in v4(const char *addr, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, addr, &a.sin_addr);
  return a;
}

/* The port (a ping socket's echo identifier) of fd's bound address. */
static int local_port(int fd) {
  struct sockaddr_in6 a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (void *)&a, &len)) return -errno;
  return ntohs(a.sin6_port); /* same offset in sockaddr_in */
}

/* Sends an echo request on ping socket fd (to `to`, or its peer) and waits
 * for the reply: 1 when it came back with sequence `seq`. */
static int ping_once(int fd, int v6, const void *to, socklen_t tolen, int seq) {
  unsigned char pkt[16] = {0}, got[128];
  pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
  pkt[6] = seq >> 8, pkt[7] = seq & 0xff;
  memcpy(pkt + 8, "cryoping", 8);
  if (sendto(fd, pkt, sizeof pkt, 0, to, tolen) != (ssize_t)sizeof pkt) return 0;
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1) return 0;
  ssize_t n = recv(fd, got, sizeof got, 0);
  return n == (ssize_t)sizeof pkt && got[0] == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY) &&
         got[6] == (seq >> 8) && got[7] == (seq & 0xff) && !memcmp(got + 8, "cryoping", 8);
}

static int mode_ping(const char *trigger) {
  int a = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  int b = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
  if (a < 0 || b < 0) die("ping socket");
  set_int(a, IPPROTO_IP, IP_TTL, 33);
  struct timeval tv = {7, 0};
  if (setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)) die("SO_RCVTIMEO");
  struct sockaddr_in lo = v4("127.0.0.1", 0);
  if (!ping_once(a, 0, &lo, sizeof lo, 1)) die("first ping");
  struct sockaddr_in6 b6 = {.sin6_family = AF_INET6, .sin6_port = htons(4321)};
  inet_pton(AF_INET6, "::1", &b6.sin6_addr);
  if (bind(b, (void *)&b6, sizeof b6)) die("bind ping6");
  b6.sin6_port = 0;
  if (connect(b, (void *)&b6, sizeof b6)) die("connect ping6");
  if (!ping_once(b, 1, NULL, 0, 1)) die("first ping6");
  int ident_a = local_port(a), ident_b = local_port(b);
  int d = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  shutdown(d, SHUT_RD); /* ENOTCONN, and shut down anyway */
  struct pollfd pd = {d, POLLRDHUP, 0};
  if (poll(&pd, 1, 0) != 1 || !(pd.revents & POLLRDHUP)) die("SHUT_RD not taken");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int ia = local_port(a), ib = local_port(b);
  check("ping-ident", ia == ident_a && ia > 0, "ident %d (was %d)", ia, ident_a);
  check("ping6-ident", ib == 4321, "ident %d (was %d)", ib, ident_b);
  int ttl = get_int(a, IPPROTO_IP, IP_TTL);
  check("ping-ttl", ttl == 33, "IP_TTL %d", ttl);
  struct timeval now = {0, 0};
  socklen_t len = sizeof now;
  getsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &now, &len);
  check("ping-rcvtimeo", now.tv_sec == 7, "SO_RCVTIMEO %ld s", (long)now.tv_sec);
  check("ping-works", ping_once(a, 0, &lo, sizeof lo, 2), "no echo reply");
  check("ping6-connected", ping_once(b, 1, NULL, 0, 2), "no echo reply without an address");
  /* Shut down for receiving, a blocking recv returns 0 at once (SO_RCVTIMEO bounds a miss). */
  struct timeval bound = {2, 0};
  setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  char c;
  errno = 0;
  ssize_t n = recv(d, &c, 1, 0);
  pd.revents = 0;
  poll(&pd, 1, 0);
  check("ping-shut-rd", n == 0 && (pd.revents & POLLRDHUP), "recv gave %zd (%s), revents 0x%x", n,
        strerror(errno), pd.revents);
  return verdict();
}

static int mode_udplite(const char *trigger) {
  int a = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  int b = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  int c = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  if (a < 0 || b < 0 || c < 0) die("udplite socket");
  struct sockaddr_in sa = v4("127.0.0.1", 0), sb = sa, sc = sa;
  socklen_t len = sizeof sa;
  if (bind(a, (void *)&sa, sizeof sa) || getsockname(a, (void *)&sa, &len)) die("bind a");
  if (bind(b, (void *)&sb, sizeof sb) || getsockname(b, (void *)&sb, &len)) die("bind b");
  if (connect(b, (void *)&sa, sizeof sa)) die("connect b");
  if (bind(c, (void *)&sc, sizeof sc) || connect(c, (void *)&sa, sizeof sa)) die("c");
  if (shutdown(c, SHUT_WR)) die("shutdown");
  set_int(a, SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20);
  set_int(b, SOL_UDPLITE, UDPLITE_RECV_CSCOV, 12);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int sc_a = get_int(a, SOL_UDPLITE, UDPLITE_SEND_CSCOV);
  int rc_b = get_int(b, SOL_UDPLITE, UDPLITE_RECV_CSCOV);
  check("udplite-cscov", sc_a == 20 && rc_b == 12, "send %d recv %d (was 20 12)", sc_a, rc_b);
  struct sockaddr_in na, from;
  len = sizeof na;
  getsockname(a, (void *)&na, &len);
  check("udplite-bound", na.sin_port == sa.sin_port, "port %d (was %d)", ntohs(na.sin_port),
        ntohs(sa.sin_port));
  char buf[32];
  int sent = sendto(a, "to-b", 4, 0, (void *)&sb, sizeof sb) == 4;
  len = sizeof from;
  ssize_t n = sent ? recvfrom(b, buf, sizeof buf, MSG_DONTWAIT, (void *)&from, &len) : -1;
  check("udplite-a-to-b", n == 4 && !memcmp(buf, "to-b", 4) && from.sin_port == sa.sin_port,
        "got %zd", n);
  sent = send(b, "to-a", 4, 0) == 4;
  len = sizeof from;
  n = sent ? recvfrom(a, buf, sizeof buf, MSG_DONTWAIT, (void *)&from, &len) : -1;
  check("udplite-b-connected", n == 4 && from.sin_port == sb.sin_port, "got %zd", n);
  errno = 0;
  n = send(c, "x", 1, 0);
  check("udplite-shut-wr", n < 0 && errno == EPIPE, "send gave %zd (%s)", n, strerror(errno));
  return verdict();
}

static int mode_raw(const char *trigger) {
  int u = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
  int i = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  int i6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  int x = socket(AF_INET, SOCK_RAW, 253);
  if (u < 0 || i < 0 || i6 < 0 || x < 0) die("raw socket");
  set_int(u, IPPROTO_IP, IP_HDRINCL, 1);
  unsigned char opts[4] = {1, 1, 1, 0}; /* IPOPT_NOOP x3, IPOPT_END */
  if (setsockopt(u, IPPROTO_IP, IP_OPTIONS, opts, sizeof opts)) die("IP_OPTIONS");
  struct sockaddr_in su = v4("127.0.0.9", 0);
  if (bind(u, (void *)&su, sizeof su)) die("bind raw udp");
  /* Receive only timestamp requests: nothing else on the host reaches it. */
  struct icmp_filter f = {~(1u << ICMP_TIMESTAMP)};
  if (setsockopt(i, SOL_RAW, ICMP_FILTER, &f, sizeof f)) die("ICMP_FILTER");
  struct icmp6_filter f6;
  ICMP6_FILTER_SETBLOCKALL(&f6);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REQUEST, &f6);
  if (setsockopt(i6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof f6)) die("ICMP6_FILTER");
  struct sockaddr_in sx = v4("127.0.0.11", 0);
  if (bind(x, (void *)&sx, sizeof sx) || connect(x, (void *)&sx, sizeof sx)) die("raw 253");
  int h = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  shutdown(h, SHUT_RDWR);
  unsigned char opts_was[40];
  socklen_t olen_was = sizeof opts_was;
  getsockopt(u, IPPROTO_IP, IP_OPTIONS, opts_was, &olen_was);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int hdr = get_int(u, IPPROTO_IP, IP_HDRINCL);
  check("raw-hdrincl", hdr == 1, "IP_HDRINCL %d", hdr);
  unsigned char opts_now[40];
  socklen_t olen = sizeof opts_now;
  getsockopt(u, IPPROTO_IP, IP_OPTIONS, opts_now, &olen);
  check("raw-ip-options", olen == olen_was && olen > 0 && !memcmp(opts_now, opts_was, olen),
        "%u bytes of IP options (were %u)", olen, olen_was);
  struct sockaddr_in nu;
  socklen_t len = sizeof nu;
  getsockname(u, (void *)&nu, &len);
  check("raw-bound", nu.sin_addr.s_addr == su.sin_addr.s_addr && ntohs(nu.sin_port) == IPPROTO_UDP,
        "bound to %s:%d", inet_ntoa(nu.sin_addr), ntohs(nu.sin_port));
  struct icmp_filter fn = {0};
  len = sizeof fn;
  getsockopt(i, SOL_RAW, ICMP_FILTER, &fn, &len);
  check("raw-icmp-filter", fn.data == f.data, "ICMP_FILTER 0x%x (was 0x%x)", fn.data, f.data);
  struct icmp6_filter fn6;
  len = sizeof fn6;
  memset(&fn6, 0, sizeof fn6);
  getsockopt(i6, IPPROTO_ICMPV6, ICMP6_FILTER, &fn6, &len);
  check("raw-icmp6-filter", !memcmp(&fn6, &f6, sizeof f6), "ICMP6_FILTER differs");
  int proto = get_int(x, SOL_SOCKET, SO_PROTOCOL);
  check("raw-protocol", proto == 253, "SO_PROTOCOL %d", proto);
  char buf[64];
  int sent = send(x, "raw-self", 8, 0) == 8;
  struct pollfd p = {x, POLLIN, 0};
  ssize_t n = sent && poll(&p, 1, 2000) == 1 ? recv(x, buf, sizeof buf, 0) : -1;
  /* A raw IPv4 socket receives the IP header (20 bytes) too. */
  struct pollfd ph = {h, 0, 0};
  poll(&ph, 1, 0);
  check("raw-shut-rdwr", ph.revents & POLLHUP, "poll revents 0x%x", ph.revents);
  check("raw-connected", n == 28 && !memcmp(buf + 20, "raw-self", 8), "got %zd (%s)", n,
        sent ? "" : strerror(errno));
  return verdict();
}

static int mode_queued(const char *trigger) {
  int p = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  int u = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
  if (p != 3 || u != 4) die("sockets not on fds 3 and 4");
  struct sockaddr_in lo = v4("127.0.0.1", 0), su = lo;
  socklen_t len = sizeof su;
  if (bind(u, (void *)&su, sizeof su) || getsockname(u, (void *)&su, &len)) die("bind");
  unsigned char pkt[16] = {ICMP_ECHO};
  if (sendto(p, pkt, sizeof pkt, 0, (void *)&lo, sizeof lo) != sizeof pkt) die("ping");
  if (sendto(u, "kept", 4, 0, (void *)&su, sizeof su) != 4) die("udplite send");
  struct pollfd w[2] = {{p, POLLIN, 0}, {u, POLLIN, 0}};
  for (int i = 0; i < 20 && !(w[0].revents && w[1].revents); i++) poll(w, 2, 100);
  if (!w[0].revents || !w[1].revents) die("nothing queued");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  unsigned char got[64];
  ssize_t n = recv(p, got, sizeof got, MSG_DONTWAIT);
  check("queued-ping-kept", n == sizeof pkt && got[0] == ICMP_ECHOREPLY, "got %zd", n);
  n = recv(u, got, sizeof got, MSG_DONTWAIT);
  check("queued-udplite-kept", n == 4 && !memcmp(got, "kept", 4), "got %zd", n);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_inetkinds <trigger-file> <mode>");
  const char *trigger = argv[1], *mode = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(mode, "ping")) return mode_ping(trigger);
  if (!strcmp(mode, "udplite")) return mode_udplite(trigger);
  if (!strcmp(mode, "raw")) return mode_raw(trigger);
  if (!strcmp(mode, "queued")) return mode_queued(trigger);
  die("unknown mode");
}
