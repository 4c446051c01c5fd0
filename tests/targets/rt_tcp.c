/* TCP and UDP sockets across a checkpoint (tests/restore_tcp_test.ts).
 *
 * usage: rt_tcp <trigger-file> [refuse]
 *
 * Sets up: an IPv4 listener (SO_REUSEADDR, small SO_RCVBUF inherited by
 * accepted sockets, backlog 7) and an IPv6 listener (v6only, SO_REUSEPORT,
 * backlog 5); a connection inside the process (client C -> accepted A)
 * where C has unsent bytes in its send queue (A's receive buffer is full,
 * A has not read) and C has unread bytes from A; an IPv6 connection inside
 * the process with unread bytes both ways; a connection to a child
 * process, unread bytes both ways; a TCP socket bound but never connected
 * and an unbound one; a connection from the
 * test (outside) accepted as O, with the test's bytes unread in O; UDP
 * sockets U1 (bound) and U2 (bound, connected to U1); a NETLINK_ROUTE
 * socket bound to groups RTMGRP_LINK and 33, with NETLINK_EXT_ACK.
 *
 * Prints "ready pid=<pid> port4=<p> port6=<p>", accepts the test's
 * connection, prints "armed", waits for the trigger file, then checks that
 * everything is as it was and still works (new clients are accepted, the
 * queued bytes arrive, the outside connection answers).
 *
 * With "refuse": additionally a datagram waits in U1, the test makes a
 * second connection that is never accepted, a connection whose peer closed
 * sits in CLOSE_WAIT and one is shut down for reading (both saved: the
 * refusal is for the others), one has urgent data,
 * a non-blocking connect() failed on another,
 * unread, a route netlink socket has a reply waiting, and a child process
 * shares a third UDP socket; prints "closewait=<port> shared=<port>" and
 * "shutrd=<port> urgent=<port>" (the client ends' ports). After the
 * trigger the datagram, the connection, the netlink reply and the urgent
 * byte are drained first.
 */
#define _GNU_SOURCE
#include "common.h"
#include <sys/prctl.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <sys/wait.h>

#define BULK (256 * 1024)

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 9)); }

static int sock(int family, int type) {
  int fd = socket(family, type, 0);
  if (fd < 0) die("socket");
  return fd;
}

static void setint(int fd, int level, int name, int v, const char *what) {
  if (setsockopt(fd, level, name, &v, sizeof v) != 0) die(what);
}

static int getint(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) != 0) return -1000 - errno;
  return v;
}

struct addrs {
  struct sockaddr_storage local, peer;
  socklen_t llen, plen;
};

static void addrs_of(int fd, struct addrs *a) {
  memset(a, 0, sizeof *a);
  a->llen = a->plen = sizeof(struct sockaddr_storage);
  getsockname(fd, (struct sockaddr *)&a->local, &a->llen);
  if (getpeername(fd, (struct sockaddr *)&a->peer, &a->plen) != 0) a->plen = 0;
}

static int same_addrs(int fd, const struct addrs *before) {
  struct addrs now;
  addrs_of(fd, &now);
  return now.llen == before->llen && now.plen == before->plen &&
         memcmp(&now.local, &before->local, now.llen) == 0 &&
         memcmp(&now.peer, &before->peer, now.plen) == 0;
}

static int port_of(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                 : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Reads exactly n bytes within 5 s; returns how many arrived. */
static size_t read_n(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

/* Writes all of buf (the fd may be non-blocking). */
static int write_all(int fd, const void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = write(fd, (const char *)buf + done, n - done);
    if (r < 0 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, 5000) <= 0) return -1;
      continue;
    }
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return 0;
}

static int expect(int fd, const char *text) {
  char buf[256] = {0};
  size_t n = strlen(text);
  return read_n(fd, buf, n) == n && memcmp(buf, text, n) == 0;
}

/* Connects a new client to the listener on (family, port), accepts it, and exchanges a byte. */
/* Sends an RTM_GETLINK dump request on netlink socket fd. */
static int request_links(int fd) {
  struct {
    struct nlmsghdr h;
    struct rtgenmsg g;
  } req = {.h = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETLINK,
                 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
           .g = {.rtgen_family = AF_UNSPEC}};
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  return sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) == sizeof req;
}

