/* Round-trip target for an inetd-style service: a TCP connection on the
 * service's fds 0 and 1.
 *
 * The process started (the "outer" one, never dumped) listens on
 * 127.0.0.1, connects to itself and forks the service with the accepted
 * end on fds 0 and 1 (stderr stays the output file); the service echoes
 * what it reads. The outer one checks an echo before the dump, waits for
 * the trigger, then checks that the same connection still echoes: after
 * a restore that took the restorer's stdio for fds 0-1 it reads EOF.
 *
 * usage: rt_stdio_socket <trigger>
 * prints: ready outer=<pid> root=<service pid>, then the outer's report
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

/* Sends `msg` on `fd` and reads its echo (5 s at most). */
static int echoes(int fd, const char *msg) {
  char buf[64] = "";
  size_t n = strlen(msg);
  if (write(fd, msg, n) != (ssize_t)n) return 0;
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return 0;
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return 0;
    got += (size_t)r;
  }
  return memcmp(buf, msg, n) == 0;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_stdio_socket <trigger>");
  signal(SIGCHLD, SIG_IGN); /* the dumped service is reaped as the dump kills it */
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &len) != 0)
    die("listen");
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
  int s = accept(ls, NULL, NULL);
  if (s < 0) die("accept");
  pid_t root = fork();
  if (root < 0) die("fork");
  if (root == 0) {
    if (dup2(s, 0) != 0 || dup2(s, 1) != 1) die("dup2");
    for (int fd = 3; fd < 64; fd++) close(fd);
    char buf[64];
    for (;;) {
      ssize_t r = read(0, buf, sizeof buf);
      if (r <= 0) _exit(r == 0 ? 0 : 1);
      if (write(1, buf, (size_t)r) != r) _exit(1);
    }
  }
  close(s);
  close(ls);
  check("echo-before", echoes(c, "before"), "no echo before the dump");
  print_ready("outer=%d root=%d", getpid(), root);
  wait_trigger(argv[1]);
  check("echo-after", echoes(c, "after"), "the connection does not echo after the restore");
  return verdict();
}
