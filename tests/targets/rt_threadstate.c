/* Round-trip target for the per-thread state that injected syscalls (or
 * the BPF task iterator, engine/dump/thread_state.ts) read: the main
 * thread and NWORKERS workers each set their own sigaltstack (none, plain,
 * SS_AUTODISARM, explicitly disabled), clear_child_tid (set_tid_address),
 * parent-death signal, securebits and timer slack. Each thread prints
 * "thread <tid> sp=0x.. size=.. flags=.. ctid=0x.. pdeath=.. secbits=..
 * slack=.." as the kernel reports them, then the target prints
 * "ready pid=<pid>" and waits until the trigger file argv[1] exists; then
 * every thread reads its values again and compares them with those before,
 * and the main thread prints one "check thread<i> ok|FAIL <detail>" line
 * per thread, then PASS or FAIL, and exits (the workers are never joined:
 * their clear_child_tid no longer points at glibc's tid field).
 *
 * usage: rt_threadstate <trigger-path> [onstack] [future|future-onfault]
 *   onstack: worker 1 waits inside a signal handler on its alternate stack
 *   (sigaltstack reports SS_ONSTACK there; the dump injects such a process).
 *   future, future-onfault: mlockall(MCL_FUTURE [| MCL_ONFAULT]) once the
 *   threads are set up (mm->def_flags, which the task iterator reads).
 */
#define _GNU_SOURCE
#include <linux/securebits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

#define NWORKERS 6
#define NTHREADS (NWORKERS + 1)
#define ALTSTACK_SIZE (64 * 1024)
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* linux/signal.h */
#endif

struct values {
  uint64_t sp, size;
  int flags;
  uint64_t ctid;
  int pdeath, secbits;
  long slack;
};

struct thread {
  int idx;
  pid_t tid;
  struct values before, after;
  int ctid_word; /* where its clear_child_tid points, for those that set it */
};

static struct thread threads[NTHREADS];
static uint8_t altstacks[NTHREADS][ALTSTACK_SIZE];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int set_up, phase, checked;

static void read_values(struct values *v) {
  stack_t ss;
  if (sigaltstack(NULL, &ss) != 0) die("sigaltstack");
  v->sp = (uint64_t)(uintptr_t)ss.ss_sp;
  v->size = ss.ss_size;
  v->flags = ss.ss_flags;
  int *ctid = NULL;
  if (prctl(PR_GET_TID_ADDRESS, &ctid) != 0) die("PR_GET_TID_ADDRESS");
  v->ctid = (uint64_t)(uintptr_t)ctid;
  if (prctl(PR_GET_PDEATHSIG, &v->pdeath) != 0) die("PR_GET_PDEATHSIG");
  v->secbits = prctl(PR_GET_SECUREBITS);
  if (v->secbits < 0) die("PR_GET_SECUREBITS");
  v->slack = prctl(PR_GET_TIMERSLACK);
}

/* Thread i's own settings: each thread differs from the others in most of them. */
static void set_values(int i) {
  struct thread *t = &threads[i];
  int mode = i % 4; /* 0: none, 1: plain, 2: auto-disarmed, 3: explicitly disabled */
  if (mode != 0) {
    stack_t ss = {.ss_sp = altstacks[i], .ss_size = ALTSTACK_SIZE - 256 * i, .ss_flags = 0};
    if (mode == 2) ss.ss_flags = SS_AUTODISARM;
    if (mode == 3) ss.ss_flags = SS_DISABLE;
    if (sigaltstack(&ss, NULL) != 0) die("sigaltstack set");
  }
  if (i % 3 != 0 && syscall(SYS_set_tid_address, &t->ctid_word) < 0) die("set_tid_address");
  static const int pdeath[] = {SIGWINCH, 0, SIGURG, SIGCHLD};
  if (prctl(PR_SET_PDEATHSIG, pdeath[i % 4]) != 0) die("PR_SET_PDEATHSIG");
  static const int secbits[] = {0, SECBIT_KEEP_CAPS, SECBIT_NO_SETUID_FIXUP,
                                SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP};
  if (prctl(PR_SET_SECUREBITS, secbits[(i + 1) % 4]) != 0) die("PR_SET_SECUREBITS");
  if (prctl(PR_SET_TIMERSLACK, 1000UL * (i + 1) + i) != 0) die("PR_SET_TIMERSLACK");
  t->tid = gettid_raw();
  read_values(&t->before);
}

