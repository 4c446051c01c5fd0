/* File leases (fcntl F_SETLEASE): a read lease on <work>/r through an
 * O_RDONLY description and a write lease on <work>/w through an O_RDWR one
 * owned by this process (F_SETOWN), with SIGUSR2 as the break signal
 * (F_SETSIG). Args: <work dir>. Prints "ready pid=<pid>", waits for
 * SIGUSR1 (sent after the restore), then checks that F_GETLEASE shows both
 * leases and that they act: a child's non-blocking open that conflicts
 * (O_WRONLY of r, O_RDONLY of w) fails with EWOULDBLOCK and starts the
 * break, whose SIGUSR2 reaches this process; prints check lines and
 * PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/wait.h>

static volatile sig_atomic_t breaks;
static void on_break(int sig) {
  (void)sig;
  breaks++;
}

static int leased(const char *work, const char *name, int flags, int lease) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", work, name);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
  if (fd < 0) die(path);
  close(fd);
  fd = open(path, flags);
  if (fd < 0) die(path);
  if (fcntl(fd, F_SETOWN, getpid()) != 0) die("F_SETOWN");
  if (fcntl(fd, F_SETSIG, SIGUSR2) != 0) die("F_SETSIG");
  if (fcntl(fd, F_SETLEASE, lease) != 0) die("F_SETLEASE");
  return fd;
}

/* A child's non-blocking open of <work>/<name> with `flags`: its errno (0 if it opened). */
static int child_open_errno(const char *work, const char *name, int flags) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work, name);
    int fd = open(path, flags | O_NONBLOCK);
    int e = fd < 0 ? errno : 0;
    if (write(p[1], &e, sizeof e) != sizeof e) _exit(1);
    _exit(0);
  }
  int e = -1;
  if (read(p[0], &e, sizeof e) != sizeof e) e = -1;
  waitpid(c, NULL, 0);
  close(p[0]);
  close(p[1]);
  return e;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_lease <work dir>");
  signal(SIGUSR2, on_break);
  int r = leased(argv[1], "r", O_RDONLY, F_RDLCK);
  int w = leased(argv[1], "w", O_RDWR, F_WRLCK);
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);

  check("read-lease", fcntl(r, F_GETLEASE) == F_RDLCK, "%d", fcntl(r, F_GETLEASE));
  check("write-lease", fcntl(w, F_GETLEASE) == F_WRLCK, "%d", fcntl(w, F_GETLEASE));
  int e = child_open_errno(argv[1], "r", O_WRONLY);
  check("read-lease-acts", e == EWOULDBLOCK, "errno %d", e);
  e = child_open_errno(argv[1], "w", O_RDONLY);
  check("write-lease-acts", e == EWOULDBLOCK, "errno %d", e);
  for (int i = 0; i < 200 && breaks < 2; i++) sleep_ms(10);
  check("break-signals", breaks == 2, "%d SIGUSR2", (int)breaks);
  return verdict();
}
