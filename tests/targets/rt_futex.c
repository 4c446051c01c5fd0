/* Round-trip target for threads blocked in futex waits and joins. Threads:
 *   wait      FUTEX_WAIT without a timeout, woken by the main thread after
 *             the restore;
 *   rel       FUTEX_WAIT with a relative 3 s timeout, never woken;
 *   abs       FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC deadline
 *             3 s after the start, never woken;
 *   sleep     nanosleep(3 s) with a remaining-time pointer (glibc: clock_nanosleep);
 *   rawsleep  the nanosleep syscall itself, 3 s, with a remaining-time pointer;
 *   exiter    waits (futex) until the main thread lets it exit;
 *   joiner    blocked in pthread_join(exiter).
 * Prints "ready pid=<pid> start=<realtime ms>" once all are blocked, waits
 * for the trigger file (usage: rt_futex <trigger>), then wakes "wait" and
 * "exiter", joins everyone and checks each outcome itself; it prints
 * "woke <name> at=<realtime ms>" for the timed ones (the test checks
 * their deadlines).
 */
#include "common.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>

static uint32_t w_wait, w_rel, w_abs, w_exit;
static struct timespec start_mono;
static long long start_ms;

struct result {
  long ret;
  int err;
  long long at_ms;
  int eintr;
};
static struct result r_wait, r_rel, r_abs, r_sleep, r_raw, r_join;

static long long now_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts, uint32_t bits) {
  return syscall(SYS_futex, addr, op, val, ts, NULL, bits);
}

static void finish(struct result *r, long ret) {
  r->ret = ret;
  r->err = ret < 0 ? errno : 0;
  r->at_ms = now_ms(CLOCK_REALTIME);
}

static void *t_wait(void *arg) {
  (void)arg;
  long ret = 0;
  while (__atomic_load_n(&w_wait, __ATOMIC_SEQ_CST) == 0) {
    ret = futex(&w_wait, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
    if (ret < 0 && errno == EINTR) r_wait.eintr++;
  }
  finish(&r_wait, ret);
  return NULL;
}

static void *t_rel(void *arg) {
  (void)arg;
  struct timespec ts = {3, 0};
  long ret = futex(&w_rel, FUTEX_WAIT_PRIVATE, 0, &ts, 0);
  finish(&r_rel, ret);
  return NULL;
}

static void *t_abs(void *arg) {
  (void)arg;
  struct timespec deadline = start_mono;
  deadline.tv_sec += 3;
  long ret = futex(&w_abs, FUTEX_WAIT_BITSET_PRIVATE, 0, &deadline, FUTEX_BITSET_MATCH_ANY);
  finish(&r_abs, ret);
  return NULL;
}

static void *t_sleep(void *arg) {
  (void)arg;
  struct timespec req = {3, 0}, rem = {0, 0};
  long ret = nanosleep(&req, &rem);
  finish(&r_sleep, ret);
  return NULL;
}

static void *t_rawsleep(void *arg) {
  (void)arg;
  struct timespec req = {3, 0}, rem = {0, 0};
  long ret = syscall(SYS_nanosleep, &req, &rem);
  finish(&r_raw, ret);
  return NULL;
}

static void *t_exiter(void *arg) {
  (void)arg;
  while (__atomic_load_n(&w_exit, __ATOMIC_SEQ_CST) == 0) futex(&w_exit, FUTEX_WAIT_PRIVATE, 0, NULL, 0);
  return (void *)0x5a;
}

static void *t_joiner(void *arg) {
  void *value = NULL;
  int e = pthread_join(*(pthread_t *)arg, &value);
  finish(&r_join, e == 0 ? (long)(intptr_t)value : -1);
  return NULL;
}

/* Waits until thread `tid` of this process sleeps (state S). */
static void wait_sleeping(pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  for (int i = 0; i < 500; i++) {
    FILE *f = fopen(path, "r");
    if (!f) break;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (p && p[2] == 'S') return;
    sleep_ms(5);
  }
}

static pid_t tids[7];
static volatile int started;
struct spawn {
  void *(*fn)(void *);
  void *arg;
  int index;
};

static void *trampoline(void *arg) {
  struct spawn *s = arg;
  tids[s->index] = gettid_raw();
  __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
  return s->fn(s->arg);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_futex <trigger>");
  const char *trigger = argv[1];
  clock_gettime(CLOCK_MONOTONIC, &start_mono);
  start_ms = now_ms(CLOCK_REALTIME);
  pthread_t th[7];
  static struct spawn spawns[7];
  void *(*fns[7])(void *) = {t_wait, t_rel, t_abs, t_sleep, t_exiter, t_joiner, t_rawsleep};
  for (int i = 0; i < 7; i++) {
    spawns[i] = (struct spawn){fns[i], i == 5 ? (void *)&th[4] : NULL, i};
    if (pthread_create(&th[i], NULL, trampoline, &spawns[i]) != 0) die("pthread_create");
  }
  while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 7) sleep_ms(1);
  for (int i = 0; i < 7; i++) wait_sleeping(tids[i]);
  print_ready("pid=%d start=%lld", getpid(), start_ms);

  wait_trigger(trigger);
  __atomic_store_n(&w_wait, 1, __ATOMIC_SEQ_CST);
  futex(&w_wait, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
  __atomic_store_n(&w_exit, 1, __ATOMIC_SEQ_CST);
  futex(&w_exit, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
  for (int i = 0; i < 7; i++) {
    if (i == 4) continue; /* joined by the joiner */
    pthread_join(th[i], NULL);
  }

  check("wait-woken", r_wait.ret == 0 && r_wait.eintr == 0, "ret=%ld err=%d eintr=%d", r_wait.ret,
        r_wait.err, r_wait.eintr);
  check("rel-timeout", r_rel.ret == -1 && r_rel.err == ETIMEDOUT && r_rel.at_ms - start_ms >= 3000,
        "ret=%ld err=%d after %lld ms", r_rel.ret, r_rel.err, r_rel.at_ms - start_ms);
  check("abs-timeout", r_abs.ret == -1 && r_abs.err == ETIMEDOUT && r_abs.at_ms - start_ms >= 2990,
        "ret=%ld err=%d after %lld ms", r_abs.ret, r_abs.err, r_abs.at_ms - start_ms);
  check("sleep-done", r_sleep.ret == 0 && r_sleep.at_ms - start_ms >= 2990,
        "ret=%ld err=%d after %lld ms", r_sleep.ret, r_sleep.err, r_sleep.at_ms - start_ms);
  check("rawsleep-done", r_raw.ret == 0 && r_raw.at_ms - start_ms >= 2990,
        "ret=%ld err=%d after %lld ms", r_raw.ret, r_raw.err, r_raw.at_ms - start_ms);
  check("join-value", r_join.ret == 0x5a, "ret=%ld", r_join.ret);
  printf("woke abs at=%lld\nwoke sleep at=%lld\nwoke rawsleep at=%lld\nwoke rel at=%lld\n",
         r_abs.at_ms, r_sleep.at_ms, r_raw.at_ms, r_rel.at_ms);
  return verdict();
}
