/* Round trip of large page runs, which the restore loads with a helper
 * thread (engine/restore/page_loads.ts): a 24 MiB read-write region, a
 * 20 MiB region made read-only after it was filled, and a 256 MiB
 * reservation with 1 MiB touched every 8 MiB. Each page holds a pattern
 * of its region, its index and a seed; after the trigger file appears
 * every page is checked, the untouched parts of the reservation must read
 * zero, and the process must have exactly one thread (no helper left).
 *
 * usage: rt_pages <trigger-file> [read-write-MiB (default 24)]
 */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <stdint.h>
#include <sys/mman.h>

#define MiB (1024UL * 1024UL)
#define PAGE 4096UL

static uint64_t word_of(int region, size_t page) {
  return 0x9e3779b97f4a7c15ULL * (uint64_t)(region + 1) ^ ((uint64_t)page << 17) ^ 0x5eed;
}

static void fill(uint8_t *p, size_t len, int region) {
  for (size_t page = 0; page < len / PAGE; page++) {
    uint64_t *w = (uint64_t *)(p + page * PAGE);
    for (size_t i = 0; i < PAGE / 8; i++) w[i] = word_of(region, page) + i;
  }
}

/* The first page of [p, p+len) whose content differs, or -1. */
static long bad_page(const uint8_t *p, size_t len, int region) {
  for (size_t page = 0; page < len / PAGE; page++) {
    const uint64_t *w = (const uint64_t *)(p + page * PAGE);
    for (size_t i = 0; i < PAGE / 8; i++) {
      if (w[i] != word_of(region, page) + i) return (long)page;
    }
  }
  return -1;
}

static int threads(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_pages <trigger-file>");
  size_t rw_len = (argc > 2 ? strtoul(argv[2], NULL, 10) : 24) * MiB, ro_len = 20 * MiB, sparse_len = 256 * MiB;
  uint8_t *rw = mmap(NULL, rw_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *ro = mmap(NULL, ro_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *sp = mmap(NULL, sparse_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (rw == MAP_FAILED || ro == MAP_FAILED || sp == MAP_FAILED) die("mmap");
  fill(rw, rw_len, 0);
  fill(ro, ro_len, 1);
  if (mprotect(ro, ro_len, PROT_READ) != 0) die("mprotect");
  for (size_t at = 0; at < sparse_len; at += 8 * MiB) fill(sp + at, MiB, 2 + (int)(at / (8 * MiB)));
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  long bad = bad_page(rw, rw_len, 0);
  check("rw-region", bad < 0, "page %ld differs", bad);
  bad = bad_page(ro, ro_len, 1);
  check("ro-region", bad < 0, "page %ld differs", bad);
  long sparse_bad = -1, zero_bad = -1;
  for (size_t at = 0; at < sparse_len; at += 8 * MiB) {
    if (sparse_bad < 0 && bad_page(sp + at, MiB, 2 + (int)(at / (8 * MiB))) >= 0) {
      sparse_bad = (long)(at / MiB);
    }
    for (size_t z = at + MiB; z < at + 8 * MiB && zero_bad < 0; z += PAGE) {
      const uint64_t *w = (const uint64_t *)(sp + z);
      for (size_t i = 0; i < PAGE / 8; i++) {
        if (w[i] != 0) {
          zero_bad = (long)z;
          break;
        }
      }
    }
  }
  check("sparse-touched", sparse_bad < 0, "the MiB at %ld MiB differs", sparse_bad);
  check("sparse-untouched-zero", zero_bad < 0, "byte %ld is not zero", zero_bad);
  int n = threads();
  check("one-thread", n == 1, "%d threads", n);
  char perms[8] = "";
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[512];
  while (maps && fgets(line, sizeof line, maps)) {
    unsigned long lo;
    if (sscanf(line, "%lx-%*x %7s", &lo, perms) == 2 && lo == (unsigned long)ro) break;
    perms[0] = 0;
  }
  if (maps) fclose(maps);
  check("ro-region-perms", strcmp(perms, "r--p") == 0, "perms \"%s\"", perms);
  return verdict();
}
