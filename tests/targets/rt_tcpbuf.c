/* A TCP connection between two processes of the tree with its four queues
 * full, written and read all the time (pre-dump chains and kill dumps of
 * queued TCP data).
 *
 * The parent listens on 127.0.0.1, forks the child, accepts its connection
 * and closes the listener; both ends ask for 4 MiB send and receive
 * buffers. Each process sends the other a known stream (byte i a function
 * of i and of who sends it) with non-blocking writes, as much as the
 * connection takes, and reads <slow> bytes of the other's stream every 10
 * ms, checking each: the queues stay full and bytes move all the time.
 * Before the ready line both write without reading until the queues stop
 * growing.
 *
 * Once the trigger file exists each process writes on for 200 ms, then
 * shuts its end down for writing, sends the count of bytes it wrote through
 * a pipe, and reads the rest of the other's stream at full speed up to its
 * end. The child exits 0 when its checks pass (1: stream, 2: count, more:
 * an error); the parent checks:
 *   stream  every byte it read is the child's stream's byte at its offset
 *   count   it read exactly what the child wrote
 *   peer    the child's own checks of the parent's stream passed (exit 0)
 * then prints PASS or FAIL and exits. The child prints "child pid=<pid>".
 *
 * usage: rt_tcpbuf <trigger> <slow>
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/wait.h>

#include "common.h"
#include "tcp_stream.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Sends as much of its stream as the connection takes now; <0 on an error. */
static int send_some(struct end *e) {
  static uint8_t buf[CHUNK];
  for (;;) {
    for (size_t k = 0; k < CHUNK; k++) buf[k] = stream_byte(e->me, e->written + k);
    ssize_t n = send(e->s, buf, CHUNK, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      e->written += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    return 0;
  }
}

/* Reads at most `max` bytes (blocking or not) and checks them; the count read, 0 at the end, <0 on an error. */
static ssize_t recv_some(struct end *e, size_t max, int flags) {
  static uint8_t buf[CHUNK];
  ssize_t n = recv(e->s, buf, max < CHUNK ? max : CHUNK, flags);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 1 : -1;
  check_read(e, buf, n);
  return n;
}

/* Both directions until 200 ms after the trigger, then the end of both streams. */
static int run(struct end *e, size_t slow, const char *trigger, int report_out, int report_in,
               uint64_t *peer_written) {
  double stop_at = 0;
  for (;;) {
    if (stop_at == 0 && access(trigger, F_OK) == 0) stop_at = now_ms() + 200;
    if (stop_at != 0 && now_ms() > stop_at) break;
    if (send_some(e) < 0) return 10;
    if (recv_some(e, slow, MSG_DONTWAIT) < 0) return 11;
    sleep_ms(10);
  }
  if (shutdown(e->s, SHUT_WR) != 0) return 12;
  if (write(report_out, &e->written, sizeof e->written) != sizeof e->written) return 13;
  for (;;) {
    ssize_t n = recv_some(e, CHUNK, 0);
    if (n == 0) break;
    if (n < 0) return 14;
  }
  if (read(report_in, peer_written, sizeof *peer_written) != sizeof *peer_written) return 15;
  return 0;
}

/* Writes without reading until neither queue of `s` grows any more. */
static void fill(struct end *e) {
  int in = -1, out = -1, last_in = -2, last_out = -2;
  for (int i = 0; i < 250 && (in != last_in || out != last_out); i++) {
    last_in = in;
    last_out = out;
    if (send_some(e) < 0) die("send");
    sleep_ms(20);
    queued(e->s, &in, &out);
  }
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_tcpbuf <trigger> <slow>");
  size_t slow = (size_t)atol(argv[2]);
  struct sockaddr_in a;
  int l = loopback_listener(&a); /* big buffers, inherited by the accepted socket */
  int up[2], down[2];
  struct end e;
  pid_t c = fork_ends(l, &a, up, down, 1, &e);
  if (c == 0) {
    fill(&e);
    uint64_t peer_written = 0;
    int rc = run(&e, slow, argv[1], up[1], down[0], &peer_written);
    if (rc) _exit(rc);
    _exit(e.bad ? 1 : e.got != peer_written ? 2 : 0);
  }
  fill(&e);
  int in = 0, out = 0;
  queued(e.s, &in, &out);
  print_ready("pid=%d inq=%d outq=%d", getpid(), in, out);
  uint64_t peer_written = 0;
  int rc = run(&e, slow, argv[1], down[1], up[0], &peer_written);
  int status = 0;
  pid_t r = waitpid(c, &status, 0);
  printf("run=%d read=%llu child-wrote=%llu wrote=%llu\n", rc, (unsigned long long)e.got,
         (unsigned long long)peer_written, (unsigned long long)e.written);
  check("stream", rc == 0 && e.bad == 0, "run %d: %llu bytes differ, the first at offset %llu",
        rc, (unsigned long long)e.bad, (unsigned long long)e.first_bad);
  check("count", rc == 0 && e.got == peer_written, "read %llu, the child wrote %llu",
        (unsigned long long)e.got, (unsigned long long)peer_written);
  check("peer", r == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child status 0x%x (1: its stream differs, 2: its count)", status);
  return verdict();
}
