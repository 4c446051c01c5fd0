/* Round-trip target for pidfds: the parent holds a pidfd of its child
 * (non-blocking) and one of itself; the child holds a pidfd of its parent.
 * After restore the child checks its parent's pidfd, then waits for
 * SIGUSR2; the parent checks its pidfds name the same processes with the
 * same flags, sends SIGUSR2 through the child's pidfd, polls the pidfd
 * until the child has exited and reaps it with waitid(P_PIDFD).
 *
 * usage: rt_pidfd <trigger>
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

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

static volatile sig_atomic_t usr2;
static void on_usr2(int sig) {
  (void)sig;
  usr2 = 1;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_pidfd <trigger>");
  sigset_t mask, old;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR2);
  sigprocmask(SIG_BLOCK, &mask, &old);
  signal(SIGUSR2, on_usr2);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    int ppfd = (int)syscall(SYS_pidfd_open, parent, 0);
    if (ppfd < 0) _exit(2);
    wait_trigger(argv[1]);
    int ok = fdinfo_pid(ppfd) == getppid() && getppid() == parent &&
             syscall(SYS_pidfd_send_signal, ppfd, 0, NULL, 0) == 0;
    while (!usr2) sigsuspend(&old);
    _exit(ok ? 42 : 1);
  }
  int cfd = (int)syscall(SYS_pidfd_open, child, O_NONBLOCK);
  int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (cfd < 0 || self < 0) die("pidfd_open");
  print_ready("pid=%d child=%d", getpid(), child);
  wait_trigger(argv[1]);

  check("child-pidfd", fdinfo_pid(cfd) == child, "names %d, not %d", fdinfo_pid(cfd), child);
  check("self-pidfd", fdinfo_pid(self) == getpid(), "names %d", fdinfo_pid(self));
  int fl = fcntl(cfd, F_GETFL), fdfl = fcntl(self, F_GETFD);
  check("flags", (fl & O_NONBLOCK) && !(fcntl(self, F_GETFL) & O_NONBLOCK) && (fdfl & FD_CLOEXEC),
        "child pidfd fl %o, self fd flags %o", fl, fdfl);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_PIDFD, cfd, &si, WEXITED | WNOHANG);
  check("child-running", r == 0 && si.si_pid == 0, "waitid %d pid %d", r, si.si_pid);
  r = (int)syscall(SYS_pidfd_send_signal, cfd, SIGUSR2, NULL, 0);
  check("send-signal", r == 0, "errno %d", errno);
  /* The pidfd is non-blocking: wait until it says the child exited (POLLIN). */
  struct pollfd pfd = {cfd, POLLIN, 0};
  int polled = poll(&pfd, 1, 5000);
  check("poll", polled == 1 && (pfd.revents & POLLIN), "poll %d revents %x", polled, pfd.revents);
  memset(&si, 0, sizeof si);
  r = waitid(P_PIDFD, cfd, &si, WEXITED);
  check("waitid", r == 0 && si.si_pid == child && si.si_code == CLD_EXITED && si.si_status == 42,
        "waitid %d errno %d pid %d code %d status %d", r, errno, si.si_pid, si.si_code,
        si.si_status);
  return verdict();
}
