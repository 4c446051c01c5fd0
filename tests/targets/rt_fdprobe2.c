/* Round-trip target: a second probe of fd state, one mode per piece of state.
 *
 *   rt_fdprobe2 <trigger-file> <work-dir> <mode>
 *
 * Each mode sets its state, prints "ready pid=<pid>", waits for the
 * trigger file (the test dumps, kills and restores it meanwhile), then
 * checks that state (check lines, then PASS or FAIL). Modes:
 *
 *   ep-oneshot    an EPOLLONESHOT watch that fired (disarmed until
 *                 EPOLL_CTL_MOD): refused at dump (an add would re-arm it)
 *   pipe-widowed  a pipe whose write end was closed, bytes left in it, and
 *                 one whose read end was closed
 *   pipe-widowed-shared  such a read end held by the process and a child
 *   ep-armed      an EPOLLONESHOT watch that has not fired (still armed)
 *   ep-et         an EPOLLET watch whose edge was consumed, bytes left (a
 *                 known gap: restored, it reports once more; not in the test)
 *   ep-exclusive  EPOLLEXCLUSIVE and EPOLLWAKEUP watches
 *   ep-nested     an epoll watching an epoll that has a ready watch
 *   ep-closed     a watch whose fd was closed while a dup keeps the file
 *   ep-reused     the same, and the closed fd number reused by another pipe
 *   ep-shared-closed  ep-closed in an epoll shared with a child
 *   ep-orphan     a watch whose file only an SCM_RIGHTS message holds (refused)
 *   ep-twofds     one file watched under two fd numbers, 64-bit data
 *   in-symlink    an inotify watch on a symlink itself (IN_DONT_FOLLOW)
 *   in-masks      inotify watches with IN_ONESHOT, IN_MASK_ADD, IN_EXCL_UNLINK
 *   tfd-flags     timerfds: REALTIME ABSTIME|CANCEL_ON_SET, BOOTTIME,
 *                 1 ms periodic with expirations not read
 *   sfd-pending   signalfd for SIGUSR2 with a SIGUSR2 pending
 *   memfd-seals   memfds with seals (SEAL/SHRINK/GROW/FUTURE_WRITE, WRITE),
 *                 MFD_NOEXEC_SEAL, MFD_EXEC
 *   owner-tid     a pipe with O_ASYNC, F_SETSIG and F_SETOWN_EX to a thread
 *   rw-hint       F_SET_RW_HINT on a file
 *   unix-peekoff  SO_PEEK_OFF advanced by a peek
 *   unix-creds    SCM_CREDENTIALS in a datagram queue
 *   unix-opts     SO_RCVLOWAT, SO_RCVTIMEO, SO_SNDTIMEO, SO_PASSSEC, SO_PASSPIDFD
 *   unix-shut     shutdown(SHUT_RD) and shutdown(SHUT_WR) on a pair
 *   ep-busypoll   an epoll's busy-poll parameters (EPIOCSPARAMS)
 *   pidfd-zombie  a pidfd of a child that exited and was not reaped
 *   locks         POSIX read and write locks (ranges, to EOF), an OFD lock, a flock
 *   locks-deleted the same on a file removed while open
 *   memfd-mapped  sealed memfds mapped shared: GROW under a writable
 *                 mapping, WRITE under a read-only one
 *   memfd-mapped-fw  the same with FUTURE_WRITE under the writable one (refused)
 *   memfd-misc    a memfd's name and write-life hint (F_SET_RW_HINT)
 *   unix-senders  a datagram queue from two named senders, an unnamed
 *                 one and an autobound one
 *   unix-sender-gone  the same, one named sender closed since (refused)
 *   opath-kinds   O_PATH fds on a symlink (O_NOFOLLOW), a FIFO, a socket file
 *   refused-kinds a fanotify group, a read lease being broken, an inotify event queued (refused)
 *   unix-backlog  a listener with two connections not accepted yet
 *   unix-backlog-gone  the same, the second client closed since
 *   unix-oob      a byte sent MSG_OOB on a unix stream, not read yet
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#define EPIOCSPARAMS_ _IOW(0x8A, 0x01, struct epoll_params_)
#define EPIOCGPARAMS_ _IOR(0x8A, 0x02, struct epoll_params_)
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef F_GET_RW_HINT
#define F_GET_RW_HINT 1035
#define F_SET_RW_HINT 1036
#endif

static void put(int fd, const char *s) {
  if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

static void add(int ep, int fd, unsigned events, unsigned long long data) {
  struct epoll_event ev = {.events = events, .data.u64 = data};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) die("epoll_ctl add");
}

/* epoll_wait with timeout 0; the data of the events into `got`. */
static int ready_now(int ep, unsigned long long *got, int max) {
  struct epoll_event ev[8];
  int n = epoll_wait(ep, ev, max > 8 ? 8 : max, 0);
  for (int i = 0; i < n; i++) got[i] = ev[i].data.u64;
  return n;
}

/* The line of /proc/self/fdinfo/<fd> starting with `key`, or "". */
static const char *fdinfo_line(int fd, const char *key) {
  static char line[512];
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (!f) return "";
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, strlen(key))) {
      fclose(f);
      line[strcspn(line, "\n")] = 0;
      return line;
    }
  }
  fclose(f);
  return "";
}

static int opt(int fd, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  return getsockopt(fd, SOL_SOCKET, name, &v, &l) ? -999 : v;
}

static void set(int fd, int name, int v) {
  if (setsockopt(fd, SOL_SOCKET, name, &v, sizeof v)) die("setsockopt");
}

