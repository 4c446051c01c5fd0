/* Probe target for pipe state CRIU's zdtm pipe tests set up, one mode per
 * case:
 *   full-1m:  two pipes enlarged to 1 MiB (F_SETPIPE_SZ), one of them full:
 *             1 MiB of a pattern waiting to be read, the other empty.
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

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_pipeprobe <trigger> <mode>");
  if (!strcmp(argv[2], "full-1m")) return full_1m(argv[1]);
  fprintf(stderr, "unknown mode %s\n", argv[2]);
  return 2;
}
