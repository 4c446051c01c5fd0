/* Sockets shared by several processes across a checkpoint
 * (tests/restore_sockshare_test.ts).
 *
 * usage: rt_prefork <trigger-file>
 *
 * A pre-fork server: the parent listens on 127.0.0.1:0 (L) and forks 3
 * workers that all accept() on L. Before the workers, the parent also
 * makes a TCP connection inside the tree (client C -> accepted A, through
 * a second listener L2 that only the parent keeps) with "ping" unread in
 * A, a UDP socket U bound to 127.0.0.1:0 with a datagram "queued" waiting
 * in it, a unix socketpair S0-S1 and a bound route netlink socket N; a
 * fourth child (the "pair" child) keeps C, A, U, S0 and N, shared with the
 * parent (the workers close them).
 *
 * Prints "ready pid=<pid> port=<L's port> udp=<U's port>" and waits for the
 * trigger file (the workers wait in accept()).
 *
 * After the restore: each worker, at each connection it accepts, checks
 * that its L is the parent's (same inode, through /proc/<ppid>/fd) on the
 * same port, and answers "served <pid>"; a request "quit" makes it answer
 * and exit with its failure count. The pair child checks that C, A, U, S0
 * and N are the parent's (N with its port id), writes "unix" into S0,
 * reads "ping" from A, answers "pong" on A, sends a datagram to U's port.
 * The parent checks that L is each worker's and C, A, U, S0, N the pair
 * child's, prints "compared" (the workers serve the test's requests only
 * then: each exits after a "quit"), reads "pong" from C, answers "bye" on
 * C (the pair child exits on it), reads "queued" then the pair child's
 * datagram from U (and nothing more) and "unix" from S1, waits for every
 * child and prints the verdict.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/netlink.h>

#define WORKERS 3

static int sock(int type) {
  int fd = socket(AF_INET, type, 0);
  if (fd < 0) die("socket");
  return fd;
}

static int port_of(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) return -1;
  return ntohs(a.sin_port);
}

static ino_t ino_of(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static void bind_lo(int fd, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
}

static void connect_lo(int fd, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
}

static int L, L2, C, A, U, S[2], N, port;
static unsigned nl_port;

/* The port id netlink socket `fd` is bound to. */
static unsigned nl_port_of(int fd) {
  struct sockaddr_nl a;
  socklen_t len = sizeof a;
  return getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? a.nl_pid : 0;
}

/* Checks that fd `fd` of this process and of process `other` are one socket (inode). */
static void same(const char *name, int fd, pid_t other) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/fd/%d", other, fd);
  if (stat(path, &st) != 0) st.st_ino = 0;
  ino_t mine = ino_of(fd);
  check(name, mine != 0 && mine == st.st_ino, "inode %lu, process %d's %lu", (unsigned long)mine,
        other, (unsigned long)st.st_ino);
}