static int by_text(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The lines of /proc/locks on inode `ino`, without their ordinal, sorted. */
static void locks_of(unsigned long ino, char *out, size_t size) {
  static char lines[16][256];
  char *sorted[16], tail[64];
  int n = 0;
  snprintf(tail, sizeof tail, ":%lu ", ino);
  out[0] = 0;
  FILE *f = fopen("/proc/locks", "r");
  while (f && n < 16 && fgets(lines[n], sizeof lines[n], f)) {
    if (!strstr(lines[n], tail) || strstr(lines[n], "->")) continue;
    sorted[n] = strchr(lines[n], ' ');
    char *id = strstr(lines[n], tail); /* "maj:min:ino " -> blanked: compared without the inode */
    if (id) memset(id, '-', strlen(tail) - 1);
    if (sorted[n]) n++;
  }
  if (f) fclose(f);
  qsort(sorted, n, sizeof *sorted, by_text);
  for (int i = 0; i < n; i++) {
    if (strlen(out) + strlen(sorted[i]) < size) strcat(out, sorted[i]);
  }
}

static volatile int thread_tid;
static void *idle_thread(void *arg) {
  (void)arg;
  thread_tid = gettid_raw();
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_fdprobe2 <trigger-file> <work-dir> <mode>");
  const char *trigger = argv[1], *work = argv[2], *mode = argv[3];
  char path[4096];
  unsigned long long got[8] = {0};

  if (!strcmp(mode, "ep-oneshot")) {
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    put(a[1], "x");
    add(ep, a[0], EPOLLIN | EPOLLONESHOT, 0x11);
    int n = epoll_wait(ep, (struct epoll_event[2]){0}, 2, 1000);
    if (n != 1) die("oneshot did not fire");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    n = ready_now(ep, got, 8);
    check("ep-oneshot-disarmed", n == 0, "%d events (data %llx) from a disarmed watch", n, got[0]);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x11};
    epoll_ctl(ep, EPOLL_CTL_MOD, a[0], &ev);
    n = ready_now(ep, got, 8);
    check("ep-oneshot-rearm", n == 1 && got[0] == 0x11, "%d events, data %llx", n, got[0]);
  } else if (!strcmp(mode, "pipe-widowed-shared")) {
    /* a widowed pipe's read end held by the process and a child; the child reads first */
    int b[2];
    if (pipe(b)) die("pipe");
    put(b[1], "yz");
    close(b[1]);
    pid_t c = fork();
    if (c == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with its parent if a test fails */
      wait_trigger(trigger);
      char x;
      _exit(read(b[0], &x, 1) == 1 && x == 'y' ? 0 : 1);
    }
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int st = 0;
    pid_t w = waitpid(c, &st, 0);
    check("pipe-widowed-shared-child", w == c && WIFEXITED(st) && !WEXITSTATUS(st), "waitpid %d (%s), status %x",
          w, w < 0 ? strerror(errno) : "", st);
    char cc[4] = {0};
    fcntl(b[0], F_SETFL, O_NONBLOCK);
    ssize_t r1 = read(b[0], cc, sizeof cc), r2 = read(b[0], cc + 2, 2);
    check("pipe-widowed-shared", r1 == 1 && cc[0] == 'z' && r2 == 0, "%zd '%.1s', then %zd", r1, cc, r2);
  } else if (!strcmp(mode, "pipe-widowed")) {
    /* a pipe whose write end is closed everywhere, bytes left: EOF after them */
    int b[2], w[2];
    if (pipe(b) || pipe(w)) die("pipe");
    put(b[1], "yz");
    close(b[1]);
    close(w[0]); /* and a pipe whose read end is closed: writes fail with EPIPE */
    signal(SIGPIPE, SIG_IGN);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    ssize_t wr = write(w[1], "x", 1);
    check("pipe-widowed-write", wr == -1 && errno == EPIPE, "%zd", wr);
    char c[4] = {0};
    fcntl(b[0], F_SETFL, O_NONBLOCK);
    ssize_t r1 = read(b[0], c, sizeof c), r2 = read(b[0], c + 2, 2);
    check("pipe-widowed", r1 == 2 && !memcmp(c, "yz", 2) && r2 == 0, "%zd '%.2s', then %zd", r1, c, r2);
  } else if (!strcmp(mode, "ep-armed")) {
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    add(ep, a[0], EPOLLIN | EPOLLONESHOT, 0x33);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    put(a[1], "x");
    int n = ready_now(ep, got, 8);
    check("ep-armed-fires", n == 1 && got[0] == 0x33, "%d events, data %llx", n, got[0]);
    n = ready_now(ep, got, 8);
    check("ep-armed-once", n == 0, "%d events", n);
  } else if (!strcmp(mode, "ep-et")) {
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    put(a[1], "xy");
    add(ep, a[0], EPOLLIN | EPOLLET, 0x44);
    if (epoll_wait(ep, (struct epoll_event[1]){0}, 1, 1000) != 1) die("edge");
    char c;
    if (read(a[0], &c, 1) != 1) die("read");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int n = ready_now(ep, got, 8);
    check("ep-et-consumed", n == 0, "%d events (edge already consumed)", n);
    put(a[1], "z");
    n = ready_now(ep, got, 8);
    check("ep-et-new-edge", n == 1 && got[0] == 0x44, "%d events", n);
  } else if (!strcmp(mode, "ep-exclusive")) {
    int a[2], b[2], ep = epoll_create1(0);
    if (pipe(a) || pipe(b) || ep < 0) die("pipe");
    add(ep, a[0], EPOLLIN | EPOLLEXCLUSIVE, 0x55);
    add(ep, b[0], EPOLLIN | EPOLLWAKEUP, 0x66);
    char want[64];
    snprintf(want, sizeof want, "tfd: %8d events:", b[0]);
    const char *line = fdinfo_line(ep, want);
    if (!strstr(line, "data:")) die("epoll fdinfo");
    snprintf(want, sizeof want, "%.*s", (int)(strstr(line, "data:") - line), line); /* to "data:" */
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x55};
    int r = epoll_ctl(ep, EPOLL_CTL_MOD, a[0], &ev);
    check("ep-exclusive", r == -1 && errno == EINVAL, "MOD returned %d (exclusive watches refuse MOD)", r);
    /* the same events as before (the kernel keeps EPOLLWAKEUP only with CONFIG_PM_SLEEP) */
    check("ep-wakeup", *fdinfo_line(ep, want), "no '%s'", want);
  } else if (!strcmp(mode, "ep-nested")) {
    int a[2], inner = epoll_create1(0), outer = epoll_create1(0);
    if (pipe(a) || inner < 0 || outer < 0) die("pipe");
    add(inner, a[0], EPOLLIN, 0x77);
    add(outer, inner, EPOLLIN, 0x88);
    put(a[1], "x");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int n = ready_now(outer, got, 8);
    check("ep-nested-outer", n == 1 && got[0] == 0x88, "%d events, data %llx", n, got[0]);
    n = ready_now(inner, got, 8);
    check("ep-nested-inner", n == 1 && got[0] == 0x77, "%d events, data %llx", n, got[0]);
  } else if (!strcmp(mode, "ep-closed") || !strcmp(mode, "ep-reused")) {
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    add(ep, a[0], EPOLLIN, 0x99);
    int keep = dup(a[0]), was = a[0];
    close(a[0]);
    int b[2] = {-1, -1};
    if (!strcmp(mode, "ep-reused")) {
      if (pipe(b)) die("pipe");
      if (b[0] != was) die("the closed number was not reused");
    }
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    if (b[0] >= 0) {
      put(b[1], "b");
      int n = ready_now(ep, got, 8);
      check("ep-reused-other", n == 0, "%d events (data %llx) from the pipe now at fd %d", n, got[0], was);
    } else {
      check("ep-closed-stays-closed", fcntl(was, F_GETFD) == -1, "fd %d is open", was);
    }
    put(a[1], "a");
    int n = ready_now(ep, got, 8);
    check("ep-closed-watch", n == 1 && got[0] == 0x99, "%d events, data %llx", n, got[0]);
    (void)keep;
  } else if (!strcmp(mode, "ep-orphan")) {
    /* a watched pipe end passed in an SCM_RIGHTS message, then closed: only the message holds it */
    int a[2], sv[2], ep = epoll_create1(0);
    if (pipe(a) || socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || ep < 0) die("pipe");
    add(ep, a[0], EPOLLIN, 0xaa);
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec io = {.iov_base = "f", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &a[0], sizeof(int));
    if (sendmsg(sv[1], &mh, 0) != 1) die("sendmsg");
    close(a[0]);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    put(a[1], "x");
    int n = ready_now(ep, got, 8);
    check("ep-orphan", n == 1 && got[0] == 0xaa, "%d events, data %llx", n, got[0]);
  } else if (!strcmp(mode, "ep-shared-closed")) {
    /* ep-closed in an epoll shared with a child (forked after the close) */
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    add(ep, a[0], EPOLLIN, 0xbb);
    int keep = dup(a[0]), was = a[0];
    close(a[0]);
    pid_t c = fork();
    if (c == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with its parent if a test fails */
      wait_trigger(trigger);
      _exit(0);
    }
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    check("ep-shared-closed-stays-closed", fcntl(was, F_GETFD) == -1, "fd %d is open", was);
    put(a[1], "a");
    int n = ready_now(ep, got, 8);
    check("ep-shared-closed-watch", n == 1 && got[0] == 0xbb, "%d events, data %llx", n, got[0]);
    int st = 0;
    check("ep-shared-child", waitpid(c, &st, 0) == c && WIFEXITED(st) && !WEXITSTATUS(st), "status %x", st);
    (void)keep;
  } else if (!strcmp(mode, "ep-twofds")) {
    int a[2], ep = epoll_create1(0);
    if (pipe(a) || ep < 0) die("pipe");
    int d = dup(a[0]);
    add(ep, a[0], EPOLLIN, 0xfedcba9876543210ULL);
    add(ep, d, EPOLLIN | EPOLLET, 0x8000000000000001ULL);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    put(a[1], "x");
    int n = ready_now(ep, got, 8);
    int both = n == 2 && ((got[0] == 0xfedcba9876543210ULL && got[1] == 0x8000000000000001ULL) ||
                          (got[1] == 0xfedcba9876543210ULL && got[0] == 0x8000000000000001ULL));
    check("ep-twofds", both, "%d events, data %llx %llx", n, got[0], got[1]);
  } else if (!strcmp(mode, "in-masks")) {
    int in = inotify_init1(IN_NONBLOCK);
    snprintf(path, sizeof path, "%s/watched", work);
    int f = open(path, O_CREAT | O_RDWR, 0644);
    if (in < 0 || f < 0) die("inotify");
    int w1 = inotify_add_watch(in, path, IN_MODIFY | IN_ONESHOT);
    int w2 = inotify_add_watch(in, work, IN_CREATE);
    inotify_add_watch(in, work, IN_DELETE | IN_MASK_ADD | IN_EXCL_UNLINK);
    if (w1 < 0 || w2 < 0) die("add watch");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    put(f, "a");
    put(f, "b");
    char buf[4096];
    ssize_t r = read(in, buf, sizeof buf);
    int modify = 0, ignored = 0;
    for (char *p = buf; r > 0 && p < buf + r;) {
      struct inotify_event *e = (struct inotify_event *)p;
      if (e->wd == w1 && (e->mask & IN_MODIFY)) modify++;
      if (e->wd == w1 && (e->mask & IN_IGNORED)) ignored++;
      p += sizeof *e + e->len;
    }
    check("in-oneshot", modify == 1 && ignored == 1, "%d IN_MODIFY, %d IN_IGNORED", modify, ignored);
    char name[4200];
    snprintf(name, sizeof name, "%s/new", work);
    int g = open(name, O_CREAT | O_RDWR, 0644);
    close(g);
    unlink(name);
    r = read(in, buf, sizeof buf);
    int create = 0, del = 0;
    for (char *p = buf; r > 0 && p < buf + r;) {
      struct inotify_event *e = (struct inotify_event *)p;
      if (e->wd == w2 && (e->mask & IN_CREATE)) create++;
      if (e->wd == w2 && (e->mask & IN_DELETE)) del++;
      p += sizeof *e + e->len;
    }
    check("in-mask-add", create == 1 && del == 1, "%d IN_CREATE, %d IN_DELETE", create, del);
    const char *l = fdinfo_line(in, "inotify wd:2 ");
    check("in-excl-unlink", strstr(l, "mask:4000300") != NULL, "'%s'", l);
  } else if (!strcmp(mode, "tfd-flags")) {
    int rt = timerfd_create(CLOCK_REALTIME, 0), bt = timerfd_create(CLOCK_BOOTTIME, 0);
    int per = timerfd_create(CLOCK_MONOTONIC, 0);
    if (rt < 0 || bt < 0 || per < 0) die("timerfd");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec at = {.it_value = {now.tv_sec + 1000, 0}};
    if (timerfd_settime(rt, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &at, NULL)) die("settime rt");
    struct itimerspec rel = {.it_value = {100, 0}};
    if (timerfd_settime(bt, 0, &rel, NULL)) die("settime bt");
    struct itimerspec p = {.it_value = {0, 1000000}, .it_interval = {0, 1000000}};
    if (timerfd_settime(per, 0, &p, NULL)) die("settime per");
    sleep_ms(50);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    const char *l = fdinfo_line(rt, "settime flags:");
    check("tfd-cancel-on-set", strstr(l, "03") != NULL, "'%s'", l);
    struct itimerspec left;
    timerfd_gettime(rt, &left);
    check("tfd-realtime-abs", left.it_value.tv_sec > 900 && left.it_value.tv_sec <= 1000, "%lld s left",
          (long long)left.it_value.tv_sec);
    l = fdinfo_line(bt, "clockid:");
    check("tfd-boottime", strstr(l, "7") != NULL, "'%s'", l);
    timerfd_gettime(bt, &left);
    check("tfd-boottime-left", left.it_value.tv_sec > 60 && left.it_value.tv_sec < 100, "%lld s left",
          (long long)left.it_value.tv_sec);
    unsigned long long ticks = 0;
    fcntl(per, F_SETFL, O_NONBLOCK);
    ssize_t r = read(per, &ticks, sizeof ticks);
    check("tfd-ticks", r == 8 && ticks >= 40, "%zd bytes, %llu expirations", r, ticks);
  } else if (!strcmp(mode, "sfd-pending")) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    int sfd = signalfd(-1, &s, SFD_NONBLOCK);
    if (sfd < 0) die("signalfd");
    union sigval v = {.sival_int = 1234};
    if (sigqueue(getpid(), SIGUSR2, v)) die("sigqueue");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct signalfd_siginfo si = {0};
    ssize_t r = read(sfd, &si, sizeof si);
    check("sfd-pending", r == sizeof si && si.ssi_signo == SIGUSR2 && si.ssi_int == 1234 &&
                             si.ssi_pid == (unsigned)getpid(),
          "%zd bytes, signo %u int %d pid %u", r, si.ssi_signo, si.ssi_int, si.ssi_pid);
    const char *l = fdinfo_line(sfd, "sigmask:");
    check("sfd-mask", strstr(l, "0000000000000800") != NULL, "'%s'", l);
  } else if (!strcmp(mode, "memfd-seals")) {
    int m1 = memfd_create("sealed", MFD_ALLOW_SEALING);
    int m2 = memfd_create("noexec", MFD_NOEXEC_SEAL);
    int m3 = memfd_create("exec", MFD_EXEC | MFD_ALLOW_SEALING);
    int m4 = memfd_create("wsealed", MFD_ALLOW_SEALING);
    if (m1 < 0 || m2 < 0 || m3 < 0 || m4 < 0) die("memfd_create");
    put(m1, "hello");
    put(m4, "world");
    if (fcntl(m1, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)) die("seals");
    if (fcntl(m4, F_ADD_SEALS, F_SEAL_WRITE)) die("seal write");
    int s1 = fcntl(m1, F_GET_SEALS), s2 = fcntl(m2, F_GET_SEALS), s3 = fcntl(m3, F_GET_SEALS);
    int s4 = fcntl(m4, F_GET_SEALS);
    struct stat st2, st3;
    fstat(m2, &st2);
    fstat(m3, &st3);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int n1 = fcntl(m1, F_GET_SEALS), n2 = fcntl(m2, F_GET_SEALS), n3 = fcntl(m3, F_GET_SEALS);
    int n4 = fcntl(m4, F_GET_SEALS);
    check("memfd-seals", n1 == s1, "%x, not %x", n1, s1);
    check("memfd-seal-write", n4 == s4, "%x, not %x", n4, s4);
    check("memfd-noexec-seal", n2 == s2, "%x, not %x", n2, s2);
    check("memfd-exec-seals", n3 == s3, "%x, not %x", n3, s3);
    struct stat a2, a3;
    fstat(m2, &a2);
    fstat(m3, &a3);
    check("memfd-noexec-mode", (a2.st_mode & 07777) == (st2.st_mode & 07777), "%o, not %o",
          a2.st_mode & 07777, st2.st_mode & 07777);
    check("memfd-exec-mode", (a3.st_mode & 07777) == (st3.st_mode & 07777), "%o, not %o",
          a3.st_mode & 07777, st3.st_mode & 07777);
    int r = fchmod(m2, 0755);
    check("memfd-noexec-chmod", r == -1, "fchmod +x on a MFD_NOEXEC_SEAL memfd succeeded");
  } else if (!strcmp(mode, "owner-tid")) {
    pthread_t th;
    pthread_create(&th, NULL, idle_thread, NULL);
    while (!thread_tid) sleep_ms(1);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    int a[2];
    if (pipe(a)) die("pipe");
    struct f_owner_ex own = {.type = F_OWNER_TID, .pid = thread_tid};
    if (fcntl(a[0], F_SETOWN_EX, &own) || fcntl(a[0], F_SETSIG, SIGRTMIN + 1)) die("owner");
    if (fcntl(a[0], F_SETFL, O_ASYNC | O_NONBLOCK)) die("async");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct f_owner_ex now = {0};
    fcntl(a[0], F_GETOWN_EX, &now);
    check("owner-tid", now.type == F_OWNER_TID && now.pid == thread_tid, "type %d pid %d, not tid %d",
          now.type, now.pid, thread_tid);
    int sig = fcntl(a[0], F_GETSIG);
    check("owner-sig", sig == SIGRTMIN + 1, "%d", sig);
    int fl = fcntl(a[0], F_GETFL);
    check("owner-async", (fl & O_ASYNC) && (fl & O_NONBLOCK), "%x", fl);
  } else if (!strcmp(mode, "rw-hint")) {
    snprintf(path, sizeof path, "%s/hinted", work);
    int f = open(path, O_CREAT | O_RDWR, 0644);
    uint64_t h = 4; /* RWH_WRITE_LIFE_LONG */
    if (f < 0 || fcntl(f, F_SET_RW_HINT, &h)) die("rw hint");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    uint64_t now = 0;
    fcntl(f, F_GET_RW_HINT, &now);
    check("rw-hint", now == 4, "%llu", (unsigned long long)now);
  } else if (!strcmp(mode, "unix-peekoff")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    put(sv[1], "abcdef");
    set(sv[0], SO_PEEK_OFF, 0);
    char b[8] = {0};
    if (recv(sv[0], b, 2, MSG_PEEK) != 2) die("peek"); /* the offset is 2 now */
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int off = opt(sv[0], SO_PEEK_OFF);
    check("unix-peekoff", off == 2, "%d", off);
    memset(b, 0, sizeof b);
    ssize_t r = recv(sv[0], b, 2, MSG_PEEK | MSG_DONTWAIT);
    check("unix-peekoff-peek", r == 2 && !memcmp(b, "cd", 2), "%zd '%s'", r, b);
  } else if (!strcmp(mode, "unix-creds")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) die("socketpair");
    set(sv[0], SO_PASSCRED, 1);
    struct ucred uc = {.pid = getpid(), .uid = 0, .gid = 0};
    char cbuf[CMSG_SPACE(sizeof uc)] = {0};
    struct iovec io = {.iov_base = "m", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof uc);
    memcpy(CMSG_DATA(c), &uc, sizeof uc);
    if (sendmsg(sv[1], &mh, 0) != 1) die("sendmsg creds");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char rb[8], rc[256];
    struct iovec ri = {.iov_base = rb, .iov_len = sizeof rb};
    struct msghdr rm = {.msg_iov = &ri, .msg_iovlen = 1, .msg_control = rc, .msg_controllen = sizeof rc};
    ssize_t r = recvmsg(sv[0], &rm, MSG_DONTWAIT);
    struct ucred got_uc = {0};
    for (struct cmsghdr *k = CMSG_FIRSTHDR(&rm); k; k = CMSG_NXTHDR(&rm, k)) {
      if (k->cmsg_type == SCM_CREDENTIALS) memcpy(&got_uc, CMSG_DATA(k), sizeof got_uc);
    }
    check("unix-creds", r == 1 && got_uc.pid == getpid() && got_uc.uid == 0, "%zd bytes, pid %d uid %d", r,
          got_uc.pid, got_uc.uid);
  } else if (!strcmp(mode, "unix-opts")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    set(sv[0], SO_RCVLOWAT, 3);
    struct timeval rt = {1, 500000}, st = {2, 250000};
    if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt)) die("rcvtimeo");
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st)) die("sndtimeo");
    socklen_t tl = sizeof st; /* kept in jiffies: read back what the kernel made of them */
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &rt, &tl);
    tl = sizeof st;
    getsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &st, &tl);
    set(sv[0], SO_PASSSEC, 1);
    set(sv[1], SO_PASSPIDFD, 1);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    check("unix-rcvlowat", opt(sv[0], SO_RCVLOWAT) == 3, "%d", opt(sv[0], SO_RCVLOWAT));
    struct timeval a = {0}, b = {0};
    socklen_t l = sizeof a;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &a, &l);
    l = sizeof b;
    getsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &b, &l);
    check("unix-rcvtimeo", a.tv_sec == rt.tv_sec && a.tv_usec == rt.tv_usec, "%ld.%06ld", (long)a.tv_sec,
          (long)a.tv_usec);
    check("unix-sndtimeo", b.tv_sec == st.tv_sec && b.tv_usec == st.tv_usec, "%ld.%06ld", (long)b.tv_sec,
          (long)b.tv_usec);
    check("unix-passsec", opt(sv[0], SO_PASSSEC) == 1, "%d", opt(sv[0], SO_PASSSEC));
    check("unix-passpidfd", opt(sv[1], SO_PASSPIDFD) == 1, "%d", opt(sv[1], SO_PASSPIDFD));
  } else if (!strcmp(mode, "unix-shut")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    put(sv[0], "q");
    shutdown(sv[0], SHUT_WR);
    shutdown(sv[1], SHUT_RD);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char b[4];
    ssize_t r1 = recv(sv[1], b, 4, MSG_DONTWAIT), r2 = recv(sv[1], b, 4, MSG_DONTWAIT);
    check("unix-shut-wr", r1 == 1 && r2 == 0, "%zd %zd", r1, r2);
    signal(SIGPIPE, SIG_IGN);
    ssize_t w = send(sv[0], "z", 1, MSG_DONTWAIT);
    check("unix-shut-wr-send", w == -1 && errno == EPIPE, "%zd", w);
    ssize_t w2 = send(sv[1], "z", 1, MSG_DONTWAIT);
    check("unix-shut-rd-peer", w2 == 1, "%zd (only the peer shut writing)", w2);
  } else if (!strcmp(mode, "ep-busypoll")) {
    int ep = epoll_create1(0);
    struct epoll_params_ {
      uint32_t usecs;
      uint16_t budget;
      uint8_t prefer;
      uint8_t pad;
    } want = {.usecs = 25, .budget = 16, .prefer = 1}, now = {0};
    if (ioctl(ep, EPIOCSPARAMS_, &want)) die("EPIOCSPARAMS");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int r = ioctl(ep, EPIOCGPARAMS_, &now);
    check("ep-busypoll", !r && now.usecs == 25 && now.budget == 16 && now.prefer == 1, "%d: %u us, budget %u, prefer %u",
          r, now.usecs, now.budget, now.prefer);
  } else if (!strcmp(mode, "pidfd-zombie")) {
    pid_t c = fork();
    if (c == 0) _exit(7);
    int pfd = (int)syscall(SYS_pidfd_open, c, 0);
    if (pfd < 0) die("pidfd_open");
    siginfo_t si = {0};
    if (waitid(P_PID, c, &si, WEXITED | WNOWAIT)) die("waitid"); /* exited, not reaped */
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    memset(&si, 0, sizeof si);
    int r = waitid(P_PIDFD, pfd, &si, WEXITED | WNOHANG);
    check("pidfd-zombie", !r && si.si_pid == c && si.si_status == 7, "%d: pid %d (child %d) status %d", r, si.si_pid,
          c, si.si_status);
  } else if (!strcmp(mode, "locks") || !strcmp(mode, "locks-deleted")) {
    /* locks-deleted: the same on a file removed while open (re-created from the image) */
    snprintf(path, sizeof path, "%s/locked", work);
    int f = open(path, O_CREAT | O_RDWR, 0644), g = open(path, O_RDWR), h = open(path, O_RDWR);
    if (f < 0 || g < 0 || h < 0 || ftruncate(f, 4096)) die("open");
    struct flock rd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    struct flock wr = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 50};
    struct flock eof = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1000, .l_len = 0};
    struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 20};
    if (fcntl(f, F_SETLK, &rd) || fcntl(f, F_SETLK, &wr) || fcntl(f, F_SETLK, &eof)) die("posix lock");
    if (fcntl(g, F_OFD_SETLK, &ofd)) die("ofd lock");
    if (flock(h, LOCK_SH)) die("flock");
    if (!strcmp(mode, "locks-deleted") && unlink(path)) die("unlink");
    struct stat st;
    fstat(f, &st);
    static char before[4096], after[4096];
    locks_of(st.st_ino, before, sizeof before);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    fstat(f, &st); /* a re-created file has another inode */
    locks_of(st.st_ino, after, sizeof after);
    check("locks", before[0] && !strcmp(before, after), "before:\n%safter:\n%s", before, after);
  } else if (!strcmp(mode, "memfd-misc")) {
    int m = memfd_create("some name", MFD_CLOEXEC);
    if (m < 0) die("memfd");
    uint64_t hint = 3; /* RWH_WRITE_LIFE_MEDIUM */
    if (fcntl(m, F_SET_RW_HINT, &hint)) die("rw hint");
    char before[256] = {0}, after[256] = {0}, link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", m);
    if (readlink(link, before, sizeof before - 1) < 0) die("readlink");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    readlink(link, after, sizeof after - 1);
    check("memfd-name", !strcmp(before, after), "'%s', not '%s'", after, before);
    uint64_t now = 0;
    fcntl(m, F_GET_RW_HINT, &now);
    check("memfd-rw-hint", now == 3, "%llu", (unsigned long long)now);
  } else if (!strcmp(mode, "unix-senders") || !strcmp(mode, "unix-sender-gone")) {
    /* a bound datagram socket holding messages from a named sender (closed since in
     * unix-sender-gone: refused), an unnamed one, an autobound one and another named one */
    struct sockaddr_un rx = {.sun_family = AF_UNIX}, na = {.sun_family = AF_UNIX}, nb = {.sun_family = AF_UNIX};
    snprintf(rx.sun_path, sizeof rx.sun_path, "%s/rx", work);
    snprintf(na.sun_path, sizeof na.sun_path, "%s/a", work);
    snprintf(nb.sun_path, sizeof nb.sun_path, "%s/b", work);
    int r = socket(AF_UNIX, SOCK_DGRAM, 0), a = socket(AF_UNIX, SOCK_DGRAM, 0);
    int u = socket(AF_UNIX, SOCK_DGRAM, 0), ab = socket(AF_UNIX, SOCK_DGRAM, 0), b = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(r, (struct sockaddr *)&rx, sizeof rx) || bind(a, (struct sockaddr *)&na, sizeof na) ||
        bind(b, (struct sockaddr *)&nb, sizeof nb))
      die("bind");
    struct sockaddr_un auto_ = {.sun_family = AF_UNIX};
    if (bind(ab, (struct sockaddr *)&auto_, sizeof(sa_family_t))) die("autobind");
    if (sendto(a, "1", 1, 0, (struct sockaddr *)&rx, sizeof rx) != 1) die("send a");
    if (sendto(u, "2", 1, 0, (struct sockaddr *)&rx, sizeof rx) != 1) die("send u");
    if (sendto(ab, "3", 1, 0, (struct sockaddr *)&rx, sizeof rx) != 1) die("send ab");
    if (sendto(b, "4", 1, 0, (struct sockaddr *)&rx, sizeof rx) != 1) die("send b");
    if (!strcmp(mode, "unix-sender-gone")) close(a);
    struct sockaddr_un abname;
    socklen_t abl = sizeof abname;
    getsockname(ab, (struct sockaddr *)&abname, &abl);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char got_s[5] = {0};
    int ok = 1;
    for (int i = 0; i < 4; i++) {
      struct sockaddr_un from = {0};
      socklen_t fl = sizeof from;
      char c = 0;
      ssize_t n = recvfrom(r, &c, 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
      got_s[i] = n == 1 ? c : '?';
      if (c == '1') ok &= fl > sizeof(sa_family_t) && !strcmp(from.sun_path, na.sun_path);
      if (c == '2') ok &= fl == 0; /* unnamed: no address */
      if (c == '3') ok &= fl == abl && !memcmp(&from, &abname, abl);
      if (c == '4') ok &= fl > sizeof(sa_family_t) && !strcmp(from.sun_path, nb.sun_path);
      if (n == 1 && !ok) {
        check("unix-senders-address", 0, "message %c from the wrong address (%u bytes)", c, fl);
        ok = 1;
      }
    }
    check("unix-senders", !strcmp(got_s, "1234"), "'%s'", got_s);
  } else if (!strcmp(mode, "memfd-mapped") || !strcmp(mode, "memfd-mapped-fw")) {
    /* sealed memfds mapped shared: F_SEAL_WRITE under a read-only mapping; with
     * memfd-mapped-fw (refused) F_SEAL_FUTURE_WRITE under a writable mapping made before
     * it (writes through the mapping still go) */
    int fw = !strcmp(mode, "memfd-mapped-fw");
    int m = memfd_create("fw", MFD_ALLOW_SEALING), w = memfd_create("w", MFD_ALLOW_SEALING);
    if (m < 0 || w < 0 || ftruncate(m, 4096) || ftruncate(w, 4096)) die("memfd");
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (p == MAP_FAILED) die("mmap");
    if (fcntl(m, F_ADD_SEALS, fw ? F_SEAL_FUTURE_WRITE : F_SEAL_GROW)) die("future write seal");
    if (pwrite(w, "seal", 4, 0) != 4 || fcntl(w, F_ADD_SEALS, F_SEAL_WRITE)) die("write seal");
    char *q = mmap(NULL, 4096, PROT_READ, MAP_SHARED, w, 0);
    if (q == MAP_FAILED) die("mmap ro");
    p[0] = 'a';
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    p[1] = 'b';
    char c[2] = {0};
    pread(m, c, 2, 0);
    check("memfd-future-write-map", c[0] == 'a' && c[1] == 'b', "'%.2s'", c);
    if (fw) check("memfd-future-write-fd", pwrite(m, "x", 1, 0) == -1 && errno == EPERM, "a write went");
    check("memfd-write-seal-map", !memcmp(q, "seal", 4), "'%.4s'", q);
    check("memfd-write-seal-mprotect", mprotect(q, 4096, PROT_READ | PROT_WRITE) == -1,
          "mprotect to writable succeeded");
  } else if (!strcmp(mode, "opath-kinds")) {
    /* O_PATH fds on a symlink (O_NOFOLLOW), a FIFO and a unix socket's file */
    char lnk[4200], fifo[4200];
    snprintf(lnk, sizeof lnk, "%s/link", work);
    snprintf(fifo, sizeof fifo, "%s/fifo", work);
    if (symlink("nowhere", lnk) || mkfifo(fifo, 0600)) die("symlink/mkfifo");
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s/sock", work);
    const char *sock = su.sun_path;
    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    if (srv < 0 || bind(srv, (struct sockaddr *)&su, sizeof su)) die("bind");
    close(srv); /* the file stays */
    int l = open(lnk, O_PATH | O_NOFOLLOW), f = open(fifo, O_PATH), so = open(sock, O_PATH);
    if (l < 0 || f < 0 || so < 0) die("open O_PATH");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat st;
    int r = fstatat(l, "", &st, AT_EMPTY_PATH);
    check("opath-symlink", !r && S_ISLNK(st.st_mode) && (fcntl(l, F_GETFL) & O_PATH), "%d mode %o", r, st.st_mode);
    r = fstatat(f, "", &st, AT_EMPTY_PATH);
    check("opath-fifo", !r && S_ISFIFO(st.st_mode) && (fcntl(f, F_GETFL) & O_PATH), "%d mode %o", r, st.st_mode);
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    check("opath-fifo-no-reader", w == -1 && errno == ENXIO, "a writer opened it: someone reads");
    r = fstatat(so, "", &st, AT_EMPTY_PATH);
    check("opath-socket", !r && S_ISSOCK(st.st_mode) && (fcntl(so, F_GETFL) & O_PATH), "%d mode %o", r, st.st_mode);
  } else if (!strcmp(mode, "in-symlink")) {
    /* an inotify watch on a symlink itself (IN_DONT_FOLLOW), not on what it points to */
    char lnk[4200], tgt[4200];
    snprintf(lnk, sizeof lnk, "%s/ilink", work);
    snprintf(tgt, sizeof tgt, "%s/itarget", work);
    int t = open(tgt, O_CREAT | O_RDWR, 0644);
    if (t < 0 || symlink(tgt, lnk)) die("symlink");
    int in = inotify_init1(IN_NONBLOCK);
    int w = inotify_add_watch(in, lnk, IN_ATTRIB | IN_DONT_FOLLOW);
    if (w < 0) die("add watch");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char buf[4096];
    fchmod(t, 0600); /* the target: no event for the link's watch */
    ssize_t r = read(in, buf, sizeof buf);
    check("in-symlink-target-quiet", r < 0, "%zd bytes of events for a change of the link's target", r);
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    utimensat(AT_FDCWD, lnk, ts, AT_SYMLINK_NOFOLLOW);
    r = read(in, buf, sizeof buf);
    check("in-symlink-link", r > 0 && ((struct inotify_event *)buf)->wd == w, "%zd", r);
  } else if (!strcmp(mode, "refused-kinds")) {
    /* refused at dump: a fanotify group, a read lease, an inotify instance with an event queued */
    int fan = (int)syscall(SYS_fanotify_init, 0, O_RDONLY);
    snprintf(path, sizeof path, "%s/leased", work);
    int f = open(path, O_CREAT | O_RDONLY, 0644);
    if (fan < 0 || f < 0 || fcntl(f, F_SETLEASE, F_RDLCK)) die("fanotify/lease");
    /* A child's non-blocking open for writing starts the lease's break (an active lease is saved). */
    signal(SIGIO, SIG_IGN); /* the break's signal (F_SETLEASE made this process the owner) */
    pid_t c = fork();
    if (c == 0) _exit(open(path, O_WRONLY | O_NONBLOCK) < 0 && errno == EWOULDBLOCK ? 0 : 1);
    int st;
    if (c < 0 || waitpid(c, &st, 0) != c || st != 0) die("lease break");
    int lease = fcntl(f, F_GETLEASE);
    int in = inotify_init1(IN_NONBLOCK);
    if (in < 0 || inotify_add_watch(in, work, IN_CREATE) < 0) die("inotify");
    char name[4200];
    snprintf(name, sizeof name, "%s/queued", work);
    close(open(name, O_CREAT | O_RDWR, 0644));
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    check("refused-fanotify", fcntl(fan, F_GETFD) >= 0, "");
    check("refused-lease", fcntl(f, F_GETLEASE) == lease, "%d, was %d", fcntl(f, F_GETLEASE), lease);
    char buf[4096];
    check("refused-inotify-queued", read(in, buf, sizeof buf) > 0, "the queued event is gone");
  } else if (!strcmp(mode, "unix-backlog") || !strcmp(mode, "unix-backlog-gone")) {
    /* a listener with two connections not accepted yet, in order; with unix-backlog-gone
     * the second client was closed before it was accepted */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/listen", work);
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c1 = socket(AF_UNIX, SOCK_STREAM, 0);
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 8)) die("listen");
    if (connect(c1, (struct sockaddr *)&sa, sizeof sa) || connect(c2, (struct sockaddr *)&sa, sizeof sa))
      die("connect");
    int gone = !strcmp(mode, "unix-backlog-gone");
    if (gone) close(c2);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int a1 = accept4(l, NULL, NULL, SOCK_NONBLOCK), a2 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    check("unix-backlog-accept", a1 >= 0 && a2 >= 0, "%d %d", a1, a2);
    put(c1, "1");
    char b = 0;
    ssize_t r = read(a1, &b, 1);
    check("unix-backlog-first", r == 1 && b == '1', "%zd '%c' (the first accepted is not the first client)", r, b);
    if (gone) {
      r = read(a2, &b, 1);
      check("unix-backlog-gone-eof", r == 0, "%zd (the closed client's connection)", r);
    } else {
      put(c2, "2");
      r = read(a2, &b, 1);
      check("unix-backlog-second", r == 1 && b == '2', "%zd '%c'", r, b);
    }
  } else if (!strcmp(mode, "unix-oob")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
    put(sv[1], "ab");
    if (send(sv[1], "!", 1, MSG_OOB) != 1) die("send oob");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char c = 0;
    ssize_t r = recv(sv[0], &c, 1, MSG_OOB | MSG_DONTWAIT);
    check("unix-oob", r == 1 && c == '!', "%zd '%c'", r, c);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}
