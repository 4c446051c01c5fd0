/* Probe target for signals, timers and calls the freeze interrupts
 * (tests/restore_sigprobe_test.ts): one mode per run, named by argv[2].
 * The target sets one piece of state, prints "ready pid=N", is dumped
 * (killed) and restored, then checks itself: "check <name> ok|FAIL
 * <detail>" lines, then PASS or FAIL.
 *
 * usage: rt_sigprobe <trigger-path> <mode>
 * State modes (checked once the trigger file exists):
 *   actions:    varied actions on every signal (SA_SIGINFO, SA_RESTART,
 *               SA_NODEFER, SA_RESETHAND, SA_ONSTACK, SA_NOCLDSTOP,
 *               SA_NOCLDWAIT, sa_mask, SIG_IGN); each raw rt_sigaction
 *               must read back the same; SA_NOCLDWAIT must still act (a
 *               child that exits leaves no zombie);
 *   itimers:    ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF with values and
 *               intervals: the intervals exact, the values no larger than
 *               read before the ready line (the CPU-time ones count only
 *               down) and not much smaller;
 *   ignpending: SIG_IGN set, then blocked and sent (pending although
 *               ignored): SIGUSR1 to the thread, SIGRTMIN+3 twice with
 *               values; SIGTSTP and SIGTTIN pending with handlers; all must
 *               be pending after the restore and each delivered once (the
 *               RT values in order) when handlers are set and unblocked;
 *   queue:      SIGRTMIN+4 queued 30 times with values, SIGUSR2 sent twice
 *               (pending once), SIGRTMIN+5 queued by a child (its pid, our
 *               uid): each must come back with its si_code, si_pid,
 *               si_uid and value, in order;
 *   rlimit:     RLIMIT_SIGPENDING lowered to 64, SIGRTMIN+6 queued until
 *               EAGAIN: every queued one must come back;
 *   autodisarm: a sigaltstack with SS_AUTODISARM: must read back the same;
 *   adhandler:  SIGUSR2's handler (SA_ONSTACK) runs on an SS_AUTODISARM
 *               altstack and waits there at the dump: inside, the altstack
 *               must read disarmed and the handler run on the old one;
 *               after it returns the altstack must be armed again with
 *               SS_AUTODISARM (restored by rt_sigreturn from the frame).
 *   manytimers: 300 POSIX timers on MONOTONIC, BOOTTIME and REALTIME (some
 *               TIMER_ABSTIME), SIGEV_SIGNAL and SIGEV_NONE, every third
 *               deleted: the same ids must be there with their intervals and
 *               no more time left, the deleted ones gone;
 * Wait modes (the call starts after the ready line; the result is checked
 * when it returns by itself): 
 *   nanosleep (no remaining-time pointer), clocknano (relative, with one),
 *   poll, futexto (FUTEX_WAIT, relative timeout): each 4 s, must end in its
 *   timeout (0, 0, 0, ETIMEDOUT), not in EINTR, and no earlier than 4 s;
 *   cpunano: clock_nanosleep on CLOCK_PROCESS_CPUTIME_ID, 3 s of CPU
 *   time (a second thread spins), must end in 0;
 *   sigtimedwait, epollwait, rcvtimeo (recv with SO_RCVTIMEO): 4 s, must
 *   end in their timeout or in EINTR (what SIGSTOP/SIGCONT gives them too),
 *   no earlier than 4 s when it is the timeout.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#define NS_PER_S 1000000000LL
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

static const char *trigger;

/* The kernel's struct sigaction (rt_sigaction with an 8-byte mask). */
struct ksigaction {
  uint64_t handler, flags, restorer, mask;
};

static int raw_sigaction(int sig, struct ksigaction *old) {
  return (int)syscall(SYS_rt_sigaction, sig, NULL, old, 8);
}

static long long mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * NS_PER_S + t.tv_nsec;
}

static void block(int sig) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  sigprocmask(SIG_BLOCK, &s, NULL);
}

