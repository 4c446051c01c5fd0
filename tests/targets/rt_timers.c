/* Round-trip target for timers: POSIX timers (timer_create) on several
 * clocks with every notification kind, sparse ids, signals pending from
 * timers; timerfds (relative, absolute, CANCEL_ON_SET, periodic ones that
 * expired unread); an itimer. Records everything, prints "ready ...",
 * waits until the trigger file argv[1] exists, then verifies it all
 * itself: one "check <name> ok|FAIL <detail>" line per item, then PASS or
 * FAIL.
 *
 * usage: rt_timers <trigger-path> [threadcpu|overrun|single]
 *   single:    a single-threaded process with a timer on its (main) thread's
 *              CPU clock, checked after a restore;
 *   threadcpu: also a timer on the creating thread's CPU clock, made by a
 *              second thread (cryo must refuse it: the thread is unknown);
 *   overrun:   also a periodic timer whose last signal overran (cryo must
 *              refuse it: the overrun count cannot be set).
 * In those modes the checks after the trigger only verify that the timers
 * still run undisturbed (the dump is refused, nothing is restored).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define SIG_MONO (SIGRTMIN + 1)   /* periodic, to the process */
#define SIG_THREAD (SIGRTMIN + 2) /* periodic, SIGEV_THREAD_ID to the second thread */
#define SIG_CPU (SIGRTMIN + 3)    /* process CPU clock, never expires in the test */
#define SIG_PEND1 (SIGRTMIN + 4)  /* one-shot, expired, blocked: pending at the dump */
#define SIG_PEND2 (SIGRTMIN + 5)  /* periodic, blocked: pending at the dump */
#define SIG_OVR (SIGRTMIN + 6)    /* overrun mode */

#define MS 1000000L
#define NS_PER_S 1000000000LL

static int tcreate(clockid_t clock, int notify, int signo, uintptr_t value, pid_t tid) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = notify;
  ev.sigev_signo = signo;
  ev.sigev_value.sival_ptr = (void *)value;
  ev._sigev_un._tid = tid;
  int id = -1;
  if (syscall(SYS_timer_create, clock, &ev, &id) != 0) return -1;
  return id;
}

static int tset(int id, long long value_ns, long long interval_ns) {
  struct itimerspec its = {
      {interval_ns / NS_PER_S, interval_ns % NS_PER_S},
      {value_ns / NS_PER_S, value_ns % NS_PER_S},
  };
  return (int)syscall(SYS_timer_settime, id, 0, &its, NULL);
}

static int tget(int id, struct itimerspec *its) {
  return (int)syscall(SYS_timer_gettime, id, its);
}

static long long ns(struct timespec t) { return t.tv_sec * NS_PER_S + t.tv_nsec; }

/* What the signal handlers saw, per signal (index signo - SIGRTMIN). */
struct seen {
  volatile int count;
  volatile int timerid;
  volatile int code;
  volatile uintptr_t value;
  volatile pid_t tid;
};
static struct seen seen[16];

static void on_timer(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  struct seen *s = &seen[sig - SIGRTMIN];
  s->timerid = si->si_timerid;
  s->code = si->si_code;
  s->value = (uintptr_t)si->si_value.sival_ptr;
  s->tid = gettid_raw();
  s->count++;
}

static volatile pid_t second_tid;
static volatile int second_go, second_made_clock_timer;
static int threadcpu_id = -1;

/* The second thread: takes SIG_THREAD only; in threadcpu mode it creates a
 * timer on its own CPU clock. */
static void *second(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIG_THREAD);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  second_tid = gettid_raw();
  if (second_go) {
    threadcpu_id = tcreate(CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, 0, 0, 0);
    second_made_clock_timer = 1;
  }
  for (;;) pause();
  return NULL;
}

static void handle(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_timer;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  if (sigaction(sig, &sa, NULL)) die("sigaction");
}

/* The timers, as set up. */
enum { T_MONO, T_THREAD, T_BOOT_NONE, T_CPU, T_THREAD_CLOCK, T_TAI, T_PEND1, T_PEND2, T_ALARM, NT };
static const char *NAMES[NT] = {"mono",   "thread-id", "boottime-none", "process-cpu", "thread-clock",
                                "tai",    "pending-oneshot", "pending-periodic", "alarm"};
