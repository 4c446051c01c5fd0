/* Near-zero downtime benchmark workload (scripts/bench/nearzero.ts,
 * predump.ts, lazy.ts, migration.ts): <MiB> of private anonymous memory,
 * every page written at start, then pages rewritten at a fixed rate of
 * <rate> MiB/s of running time (random pages, in 1 ms slices). Page p
 * holds words that are a function of (p, gen[p]); SIGUSR1 makes it check
 * every page and print "verify ok" or "verify FAIL <pages>".
 * Heartbeat (as scripts/bench/workload.c): whenever two slices are further
 * apart than 5 ms (the process was stopped: frozen by a dump, or dead until
 * a restore), it prints "gap <from_ns> <to_ns>" in CLOCK_REALTIME
 * nanoseconds; the first such line after a restore says when the restored
 * process ran again, and its <from_ns> is the last beat before the freeze.
 *
 * usage: dirtier <MiB> <rate-MiB/s>
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8UL)

static volatile sig_atomic_t verify_asked;
static void on_usr1(int sig) {
  (void)sig;
  verify_asked = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t p, uint64_t g, uint64_t w) {
  uint64_t x = p * 0x9e3779b97f4a7c15ull ^ (g << 20) ^ w;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 27);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dirtier <MiB> <rate-MiB/s>\n");
    return 2;
  }
  size_t pages = (size_t)atol(argv[1]) * 256u;
  double rate = atof(argv[2]);
  uint64_t *base = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint32_t *gen = calloc(pages, sizeof *gen);
  if (base == MAP_FAILED || !gen) return 1;
  for (size_t p = 0; p < pages; p++)
    for (uint64_t w = 0; w < WORDS; w++) base[p * WORDS + w] = mix(p, 0, w);
  signal(SIGUSR1, on_usr1);
  printf("ready pid=%d pages=%zu\n", getpid(), pages);
  fflush(stdout);
  uint64_t seed = 88172645463325252ull;
  double owed = 0;
  size_t per_slice = 0;
  uint64_t last = now_ns();
  for (;;) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
    uint64_t t = now_ns();
    if (t - last > 5 * 1000 * 1000) {
      printf("gap %llu %llu\n", (unsigned long long)last, (unsigned long long)t);
      fflush(stdout);
    }
    /* The rate is per second of running time: a stop (a gap) owes nothing. */
    double dt = (double)(t - last) / 1e9;
    if (dt > 0.005) dt = 0.001;
    last = t;
    owed += rate * 256.0 * dt;
    per_slice = (size_t)owed;
    owed -= (double)per_slice;
    for (size_t i = 0; i < per_slice; i++) {
      seed ^= seed << 13;
      seed ^= seed >> 7;
      seed ^= seed << 17;
      size_t p = seed % pages;
      uint32_t g = gen[p] + 1;
      for (uint64_t w = 0; w < WORDS; w++) base[p * WORDS + w] = mix(p, g, w);
      gen[p] = g;
    }
    if (verify_asked) {
      verify_asked = 0;
      size_t bad = 0;
      for (size_t p = 0; p < pages; p++)
        for (uint64_t w = 0; w < WORDS; w++)
          if (base[p * WORDS + w] != mix(p, gen[p], w)) {
            bad++;
            break;
          }
      if (bad) printf("verify FAIL %zu\n", bad);
      else printf("verify ok\n");
      fflush(stdout);
      last = now_ns();
    }
  }
}
