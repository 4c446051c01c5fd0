/* A TCP listener with an MD5 signature key (tests/dump_tcp_md5_test.ts).
 *
 * usage: rt_tcp_md5 <trigger-file>
 *
 * Listens on 127.0.0.1 (a free port) with a TCP_MD5SIG key for peer
 * 127.0.0.1, prints "ready pid=<pid> port=<port>", waits for the trigger
 * file, then checks the listener still works with its key: a client with
 * the same key connects and is accepted.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static void set_key(int fd) {
  struct tcp_md5sig k = {0};
  struct sockaddr_in *peer = (struct sockaddr_in *)&k.tcpm_addr;
  peer->sin_family = AF_INET;
  peer->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  k.tcpm_keylen = 6;
  memcpy(k.tcpm_key, "secret", 6);
  if (setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &k, sizeof k) != 0) die("TCP_MD5SIG");
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_tcp_md5 <trigger-file>");
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
  set_key(l);
  if (listen(l, 4) != 0) die("listen");
  socklen_t len = sizeof a;
  getsockname(l, (struct sockaddr *)&a, &len);
  printf("ready pid=%d port=%d\n", getpid(), ntohs(a.sin_port));
  fflush(stdout);
  wait_trigger(argv[1]);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  set_key(c);
  int ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
  struct pollfd p = {.fd = l, .events = POLLIN};
  check("md5-accepts", ok && poll(&p, 1, 5000) == 1 && accept(l, NULL, NULL) >= 0,
        "a client with the key was not accepted: %s", strerror(errno));
  return verdict();
}
