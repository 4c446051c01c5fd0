/* A known byte stream over one TCP connection between two processes of a
 * target's tree (rt_tcpbuf.c, rt_tcpwin.c): each end sends a stream whose
 * byte i is a function of i and of who sends it, and checks every byte it
 * reads of the other's. Include after common.h. */
#ifndef CRYO_TCP_STREAM_H
#define CRYO_TCP_STREAM_H

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define CHUNK 65536

/* Byte `i` of the stream `who` sends: no period a lost or repeated piece could hide in. */
static uint8_t stream_byte(unsigned who, uint64_t i) {
  uint64_t x = ((i >> 3) + ((uint64_t)who << 56)) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return (uint8_t)(x >> ((i & 7) * 8));
}

/* One end of the connection: its stream's state and what it read of the other's. */
struct end {
  int s;
  unsigned me, other;
  uint64_t written, got, bad, first_bad;
};

/* Checks `n` bytes read of the other's stream (counting the bad ones, the first's offset kept)
 * and counts them read. */
static void check_read(struct end *e, const uint8_t *buf, ssize_t n) {
  for (ssize_t k = 0; k < n; k++) {
    if (buf[k] != stream_byte(e->other, e->got + (uint64_t)k) && e->bad++ == 0)
      e->first_bad = e->got + (uint64_t)k;
  }
  e->got += (uint64_t)n;
}

/* The bytes queued on `s`: received and not read (`in`), to send (`out`). */
static void queued(int s, int *in, int *out) {
  if (ioctl(s, SIOCINQ, in) != 0 || ioctl(s, SIOCOUTQ, out) != 0) die("SIOCINQ");
}

/* 4 MiB send and receive buffers (SO_SNDBUF, SO_RCVBUF) on `s`. */
static void big_buffers(int s) {
  int size = 4 << 20;
  if (setsockopt(s, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0 ||
      setsockopt(s, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0)
    die("SO_SNDBUF");
}

/* A listener on 127.0.0.1 (a free port, its address in `a`) with big buffers, which the
 * accepted socket inherits before its window is set. */
static int loopback_listener(struct sockaddr_in *a) {
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof *a;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) die("socket");
  big_buffers(l);
  if (bind(l, (struct sockaddr *)a, sizeof *a) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr *)a, &alen) != 0)
    die("listen");
  return l;
}

/* Makes the pipes `up` (child to parent) and `down` and forks the connection's two ends. In
 * the child (0 returned), `e` is its end (2) connected to `a` (with big buffers first when
 * `big`), "child pid=N" printed, the listener and the pipes' ends it does not use closed (exit
 * 20 or 21 when the connection fails); in the parent (the child's pid returned), `e` is the
 * accepted end (1), the listener and the child's pipe ends closed. */
static pid_t fork_ends(int l, const struct sockaddr_in *a, int up[2], int down[2], int big,
                       struct end *e) {
  if (pipe(up) != 0 || pipe(down) != 0) die("pipe");
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    close(l);
    close(up[0]);
    close(down[1]);
    *e = (struct end){.s = socket(AF_INET, SOCK_STREAM, 0), .me = 2, .other = 1};
    if (e->s < 0) _exit(20);
    if (big) big_buffers(e->s);
    if (connect(e->s, (const struct sockaddr *)a, sizeof *a) != 0) _exit(21);
    printf("child pid=%d\n", getpid());
    fflush(stdout);
    return 0;
  }
  close(up[1]);
  close(down[0]);
  *e = (struct end){.s = accept(l, NULL, NULL), .me = 1, .other = 2};
  if (e->s < 0) die("accept");
  close(l);
  return c;
}

#endif
