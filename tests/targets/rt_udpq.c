/* Round-trip target: UDP sockets with datagrams waiting to be read.
 *
 *   rt_udpq <trigger-file> [refuse]
 *
 * - r4: IPv4 socket bound to 127.0.0.1 (not connected, SO_RCVBUF set),
 *   holding datagrams from two senders a4 and b4 (different ports),
 *   interleaved, one of them empty, one of 1200 bytes, then one from
 *   203.0.113.7:4000 (an address of no interface here, made with a raw socket);
 * - r6: dual-stack IPv6 socket bound to [::], holding datagrams from an
 *   IPv6 sender on [::1] (one empty) and one from the IPv4 sender a4
 *   (source ::ffff:127.0.0.1);
 * - rc: a connected IPv4 socket holding a datagram from its peer pc.
 * - rp: an empty socket with SO_PEEK_OFF 5.
 * With "refuse": rx, bound, holds a datagram from a4 and was then connected
 * to b4 (a connected socket accepts nothing from a4), rg, with UDP_GRO on,
 * and ri, with IP_RECVTTL on, hold one from b4: the dump refuses all three.
 *
 * Prints "ready pid=<pid>", waits for the trigger file, then reads every
 * queue and checks each datagram's payload, length, source address and
 * port and their order, and that nothing more is queued; then that the
 * sockets still work (check lines, then PASS or FAIL).
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define MAXQ 8

struct expect {
  struct sockaddr_storage from;
  socklen_t fromlen;
  char data[1500];
  size_t len;
};

struct queue {
  const char *name;
  int fd;
  int n;
  struct expect e[MAXQ];
};

static int udp(int family) {
  int s = socket(family, SOCK_DGRAM, 0);
  if (s < 0) die("socket");
  return s;
}

static void bind_any(int s, int family, const char *addr) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &a->sin_addr);
    len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr, &a->sin6_addr);
    len = sizeof *a;
  }
  if (bind(s, (struct sockaddr *)&ss, len) != 0) die("bind");
}

static struct sockaddr_storage name_of(int s, socklen_t *len) {
  struct sockaddr_storage ss;
  *len = sizeof ss;
  if (getsockname(s, (struct sockaddr *)&ss, len) != 0) die("getsockname");
  return ss;
}

static int port_of(int s) {
  socklen_t len;
  struct sockaddr_storage ss = name_of(s, &len);
  return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                       : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* The address `to` as seen from a socket of family `family` (IPv4 as v4-mapped on IPv6). */
static struct sockaddr_storage as_seen(struct sockaddr_storage from, int family, socklen_t *len) {
  if (family == AF_INET || from.ss_family == AF_INET6) {
    *len = from.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return from;
  }
  struct sockaddr_in *v4 = (struct sockaddr_in *)&from;
  struct sockaddr_storage out;
  memset(&out, 0, sizeof out);
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out;
  v6->sin6_family = AF_INET6;
  v6->sin6_port = v4->sin_port;
  v6->sin6_addr.s6_addr[10] = 0xff;
  v6->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&v6->sin6_addr.s6_addr[12], &v4->sin_addr, 4);
  *len = sizeof *v6;
  return out;
}

/* Sends `len` bytes from `sender` to the address `r` is bound to (loopback for a wildcard). */
static void send_to(struct queue *q, int family, int sender, const char *data, size_t len) {
  socklen_t tlen;
  struct sockaddr_storage to = name_of(q->fd, &tlen);
  if (to.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&to;
    int sender_family;
    socklen_t sl = sizeof sender_family;
    getsockopt(sender, SOL_SOCKET, SO_DOMAIN, &sender_family, &sl);
    if (sender_family == AF_INET) { /* to 127.0.0.1, the same port */
      struct sockaddr_in *b = (struct sockaddr_in *)&to;
      int port = a->sin6_port;
      memset(&to, 0, sizeof to);
      b->sin_family = AF_INET;
      b->sin_port = port;
      b->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      tlen = sizeof *b;
    } else if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
      a->sin6_addr = in6addr_loopback;
    }
  }
  if (sendto(sender, data, len, 0, (struct sockaddr *)&to, tlen) != (ssize_t)len) die("sendto");
  struct expect *e = &q->e[q->n++];
  socklen_t flen;
  e->from = as_seen(name_of(sender, &flen), family, &e->fromlen);
  memcpy(e->data, data, len);
  e->len = len;
}

/* Queues on IPv4 socket q (bound to 127.0.0.1) a datagram from 203.0.113.7:4000, an
 * address of no interface here, made by hand through a raw socket. */
