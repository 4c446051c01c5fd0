/* Sockets of a user other than root across a checkpoint
 * (tests/restore_sockshare_test.ts).
 *
 * usage: rt_sockowner <trigger-file> <dir> [refuse]   (started as root;
 * <dir> must be writable by nobody)
 *
 * Drops to uid/gid 65534 (nobody, supplementary groups 100 and 65533) before making
 * anything, then makes a TCP listener on 127.0.0.1:0 (L), a UDP socket
 * bound to 127.0.0.1:0 (U), a unix stream socketpair (P0, P1) and a unix
 * datagram socket bound to <dir>/bound.sock (B), a bound route netlink
 * socket (N).
 *
 * Prints "ready pid=<pid> tcp=<L's fd> udp=<U's fd> port=<L's port>" and
 * waits for the trigger file. Then checks that each socket's owner (fstat)
 * is its own uid and gid, the socket file's too, that the pair's peer
 * credentials name this process and user (and its supplementary groups:
 * SO_PEERGROUPS), and that everything works: a
 * connection to L is accepted, a datagram sent to U and one sent to B
 * arrive, bytes go both ways through the pair.
 *
 * With "refuse": first, as root, a unix listener bound to <dir>/root.sock;
 * then, as nobody, a connection to it (not accepted: its peer credentials
 * are root's) and a byte written into P0 while P1 asks for credentials
 * (SO_PASSCRED: queued with nobody's). After the trigger the
 * byte is read first.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/netlink.h>

static struct sockaddr_in lo(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static int port_of(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) return -1;
  return ntohs(a.sin_port);
}

static void owned(const char *name, int fd) {
  struct stat st;
  int ok = fstat(fd, &st) == 0 && st.st_uid == getuid() && st.st_gid == getgid();
  check(name, ok, "owner %u:%u, the process is %u:%u", st.st_uid, st.st_gid, getuid(), getgid());
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_sockowner <trigger-file> <dir> [refuse]");
  int refuse = argc > 3 && strcmp(argv[3], "refuse") == 0;
  struct sockaddr_un r = {.sun_family = AF_UNIX};
  snprintf(r.sun_path, sizeof r.sun_path, "%s/root.sock", argv[2]);
  int RL = -1;
  if (refuse) {
    RL = socket(AF_UNIX, SOCK_STREAM, 0);
    if (RL < 0 || bind(RL, (struct sockaddr *)&r, sizeof r) != 0 || listen(RL, 4) != 0) {
      die("root's unix listener");
    }
    chmod(r.sun_path, 0777);
  }
  gid_t extra[2] = {100, 65533};
  if (setgroups(2, extra) != 0) die("setgroups");
  if (setresgid(65534, 65534, 65534) != 0) die("setresgid");
  if (setresuid(65534, 65534, 65534) != 0) die("setresuid");

  int L = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = lo(0);
  if (L < 0 || bind(L, (struct sockaddr *)&a, sizeof a) != 0 || listen(L, 4) != 0) die("tcp");
  int U = socket(AF_INET, SOCK_DGRAM, 0);
  if (U < 0 || bind(U, (struct sockaddr *)&a, sizeof a) != 0) die("udp");
  int P[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, P) != 0) die("socketpair");
  struct sockaddr_un b = {.sun_family = AF_UNIX};
  snprintf(b.sun_path, sizeof b.sun_path, "%s/bound.sock", argv[2]);
  int B = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (B < 0 || bind(B, (struct sockaddr *)&b, sizeof b) != 0) die("unix bind");
  int N = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
  if (N < 0 || bind(N, (struct sockaddr *)&nl, sizeof nl) != 0) die("netlink");
  if (refuse) {
    int K = socket(AF_UNIX, SOCK_STREAM, 0);
    if (K < 0 || connect(K, (struct sockaddr *)&r, sizeof r) != 0) die("connect to root's");
    int on = 1;
    if (setsockopt(P[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) die("SO_PASSCRED");
    if (write(P[0], "x", 1) != 1) die("write");
  }
  print_ready("pid=%d tcp=%d udp=%d port=%d", getpid(), L, U, port_of(L));
  wait_trigger(argv[1]);
  char x;
  if (refuse) check("refuse-drain", read(P[1], &x, 1) == 1 && x == 'x', "");

  owned("tcp-owner", L);
  owned("udp-owner", U);
  owned("pair-owner-0", P[0]);
  owned("pair-owner-1", P[1]);
  owned("bound-owner", B);
  owned("netlink-owner", N);
  struct stat st;
  check("bound-file-owner", stat(b.sun_path, &st) == 0 && st.st_uid == getuid() &&
        st.st_gid == getgid(), "file owner %u:%u", st.st_uid, st.st_gid);
  struct ucred cred;
  socklen_t len = sizeof cred;
  int got = getsockopt(P[0], SOL_SOCKET, SO_PEERCRED, &cred, &len);
  check("pair-peer-credentials",
        got == 0 && cred.pid == getpid() && cred.uid == getuid() && cred.gid == getgid(),
        "pid %d uid %u gid %u", cred.pid, cred.uid, cred.gid);

  gid_t groups[8];
  len = sizeof groups;
  got = getsockopt(P[0], SOL_SOCKET, SO_PEERGROUPS, groups, &len);
  check("pair-peer-groups", got == 0 && len == 2 * sizeof(gid_t) && groups[0] == 100 &&
        groups[1] == 65533, "%d, %u bytes of groups, first %u", got, len, groups[0]);

  /* They still work. */
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in to = lo(port_of(L));
  check("tcp-connect", connect(c, (struct sockaddr *)&to, sizeof to) == 0, "%s", strerror(errno));
  int s = accept(L, NULL, NULL);
  check("tcp-accept", s >= 0, "%s", strerror(errno));
  int d = socket(AF_INET, SOCK_DGRAM, 0);
  to = lo(port_of(U));
  char buf[16] = {0};
  sendto(d, "udp", 3, 0, (struct sockaddr *)&to, sizeof to);
  ssize_t n = recv(U, buf, sizeof buf, 0);
  check("udp-works", n == 3 && memcmp(buf, "udp", 3) == 0, "recv %zd", n);
  memset(buf, 0, sizeof buf);
  n = write(P[0], "ab", 2) == 2 && write(P[1], "cd", 2) == 2 ? read(P[1], buf, 2) : -1;
  n = n == 2 ? read(P[0], buf + 2, 2) : -1;
  check("pair-works", n == 2 && memcmp(buf, "abcd", 4) == 0, "'%s'", buf);
  int e = socket(AF_UNIX, SOCK_DGRAM, 0);
  sendto(e, "unix", 4, 0, (struct sockaddr *)&b, sizeof b);
  memset(buf, 0, sizeof buf);
  n = recv(B, buf, sizeof buf, 0);
  check("bound-works", n == 4 && memcmp(buf, "unix", 4) == 0, "recv %zd", n);
  return verdict();
}
