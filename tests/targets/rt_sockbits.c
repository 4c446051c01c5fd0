/* Round-trip target: socket state bits that no buffer size or option value shows.
 *
 *   rt_sockbits <trigger-file> <mode>
 *
 * Each mode sets its state, prints "ready pid=<pid>", waits for the
 * trigger file (the test dumps and restores it meanwhile), then checks
 * it (check lines, then PASS or FAIL). Modes:
 *   buf-lock   SO_BUF_LOCK: which buffer sizes the program fixed (the kernel
 *              stops autotuning those), set without a size (TCP, UDP), cleared
 *              after a size was set (an unconnected TCP socket, both ends of an
 *              established connection in the tree)
 *   no-check   SO_NO_CHECK (UDP datagrams sent without a checksum) on a UDP
 *              and a TCP socket
 *   reuseport-cleared  two listeners of one SO_REUSEPORT group, one of which
 *              cleared SO_REUSEPORT after listen() (it stays in the group)
 *   udp-shutdown  connected UDP sockets shut down for writing and for reading,
 *              an unconnected one both ways (the kernel says ENOTCONN and
 *              shuts it down anyway)
 *   filter     a classic BPF filter (SO_ATTACH_FILTER) on a bound UDP socket that
 *              keeps only datagrams starting with 'A', locked (SO_LOCK_FILTER),
 *              with a datagram "B0" queued from before the filter; the same
 *              filter on a TCP listener, unlocked
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/filter.h>
#include <poll.h>
#include <sys/socket.h>

#include "common.h"

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

static int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len)) return -1;
  return v;
}

static void set_int(int fd, int level, int name, int v) {
  if (setsockopt(fd, level, name, &v, sizeof v)) die("setsockopt");
}

/* An established loopback connection: *client and *server (the listener is closed). */
static void connection(int *client, int *server) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1)) die("listen");
  getsockname(l, (void *)&a, &len);
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(*client, (void *)&a, sizeof a)) die("connect");
  *server = accept(l, NULL, NULL);
  if (*server < 0) die("accept");
  close(l);
}

/* Makes 32 connections to `to`: how many each of the two listeners `ls` accepted. */
static void spread(int ls[2], struct sockaddr_in *to, int got[2]) {
  got[0] = got[1] = 0;
  for (int i = 0; i < 32; i++) {
    int k = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(k, (void *)to, sizeof *to)) die("connect");
    struct pollfd p[2] = {{ls[0], POLLIN, 0}, {ls[1], POLLIN, 0}};
    poll(p, 2, 1000);
    if (p[0].revents) close(accept(ls[0], NULL, NULL)), got[0]++;
    else if (p[1].revents) close(accept(ls[1], NULL, NULL)), got[1]++;
    close(k);
  }
}

/* What the shut-down UDP sockets of mode udp-shutdown do (a result or -errno). */
struct shut_seen {
  int send_a, recv_b, other_way, send_c;
};

static int result(int r) { return r < 0 ? -errno : r; }

