/* TCP and UDP sockets in flight (SCM_RIGHTS) on a unix socket
 * (engine/fds/unix_scm.ts), as a master passes listeners to its workers:
 * a TCP listener the process still holds (one description with the
 * received fd), then a UDP socket bound to a port, sent twice (one
 * description). After a restore each
 * message gives back a socket of the same type, bound to the same address
 * (the listener still listening: a client connects and is accepted through
 * the received fd; the UDP socket receives a datagram sent to its port).
 *
 * usage: rt_scm_inet <trigger> <workdir> [gone|conn]
 *   gone  a TCP listener only the message holds (the process closed it)
 *   conn  an accepted TCP connection only the message holds; checks it
 *         is still queued and connected to its client (rt_scm_tcp.c
 *         checks such a connection further)
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Sends one byte `tag` on `sock` with fd `fd`. */
static void send_fd(int sock, char tag, int fd) { send_fds(sock, &tag, 1, &fd, 1); }

/* Receives one byte with one fd (reported as check `name`); returns the fd or -1. */
static int recv_fd(const char *name, int sock, char tag) {
  char got = 0;
  struct iovec iov = {&got, 1};
  union { struct cmsghdr h; char buf[CMSG_SPACE(4 * sizeof(int))]; } c;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                       .msg_controllen = sizeof c.buf};
  ssize_t r = recvmsg(sock, &msg, MSG_DONTWAIT);
  struct cmsghdr *cm = r == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
  int fd = -1;
  if (cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int))) {
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  }
  check(name, r == 1 && got == tag && fd >= 0, "got %zd bytes '%c', fd %d", r, got, fd);
  return fd;
}

/* A socket of `type` bound to 127.0.0.1 on a free port; its port in *port. */
static int bound(int type, unsigned short *port) {
  int s = socket(AF_INET, type, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (void *)&a, sizeof a) != 0 || getsockname(s, (void *)&a, &len) != 0) {
    die("bind");
  }
  *port = ntohs(a.sin_port);
  return s;
}

/* Whether `fd` is an AF_INET socket of `type` bound to 127.0.0.1:`port`. */
static int same_socket(int fd, int type, unsigned short port) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int t = 0;
  socklen_t tl = sizeof t;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) == 0 && t == type &&
         getsockname(fd, (void *)&a, &len) == 0 && a.sin_family == AF_INET &&
         ntohs(a.sin_port) == port && ntohl(a.sin_addr.s_addr) == INADDR_LOOPBACK;
}

/* Whether a client can connect to 127.0.0.1:`port` and be accepted through `l`. */
static int accepts(int l, unsigned short port) {
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = c >= 0 && connect(c, (void *)&a, sizeof a) == 0;
  int acc = ok ? accept(l, NULL, NULL) : -1;
  close(c);
  if (acc >= 0) close(acc);
  return acc >= 0;
}

/* An accepted TCP connection in flight, closed by the process (its client held). */
static int conn(const char *trigger) {
  unsigned short port;
  int l = bound(SOCK_STREAM, &port);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (listen(l, 8) != 0 || connect(c, (void *)&a, sizeof a) != 0) die("connect");
  int acc = accept(l, NULL, NULL);
  int sp[2];
  if (acc < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("accept");
  send_fd(sp[0], 'c', acc);
  close(acc);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int rc = recv_fd("conn-still-queued", sp[1], 'c');
  check("conn-peer", rc >= 0 && write(c, "x", 1) == 1 && read(rc, &(char){0}, 1) == 1, "");
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_scm_inet <trigger> <workdir> [gone|conn]");
  if (argc > 3 && !strcmp(argv[3], "conn")) return conn(argv[1]);
  int gone = argc > 3 && !strcmp(argv[3], "gone");
  unsigned short lport, uport;
  int l = bound(SOCK_STREAM, &lport);
  if (listen(l, 8) != 0) die("listen");
  int u = bound(SOCK_DGRAM, &uport);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
  send_fd(sp[0], 'l', l);
  send_fd(sp[0], 'u', u);
  send_fd(sp[0], 'v', u); /* the same socket again: one description */
  close(u);
  if (gone) close(l);

  print_ready("pid=%d port=%u", getpid(), lport);
  wait_trigger(argv[1]);

  int rl = recv_fd("listener", sp[1], 'l');
  if (rl >= 0) {
    int listening = 0;
    socklen_t len = sizeof listening;
    getsockopt(rl, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    check("listener-bound", same_socket(rl, SOCK_STREAM, lport) && listening, "");
    if (!gone) {
      check("listener-one-description",
            syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, rl, l) == 0, "");
    }
    check("listener-accepts", accepts(rl, lport), "");
  }
  int ru = recv_fd("udp", sp[1], 'u');
  if (ru >= 0) {
    check("udp-bound", same_socket(ru, SOCK_DGRAM, uport), "");
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(uport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[8] = {0};
    int sent = sendto(c, "dgram", 5, 0, (void *)&a, sizeof a) == 5;
    ssize_t n = recv(ru, buf, sizeof buf, 0);
    check("udp-receives", sent && n == 5 && !memcmp(buf, "dgram", 5), "recv %zd", n);
  }
  int rv = recv_fd("udp-again", sp[1], 'v');
  check("udp-one-description",
        rv >= 0 && ru >= 0 && syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, ru, rv) == 0, "");
  return verdict();
}
