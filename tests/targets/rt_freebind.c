/* Round-trip target for sockets bound to an address this host does not have
 * (documentation prefixes 2001:db8::/32 and 192.0.2.0/24), through
 * IP_FREEBIND:
 *   on:  an IPv6 UDP socket and an IPv4 TCP listener, IP_FREEBIND kept on;
 *   off: the same, IP_FREEBIND turned off again after the bind.
 *
 * After the restore both are bound to the same address and port, the
 * listener still listens, and IP_FREEBIND reads as it did.
 *
 * usage: rt_freebind <trigger> <on|off>
 * prints: ready pid=<pid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int freebind(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  getsockopt(fd, SOL_IP, IP_FREEBIND, &v, &len);
  return v;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_freebind <trigger> <on|off>");
  int keep = !strcmp(argv[2], "on"), one = 1, zero = 0;
  int u = socket(AF_INET6, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
  if (u < 0 || t < 0) die("socket");
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
  inet_pton(AF_INET6, "2001:db8::42:7", &a6.sin6_addr);
  struct sockaddr_in a4 = {.sin_family = AF_INET};
  inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
  if (setsockopt(u, SOL_IP, IP_FREEBIND, &one, sizeof one) ||
      setsockopt(t, SOL_IP, IP_FREEBIND, &one, sizeof one)) {
    die("IP_FREEBIND");
  }
  if (bind(u, (struct sockaddr *)&a6, sizeof a6) || bind(t, (struct sockaddr *)&a4, sizeof a4)) {
    die("bind");
  }
  if (listen(t, 5)) die("listen");
  if (!keep) {
    setsockopt(u, SOL_IP, IP_FREEBIND, &zero, sizeof zero);
    setsockopt(t, SOL_IP, IP_FREEBIND, &zero, sizeof zero);
  }
  struct sockaddr_in6 b6;
  struct sockaddr_in b4;
  socklen_t l6 = sizeof b6, l4 = sizeof b4;
  getsockname(u, (struct sockaddr *)&b6, &l6);
  getsockname(t, (struct sockaddr *)&b4, &l4);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  struct sockaddr_in6 c6;
  struct sockaddr_in c4;
  l6 = sizeof c6, l4 = sizeof c4;
  int r6 = getsockname(u, (struct sockaddr *)&c6, &l6);
  int r4 = getsockname(t, (struct sockaddr *)&c4, &l4);
  check("udp6-bound", r6 == 0 && !memcmp(&c6.sin6_addr, &b6.sin6_addr, 16) &&
                          c6.sin6_port == b6.sin6_port && c6.sin6_port != 0,
        "port %d, was %d", ntohs(c6.sin6_port), ntohs(b6.sin6_port));
  check("tcp4-bound", r4 == 0 && c4.sin_addr.s_addr == b4.sin_addr.s_addr &&
                          c4.sin_port == b4.sin_port && c4.sin_port != 0,
        "port %d, was %d", ntohs(c4.sin_port), ntohs(b4.sin_port));
  int acc = 0;
  socklen_t al = sizeof acc;
  getsockopt(t, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al);
  check("tcp4-listens", acc == 1, "SO_ACCEPTCONN %d", acc);
  check("freebind", freebind(u) == keep && freebind(t) == keep, "IP_FREEBIND %d %d, not %d",
        freebind(u), freebind(t), keep);
  return verdict();
}
