/* Fds in flight (SCM_RIGHTS) that no process holds any more
 * (engine/fds/unix_scm.ts), checked after a restore: what each message
 * gives back (fd kind, access mode and status flags, content) and which
 * received fds are one description (kcmp).
 *
 *   pair-read/pair-write  both ends of a pipe with bytes in it, each in its own
 *                         datagram (O_NONBLOCK on the read end)
 *   both                  both ends of another pipe in one seqpacket message
 *   eof                   a pipe read end with bytes, its write end closed
 *   epipe                 a pipe write end, its read end closed
 *   twice                 an eventfd sent in two messages (one description)
 *   read-twice            a pipe read end sent in two messages, its write end
 *                         held by the process
 *   orphan                datagrams with fds queued on a socketpair end whose
 *                         peer (the sender) was closed
 *
 * usage: rt_scm_gone <trigger> <workdir> [outside|twice|timers]
 *   twice    only the eventfd sent in two messages
 *   timers   a signalfd and an armed timerfd only messages hold
 *   outside  a pipe read end in flight whose write end a process outside the
 *            tree holds (refused); checks it is still queued. The outsider's
 *            pid is printed (outsider=N); it exits on SIGTERM or after 60 s.
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* Receives one message of exactly `want` (its bytes) with `wantFds` fds into `fds`;
 * returns whether it came so (reported as check `name`). */
static int expect(const char *name, int sock, const char *want, int *fds, int wantFds) {
  char buf[64] = {0};
  size_t len = strlen(want);
  struct iovec iov = {buf, sizeof buf};
  union { struct cmsghdr h; char buf[CMSG_SPACE(8 * sizeof(int))]; } c;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                       .msg_controllen = sizeof c.buf};
  ssize_t r = recvmsg(sock, &msg, MSG_DONTWAIT);
  int n = 0;
  for (struct cmsghdr *cm = r >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && n < 4; i++) {
      memcpy(&fds[n++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
  }
  int ok = r == (ssize_t)len && !memcmp(buf, want, len) && n == wantFds;
  check(name, ok, "got %zd bytes \"%.*s\" with %d fds, want \"%s\" with %d", r,
        (int)(r > 0 ? r : 0), buf, n, want, wantFds);
  return ok;
}

/* Whether `fd` is a pipe end opened with access mode `mode` and, of `extra`, exactly `want`. */
static int pipe_end(int fd, int mode, int extra, int want) {
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && fl >= 0 && (fl & O_ACCMODE) == mode &&
         (fl & extra) == want;
}

/* Whether fds `a` and `b` of this process are one open file description. */
static int same_description(int a, int b) {
  return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

/* Reads what `fd` holds now (non-blocking) into `buf` (NUL-terminated); returns the count. */
static ssize_t drain(int fd, char *buf, size_t cap) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  memset(buf, 0, cap);
  ssize_t r = read(fd, buf, cap - 1);
  fcntl(fd, F_SETFL, fl);
  return r;
}

/* The "twice" checks: messages "1" and "2" on `sock`, each with the same eventfd (count 5);
 * returns the fd the first came with (-1: none). */
static int check_twice(int sock) {
  int e1[4] = {-1, -1, -1, -1}, e2[4];
  if (expect("twice-1", sock, "1", e1, 1) & expect("twice-2", sock, "2", e2, 1)) {
    uint64_t count = 0;
    check("twice-one-description", same_description(e1[0], e2[0]), "");
    check("twice-count", read(e1[0], &count, 8) == 8 && count == 5, "count %llu",
          (unsigned long long)count);
    check("twice-drained", read(e2[0], &count, 8) < 0 && errno == EAGAIN, "");
  }
  return e1[0];
}

/* Only the eventfd sent in two messages (the round trip's "twice" part). */
static int twice_only(const char *trigger) {
  int st[2];
  int ev = eventfd(5, EFD_NONBLOCK);
  if (ev < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0) die("socketpair");
  send_fds(st[0], "1", 1, &ev, 1);
  send_fds(st[0], "2", 1, &ev, 1);
  close(ev);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  check_twice(st[1]);
  return verdict();
}

/* A signalfd (SIGUSR1, SIGUSR2) and a timerfd (CLOCK_MONOTONIC, 1000 s, every 500 s) only
 * messages hold. */
static int timers(const char *trigger) {
  int st[2];
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {.it_interval = {500, 0}, .it_value = {1000, 0}};
  if (sfd < 0 || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0) die("signalfd/timerfd");
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0) die("socketpair");
  send_fds(st[0], "s", 1, &sfd, 1);
  send_fds(st[0], "t", 1, &tfd, 1);
  close(sfd);
  close(tfd);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int fds[4];
  if (expect("signalfd", st[1], "s", fds, 1)) {
    struct signalfd_siginfo si;
    ssize_t none = read(fds[0], &si, sizeof si);
    check("signalfd-flags", (fcntl(fds[0], F_GETFL) & O_NONBLOCK) && none < 0 && errno == EAGAIN,
          "");
    raise(SIGUSR2);
    ssize_t n = read(fds[0], &si, sizeof si);
    check("signalfd-mask", n == sizeof si && si.ssi_signo == SIGUSR2, "read %zd signo %u", n,
          n > 0 ? si.ssi_signo : 0);
  }
  if (expect("timerfd", st[1], "t", fds, 1)) {
    struct itimerspec now;
    int ok = timerfd_gettime(fds[0], &now) == 0;
    check("timerfd-armed", ok && now.it_interval.tv_sec == 500 && now.it_value.tv_sec > 0 &&
                               now.it_value.tv_sec <= 1000,
          "interval %ld value %ld", (long)now.it_interval.tv_sec, (long)now.it_value.tv_sec);
    uint64_t ticks;
    check("timerfd-flags", (fcntl(fds[0], F_GETFL) & O_NONBLOCK) && read(fds[0], &ticks, 8) < 0 &&
                               errno == EAGAIN,
          "");
  }
  return verdict();
}

