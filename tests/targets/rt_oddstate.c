/* Probe target for processes caught in odd states at dump time
 * (tests/restore_oddstate_test.ts): one mode per run, named by argv[2].
 * The target sets the state up, prints "ready pid=N", and is dumped while
 * in it; after the restore the test wakes it (SIGUSR1, or the trigger file
 * argv[1]) and the target checks itself: "check <name> ok|FAIL <detail>"
 * lines, then PASS or FAIL.
 *
 * usage: rt_oddstate <trigger-path> <mode>
 *   sigsuspend, ppoll, pselect, epoll_pwait: SIGUSR1 and SIGHUP blocked, the
 *     main thread waits in the call with a temporary mask of {SIGPIPE}; the
 *     test sends SIGUSR1. The handler must see {SIGPIPE, SIGUSR1} blocked,
 *     and after the call the mask must be {SIGUSR1, SIGHUP} again (the
 *     kernel keeps the temporary mask until the call returns);
 *   (these five take a third argument: "threads" adds 9 threads that block
 *   every signal and sleep; "worker" runs the wait in a second thread, the
 *   main thread blocking every signal and joining it, with 8 more sleepers)
 *   sigtimedwait: SIGUSR1 blocked, the main thread waits for it in
 *     sigtimedwait; it must get SIGUSR1 from the test with the mask unchanged;
 *   inhandler: SIGUSR2 (SA_ONSTACK|SA_NODEFER|SA_RESETHAND, on an altstack)
 *     raised; the handler waits inside for the trigger file, then checks it
 *     runs on the altstack, that SIGUSR2 is not blocked in it (NODEFER) and
 *     its action is SIG_DFL again (RESETHAND); after it returns the mask
 *     must be the one before and a local value intact;
 *   select: select() on a pipe no one writes, with a 3 s timeout; it must
 *     time out (0) no earlier than 3 s after it began (CLOCK_REALTIME: the
 *     test restores after a delay), its timeval written down to zero;
 *   wait4: a child waits for the trigger file and exits 7; the parent waits
 *     for it in wait4, dumped with it, and must get exit status 7;
 *   futexrt: FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME on a word no one
 *     changes, deadline 3 s ahead (absolute); the test restores after 2.5 s:
 *     it must time out at the deadline, not before, not a restart later;
 *   rtqueue: SIGRTMIN+1 blocked, queued three times with values 11, 22, 33
 *     (sigqueue); after the trigger they must come in that order, SI_QUEUE.
 */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <fcntl.h>
#include <pty.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>

static sigset_t outer, temp;
static volatile sig_atomic_t usr1_runs;
static volatile int handler_mask_ok;

static void on_usr1(int sig) {
  (void)sig;
  sigset_t now, want = temp;
  sigaddset(&want, SIGUSR1);
  sigprocmask(SIG_SETMASK, NULL, &now);
  handler_mask_ok = sigismember(&now, SIGPIPE) && sigismember(&now, SIGUSR1) &&
                    !sigismember(&now, SIGHUP);
  usr1_runs++;
}

/* Checks that the thread's mask is `outer` again after the call. */
static void check_outer(const char *name) {
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  int ok = sigismember(&now, SIGUSR1) && sigismember(&now, SIGHUP) && !sigismember(&now, SIGPIPE);
  check(name, ok, "mask after the call: USR1 %d HUP %d PIPE %d (want 1 1 0)",
        sigismember(&now, SIGUSR1), sigismember(&now, SIGHUP), sigismember(&now, SIGPIPE));
}

static void *sleeper(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  for (;;) pause();
  return NULL;
}

/* Starts `n` threads that block every signal and sleep. */
static void start_sleepers(int n) {
  for (int i = 0; i < n; i++) {
    pthread_t th;
    if (pthread_create(&th, NULL, sleeper, NULL) != 0) die("pthread_create");
  }
}

static int masked_wait(const char *mode) {
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sigemptyset(&outer);
  sigaddset(&outer, SIGUSR1);
  sigaddset(&outer, SIGHUP);
  sigprocmask(SIG_SETMASK, &outer, NULL);
  sigemptyset(&temp);
  sigaddset(&temp, SIGPIPE);
  int p[2];
  if (pipe(p) != 0) die("pipe");
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) die("epoll");
  print_ready("pid=%d", getpid());
  int r = 0, err = 0;
  while (!usr1_runs) {
    if (!strcmp(mode, "sigsuspend")) {
      r = sigsuspend(&temp);
    } else if (!strcmp(mode, "ppoll")) {
      struct pollfd fd = {.fd = p[0], .events = POLLIN};
      r = ppoll(&fd, 1, NULL, &temp);
    } else if (!strcmp(mode, "pselect")) {
      fd_set rd;
      FD_ZERO(&rd);
      FD_SET(p[0], &rd);
      r = pselect(p[0] + 1, &rd, NULL, NULL, NULL, &temp);
    } else {
      r = epoll_pwait(ep, &ev, 1, -1, &temp);
    }
    err = errno;
  }
  check("call", r == -1 && err == EINTR, "returned %d errno %d", r, err);
  check("handler-mask", handler_mask_ok, "mask in the handler is not {PIPE, USR1}");
  check_outer("mask-after");
  return verdict();
}

