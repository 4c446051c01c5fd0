/* Fork snapshot target (tests/fork_snapshot_test.ts): 16 MiB of private
 * anonymous memory and 1 MiB of MAP_SHARED|MAP_ANONYMOUS memory, each page
 * filled with words that are a function of its region and index. A dump
 * left running must not read the shared region from a fork (the target
 * writes through it), so it copies frozen; the restored process checks
 * both regions.
 *
 * usage: rt_forksnap <trigger-file>
 * Prints "ready pid=N", waits for the trigger file, checks, prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define PRIVATE_BYTES (16UL << 20)
#define SHARED_BYTES (1UL << 20)

static uint64_t word(uint64_t region, uint64_t i) { return (region << 56) ^ (i * 0x9e3779b97f4a7c15ULL); }

static void fill(uint64_t *p, size_t bytes, uint64_t region) {
  for (size_t i = 0; i < bytes / 8; i++) p[i] = word(region, i);
}

static size_t wrong(const uint64_t *p, size_t bytes, uint64_t region) {
  size_t bad = 0;
  for (size_t i = 0; i < bytes / 8; i++) bad += p[i] != word(region, i);
  return bad;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_forksnap <trigger-file>");
  uint64_t *priv = mmap(NULL, PRIVATE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (priv == MAP_FAILED) die("mmap private");
  uint64_t *shared = mmap(NULL, SHARED_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap shared");
  fill(priv, PRIVATE_BYTES, 1);
  fill(shared, SHARED_BYTES, 2);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  size_t a = wrong(priv, PRIVATE_BYTES, 1), b = wrong(shared, SHARED_BYTES, 2);
  check("private", a == 0, "%zu words wrong", a);
  check("shared", b == 0, "%zu words wrong", b);
  return verdict();
}
