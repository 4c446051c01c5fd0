/* Pre-copy chain target: memory moved by mremap between a pre-dump and the
 * final dump lands, with its (write-protected) pages, at an address where
 * the pre-dump saw other content. The final dump must not take the
 * parent's pages there.
 *
 * Two areas A and B of 16 pages, filled with different patterns; after
 * SIGUSR1 it moves A over B (mremap MREMAP_FIXED) and prints "moved".
 * Once the trigger file exists it checks:
 *   moved  the pages at B's address hold A's pattern
 *   gone   A's old address is unmapped
 * then prints PASS or FAIL and exits.
 *
 * usage: rt_premove <trigger>
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>

#include "common.h"

#define PAGES 16u
#define PAGE 4096u

static uint64_t word(unsigned area, unsigned page, unsigned w) {
  return ((uint64_t)area << 48) ^ ((uint64_t)page << 24) ^ (w * 0x9e3779b97f4a7c15ull);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_premove <trigger>");
  size_t len = PAGES * PAGE;
  uint64_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint64_t *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED || b == MAP_FAILED) die_err("mmap", errno);
  for (unsigned p = 0; p < PAGES; p++)
    for (unsigned w = 0; w < PAGE / 8; w++) {
      a[p * (PAGE / 8) + w] = word(1, p, w);
      b[p * (PAGE / 8) + w] = word(2, p, w);
    }
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  if (mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, b) == MAP_FAILED) die_err("mremap", errno);
  printf("moved\n");
  fflush(stdout);
  wait_trigger(argv[1]);
  long bad = 0;
  for (unsigned p = 0; p < PAGES; p++)
    for (unsigned w = 0; w < PAGE / 8; w++)
      if (b[p * (PAGE / 8) + w] != word(1, p, w)) {
        bad++;
        break;
      }
  check("moved", bad == 0, "%ld pages at B's address are not A's", bad);
  check("gone", msync(a, PAGE, MS_ASYNC) != 0 && errno == ENOMEM, "A's old address is still mapped");
  return verdict();
}