static int ids[NT];
static long long value0[NT], interval0[NT];
static uintptr_t values[NT];
static int keep_ids[2];
static char timers_before[8192];

/* timerfds */
enum { F_PERIODIC, F_ABS_REAL, F_ABS_MONO, F_REL_REAL, F_EXPIRED, NF };
static const char *FNAMES[NF] = {"periodic", "abs-realtime-cancel", "abs-monotonic", "rel-realtime",
                                 "expired-oneshot"};
static int tfd[NF];
static long long fvalue0[NF], finterval0[NF];
static int fflags[NF];
static int periodic_min_ticks;

static void read_text(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY);
  size_t n = 0;
  if (fd >= 0) {
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0) n += (size_t)r;
    close(fd);
  }
  buf[n] = 0;
}

/* settime flags of a timerfd as its fdinfo shows them. */
static int settime_flags(int fd) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  read_text(path, text, sizeof text);
  char *p = strstr(text, "settime flags:");
  return p ? (int)strtol(p + 14, NULL, 8) : -1;
}

static int alarm_ok;

static void setup(const char *mode) {
  pthread_t th;
  second_go = strcmp(mode, "threadcpu") == 0;
  if (pthread_create(&th, NULL, second, NULL)) die("pthread_create");
  while (!second_tid || (second_go && !second_made_clock_timer)) sleep_ms(1);

  for (int s = SIG_MONO; s <= SIG_OVR; s++) handle(s);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIG_PEND1);
  sigaddset(&block, SIG_PEND2);
  sigaddset(&block, SIG_THREAD);
  sigprocmask(SIG_BLOCK, &block, NULL);

  /* Sparse ids: four timers, two deleted again. */
  int dummy[4];
  for (int i = 0; i < 4; i++) dummy[i] = tcreate(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
  if (dummy[3] < 0) die("timer_create dummy");
  syscall(SYS_timer_delete, dummy[0]);
  syscall(SYS_timer_delete, dummy[2]);
  keep_ids[0] = dummy[1];
  keep_ids[1] = dummy[3];

  clockid_t thread_clock;
  if (pthread_getcpuclockid(th, &thread_clock)) die("pthread_getcpuclockid");
  struct {
    clockid_t clock;
    int notify, signo;
    pid_t tid;
    long long value, interval;
  } spec[NT] = {
      [T_MONO] = {CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_MONO, 0, 50 * MS, 50 * MS},
      [T_THREAD] = {CLOCK_REALTIME, SIGEV_THREAD_ID, SIG_THREAD, second_tid, 70 * MS, 70 * MS},
      [T_BOOT_NONE] = {CLOCK_BOOTTIME, SIGEV_NONE, SIGUSR2, 0, 1000 * NS_PER_S, 0},
      [T_CPU] = {CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIG_CPU, 0, 100 * NS_PER_S, 5 * NS_PER_S},
      [T_THREAD_CLOCK] = {thread_clock, SIGEV_NONE, SIGUSR2, 0, 50 * NS_PER_S, NS_PER_S},
      [T_TAI] = {CLOCK_TAI, SIGEV_SIGNAL, SIG_MONO, 0, 600 * NS_PER_S, 0},
      [T_PEND1] = {CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_PEND1, 0, 1 * MS, 0},
      [T_PEND2] = {CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_PEND2, 0, 2 * MS, 20 * MS},
      [T_ALARM] = {CLOCK_BOOTTIME_ALARM, SIGEV_NONE, SIGUSR2, 0, 900 * NS_PER_S, 0},
  };
  for (int i = 0; i < NT; i++) {
    values[i] = 0xc0de0000u + (uintptr_t)i;
    ids[i] = tcreate(spec[i].clock, spec[i].notify, spec[i].signo, values[i], spec[i].tid);
    if (ids[i] < 0 && i == T_ALARM) continue; /* needs an RTC and CAP_WAKE_ALARM */
    if (ids[i] < 0) die(NAMES[i]);
    if (tset(ids[i], spec[i].value, spec[i].interval)) die("timer_settime");
    value0[i] = spec[i].value;
    interval0[i] = spec[i].interval;
  }
  alarm_ok = ids[T_ALARM] >= 0;

  /* An itimer alongside. */
  signal(SIGALRM, SIG_IGN);
  struct itimerval it = {{10, 0}, {30, 0}};
  if (setitimer(ITIMER_REAL, &it, NULL)) die("setitimer");

  /* timerfds */
  struct timespec now_real, now_mono;
  clock_gettime(CLOCK_REALTIME, &now_real);
  clock_gettime(CLOCK_MONOTONIC, &now_mono);
  struct {
    clockid_t clock;
    int flags;
    long long value, interval;
  } fs[NF] = {
      [F_PERIODIC] = {CLOCK_MONOTONIC, 0, 40 * MS, 40 * MS},
      [F_ABS_REAL] = {CLOCK_REALTIME, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET,
                      ns(now_real) + 500 * NS_PER_S, 7 * NS_PER_S},
      [F_ABS_MONO] = {CLOCK_MONOTONIC, TFD_TIMER_ABSTIME, ns(now_mono) + 300 * NS_PER_S, 0},
      [F_REL_REAL] = {CLOCK_REALTIME, 0, 200 * NS_PER_S, 3 * NS_PER_S},
      [F_EXPIRED] = {CLOCK_MONOTONIC, 0, 1 * MS, 0},
  };
  for (int i = 0; i < NF; i++) {
    tfd[i] = timerfd_create(fs[i].clock, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {{fs[i].interval / NS_PER_S, fs[i].interval % NS_PER_S},
                             {fs[i].value / NS_PER_S, fs[i].value % NS_PER_S}};
    if (tfd[i] < 0 || timerfd_settime(tfd[i], fs[i].flags, &its, NULL)) die(FNAMES[i]);
    fflags[i] = fs[i].flags;
    finterval0[i] = fs[i].interval;
    fvalue0[i] = fs[i].flags & TFD_TIMER_ABSTIME ? fs[i].value - ns(fs[i].clock == CLOCK_REALTIME ? now_real : now_mono)
                                                  : fs[i].value;
  }

  if (strcmp(mode, "overrun") == 0) {
    /* A 1 ms timer whose signal is blocked for 30 ms: delivered with overruns. */
    sigset_t ovr;
    sigemptyset(&ovr);
    sigaddset(&ovr, SIG_OVR);
    sigprocmask(SIG_BLOCK, &ovr, NULL);
    int id = tcreate(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_OVR, 0, 0);
    if (id < 0 || tset(id, MS, MS)) die("overrun timer");
    sleep_ms(30);
    sigprocmask(SIG_UNBLOCK, &ovr, NULL);
    sigprocmask(SIG_BLOCK, &ovr, NULL);
    printf("info overrun=%d\n", (int)syscall(SYS_timer_getoverrun, id));
  }

  /* Let the periodic timerfd expire a few times unread, and the pending timers fire. */
  sleep_ms(250);
  periodic_min_ticks = 250 / 40;
  read_text("/proc/self/timers", timers_before, sizeof timers_before);
}

/* Blocks of /proc/self/timers, sorted, so that listing order does not matter. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void normalized(const char *text, char *out, size_t size) {
  char copy[8192];
  char *blocks[256];
  int n = 0;
  snprintf(copy, sizeof copy, "%s", text);
  for (char *p = copy; p && *p && n < 256;) {
    blocks[n++] = p;
    char *next = strstr(p + 1, "ID:");
    if (next) next[-1] = 0;
    p = next;
  }
  qsort(blocks, (size_t)n, sizeof *blocks, cmp_str);
  out[0] = 0;
  for (int i = 0; i < n; i++) {
    strncat(out, blocks[i], size - strlen(out) - 2);
    strncat(out, "\n", size - strlen(out) - 1);
  }
}

static void check_posix_timers(void) {
  char now[8192], a[8192], b[8192];
  read_text("/proc/self/timers", now, sizeof now);
  normalized(timers_before, a, sizeof a);
  normalized(now, b, sizeof b);
  check("proc-timers-same", strcmp(a, b) == 0, "before:\n%s\nafter:\n%s", a, b);

  for (int k = 0; k < 2; k++) {
    struct itimerspec its;
    check("sparse-id-kept", tget(keep_ids[k], &its) == 0 && ns(its.it_value) == 0, "id %d: %s",
          keep_ids[k], strerror(errno));
  }
  for (int i = 0; i < NT; i++) {
    if (i == T_ALARM && !alarm_ok) continue;
    struct itimerspec its;
    char name[64];
    snprintf(name, sizeof name, "timer-%s", NAMES[i]);
    if (tget(ids[i], &its) != 0) {
      check(name, 0, "timer_gettime(%d): %s", ids[i], strerror(errno));
      continue;
    }
    long long v = ns(its.it_value), iv = ns(its.it_interval);
    long long limit = interval0[i] ? (value0[i] > interval0[i] ? value0[i] : interval0[i]) : value0[i];
    int ok = iv == interval0[i] && v > 0 && v <= limit;
    if (i == T_PEND1) ok = iv == 0 && v == 0; /* expired, its signal taken below */
    check(name, ok, "id %d value %lld interval %lld (set %lld/%lld)", ids[i], v, iv, value0[i], interval0[i]);
  }

  /* Pending timer signals come with their timer's id and value. */
  sigset_t pend;
  sigemptyset(&pend);
  sigaddset(&pend, SIG_PEND1);
  sigaddset(&pend, SIG_PEND2);
  struct timespec wait = {1, 0};
  int got1 = 0, got2 = 0;
  for (int round = 0; round < 2; round++) {
    siginfo_t si;
    int sig = sigtimedwait(&pend, &si, &wait);
    int which = sig == SIG_PEND1 ? T_PEND1 : sig == SIG_PEND2 ? T_PEND2 : -1;
    if (which < 0) break;
    int ok = si.si_code == SI_TIMER && si.si_timerid == ids[which] &&
             (uintptr_t)si.si_value.sival_ptr == values[which];
    check(which == T_PEND1 ? "pending-oneshot-signal" : "pending-periodic-signal", ok,
          "code %d timerid %d (want %d) value %#lx", si.si_code, si.si_timerid, ids[which],
          (unsigned long)(uintptr_t)si.si_value.sival_ptr);
    if (which == T_PEND1) got1 = 1;
    else got2 = 1;
    sigdelset(&pend, sig);
  }
  check("pending-signals-arrived", got1 && got2, "one-shot %d periodic %d", got1, got2);

  /* Periodic timers keep firing, to the right place, with their values. */
  memset((void *)seen, 0, sizeof seen);
  sigset_t th;
  sigemptyset(&th);
  sigaddset(&th, SIG_THREAD);
  sigprocmask(SIG_UNBLOCK, &th, NULL); /* the main thread could take it now: it must not */
  sleep_ms(400);
  struct seen m = seen[SIG_MONO - SIGRTMIN], t = seen[SIG_THREAD - SIGRTMIN];
  check("periodic-signal", m.count >= 2 && m.timerid == ids[T_MONO] && m.code == SI_TIMER &&
                               m.value == values[T_MONO] && m.tid == getpid(),
        "count %d timerid %d value %#lx", m.count, m.timerid, (unsigned long)m.value);
  check("thread-id-signal", t.count >= 2 && t.timerid == ids[T_THREAD] && t.tid == second_tid &&
                                t.value == values[T_THREAD],
        "count %d timerid %d tid %d (want %d) value %#lx", t.count, t.timerid, t.tid, second_tid,
        (unsigned long)t.value);

  /* A new timer gets a free id; every timer can be deleted. */
  int fresh = tcreate(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
  int dup = 0;
  for (int i = 0; i < NT; i++) dup |= fresh == ids[i];
  check("new-timer", fresh >= 0 && !dup && fresh != keep_ids[0] && fresh != keep_ids[1], "id %d", fresh);
  int deleted = 0, wanted = 0;
  for (int i = 0; i < NT; i++) {
    if (ids[i] < 0) continue;
    wanted++;
    deleted += syscall(SYS_timer_delete, ids[i]) == 0;
  }
  deleted += syscall(SYS_timer_delete, keep_ids[0]) == 0;
  deleted += syscall(SYS_timer_delete, keep_ids[1]) == 0;
  deleted += syscall(SYS_timer_delete, fresh) == 0;
  struct itimerspec its;
  check("timer-delete", deleted == wanted + 3 && tget(ids[T_MONO], &its) != 0 && errno == EINVAL,
        "deleted %d of %d", deleted, wanted + 3);
}

