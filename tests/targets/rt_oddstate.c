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
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
