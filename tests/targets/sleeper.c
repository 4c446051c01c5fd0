/* Prints its pid, then sleeps in nanosleep inside a known function; after
 * waking it checks that the elapsed time is right and reports. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>

__attribute__((noinline)) void sleep_in_here(int secs) {
  struct timespec ts = {secs, 0};
  while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char **argv) {
  int secs = argc > 1 ? atoi(argv[1]) : 2;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  printf("ready pid=%d fn=%p\n", getpid(), (void *)sleep_in_here);
  fflush(stdout);
  sleep_in_here(secs);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double el = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  printf("elapsed=%.2f %s\n", el, el >= secs - 0.05 && el < secs + 1.5 ? "PASS" : "FAIL");
  return 0;
}