static void check_timerfds(void) {
  for (int i = 0; i < NF; i++) {
    struct itimerspec its;
    char name[64];
    snprintf(name, sizeof name, "timerfd-%s", FNAMES[i]);
    timerfd_gettime(tfd[i], &its);
    long long v = ns(its.it_value), iv = ns(its.it_interval);
    int flags = settime_flags(tfd[i]);
    int ok = iv == finterval0[i] && flags == fflags[i];
    if (i == F_EXPIRED) ok = ok && v == 0;
    else if (i == F_PERIODIC) ok = ok && v > 0 && v <= finterval0[i];
    else ok = ok && v > 0 && v <= fvalue0[i];
    check(name, ok, "value %lld interval %lld flags %o (set %lld/%lld flags %o)", v, iv, flags,
          fvalue0[i], finterval0[i], fflags[i]);
  }
  uint64_t ticks = 0;
  ssize_t r = read(tfd[F_PERIODIC], &ticks, 8);
  check("timerfd-periodic-ticks", r == 8 && ticks >= (uint64_t)periodic_min_ticks,
        "read %zd ticks %lu (want >= %d)", r, (unsigned long)ticks, periodic_min_ticks);
  sleep_ms(100);
  r = read(tfd[F_PERIODIC], &ticks, 8);
  check("timerfd-periodic-fires", r == 8 && ticks >= 1, "read %zd ticks %lu", r, (unsigned long)ticks);
  r = read(tfd[F_EXPIRED], &ticks, 8);
  check("timerfd-expired-ticks", r == 8 && ticks == 1, "read %zd ticks %lu", r, (unsigned long)ticks);
}

