/* Round-trip target: pipes and a FIFO full to a buffer of 1 MiB.
 *
 *   rt_bigpipe <trigger-file> <work-dir>
 *
 * A pipe and a FIFO (made in <work-dir>) whose buffers are raised to 1 MiB
 * (F_SETPIPE_SZ, the default pipe-max-size) and filled with a counting
 * pattern; prints "ready pid=<pid>", waits for the trigger file (the test
 * dumps and restores it meanwhile), then reads both back (check lines,
 * then PASS or FAIL).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "common.h"

#define SIZE (1 << 20)

static void fill(int w) {
  if (fcntl(w, F_SETPIPE_SZ, SIZE) != SIZE) die("F_SETPIPE_SZ");
  static unsigned char buf[SIZE];
  for (int i = 0; i < SIZE; i++) buf[i] = (unsigned char)(i * 7 + i / 251);
  if (write(w, buf, SIZE) != SIZE) die("write");
}

/* Reads SIZE bytes from `r` (non-blocking): 1 when they are the pattern and nothing follows. */
static int drained(int r) {
  static unsigned char buf[SIZE + 1];
  size_t got = 0;
  ssize_t n;
  while (got <= SIZE && (n = read(r, buf + got, SIZE + 1 - got)) > 0) got += n;
  if (got != SIZE) return 0;
  for (int i = 0; i < SIZE; i++)
    if (buf[i] != (unsigned char)(i * 7 + i / 251)) return 0;
  return 1;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_bigpipe <trigger-file> <work-dir>");
  const char *trigger = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  int p[2];
  if (pipe2(p, O_NONBLOCK)) die("pipe2");
  fill(p[1]);
  char path[4096];
  snprintf(path, sizeof path, "%s/fifo", argv[2]);
  if (mkfifo(path, 0600)) die("mkfifo");
  int fr = open(path, O_RDONLY | O_NONBLOCK), fw = open(path, O_WRONLY | O_NONBLOCK);
  if (fr < 0 || fw < 0) die("open fifo");
  fill(fw);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  check("bigpipe-pipe", drained(p[0]), "the pipe's 1 MiB differs");
  check("bigpipe-fifo", drained(fr), "the FIFO's 1 MiB differs");
  return verdict();
}
