/* Round-trip target for threads: the main thread and five workers, each
 * with its own __thread value, tid, signal mask, name and rseq
 * registration, parked in different ways: nanosleep (holding a robust
 * mutex), pthread_cond_wait (on its own sigaltstack), a raw futex wait, a
 * busy loop (with a signal pending for it alone) and sigwaitinfo. Prints
 * "ready ...", waits until the trigger file argv[1] exists, then every
 * thread verifies itself; the workers are woken, take a shared mutex, meet
 * on a condition variable and exit; the main thread joins them (which needs
 * clear_child_tid), takes the robust mutex left by a dead owner (which needs
 * the robust list), starts a fresh thread, and prints one
 * "check <name> ok|FAIL <detail>" line per item, then PASS or FAIL.
 *
 * usage: rt_threads <trigger-path> [nopending] [quietblocked]
 *   nopending: no signal is left pending for the spinning thread.
 *   quietblocked: the sigwait thread also blocks SIGURG, SIGWINCH and
 *   SIGCHLD (no quiet signal can end a syscall batch in it).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* ----------------------------------------------------------- the state */

enum kind { K_SLEEP, K_COND, K_FUTEX, K_SPIN, K_SIGWAIT, NWORKERS };
static const char *kind_names[NWORKERS] = {"sleep", "condwait", "futex", "spin", "sigwait"};

/* Per-thread result of the self-check after the restore. */
struct worker {
  int idx;
  pthread_t th;
  pid_t tid; /* gettid() before the dump */
  uint64_t *tls_addr; /* &tls_value in that thread */
  uint64_t mask_before; /* its signal mask before the dump */
  char name[16];
  /* filled after the trigger */
  int tid_ok, tls_ok, mask_ok, name_ok, rseq_ok, extra_ok, joined_round;
  pid_t tid_after;
  uint64_t tls_after, mask_after;
  char extra[160];
};

static struct worker workers[NWORKERS];
static __thread uint64_t tls_value;

static volatile int phase; /* 0 before the trigger, 1 after */
static volatile uint64_t spins;
static volatile int started;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;

static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER; /* K_COND waits on wake_cv */
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static uint32_t futex_word; /* K_FUTEX waits while it is 0 */

static pthread_mutex_t robust; /* held by K_SLEEP across the dump; it exits holding it */

/* After the trigger: every worker increments under `round_lock`, then waits until all did. */
static pthread_mutex_t round_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t round_cv = PTHREAD_COND_INITIALIZER;
static int round_count;

static int with_pending = 1; /* a SIGUSR2 is left pending for the spinning thread */
static volatile pid_t usr2_tid; /* which thread ran the SIGUSR2 handler */
static void on_usr2(int sig) {
  (void)sig;
  usr2_tid = gettid_raw();
}

#define ALTSTACK_SIZE (64 * 1024)
static uint8_t cond_altstack[ALTSTACK_SIZE];

static uint64_t current_mask(void) {
  sigset_t s;
  pthread_sigmask(SIG_SETMASK, NULL, &s);
  uint64_t m;
  memcpy(&m, &s, 8);
  return m;
}

/* Whether the sigwait thread blocks every signal a syscall batch could end with. */
static int quiet_blocked;

/* The thread-specific signals each thread blocks (all block SIGRTMIN+1 for sigwaitinfo). */
static void set_mask(int idx) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGRTMIN + 1);
  sigaddset(&s, SIGRTMIN + 10 + idx);
  if (idx == K_COND) sigaddset(&s, SIGTERM);
  if (idx == K_FUTEX) sigaddset(&s, SIGHUP);
  if (idx == K_SPIN) sigaddset(&s, SIGUSR2);
  if (idx < 0) sigaddset(&s, SIGUSR1);
  if (idx == K_SIGWAIT && quiet_blocked) {
    sigaddset(&s, SIGURG);
    sigaddset(&s, SIGWINCH);
    sigaddset(&s, SIGCHLD);
  }
  int e = pthread_sigmask(SIG_SETMASK, &s, NULL);
  if (e) die_err("pthread_sigmask", e);
}

