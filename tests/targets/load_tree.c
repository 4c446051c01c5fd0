/* Load target: a tree of `nproc` processes (the root and nproc-1 children
 * it forks) with `nthreads` threads each (the main thread and nthreads-1
 * workers). Every thread fills its own heap buffer and a stack buffer with
 * a pattern derived from its tid and index, then parks on a condition
 * variable. Each process writes "<work>/ready-<pid>" ("<pid> <tid,tid...>")
 * once all its threads are parked; the root prints
 * "ready pid=<pid> procs=<n>" when every process is ready.
 *
 * Each process's main thread polls for the trigger file argv[1] (every 50
 * ms; threads do not poll), then wakes its workers; every thread checks its
 * tid (gettid() unchanged), both buffers, and that its process has exactly
 * the threads it had; the main thread joins them and writes
 * "<work>/report-<pid>": one line "<pid> <tid,...> ok" or
 * "<pid> FAIL <detail>". The root waits for its children and prints
 * "check children ok|FAIL" and "check root ok|FAIL", then PASS or FAIL.
 *
 * usage: load_tree <trigger-path> <work-dir> <nproc> <nthreads> [kib-per-thread]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>

#include "common.h"

#define MAXT 1024
#define STACK_WORDS 512

struct worker {
  int idx;
  pthread_t th;
  pid_t tid;
  uint64_t *heap;
  int ok;
  char detail[128];
};

static const char *trigger, *work;
static int nthreads;
static size_t heap_words;
static struct worker workers[MAXT];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int parked, go;

static uint64_t pattern(pid_t tid, int idx, size_t i) {
  uint64_t x = ((uint64_t)tid << 32) ^ ((uint64_t)idx << 20) ^ (i * 0x9e3779b97f4a7c15ull);
  return x ^ (x >> 29);
}

/* Counts the entries of /proc/self/task. */
static int count_tasks(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Fills, parks until `go`, then verifies; the body of every thread. */
static void run_thread(struct worker *w) {
  uint64_t stackbuf[STACK_WORDS];
  w->tid = gettid_raw();
  w->heap = malloc(heap_words * sizeof(uint64_t));
  if (!w->heap) die("malloc");
  for (size_t i = 0; i < heap_words; i++) w->heap[i] = pattern(w->tid, w->idx, i);
  for (size_t i = 0; i < STACK_WORDS; i++) stackbuf[i] = ~pattern(w->tid, w->idx, i);

  pthread_mutex_lock(&lock);
  parked++;
  pthread_cond_broadcast(&cv);
  if (w->idx != 0)
    while (!go) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  if (w->idx == 0) {
    /* The main thread: wait until all are parked, report, poll the trigger, wake all. */
    pthread_mutex_lock(&lock);
    while (parked < nthreads) pthread_cond_wait(&cv, &lock);
    pthread_mutex_unlock(&lock);
    return;
  }
  w->ok = 1;
  pid_t now = gettid_raw();
  if (now != w->tid) {
    w->ok = 0;
    snprintf(w->detail, sizeof w->detail, "thread %d tid %d became %d", w->idx, w->tid, now);
    return;
  }
  for (size_t i = 0; i < heap_words; i++) {
    if (w->heap[i] != pattern(w->tid, w->idx, i)) {
      w->ok = 0;
      snprintf(w->detail, sizeof w->detail, "thread %d heap word %zu", w->idx, i);
      return;
    }
  }
  for (size_t i = 0; i < STACK_WORDS; i++) {
    if (stackbuf[i] != ~pattern(w->tid, w->idx, i)) {
      w->ok = 0;
      snprintf(w->detail, sizeof w->detail, "thread %d stack word %zu", w->idx, i);
      return;
    }
  }
}

static void *thread_main(void *arg) {
  run_thread(arg);
  return NULL;
}

/* Writes `text` to <work>/<name>-<pid> through a temp file and rename. */
static void write_file(const char *name, const char *text) {
  char tmp[512], path[512];
  snprintf(path, sizeof path, "%s/%s-%d", work, name, getpid());
  snprintf(tmp, sizeof tmp, "%s/.%s-%d", work, name, getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) die("fopen");
  fputs(text, f);
  if (fclose(f) != 0) die("fclose");
  if (rename(tmp, path) != 0) die("rename");
}

/* The life of one process: threads, ready file, trigger, checks, report. Returns 0 if all ok. */
static int run_process(const pid_t *kids, int nkids) {
  struct worker *m = &workers[0];
  m->idx = 0;
  for (int i = 1; i < nthreads; i++) {
    workers[i].idx = i;
    int err = pthread_create(&workers[i].th, NULL, thread_main, &workers[i]);
    if (err) die_err("pthread_create", err);
  }
  run_thread(m); /* fills the main thread's buffers, waits until all parked */
  /* The main thread keeps its buffers in `m->heap`; its stack buffer was in run_thread's frame,
   * so it checks a fresh stack copy below instead. */
  uint64_t stackbuf[STACK_WORDS];
  for (size_t i = 0; i < STACK_WORDS; i++) stackbuf[i] = ~pattern(m->tid, 0, i);

  char line[MAXT * 12 + 64];
  int off = snprintf(line, sizeof line, "%d ", getpid());
  for (int i = 0; i < nthreads; i++)
    off += snprintf(line + off, sizeof line - off, "%s%d", i ? "," : "", workers[i].tid);
  snprintf(line + off, sizeof line - off, "\n");
  write_file("ready", line);
  if (nkids >= 0) {
    /* The root: wait until every child wrote its ready file, then announce the tree. */
    for (int i = 1; i <= nkids; i++) {
      char path[512];
      snprintf(path, sizeof path, "%s/ready-%d", work, kids[i]);
      for (int r = 0; access(path, F_OK) != 0; r++) {
        if (r > 6000) die_err("children not ready", ETIMEDOUT);
        sleep_ms(20);
      }
    }
    print_ready("pid=%d procs=%d", getpid(), nkids + 1);
  }

  struct timespec ts = {0, 50 * 1000 * 1000};
  for (int rounds = 0; access(trigger, F_OK) != 0; rounds++) {
    if (rounds > 2400 * 5) exit(3); /* ten minutes */
    nanosleep(&ts, NULL);
  }
  int tasks = count_tasks();

  pthread_mutex_lock(&lock);
  go = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&lock);

  char report[MAXT * 12 + 256];
  int ok = 1;
  if (gettid_raw() != m->tid || getpid() != m->tid) {
    ok = 0;
    snprintf(report, sizeof report, "%d FAIL main tid %d became %d\n", getpid(), m->tid,
             gettid_raw());
  }
  for (size_t i = 0; ok && i < heap_words; i++) {
    if (m->heap[i] != pattern(m->tid, 0, i)) {
      ok = 0;
      snprintf(report, sizeof report, "%d FAIL main heap word %zu\n", getpid(), i);
    }
  }
  for (size_t i = 0; ok && i < STACK_WORDS; i++) {
    if (stackbuf[i] != ~pattern(m->tid, 0, i)) {
      ok = 0;
      snprintf(report, sizeof report, "%d FAIL main stack word %zu\n", getpid(), i);
    }
  }
  if (ok && tasks != nthreads) {
    ok = 0;
    snprintf(report, sizeof report, "%d FAIL %d tasks, want %d\n", getpid(), tasks, nthreads);
  }
  for (int i = 1; i < nthreads; i++) {
    pthread_join(workers[i].th, NULL);
    if (ok && !workers[i].ok) {
      ok = 0;
      snprintf(report, sizeof report, "%d FAIL %s\n", getpid(), workers[i].detail);
    }
  }
  if (ok) {
    line[strlen(line) - 1] = 0;
    snprintf(report, sizeof report, "%s ok\n", line);
  }
  write_file("report", report);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  need_args(argc, 4, "load_tree <trigger> <work> <nproc> <nthreads> [kib-per-thread]");
  trigger = argv[1];
  work = argv[2];
  int nproc = atoi(argv[3]);
  nthreads = atoi(argv[4]);
  int kib = argc > 5 ? atoi(argv[5]) : 16;
  if (nproc < 1 || nthreads < 1 || nthreads > MAXT || kib < 1) {
    fprintf(stderr, "bad sizes\n");
    return 2;
  }
  heap_words = (size_t)kib * 1024 / sizeof(uint64_t);

  pid_t *kids = calloc(nproc, sizeof(pid_t));
  for (int i = 1; i < nproc; i++) {
    pid_t k = fork();
    if (k < 0) die("fork");
    if (k == 0) {
      free(kids);
      exit(run_process(NULL, -1));
    }
    kids[i] = k;
  }

  pid_t self = getpid();
  int rc = run_process(kids, nproc - 1);
  int bad = 0;
  for (int i = 1; i < nproc; i++) {
    int st;
    if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
  }
  check("children", bad == 0, "%d children failed", bad);
  check("root", rc == 0, "see report-%d", self);
  return verdict();
}
