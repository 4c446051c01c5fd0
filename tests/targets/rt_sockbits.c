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
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
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
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}