static int timed_wait(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_SETMASK, &set, NULL);
  print_ready("pid=%d", getpid());
  siginfo_t si;
  int r;
  do r = sigtimedwait(&set, &si, NULL);
  while (r < 0 && errno == EINTR);
  check("sigtimedwait", r == SIGUSR1 && si.si_code == SI_USER, "returned %d code %d", r,
        si.si_code);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  check("mask-after", sigismember(&now, SIGUSR1) && !sigismember(&now, SIGHUP), "mask changed");
  return verdict();
}

#define ALT_SIZE (64 * 1024)
static char altstack[ALT_SIZE];
static const char *trigger;
static volatile int in_alt, nodefer_ok, reset_ok, handler_done;

static void on_usr2(int sig) {
  (void)sig;
  int local;
  uintptr_t a = (uintptr_t)&local;
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  in_alt = a >= (uintptr_t)altstack && a < (uintptr_t)altstack + ALT_SIZE;
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  nodefer_ok = !sigismember(&now, SIGUSR2) && sigismember(&now, SIGTERM);
  struct sigaction cur;
  sigaction(SIGUSR2, NULL, &cur);
  reset_ok = cur.sa_handler == SIG_DFL;
  handler_done = 1;
}

static int in_handler(void) {
  stack_t ss = {.ss_sp = altstack, .ss_size = ALT_SIZE};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  struct sigaction sa = {0};
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_ONSTACK | SA_NODEFER | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(SIGUSR2, &sa, NULL);
  sigset_t before;
  sigemptyset(&before);
  sigaddset(&before, SIGHUP);
  sigprocmask(SIG_SETMASK, &before, NULL);
  volatile uint64_t value = 0x1234567890abcdefULL;
  raise(SIGUSR2);
  check("handler-ran", handler_done, "");
  check("altstack", in_alt, "the handler did not run on the altstack");
  check("nodefer", nodefer_ok, "SIGUSR2 blocked (or sa_mask missing) in the handler");
  check("resethand", reset_ok, "SIGUSR2 not SIG_DFL in the handler");
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  check("mask-after", sigismember(&now, SIGHUP) && !sigismember(&now, SIGTERM), "mask not restored");
  check("local", value == 0x1234567890abcdefULL, "local 0x%llx", (unsigned long long)value);
  return verdict();
}

static int select_timeout(void) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(p[0], &rd);
  struct timeval tv = {3, 0};
  struct timespec a, b;
  clock_gettime(CLOCK_REALTIME, &a);
  print_ready("pid=%d", getpid());
  int r = select(p[0] + 1, &rd, NULL, NULL, &tv);
  clock_gettime(CLOCK_REALTIME, &b);
  double el = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  check("select", r == 0 && tv.tv_sec == 0 && tv.tv_usec == 0, "returned %d, timeval %ld.%06ld", r,
        (long)tv.tv_sec, (long)tv.tv_usec);
  check("select-elapsed", el >= 2.99, "woke after %.3f s, before its 3 s", el);
  printf("elapsed=%.3f\n", el);
  return verdict();
}

static int wait_child(void) {
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    wait_trigger(trigger);
    _exit(7);
  }
  print_ready("pid=%d", getpid());
  int st = 0;
  pid_t r = wait4(c, &st, 0, NULL);
  check("wait4", r == c && WIFEXITED(st) && WEXITSTATUS(st) == 7, "returned %d status 0x%x (%s)",
        r, st, r < 0 ? strerror(errno) : "");
  return verdict();
}

static int futex_realtime(void) {
  static uint32_t word;
  struct timespec deadline, after;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 3;
  print_ready("pid=%d", getpid());
  long r;
  do {
    r = syscall(SYS_futex, &word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 0, &deadline, NULL,
                FUTEX_BITSET_MATCH_ANY);
  } while (r < 0 && errno == EINTR);
  int err = errno;
  clock_gettime(CLOCK_REALTIME, &after);
  double late = (after.tv_sec - deadline.tv_sec) + (after.tv_nsec - deadline.tv_nsec) / 1e9;
  check("futexrt", r < 0 && err == ETIMEDOUT, "returned %ld errno %d", r, err);
  check("futexrt-deadline", late >= 0 && late < 1.0, "woke %.3f s after its deadline", late);
  return verdict();
}

static int rt_queue(void) {
  int sig = SIGRTMIN + 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, NULL);
  for (int v = 11; v <= 33; v += 11) {
    union sigval sv = {.sival_int = v};
    if (sigqueue(getpid(), sig, sv) != 0) die("sigqueue");
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  for (int v = 11; v <= 33; v += 11) {
    siginfo_t si;
    struct timespec zero = {0, 0};
    int r = sigtimedwait(&set, &si, &zero);
    char name[16];
    snprintf(name, sizeof name, "queued-%d", v);
    check(name, r == sig && si.si_code == SI_QUEUE && si.si_value.sival_int == v,
          "got %d code %d value %d", r, si.si_code, si.si_value.sival_int);
  }
  return verdict();
}

