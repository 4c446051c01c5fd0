/* Round-trip target for the fd kinds re-created from their state: a pipe
 * inside the process with bytes buffered in it, an eventfd with a count, an
 * armed periodic timerfd, a signalfd, an epoll watching the pipe and the
 * eventfd, and a pipe shared with a child process (the child writes into it
 * after the restore). Also a region and an fd that a test may leave out of
 * the image (it passes "excluded" to check they come back empty/closed).
 *
 * usage: rt_fdkinds <trigger> [excluded]
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#define PIPE_BYTES "bytes left in the pipe"
#define REGION (1 << 20)

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_fdkinds <trigger> [excluded]");
  int excluded = argc > 2 && !strcmp(argv[2], "excluded");

  int p[2];
  if (pipe2(p, O_NONBLOCK) != 0) die("pipe2");
  if (write(p[1], PIPE_BYTES, strlen(PIPE_BYTES)) != (ssize_t)strlen(PIPE_BYTES)) die("write");

  int efd = eventfd(0, EFD_NONBLOCK);
  uint64_t five = 5;
  if (efd < 0 || write(efd, &five, 8) != 8) die("eventfd");

  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {{0, 50 * 1000 * 1000}, {0, 50 * 1000 * 1000}}; /* every 50 ms */
  if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0) die("timerfd");

  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, NULL);
  int sfd = signalfd(-1, &usr2, SFD_NONBLOCK);
  if (sfd < 0) die("signalfd");

  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
  struct epoll_event ev2 = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x5678};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev2))
    die("epoll");

  /* A pipe shared with a child: the child waits for the trigger, then writes. */
  int shared[2];
  if (pipe(shared) != 0) die("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(shared[0]);
    wait_trigger(argv[1]);
    const char msg[] = "from the child";
    if (write(shared[1], msg, sizeof msg) != sizeof msg) _exit(1);
    _exit(0);
  }
  close(shared[1]);

  /* What a policy may leave out: a region with a pattern and a file fd. */
  /* Between two PROT_NONE guard pages, so it never merges with a neighbour. */
  unsigned char *reserve = mmap(NULL, REGION + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char *region = reserve + 4096;
  if (reserve == MAP_FAILED || mprotect(region, REGION, PROT_READ | PROT_WRITE) != 0) die("region");
  memset(region, 0xab, REGION);
  int dropfd = open("/dev/null", O_RDONLY);

  print_ready("pid=%d child=%d region=%p dropfd=%d", getpid(), child, (void *)region, dropfd);
  wait_trigger(argv[1]);

  char buf[64] = {0};
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  check("pipe-bytes", n == (ssize_t)strlen(PIPE_BYTES) && !strcmp(buf, PIPE_BYTES), "read %zd '%s'", n, buf);
  check("pipe-nonblock", (fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0, "flags %o", fcntl(p[0], F_GETFL));

  uint64_t count = 0;
  check("eventfd-count", read(efd, &count, 8) == 8 && count == 5, "count %lu", (unsigned long)count);

  struct itimerspec cur;
  timerfd_gettime(tfd, &cur);
  check("timerfd-interval",
        cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 50 * 1000 * 1000 &&
            (cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0),
        "interval %ld.%09ld value %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec,
        (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
  uint64_t ticks = 0;
  sleep_ms(80);
  check("timerfd-fires", read(tfd, &ticks, 8) == 8 && ticks >= 1, "ticks %lu", (unsigned long)ticks);

  kill(getpid(), SIGUSR2);
  struct signalfd_siginfo si;
  check("signalfd", read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2, "signo %u",
        si.ssi_signo);

  uint64_t more = 1;
  if (write(p[1], "x", 1) != 1 || write(efd, &more, 8) != 8) die("write after restore");
  struct epoll_event got[4];
  int ready = epoll_wait(ep, got, 4, 1000);
  int saw_pipe = 0, saw_efd = 0;
  for (int i = 0; i < ready; i++) {
    if (got[i].data.u64 == 0x1234) saw_pipe = 1;
    if (got[i].data.u64 == 0x5678) saw_efd = 1;
  }
  check("epoll", saw_pipe && saw_efd, "ready %d pipe %d eventfd %d", ready, saw_pipe, saw_efd);

  char cbuf[32] = {0};
  struct pollfd pfd = {shared[0], POLLIN, 0};
  poll(&pfd, 1, 5000);
  n = read(shared[0], cbuf, sizeof cbuf);
  check("shared-pipe", n > 0 && !strcmp(cbuf, "from the child"), "read %zd '%s'", n, cbuf);
  int status = 0;
  check("child", waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "status %x", status);

  if (excluded) {
    check("excluded-region", region[0] == 0 && region[REGION - 1] == 0, "first byte %x", region[0]);
    check("excluded-fd", fcntl(dropfd, F_GETFD) == -1 && errno == EBADF, "fd %d still open", dropfd);
  } else {
    check("region", region[0] == 0xab && region[REGION - 1] == 0xab, "first byte %x", region[0]);
    check("fd", fcntl(dropfd, F_GETFD) != -1, "fd %d closed", dropfd);
  }
  return verdict();
}