static void unblock(int sig) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, sig);
  sigprocmask(SIG_UNBLOCK, &s, NULL);
}

/* ---- actions ------------------------------------------------------------ */

static void h_plain(int sig) { (void)sig; }
static void h_info(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  (void)uc;
}

static struct ksigaction before[65];

static int actions(void) {
  static const int flagsets[] = {
      SA_SIGINFO,
      SA_RESTART,
      SA_NODEFER | SA_RESETHAND,
      SA_ONSTACK | SA_SIGINFO | SA_RESTART,
      0,
      SA_RESETHAND,
  };
  int n = 0;
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    int f = flagsets[n % 6];
    sa.sa_flags = f;
    if (f & SA_SIGINFO) sa.sa_sigaction = h_info;
    else sa.sa_handler = h_plain;
    if (n % 7 == 3) sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    for (int k = 1; k <= 64; k++)
      if (k != SIGKILL && k != SIGSTOP && (k * 5 + sig) % 3 == 0) sigaddset(&sa.sa_mask, k);
    if (sig == SIGCHLD) {
      sa.sa_handler = h_plain;
      sa.sa_flags = SA_NOCLDSTOP | SA_NOCLDWAIT | SA_RESTART;
    }
    if (sigaction(sig, &sa, NULL)) die("sigaction");
    n++;
  }
  for (int sig = 1; sig <= 64; sig++) raw_sigaction(sig, &before[sig]);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int bad = 0;
  char detail[512] = "";
  for (int sig = 1; sig <= 64; sig++) {
    struct ksigaction now;
    raw_sigaction(sig, &now);
    if (memcmp(&now, &before[sig], sizeof now) != 0) {
      if (!bad)
        snprintf(detail, sizeof detail,
                 "signal %d: handler %#llx flags %#llx mask %#llx, was %#llx %#llx %#llx", sig,
                 (unsigned long long)now.handler, (unsigned long long)now.flags,
                 (unsigned long long)now.mask, (unsigned long long)before[sig].handler,
                 (unsigned long long)before[sig].flags, (unsigned long long)before[sig].mask);
      bad++;
    }
  }
  check("actions", bad == 0, "%d differ; first %s", bad, detail);
  pid_t c = fork();
  if (c == 0) _exit(0);
  int st;
  pid_t w = waitpid(c, &st, 0); /* SA_NOCLDWAIT: waits for it, then ECHILD */
  check("nocldwait", w < 0 && errno == ECHILD, "waitpid %d errno %d (want -1 ECHILD)", w, errno);
  return verdict();
}

/* ---- itimers ------------------------------------------------------------ */

static const struct {
  int which;
  const char *name;
  long vs, vus, is, ius;
} itv[] = {
    {ITIMER_REAL, "real", 100, 0, 3, 500000},
    {ITIMER_VIRTUAL, "virtual", 50, 250000, 7, 250000},
    {ITIMER_PROF, "prof", 80, 0, 9, 125000},
};