static const char *wait_mode;
static int wait_result;

static void *waiter(void *arg) {
  (void)arg;
  wait_result = !strcmp(wait_mode, "sigtimedwait") ? timed_wait() : masked_wait(wait_mode);
  return NULL;
}

/* Runs the wait of `mode` in this thread, or (`how` "worker") in another. */
static int run_wait(const char *mode, const char *how) {
  if (!strcmp(how, "threads")) start_sleepers(9);
  if (strcmp(how, "worker") != 0) {
    if (!strcmp(mode, "sigtimedwait")) return timed_wait();
    return masked_wait(mode);
  }
  start_sleepers(8);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  wait_mode = mode;
  pthread_t th;
  if (pthread_create(&th, NULL, waiter, NULL) != 0) die("pthread_create");
  pthread_join(th, NULL);
  return wait_result;
}


/* ---- Odd states, third probe (branch oddstate3) ---- */

static const char *work_path(const char *suffix) {
  static char buf[8][512];
  static int n;
  char *b = buf[n++ % 8];
  snprintf(b, 512, "%s%s", trigger, suffix);
  return b;
}

static int pause_wait(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGUSR1, on_usr1_arrived);
  print_ready("pid=%d", getpid());
  int r = pause();
  int err = errno;
  check("pause", r == -1 && err == EINTR && usr1_arrived, "returned %d errno %d usr1 %d", r, err,
        usr1_arrived);
  return verdict();
}

static int accept_wait(void) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", work_path(".sock"));
  if (s < 0 || bind(s, (void *)&a, sizeof a) != 0 || listen(s, 4) != 0) die("listen");
  print_ready("pid=%d", getpid());
  int c;
  do c = accept(s, NULL, NULL);
  while (c < 0 && errno == EINTR);
  char buf[8] = {0};
  ssize_t n = c >= 0 ? read(c, buf, sizeof buf - 1) : -1;
  check("accept", c >= 0 && n == 2 && !strcmp(buf, "hi"), "accept %d read %zd \"%s\"", c, n, buf);
  return verdict();
}

