/* Round-trip target for named pipes (FIFOs) opened by path:
 *
 * - <work>/f1 opened three times in this process: read-write (A), read-only
 *   O_NONBLOCK (B), write-only (C), with bytes buffered in it;
 * - <work>/f2 read here (O_NONBLOCK), written by the child, with bytes the
 *   child wrote before the dump still buffered.
 *
 * After the restore: every fd has its flags as before and is still the FIFO
 * at its path, the buffered bytes are there exactly once, and both FIFOs
 * carry new bytes (a FIFO whose path was removed: rt_fifo_deleted.c).
 *
 * usage: rt_fifo <trigger> <workdir>
 * prints: ready pid=<pid> child=<child> fd=<fd of A>
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BUFFERED "buffered in f1"
#define EARLY "early"
#define LATE "late"

static int flags_of(int fd) { return fcntl(fd, F_GETFL) & ~0100000; }

static int same_inode(int fd, const char *path) {
  struct stat a, b;
  return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && S_ISFIFO(a.st_mode);
}

/* Reads exactly n bytes (waiting up to 5 s for them); returns how many came. */
static ssize_t read_n(int fd, char *buf, size_t n) {
  size_t got = 0;
  for (int i = 0; got < n && i < 250; i++) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r > 0) got += (size_t)r;
    else sleep_ms(20);
  }
  return (ssize_t)got;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_fifo <trigger> <workdir>");
  const char *trigger = argv[1], *work = argv[2];
  char f1[512], f2[512];
  snprintf(f1, sizeof f1, "%s/f1", work);
  snprintf(f2, sizeof f2, "%s/f2", work);
  if (mkfifo(f1, 0600) != 0 || mkfifo(f2, 0600) != 0) die("mkfifo");

  int a = open(f1, O_RDWR);
  int b = open(f1, O_RDONLY | O_NONBLOCK);
  int c = open(f1, O_WRONLY);
  if (a < 0 || b < 0 || c < 0) die("open f1");
  if (write(a, BUFFERED, strlen(BUFFERED)) != (ssize_t)strlen(BUFFERED)) die("write f1");
  int fa = flags_of(a), fb = flags_of(b), fc = flags_of(c);

  int r2 = open(f2, O_RDONLY | O_NONBLOCK);
  if (r2 < 0) die("open f2");
  int f2flags = flags_of(r2);
  pid_t child = fork();
  if (child == 0) {
    int w = open(f2, O_WRONLY);
    if (w < 0 || write(w, EARLY, strlen(EARLY)) != (ssize_t)strlen(EARLY)) _exit(10);
    int wflags = flags_of(w);
    wait_trigger(trigger);
    if (flags_of(w) != wflags || !same_inode(w, f2)) _exit(11);
    if (write(w, LATE, strlen(LATE)) != (ssize_t)strlen(LATE)) _exit(12);
    _exit(0);
  }
  /* Wait until the child's early bytes sit in f2 (without reading them). */
  struct pollfd pfd = {r2, POLLIN, 0};
  if (poll(&pfd, 1, 5000) != 1) die("child did not write");

  print_ready("pid=%d child=%d fd=%d", getpid(), child, a);
  wait_trigger(trigger);

  check("fifo-flags", flags_of(a) == fa && flags_of(b) == fb && flags_of(c) == fc && flags_of(r2) == f2flags,
        "A %o (%o) B %o (%o) C %o (%o) f2 %o (%o)", flags_of(a), fa, flags_of(b), fb, flags_of(c), fc,
        flags_of(r2), f2flags);
  check("fifo-path", same_inode(a, f1) && same_inode(b, f1) && same_inode(c, f1) && same_inode(r2, f2),
        "an fd is not the FIFO at its path any more");
  char buf[64] = {0};
  ssize_t n = read(b, buf, sizeof buf - 1);
  check("fifo-bytes", n == (ssize_t)strlen(BUFFERED) && !strcmp(buf, BUFFERED), "read %zd '%s'", n, buf);
  if (write(c, "x", 1) != 1) die("write c");
  char x = 0;
  check("fifo-works", read(a, &x, 1) == 1 && x == 'x', "read '%c' errno %d", x, errno);

  char got[32] = {0};
  n = read_n(r2, got, strlen(EARLY LATE));
  check("fifo-shared", n == (ssize_t)strlen(EARLY LATE) && !strcmp(got, EARLY LATE), "read %zd '%s'", n, got);
  int status = 0;
  check("child", waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "status %x", status);
  return verdict();
}
