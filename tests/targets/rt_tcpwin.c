/* A TCP connection between two processes of the tree dumped at a zero
 * window both ways: one end blocked in a write, the other not reading.
 *
 * The parent listens on 127.0.0.1 with 4 MiB buffers (SO_SNDBUF and
 * SO_RCVBUF, inherited by the accepted socket), forks the child, accepts
 * its connection (the child keeps the default, autotuned buffers) and
 * closes the listener. Each end writes a known stream (byte i a function
 * of i and of who sends it) without reading, non-blocking, until the
 * connection takes nothing more: both receive queues are full and both
 * windows are 0. Then the child starts a blocking write of <more> bytes
 * more (it blocks: the parent does not read) and the parent, once the
 * child said it is about to and its own queues stopped growing, prints the
 * ready line and waits for the trigger file without reading.
 *
 * Once the trigger file exists (after the restore) the parent reads <more>
 * and 4 MiB of the child's stream (the child's write completes, the rest
 * of its queue pours into the parent's), waits 300 ms, then writes <more>/4
 * bytes blocking (the child's receive queue is full until it reads), shuts
 * its end down for writing and reads the rest of the child's stream. The
 * child, once its write completed, shuts its end down for writing and reads
 * the parent's stream. Each sends the count it wrote through a pipe.
 * Everything after the trigger must end within 20 s (SIGALRM: the parent
 * kills a child still running then; the child's own limit starts when its
 * blocking write returns). Each end also compares its segment size
 * (TCP_MAXSEG) after the restore with the one before: at least the smaller
 * of it and 32767 (TCP_MAXSEG's limit), less 40 (options).
 * The child exits 0 when its checks pass (1: stream, 2: count, 3: timed
 * out, 4: its segment size, more: an error); the parent checks:
 *   stream  every byte it read is the child's stream's byte at its offset
 *   count   it read exactly what the child wrote
 *   time    it read it all within the time limit
 *   mss     its segment size after the restore
 *   peer    the child's own checks passed (exit 0)
 * then prints PASS or FAIL and exits. The child prints "child pid=<pid>".
 *
 * usage: rt_tcpwin <trigger> <more>
 */
#define _GNU_SOURCE
#include <netinet/tcp.h>
#include <sys/wait.h>

#include "common.h"
#include "tcp_stream.h"

#define LIMIT_S 20

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig) {
  (void)sig;
  timed_out = 1;
}

/* Writes the next `n` bytes of its stream (`flags` MSG_DONTWAIT: what the connection takes
 * now); <0 on an error or the time limit. */
static int send_stream(struct end *e, uint64_t n, int flags) {
  static uint8_t buf[CHUNK];
  uint64_t end = e->written + n;
  while (e->written < end) {
    size_t len = end - e->written < CHUNK ? (size_t)(end - e->written) : CHUNK;
    for (size_t k = 0; k < len; k++) buf[k] = stream_byte(e->me, e->written + k);
    ssize_t w = send(e->s, buf, len, flags | MSG_NOSIGNAL);
    if (w > 0) {
      e->written += (uint64_t)w;
      continue;
    }
    if (w < 0 && errno == EAGAIN && (flags & MSG_DONTWAIT)) return 0;
    if (w < 0 && errno == EINTR && !timed_out) continue;
    return -1;
  }
  return 0;
}

/* Reads the other's stream to its end, checking each byte; <0 on an error or the time limit. */
static int recv_stream(struct end *e) {
  static uint8_t buf[CHUNK];
  for (;;) {
    ssize_t n = recv(e->s, buf, CHUNK, 0);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR && !timed_out) continue;
      return -1;
    }
    check_read(e, buf, n);
  }
}

/* Reads `n` bytes of the other's stream, checking each; <0 on an error. */
static int recv_count(struct end *e, uint64_t n) {
  static uint8_t buf[CHUNK];
  while (n > 0) {
    ssize_t r = recv(e->s, buf, n < CHUNK ? (size_t)n : CHUNK, 0);
    if (r <= 0) return -1;
    check_read(e, buf, r);
    n -= (uint64_t)r;
  }
  return 0;
}

/* Writes without reading until neither queue of the connection grows any more. */
static void fill(struct end *e) {
  int in = -1, out = -1, last_in = -2, last_out = -2;
  for (int i = 0; i < 250 && (in != last_in || out != last_out); i++) {
    last_in = in;
    last_out = out;
    if (send_stream(e, 1ull << 40, MSG_DONTWAIT) < 0) die("send");
    sleep_ms(50);
    queued(e->s, &in, &out);
  }
}

