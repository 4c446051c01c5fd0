/* A listener with a connection the kernel completed but the program has not
 * accepted, across a dump with --skip-in-flight (tests/restore_tcp_half_test.ts).
 *
 * usage: rt_tcp_inflight <trigger-file>
 *
 * Sets up a non-blocking listener L and a client C connected to it, never
 * accepted (C's peer is in L's accept queue, in no fd). Prints
 * "ready pid=<pid>", waits for the trigger file, then checks: L's queue is
 * empty ("queue-empty": accept says EAGAIN), C's peer is gone (C reads a
 * reset or EOF within 3 s: "client-reset"), and L accepts a new client
 * ("new-client").
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_tcp_inflight <trigger-file>");
  signal(SIGPIPE, SIG_IGN);
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0) die("listen");
  getsockname(l, (struct sockaddr *)&a, &alen);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  int got = accept(l, NULL, NULL);
  check("queue-empty", got < 0 && errno == EAGAIN, "accept gave %d (%s)", got, strerror(errno));
  if (got >= 0) close(got);
  /* Any byte C sends reaches no socket: the kernel answers with a reset. */
  send(c, "x", 1, MSG_NOSIGNAL);
  struct pollfd p = {c, POLLIN, 0};
  int pr = poll(&p, 1, 3000);
  char b;
  ssize_t r = recv(c, &b, 1, MSG_DONTWAIT);
  check("client-reset", pr == 1 && r <= 0, "poll %d, recv %zd (%s)", pr, r, strerror(errno));
  int n = socket(AF_INET, SOCK_STREAM, 0);
  int ok = n >= 0 && connect(n, (struct sockaddr *)&a, sizeof a) == 0;
  struct pollfd lp = {l, POLLIN, 0};
  ok = ok && poll(&lp, 1, 3000) == 1;
  int acc = ok ? accept(l, NULL, NULL) : -1;
  check("new-client", acc >= 0, "connect/accept: %s", strerror(errno));
  return verdict();
}