static void worker(int n) {
  char name[64];
  close(L2), close(C), close(A), close(U), close(S[0]), close(S[1]), close(N);
  for (;;) {
    int c = accept(L, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    snprintf(name, sizeof name, "worker%d-listener", n);
    same(name, L, getppid());
    snprintf(name, sizeof name, "worker%d-port", n);
    check(name, port_of(L) == port, "port %d, was %d", port_of(L), port);
    char req[16] = {0};
    ssize_t got = read(c, req, sizeof req - 1);
    char reply[64];
    int len = snprintf(reply, sizeof reply, "served %d\n", getpid());
    if (write(c, reply, len) != len) die("write");
    close(c);
    if (got >= 4 && memcmp(req, "quit", 4) == 0) exit(failures);
  }
}

static void pair_child(const char *trigger) {
  close(L), close(L2), close(S[1]);
  wait_trigger(trigger);
  same("pair-child-client", C, getppid());
  same("pair-child-accepted", A, getppid());
  same("pair-child-udp", U, getppid());
  same("pair-child-unix", S[0], getppid());
  same("pair-child-netlink", N, getppid());
  check("pair-child-netlink-port", nl_port_of(N) == nl_port, "port id %u, was %u", nl_port_of(N),
        nl_port);
  if (write(S[0], "unix", 4) != 4) die("write");
  char buf[16] = {0};
  ssize_t n = read(A, buf, 4);
  check("pair-child-read", n == 4 && memcmp(buf, "ping", 4) == 0, "read %zd '%s'", n, buf);
  if (write(A, "pong", 4) != 4) die("write");
  int s = sock(SOCK_DGRAM);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port_of(U))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (sendto(s, "dgram", 5, 0, (struct sockaddr *)&a, sizeof a) != 5) die("sendto");
  memset(buf, 0, sizeof buf);
  n = read(A, buf, 3); /* the parent compared its sockets with ours: we may go */
  check("pair-child-bye", n == 3 && memcmp(buf, "bye", 3) == 0, "read %zd '%s'", n, buf);
  exit(failures);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_prefork <trigger-file>");
  L = sock(SOCK_STREAM);
  bind_lo(L, 0);
  if (listen(L, 16) != 0) die("listen");
  port = port_of(L);
  L2 = sock(SOCK_STREAM);
  bind_lo(L2, 0);
  if (listen(L2, 1) != 0) die("listen");
  C = sock(SOCK_STREAM);
  connect_lo(C, port_of(L2));
  A = accept(L2, NULL, NULL);
  if (A < 0) die("accept");
  if (write(C, "ping", 4) != 4) die("write");
  U = sock(SOCK_DGRAM);
  bind_lo(U, 0);
  int Q = sock(SOCK_DGRAM); /* a datagram waits in U through the checkpoint */
  struct sockaddr_in ua = {.sin_family = AF_INET, .sin_port = htons(port_of(U))};
  ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (sendto(Q, "queued", 6, 0, (struct sockaddr *)&ua, sizeof ua) != 6) die("sendto");
  close(Q);
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, S) != 0) die("socketpair");
  N = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
  if (N < 0 || bind(N, (struct sockaddr *)&nl, sizeof nl) != 0) die("netlink");
  nl_port = nl_port_of(N);
  pid_t kids[WORKERS + 1];
  for (int i = 0; i < WORKERS; i++) {
    kids[i] = fork();
    if (kids[i] < 0) die("fork");
    if (kids[i] == 0) worker(i + 1);
  }
  kids[WORKERS] = fork();
  if (kids[WORKERS] < 0) die("fork");
  if (kids[WORKERS] == 0) pair_child(argv[1]);
  print_ready("pid=%d port=%d udp=%d", getpid(), port, port_of(U));
  wait_trigger(argv[1]);

  for (int i = 0; i < WORKERS; i++) {
    char name[32];
    snprintf(name, sizeof name, "parent-listener-%d", i + 1);
    same(name, L, kids[i]);
  }
  check("parent-port", port_of(L) == port, "port %d, was %d", port_of(L), port);
  same("parent-client", C, kids[WORKERS]);
  same("parent-accepted", A, kids[WORKERS]);
  same("parent-udp", U, kids[WORKERS]);
  same("parent-unix", S[0], kids[WORKERS]);
  same("parent-netlink", N, kids[WORKERS]);
  printf("compared\n");
  fflush(stdout);
  char buf[16] = {0};
  ssize_t n = read(C, buf, 4);
  check("parent-read", n == 4 && memcmp(buf, "pong", 4) == 0, "read %zd '%s'", n, buf);
  if (write(C, "bye", 3) != 3) die("write");
  memset(buf, 0, sizeof buf);
  n = recv(U, buf, sizeof buf - 1, 0);
  check("parent-queued", n == 6 && memcmp(buf, "queued", 6) == 0, "recv %zd '%s'", n, buf);
  memset(buf, 0, sizeof buf);
  n = recv(U, buf, sizeof buf - 1, 0);
  check("parent-dgram", n == 5 && memcmp(buf, "dgram", 5) == 0, "recv %zd '%s'", n, buf);
  n = recv(U, buf, sizeof buf - 1, MSG_DONTWAIT);
  check("parent-udp-drained", n < 0 && errno == EAGAIN, "recv %zd", n);
  memset(buf, 0, sizeof buf);
  n = read(S[1], buf, 4);
  check("parent-unix-read", n == 4 && memcmp(buf, "unix", 4) == 0, "read %zd '%s'", n, buf);
  for (int i = 0; i <= WORKERS; i++) {
    int st = 0;
    char name[32];
    snprintf(name, sizeof name, i < WORKERS ? "worker%d" : "pair-child", i + 1);
    pid_t w = waitpid(kids[i], &st, 0);
    check(name, w == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
  }
  return verdict();
}