static int itimers(void) {
  for (int i = 0; i < 3; i++) {
    struct itimerval v = {{itv[i].is, itv[i].ius}, {itv[i].vs, itv[i].vus}};
    if (setitimer(itv[i].which, &v, NULL)) die("setitimer");
  }
  long long was[3];
  for (int i = 0; i < 3; i++) {
    struct itimerval v;
    getitimer(itv[i].which, &v);
    was[i] = v.it_value.tv_sec * 1000000LL + v.it_value.tv_usec;
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  for (int i = 0; i < 3; i++) {
    struct itimerval v;
    getitimer(itv[i].which, &v);
    long long val = v.it_value.tv_sec * 1000000LL + v.it_value.tv_usec;
    int ok = v.it_interval.tv_sec == itv[i].is && v.it_interval.tv_usec == itv[i].ius &&
             val <= was[i] && val > was[i] - 60 * 1000000LL;
    check(itv[i].name, ok, "interval %ld.%06ld value %lld us (set %ld.%06ld; read %lld us before the dump)",
          (long)v.it_interval.tv_sec, (long)v.it_interval.tv_usec, val, itv[i].is, itv[i].ius,
          was[i]);
  }
  return verdict();
}

/* ---- pending signals ------------------------------------------------------ */

#define SEEN_MAX 80
static volatile int seen_n;
static struct {
  int sig, code, value;
  pid_t pid;
  uid_t uid;
} seen[SEEN_MAX];

static void h_record(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (seen_n < SEEN_MAX) {
    seen[seen_n].sig = sig;
    seen[seen_n].code = si->si_code;
    seen[seen_n].value = si->si_value.sival_int;
    seen[seen_n].pid = si->si_pid;
    seen[seen_n].uid = si->si_uid;
  }
  seen_n++;
}

static void set_record(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = h_record;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

static int count_seen(int sig) {
  int n = 0;
  for (int i = 0; i < seen_n && i < SEEN_MAX; i++) n += seen[i].sig == sig;
  return n;
}

static int ignpending(void) {
  int rt = SIGRTMIN + 3;
  signal(SIGUSR1, SIG_IGN);
  signal(rt, SIG_IGN);
  set_record(SIGTSTP);
  set_record(SIGTTIN);
  block(SIGUSR1);
  block(rt);
  block(SIGTSTP);
  block(SIGTTIN);
  raise(SIGUSR1);
  sigqueue(getpid(), rt, (union sigval){.sival_int = 5});
  sigqueue(getpid(), rt, (union sigval){.sival_int = 6});
  kill(getpid(), SIGTSTP);
  raise(SIGTTIN);
  sigset_t p;
  sigpending(&p);
  if (!sigismember(&p, SIGUSR1) || !sigismember(&p, rt) || !sigismember(&p, SIGTSTP) ||
      !sigismember(&p, SIGTTIN))
    die("signals not pending before the dump");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  sigpending(&p);
  check("pending", sigismember(&p, SIGUSR1) && sigismember(&p, rt) && sigismember(&p, SIGTSTP) &&
                       sigismember(&p, SIGTTIN),
        "USR1 %d RTMIN+3 %d TSTP %d TTIN %d (want all 1)", sigismember(&p, SIGUSR1),
        sigismember(&p, rt), sigismember(&p, SIGTSTP), sigismember(&p, SIGTTIN));
  set_record(SIGUSR1);
  set_record(rt);
  unblock(SIGUSR1);
  unblock(rt);
  unblock(SIGTSTP);
  unblock(SIGTTIN);
  int v1 = -1, v2 = -1;
  for (int i = 0, k = 0; i < seen_n && i < SEEN_MAX; i++)
    if (seen[i].sig == rt) {
      if (k == 0) v1 = seen[i].value;
      else v2 = seen[i].value;
      k++;
    }
  check("ignored-usr1", count_seen(SIGUSR1) == 1, "SIGUSR1 delivered %d times", count_seen(SIGUSR1));
  check("ignored-rt", count_seen(rt) == 2 && v1 == 5 && v2 == 6, "RTMIN+3 %d times, values %d %d",
        count_seen(rt), v1, v2);
  check("tstp", count_seen(SIGTSTP) == 1, "SIGTSTP %d times", count_seen(SIGTSTP));
  check("ttin", count_seen(SIGTTIN) == 1, "SIGTTIN %d times", count_seen(SIGTTIN));
  return verdict();
}

static int queue(void) {
  int rt = SIGRTMIN + 4, rt5 = SIGRTMIN + 5;
  set_record(rt);
  set_record(rt5);
  set_record(SIGUSR2);
  block(rt);
  block(rt5);
  block(SIGUSR2);
  for (int i = 0; i < 30; i++) sigqueue(getpid(), rt, (union sigval){.sival_int = i * 7});
  raise(SIGUSR2);
  raise(SIGUSR2);
  pid_t c = fork();
  if (c == 0) {
    sigqueue(getppid(), rt5, (union sigval){.sival_int = 99});
    _exit(0);
  }
  waitpid(c, NULL, 0);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  unblock(rt);
  unblock(rt5);
  unblock(SIGUSR2);
  int ok = count_seen(rt) == 30, first_bad = -1;
  for (int i = 0, k = 0; i < seen_n && i < SEEN_MAX; i++) {
    if (seen[i].sig != rt) continue;
    if (seen[i].value != k * 7 || seen[i].code != SI_QUEUE || seen[i].pid != getpid() ||
        seen[i].uid != getuid()) {
      ok = 0;
      if (first_bad < 0) first_bad = i;
    }
    k++;
  }
  check("rt30", ok, "%d of 30; first wrong: #%d value %d code %d pid %d uid %d", count_seen(rt),
        first_bad, first_bad >= 0 ? seen[first_bad].value : 0,
        first_bad >= 0 ? seen[first_bad].code : 0, first_bad >= 0 ? seen[first_bad].pid : 0,
        first_bad >= 0 ? (int)seen[first_bad].uid : 0);
  check("usr2-once", count_seen(SIGUSR2) == 1, "SIGUSR2 %d times", count_seen(SIGUSR2));
  int k5 = -1;
  for (int i = 0; i < seen_n && i < SEEN_MAX; i++)
    if (seen[i].sig == rt5) k5 = i;
  check("child-sender",
        count_seen(rt5) == 1 && k5 >= 0 && seen[k5].pid == c && seen[k5].value == 99 &&
            seen[k5].code == SI_QUEUE && seen[k5].uid == getuid(),
        "%d times, pid %d (child %d) value %d code %d", count_seen(rt5), k5 >= 0 ? seen[k5].pid : 0,
        c, k5 >= 0 ? seen[k5].value : 0, k5 >= 0 ? seen[k5].code : 0);
  return verdict();
}

static int rlimit_sigpending(void) {
  int rt = SIGRTMIN + 6;
  block(rt);
  struct rlimit rl;
  getrlimit(RLIMIT_SIGPENDING, &rl);
  rl.rlim_cur = 64;
  if (setrlimit(RLIMIT_SIGPENDING, &rl)) die("setrlimit");
  int n = 0;
  while (n < 200 && sigqueue(getpid(), rt, (union sigval){.sival_int = n}) == 0) n++;
  if (n == 0 || n >= 200) die("filling RLIMIT_SIGPENDING");
  print_ready("pid=%d queued=%d", getpid(), n);
  wait_trigger(trigger);
  int got = 0, inorder = 1;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, rt);
  struct timespec zero = {0, 0};
  siginfo_t si;
  while (sigtimedwait(&s, &si, &zero) == rt) {
    if (si.si_value.sival_int != got) inorder = 0;
    got++;
  }
  check("rlimit-queue", got == n && inorder, "%d of %d back, in order %d", got, n, inorder);
  getrlimit(RLIMIT_SIGPENDING, &rl);
  check("rlimit", rl.rlim_cur == 64, "soft limit %llu", (unsigned long long)rl.rlim_cur);
  return verdict();
}

/* ---- altstacks ------------------------------------------------------------ */

#define ALT_SIZE (64 * 1024)
static char altmem[ALT_SIZE] __attribute__((aligned(16)));

static int autodisarm(void) {
  stack_t ss = {.ss_sp = altmem, .ss_size = ALT_SIZE, .ss_flags = SS_AUTODISARM};
  if (sigaltstack(&ss, NULL)) die("sigaltstack");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  stack_t now;
  sigaltstack(NULL, &now);
  check("autodisarm", now.ss_sp == altmem && now.ss_size == ALT_SIZE && (unsigned)now.ss_flags == SS_AUTODISARM,
        "sp %p size %zu flags %#x (want %p %d %#x)", now.ss_sp, now.ss_size, now.ss_flags,
        (void *)altmem, ALT_SIZE, SS_AUTODISARM);
  return verdict();
}

static volatile int in_alt, inside_flags = -1;

static void h_alt(int sig) {
  (void)sig;
  char here;
  in_alt = &here >= altmem && &here < altmem + ALT_SIZE;
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  stack_t now;
  sigaltstack(NULL, &now);
  inside_flags = now.ss_flags;
}

static int adhandler(void) {
  stack_t ss = {.ss_sp = altmem, .ss_size = ALT_SIZE, .ss_flags = SS_AUTODISARM};
  if (sigaltstack(&ss, NULL)) die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h_alt;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, NULL);
  volatile int local = 4242;
  raise(SIGUSR2);
  check("on-altstack", in_alt, "the handler's stack was not the altstack");
  check("disarmed-inside", inside_flags == SS_DISABLE, "flags inside %#x (want SS_DISABLE %#x)",
        inside_flags, SS_DISABLE);
  stack_t now;
  sigaltstack(NULL, &now);
  check("rearmed", now.ss_sp == altmem && now.ss_size == ALT_SIZE && (unsigned)now.ss_flags == SS_AUTODISARM,
        "after the handler: sp %p size %zu flags %#x (want %p %d %#x)", now.ss_sp, now.ss_size,
        now.ss_flags, (void *)altmem, ALT_SIZE, SS_AUTODISARM);
  check("local", local == 4242, "local %d", local);
  return verdict();
}

