/* Round-trip target for scheduling: the main thread and five threads each
 * set their own policy (OTHER, BATCH, IDLE, FIFO with SCHED_RESET_ON_FORK,
 * RR, DEADLINE), nice value, CPU affinity, timer slack and I/O priority,
 * record what the kernel reports, print "ready ...", wait until the
 * trigger file argv[1] exists, then compare every value again and print one
 * "check <name> ok|FAIL <detail>" line per thread and item, then PASS or
 * FAIL. A deadline thread the kernel refuses at setup is reported as
 * "info deadline=unavailable <error>" and not checked.
 *
 * usage: rt_sched <trigger-path>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "common.h"

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif
#define SCHED_FLAG_RESET_ON_FORK 0x01
#define IOPRIO_WHO_PROCESS 1
#define IOPRIO(cls, data) (((cls) << 13) | (data))

struct attr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
  uint32_t util_min, util_max;
};

/* What one thread asks for and what it saw. */
struct want {
  const char *name;
  int policy, reset_on_fork, priority, nice, cpu; /* cpu -1: all CPUs */
  unsigned long slack;
  int ioprio;
  uint64_t runtime, deadline, period;
};

struct seen {
  struct attr a;
  int nice, ioprio, ncpus;
  unsigned long slack;
  cpu_set_t cpus;
};

#define NTHREADS 6
static struct want wants[NTHREADS] = {
    {"main", SCHED_OTHER, 0, 0, 3, 0, 123456, IOPRIO(2, 5), 0, 0, 0},
    {"batch", SCHED_BATCH, 0, 0, 7, 1, 222222, IOPRIO(3, 0), 0, 0, 0},
    {"idle", SCHED_IDLE, 0, 0, 10, -1, 333333, IOPRIO(2, 2), 0, 0, 0},
    {"fifo", SCHED_FIFO, 1, 5, -2, 0, 0, IOPRIO(1, 4), 0, 0, 0},
    {"rr", SCHED_RR, 0, 12, 4, 1, 0, IOPRIO(2, 7), 0, 0, 0},
    {"deadline", SCHED_DEADLINE, 1, 0, 0, -1, 0, IOPRIO(2, 1), 1000000, 20000000, 20000000},
};
static struct seen before[NTHREADS], after[NTHREADS];
static int deadline_ok = 1, ncpus_online;
static char setup_error[NTHREADS][160];
static pthread_barrier_t ready_barrier, go_barrier, done_barrier;

static void observe(struct seen *s) {
  memset(s, 0, sizeof *s);
  syscall(SYS_sched_getattr, 0, &s->a, sizeof s->a, 0);
  errno = 0;
  s->nice = getpriority(PRIO_PROCESS, gettid_raw());
  s->ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
  s->slack = (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  sched_getaffinity(0, sizeof s->cpus, &s->cpus);
  s->ncpus = CPU_COUNT(&s->cpus);
}

/* Sets the calling thread's scheduling as `w` asks; returns 0 or an errno. */
static int apply(const struct want *w, char *err) {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cpu = w->cpu >= ncpus_online ? 0 : w->cpu;
  if (cpu < 0)
    for (int c = 0; c < ncpus_online; c++) CPU_SET(c, &set);
  else
    CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set)) return sprintf(err, "sched_setaffinity"), errno;
  if (setpriority(PRIO_PROCESS, gettid_raw(), w->nice)) return sprintf(err, "setpriority"), errno;
  if (w->slack && prctl(PR_SET_TIMERSLACK, w->slack, 0, 0, 0)) return sprintf(err, "timerslack"), errno;
  struct attr a = {sizeof a, (uint32_t)w->policy, w->reset_on_fork ? SCHED_FLAG_RESET_ON_FORK : 0,
                   w->nice, (uint32_t)w->priority, w->runtime, w->deadline, w->period, 0, 0};
  if (syscall(SYS_sched_setattr, 0, &a, 0)) return sprintf(err, "sched_setattr"), errno;
  if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, w->ioprio)) return sprintf(err, "ioprio_set"), errno;
  return 0;
}

static void wait_phase(int i) {
  observe(&before[i]);
  pthread_barrier_wait(&ready_barrier);
  pthread_barrier_wait(&go_barrier); /* the dump happens while every thread waits here */
  observe(&after[i]);
  pthread_barrier_wait(&done_barrier);
}

static void *thread_main(void *arg) {
  int i = (int)(intptr_t)arg;
  char err[64] = "";
  int e = apply(&wants[i], err);
  if (e && wants[i].policy == SCHED_DEADLINE) {
    deadline_ok = 0;
    snprintf(setup_error[i], sizeof setup_error[i], "%s: %s", err, strerror(e));
  } else if (e) {
    snprintf(setup_error[i], sizeof setup_error[i], "%s: %s", err, strerror(e));
  }
  char name[16];
  snprintf(name, sizeof name, "sched-%s", wants[i].name);
  prctl(PR_SET_NAME, name, 0, 0, 0);
  wait_phase(i);
  return NULL;
}