/* rseq still registered for this thread: registering the same area again says EBUSY. */
static int rseq_registered(void) {
  if (__rseq_size == 0) return 1; /* glibc does not use rseq here */
  void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
  unsigned lens[2] = {32, __rseq_size};
  for (int i = 0; i < 2; i++) {
    long r = syscall(SYS_rseq, area, lens[i], 0, RSEQ_SIG);
    if (r == 0) return 0; /* it was not registered (and now it is) */
    if (errno == EBUSY) return 1;
  }
  return 0;
}

static void thread_name_now(char *out, size_t n) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/comm", gettid_raw());
  FILE *f = fopen(path, "r");
  out[0] = 0;
  if (f) {
    if (fgets(out, (int)n, f)) out[strcspn(out, "\n")] = 0;
    fclose(f);
  }
}

/* The common self-check of a thread after the trigger. */
static void self_check(struct worker *w, uint64_t tls_expected) {
  w->tid_after = gettid_raw();
  w->tid_ok = w->tid_after == w->tid;
  w->tls_after = tls_value;
  w->tls_ok = &tls_value == w->tls_addr && tls_value == tls_expected;
  w->mask_after = current_mask();
  w->mask_ok = w->mask_after == w->mask_before;
  char name[32];
  thread_name_now(name, sizeof name);
  w->name_ok = strcmp(name, w->name) == 0;
  w->rseq_ok = rseq_registered();
}

static uint64_t tls_for(int idx) { return 0x7100000000000000ULL | ((uint64_t)(idx + 1) << 32) | 0xabcd; }

static void announce(struct worker *w) {
  w->tid = gettid_raw();
  tls_value = tls_for(w->idx);
  w->tls_addr = &tls_value;
  set_mask(w->idx);
  w->mask_before = current_mask();
  snprintf(w->name, sizeof w->name, "w%d-%s", w->idx, kind_names[w->idx]);
  pthread_setname_np(pthread_self(), w->name);
  pthread_mutex_lock(&start_lock);
  started++;
  pthread_cond_broadcast(&start_cv);
  pthread_mutex_unlock(&start_lock);
}

static void final_round(struct worker *w) {
  pthread_mutex_lock(&round_lock);
  round_count++;
  pthread_cond_broadcast(&round_cv);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 10;
  int e = 0;
  while (round_count < NWORKERS && e == 0) e = pthread_cond_timedwait(&round_cv, &round_lock, &dl);
  w->joined_round = round_count == NWORKERS;
  pthread_mutex_unlock(&round_lock);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  int eintr = 0;
  switch (w->idx) {
  case K_SLEEP: {
    int e = pthread_mutex_lock(&robust);
    if (e) die_err("lock robust", e);
    announce(w);
    while (!phase) sleep_ms(20);
    self_check(w, tls_for(w->idx));
    w->extra_ok = 1;
    final_round(w);
    return NULL; /* still holding `robust`: the kernel marks it owner-died */
  }
  case K_COND: {
    stack_t ss = {.ss_sp = cond_altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
    announce(w);
    pthread_mutex_lock(&wake_lock);
    while (!phase) pthread_cond_wait(&wake_cv, &wake_lock);
    pthread_mutex_unlock(&wake_lock);
    self_check(w, tls_for(w->idx));
    stack_t now;
    sigaltstack(NULL, &now);
    w->extra_ok = now.ss_sp == cond_altstack && now.ss_size == ALTSTACK_SIZE && now.ss_flags == 0;
    snprintf(w->extra, sizeof w->extra, "sigaltstack sp %p size %zu flags %d", now.ss_sp,
             now.ss_size, now.ss_flags);
    break;
  }
  case K_FUTEX:
    announce(w);
    while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0) {
      long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
      if (r != 0 && errno == EINTR) eintr++;
    }
    self_check(w, tls_for(w->idx));
    w->extra_ok = 1;
    snprintf(w->extra, sizeof w->extra, "%d EINTR", eintr);
    break;
  case K_SPIN: {
    announce(w);
    while (!phase) spins++;
    self_check(w, tls_for(w->idx));
    sigset_t p;
    sigpending(&p);
    int pending = sigismember(&p, SIGUSR2);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL); /* the handler runs here, in this thread */
    w->extra_ok = with_pending ? pending && usr2_tid == w->tid : !pending && usr2_tid == 0;
    snprintf(w->extra, sizeof w->extra, "SIGUSR2 pending %d, handled by tid %d", pending,
             (int)usr2_tid);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    w->mask_after = current_mask();
    break;
  }
  case K_SIGWAIT: {
    announce(w);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 1);
    siginfo_t si;
    int r;
    do {
      r = sigwaitinfo(&s, &si);
      if (r < 0 && errno == EINTR) eintr++;
    } while (r < 0 && errno == EINTR);
    self_check(w, tls_for(w->idx));
    w->extra_ok = r == SIGRTMIN + 1 && si.si_value.sival_int == 4242 && phase;
    snprintf(w->extra, sizeof w->extra, "sigwaitinfo %d value %d (%d EINTR)", r,
             si.si_value.sival_int, eintr);
    break;
  }
  }
  final_round(w);
  return NULL;
}