/* A child reads a pty slave in canonical mode; "abc" waits in the line, "def\n" comes after. */
static int tty_read(void) {
  int m, s;
  if (openpty(&m, &s, NULL, NULL, NULL) != 0) die("openpty");
  struct termios t;
  tcgetattr(s, &t);
  t.c_lflag |= ICANON;
  t.c_lflag &= ~ECHO;
  tcsetattr(s, TCSANOW, &t);
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    close(m);
    char buf[64] = {0};
    ssize_t n = read(s, buf, sizeof buf - 1);
    printf("child read %zd \"%s\"\n", n, buf);
    fflush(stdout);
    _exit(n == 7 && !strcmp(buf, "abcdef\n") ? 0 : 1);
  }
  close(s);
  if (write(m, "abc", 3) != 3) die("write");
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/syscall", c);
  for (int i = 0; i < 500; i++) { /* until the child sits in read */
    char b[32] = {0};
    FILE *f = fopen(path, "r");
    if (f && fgets(b, sizeof b, f) && atoi(b) == SYS_read) {
      fclose(f);
      break;
    }
    if (f) fclose(f);
    sleep_ms(10);
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  if (write(m, "def\n", 4) != 4) die("write");
  int st = 0;
  waitpid(c, &st, 0);
  check("tty-read", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  return verdict();
}

#define COPY_SIZE (32 << 20)

static unsigned char pattern_at(long i) { return (unsigned char)((i * 7 + (i >> 12)) & 0xff); }

static int make_source(void) {
  int fd = open(work_path(".src"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die("open src");
  static unsigned char b[1 << 16];
  for (long off = 0; off < COPY_SIZE; off += sizeof b) {
    for (long i = 0; i < (long)sizeof b; i++) b[i] = pattern_at(off + i);
    if (write(fd, b, sizeof b) != (ssize_t)sizeof b) die("write src");
  }
  lseek(fd, 0, SEEK_SET);
  return fd;
}

/* Checks that `fd` holds the pattern from `from` on for `len` bytes; returns the bad offset or -1. */
static long check_stream(int fd, long len) {
  static unsigned char b[1 << 16];
  long got = 0;
  while (got < len) {
    ssize_t n = read(fd, b, sizeof b);
    if (n <= 0) return got;
    for (ssize_t i = 0; i < n; i++)
      if (b[i] != pattern_at(got + i)) return got + i;
    got += n;
  }
  char extra;
  if (read(fd, &extra, 1) != 0) return len;
  return -1;
}

/* sendfile or splice of a 32 MiB file into a pipe a child drains only after the trigger. */
static int pipe_copy(const char *mode) {
  int src = make_source();
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    close(p[1]);
    close(src);
    wait_trigger(trigger);
    long bad = check_stream(p[0], COPY_SIZE);
    if (bad >= 0) printf("child: stream wrong at %ld\n", bad);
    fflush(stdout);
    _exit(bad < 0 ? 0 : 1);
  }
  close(p[0]);
  print_ready("pid=%d", getpid());
  long done = 0, calls = 0, shorts = 0, offset_bad = 0;
  while (done < COPY_SIZE) {
    ssize_t n = !strcmp(mode, "sendfile") ? sendfile(p[1], src, NULL, COPY_SIZE - done)
                                          : splice(src, NULL, p[1], NULL, COPY_SIZE - done, 0);
    calls++;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die(mode);
    if (n < COPY_SIZE - done) shorts++;
    done += n;
    if (lseek(src, 0, SEEK_CUR) != done) offset_bad++;
  }
  close(p[1]);
  int st = 0;
  waitpid(c, &st, 0);
  printf("calls=%ld short=%ld\n", calls, shorts);
  check("copy-offsets", offset_bad == 0, "%ld times the offset was not the bytes copied", offset_bad);
  check("copy-stream", WIFEXITED(st) && WEXITSTATUS(st) == 0, "reader status 0x%x", st);
  return verdict();
}

/* copy_file_range of the 32 MiB file, again and again until the trigger. */
static int range_copy(void) {
  int src = make_source();
  int dst = open(work_path(".dst"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (dst < 0) die("open dst");
  print_ready("pid=%d", getpid());
  long rounds = 0, offset_bad = 0;
  for (;;) {
    int last = access(trigger, F_OK) == 0;
    lseek(src, 0, SEEK_SET);
    lseek(dst, 0, SEEK_SET);
    if (ftruncate(dst, 0) != 0) die("ftruncate");
    long done = 0;
    while (done < COPY_SIZE) {
      ssize_t n = copy_file_range(src, NULL, dst, NULL, COPY_SIZE - done, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) die("copy_file_range");
      done += n;
      if (lseek(src, 0, SEEK_CUR) != done || lseek(dst, 0, SEEK_CUR) != done) offset_bad++;
    }
    rounds++;
    if (last) break;
  }
  lseek(dst, 0, SEEK_SET);
  long bad = check_stream(dst, COPY_SIZE);
  printf("rounds=%ld\n", rounds);
  check("copy-offsets", offset_bad == 0, "%ld times an offset was not the bytes copied", offset_bad);
  check("copy-content", bad < 0, "copy wrong at %ld", bad);
  return verdict();
}

static pthread_mutex_t robust_mu;
static volatile int owner_locked, waiter_result = -1;

static void *robust_owner(void *arg) {
  (void)arg;
  pthread_mutex_lock(&robust_mu);
  owner_locked = 1;
  wait_trigger(trigger);
  return NULL; /* exits holding it */
}

static void *robust_waiter(void *arg) {
  (void)arg;
  int r = pthread_mutex_lock(&robust_mu);
  if (r == EOWNERDEAD) pthread_mutex_consistent(&robust_mu);
  waiter_result = r;
  if (r == 0 || r == EOWNERDEAD) pthread_mutex_unlock(&robust_mu);
  return NULL;
}

/* A thread waits in a robust mutex whose owner thread exits holding it after the restore. */
static int robust_wait(int pi) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (pi) pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
  pthread_mutex_init(&robust_mu, &a);
  pthread_t o, w;
  pthread_create(&o, NULL, robust_owner, NULL);
  while (!owner_locked) sleep_ms(1);
  pthread_create(&w, NULL, robust_waiter, NULL);
  sleep_ms(100);
  print_ready("pid=%d", getpid());
  pthread_join(o, NULL);
  pthread_join(w, NULL);
  check("robust", waiter_result == EOWNERDEAD, "the waiter got %d (want EOWNERDEAD %d)",
        waiter_result, EOWNERDEAD);
  return verdict();
}

/* Takes a lock of `kind` (flock, posix, ofd) on `path`, blocking or not. */
static int take_lock(int fd, const char *kind, int wait) {
  if (!strcmp(kind, "flock")) return flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  int ofd = !strcmp(kind, "ofd");
  return fcntl(fd, ofd ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK), &l);
}

/* lockhold <file> <kind>: holds the lock until the trigger, then writes "released" and exits. */
static int lock_hold(const char *path, const char *kind) {
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || take_lock(fd, kind, 0) != 0) die("lock");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int m = open(work_path(".released"), O_CREAT | O_WRONLY, 0600);
  close(m);
  return 0;
}

/* lockwait <file> <kind>: waits for the lock another process holds. */
static int lock_wait(const char *path, const char *kind, int child_holds) {
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0) die("open");
  pid_t c = -1;
  if (child_holds) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    c = fork();
    if (c == 0) {
      int cfd = open(path, O_RDWR);
      if (take_lock(cfd, kind, 0) != 0) _exit(2);
      if (write(p[1], "x", 1) != 1) _exit(2);
      wait_trigger(trigger);
      sleep_ms(300);
      int m = open(work_path(".released"), O_CREAT | O_WRONLY, 0600);
      close(m);
      _exit(0);
    }
    char x;
    if (read(p[0], &x, 1) != 1) die("child lock");
  }
  print_ready("pid=%d", getpid());
  int r;
  do r = take_lock(fd, kind, 1);
  while (r != 0 && errno == EINTR);
  int released = access(work_path(".released"), F_OK) == 0;
  check("lock-wait", r == 0 && released, "lock returned %d (%s), the holder released: %d", r,
        r ? strerror(errno) : "", released);
  if (c > 0) waitpid(c, NULL, 0);
  return verdict();
}

