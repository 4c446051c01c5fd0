/* Many small private mappings (tests/fork_snapshot_test.ts): COUNT
 * anonymous mappings of PAGES pages each, side by side, every odd one made
 * read-only so that no two merge, every page filled with words that are a
 * function of its mapping and index. A dump left running reads them from a
 * fork snapshot where its rule says so (engine/dump/fork_snapshot.ts); the
 * original after the dump and the restored process check every word, and
 * that the range is still COUNT mappings of the same permissions.
 *
 * usage: rt_manymaps <trigger-file> <count> <pages>
 * Prints "ready pid=N", waits for the trigger file, checks, prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include "common.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096UL

static uint64_t word(uint64_t map, uint64_t i) { return (map << 40) ^ (i * 0x9e3779b97f4a7c15ULL) ^ 0x5a; }

/* Mappings found in [lo, hi) with the permissions each should have; -1 if maps is unreadable. */
static long mappings_as_made(uintptr_t lo, uintptr_t hi, size_t bytes_each) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[512];
  long n = 0, wrong = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) != 3) continue;
    if (e <= lo || s >= hi) continue;
    size_t i = (s - lo) / bytes_each;
    int ro = i % 2 == 1;
    if (e - s != bytes_each || strcmp(perms, ro ? "r--p" : "rw-p") != 0) wrong++;
    n++;
  }
  fclose(f);
  return wrong ? -wrong - 1 : n;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_manymaps <trigger-file> <count> <pages>");
  size_t count = strtoul(argv[2], NULL, 10), pages = strtoul(argv[3], NULL, 10);
  size_t each = pages * PAGE, bytes = count * each;
  uint8_t *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) die("mmap");
  for (size_t m = 0; m < count; m++) {
    uint64_t *p = (uint64_t *)(base + m * each);
    for (size_t i = 0; i < each / 8; i++) p[i] = word(m, i);
  }
  for (size_t m = 1; m < count; m += 2) {
    if (mprotect(base + m * each, each, PROT_READ) != 0) die("mprotect");
  }
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  size_t bad = 0;
  for (size_t m = 0; m < count; m++) {
    const uint64_t *p = (const uint64_t *)(base + m * each);
    for (size_t i = 0; i < each / 8; i++) bad += p[i] != word(m, i);
  }
  check("pages", bad == 0, "%zu words wrong", bad);
  long n = mappings_as_made((uintptr_t)base, (uintptr_t)(base + bytes), each);
  check("mappings", n == (long)count, "%ld mappings as made (of %zu; negative: -1 - wrong ones)", n, count);
  return verdict();
}
