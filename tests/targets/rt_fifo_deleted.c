/* Round-trip target for a FIFO whose path was removed while open:
 * <work>/f opened read-write (A), read-only O_NONBLOCK (B) and write-only
 * (C), mode 0640, bytes written and left buffered, then unlinked; a child
 * inherits C (a description shared in the tree), unless "alone" is given
 * (then the FIFO is re-created by this process's own fd phase).
 *
 * After the restore: every fd is still one FIFO (same inode for the
 * three), shown as "<work>/f (deleted)", with mode 0640 and its flags; the
 * path is free again; the buffered bytes are read back once; bytes written
 * through C (here and by the child) are read through A and B.
 *
 * usage: rt_fifo_deleted <trigger> <workdir> [alone]
 * prints: ready pid=<pid> child=<child>
 */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BUFFERED "buffered before the dump"
#define LATE "late"

static int flags_of(int fd) { return fcntl(fd, F_GETFL) & ~0100000; }

static int shows_deleted(int fd, const char *path) {
  char link[64], target[600], want[600];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  snprintf(want, sizeof want, "%s (deleted)", path);
  return !strcmp(target, want);
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
  need_args(argc, 2, "rt_fifo_deleted <trigger> <workdir> [alone]");
  int alone = argc > 3 && !strcmp(argv[3], "alone");
  const char *trigger = argv[1];
  char path[512];
  snprintf(path, sizeof path, "%s/f", argv[2]);
  if (mkfifo(path, 0600) != 0) die("mkfifo");
  int a = open(path, O_RDWR);
  int b = open(path, O_RDONLY | O_NONBLOCK);
  int c = open(path, O_WRONLY);
  if (a < 0 || b < 0 || c < 0) die("open");
  if (fchmod(a, 0640) != 0) die("fchmod");
  if (write(c, BUFFERED, strlen(BUFFERED)) != (ssize_t)strlen(BUFFERED)) die("write");
  if (unlink(path) != 0) die("unlink");
  int fa = flags_of(a), fb = flags_of(b), fc = flags_of(c);
  pid_t child = alone ? 0 : fork();
  if (!alone && child == 0) {
    close(a);
    close(b);
    wait_trigger(trigger);
    if (!shows_deleted(c, path) || flags_of(c) != fc) _exit(11);
    if (write(c, LATE, strlen(LATE)) != (ssize_t)strlen(LATE)) _exit(12);
    _exit(0);
  }
  print_ready("pid=%d child=%d", getpid(), child);
  wait_trigger(trigger);

  struct stat sa, sb, sc, sp;
  check("same-fifo", fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && fstat(c, &sc) == 0 &&
                         S_ISFIFO(sa.st_mode) && sa.st_ino == sb.st_ino && sa.st_ino == sc.st_ino,
        "not one FIFO");
  check("mode", (sa.st_mode & 07777) == 0640 && sa.st_nlink == 0, "mode %o nlink %lu",
        sa.st_mode & 07777, (unsigned long)sa.st_nlink);
  check("deleted", shows_deleted(a, path) && shows_deleted(b, path) && shows_deleted(c, path),
        "readlink does not show %s (deleted)", path);
  errno = 0;
  int gone = stat(path, &sp) != 0 && errno == ENOENT;
  check("path-free", gone, "%s exists", path);
  check("flags", flags_of(a) == fa && flags_of(b) == fb && flags_of(c) == fc,
        "A %o (%o) B %o (%o) C %o (%o)", flags_of(a), fa, flags_of(b), fb, flags_of(c), fc);
  int status = 0;
  if (alone && write(c, LATE, strlen(LATE)) != (ssize_t)strlen(LATE)) die("write late");
  check("child", alone || (waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                           WEXITSTATUS(status) == 0),
        "status %x", status);
  char buf[64] = {0};
  ssize_t n = read_n(b, buf, strlen(BUFFERED LATE));
  check("bytes", n == (ssize_t)strlen(BUFFERED LATE) && !strcmp(buf, BUFFERED LATE), "read %zd '%s'",
        n, buf);
  if (write(c, "x", 1) != 1) die("write c");
  char x = 0;
  check("works", read(a, &x, 1) == 1 && x == 'x', "read '%c' errno %d", x, errno);
  return verdict();
}
