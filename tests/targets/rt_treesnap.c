/* A tree whose every process writes its memory all the time and shares
 * pages copy-on-write with the others (tests/tree_snapshot_test.ts: a dump
 * that reads each process from a fork snapshot of its own must save each
 * as of the one freeze, and keep the sharing).
 *
 * The root maps a region of <mib> MiB (private anonymous, no huge pages)
 * and writes every page (generation 1), then forks <children> children
 * that do not exec. Each process (the root too) then rewrites every page of
 * the first half of its copy with its own salt (generation 2) and goes on
 * rewriting random pages of that half, bumping gen[p] (its own copy of the
 * array) after each page; `inflight` names the page being written. The
 * second half is written by none of them after the fork: one page frame
 * for all, mapped by several processes.
 *
 * With "wipe", the last child also maps 1 MiB with MADV_WIPEONFORK (a fork
 * would not copy it: that child's snapshot is refused), written once.
 * With "own", each child maps a region of its own over its copy right after
 * the fork (the same address as the root's, as the bench's tree: nothing
 * shared) and writes every page (generation 1); no "shared" check.
 *
 * Once the trigger file exists (checked every 64 writes), each process
 * checks (the children's names start with "child<i>-"):
 *   pages   every page but the one in flight matches its generation
 *   shared  every page of the second half is present and mapped by another
 *           process too (pagemap bit 56 clear: the sharing kept)
 *   writes  it wrote pages before the trigger
 *   rewrite the first half rewritten once more reads back right
 *   wipe    ("wipe", last child) its area holds what it wrote
 * A child exits with its failure count; the root reports each child's exit
 * ("children"), then PASS or FAIL.
 *
 * usage: rt_treesnap <trigger> <mib> <children> [wipe|own]
 * Prints "ready pid=P children=C1,C2,... region=0x... pages=N".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define MAX_CHILDREN 8
#define PM_PRESENT (1ull << 63)
#define PM_EXCLUSIVE (1ull << 56)

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w) {
  uint64_t x = p * 0x9e3779b97f4a7c15ull ^ (g << 20) ^ w;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 27);
}

/* Page p's words at generation g, written by the process of salt s (0: the root before the fork). */
static void fill(uint64_t *page, uint64_t p, uint64_t g, uint64_t s) {
  for (uint64_t w = 0; w < WORDS; w++) page[w] = mix(p, g, w) ^ s;
}

static char prefix[32];