/* ---- many POSIX timers ------------------------------------------------------ */

#define NTIMERS 300

static int manytimers(void) {
  static timer_t ids[NTIMERS];
  static int alive[NTIMERS];
  static struct itimerspec was[NTIMERS];
  for (int i = 0; i < NTIMERS; i++) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = i % 2 ? SIGEV_NONE : SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 7;
    ev.sigev_value.sival_int = i * 3;
    clockid_t clk = i % 3 == 0 ? CLOCK_MONOTONIC : i % 3 == 1 ? CLOCK_BOOTTIME : CLOCK_REALTIME;
    if (timer_create(clk, &ev, &ids[i])) die("timer_create");
    struct itimerspec its = {{i % 5, 0}, {1000 + i, 0}};
    int flags = 0;
    if (clk == CLOCK_REALTIME && i % 4 == 0) { /* some absolute */
      struct timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      its.it_value.tv_sec += now.tv_sec;
      flags = TIMER_ABSTIME;
    }
    if (timer_settime(ids[i], flags, &its, NULL)) die("timer_settime");
    alive[i] = 1;
  }
  for (int i = 0; i < NTIMERS; i += 3) { /* gaps */
    timer_delete(ids[i]);
    alive[i] = 0;
  }
  for (int i = 0; i < NTIMERS; i++)
    if (alive[i]) timer_gettime(ids[i], &was[i]);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int bad = 0;
  char detail[256] = "";
  for (int i = 0; i < NTIMERS; i++) {
    struct itimerspec now;
    int rc = timer_gettime(ids[i], &now);
    int ok = alive[i] ? rc == 0 && now.it_interval.tv_sec == was[i].it_interval.tv_sec &&
                            now.it_value.tv_sec <= was[i].it_value.tv_sec &&
                            now.it_value.tv_sec > was[i].it_value.tv_sec - 60
                      : rc == -1 && errno == EINVAL;
    if (!ok && !bad++)
      snprintf(detail, sizeof detail, "timer #%d (alive %d): rc %d, value %ld s interval %ld s (was %ld, %ld)",
               i, alive[i], rc, (long)now.it_value.tv_sec, (long)now.it_interval.tv_sec,
               (long)was[i].it_value.tv_sec, (long)was[i].it_interval.tv_sec);
  }
  check("manytimers", bad == 0, "%d wrong; first %s", bad, detail);
  return verdict();
}

