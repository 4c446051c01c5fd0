/* Half-closed and closing TCP connections across a checkpoint
 * (tests/restore_tcp_half_test.ts).
 *
 * usage: rt_tcp_half <trigger-file> exact|closed
 *
 * Sets up, on loopback, pairs of connected sockets inside the process
 * (each pair: a client and the socket its listener accepted), small
 * receive buffers so that a queue fills:
 *   fw2/cw  fw2 wrote "data-fw2" and shut down writing (FIN_WAIT2); cw has
 *           not read it (CLOSE_WAIT, the bytes then EOF queued) and wrote
 *           "from-cw", unread in fw2;
 *   fw1/r1  fw1 wrote until its queue was full (r1 reads nothing), then
 *           shut down writing: its FIN waits behind unsent bytes
 *           (FIN_WAIT1);
 *   f3/la   f3 shut down writing (FIN_WAIT2); la (CLOSE_WAIT) then wrote
 *           until full and shut down writing (LAST_ACK, FIN unsent);
 *   cl/f4   cl wrote until full and shut down writing (FIN_WAIT1), then f4
 *           shut down writing: cl got its FIN (CLOSING), f4's FIN was
 *           acknowledged (FIN_WAIT2, cl's bytes unread);
 *   rd/w5   rd shut its receive side (shutdown SHUT_RD), still ESTABLISHED;
 *   e1/e2   both shut down writing, each read the other's EOF: the connection
 *           ended, both sockets in TCP_CLOSE, fds still open;
 * and two connections from the test (outside the tree), accepted:
 *   ocw     the test sent "from-test" and shut down writing (CLOSE_WAIT);
 *   ofw     this side sent "bye" and shut down writing (FIN_WAIT2; the
 *           test has read "bye" and EOF).
 *
 * Prints "ready pid=<pid> port=<listener port>", accepts the test's two
 * connections (the first is ocw, the second ofw), checks each state
 * ("setup-states"), prints "armed", waits for the trigger file, then checks:
 * "exact": every socket's TCP_INFO state as before, reads give the queued
 * bytes then EOF where the peer had shut down (0 right away for rd),
 * writes fail with EPIPE where this side had, the other ends still write,
 * the closing connections finish (fw1 -> FIN_WAIT2 once r1 has read, la
 * and cl -> CLOSE once their peers have read), and over ocw it sends
 * "reply" then closes, over ofw it reads "after" from the test.
 * "closed" (restored with --tcp-close): every connection's socket is in
 * TCP_CLOSE, recv gives 0, poll says POLLHUP, send fails with EPIPE.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static int listener;
static struct sockaddr_in laddr;

static int tcp_state(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return -1;
  return ti.tcpi_state;
}

static const char *state_name(int s) {
  static const char *names[] = {"?",         "ESTABLISHED", "SYN_SENT", "SYN_RECV",
                                "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                "CLOSE_WAIT", "LAST_ACK",   "LISTEN",   "CLOSING"};
  return s >= 0 && s <= 11 ? names[s] : "?";
}

/* A connected pair: *c the client, *a the accepted end; receive buffers of `rcvbuf` if > 0. */
static void pair(int *c, int *a, int rcvbuf) {
  *c = socket(AF_INET, SOCK_STREAM, 0);
  if (*c < 0) die("socket");
  if (rcvbuf > 0 && setsockopt(*c, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
    die("SO_RCVBUF");
  if (connect(*c, (struct sockaddr *)&laddr, sizeof laddr) != 0) die("connect");
  *a = accept(listener, NULL, NULL);
  if (*a < 0) die("accept");
}

static void send_text(int fd, const char *text) {
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write");
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + (i >> 7)); }

/* Writes the pattern without blocking until the queue is full (the send buffer autotuned:
 * megabytes, nearly all unsent behind the peer's closed window); returns the byte count. */
static size_t fill(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  unsigned char buf[1024];
  size_t total = 0;
  for (int idle = 0; idle < 20;) {
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = pattern(total + i);
    ssize_t r = write(fd, buf, sizeof buf);
    if (r > 0) {
      total += (size_t)r;
      idle = 0;
    } else {
      idle++;
      sleep_ms(10); /* the peer's window may still open a little */
    }
  }
  fcntl(fd, F_SETFL, fl);
  return total;
}

/* Waits up to 3 s for fd to reach state `want`; returns the state seen last. */
static int wait_state(int fd, int want) {
  int s = tcp_state(fd);
  for (int i = 0; i < 300 && s != want; i++) {
    sleep_ms(10);
    s = tcp_state(fd);
  }
  return s;
}

/* Reads `n` pattern bytes then expects EOF; returns a description of what differed, or NULL. */
static const char *read_pattern_eof(int fd, size_t n) {
  static char why[128];
  unsigned char buf[4096];
  size_t got = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) {
      snprintf(why, sizeof why, "timed out after %zu of %zu bytes", got, n);
      return why;
    }
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0) {
      snprintf(why, sizeof why, "read: %s after %zu bytes", strerror(errno), got);
      return why;
    }
    if (r == 0) break;
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != pattern(got + (size_t)i)) {
        snprintf(why, sizeof why, "byte %zu differs", got + (size_t)i);
        return why;
      }
    }
    got += (size_t)r;
  }
  if (got != n) {
    snprintf(why, sizeof why, "EOF after %zu of %zu bytes", got, n);
    return why;
  }
  return NULL;
}

