/* A TCP client of the test (tests/tcp_lock_test.ts): the network lock.
 *
 * usage: rt_tcp_lock <port>
 *
 * Connects to 127.0.0.1:<port> (the test, outside the tree), prints
 * "ready pid=<pid>", then answers every line it reads with "ack:<line>"
 * until the test closes the connection; exits 0 then, 1 on a read or
 * write error (a reset connection). The test dumps (kills) it, writes a
 * line while it is down, restores it, and expects that line answered.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_tcp_lock <port>");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) die("connect");
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  char line[256];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, line + have, sizeof line - have - 1);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      printf("read: %s\n", strerror(errno));
      return 1;
    }
    have += (size_t)n;
    char *nl;
    while ((nl = memchr(line, '\n', have)) != NULL) {
      size_t len = (size_t)(nl - line) + 1;
      char out[300];
      int m = snprintf(out, sizeof out, "ack:%.*s", (int)len, line);
      if (write(fd, out, (size_t)m) != m) {
        printf("write: %s\n", strerror(errno));
        return 1;
      }
      memmove(line, line + len, have - len);
      have -= len;
    }
    if (have == sizeof line - 1) have = 0; /* a line too long: dropped */
  }
}