static void compare(int i) {
  const struct want *w = &wants[i];
  const struct seen *b = &before[i], *a = &after[i];
  char name[64];
  int rt = w->policy == SCHED_FIFO || w->policy == SCHED_RR;
  if (w->policy == SCHED_DEADLINE && !deadline_ok) return;
  /* What the thread asked for is what it had before the dump... */
  snprintf(name, sizeof name, "%s-setup", w->name);
  int cpu = w->cpu >= ncpus_online ? 0 : w->cpu;
  int want_flags = w->reset_on_fork ? SCHED_FLAG_RESET_ON_FORK : 0;
  check(name,
        b->a.policy == (uint32_t)w->policy && (int)(b->a.flags & 1) == want_flags &&
            b->a.priority == (uint32_t)w->priority && b->nice == w->nice &&
            b->ioprio == w->ioprio && (w->slack == 0 || b->slack == w->slack) &&
            (cpu < 0 ? b->ncpus == ncpus_online : b->ncpus == 1 && CPU_ISSET(cpu, &b->cpus)),
        "policy %u flags 0x%lx prio %u nice %d ioprio 0x%x slack %lu cpus %d",
        b->a.policy, (unsigned long)b->a.flags, b->a.priority, b->nice, b->ioprio, b->slack,
        b->ncpus);
  /* ...and after the restore. */
  snprintf(name, sizeof name, "%s-policy", w->name);
  check(name, a->a.policy == b->a.policy && a->a.flags == b->a.flags,
        "policy %u flags 0x%lx, was %u 0x%lx", a->a.policy, (unsigned long)a->a.flags,
        b->a.policy, (unsigned long)b->a.flags);
  snprintf(name, sizeof name, "%s-priority", w->name);
  check(name, a->a.priority == b->a.priority && (!rt || a->a.priority > 0),
        "priority %u, was %u", a->a.priority, b->a.priority);
  if (w->policy == SCHED_DEADLINE) {
    snprintf(name, sizeof name, "%s-params", w->name);
    check(name,
          a->a.runtime == b->a.runtime && a->a.deadline == b->a.deadline &&
              a->a.period == b->a.period,
          "runtime %lu deadline %lu period %lu", (unsigned long)a->a.runtime,
          (unsigned long)a->a.deadline, (unsigned long)a->a.period);
  }
  snprintf(name, sizeof name, "%s-nice", w->name);
  check(name, a->nice == b->nice, "nice %d, was %d", a->nice, b->nice);
  snprintf(name, sizeof name, "%s-affinity", w->name);
  check(name, CPU_EQUAL(&a->cpus, &b->cpus), "%d CPUs, was %d", a->ncpus, b->ncpus);
  snprintf(name, sizeof name, "%s-timerslack", w->name);
  check(name, a->slack == b->slack, "%lu ns, was %lu", a->slack, b->slack);
  snprintf(name, sizeof name, "%s-ioprio", w->name);
  check(name, a->ioprio == b->ioprio, "0x%x, was 0x%x", a->ioprio, b->ioprio);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_sched <trigger>");
  ncpus_online = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpus_online > CPU_SETSIZE) ncpus_online = CPU_SETSIZE;
  prctl(PR_SET_NAME, "rt-sched", 0, 0, 0);
  pthread_barrier_init(&ready_barrier, NULL, NTHREADS);
  pthread_barrier_init(&go_barrier, NULL, NTHREADS);
  pthread_barrier_init(&done_barrier, NULL, NTHREADS);
  char err[64] = "";
  int e = apply(&wants[0], err);
  if (e) die_err(err, e);
  pthread_t t[NTHREADS];
  for (int i = 1; i < NTHREADS; i++)
    if (pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i)) die("pthread_create");
  observe(&before[0]);
  pthread_barrier_wait(&ready_barrier);
  for (int i = 1; i < NTHREADS; i++) {
    if (!setup_error[i][0]) continue;
    if (wants[i].policy == SCHED_DEADLINE) printf("info deadline=unavailable %s\n", setup_error[i]);
    else die_err(setup_error[i], 0);
  }
  print_ready("pid=%d cpus=%d deadline=%d", getpid(), ncpus_online, deadline_ok);
  wait_trigger(argv[1]);
  pthread_barrier_wait(&go_barrier);
  observe(&after[0]);
  pthread_barrier_wait(&done_barrier);
  for (int i = 0; i < NTHREADS; i++) compare(i);
  for (int i = 1; i < NTHREADS; i++) pthread_join(t[i], NULL);
  return verdict();
}