static void shut_probe(int a, int b, int c, struct sockaddr_in *to_a, struct shut_seen *out) {
  char buf[8];
  out->send_a = result(send(a, "x", 1, MSG_NOSIGNAL));
  out->recv_b = result(recv(b, buf, sizeof buf, 0));
  int r = send(b, "y", 1, MSG_NOSIGNAL);
  struct pollfd p = {a, POLLIN, 0};
  poll(&p, 1, 1000);
  int got = recv(a, buf, sizeof buf, 0);
  out->other_way = r == 1 && got == 1 && buf[0] == 'y';
  out->send_c = result(sendto(c, "z", 1, MSG_NOSIGNAL, (void *)to_a, sizeof *to_a));
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_sockbits <trigger-file> <mode>");
  const char *trigger = argv[1], *mode = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (!strcmp(mode, "buf-lock")) {
    /* name, socket, the lock expected */
    struct { const char *name; int fd, lock; } s[6];
    s[0] = (typeof(s[0])){"lock-tcp-snd", socket(AF_INET, SOCK_STREAM, 0), 1};
    set_int(s[0].fd, SOL_SOCKET, SO_BUF_LOCK, 1);
    s[1] = (typeof(s[0])){"lock-udp-rcv", socket(AF_INET, SOCK_DGRAM, 0), 2};
    set_int(s[1].fd, SOL_SOCKET, SO_BUF_LOCK, 2);
    s[2] = (typeof(s[0])){"lock-tcp-sized-unlocked", socket(AF_INET, SOCK_STREAM, 0), 0};
    set_int(s[2].fd, SOL_SOCKET, SO_SNDBUF, 50000);
    set_int(s[2].fd, SOL_SOCKET, SO_BUF_LOCK, 0);
    s[3] = (typeof(s[0])){"lock-udp-both", socket(AF_INET, SOCK_DGRAM, 0), 3};
    set_int(s[3].fd, SOL_SOCKET, SO_BUF_LOCK, 3);
    int client, server;
    connection(&client, &server);
    s[4] = (typeof(s[0])){"lock-conn-snd", client, 1};
    set_int(client, SOL_SOCKET, SO_BUF_LOCK, 1);
    s[5] = (typeof(s[0])){"lock-conn-sized-unlocked", server, 0};
    set_int(server, SOL_SOCKET, SO_RCVBUF, 200000);
    set_int(server, SOL_SOCKET, SO_BUF_LOCK, 0);
    for (int i = 0; i < 6; i++) {
      int v = get_int(s[i].fd, SOL_SOCKET, SO_BUF_LOCK);
      if (v != s[i].lock) die("SO_BUF_LOCK not taken");
    }
    int sized = get_int(s[2].fd, SOL_SOCKET, SO_SNDBUF);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    for (int i = 0; i < 6; i++) {
      int v = get_int(s[i].fd, SOL_SOCKET, SO_BUF_LOCK);
      check(s[i].name, v == s[i].lock, "SO_BUF_LOCK %d (was %d)", v, s[i].lock);
    }
    int now = get_int(s[2].fd, SOL_SOCKET, SO_SNDBUF);
    check("lock-size-kept", now == sized, "SO_SNDBUF %d (was %d)", now, sized);
    check("lock-conn-works", write(client, "x", 1) == 1 && read(server, &now, 1) == 1, "%s",
          strerror(errno));
  } else if (!strcmp(mode, "no-check")) {
    int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
    set_int(u, SOL_SOCKET, SO_NO_CHECK, 1);
    set_int(t, SOL_SOCKET, SO_NO_CHECK, 1);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int vu = get_int(u, SOL_SOCKET, SO_NO_CHECK), vt = get_int(t, SOL_SOCKET, SO_NO_CHECK);
    check("no-check-udp", vu == 1, "SO_NO_CHECK %d", vu);
    check("no-check-tcp", vt == 1, "SO_NO_CHECK %d", vt);
  } else if (!strcmp(mode, "reuseport-cleared")) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int ls[2];
    for (int i = 0; i < 2; i++) {
      ls[i] = socket(AF_INET, SOCK_STREAM, 0);
      set_int(ls[i], SOL_SOCKET, SO_REUSEPORT, 1);
      if (bind(ls[i], (void *)&sa, sizeof sa) || listen(ls[i], 64)) die("listen");
      if (i == 0) getsockname(ls[0], (void *)&sa, &len);
    }
    set_int(ls[0], SOL_SOCKET, SO_REUSEPORT, 0);
    /* A third socket with SO_REUSEPORT: does it join? (bound, then closed) */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    set_int(probe, SOL_SOCKET, SO_REUSEPORT, 1);
    int joined = bind(probe, (void *)&sa, sizeof sa) == 0;
    close(probe);
    int before[2];
    spread(ls, &sa, before);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int r0 = get_int(ls[0], SOL_SOCKET, SO_REUSEPORT), r1 = get_int(ls[1], SOL_SOCKET, SO_REUSEPORT);
    check("reuseport-options", r0 == 0 && r1 == 1, "SO_REUSEPORT %d %d (was 0 1)", r0, r1);
    struct sockaddr_in a0, a1;
    len = sizeof a0;
    getsockname(ls[0], (void *)&a0, &len);
    len = sizeof a1;
    getsockname(ls[1], (void *)&a1, &len);
    check("reuseport-same-port", a0.sin_port == sa.sin_port && a1.sin_port == sa.sin_port,
          "%d %d (was %d)", ntohs(a0.sin_port), ntohs(a1.sin_port), ntohs(sa.sin_port));
    probe = socket(AF_INET, SOCK_STREAM, 0);
    set_int(probe, SOL_SOCKET, SO_REUSEPORT, 1);
    int joined_now = bind(probe, (void *)&sa, sizeof sa) == 0;
    close(probe);
    check("reuseport-third", joined_now == joined, "a third socket joins: %d (was %d)",
          joined_now, joined);
    int now[2];
    spread(ls, &sa, now);
    check("reuseport-spread", now[0] + now[1] == 32 && (now[0] > 0) == (before[0] > 0) &&
          (now[1] > 0) == (before[1] > 0), "%d %d (before the dump %d %d)", now[0], now[1],
          before[0], before[1]);
  } else if (!strcmp(mode, "udp-shutdown")) {
    int a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int b = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET}, sb;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sb = sa;
    socklen_t len = sizeof sa;
    if (bind(a, (void *)&sa, sizeof sa) || bind(b, (void *)&sb, sizeof sb)) die("bind");
    getsockname(a, (void *)&sa, &len);
    len = sizeof sb;
    getsockname(b, (void *)&sb, &len);
    if (connect(a, (void *)&sb, sizeof sb) || connect(b, (void *)&sa, sizeof sa)) die("connect");
    if (shutdown(a, SHUT_WR) || shutdown(b, SHUT_RD)) die("shutdown");
    shutdown(c, SHUT_RDWR); /* ENOTCONN, but done */
    struct shut_seen before, now;
    shut_probe(a, b, c, &sa, &before);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    shut_probe(a, b, c, &sa, &now);
    check("udp-shut-wr", now.send_a == before.send_a && before.send_a == -EPIPE,
          "send on the SHUT_WR socket: %d (before the dump %d)", now.send_a, before.send_a);
    check("udp-shut-rd", now.recv_b == before.recv_b,
          "recv on the SHUT_RD socket: %d (before the dump %d)", now.recv_b, before.recv_b);
    check("udp-shut-other-way", now.other_way == 1 && before.other_way == 1, "%d (before %d)",
          now.other_way, before.other_way);
    check("udp-shut-unconnected", now.send_c == before.send_c,
          "sendto on the unconnected one: %d (before the dump %d)", now.send_c, before.send_c);
  } else if (!strcmp(mode, "filter")) {
    /* UDP: the payload starts at offset 8 (past the UDP header) */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 8),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 'A', 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {.len = 4, .filter = code};
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), snd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(u, (void *)&sa, sizeof sa)) die("bind");
    getsockname(u, (void *)&sa, &len);
    if (sendto(snd, "B0", 2, 0, (void *)&sa, sizeof sa) != 2) die("sendto");
    usleep(100000);
    if (setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog)) die("SO_ATTACH_FILTER");
    set_int(u, SOL_SOCKET, SO_LOCK_FILTER, 1);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (setsockopt(l, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog)) die("SO_ATTACH_FILTER");
    struct sockaddr_in la = {.sin_family = AF_INET};
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (void *)&la, sizeof la) || listen(l, 4)) die("listen");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct sock_filter back[8];
    socklen_t n = 8 * sizeof back[0];
    int r = getsockopt(u, SOL_SOCKET, SO_GET_FILTER, back, &n);
    check("filter-udp-code", r == 0 && n == 4 && !memcmp(back, code, sizeof code),
          "r=%d, %u instructions", r, n);
    check("filter-udp-locked", get_int(u, SOL_SOCKET, SO_LOCK_FILTER) == 1, "");
    n = 8 * sizeof back[0];
    r = getsockopt(l, SOL_SOCKET, SO_GET_FILTER, back, &n);
    check("filter-tcp-code", r == 0 && n == 4 && !memcmp(back, code, sizeof code),
          "r=%d, %u instructions", r, n);
    check("filter-tcp-unlocked", get_int(l, SOL_SOCKET, SO_LOCK_FILTER) == 0, "");
    char buf[8] = {0};
    int got = recv(u, buf, sizeof buf, 0);
    check("filter-queued-kept", got == 2 && !memcmp(buf, "B0", 2), "recv %d '%.2s'", got, buf);
    sendto(snd, "B1", 2, 0, (void *)&sa, sizeof sa);
    sendto(snd, "A1", 2, 0, (void *)&sa, sizeof sa);
    struct pollfd p = {u, POLLIN, 0};
    poll(&p, 1, 1000);
    usleep(100000);
    memset(buf, 0, sizeof buf);
    got = recv(u, buf, sizeof buf, 0);
    int again = recv(u, buf + 4, 4, 0);
    check("filter-acts", got == 2 && !memcmp(buf, "A1", 2) && again < 0,
          "recv %d '%.2s', then %d", got, buf, again);
    check("filter-lock-holds", setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &got, sizeof got) < 0,
          "SO_DETACH_FILTER on a locked filter was allowed");
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}