/* Reads a whole RTM_GETLINK dump; returns how many links it listed (-1 on error). */
static int read_links(int fd) {
  static char buf[65536];
  int links = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return -1;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return -1;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return links;
      if (h->nlmsg_type == NLMSG_ERROR) return -1;
      if (h->nlmsg_type == RTM_NEWLINK) links++;
    }
  }
}

static int new_client_works(int listener, int family, int port) {
  int c = sock(family, SOCK_STREAM);
  int ok;
  if (family == AF_INET) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
  } else {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    a.sin6_addr = in6addr_loopback;
    ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
  }
  int s = ok ? accept(listener, NULL, NULL) : -1;
  ok = s >= 0 && write(c, "n", 1) == 1 && expect(s, "n");
  close(c);
  if (s >= 0) close(s);
  return ok;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_tcp <trigger-file> [refuse]");
  int refuse = argc > 2 && strcmp(argv[2], "refuse") == 0;
  setvbuf(stdout, NULL, _IOLBF, 0);

  /* Listeners. */
  int l4 = sock(AF_INET, SOCK_STREAM);
  setint(l4, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  setint(l4, SOL_SOCKET, SO_RCVBUF, 4096, "SO_RCVBUF");
  struct sockaddr_in a4 = {.sin_family = AF_INET};
  a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l4, (struct sockaddr *)&a4, sizeof a4) != 0) die("bind l4");
  if (listen(l4, 7) != 0) die("listen l4");
  int l6 = sock(AF_INET6, SOCK_STREAM);
  setint(l6, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
  setint(l6, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  if (bind(l6, (struct sockaddr *)&a6, sizeof a6) != 0) die("bind l6");
  if (listen(l6, 5) != 0) die("listen l6");
  int port4 = port_of(l4), port6 = port_of(l6);

  /* A connection inside the process: C -> A. */
  int c = sock(AF_INET, SOCK_STREAM);
  setint(c, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  setint(c, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
  setint(c, IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE");
  a4.sin_port = htons(port4);
  if (connect(c, (struct sockaddr *)&a4, sizeof a4) != 0) die("connect c");
  int a = accept(l4, NULL, NULL);
  if (a < 0) die("accept a");
  fcntl(c, F_SETFL, O_NONBLOCK);
  if (write(a, "ping-from-A", 11) != 11) die("write a");
  /* Fill A's receive buffer and C's send queue: the rest stays unsent. */
  static unsigned char bulk[BULK];
  for (size_t i = 0; i < BULK; i++) bulk[i] = pattern(i);
  size_t written = 0;
  for (int idle = 0; idle < 20 && written < BULK;) {
    ssize_t r = write(c, bulk + written, BULK - written);
    if (r > 0) {
      written += (size_t)r;
      idle = 0;
    } else {
      idle++;
      sleep_ms(10);
    }
  }
  int unsent = 0;
  ioctl(c, SIOCOUTQNSD, &unsent);

  /* An IPv6 connection inside the process, with bytes waiting in both directions. */
  int c6 = sock(AF_INET6, SOCK_STREAM);
  a6.sin6_port = htons(port6);
  if (connect(c6, (struct sockaddr *)&a6, sizeof a6) != 0) die("connect c6");
  int s6 = accept(l6, NULL, NULL);
  if (s6 < 0) die("accept s6");
  if (write(c6, "six-up", 6) != 6 || write(s6, "six-down", 8) != 8) die("write v6");

  /* TCP sockets never connected: one bound, one not. */
  int tb = sock(AF_INET, SOCK_STREAM), tu = sock(AF_INET6, SOCK_STREAM);
  a4.sin_port = 0;
  if (bind(tb, (struct sockaddr *)&a4, sizeof a4) != 0) die("bind tb");

  /* UDP. */
  int u1 = sock(AF_INET, SOCK_DGRAM), u2 = sock(AF_INET, SOCK_DGRAM);
  a4.sin_port = 0;
  if (bind(u1, (struct sockaddr *)&a4, sizeof a4) != 0) die("bind u1");
  if (bind(u2, (struct sockaddr *)&a4, sizeof a4) != 0) die("bind u2");
  a4.sin_port = htons(port_of(u1));
  if (connect(u2, (struct sockaddr *)&a4, sizeof a4) != 0) die("connect u2");
  if (refuse && send(u2, "queued", 6, 0) != 6) die("send queued");
  /* A process peeking with SO_PEEK_OFF: its queue cannot be read exactly. */
  if (refuse) setint(u1, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF");

  /* A route netlink socket: groups 1 (RTMGRP_LINK) by bind, 33 by membership, extended acks. */
  int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  struct sockaddr_nl snl = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
  if (nl < 0 || bind(nl, (struct sockaddr *)&snl, sizeof snl) != 0) die("netlink");
  setint(nl, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 33, "NETLINK_ADD_MEMBERSHIP");
  setint(nl, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");
  struct sockaddr_nl nl_before;
  socklen_t nl_len = sizeof nl_before;
  getsockname(nl, (struct sockaddr *)&nl_before, &nl_len);
  uint32_t groups_before[4] = {0};
  socklen_t glen = sizeof groups_before;
  getsockopt(nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups_before, &glen);

  /* A connection between this process and a child (each holding one end):
   * bytes wait, unread, in both directions. */
  pid_t peer_child = fork();
  if (peer_child < 0) die("fork");
  if (peer_child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that ends early kills the parent only */
    for (int fd = 3; fd < 64; fd++) close(fd);
    int k = sock(AF_INET, SOCK_STREAM);
    a4.sin_port = htons(port4);
    if (connect(k, (struct sockaddr *)&a4, sizeof a4) != 0) _exit(10);
    if (write(k, "from-child", 10) != 10) _exit(11);
    wait_trigger(argv[1]);
    int ok = expect(k, "to-child") && expect(k, "parent-after") && write(k, "child-after", 11) == 11;
    _exit(ok ? 0 : 12);
  }
  int kp = accept(l4, NULL, NULL);
  if (kp < 0 || write(kp, "to-child", 8) != 8) die("child connection");

  pid_t child = -1;
  int nl_pending = -1, urgent = -1;
  if (refuse) {
    /* A connection whose peer has closed: CLOSE_WAIT. */
    int x = sock(AF_INET, SOCK_STREAM);
    a4.sin_port = htons(port4);
    if (connect(x, (struct sockaddr *)&a4, sizeof a4) != 0) die("connect x");
    int y = accept(l4, NULL, NULL);
    if (y < 0) die("accept y");
    close(x);
    /* A connection shut down for reading, and one with urgent data unread. */
    int sr_c = sock(AF_INET, SOCK_STREAM);
    if (connect(sr_c, (struct sockaddr *)&a4, sizeof a4) != 0) die("connect sr");
    int sr_a = accept(l4, NULL, NULL);
    if (sr_a < 0 || shutdown(sr_a, SHUT_RD) != 0) die("shutdown");
    int ur_c = sock(AF_INET, SOCK_STREAM);
    if (connect(ur_c, (struct sockaddr *)&a4, sizeof a4) != 0) die("connect ur");
    urgent = accept(l4, NULL, NULL);
    if (urgent < 0 || send(ur_c, "!", 1, MSG_OOB) != 1) die("send MSG_OOB");
    printf("shutrd=%d urgent=%d\n", port_of(sr_c), port_of(ur_c));
    /* A non-blocking connect() that failed: the socket holds ECONNREFUSED unread. */
    int refused = sock(AF_INET, SOCK_STREAM);
    fcntl(refused, F_SETFL, O_NONBLOCK);
    struct sockaddr_in nowhere = a4;
    nowhere.sin_port = htons(port_of(u1)); /* a UDP port: no TCP listener there */
    if (connect(refused, (struct sockaddr *)&nowhere, sizeof nowhere) == 0) die("connect nowhere");
    sleep_ms(50);
    printf("failedconnect=%d\n", port_of(refused));
    /* A route netlink socket with a reply waiting. */
    nl_pending = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (nl_pending < 0 || !request_links(nl_pending)) die("netlink request");
    /* A UDP socket shared with a child. */
    int u3 = sock(AF_INET, SOCK_DGRAM);
    a4.sin_port = 0;
    if (bind(u3, (struct sockaddr *)&a4, sizeof a4) != 0) die("bind u3");
    child = fork();
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (int fd = 3; fd < 64; fd++)
        if (fd != u3) close(fd);
      wait_trigger(argv[1]);
      _exit(0);
    }
    printf("closewait=%d shared=%d\n", port_of(y), port_of(u3));
  }
  print_ready("pid=%d port4=%d port6=%d", getpid(), port4, port6);
  int o = accept(l4, NULL, NULL);
  if (o < 0) die("accept o");
  if (write(o, "hello-from-target", 17) != 17) die("write o");
  /* The test's bytes wait, unread, in O. */
  for (int i = 0; i < 500; i++) {
    int inq = 0;
    ioctl(o, FIONREAD, &inq);
    if (inq >= 15) break;
    sleep_ms(10);
  }
  struct addrs ad_l4, ad_l6, ad_c, ad_a, ad_o, ad_u1, ad_u2, ad_c6, ad_s6, ad_tb, ad_tu;
  addrs_of(tb, &ad_tb);
  addrs_of(tu, &ad_tu);
  addrs_of(c6, &ad_c6);
  addrs_of(s6, &ad_s6);
  addrs_of(l4, &ad_l4);
  addrs_of(l6, &ad_l6);
  addrs_of(c, &ad_c);
  addrs_of(a, &ad_a);
  addrs_of(o, &ad_o);
  addrs_of(u1, &ad_u1);
  addrs_of(u2, &ad_u2);
  printf("armed written=%zu unsent=%d outside_fd=%d\n", written, unsent, o);
  wait_trigger(argv[1]);

  if (refuse) {
    char q[16];
    int peek_off = -2;
    socklen_t peek_len = sizeof peek_off;
    getsockopt(u1, SOL_SOCKET, SO_PEEK_OFF, &peek_off, &peek_len);
    check("refuse-peek-off", peek_off == 0, "SO_PEEK_OFF %d", peek_off);
    check("refuse-drain-udp", recv(u1, q, sizeof q, MSG_DONTWAIT) == 6, "");
    int extra = accept(l4, NULL, NULL);
    check("refuse-drain-accept", extra >= 0, "errno %d", errno);
    if (extra >= 0) close(extra);
    check("refuse-drain-netlink", read_links(nl_pending) > 0, "");
    char oob = 0;
    check("refuse-drain-urgent", recv(urgent, &oob, 1, MSG_OOB) == 1 && oob == '!', "");
    int st = -1;
    check("refuse-child", waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "status %d", st);
  }

  check("unsent-before", unsent > 0 && written > 0, "written %zu unsent %d", written, unsent);
  check("listen4-addr", same_addrs(l4, &ad_l4), "");
  check("listen4-opts",
        getint(l4, SOL_SOCKET, SO_ACCEPTCONN) == 1 && getint(l4, SOL_SOCKET, SO_REUSEADDR) == 1,
        "acceptconn %d reuseaddr %d", getint(l4, SOL_SOCKET, SO_ACCEPTCONN),
        getint(l4, SOL_SOCKET, SO_REUSEADDR));
  check("listen6-addr", same_addrs(l6, &ad_l6), "");
  check("listen6-opts",
        getint(l6, IPPROTO_IPV6, IPV6_V6ONLY) == 1 && getint(l6, SOL_SOCKET, SO_REUSEPORT) == 1 &&
            getint(l6, SOL_SOCKET, SO_REUSEADDR) == 0,
        "v6only %d reuseport %d reuseaddr %d", getint(l6, IPPROTO_IPV6, IPV6_V6ONLY),
        getint(l6, SOL_SOCKET, SO_REUSEPORT), getint(l6, SOL_SOCKET, SO_REUSEADDR));
  check("inner-addrs", same_addrs(c, &ad_c) && same_addrs(a, &ad_a), "");
  check("inner-opts",
        getint(c, IPPROTO_TCP, TCP_NODELAY) == 1 && getint(c, SOL_SOCKET, SO_KEEPALIVE) == 1 &&
            getint(c, IPPROTO_TCP, TCP_KEEPIDLE) == 77 && (fcntl(c, F_GETFL) & O_NONBLOCK),
        "nodelay %d keepalive %d keepidle %d", getint(c, IPPROTO_TCP, TCP_NODELAY),
        getint(c, SOL_SOCKET, SO_KEEPALIVE), getint(c, IPPROTO_TCP, TCP_KEEPIDLE));
  check("inner-recv-queue", expect(c, "ping-from-A"), "");
  static unsigned char got[BULK];
  size_t n = read_n(a, got, written);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += got[i] != pattern(i);
  check("inner-send-queue", n == written && bad == 0, "got %zu of %zu, %zu wrong", n, written, bad);
  check("inner-after", write_all(c, "more", 4) == 0 && expect(a, "more") &&
                           write(a, "back", 4) == 4 && expect(c, "back"), "");
  check("v6-conn", same_addrs(c6, &ad_c6) && same_addrs(s6, &ad_s6) && expect(s6, "six-up") &&
                       expect(c6, "six-down") && write(c6, "again", 5) == 5 && expect(s6, "again"),
        "");
  int cst = -1;
  int cross = expect(kp, "from-child") && write(kp, "parent-after", 12) == 12 &&
              expect(kp, "child-after");
  check("cross-process", cross && waitpid(peer_child, &cst, 0) == peer_child && WIFEXITED(cst) &&
                             WEXITSTATUS(cst) == 0,
        "exchange %d, child status 0x%x", cross, cst);
  check("outside-addrs", same_addrs(o, &ad_o), "");
  check("outside-recv-queue", expect(o, "hello-from-test"), "");
  check("outside-reply", write(o, "reply-after", 11) == 11, "");
  check("outside-second", expect(o, "second"), "");
  check("listen4-accepts", new_client_works(l4, AF_INET, port4), "");
  check("listen6-accepts", new_client_works(l6, AF_INET6, port6), "");
  check("tcp-unconnected",
        same_addrs(tb, &ad_tb) && same_addrs(tu, &ad_tu) && port_of(tb) != 0 && port_of(tu) == 0 &&
            getint(tb, SOL_SOCKET, SO_ACCEPTCONN) == 0 && listen(tb, 1) == 0 &&
            new_client_works(tb, AF_INET, port_of(tb)),
        "");
  check("udp-addrs", same_addrs(u1, &ad_u1) && same_addrs(u2, &ad_u2), "");
  struct sockaddr_storage from;
  socklen_t flen = sizeof from;
  char d[16] = {0};
  int sent = send(u2, "dgram", 5, 0) == 5;
  int got5 = recvfrom(u1, d, sizeof d, 0, (struct sockaddr *)&from, &flen) == 5;
  check("udp-works",
        sent && got5 && memcmp(d, "dgram", 5) == 0 && flen == ad_u2.llen &&
            memcmp(&from, &ad_u2.local, flen) == 0 &&
            sendto(u1, "back", 4, 0, (struct sockaddr *)&from, flen) == 4 &&
            recv(u2, d, sizeof d, 0) == 4,
        "");
  struct sockaddr_nl nl_now;
  nl_len = sizeof nl_now;
  getsockname(nl, (struct sockaddr *)&nl_now, &nl_len);
  uint32_t groups_now[4] = {0};
  glen = sizeof groups_now;
  getsockopt(nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups_now, &glen);
  check("netlink-addr",
        nl_now.nl_pid == nl_before.nl_pid && nl_now.nl_groups == nl_before.nl_groups &&
            nl_before.nl_groups == RTMGRP_LINK,
        "port id %u groups %x, before %u %x", nl_now.nl_pid, nl_now.nl_groups, nl_before.nl_pid,
        nl_before.nl_groups);
  check("netlink-groups",
        memcmp(groups_now, groups_before, sizeof groups_now) == 0 && (groups_now[1] & 1),
        "%x %x, before %x %x", groups_now[0], groups_now[1], groups_before[0], groups_before[1]);
  check("netlink-ext-ack", getint(nl, SOL_NETLINK, NETLINK_EXT_ACK) == 1, "");
  int links = request_links(nl) ? read_links(nl) : -1;
  check("netlink-works", links > 0, "links %d", links);
  return verdict();
}
