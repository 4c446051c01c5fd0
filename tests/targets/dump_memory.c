/* Dump target with one big private anonymous region (transparent huge
 * pages off) of argv[1] MiB:
 *
 *   "all"     every page filled: word at address a = a*K ^ SEED
 *   "sparse"  only a few pages touched, each filled with its page index
 *             (low byte, + 1): pages 0, 1, 2, 1000, half, last
 *
 * Prints "ready pid=<pid> addr=<region> touched=<n>" and waits in
 * sigsuspend for SIGUSR1, then checks the whole region still holds what
 * it wrote (untouched pages zero) and prints PASS (exit 0) or FAIL.
 *
 * usage: dump_memory <MiB> all|sparse
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define PAGE 4096
#define K 0x9e3779b97f4a7c15ull
#define SEED 0x5eed5eed12345678ull

static int is_touched(size_t page, size_t pages) {
  return page == 0 || page == 1 || page == 2 || page == 1000 || page == pages / 2 ||
         page == pages - 1;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "dump_memory <MiB> all|sparse");
  size_t size = (size_t)atol(argv[1]) << 20;
  size_t pages = size / PAGE;
  int all = strcmp(argv[2], "all") == 0;
  unsigned char *region = mmap(NULL, size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (region == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  madvise(region, size, MADV_NOHUGEPAGE);
  size_t touched = 0;
  if (all) {
    uint64_t *w = (uint64_t *)region;
    for (size_t i = 0; i < size / 8; i++) w[i] = ((uint64_t)(uintptr_t)&w[i] * K) ^ SEED;
    touched = pages;
  } else {
    for (size_t p = 0; p < pages; p++) {
      if (is_touched(p, pages)) {
        memset(region + p * PAGE, (int)((p + 1) & 0xff), PAGE);
        touched++;
      }
    }
  }
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d addr=%p touched=%zu", getpid(), (void *)region, touched);
  wait_usr1(&old);

  size_t bad = 0;
  if (all) {
    uint64_t *w = (uint64_t *)region;
    for (size_t i = 0; i < size / 8; i++) {
      if (w[i] != (((uint64_t)(uintptr_t)&w[i] * K) ^ SEED)) bad++;
    }
  } else {
    for (size_t p = 0; p < pages; p++) {
      unsigned char v = is_touched(p, pages) ? (unsigned char)((p + 1) & 0xff) : 0;
      for (size_t i = 0; i < PAGE; i++) {
        if (region[p * PAGE + i] != v) {
          bad++;
          break;
        }
      }
    }
  }
  printf(bad ? "FAIL %zu differ\n" : "PASS\n", bad);
  fflush(stdout);
  return bad ? 1 : 0;
}
