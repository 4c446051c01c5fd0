/* Probe target for pipe state CRIU's zdtm pipe tests set up, one mode per
 * case:
 *   full-1m:  two pipes enlarged to 1 MiB (F_SETPIPE_SZ), one of them full:
 *             1 MiB of a pattern waiting to be read, the other empty;
 *   reopen:   both ends of a pipe opened again through /proc/self/fd (more
 *             descriptions of each end: one O_NONBLOCK, one O_RDWR), 3
 *             bytes waiting in it.
 *
 * After the restore each mode checks its own state and prints check lines.
 *
 * usage: rt_pipeprobe <trigger> <mode>
 * prints: ready pid=<pid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>

#define BIG (1 << 20)

static unsigned char pattern(size_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

static int full_1m(const char *trigger) {
  int a[2], b[2];
  if (pipe2(a, O_NONBLOCK) || pipe2(b, O_NONBLOCK)) die("pipe2");
  if (fcntl(a[1], F_SETPIPE_SZ, BIG) < 0 || fcntl(b[1], F_SETPIPE_SZ, BIG) < 0) {
    die("F_SETPIPE_SZ");
  }
  static unsigned char buf[BIG];
  for (size_t i = 0; i < BIG; i++) buf[i] = pattern(i);
  if (write(a[1], buf, BIG) != BIG) die("write");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);

  int sa = fcntl(a[0], F_GETPIPE_SZ), sb = fcntl(b[0], F_GETPIPE_SZ);
  check("full-size", sa == BIG && sb == BIG, "sizes %d %d", sa, sb);
  memset(buf, 0, BIG);
  size_t got = 0;
  for (;;) {
    ssize_t n = read(a[0], buf + got, BIG - got);
    if (n <= 0) break;
    got += (size_t)n;
    if (got == BIG) break;
  }
  size_t bad = 0;
  for (size_t i = 0; i < got; i++) bad += buf[i] != pattern(i);
  char extra;
  errno = 0;
  ssize_t more = read(a[0], &extra, 1);
  check("full-data", got == BIG && bad == 0 && more == -1 && errno == EAGAIN,
        "read %zu bytes, %zu wrong, then %zd", got, bad, more);
  errno = 0;
  more = read(b[0], &extra, 1);
  check("full-empty", more == -1 && errno == EAGAIN, "the empty pipe gave %zd", more);
  return verdict();
}

static int reopen_end(int fd, int flags) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int r = open(path, flags);
  if (r < 0) die("reopen");
  return r;
}

static int reopen(const char *trigger) {
  int p[2];
  if (pipe(p)) die("pipe");
  int r2 = reopen_end(p[0], O_RDONLY | O_NONBLOCK), w2 = reopen_end(p[1], O_WRONLY);
  int rw = reopen_end(p[0], O_RDWR);
  if (write(p[1], "abc", 3) != 3) die("write");
  int fl[5] = {fcntl(p[0], F_GETFL), fcntl(p[1], F_GETFL), fcntl(r2, F_GETFL), fcntl(w2, F_GETFL),
               fcntl(rw, F_GETFL)};
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);

  int same = 1;
  int now[5] = {fcntl(p[0], F_GETFL), fcntl(p[1], F_GETFL), fcntl(r2, F_GETFL), fcntl(w2, F_GETFL),
                fcntl(rw, F_GETFL)};
  for (int i = 0; i < 5; i++) same &= now[i] == fl[i];
  check("reopen-flags", same, "%o %o %o %o %o, were %o %o %o %o %o", now[0], now[1], now[2], now[3],
        now[4], fl[0], fl[1], fl[2], fl[3], fl[4]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  fcntl(r2, F_SETFL, 0);
  check("reopen-apart", (fcntl(p[0], F_GETFL) & O_NONBLOCK) && !(fcntl(r2, F_GETFL) & O_NONBLOCK) &&
                            !(fcntl(rw, F_GETFL) & O_NONBLOCK),
        "status flags shared");
  char b[8] = {0};
  ssize_t n = read(r2, b, sizeof b);
  check("reopen-data", n == 3 && !memcmp(b, "abc", 3), "read %zd", n);
  ssize_t w = write(w2, "de", 2), w3 = write(rw, "f", 1);
  memset(b, 0, sizeof b);
  n = read(rw, b, sizeof b);
  check("reopen-one-pipe", w == 2 && w3 == 1 && n == 3 && !memcmp(b, "def", 3), "read %zd: %.3s", n,
        b);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_pipeprobe <trigger> <mode>");
  if (!strcmp(argv[2], "full-1m")) return full_1m(argv[1]);
  if (!strcmp(argv[2], "reopen")) return reopen(argv[1]);
  fprintf(stderr, "unknown mode %s\n", argv[2]);
  return 2;
}