/* check() with this process's prefix in front of the name. */
#define CHECK(name, ok, ...)                                   \
  do {                                                         \
    char full_[64];                                            \
    snprintf(full_, sizeof full_, "%s%s", prefix, name);       \
    check(full_, ok, __VA_ARGS__);                             \
  } while (0)

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_treesnap <trigger> <mib> <children> [wipe|own]");
  const char *trigger = argv[1];
  size_t pages = (size_t)atol(argv[2]) * 256u, half = pages / 2;
  int nchildren = atoi(argv[3]);
  int wipe_mode = argc > 4 && strcmp(argv[4], "wipe") == 0;
  int own_mode = argc > 4 && strcmp(argv[4], "own") == 0;
  if (nchildren < 1 || nchildren > MAX_CHILDREN) die_err("children", EINVAL);
  uint64_t *base = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
  if (base == MAP_FAILED) die("mmap");
  if (madvise(base, pages * PAGE, MADV_NOHUGEPAGE) != 0) die("madvise");
  uint32_t *gen = calloc(pages, sizeof *gen);
  if (!gen) die("calloc");
  for (size_t p = 0; p < pages; p++) {
    gen[p] = 1;
    fill(base + p * WORDS, p, 1, 0);
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ready[2];
  if (pipe(ready) != 0) die("pipe");
  pid_t kids[MAX_CHILDREN];
  int me = 0; /* 0: the root, i: child i */
  for (int i = 1; i <= nchildren; i++) {
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
      me = i;
      break;
    }
    kids[i - 1] = c;
  }
  if (me) snprintf(prefix, sizeof prefix, "child%d-", me);
  if (own_mode && me) {
    if (mmap(base, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) != base) {
      die("mmap own");
    }
    if (madvise(base, pages * PAGE, MADV_NOHUGEPAGE) != 0) die("madvise own");
    for (size_t p = 0; p < pages; p++) {
      gen[p] = 1;
      fill(base + p * WORDS, p, 1, 0);
    }
  }
  uint64_t salt = (uint64_t)me * 0x5851f42d4c957f2dull + 7;
  for (size_t p = 0; p < half; p++) fill(base + p * WORDS, p, ++gen[p], salt);
  uint8_t *wipe = NULL;
  if (wipe_mode && me == nchildren) {
    wipe = mmap(NULL, 256 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (wipe == MAP_FAILED) die("mmap wipe");
    if (madvise(wipe, 256 * PAGE, MADV_WIPEONFORK) != 0) die("madvise wipeonfork");
    for (size_t i = 0; i < 256 * PAGE; i += 512) wipe[i] = (uint8_t)(i / 512 + 1);
  }
  if (me) {
    if (write(ready[1], "r", 1) != 1) die("write ready");
  } else {
    char b;
    for (int i = 0; i < nchildren; i++) {
      if (read(ready[0], &b, 1) != 1) die("read ready");
    }
    char list[16 * MAX_CHILDREN] = "";
    for (int i = 0; i < nchildren; i++) {
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", kids[i]);
    }
    print_ready("pid=%d children=%s region=%p pages=%zu", getpid(), list, (void *)base, pages);
  }
  close(ready[0]);
  close(ready[1]);

  volatile long inflight = -1;
  uint64_t seed = 12345 + (uint64_t)me * 977, writes = 0;
  for (;;) {
    if (writes % 64 == 0) {
      if (access(trigger, F_OK) == 0) break;
      sleep_ms(1);
    }
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t p = (size_t)(seed >> 33) % half;
    inflight = (long)p;
    fill(base + p * WORDS, p, gen[p] + 1, salt);
    gen[p]++;
    inflight = -1;
    writes++;
  }
  long bad = 0;
  for (size_t p = 0; p < pages; p++) {
    if ((long)p == inflight) continue;
    uint64_t s = p < half ? salt : 0;
    for (uint64_t w = 0; w < WORDS; w++) {
      if (base[p * WORDS + w] != (mix(p, gen[p], w) ^ s)) {
        bad++;
        break;
      }
    }
  }
  CHECK("pages", bad == 0, "%ld of %zu pages do not match their generation", bad, pages);
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) die("open pagemap");
  uint64_t *entries = malloc((pages - half) * sizeof *entries);
  if (!entries) die("malloc");
  size_t want = (pages - half) * sizeof *entries;
  off_t at = (off_t)((uintptr_t)(base + half * WORDS) / PAGE * sizeof *entries);
  long own = 0;
  if (pread(fd, entries, want, at) != (ssize_t)want) die("pread pagemap");
  close(fd);
  for (size_t i = 0; i < pages - half; i++) {
    if ((entries[i] & PM_PRESENT) == 0 || (entries[i] & PM_EXCLUSIVE) != 0) own++;
  }
  if (own_mode) own = 0; /* nothing shared on purpose */
  CHECK("shared", own == 0, "%ld of %zu pages of the second half not shared", own, pages - half);
  CHECK("writes", writes > 0, "no page written");
  for (size_t p = 0; p < half; p++) fill(base + p * WORDS, p, ++gen[p], salt);
  bad = 0;
  for (size_t p = 0; p < half; p++) {
    for (uint64_t w = 0; w < WORDS; w++) {
      if (base[p * WORDS + w] != (mix(p, gen[p], w) ^ salt)) {
        bad++;
        break;
      }
    }
  }
  CHECK("rewrite", bad == 0, "%ld pages wrong after rewriting them", bad);
  if (wipe) {
    long wrong = 0;
    for (size_t i = 0; i < 256 * PAGE; i += 512) wrong += wipe[i] != (uint8_t)(i / 512 + 1);
    CHECK("wipe", wrong == 0, "%ld bytes of the MADV_WIPEONFORK area wrong", wrong);
  }
  if (me) _exit(failures);
  for (int i = 0; i < nchildren; i++) {
    int st = 0;
    pid_t r = waitpid(kids[i], &st, 0);
    check("children", r == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "child %d: waitpid %d, status %d", (int)kids[i], (int)r, st);
  }
  return verdict();
}
