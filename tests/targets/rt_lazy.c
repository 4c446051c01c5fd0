/* Lazy restore target: its memory is served by cryo while it runs
 * (restore --lazy), so every check below reads pages that fault in.
 *
 * Memory: a region of <mib> MiB (private anonymous) where page p holds
 * words mix(p, w), except every 8th page (never touched: must read as
 * zeros); a 1 MiB block moved with mremap after the restore (EVENT_REMAP);
 * 16 pages dropped with MADV_DONTNEED after the restore (EVENT_REMOVE: must
 * read as zeros, not as the image has them); a 4 MiB malloc'ed buffer.
 *
 * It waits for the trigger file (a test writes it before the restore, so
 * the checks run while the pages are being served), prints
 * "resumed <CLOCK_MONOTONIC ns>", then, per mode:
 *   mem      checks everything from the main thread
 *   orphan   as mem, without the parent-death signal the harness sets
 *   threads  4 threads check interleaved pages of the region at once
 *   fork     forks at once; the child checks and rewrites the region (its
 *            pages missing at the fork are served to it too), then the
 *            parent checks its own
 *   tree     was forked before the dump: parent and child each check
 *            their own region (the child's allocated after the fork)
 * Checks: region (untouched pages read as zeros), dropped, moved, heap, rewrite (threads: region
 * and rewrite per thread; tree: child; fork: forked, region, rewrite).
 *
 * usage: rt_lazy <trigger> <mib> <mode>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define THREADS 4

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w) {
  uint64_t x = p * 0x9e3779b97f4a7c15ull ^ (g << 20) ^ w;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 27);
}

static uint64_t *region, *block, *heap;
static size_t pages;

static int zero_page(size_t p) { return p % 8 == 7; }

/* Pages of [first, pages) in steps of `step` whose content is wrong for generation g. */
static long bad_region(size_t first, size_t step, uint64_t g) {
  long bad = 0;
  for (size_t p = first; p < pages; p += step) {
    if (p < 16) continue; /* the dropped pages */
    uint64_t *page = region + p * WORDS;
    for (uint64_t w = 0; w < WORDS; w++) {
      uint64_t want = zero_page(p) && g == 1 ? 0 : mix(p, g, w);
      if (page[w] != want) {
        bad++;
        break;
      }
    }
  }
  return bad;
}

static void rewrite(size_t first, size_t step) {
  for (size_t p = first; p < pages; p += step)
    for (uint64_t w = 0; w < WORDS; w++) region[p * WORDS + w] = mix(p, 2, w);
}

static void *thread_main(void *arg) {
  size_t k = (size_t)(uintptr_t)arg;
  long bad = bad_region(k, THREADS, 1);
  rewrite(k, THREADS);
  long bad2 = bad_region(k, THREADS, 2);
  return (void *)(uintptr_t)(bad * 1000000 + bad2);
}

static uint64_t *make_region(size_t n) {
  uint64_t *r = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) die("mmap");
  for (size_t p = 0; p < n; p++)
    if (!zero_page(p))
      for (uint64_t w = 0; w < WORDS; w++) r[p * WORDS + w] = mix(p, 1, w);
  return r;
}

static void check_region_main(const char *who) {
  long bad = bad_region(16, 1, 1);
  check("region", bad == 0, "%s: %ld of %zu pages wrong", who, bad, pages);
  rewrite(0, 1);
  bad = bad_region(0, 1, 2);
  check("rewrite", bad == 0, "%s: %ld pages wrong after rewriting", who, bad);
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_lazy <trigger> <mib> <mode>");
  const char *trigger = argv[1];
  const char *mode = argv[3];
  int tree = strcmp(mode, "tree") == 0;
  /* "orphan": as "mem", without the parent-death signal the test harness
   * sets (so that its restorer, cryo, dying does not kill it by itself). */
  if (strcmp(mode, "orphan") == 0) prctl(PR_SET_PDEATHSIG, 0);
  pid_t child = -1;
  if (tree) {
    child = fork();
    if (child < 0) die("fork");
  }
  pages = (size_t)atol(argv[2]) * 256u;
  region = make_region(pages);
  block = make_region(256);
  heap = malloc(4u << 20);
  if (!heap) die("malloc");
  for (size_t i = 0; i < (4u << 20) / 8; i++) heap[i] = mix(i, 7, 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (child != 0) print_ready("pid=%d child=%d", getpid(), tree ? child : 0);

  wait_trigger(trigger);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (child != 0) printf("resumed %lld\n", (long long)now.tv_sec * 1000000000ll + now.tv_nsec);

  if (tree) {
    if (child == 0) { /* the child: its own memory only */
      check_region_main("child");
      exit(failures ? 1 : 0);
    }
    check_region_main("parent");
    int st;
    if (waitpid(child, &st, 0) != child) die("waitpid");
    check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    return verdict();
  }

  if (strcmp(mode, "fork") == 0) {
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) { /* the child checks and rewrites the memory it got at the fork */
      long bad = bad_region(16, 1, 1);
      rewrite(0, 1);
      exit(bad == 0 && bad_region(0, 1, 2) == 0 ? 0 : 1);
    }
    int st;
    if (waitpid(c, &st, 0) != c) die("waitpid");
    check("forked", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
    check_region_main("parent after the fork");
    return verdict();
  }

  /* Dropped pages read as zeros, not as the image had them. */
  if (madvise(region, 16 * PAGE, MADV_DONTNEED) != 0) die("madvise");
  long nz = 0;
  for (size_t i = 0; i < 16 * WORDS; i++) nz += region[i] != 0;
  check("dropped", nz == 0, "%ld words of dropped pages are not zero", nz);

  /* A block moved before its pages are in. */
  uint64_t *moved = mremap(block, 256 * PAGE, 256 * PAGE, MREMAP_MAYMOVE);
  if (moved == MAP_FAILED) die("mremap");
  long badm = 0;
  for (size_t p = 0; p < 256; p++)
    for (uint64_t w = 0; w < WORDS; w++)
      if (moved[p * WORDS + w] != (zero_page(p) ? 0 : mix(p, 1, w))) {
        badm++;
        break;
      }
  check("moved", badm == 0, "%ld of 256 moved pages wrong", badm);

  if (strcmp(mode, "threads") == 0) {
    pthread_t th[THREADS];
    for (int k = 0; k < THREADS; k++)
      if (pthread_create(&th[k], NULL, thread_main, (void *)(uintptr_t)k) != 0) die("pthread");
    long bad = 0, bad2 = 0;
    for (int k = 0; k < THREADS; k++) {
      void *r;
      pthread_join(th[k], &r);
      bad += (long)(uintptr_t)r / 1000000;
      bad2 += (long)(uintptr_t)r % 1000000;
    }
    check("region", bad == 0, "%ld of %zu pages wrong (threads)", bad, pages);
    check("rewrite", bad2 == 0, "%ld pages wrong after rewriting (threads)", bad2);
  } else {
    check_region_main("main");
  }
  long badh = 0;
  for (size_t i = 0; i < (4u << 20) / 8; i++) badh += heap[i] != mix(i, 7, 0);
  check("heap", badh == 0, "%ld heap words wrong", badh);
  return verdict();
}