/* ---- interrupted waits ---------------------------------------------------- */

#define WAIT_S 4

static void elapsed_check(const char *name, long long t0, int timed_out) {
  long long ms = (mono_ns() - t0) / 1000000;
  char n[64];
  snprintf(n, sizeof n, "%s-elapsed", name);
  check(n, !timed_out || ms >= WAIT_S * 1000 - 5, "timed out after %lld ms (want >= %d)", ms,
        WAIT_S * 1000);
}

static volatile int spin_stop;
static void *spinner(void *arg) {
  (void)arg;
  while (!spin_stop) {
  }
  return NULL;
}

static int waits(const char *mode) {
  int p[2];
  if (pipe(p)) die("pipe");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) die("socketpair");
  struct timeval tv = {WAIT_S, 0};
  setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  static uint32_t word;
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  print_ready("pid=%d", getpid());
  struct timespec ts = {WAIT_S, 0}, rem = {0, 0};
  long long t0 = mono_ns();
  long rc;
  int err = 0;
  if (!strcmp(mode, "nanosleep")) {
    rc = syscall(SYS_nanosleep, &ts, NULL);
    err = rc ? errno : 0;
    check("nanosleep", rc == 0, "rc %ld errno %d (%s)", rc, err, strerror(err));
    elapsed_check(mode, t0, rc == 0);
  } else if (!strcmp(mode, "clocknano")) {
    rc = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, &rem);
    err = rc ? errno : 0;
    check("clocknano", rc == 0, "rc %ld errno %d (%s), remaining %ld.%09ld", rc, err, strerror(err),
          (long)rem.tv_sec, rem.tv_nsec);
    elapsed_check(mode, t0, rc == 0);
  } else if (!strcmp(mode, "cpunano")) {
    /* 3 s of the process's CPU time, a second thread spinning */
    pthread_t th;
    pthread_create(&th, NULL, spinner, NULL);
    struct timespec cpu = {3, 0}, t0c, t1c;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0c);
    rc = syscall(SYS_clock_nanosleep, CLOCK_PROCESS_CPUTIME_ID, 0, &cpu, &rem);
    err = rc ? errno : 0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1c);
    spin_stop = 1;
    pthread_join(th, NULL);
    check("cpunano", rc == 0, "rc %ld errno %d (%s), remaining %ld.%09ld", rc, err, strerror(err),
          (long)rem.tv_sec, rem.tv_nsec);
    check("cpunano-elapsed", 1, "");
  } else if (!strcmp(mode, "poll")) {
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    rc = syscall(SYS_poll, &pf, 1, WAIT_S * 1000);
    err = rc < 0 ? errno : 0;
    check("poll", rc == 0, "rc %ld errno %d (%s)", rc, err, strerror(err));
    elapsed_check(mode, t0, rc == 0);
  } else if (!strcmp(mode, "futexto")) {
    rc = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    err = rc ? errno : 0;
    check("futexto", rc == -1 && err == ETIMEDOUT, "rc %ld errno %d (%s)", rc, err, strerror(err));
    elapsed_check(mode, t0, err == ETIMEDOUT);
  } else if (!strcmp(mode, "sigtimedwait")) {
    rc = syscall(SYS_rt_sigtimedwait, &usr1, NULL, &ts, 8);
    err = rc < 0 ? errno : 0;
    check("sigtimedwait", rc == -1 && (err == EAGAIN || err == EINTR), "rc %ld errno %d (%s)", rc,
          err, strerror(err));
    elapsed_check(mode, t0, err == EAGAIN);
  } else if (!strcmp(mode, "epollwait")) {
    struct epoll_event out;
    rc = syscall(SYS_epoll_wait, ep, &out, 1, WAIT_S * 1000);
    err = rc < 0 ? errno : 0;
    check("epollwait", rc == 0 || (rc == -1 && err == EINTR), "rc %ld errno %d (%s)", rc, err,
          strerror(err));
    elapsed_check(mode, t0, rc == 0);
  } else if (!strcmp(mode, "rcvtimeo")) {
    char b;
    rc = recv(sv[0], &b, 1, 0);
    err = rc < 0 ? errno : 0;
    check("rcvtimeo", rc == -1 && (err == EAGAIN || err == EINTR), "rc %ld errno %d (%s)", rc, err,
          strerror(err));
    elapsed_check(mode, t0, err == EAGAIN);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  printf("result rc=%ld errno=%d elapsed_ms=%lld\n", rc, err, (mono_ns() - t0) / 1000000);
  return verdict();
}

