/* Round-trip target for pidfds of processes that exited and were reaped
 * (fdinfo "Pid: -1"): one child exits with 7 (its pidfd non-blocking), one
 * is killed by SIGTERM; both are reaped before the dump. A second pidfd of
 * the first child, opened on its own (another open file description,
 * blocking), is held beside it.
 *
 * After the restore each fd is still a pidfd naming no process, with its
 * status flags, PIDFD_GET_INFO gives the same exit status, sending a
 * signal through it fails with ESRCH, poll says it exited, and the process
 * has no child left and no SIGCHLD pending. The two pidfds of the first
 * child still name one process (the same pidfs inode, not the second
 * child's) through two descriptions (their status flags apart).
 *
 * usage: rt_pidfd_dead <trigger>
 * prints: ready pid=<pid>
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define GET_INFO 0xc048ff0bUL /* PIDFD_GET_INFO, 72-byte struct pidfd_info */

/* The Pid: line of /proc/self/fdinfo/<fd>, or -2. */
static int fdinfo_pid(int fd) {
  char path[64], line[256];
  int pid = -2;
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (!f) return -2;
  while (fgets(line, sizeof line, f)) sscanf(line, "Pid: %d", &pid);
  fclose(f);
  return pid;
}

/* The exit status PIDFD_GET_INFO gives for pidfd fd, or -1. */
static int exit_status(int fd) {
  unsigned char info[72];
  memset(info, 0, sizeof info);
  unsigned long long mask = 8; /* PIDFD_INFO_EXIT */
  memcpy(info, &mask, 8);
  if (ioctl(fd, GET_INFO, info) != 0) return -1;
  memcpy(&mask, info, 8);
  if (!(mask & 8)) return -1;
  int code;
  memcpy(&code, info + 60, 4);
  return code;
}

static int is_pidfd(int fd) {
  char path[64], target[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return !strcmp(target, "anon_inode:[pidfd]");
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_pidfd_dead <trigger>");
  pid_t a = fork();
  if (a == 0) _exit(7);
  pid_t b = fork();
  if (b == 0) {
    for (;;) pause();
  }
  int fa = (int)syscall(SYS_pidfd_open, a, O_NONBLOCK);
  int fb = (int)syscall(SYS_pidfd_open, b, 0);
  int fa2 = (int)syscall(SYS_pidfd_open, a, 0);
  if (fa < 0 || fb < 0 || fa2 < 0) die("pidfd_open");
  kill(b, SIGTERM);
  int st;
  if (waitpid(a, &st, 0) != a || waitpid(b, &st, 0) != b) die("waitpid");
  int sa = exit_status(fa), sb = exit_status(fb);
  if (fdinfo_pid(fa) != -1 || fdinfo_pid(fb) != -1 || sa != 7 << 8 || sb != SIGTERM) {
    die("not reaped");
  }
  sigset_t pend;
  sigemptyset(&pend);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  check("pidfd", is_pidfd(fa) && is_pidfd(fb), "not pidfds");
  check("pid", fdinfo_pid(fa) == -1 && fdinfo_pid(fb) == -1, "Pid: %d %d", fdinfo_pid(fa),
        fdinfo_pid(fb));
  check("exit-status", exit_status(fa) == sa && exit_status(fb) == sb, "%x %x, not %x %x",
        exit_status(fa), exit_status(fb), sa, sb);
  int fla = fcntl(fa, F_GETFL), flb = fcntl(fb, F_GETFL);
  check("flags", (fla & O_NONBLOCK) && !(flb & O_NONBLOCK) && (fcntl(fa, F_GETFD) & FD_CLOEXEC),
        "fl %o %o", fla, flb);
  errno = 0;
  int r = (int)syscall(SYS_pidfd_send_signal, fa, SIGUSR2, NULL, 0);
  int e = errno;
  check("send-signal", r == -1 && e == ESRCH, "r %d errno %d", r, e);
  struct pollfd p[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
  int polled = poll(p, 2, 0);
  check("poll", polled == 2 && (p[0].revents & POLLIN) && (p[1].revents & POLLIN),
        "poll %d revents %x %x", polled, p[0].revents, p[1].revents);
  struct stat s1, s2, s3;
  fstat(fa, &s1), fstat(fa2, &s2), fstat(fb, &s3);
  check("same-process", is_pidfd(fa2) && exit_status(fa2) == sa && s1.st_ino == s2.st_ino &&
                            s1.st_ino != s3.st_ino,
        "inodes %lu %lu %lu", (unsigned long)s1.st_ino, (unsigned long)s2.st_ino,
        (unsigned long)s3.st_ino);
  int fl2 = fcntl(fa2, F_GETFL);
  fcntl(fa2, F_SETFL, fl2 | O_NONBLOCK);
  check("two-descriptions", !(fl2 & O_NONBLOCK) && (fcntl(fa, F_GETFL) & O_NONBLOCK) &&
                                fcntl(fa, F_SETFL, 0) == 0 && (fcntl(fa2, F_GETFL) & O_NONBLOCK),
        "fl %o", fl2);
  errno = 0;
  r = waitpid(-1, &st, WNOHANG | __WALL);
  e = errno;
  check("no-child", r == -1 && e == ECHILD, "waitpid %d errno %d", r, e);
  sigpending(&pend);
  check("no-sigchld", !sigismember(&pend, SIGCHLD), "SIGCHLD pending");
  return verdict();
}