/* An rseq critical section spinning until a byte of the shared file <trigger>.rseq turns nonzero;
 * the commit stores (cpu at start << 32 | cpu at commit); the abort handler counts and restarts.
 * The cpu at the start of each attempt is stored at offset 8 of the file (for the test). */
static int rseq_cs(void) {
  if (__rseq_size == 0) {
    printf("glibc registered no rseq: not checked\nPASS\n");
    return 0;
  }
  int fd = open(work_path(".rseq"), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) die("rseq file");
  volatile unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) die("mmap");
  struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
  uint64_t committed = 0;
  uint32_t aborts = 0;
  print_ready("pid=%d", getpid());
  __asm__ __volatile__(
      ".pushsection __rseq_cs, \"aw\"\n"
      ".balign 32\n"
      "3:\n"
      ".long 0, 0\n"
      ".quad 1f, (2f - 1f), 4f\n"
      ".popsection\n"
      "6:\n"
      "leaq 3b(%%rip), %%rax\n"
      "movq %%rax, 8(%[rs])\n"
      "1:\n"
      "movl 4(%[rs]), %%ecx\n"
      "movl %%ecx, 8(%[page])\n"
      "7:\n"
      "cmpb $0, (%[page])\n"
      "je 7b\n"
      "movl 4(%[rs]), %%edx\n"
      "shlq $32, %%rcx\n"
      "orq %%rdx, %%rcx\n"
      "movq %%rcx, %[out]\n"
      "2:\n"
      "jmp 5f\n"
      ".long 0x53053053\n"
      "4:\n"
      "incl %[aborts]\n"
      "jmp 6b\n"
      "5:\n"
      : [out] "=m"(committed), [aborts] "+m"(aborts)
      : [rs] "r"(rs), [page] "r"(page)
      : "rax", "rcx", "rdx", "memory", "cc");
  uint32_t at_start = committed >> 32, at_commit = (uint32_t)committed;
  printf("aborts=%u start=%u commit=%u\n", aborts, at_start, at_commit);
  check("rseq-same-cpu", at_start == at_commit,
        "the critical section began on cpu %u and committed on cpu %u", at_start, at_commit);
  unsigned cpu = 0;
  syscall(SYS_getcpu, &cpu, NULL, NULL);
  int cur = (int)rs->cpu_id;
  check("rseq-cpu-id", cur == (int)cpu, "rseq cpu_id %d, getcpu %u", cur, cpu);
  long r = syscall(SYS_rseq, rs, sizeof(struct rseq), 0, 0x53053053);
  check("rseq-registered", r == -1 && errno == EBUSY, "registering again returned %ld (%s)", r,
        strerror(errno));
  check("rseq-sched_getcpu", sched_getcpu() == (int)cpu, "sched_getcpu %d getcpu %u",
        sched_getcpu(), cpu);
  return verdict();
}

static volatile long clones_created[2], clones_ran[2];
static volatile int clones_stop;