static void report_before(struct thread *t) {
  struct values *v = &t->before;
  printf("thread %d sp=0x%llx size=%llu flags=%d ctid=0x%llx pdeath=%d secbits=%d slack=%ld\n",
         t->tid, (unsigned long long)v->sp, (unsigned long long)v->size, v->flags,
         (unsigned long long)v->ctid, v->pdeath, v->secbits, v->slack);
}

/* Waits with the others until the trigger, then reads its values again. */
static void park(int i) {
  pthread_mutex_lock(&lock);
  set_up++;
  pthread_cond_broadcast(&cv);
  while (!phase) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  read_values(&threads[i].after);
  pthread_mutex_lock(&lock);
  checked++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&lock);
  for (;;) pause(); /* never joined: the process exits from main */
}

/* With "onstack": worker 1 parks inside a SIGUSR2 handler, on its alternate stack. */
static int onstack;

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif
static void on_usr2(int sig) {
  (void)sig;
  read_values(&threads[1].before); /* SS_ONSTACK now */
  park(1);
}

static void *worker(void *arg) {
  int i = (int)(intptr_t)arg;
  set_values(i);
  if (onstack && i == 1) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK;
    if (sigaction(SIGUSR2, &sa, NULL) != 0) die("sigaction");
    raise(SIGUSR2);
  }
  park(i);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_threadstate <trigger-path> [onstack]");
  int future = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "onstack") == 0) onstack = 1;
    else if (strcmp(argv[i], "future") == 0) future = MCL_FUTURE;
    else if (strcmp(argv[i], "future-onfault") == 0) future = MCL_FUTURE | MCL_ONFAULT;
  }
  for (int i = 0; i < NTHREADS; i++) threads[i].idx = i;
  for (int i = 1; i < NTHREADS; i++) {
    pthread_t th;
    int e = pthread_create(&th, NULL, worker, (void *)(intptr_t)i);
    if (e) die_err("pthread_create", e);
  }
  set_values(0);
  pthread_mutex_lock(&lock);
  while (set_up < NWORKERS) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  if (future && mlockall(future) != 0) die("mlockall");
  for (int i = 0; i < NTHREADS; i++) report_before(&threads[i]);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  read_values(&threads[0].after);
  pthread_mutex_lock(&lock);
  phase = 1;
  pthread_cond_broadcast(&cv);
  while (checked < NWORKERS) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < NTHREADS; i++) {
    struct values *b = &threads[i].before, *a = &threads[i].after;
    char name[32];
    snprintf(name, sizeof name, "thread%d", i);
    int same = a->sp == b->sp && a->size == b->size && a->flags == b->flags &&
               a->ctid == b->ctid && a->pdeath == b->pdeath && a->secbits == b->secbits &&
               a->slack == b->slack;
    check(name, same,
          "before sp=0x%llx size=%llu flags=%d ctid=0x%llx pdeath=%d secbits=%d slack=%ld, "
          "after sp=0x%llx size=%llu flags=%d ctid=0x%llx pdeath=%d secbits=%d slack=%ld",
          (unsigned long long)b->sp, (unsigned long long)b->size, b->flags,
          (unsigned long long)b->ctid, b->pdeath, b->secbits, b->slack,
          (unsigned long long)a->sp, (unsigned long long)a->size, a->flags,
          (unsigned long long)a->ctid, a->pdeath, a->secbits, a->slack);
  }
  return verdict();
}