static void check_itimer(void) {
  struct itimerval it;
  getitimer(ITIMER_REAL, &it);
  check("itimer", it.it_interval.tv_sec == 10 && it.it_interval.tv_usec == 0 &&
                      it.it_value.tv_sec < 30 && (it.it_value.tv_sec > 0 || it.it_value.tv_usec > 0),
        "value %ld.%06ld interval %ld.%06ld", it.it_value.tv_sec, it.it_value.tv_usec,
        it.it_interval.tv_sec, it.it_interval.tv_usec);
}

/* Mode "single": one thread, one timer on CLOCK_THREAD_CPUTIME_ID. */
static int single(const char *trigger) {
  int id = tcreate(CLOCK_THREAD_CPUTIME_ID, SIGEV_SIGNAL, SIG_CPU, 0x5e1f, 0);
  if (id < 0 || tset(id, 30 * NS_PER_S, 2 * NS_PER_S)) die("thread clock timer");
  read_text("/proc/self/timers", timers_before, sizeof timers_before);
  print_ready("pid=%d tid2=0 alarm=0 ids=%d,0,0", getpid(), id);
  wait_trigger(trigger);
  char now[8192];
  read_text("/proc/self/timers", now, sizeof now);
  check("proc-timers-same", strcmp(now, timers_before) == 0, "before:\n%s\nafter:\n%s", timers_before,
        now);
  struct itimerspec its;
  int r = tget(id, &its);
  check("timer-own-thread-clock",
        r == 0 && ns(its.it_interval) == 2 * NS_PER_S && ns(its.it_value) > 0 &&
            ns(its.it_value) <= 30 * NS_PER_S,
        "value %lld interval %lld", ns(its.it_value), ns(its.it_interval));
  /* It runs on this thread's CPU time: burn 30 ms, the time left shrinks. */
  long long before = ns(its.it_value);
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  do clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  while (ns(t1) - ns(t0) < 30 * MS);
  tget(id, &its);
  check("timer-counts-this-thread", before - ns(its.it_value) >= 30 * MS, "%lld ns less",
        before - ns(its.it_value));
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_timers <trigger-path> [threadcpu|overrun|single]");
  const char *mode = argc > 2 ? argv[2] : "";
  if (strcmp(mode, "single") == 0) return single(argv[1]);
  setup(mode);
  print_ready("pid=%d tid2=%d alarm=%d ids=%d,%d,%d", getpid(), second_tid, alarm_ok, ids[T_MONO],
              ids[T_THREAD], threadcpu_id);
  wait_trigger(argv[1]);
  if (*mode) {
    /* The dump was refused: the timers run on as before. */
    struct itimerspec its;
    check("still-running", tget(ids[T_MONO], &its) == 0 && ns(its.it_interval) == 50 * MS, "%s",
          strerror(errno));
    return verdict();
  }
  check_posix_timers();
  check_timerfds();
  check_itimer();
  return verdict();
}