static void send_forged(struct queue *q, const char *data, size_t len) {
  unsigned char pkt[28 + 64];
  memset(pkt, 0, sizeof pkt);
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(4000)};
  inet_pton(AF_INET, "203.0.113.7", &from.sin_addr);
  socklen_t tlen;
  struct sockaddr_storage to = name_of(q->fd, &tlen);
  struct sockaddr_in *t = (struct sockaddr_in *)&to;
  pkt[0] = 0x45;
  pkt[2] = (28 + len) >> 8;
  pkt[3] = (28 + len) & 0xff;
  pkt[8] = 64;
  pkt[9] = IPPROTO_UDP;
  memcpy(pkt + 12, &from.sin_addr, 4);
  memcpy(pkt + 16, &t->sin_addr, 4);
  memcpy(pkt + 20, &from.sin_port, 2);
  memcpy(pkt + 22, &t->sin_port, 2);
  pkt[24] = (8 + len) >> 8;
  pkt[25] = (8 + len) & 0xff; /* UDP checksum 0: none (IPv4) */
  memcpy(pkt + 28, data, len);
  int raw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (raw < 0) die("raw socket");
  if (sendto(raw, pkt, 28 + len, 0, (struct sockaddr *)&to, tlen) != (ssize_t)(28 + len)) {
    die("sendto raw");
  }
  close(raw);
  struct expect *e = &q->e[q->n++];
  memset(&e->from, 0, sizeof e->from);
  memcpy(&e->from, &from, sizeof from);
  e->fromlen = sizeof from;
  memcpy(e->data, data, len);
  e->len = len;
}