static int outside(const char *trigger) {
  int sp[2], p[2], ready[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) != 0 || pipe(p) != 0 || pipe(ready) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    /* The grandchild leaves the tree (its parent exits) with the write end. */
    pid_t g = fork();
    if (g != 0) _exit(g < 0);
    close(p[0]);
    pid_t me = getpid();
    if (write(ready[1], &me, sizeof me) != sizeof me) _exit(2);
    alarm(60);
    for (;;) pause();
  }
  pid_t outsider = 0;
  if (read(ready[0], &outsider, sizeof outsider) != sizeof outsider) die("outsider");
  waitpid(child, NULL, 0);
  send_fds(sp[0], "r", 1, &p[0], 1);
  close(p[0]);
  close(p[1]);
  print_ready("pid=%d outsider=%d", getpid(), outsider);
  wait_trigger(trigger);
  int fds[4];
  expect("outside-still-queued", sp[1], "r", fds, 1);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_scm_gone <trigger> <workdir> [outside]");
  signal(SIGPIPE, SIG_IGN);
  if (argc > 3 && !strcmp(argv[3], "outside")) return outside(argv[1]);
  if (argc > 3 && !strcmp(argv[3], "twice")) return twice_only(argv[1]);
  if (argc > 3 && !strcmp(argv[3], "timers")) return timers(argv[1]);

  int dg[2], sq[2], st[2], orphan[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) != 0 ||
      socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0 ||
      socketpair(AF_UNIX, SOCK_DGRAM, 0, orphan) != 0) {
    die("socketpair");
  }
  int pair[2], both[2], eof[2], epipe[2], twice[2];
  if (pipe(pair) != 0 || pipe(both) != 0 || pipe(eof) != 0 || pipe(epipe) != 0 ||
      pipe(twice) != 0) {
    die("pipe");
  }
  if (write(pair[1], "buffered", 8) != 8 || write(both[1], "in one", 6) != 6 ||
      write(eof[1], "last words", 10) != 10 || write(twice[1], "shared", 6) != 6) {
    die("write");
  }
  fcntl(pair[0], F_SETFL, O_NONBLOCK);
  int ev = eventfd(5, EFD_NONBLOCK);
  if (ev < 0) die("eventfd");

  send_fds(dg[0], "r", 1, &pair[0], 1);
  send_fds(dg[0], "w", 1, &pair[1], 1);
  send_fds(sq[0], "both", 4, both, 2);
  send_fds(st[0], "e", 1, &eof[0], 1);
  send_fds(st[0], "x", 1, &epipe[1], 1);
  send_fds(st[0], "1", 1, &ev, 1);
  send_fds(st[0], "2", 1, &ev, 1);
  send_fds(dg[0], "t1", 2, &twice[0], 1);
  send_fds(dg[0], "t2", 2, &twice[0], 1);
  send_fds(orphan[0], "first", 5, &ev, 1);
  send_fds(orphan[0], "second", 6, NULL, 0);
  close(orphan[0]);
  close(pair[0]);
  close(pair[1]);
  close(both[0]);
  close(both[1]);
  close(eof[0]);
  close(eof[1]);
  close(epipe[0]);
  close(epipe[1]);
  close(twice[0]);
  close(ev);

  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  int r[4], w[4], fds[4];
  char buf[32];
  if (expect("pair-read", dg[1], "r", r, 1) & expect("pair-write", dg[1], "w", w, 1)) {
    check("pair-read-end", pipe_end(r[0], O_RDONLY, O_NONBLOCK, O_NONBLOCK), "");
    check("pair-write-end", pipe_end(w[0], O_WRONLY, O_NONBLOCK, 0), "");
    ssize_t n = drain(r[0], buf, sizeof buf);
    check("pair-bytes", n == 8 && !strcmp(buf, "buffered"), "read %zd \"%s\"", n, buf);
    int wrote = write(w[0], "more", 4);
    n = drain(r[0], buf, sizeof buf);
    check("pair-one-pipe", wrote == 4 && n == 4 && !strcmp(buf, "more"), "read %zd \"%s\"", n,
          buf);
  }
  if (expect("both", sq[1], "both", fds, 2)) {
    check("both-ends", pipe_end(fds[0], O_RDONLY, 0, 0) && pipe_end(fds[1], O_WRONLY, 0, 0), "");
    ssize_t n = drain(fds[0], buf, sizeof buf);
    check("both-bytes", n == 6 && !strcmp(buf, "in one"), "read %zd \"%s\"", n, buf);
  }
  if (expect("eof", st[1], "e", fds, 1)) {
    check("eof-end", pipe_end(fds[0], O_RDONLY, 0, 0), "");
    ssize_t n = drain(fds[0], buf, sizeof buf);
    ssize_t end = read(fds[0], buf, 1);
    check("eof-bytes-then-eof", n == 10 && !memcmp(buf, "last words", 10) && end == 0,
          "read %zd then %zd", n, end);
  }
  if (expect("epipe", st[1], "x", fds, 1)) {
    check("epipe-end", pipe_end(fds[0], O_WRONLY, 0, 0), "");
    errno = 0;
    ssize_t n = write(fds[0], "z", 1);
    check("epipe-no-reader", n < 0 && errno == EPIPE, "write %zd errno %d", n, errno);
  }
  int twice_fd = check_twice(st[1]);
  int t1[4], t2[4];
  if (expect("read-twice-1", dg[1], "t1", t1, 1) & expect("read-twice-2", dg[1], "t2", t2, 1)) {
    check("read-twice-one-description", same_description(t1[0], t2[0]), "");
    int wrote = write(twice[1], "!", 1);
    ssize_t n = drain(t2[0], buf, sizeof buf);
    check("read-twice-bytes", wrote == 1 && n == 7 && !strcmp(buf, "shared!"), "read %zd \"%s\"",
          n, buf);
  }
  int o[4];
  if (expect("orphan-first", orphan[1], "first", o, 1)) {
    uint64_t count = 0;
    check("orphan-eventfd", same_description(o[0], twice_fd) && read(o[0], &count, 8) < 0, "");
  }
  expect("orphan-second", orphan[1], "second", o, 0);
  errno = 0;
  ssize_t sent = send(orphan[1], "?", 1, MSG_DONTWAIT);
  check("orphan-peer-gone", sent < 0 && errno == ECONNREFUSED, "send %zd errno %d", sent, errno);
  return verdict();
}
