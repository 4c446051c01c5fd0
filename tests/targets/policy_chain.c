/* A deterministic computation for the policy tests: a hash chain over a
 * 1 MiB table, where every step reads the table at a place chosen by the
 * previous step and writes the new hash back. Its progress lives only in
 * memory, so an interrupted run can only finish right if it was restored.
 *
 * usage: policy_chain STEPS
 * prints "started pid=N" at the start and "result=HEX steps=N" at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define WORDS (1u << 17) /* 1 MiB of 64-bit words */

static uint64_t table[WORDS];

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

int main(int argc, char **argv) {
  long steps = argc > 1 ? atol(argv[1]) : 100000000L;
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (uint32_t i = 0; i < WORDS; i++) table[i] = mix(i + 1);
  printf("started pid=%d\n", getpid());
  fflush(stdout);
  for (long i = 0; i < steps; i++) {
    uint64_t *slot = &table[h & (WORDS - 1)];
    h = mix(h ^ *slot ^ (uint64_t)i);
    *slot = h;
  }
  printf("result=%016llx steps=%ld\n", (unsigned long long)h, steps);
  return 0;
}