/* Reads queue `q` and checks it against what was sent, then that it is empty. */
static void check_queue(struct queue *q) {
  char buf[2000], check_name[64];
  for (int i = 0; i < q->n; i++) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    memset(&from, 0, sizeof from);
    ssize_t n = recvfrom(q->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
    struct expect *e = &q->e[i];
    snprintf(check_name, sizeof check_name, "%s-%d", q->name, i + 1);
    check(check_name,
          n == (ssize_t)e->len && memcmp(buf, e->data, e->len) == 0 && flen == e->fromlen &&
              memcmp(&from, &e->from, flen) == 0,
          "got %zd bytes (want %zu), source port %d (want %d), errno %d", n, e->len,
          ntohs(((struct sockaddr_in *)&from)->sin_port),
          ntohs(((struct sockaddr_in *)&e->from)->sin_port), errno);
  }
  snprintf(check_name, sizeof check_name, "%s-empty", q->name);
  ssize_t n = recv(q->fd, buf, sizeof buf, MSG_DONTWAIT);
  check(check_name, n < 0 && errno == EAGAIN, "one more datagram of %zd bytes", n);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_udpq <trigger-file> [refuse]");
  int refuse = argc > 2 && strcmp(argv[2], "refuse") == 0;
  char big[1200];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 23);

  struct queue r4 = {.name = "v4", .fd = udp(AF_INET)};
  int rcvbuf = 16384;
  if (setsockopt(r4.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0) die("SO_RCVBUF");
  bind_any(r4.fd, AF_INET, "127.0.0.1");
  int a4 = udp(AF_INET), b4 = udp(AF_INET);
  bind_any(a4, AF_INET, "127.0.0.1");
  bind_any(b4, AF_INET, "127.0.0.1");
  send_to(&r4, AF_INET, a4, "alpha-1", 7);
  send_to(&r4, AF_INET, b4, "bravo-1", 7);
  send_to(&r4, AF_INET, a4, "", 0);
  send_to(&r4, AF_INET, b4, big, sizeof big);
  send_to(&r4, AF_INET, a4, "alpha-3", 7);
  send_forged(&r4, "from-outside", 12);

  struct queue r6 = {.name = "v6", .fd = udp(AF_INET6)};
  int off = 0;
  if (setsockopt(r6.fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) die("V6ONLY");
  bind_any(r6.fd, AF_INET6, "::");
  int s6 = udp(AF_INET6);
  bind_any(s6, AF_INET6, "::1");
  send_to(&r6, AF_INET6, s6, "six-1", 5);
  send_to(&r6, AF_INET6, a4, "four-to-six", 11);
  send_to(&r6, AF_INET6, s6, "", 0);
  send_to(&r6, AF_INET6, s6, "six-3", 5);

  struct queue rc = {.name = "conn", .fd = udp(AF_INET)};
  int pc = udp(AF_INET);
  bind_any(rc.fd, AF_INET, "127.0.0.1");
  bind_any(pc, AF_INET, "127.0.0.1");
  socklen_t plen;
  struct sockaddr_storage pc_addr = name_of(pc, &plen);
  if (connect(rc.fd, (struct sockaddr *)&pc_addr, plen) != 0) die("connect rc");
  send_to(&rc, AF_INET, pc, "to-connected", 12);

  /* An empty socket peeking with SO_PEEK_OFF 5: the offset comes back. */
  int rp = udp(AF_INET), five = 5;
  bind_any(rp, AF_INET, "127.0.0.1");
  if (setsockopt(rp, SOL_SOCKET, SO_PEEK_OFF, &five, sizeof five) != 0) die("SO_PEEK_OFF");

  struct queue rx = {.name = "refused", .fd = -1};
  struct queue rg = {.name = "refused-gro", .fd = -1};
  struct queue ri = {.name = "refused-ttl", .fd = -1};
  if (refuse) {
    /* UDP_GRO: queued datagrams may be merged ones. */
    rg.fd = udp(AF_INET);
    int one = 1;
    if (setsockopt(rg.fd, SOL_UDP, UDP_GRO, &one, sizeof one) != 0) die("UDP_GRO");
    bind_any(rg.fd, AF_INET, "127.0.0.1");
    send_to(&rg, AF_INET, b4, "gro", 3);
    /* IP_RECVTTL: the process reads each datagram's TTL with it. */
    ri.fd = udp(AF_INET);
    if (setsockopt(ri.fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof one) != 0) die("IP_RECVTTL");
    bind_any(ri.fd, AF_INET, "127.0.0.1");
    send_to(&ri, AF_INET, b4, "ttl", 3);
    rx.fd = udp(AF_INET);
    bind_any(rx.fd, AF_INET, "127.0.0.1");
    send_to(&rx, AF_INET, a4, "early", 5);
    struct sockaddr_storage b4_addr = name_of(b4, &plen);
    if (connect(rx.fd, (struct sockaddr *)&b4_addr, plen) != 0) die("connect rx");
  }

  int ports[] = {port_of(r4.fd), port_of(a4), port_of(b4), port_of(r6.fd), port_of(s6),
                 port_of(rc.fd), port_of(pc)};
  printf("ports r4=%d a4=%d b4=%d r6=%d s6=%d rc=%d pc=%d rx=%d rg=%d ri=%d\n", ports[0],
         ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], refuse ? port_of(rx.fd) : 0,
         refuse ? port_of(rg.fd) : 0, refuse ? port_of(ri.fd) : 0);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  int now[] = {port_of(r4.fd), port_of(a4), port_of(b4), port_of(r6.fd), port_of(s6),
               port_of(rc.fd), port_of(pc)};
  check("ports", memcmp(ports, now, sizeof ports) == 0, "");
  /* SO_PEEK_OFF as it was: off on the queued sockets (cryo peeked with it), 5 on rp. */
  int offs[4], fds[4] = {r4.fd, r6.fd, rc.fd, rp};
  for (int i = 0; i < 4; i++) {
    socklen_t l = sizeof offs[i];
    if (getsockopt(fds[i], SOL_SOCKET, SO_PEEK_OFF, &offs[i], &l) != 0) offs[i] = -2;
  }
  check("peek-off", offs[0] == -1 && offs[1] == -1 && offs[2] == -1 && offs[3] == 5,
        "%d %d %d %d", offs[0], offs[1], offs[2], offs[3]);
  check_queue(&r4);
  check_queue(&r6);
  check_queue(&rc);
  if (refuse) {
    check_queue(&rx);
    check_queue(&rg);
    check_queue(&ri);
  }
  struct sockaddr_storage peer;
  socklen_t peerlen = sizeof peer;
  check("conn-peer",
        getpeername(rc.fd, (struct sockaddr *)&peer, &peerlen) == 0 && peerlen == plen &&
            memcmp(&peer, &pc_addr, plen) == 0,
        "");
  /* The sockets still work: a fresh datagram from each sender arrives after the restored ones. */
  r4.n = r6.n = rc.n = 0;
  send_to(&r4, AF_INET, b4, "after", 5);
  send_to(&r6, AF_INET6, s6, "after6", 6);
  send_to(&rc, AF_INET, pc, "after-conn", 10);
  r4.name = "v4-after";
  r6.name = "v6-after";
  rc.name = "conn-after";
  check_queue(&r4);
  check_queue(&r6);
  check_queue(&rc);
  return verdict();
}
