/* A small service for the policy tests: it ticks every 20 ms and prints
 * "tick N" each time; its tick count lives only in memory.
 *
 * usage: policy_service [EXIT_AT_TICK EXIT_CODE]
 * - prints "ready pid=N" first;
 * - on SIGUSR2 prints "usr2 at tick N";
 * - on SIGTERM prints "terminated at tick N" and exits 0;
 * - with EXIT_AT_TICK, exits with EXIT_CODE when that tick is reached. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr2, got_term;

static void on_usr2(int sig) { (void)sig; got_usr2 = 1; }
static void on_term(int sig) { (void)sig; got_term = 1; }

int main(int argc, char **argv) {
  long exit_at = argc > 2 ? atol(argv[1]) : 0;
  int exit_code = argc > 2 ? atoi(argv[2]) : 0;
  struct sigaction sa = {0};
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready pid=%d\n", getpid());
  for (long tick = 1;; tick++) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    printf("tick %ld\n", tick);
    if (got_usr2) {
      got_usr2 = 0;
      printf("usr2 at tick %ld\n", tick);
    }
    if (got_term) {
      printf("terminated at tick %ld\n", tick);
      return 0;
    }
    if (exit_at && tick >= exit_at) {
      printf("exiting with %d at tick %ld\n", exit_code, tick);
      return exit_code;
    }
  }
}