/* Reads exactly strlen(text) bytes within 5 s and compares them. */
static int expect(int fd, const char *text) {
  char buf[64] = {0};
  size_t n = strlen(text), got = 0;
  while (got < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got == n && memcmp(buf, text, n) == 0;
}

static int is_eof(int fd) {
  char c;
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 5000) <= 0) return 0;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static int send_epipe(int fd) {
  return send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == -1 && errno == EPIPE;
}

/* The --tcp-close state of one connection's socket: closed, reads 0, POLLHUP, EPIPE. */
static void check_closed(const char *name, int fd) {
  char c;
  int st = tcp_state(fd);
  ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
  int rerr = errno;
  struct pollfd p = {fd, POLLIN | POLLOUT, 0};
  int pr = poll(&p, 1, 0);
  int epipe = send_epipe(fd);
  char check_name[64];
  snprintf(check_name, sizeof check_name, "closed-%s", name);
  check(check_name, st == TCP_CLOSE && r == 0 && pr == 1 && (p.revents & POLLHUP) && epipe,
        "state %s, recv %zd (%s), revents %#x, send EPIPE %d", state_name(st), r,
        r < 0 ? strerror(rerr) : "-", p.revents, epipe);
}

/* Whether each of the `n` sockets `fds` is in its state `want`; `detail` names each that is not. */
static int states_as(const int *fds, const int *want, const char *const *names, int n, char *detail,
                     size_t size) {
  int ok = 1;
  detail[0] = 0;
  for (int i = 0; i < n; i++) {
    int s = tcp_state(fds[i]);
    if (s != want[i]) {
      ok = 0;
      size_t at = strlen(detail);
      snprintf(detail + at, size - at, "%s %s ", names[i], state_name(s));
    }
  }
  return ok;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_tcp_half <trigger-file> exact|closed");
  int closed = strcmp(argv[2], "closed") == 0;
  signal(SIGPIPE, SIG_IGN);

  listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&laddr, 0, sizeof laddr);
  laddr.sin_family = AF_INET;
  laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Accepted ends inherit the listener's small receive buffer. */
  int small = 4096;
  setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  if (bind(listener, (struct sockaddr *)&laddr, sizeof laddr) != 0) die("bind");
  if (listen(listener, 8) != 0) die("listen");
  socklen_t ll = sizeof laddr;
  getsockname(listener, (struct sockaddr *)&laddr, &ll);

  int fw2, cw, fw1, r1, f3, la, cl, f4, rd, w5;
  pair(&fw2, &cw, 0);
  send_text(fw2, "data-fw2");
  send_text(cw, "from-cw");
  shutdown(fw2, SHUT_WR);

  pair(&fw1, &r1, 0);
  size_t n_fw1 = fill(fw1);
  shutdown(fw1, SHUT_WR);

  pair(&f3, &la, 4096);
  shutdown(f3, SHUT_WR);
  sleep_ms(50);
  size_t n_la = fill(la);
  shutdown(la, SHUT_WR);

  pair(&cl, &f4, 0);
  size_t n_cl = fill(cl);
  shutdown(cl, SHUT_WR);
  sleep_ms(50);
  shutdown(f4, SHUT_WR);

  pair(&rd, &w5, 0);
  shutdown(rd, SHUT_RD);

  int e1, e2;
  char eb;
  pair(&e1, &e2, 0);
  shutdown(e1, SHUT_WR);
  shutdown(e2, SHUT_WR);
  if (read(e1, &eb, 1) != 0 || read(e2, &eb, 1) != 0) die("ended pair: EOF");
  sleep_ms(100);

  print_ready("pid=%d port=%d", getpid(), ntohs(laddr.sin_port));
  int ocw = accept(listener, NULL, NULL);
  int ofw = accept(listener, NULL, NULL);
  if (ocw < 0 || ofw < 0) die("accept (test)");
  send_text(ofw, "bye");
  shutdown(ofw, SHUT_WR);
  /* The test sends "from-test" and shuts down its side of ocw; wait for the FIN. */
  int s_ocw = wait_state(ocw, TCP_CLOSE_WAIT);
  int s_ofw = wait_state(ofw, TCP_FIN_WAIT2);

  int want[] = {TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_ESTABLISHED, TCP_FIN_WAIT2,
                TCP_LAST_ACK,  TCP_CLOSING,    TCP_FIN_WAIT2, TCP_ESTABLISHED, TCP_ESTABLISHED};
  int fds[] = {fw2, cw, fw1, r1, f3, la, cl, f4, rd, w5};
  const char *names[] = {"fw2", "cw", "fw1", "r1", "f3", "la", "cl", "f4", "rd", "w5"};
  char detail[512];
  int ok = states_as(fds, want, names, 10, detail, sizeof detail) && s_ocw == TCP_CLOSE_WAIT &&
           s_ofw == TCP_FIN_WAIT2 && tcp_state(e1) == TCP_CLOSE && tcp_state(e2) == TCP_CLOSE;
  check("setup-states", ok, "%socw %s ofw %s", detail, state_name(s_ocw), state_name(s_ofw));
  printf("armed fw1=%zu la=%zu cl=%zu\n", n_fw1, n_la, n_cl);
  fflush(stdout);

  wait_trigger(argv[1]);

  if (closed) {
    for (int i = 0; i < 10; i++) check_closed(names[i], fds[i]);
    check_closed("ocw", ocw);
    check_closed("ofw", ofw);
    check_closed("e1", e1);
    check_closed("e2", e2);
    return verdict();
  }
  /* The ended connection: closed sockets shut down both ways, as before. */
  check_closed("e1", e1);
  check_closed("e2", e2);

  /* States right after the restore, before anything is read. */
  ok = states_as(fds, want, names, 10, detail, sizeof detail);
  int now_ocw = tcp_state(ocw), now_ofw = tcp_state(ofw);
  check("states", ok && now_ocw == TCP_CLOSE_WAIT && now_ofw == TCP_FIN_WAIT2, "%socw %s ofw %s",
        detail, state_name(now_ocw), state_name(now_ofw));

  /* FIN_WAIT2 / CLOSE_WAIT. */
  check("fw2-epipe", send_epipe(fw2), "send: %s", strerror(errno));
  check("cw-data-eof", expect(cw, "data-fw2") && is_eof(cw), "");
  send_text(cw, "back");
  check("fw2-reads", expect(fw2, "from-cw") && expect(fw2, "back"), "");
  /* FIN_WAIT1 behind unsent bytes. */
  check("fw1-epipe", send_epipe(fw1), "send: %s", strerror(errno));
  const char *why = read_pattern_eof(r1, n_fw1);
  check("r1-data-eof", why == NULL, "%s", why ? why : "");
  int s = wait_state(fw1, TCP_FIN_WAIT2);
  check("fw1-acked", s == TCP_FIN_WAIT2, "state %s", state_name(s));
  /* LAST_ACK. */
  check("la-eof", is_eof(la), "");
  check("la-epipe", send_epipe(la), "send: %s", strerror(errno));
  why = read_pattern_eof(f3, n_la);
  check("f3-data-eof", why == NULL, "%s", why ? why : "");
  s = wait_state(la, TCP_CLOSE);
  check("la-closed", s == TCP_CLOSE, "state %s", state_name(s));
  /* CLOSING. */
  check("cl-eof", is_eof(cl), "");
  check("cl-epipe", send_epipe(cl), "send: %s", strerror(errno));
  check("f4-epipe", send_epipe(f4), "send: %s", strerror(errno));
  why = read_pattern_eof(f4, n_cl);
  check("f4-data-eof", why == NULL, "%s", why ? why : "");
  s = wait_state(cl, TCP_CLOSE);
  check("cl-closed", s == TCP_CLOSE, "state %s", state_name(s));
  /* SHUT_RD. */
  char c;
  check("rd-eof", recv(rd, &c, 1, MSG_DONTWAIT) == 0, "");
  send_text(rd, "y");
  check("rd-writes", expect(w5, "y"), "");
  /* Outside. */
  check("ocw-data-eof", expect(ocw, "from-test") && is_eof(ocw), "");
  send_text(ocw, "reply");
  close(ocw);
  check("ofw-epipe", send_epipe(ofw), "send: %s", strerror(errno));
  check("ofw-reads", expect(ofw, "after") && is_eof(ofw), "");
  return verdict();
}