/* The connection's segment size (TCP_MAXSEG of a connected socket: mss_cache). */
static int seg_size(int s) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(s, IPPROTO_TCP, TCP_MAXSEG, &v, &len) != 0) die("TCP_MAXSEG");
  return v;
}

/* The least segment size a restore may give a connection whose size was `before`: TCP_MAXSEG
 * takes at most 32767, so a bigger one (loopback's) may come back as that, less its options. */
static int mss_floor(int before) { return (before < 32767 ? before : 32767) - 40; }

/* Arms the time limit: SIGALRM interrupts a blocked read or write (no SA_RESTART). */
static void arm_limit(void) {
  struct sigaction sa = {.sa_handler = on_alarm};
  sigaction(SIGALRM, &sa, NULL);
  alarm(LIMIT_S);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_tcpwin <trigger> <more>");
  uint64_t more = (uint64_t)atoll(argv[2]);
  struct sockaddr_in a;
  int l = loopback_listener(&a); /* big buffers, inherited by the accepted socket */
  int up[2], down[2];
  struct end e;
  pid_t c = fork_ends(l, &a, up, down, 0, &e);
  if (c == 0) {
    fill(&e);
    int mss_before = seg_size(e.s);
    char go = 'w';
    if (write(up[1], &go, 1) != 1) _exit(22);
    /* Blocks at the zero window until the parent reads, after the trigger. */
    if (send_stream(&e, more, 0) < 0) _exit(23);
    arm_limit(); /* after the trigger: the parent read */
    int mss_after = seg_size(e.s);
    if (shutdown(e.s, SHUT_WR) != 0) _exit(24);
    if (write(up[1], &e.written, sizeof e.written) != sizeof e.written) _exit(25);
    if (recv_stream(&e) < 0) _exit(timed_out ? 3 : 26);
    uint64_t peer_written = 0;
    if (read(down[0], &peer_written, sizeof peer_written) != sizeof peer_written) _exit(27);
    printf("child mss before %d after %d\n", mss_before, mss_after);
    fflush(stdout);
    _exit(e.bad ? 1 : e.got != peer_written ? 2 : mss_after < mss_floor(mss_before) ? 4 : 0);
  }
  fill(&e);
  char go;
  if (read(up[0], &go, 1) != 1) die("read the child's word");
  int in = 0, out = 0, last_in = -1, last_out = -1;
  for (int i = 0; i < 100 && (in != last_in || out != last_out); i++) {
    last_in = in;
    last_out = out;
    sleep_ms(100);
    queued(e.s, &in, &out);
  }
  int mss_before = seg_size(e.s);
  print_ready("pid=%d inq=%d outq=%d", getpid(), in, out);
  wait_trigger(argv[1]);
  int mss_after = seg_size(e.s);
  arm_limit();
  /* Part of the child's stream: its write completes and the rest of its queue pours in. */
  int rc = recv_count(&e, more + (4 << 20));
  if (rc == 0) sleep_ms(300);
  /* Blocks until the child reads (its receive queue is full). */
  if (rc == 0) rc = send_stream(&e, more / 4, 0);
  if (rc == 0 && shutdown(e.s, SHUT_WR) != 0) rc = -1;
  if (rc == 0 && write(down[1], &e.written, sizeof e.written) != sizeof e.written) rc = -1;
  if (rc == 0) rc = recv_stream(&e);
  uint64_t peer_written = 0;
  if (rc == 0 && read(up[0], &peer_written, sizeof peer_written) != sizeof peer_written) rc = -1;
  int status = 0;
  if (timed_out) kill(c, SIGKILL);
  pid_t r = waitpid(c, &status, 0);
  if (r < 0 && timed_out) {
    kill(c, SIGKILL);
    r = waitpid(c, &status, 0);
  }
  int was_late = timed_out;
  alarm(0);
  printf("read=%llu child-wrote=%llu wrote=%llu\n", (unsigned long long)e.got,
         (unsigned long long)peer_written, (unsigned long long)e.written);
  check("stream", e.bad == 0, "%llu bytes differ, the first at offset %llu",
        (unsigned long long)e.bad, (unsigned long long)e.first_bad);
  check("count", rc == 0 && e.got == peer_written, "read %llu, the child wrote %llu",
        (unsigned long long)e.got, (unsigned long long)peer_written);
  check("time", !was_late, "not done %d s after the trigger (read %llu)", LIMIT_S,
        (unsigned long long)e.got);
  check("mss", mss_after >= mss_floor(mss_before), "segment size %d after the restore, %d before",
        mss_after, mss_before);
  check("peer", r == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child status 0x%x (1: its stream differs, 2: its count, 3: timed out, 4: its mss)",
        status);
  return verdict();
}
