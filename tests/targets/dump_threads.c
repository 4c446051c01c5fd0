/* Dump target: a main thread and five named workers, four of them blocked
 * in known syscalls (read on a pipe, futex wait, poll, one 4-second
 * nanosleep, after which it waits on the futex too) and one spinning, plus
 * memory regions with known contents:
 *
 *   pattern  16 private anonymous pages, word at address a = a*K ^ SEED
 *   sparse   64 private anonymous pages, only pages 3, 10, 11, 40 touched
 *            (page i filled with byte 0x30+i)
 *   ro       4 anonymous pages filled with 0xab, then made read-only
 *   none     2 anonymous pages filled with 0xcd, then made PROT_NONE
 *   shared   4 MAP_SHARED anonymous pages, pages 0 and 2 filled (0x50+i)
 *   file     the file argv[1] (3 pages) mapped MAP_PRIVATE, page 1
 *            overwritten with 0xc1 (pages 0 and 2 stay clean)
 *
 * Prints one "ready ..." line with the tids and region addresses, then the
 * main thread waits in sigsuspend for SIGUSR1. On SIGUSR1 it wakes every
 * worker, joins them and checks that every blocked syscall completed
 * normally (no EINTR, the sleep lasted its 4 s), that tids, TLS values and
 * thread names are unchanged and that every region still holds its data;
 * prints "check <name> ok|FAIL <detail>" lines, then PASS (exit 0) or FAIL
 * (exit 1).
 *
 * usage: dump_threads <file-of-3-pages>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define PAGE 4096
#define K 0x9e3779b97f4a7c15ull
#define SEED 0x5eed5eed12345678ull
/* Long enough that a test's dump on a loaded machine comes before its end. */
#define SLEEP_SECONDS 4

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *map_anon(size_t pages, int shared) {
  void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | (shared ? MAP_SHARED : MAP_PRIVATE), -1, 0);
  if (p == MAP_FAILED) die("mmap");
  if (!shared) madvise(p, pages * PAGE, MADV_NOHUGEPAGE);
  return p;
}

/* ------------------------------------------------------------ regions */

static uint64_t *pattern;
static unsigned char *sparse, *ro, *none, *shared_mem, *file_map;
static unsigned char file_orig[3 * PAGE];
static const int sparse_touched[] = {3, 10, 11, 40};

static void fill_regions(const char *path) {
  pattern = map_anon(16, 0);
  for (size_t i = 0; i < 16 * PAGE / 8; i++) {
    pattern[i] = ((uint64_t)(uintptr_t)&pattern[i] * K) ^ SEED;
  }
  sparse = map_anon(64, 0);
  for (size_t i = 0; i < sizeof sparse_touched / sizeof *sparse_touched; i++) {
    int p = sparse_touched[i];
    memset(sparse + p * PAGE, 0x30 + p, PAGE);
  }
  ro = map_anon(4, 0);
  memset(ro, 0xab, 4 * PAGE);
  if (mprotect(ro, 4 * PAGE, PROT_READ) != 0) die("mprotect ro");
  none = map_anon(2, 0);
  memset(none, 0xcd, 2 * PAGE);
  if (mprotect(none, 2 * PAGE, PROT_NONE) != 0) die("mprotect none");
  shared_mem = map_anon(4, 1);
  memset(shared_mem, 0x50, PAGE);
  memset(shared_mem + 2 * PAGE, 0x52, PAGE);

  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open file");
  if (pread(fd, file_orig, sizeof file_orig, 0) != (ssize_t)sizeof file_orig) die("pread file");
  file_map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (file_map == MAP_FAILED) die("mmap file");
  close(fd);
  memset(file_map + PAGE, 0xc1, PAGE);
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != v) return 0;
  }
  return 1;
}

static void check_regions(void) {
  size_t bad = 0;
  for (size_t i = 0; i < 16 * PAGE / 8; i++) {
    if (pattern[i] != (((uint64_t)(uintptr_t)&pattern[i] * K) ^ SEED)) bad++;
  }
  check("mem-pattern", bad == 0, "%zu words differ", bad);
  int sparse_ok = 1;
  for (int p = 0; p < 64; p++) {
    int touched = 0;
    for (size_t i = 0; i < sizeof sparse_touched / sizeof *sparse_touched; i++) {
      if (sparse_touched[i] == p) touched = 1;
    }
    if (!all_bytes(sparse + p * PAGE, PAGE, touched ? 0x30 + p : 0)) sparse_ok = 0;
  }
  check("mem-sparse", sparse_ok, "a page differs");
  check("mem-ro", all_bytes(ro, 4 * PAGE, 0xab), "differs");
  if (mprotect(none, 2 * PAGE, PROT_READ) != 0) die("mprotect none back");
  check("mem-none", all_bytes(none, 2 * PAGE, 0xcd), "differs");
  check("mem-shared",
        all_bytes(shared_mem, PAGE, 0x50) && all_bytes(shared_mem + PAGE, PAGE, 0) &&
            all_bytes(shared_mem + 2 * PAGE, PAGE, 0x52) && all_bytes(shared_mem + 3 * PAGE, PAGE, 0),
        "differs");
  check("mem-file",
        memcmp(file_map, file_orig, PAGE) == 0 && all_bytes(file_map + PAGE, PAGE, 0xc1) &&
            memcmp(file_map + 2 * PAGE, file_orig + 2 * PAGE, PAGE) == 0,
        "differs");
}