static int list_tasks(int *out, int cap) {
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n < cap) out[n++] = atoi(e->d_name);
  }
  if (d) closedir(d);
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
      int t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return n;
}

static void format_tasks(char *buf, size_t n, const int *t, int c) {
  buf[0] = 0;
  for (int i = 0; i < c; i++) snprintf(buf + strlen(buf), n - strlen(buf), "%s%d", i ? "," : "", t[i]);
}

static void *fresh_thread(void *arg) {
  (void)arg;
  tls_value = 99;
  return (void *)(intptr_t)gettid_raw();
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_threads <trigger> [nopending] [quietblocked]");
  pid_t pid = getpid();
  with_pending = 1;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "nopending") == 0) with_pending = 0;
    if (strcmp(argv[i], "quietblocked") == 0) quiet_blocked = 1;
  }
  tls_value = 0x7100000000005555ULL;
  uint64_t *main_tls = &tls_value;
  set_mask(-1);
  uint64_t main_mask = current_mask();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);

  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &ma);

  /* An fd above the fd table's first 64 (the restore grows the table before the threads). */
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 300) != 300) die("dup2 300");
  close(null_fd);
  /* A personality other than the default, inherited by every thread (each task has its own). */
  personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE);
  for (int i = 0; i < NWORKERS; i++) {
    workers[i].idx = i;
    int e = pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
    if (e) die_err("pthread_create", e);
  }
  pthread_mutex_lock(&start_lock);
  while (started < NWORKERS) pthread_cond_wait(&start_cv, &start_lock);
  pthread_mutex_unlock(&start_lock);
  /* A signal pending for the spinning thread only. */
  if (with_pending) syscall(SYS_tgkill, pid, workers[K_SPIN].tid, SIGUSR2);

  int tasks_before[16], tasks_after[16];
  int nb = list_tasks(tasks_before, 16);
  char tb[256], ta[256];
  format_tasks(tb, sizeof tb, tasks_before, nb);
  sleep_ms(50);
  print_ready("pid=%d tids=%s", pid, tb);
  wait_trigger(argv[1]);

  /* The main thread's own state. */
  check("main-tid", gettid_raw() == pid && getpid() == pid, "gettid %d getpid %d, was %d",
        gettid_raw(), getpid(), pid);
  check("main-tls", &tls_value == main_tls && tls_value == 0x7100000000005555ULL, "tls %lx at %p",
        (unsigned long)tls_value, (void *)&tls_value);
  check("main-sigmask", current_mask() == main_mask, "mask %lx, was %lx",
        (unsigned long)current_mask(), (unsigned long)main_mask);
  check("main-rseq", rseq_registered(), "rseq not registered");
  sigset_t p;
  sigpending(&p);
  check("pending-not-shared", !sigismember(&p, SIGUSR2), "SIGUSR2 is pending for the main thread");
  int na = list_tasks(tasks_after, 16);
  format_tasks(ta, sizeof ta, tasks_after, na);
  check("task-list", strcmp(ta, tb) == 0, "tasks %s, were %s", ta, tb);
  /* The spinner runs again (given up to 5 s: on a loaded machine it may wait for a CPU). */
  uint64_t s0 = spins;
  for (int waited = 0; spins == s0 && waited < 5000; waited += 10) sleep_ms(10);
  check("spinner-runs", spins > s0, "spin counter stuck at %lu", (unsigned long)s0);

  /* Wake everybody the way each one waits. */
  phase = 1;
  pthread_mutex_lock(&wake_lock);
  pthread_cond_broadcast(&wake_cv);
  pthread_mutex_unlock(&wake_lock);
  __atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  union sigval v = {.sival_int = 4242};
  pthread_sigqueue(workers[K_SIGWAIT].th, SIGRTMIN + 1, v);

  int joined = 0;
  for (int i = 0; i < NWORKERS; i++) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    int e = pthread_timedjoin_np(workers[i].th, NULL, &dl);
    check(i == 0 ? "join-sleep" : i == 1 ? "join-condwait" : i == 2 ? "join-futex" : i == 3 ? "join-spin" : "join-sigwait",
          e == 0, "pthread_timedjoin_np: %s", strerror(e));
    if (e == 0) joined++;
  }
  for (int i = 0; i < NWORKERS; i++) {
    struct worker *w = &workers[i];
    char name[48];
    snprintf(name, sizeof name, "%s-tid", kind_names[i]);
    check(name, w->tid_ok, "gettid %d, was %d", w->tid_after, w->tid);
    snprintf(name, sizeof name, "%s-tls", kind_names[i]);
    check(name, w->tls_ok, "tls %lx, expected %lx", (unsigned long)w->tls_after,
          (unsigned long)tls_for(i));
    snprintf(name, sizeof name, "%s-sigmask", kind_names[i]);
    check(name, w->mask_ok && w->mask_after == w->mask_before, "mask %lx, was %lx",
          (unsigned long)w->mask_after, (unsigned long)w->mask_before);
    snprintf(name, sizeof name, "%s-name", kind_names[i]);
    check(name, w->name_ok, "thread name is not %s", w->name);
    snprintf(name, sizeof name, "%s-rseq", kind_names[i]);
    check(name, w->rseq_ok, "rseq not registered");
    snprintf(name, sizeof name, "%s-state", kind_names[i]);
    check(name, w->extra_ok, "%s", w->extra);
    if (w->extra[0]) printf("info %s %s\n", kind_names[i], w->extra);
    snprintf(name, sizeof name, "%s-round", kind_names[i]);
    check(name, w->joined_round, "only %d threads met on the condition variable", round_count);
  }
  check("distinct-tls", tls_value == 0x7100000000005555ULL, "main tls changed to %lx",
        (unsigned long)tls_value);

  /* The sleeper exited holding the robust mutex. */
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 3;
  int e = pthread_mutex_timedlock(&robust, &dl);
  check("robust-owner-died", e == EOWNERDEAD, "pthread_mutex_timedlock: %s", strerror(e));
  if (e == EOWNERDEAD) {
    pthread_mutex_consistent(&robust);
    pthread_mutex_unlock(&robust);
  }

  na = list_tasks(tasks_after, 16);
  check("tasks-gone", joined == NWORKERS && na == 1 && tasks_after[0] == pid, "%d tasks left", na);

  pthread_t th;
  void *ret = NULL;
  e = pthread_create(&th, NULL, fresh_thread, NULL);
  if (e == 0) e = pthread_join(th, &ret);
  check("new-thread", e == 0 && (intptr_t)ret > 0 && (intptr_t)ret != pid, "%s", strerror(e));

  return verdict();
}