/* ---- a signal that arrives while the tree is frozen ------------------------ */

static volatile sig_atomic_t usr1_count;
static void h_usr1(int sig) {
  (void)sig;
  usr1_count++;
}
static volatile sig_atomic_t order_n;
static volatile int order[4];
static void h_order(int sig) {
  if (order_n < 4) order[order_n] = sig;
  order_n++;
}
static volatile sig_atomic_t alarms;
static void h_alarm(int sig) {
  (void)sig;
  alarms++;
}

/* The call runs with SIGUSR1 handled (no SA_RESTART, or SA_RESTART for
 * "readrestart"); the test sends SIGUSR1 while cryo holds the tree frozen,
 * so the dump records it pending with the call interrupted. */
static int sigwhile(const char *mode) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h_usr1;
  sa.sa_flags = !strcmp(mode, "readrestart") ? SA_RESTART : 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  int p[2];
  if (pipe(p)) die("pipe");
  if (!strcmp(mode, "readrestart")) {
    sa.sa_handler = h_alarm;
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, NULL);
    alarm(WAIT_S);
  }
  print_ready("pid=%d", getpid());
  long long t0 = mono_ns();
  long rc;
  int err;
  if (!strcmp(mode, "pausesig")) {
    rc = syscall(SYS_pause);
    err = rc ? errno : 0;
    check("pausesig", rc == -1 && err == EINTR && usr1_count == 1,
          "rc %ld errno %d, handler ran %d times (want -1 EINTR, 1)", rc, err, (int)usr1_count);
  } else if (!strcmp(mode, "sleepsig")) {
    struct timespec ts = {WAIT_S, 0}, rem = {0, 0};
    rc = syscall(SYS_nanosleep, &ts, &rem);
    err = rc ? errno : 0;
    long long ms = (mono_ns() - t0) / 1000000;
    check("sleepsig", rc == -1 && err == EINTR && usr1_count == 1 && rem.tv_sec > 0,
          "rc %ld errno %d after %lld ms, remaining %ld s, handler ran %d times (want -1 EINTR "
          "early, 1)",
          rc, err, ms, (long)rem.tv_sec, (int)usr1_count);
  } else if (!strcmp(mode, "readsig") || !strcmp(mode, "readrestart")) {
    char b;
    rc = read(p[0], &b, 1);
    err = rc < 0 ? errno : 0;
    long long ms = (mono_ns() - t0) / 1000000;
    if (!strcmp(mode, "readsig"))
      check("readsig", rc == -1 && err == EINTR && usr1_count == 1,
            "rc %ld errno %d, handler ran %d times (want -1 EINTR, 1)", rc, err, (int)usr1_count);
    else /* SIGUSR1's handler has SA_RESTART: only the alarm ends the read */
      check("readrestart", rc == -1 && err == EINTR && usr1_count == 1 && alarms == 1 &&
                               ms >= WAIT_S * 1000 - 5,
            "rc %ld errno %d after %lld ms, USR1 handler %d times, SIGALRM %d times (want EINTR "
            "by the alarm after %d s, 1, 1)",
            rc, err, ms, (int)usr1_count, (int)alarms, WAIT_S);
  } else if (!strcmp(mode, "suspendsig") || !strcmp(mode, "suspendblocked")) {
    /* outer mask: {} or {SIGUSR1}; sigsuspend's own: {SIGUSR2} */
    sigset_t outer, temp, after;
    sigemptyset(&outer);
    if (!strcmp(mode, "suspendblocked")) sigaddset(&outer, SIGUSR1);
    sigprocmask(SIG_SETMASK, &outer, NULL);
    sigemptyset(&temp);
    sigaddset(&temp, SIGUSR2);
    rc = syscall(SYS_rt_sigsuspend, &temp, 8);
    err = rc ? errno : 0;
    sigprocmask(SIG_SETMASK, NULL, &after);
    check(mode, rc == -1 && err == EINTR && usr1_count == 1 &&
                    sigismember(&after, SIGUSR1) == sigismember(&outer, SIGUSR1) &&
                    !sigismember(&after, SIGUSR2),
          "rc %ld errno %d, handler ran %d times, mask after: USR1 %d USR2 %d (want -1 EINTR, 1, "
          "USR1 %d USR2 0)",
          rc, err, (int)usr1_count, sigismember(&after, SIGUSR1), sigismember(&after, SIGUSR2),
          sigismember(&outer, SIGUSR1));
  } else if (!strcmp(mode, "ppollsig") || !strcmp(mode, "ppollnull")) {
    /* ppoll on a pipe no one writes, no timeout; its own mask {SIGUSR2}, or none */
    sigset_t temp;
    sigemptyset(&temp);
    sigaddset(&temp, SIGUSR2);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    rc = syscall(SYS_ppoll, &pf, 1, NULL, !strcmp(mode, "ppollsig") ? &temp : NULL, 8);
    err = rc < 0 ? errno : 0;
    check(mode, rc == -1 && err == EINTR && usr1_count == 1,
          "rc %ld errno %d, handler ran %d times (want -1 EINTR, 1)", rc, err, (int)usr1_count);
  } else if (!strcmp(mode, "suspendpend")) {
    /* outer mask {}; sigsuspend's own {SIGUSR2}; the test sends SIGUSR2 once
     * the call waits (pending: the call's mask blocks it), stops the process
     * (dump, or SIGSTOP/SIGCONT), then sends SIGUSR1. A call resumed after a
     * stop runs with the thread's mask before it is re-issued: SIGUSR2's
     * handler runs then, SIGUSR1's ends the re-issued call. */
    sa.sa_handler = h_order;
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t temp;
    sigemptyset(&temp);
    sigaddset(&temp, SIGUSR2);
    rc = syscall(SYS_rt_sigsuspend, &temp, 8);
    err = rc ? errno : 0;
    check(mode, rc == -1 && err == EINTR && order_n == 2 && order[0] == SIGUSR2 && order[1] == SIGUSR1,
          "rc %ld errno %d, handlers ran for %d then %d (%d in all; want -1 EINTR, %d then %d)", rc,
          err, order[0], order[1], (int)order_n, SIGUSR2, SIGUSR1);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_sigprobe <trigger-path> <mode>");
  trigger = argv[1];
  const char *mode = argv[2];
  if (!strcmp(mode, "actions")) return actions();
  if (!strcmp(mode, "itimers")) return itimers();
  if (!strcmp(mode, "ignpending")) return ignpending();
  if (!strcmp(mode, "queue")) return queue();
  if (!strcmp(mode, "rlimit")) return rlimit_sigpending();
  if (!strcmp(mode, "autodisarm")) return autodisarm();
  if (!strcmp(mode, "adhandler")) return adhandler();
  if (!strcmp(mode, "manytimers")) return manytimers();
  if (!strcmp(mode, "pausesig") || !strcmp(mode, "sleepsig") || !strcmp(mode, "readsig") ||
      !strcmp(mode, "readrestart") || !strcmp(mode, "suspendsig") || !strcmp(mode, "suspendblocked") ||
      !strcmp(mode, "suspendpend") || !strcmp(mode, "ppollsig") || !strcmp(mode, "ppollnull"))
    return sigwhile(mode);
  return waits(mode);
}