/* ------------------------------------------------------------ workers */

enum { W_READ, W_FUTEX, W_POLL, W_SLEEP, W_SPIN, NWORKERS };
static const char *names[NWORKERS] = {"w-read", "w-futex", "w-poll", "w-sleep", "w-spin"};

struct worker {
  pthread_t th;
  pid_t tid;
  uint64_t *tls_addr;
  int result_ok;
  char detail[128];
  pid_t tid_after;
  uint64_t tls_after;
  char name_after[16];
};

static struct worker workers[NWORKERS];
static __thread uint64_t tls_value;
static int read_pipe[2], poll_pipe[2];
static uint32_t futex_word;
static volatile int spin_go;
static volatile uint64_t spin_count;
static pthread_barrier_t started;

static void *worker_main(void *arg) {
  struct worker *w = arg;
  int idx = (int)(w - workers);
  w->tid = gettid_raw();
  tls_value = 0x7000 + idx;
  w->tls_addr = &tls_value;
  pthread_setname_np(pthread_self(), names[idx]);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  double t0 = now();
  pthread_barrier_wait(&started);
  switch (idx) {
  case W_READ: {
    char c = 0;
    ssize_t n = read(read_pipe[0], &c, 1);
    w->result_ok = n == 1 && c == 'r';
    snprintf(w->detail, sizeof w->detail, "read returned %zd (%s) c=%d", n, strerror(errno), c);
    break;
  }
  case W_FUTEX: {
    int eintr = 0;
    while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0) {
      long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
      if (r != 0 && errno == EINTR) eintr++;
    }
    w->result_ok = eintr == 0;
    snprintf(w->detail, sizeof w->detail, "futex wait returned EINTR %d times", eintr);
    break;
  }
  case W_POLL: {
    struct pollfd p = {poll_pipe[0], POLLIN, 0};
    int n = poll(&p, 1, -1);
    w->result_ok = n == 1 && (p.revents & POLLIN);
    snprintf(w->detail, sizeof w->detail, "poll returned %d (%s)", n, strerror(errno));
    break;
  }
  case W_SLEEP: {
    struct timespec ts = {SLEEP_SECONDS, 0};
    int r = nanosleep(&ts, NULL);
    double el = now() - t0;
    w->result_ok = r == 0 && el >= SLEEP_SECONDS - 0.01 && el < SLEEP_SECONDS + 1.5;
    snprintf(w->detail, sizeof w->detail, "nanosleep returned %d (%s) after %.3f s", r,
             strerror(errno), el);
    /* Then parked like the others until SIGUSR1: the thread count never changes by itself. */
    while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0)
      syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    break;
  }
  case W_SPIN:
    while (!spin_go) spin_count++;
    w->result_ok = spin_count > 0;
    snprintf(w->detail, sizeof w->detail, "spun %llu times", (unsigned long long)spin_count);
    break;
  }
  w->tid_after = gettid_raw();
  w->tls_after = tls_value;
  pthread_getname_np(pthread_self(), w->name_after, sizeof w->name_after);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "dump_threads <file-of-3-pages>");
  fill_regions(argv[1]);
  if (pipe(read_pipe) != 0 || pipe(poll_pipe) != 0) die("pipe");
  sigset_t old;
  arm_usr1(&old); /* before the workers start: they inherit the blocked SIGUSR1 */
  tls_value = 0x7777;
  pthread_barrier_init(&started, NULL, NWORKERS + 1);
  for (int i = 0; i < NWORKERS; i++) {
    if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0) die("pthread_create");
  }
  pthread_barrier_wait(&started);
  pid_t main_tid = gettid_raw();
  print_ready("pid=%d tids=%d,%d,%d,%d,%d,%d pattern=%p sparse=%p ro=%p none=%p shared=%p file=%p",
              getpid(), main_tid, workers[0].tid, workers[1].tid, workers[2].tid, workers[3].tid,
              workers[4].tid, (void *)pattern, (void *)sparse, (void *)ro, (void *)none,
              (void *)shared_mem, (void *)file_map);

  wait_usr1(&old);

  check("main-tid", gettid_raw() == main_tid && main_tid == getpid(), "tid %d", gettid_raw());
  check("main-tls", tls_value == 0x7777, "tls %llx", (unsigned long long)tls_value);

  if (write(read_pipe[1], "r", 1) != 1) die("write read_pipe");
  if (write(poll_pipe[1], "p", 1) != 1) die("write poll_pipe");
  __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, NWORKERS, NULL, NULL, 0);
  spin_go = 1;
  for (int i = 0; i < NWORKERS; i++) {
    struct worker *w = &workers[i];
    pthread_join(w->th, NULL);
    char name[32];
    snprintf(name, sizeof name, "%s-syscall", names[i]);
    check(name, w->result_ok, "%s", w->detail);
    snprintf(name, sizeof name, "%s-tid", names[i]);
    check(name, w->tid_after == w->tid, "%d != %d", w->tid_after, w->tid);
    snprintf(name, sizeof name, "%s-tls", names[i]);
    check(name, w->tls_after == 0x7000u + i, "%llx", (unsigned long long)w->tls_after);
    snprintf(name, sizeof name, "%s-name", names[i]);
    check(name, strcmp(w->name_after, names[i]) == 0, "'%s'", w->name_after);
  }
  check_regions();
  return verdict();
}
