/* A stream over TCP from a peer outside the tree (tests/tcp_lock_stream_test.ts):
 * the network lock taken before the dump reads the connection.
 *
 * usage: rt_tcp_stream serve
 *        rt_tcp_stream recv <port> [root-deleted]
 *
 * serve (the peer, not dumped): listens on 127.0.0.1, prints "port=<n>",
 * accepts one connection and writes the stream (byte i is byte i % 4 of
 * the little-endian u32 i / 4) in 1000-byte writes, one every 200 us,
 * until SIGUSR1; then shuts its side down, prints "sent=<n>" and exits 0
 * once the other side has closed.
 *
 * recv (the target): connects to 127.0.0.1:<port>, prints "ready pid=<pid>",
 * then reads and checks every byte against the stream until the end of
 * file; prints "received=<n>" and PASS (exit 0), or FAIL at the first byte
 * lost, duplicated or changed (exit 1). With root-deleted its root is a
 * removed directory (a dump refuses it: task.cwd-deleted).
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static volatile sig_atomic_t stop;

static void on_usr1(int sig) {
  (void)sig;
  stop = 1;
}

static unsigned char stream_byte(unsigned long long i) {
  return (unsigned char)((unsigned)(i / 4) >> (8 * (i % 4)));
}

static int serve(void) {
  struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART: a blocked write ends */
  sigaction(SIGUSR1, &sa, NULL);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0) die("listen");
  if (getsockname(l, (struct sockaddr *)&a, &len) != 0) die("getsockname");
  printf("port=%d\n", ntohs(a.sin_port));
  fflush(stdout);
  int c = accept(l, NULL, NULL);
  if (c < 0) die("accept");
  unsigned long long sent = 0;
  unsigned char buf[1000];
  while (!stop) {
    for (size_t k = 0; k < sizeof buf; k++) buf[k] = stream_byte(sent + k);
    ssize_t n = write(c, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    sent += (unsigned long long)n;
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  shutdown(c, SHUT_WR);
  printf("sent=%llu\n", sent);
  fflush(stdout);
  while (read(c, buf, sizeof buf) > 0) {
  }
  return 0;
}

static int recv_stream(const char *port, int root_deleted) {
  if (root_deleted) {
    /* Relative to the cwd (outside the new root): absolute paths resolve in it after the chroot. */
    char dir[] = "rt_tcp_stream.XXXXXX";
    if (chdir("/tmp") != 0 || !mkdtemp(dir) || chroot(dir) != 0 || rmdir(dir) != 0) die("root");
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) die("connect");
  print_ready("pid=%d", getpid());
  unsigned long long got = 0;
  unsigned char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      check("read", 0, "%s after %llu bytes", strerror(errno), got);
      return verdict();
    }
    for (ssize_t k = 0; k < n; k++) {
      if (buf[k] != stream_byte(got + (unsigned long long)k)) {
        check("stream", 0, "byte %llu is %u, not %u", got + (unsigned long long)k, buf[k],
              stream_byte(got + (unsigned long long)k));
        return verdict();
      }
    }
    got += (unsigned long long)n;
  }
  printf("received=%llu\n", got);
  check("stream", 1, "");
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_tcp_stream serve | recv <port> [root-deleted]");
  if (strcmp(argv[1], "serve") == 0) return serve();
  need_args(argc, 2, "rt_tcp_stream recv <port> [root-deleted]");
  return recv_stream(argv[2], argc > 3 && strcmp(argv[3], "root-deleted") == 0);
}
