/* An accepted TCP connection in flight (SCM_RIGHTS) that only the message
 * holds, as a master that accepts connections passes each to a worker
 * (engine/fds/unix_scm.ts): the master (this process) listens on
 * 127.0.0.1, accepts one connection, forks the worker, sends it the
 * connection with one byte 'c' on a unix stream socketpair and closes its
 * own copy. The client sent bytes the server side has not read.
 *
 * After a restore the worker receives the message and checks what it
 * gives back: a TCP socket (SO_DOMAIN AF_INET, SO_TYPE SOCK_STREAM) in
 * state ESTABLISHED (TCP_INFO), its local address the listener's port and
 * its peer the client's; the bytes the client had sent; then a reply
 * written through it reaches the client and the client's next bytes reach
 * it (repair mode is off, the connection carries on both ways).
 *
 * usage: rt_scm_tcp <trigger> <workdir> inner|outside
 *   inner    the client is this tree's (the worker holds it): it sent
 *            "hello-from-client", reads "reply-after", then sends "second"
 *   outside  the client is the test's: it connects to the port printed in
 *            the ready line, sends "hello-from-test" and reads "greeting"
 *            before the dump; after the trigger it reads "reply-after" and
 *            sends "second"
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* Sends one byte `tag` on `sock` with fd `fd`. */
/* Sends `fd` in flight on `sock` with the one byte `tag`. */
static void send_fd(int sock, char tag, int fd) { send_fds(sock, &tag, 1, &fd, 1); }

/* Receives one byte with one fd (check "received"); returns the fd or -1. */
static int recv_fd(int sock, char tag) {
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
  check("received", r == 1 && got == tag && fd >= 0, "got %zd bytes '%c', fd %d", r, got, fd);
  return fd;
}

/* Reads exactly `n` bytes from `fd` within 5 s into `buf`; returns how many came. */
static size_t read_within(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) break;
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

/* Whether `fd` reads exactly the text `want` (within 5 s); the bytes read go to `got`. */
static int reads(int fd, const char *want, char *got, size_t cap) {
  size_t n = strlen(want);
  memset(got, 0, cap);
  return n < cap && read_within(fd, got, n) == n && !memcmp(got, want, n);
}

static int int_opt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

/* The checks of the worker on the connection `rc` it received. */
static void check_connection(int rc, unsigned short port, const struct sockaddr_in *client,
                             int inner_client) {
  check("kind", int_opt(rc, SOL_SOCKET, SO_DOMAIN) == AF_INET &&
                    int_opt(rc, SOL_SOCKET, SO_TYPE) == SOCK_STREAM,
        "domain %d type %d", int_opt(rc, SOL_SOCKET, SO_DOMAIN),
        int_opt(rc, SOL_SOCKET, SO_TYPE));
  struct tcp_info ti;
  socklen_t tl = sizeof ti;
  memset(&ti, 0, sizeof ti);
  int info = getsockopt(rc, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0;
  check("established", info && ti.tcpi_state == TCP_ESTABLISHED, "state %d", ti.tcpi_state);
  struct sockaddr_in local, peer;
  socklen_t ll = sizeof local, pl = sizeof peer;
  int named = getsockname(rc, (void *)&local, &ll) == 0 && getpeername(rc, (void *)&peer, &pl) == 0;
  check("addresses", named && ntohs(local.sin_port) == port &&
                         ntohl(local.sin_addr.s_addr) == INADDR_LOOPBACK &&
                         peer.sin_port == client->sin_port &&
                         peer.sin_addr.s_addr == client->sin_addr.s_addr,
        "local port %u, peer port %u (client %u)", ntohs(local.sin_port), ntohs(peer.sin_port),
        ntohs(client->sin_port));
  char buf[64];
  const char *first = inner_client >= 0 ? "hello-from-client" : "hello-from-test";
  check("queued-bytes", reads(rc, first, buf, sizeof buf), "read '%s'", buf);
  check("reply-sent", write(rc, "reply-after", 11) == 11, "");
  if (inner_client >= 0) {
    check("client-reads-reply", reads(inner_client, "reply-after", buf, sizeof buf),
          "read '%s'", buf);
    check("client-sends", write(inner_client, "second", 6) == 6, "");
  }
  check("second-bytes", reads(rc, "second", buf, sizeof buf), "read '%s'", buf);
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_scm_tcp <trigger> <workdir> inner|outside");
  int inner = !strcmp(argv[3], "inner");
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (l < 0 || bind(l, (void *)&a, sizeof a) != 0 || getsockname(l, (void *)&a, &len) != 0 ||
      listen(l, 8) != 0) {
    die("listen");
  }
  unsigned short port = ntohs(a.sin_port);
  int client = -1;
  if (inner) {
    client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (void *)&a, sizeof a) != 0) die("connect");
    if (write(client, "hello-from-client", 17) != 17) die("write");
  } else {
    print_ready("pid=%d port=%u", getpid(), port);
  }
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  int acc = accept(l, (void *)&from, &fl);
  if (acc < 0) die("accept");
  if (!inner && write(acc, "greeting", 8) != 8) die("greeting");
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
  pid_t worker = fork();
  if (worker < 0) die("fork");
  if (worker == 0) {
    close(sp[0]);
    close(acc);
    close(l);
    char ready[8];
    if (read_within(sp[1], ready, 1) != 1) die("ready byte");
    /* Read before the connection is queued: on a stream socket a byte left
     * before the message would join it (a dump refuses such a queue). */
    if (write(sp[1], "a", 1) != 1) die("ack byte");
    /* The connection is queued for it once the master says ready; it has closed its copy. */
    wait_trigger(argv[1]);
    int rc = recv_fd(sp[1], 'c');
    if (rc >= 0) check_connection(rc, port, &from, client);
    return verdict();
  }
  if (client >= 0) close(client);
  if (write(sp[0], "r", 1) != 1) die("ready byte");
  char ack;
  if (read_within(sp[0], &ack, 1) != 1) die("ack byte");
  send_fd(sp[0], 'c', acc);
  close(acc);
  close(sp[1]);
  if (inner) print_ready("pid=%d port=%u", getpid(), port);
  else print_ready("queued pid=%d", getpid());
  int status = 0;
  if (waitpid(worker, &status, 0) != worker) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
