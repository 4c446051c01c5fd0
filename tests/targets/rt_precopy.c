/* Pre-copy target: writes its memory all the time, so a dump that copies
 * pages while it runs must take every page written before the last freeze
 * again.
 *
 * A region of <mib> MiB (private anonymous); page p holds words that are a
 * function of (p, gen[p]), and gen[] (a separate array) counts the writes
 * of each page. The loop rewrites random pages of the first half of the
 * region (the second half stays as written at start: the pre-copy keeps
 * those), bumping gen[p] after each page; `inflight` names the page being
 * written, which a freeze may catch half-written.
 *
 * With "churn", every 256 writes a block of 16 pages of the second half is
 * also replaced: unmapped and mapped again at the same address, or dropped
 * with MADV_DONTNEED, then written (the layout changes under the dump).
 *
 * Once the trigger file exists (checked every 64 writes) it checks:
 *   pages   every page but the one in flight matches its gen[] entry
 *   writes  it wrote pages before the trigger
 *   rewrite every page rewritten once more reads back right (writes work)
 * then prints PASS or FAIL and exits.
 *
 * With "maps", every other page of the region is marked MADV_DONTDUMP
 * first: the region is one mapping per page (2 * 256 per MiB), and the
 * writes land in many of them (a pre-copy tracks each).
 *
 * With "threads", 12 more threads sleep 1 ms at a time all along (a root
 * of many threads; the check also asks that each still runs).
 *
 * usage: rt_precopy <trigger> <mib> [churn|maps|threads]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include "common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)

#define SLEEPERS 12
/* Rounds of each sleeping thread ("threads"). */
static volatile uint64_t rounds[SLEEPERS];

static void *sleeper(void *arg) {
  volatile uint64_t *mine = arg;
  for (;;) {
    sleep_ms(1);
    (*mine)++;
  }
  return NULL;
}

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w) {
  uint64_t x = p * 0x9e3779b97f4a7c15ull ^ (g << 20) ^ w;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 27);
}

static void fill(uint64_t *page, uint64_t p, uint64_t g) {
  for (uint64_t w = 0; w < WORDS; w++) page[w] = mix(p, g, w);
}

static long bad_pages(uint64_t *base, const uint32_t *gen, size_t pages, long skip, long n) {
  long bad = 0;
  for (size_t p = 0; p < pages; p++) {
    if ((long)p >= skip && (long)p < skip + n) continue;
    uint64_t *page = base + p * WORDS;
    for (uint64_t w = 0; w < WORDS; w++) {
      if (page[w] != mix(p, gen[p], w)) {
        bad++;
        break;
      }
    }
  }
  return bad;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_precopy <trigger> <mib> [churn|maps|threads]");
  const char *trigger = argv[1];
  int churn = argc > 3 && strcmp(argv[3], "churn") == 0;
  int maps = argc > 3 && strcmp(argv[3], "maps") == 0;
  int threads = argc > 3 && strcmp(argv[3], "threads") == 0;
  for (int i = 0; threads && i < SLEEPERS; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, sleeper, (void *)&rounds[i]) != 0) die("pthread_create");
  }
  size_t pages = (size_t)atol(argv[2]) * 256u;
  uint64_t *base = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
  if (base == MAP_FAILED) die("mmap");
  uint32_t *gen = calloc(pages, sizeof *gen);
  if (!gen) die("calloc");
  for (size_t p = 0; p < pages; p++) {
    gen[p] = 1;
    fill(base + p * WORDS, p, 1);
  }
  for (size_t p = 1; maps && p < pages; p += 2) {
    if (madvise(base + p * WORDS, PAGE, MADV_DONTDUMP) != 0) die("madvise dontdump");
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  print_ready("pid=%d region=%p pages=%zu", getpid(), (void *)base, pages);

  volatile long inflight = -1, inflight_n = 1;
  uint64_t seed = 12345, writes = 0;
  for (;;) {
    if (writes % 64 == 0) {
      if (access(trigger, F_OK) == 0) break;
      sleep_ms(1);
    }
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t p = (size_t)(seed >> 33) % (pages / 2);
    inflight = (long)p;
    fill(base + p * WORDS, p, gen[p] + 1);
    gen[p]++;
    inflight = -1;
    writes++;
    if (churn && writes % 256 == 0) {
      size_t first = pages / 2 + (size_t)(seed >> 40) % (pages / 2 - 16);
      uint64_t *at = base + first * WORDS;
      inflight_n = 16; /* the block is in flight as a whole */
      inflight = (long)first;
      if ((writes / 256) % 2) {
        if (mmap(at, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                 -1, 0) != at)
          die("mmap again");
      } else if (madvise(at, 16 * PAGE, MADV_DONTNEED) != 0) {
        die("madvise");
      }
      for (size_t p = first; p < first + 16; p++) fill(base + p * WORDS, p, ++gen[p]);
      inflight = -1;
      inflight_n = 1;
    }
  }
  long bad = bad_pages(base, gen, pages, inflight, inflight_n);
  check("pages", bad == 0, "%ld of %zu pages do not match their generation", bad, pages);
  check("writes", writes > 0, "no page written");
  for (size_t p = 0; p < pages; p++) fill(base + p * WORDS, p, ++gen[p]);
  bad = bad_pages(base, gen, pages, -1, 0);
  check("rewrite", bad == 0, "%ld pages wrong after rewriting them", bad);
  if (threads) {
    uint64_t before[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++) before[i] = rounds[i];
    sleep_ms(50);
    int stuck = 0;
    for (int i = 0; i < SLEEPERS; i++) stuck += rounds[i] == before[i];
    check("threads", stuck == 0, "%d of %d sleeping threads did not run", stuck, SLEEPERS);
  }
  return verdict();
}