static void *clone_child(void *arg) {
  __atomic_add_fetch(&clones_ran[(long)arg], 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void *clone_maker(void *arg) {
  long i = (long)arg;
  while (!clones_stop) {
    pthread_t th;
    if (pthread_create(&th, NULL, clone_child, arg) != 0) continue;
    clones_created[i]++;
    pthread_join(th, NULL);
  }
  return NULL;
}

/* Two threads create and join threads in a tight loop. */
static int clone_loop(void) {
  pthread_t m[2];
  for (long i = 0; i < 2; i++) pthread_create(&m[i], NULL, clone_maker, (void *)i);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  long before = clones_created[0] + clones_created[1];
  sleep_ms(200);
  clones_stop = 1;
  for (int i = 0; i < 2; i++) pthread_join(m[i], NULL);
  long after = clones_created[0] + clones_created[1];
  printf("created %ld %ld\n", clones_created[0], clones_created[1]);
  for (int i = 0; i < 2; i++) {
    char name[16];
    snprintf(name, sizeof name, "clones-%d", i);
    check(name, clones_created[i] == clones_ran[i], "created %ld threads, %ld ran",
          clones_created[i], clones_ran[i]);
  }
  check("clones-go-on", after > before, "no thread created after the restore");
  return verdict();
}

static volatile int nest_order[4], nest_n, nest_masks_ok = 1;

static void on_nested2(int sig) {
  (void)sig;
  nest_order[nest_n++] = 2;
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  if (!sigismember(&now, SIGUSR1) || !sigismember(&now, SIGUSR2)) nest_masks_ok = 0;
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  nest_order[nest_n++] = 3;
}

static void on_nested1(int sig) {
  (void)sig;
  volatile uint64_t local = 0xfeedfacecafebeefULL;
  nest_order[nest_n++] = 1;
  raise(SIGUSR2);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  if (!sigismember(&now, SIGUSR1) || sigismember(&now, SIGUSR2)) nest_masks_ok = 0;
  if (local != 0xfeedfacecafebeefULL) nest_masks_ok = 0;
  nest_order[nest_n++] = 4;
}

/* A handler of SIGUSR1 raises SIGUSR2, whose handler waits for the trigger: two frames deep. */
static int nested_handlers(void) {
  signal(SIGUSR1, on_nested1);
  signal(SIGUSR2, on_nested2);
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  sigprocmask(SIG_SETMASK, &hup, NULL);
  raise(SIGUSR1);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  check("nested-order",
        nest_n == 4 && nest_order[0] == 1 && nest_order[1] == 2 && nest_order[2] == 3 &&
            nest_order[3] == 4,
        "order %d %d %d %d (n %d)", nest_order[0], nest_order[1], nest_order[2], nest_order[3],
        nest_n);
  check("nested-masks", nest_masks_ok, "a mask inside a handler was wrong, or a local changed");
  check("nested-mask-after",
        sigismember(&now, SIGHUP) && !sigismember(&now, SIGUSR1) && !sigismember(&now, SIGUSR2),
        "mask not the one before");
  return verdict();
}

static pid_t pend_worker_tid;
static volatile int pend_worker_ok = -1;

static void *pend_worker(void *arg) {
  (void)arg;
  pend_worker_tid = gettid_raw();
  wait_trigger(trigger);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  struct timespec zero = {0, 0};
  siginfo_t si;
  int first = sigtimedwait(&set, &si, &zero);
  int again = sigtimedwait(&set, &si, &zero);
  pend_worker_ok = first == SIGUSR1 && again < 0;
  return NULL;
}

/* SIGUSR2 pending for the process and SIGUSR1 for one thread, both blocked in every thread. */
static int pending_everywhere(void) {
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGUSR1);
  sigaddset(&both, SIGUSR2);
  sigprocmask(SIG_BLOCK, &both, NULL);
  start_sleepers(3);
  pthread_t w;
  pthread_create(&w, NULL, pend_worker, NULL);
  while (!pend_worker_tid) sleep_ms(1);
  kill(getpid(), SIGUSR2);
  syscall(SYS_tgkill, getpid(), pend_worker_tid, SIGUSR1);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  pthread_join(w, NULL);
  struct timespec zero = {0, 0};
  siginfo_t si;
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  int first = sigtimedwait(&usr2, &si, &zero);
  int again = sigtimedwait(&usr2, &si, &zero);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  int stray = sigtimedwait(&usr1, &si, &zero);
  check("pending-shared", first == SIGUSR2 && again < 0 && si.si_code != SI_QUEUE,
        "SIGUSR2: %d then %d", first, again);
  check("pending-thread", pend_worker_ok == 1, "the worker's SIGUSR1 not there once");
  check("pending-not-moved", stray < 0, "the worker's SIGUSR1 reached the main thread");
  return verdict();
}

/* fresh: a child stopped (SIGSTOP) right after its execve, before its first instruction. */
static int fresh_exec(const char *self) {
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    execl(self, self, trigger, "fresh-entry", "arg-two", (char *)NULL);
    _exit(9);
  }
  int st;
  waitpid(c, &st, 0);
  ptrace(PTRACE_SETOPTIONS, c, 0, PTRACE_O_TRACEEXEC);
  ptrace(PTRACE_CONT, c, 0, 0);
  waitpid(c, &st, 0);
  if (!WIFSTOPPED(st) || (st >> 8) != (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) die("exec stop");
  kill(c, SIGSTOP); /* pending when it leaves the exec stop: it stops before its first instruction */
  ptrace(PTRACE_DETACH, c, 0, 0);
  waitpid(c, &st, WUNTRACED);
  if (!WIFSTOPPED(st)) die("stop at entry");
  printf("child=%d\n", c);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  kill(c, SIGCONT);
  waitpid(c, &st, 0);
  check("fresh-exec", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  return verdict();
}

static int fresh_entry(int argc, char **argv) {
  int ok = argc == 4 && !strcmp(argv[3], "arg-two") && !strcmp(argv[2], "fresh-entry");
  printf("fresh-entry argc %d ok %d\n", argc, ok);
  fflush(stdout);
  return ok ? 0 : 1;
}

/* execloop <gen>: a thread other than the main one execs this program again, every few ms. */
static void *exec_thread(void *arg) {
  char **argv = arg;
  sleep_ms(3);
  char gen[16];
  snprintf(gen, sizeof gen, "%d", atoi(argv[3]) + 1);
  execl("/proc/self/exe", argv[0], trigger, "execloop", gen, (char *)NULL);
  die("execl");
}

static int exec_loop(char **argv) {
  int gen = atoi(argv[3]);
  if (gen == 0) print_ready("pid=%d", getpid());
  if (access(trigger, F_OK) == 0) {
    printf("generations %d\n", gen);
    check("exec-loop", gen > 1, "only %d generations", gen);
    return verdict();
  }
  pthread_t th;
  pthread_create(&th, NULL, exec_thread, argv);
  for (;;) pause();
}

/* A read of a FUSE file whose server holds the request. */
static int fuse_read(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open fuse file");
  print_ready("pid=%d", getpid());
  static unsigned char b[4096];
  ssize_t n;
  do n = read(fd, b, sizeof b);
  while (n < 0 && errno == EINTR);
  int ok = n == (ssize_t)sizeof b;
  for (ssize_t i = 0; ok && i < n; i++) ok = b[i] == i % 251;
  check("fuse-read", ok, "read %zd bytes (%s)", n, n < 0 ? strerror(errno) : "content");
  check("fuse-offset", lseek(fd, 0, SEEK_CUR) == n, "offset %ld", (long)lseek(fd, 0, SEEK_CUR));
  return verdict();
}

/* fuseexit: exits with a FUSE file open whose server holds the FLUSH (PF_EXITING, D state). */
static int fuse_exit(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open fuse file");
  print_ready("pid=%d", getpid());
  return 0;
}

/* uffd: a child faults on a page registered with a userfaultfd it handed to this process. */
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
static int uffd_other(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  char *area = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    int u = syscall(SYS_userfaultfd, O_CLOEXEC);
    struct uffdio_api api = {.api = UFFD_API};
    if (u < 0 || ioctl(u, UFFDIO_API, &api) != 0) _exit(2);
    struct uffdio_register reg = {.range = {(unsigned long)area, 4096},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(u, UFFDIO_REGISTER, &reg) != 0) _exit(2);
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    char x = 'u';
    struct iovec iov = {&x, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &u, sizeof u);
    if (sendmsg(sv[1], &msg, 0) != 1) _exit(2);
    close(u);
    close(sv[1]);
    close(sv[0]);
    _exit(area[100] == 42 ? 0 : 1);
  }
  close(sv[1]);
  char cbuf[CMSG_SPACE(sizeof(int))];
  char x;
  struct iovec iov = {&x, 1};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
  if (recvmsg(sv[0], &msg, 0) != 1) die("recvmsg");
  int u;
  memcpy(&u, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof u);
  struct uffd_msg m;
  if (read(u, &m, sizeof m) != sizeof m) die("read uffd");
  printf("child=%d\n", c);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  static char page[4096] __attribute__((aligned(4096)));
  page[100] = 42;
  struct uffdio_copy cp = {.dst = m.arg.pagefault.address & ~4095UL, .src = (unsigned long)page,
                           .len = 4096};
  if (ioctl(u, UFFDIO_COPY, &cp) != 0) die("UFFDIO_COPY");
  int st;
  waitpid(c, &st, 0);
  check("uffd-fault", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  return verdict();
}

/* unixconnect: a listener (backlog 1) whose queue is full; a child blocks in connect(). */
static int unix_connect_full(void) {
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", work_path(".sock"));
  if (l < 0 || bind(l, (void *)&a, sizeof a) != 0 || listen(l, 0) != 0) die("listen");
  int c[3];
  for (int i = 0; i < 3; i++) {
    pid_t k = fork();
    if (k < 0) die("fork");
    if (k == 0) {
      int s = socket(AF_UNIX, SOCK_STREAM, 0);
      int r;
      do r = connect(s, (void *)&a, sizeof a);
      while (r != 0 && errno == EINTR);
      char msg[2] = {(char)('a' + i), 0};
      int ok = r == 0 && write(s, msg, 1) == 1;
      wait_trigger(trigger);
      _exit(ok ? 0 : 1);
    }
    c[i] = k;
    sleep_ms(100);
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int got = 0;
  for (int i = 0; i < 3; i++) {
    int s = accept(l, NULL, NULL);
    char b = 0;
    if (s >= 0 && read(s, &b, 1) == 1 && b >= 'a' && b <= 'c') got |= 1 << (b - 'a');
  }
  int ok = 1;
  for (int i = 0; i < 3; i++) {
    int st;
    waitpid(c[i], &st, 0);
    ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  check("unix-connect", got == 7 && ok, "accepted mask %d, clients ok %d", got, ok);
  return verdict();
}

/* sockwrite: a child writes 4 MiB into a stream socket its parent reads only after the trigger. */
static int sock_write_full(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  pid_t k = fork();
  if (k < 0) die("fork");
  if (k == 0) {
    close(sv[0]);
    static unsigned char b[COPY_SIZE / 8];
    for (long i = 0; i < (long)sizeof b; i++) b[i] = pattern_at(i);
    long done = 0, shorts = 0;
    while (done < (long)sizeof b) {
      ssize_t n = write(sv[1], b + done, sizeof b - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(1);
      if (n < (long)sizeof b - done) shorts++;
      done += n;
    }
    printf("writer: short writes %ld\n", shorts);
    fflush(stdout);
    _exit(0);
  }
  close(sv[1]);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  long bad = check_stream(sv[0], COPY_SIZE / 8);
  int st;
  waitpid(k, &st, 0);
  check("sock-write", bad < 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
        "stream wrong at %ld, writer status 0x%x", bad, st);
  return verdict();
}

/* waitall: recv(MSG_WAITALL) of 100 bytes, 50 sent before the dump, 50 after the trigger. */
static int recv_waitall(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  pid_t k = fork();
  if (k < 0) die("fork");
  if (k == 0) {
    close(sv[0]);
    char b[50];
    memset(b, 'x', sizeof b);
    if (write(sv[1], b, 50) != 50) _exit(1);
    wait_trigger(trigger);
    if (write(sv[1], b, 50) != 50) _exit(1);
    _exit(0);
  }
  close(sv[1]);
  print_ready("pid=%d", getpid());
  char b[100];
  long total = 0, calls = 0;
  while (total < 100) {
    ssize_t n = recv(sv[0], b + total, sizeof b - total, MSG_WAITALL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    calls++;
    total += n;
  }
  waitpid(k, NULL, 0);
  /* The freeze cuts the first call short (50 bytes), as kill -STOP/-CONT does: 2 calls. */
  printf("recv calls %ld\n", calls);
  check("recv-waitall", total == 100, "got %ld bytes", total);
  return verdict();
}

/* futexwaitv: waits on two words with futex_waitv; a thread wakes the second after the trigger. */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE 128
#endif
static uint32_t waitv_words[2];
static void *waitv_waker(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  sleep_ms(50);
  __atomic_store_n(&waitv_words[1], 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &waitv_words[1], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  return NULL;
}
static int futex_waitv_wait(void) {
  struct futex_waitv w[2] = {
      {.val = 0, .uaddr = (uintptr_t)&waitv_words[0], .flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE},
      {.val = 0, .uaddr = (uintptr_t)&waitv_words[1], .flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE},
  };
  pthread_t th;
  pthread_create(&th, NULL, waitv_waker, NULL);
  print_ready("pid=%d", getpid());
  long r;
  do r = syscall(SYS_futex_waitv, w, 2, 0, NULL, CLOCK_MONOTONIC);
  while (r < 0 && (errno == EINTR || (errno == EAGAIN && !waitv_words[1])));
  pthread_join(th, NULL);
  check("futex-waitv", r == 1, "returned %ld (%s)", r, r < 0 ? strerror(errno) : "");
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_oddstate <trigger-path> <mode> [threads|worker]");
  trigger = argv[1];
  const char *mode = argv[2];
  const char *how = argc > 3 ? argv[3] : "";
  if (!strcmp(mode, "sigsuspend") || !strcmp(mode, "ppoll") || !strcmp(mode, "pselect") ||
      !strcmp(mode, "epoll_pwait") || !strcmp(mode, "sigtimedwait"))
    return run_wait(mode, how);
  if (!strcmp(mode, "inhandler")) return in_handler();
  if (!strcmp(mode, "rtqueue")) return rt_queue();
  if (!strcmp(mode, "select")) return select_timeout();
  if (!strcmp(mode, "wait4")) return wait_child();
  if (!strcmp(mode, "futexrt")) return futex_realtime();
  if (!strcmp(mode, "pause")) return pause_wait();
  if (!strcmp(mode, "accept")) return accept_wait();
  if (!strcmp(mode, "ttyread")) return tty_read();
  if (!strcmp(mode, "sendfile") || !strcmp(mode, "splice")) return pipe_copy(mode);
  if (!strcmp(mode, "copyrange")) return range_copy();
  if (!strcmp(mode, "robust")) return robust_wait(0);
  if (!strcmp(mode, "robustpi")) return robust_wait(1);
  if (!strcmp(mode, "lockhold") && argc > 4) return lock_hold(argv[3], argv[4]);
  if (!strcmp(mode, "lockwait") && argc > 4) return lock_wait(argv[3], argv[4], 0);
  if (!strcmp(mode, "lockwait-tree") && argc > 4) return lock_wait(argv[3], argv[4], 1);
  if (!strcmp(mode, "rseq")) return rseq_cs();
  if (!strcmp(mode, "clones")) return clone_loop();
  if (!strcmp(mode, "nested")) return nested_handlers();
  if (!strcmp(mode, "pendall")) return pending_everywhere();
  if (!strcmp(mode, "fresh")) return fresh_exec(argv[0]);
  if (!strcmp(mode, "fresh-entry")) return fresh_entry(argc, argv);
  if (!strcmp(mode, "execloop") && argc > 3) return exec_loop(argv);
  if (!strcmp(mode, "fuseread") && argc > 3) return fuse_read(argv[3]);
  if (!strcmp(mode, "fuseexit") && argc > 3) return fuse_exit(argv[3]);
  if (!strcmp(mode, "uffd")) return uffd_other();
  if (!strcmp(mode, "unixconnect")) return unix_connect_full();
  if (!strcmp(mode, "sockwrite")) return sock_write_full();
  if (!strcmp(mode, "waitall")) return recv_waitall();
  if (!strcmp(mode, "futexwaitv")) return futex_waitv_wait();
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
