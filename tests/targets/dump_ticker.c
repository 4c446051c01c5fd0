/* CLI end-to-end target: polls the directory argv[1] every 20 ms.
 *   <dir>/ping exists  -> removes it, prints "pong <getpid()> <ticks>"
 *   <dir>/exit exists  -> prints "exiting <code>", exits with the number
 *                         written in that file
 * On SIGTERM it prints "got SIGTERM" and dies of SIGTERM (default action).
 * Prints "ready pid=<pid>" at start.
 *
 * usage: dump_ticker <dir>
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static volatile sig_atomic_t got_term;
static void on_term(int sig) {
  (void)sig;
  got_term = 1;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "dump_ticker <dir>");
  char ping[4096], exitp[4096];
  snprintf(ping, sizeof ping, "%s/ping", argv[1]);
  snprintf(exitp, sizeof exitp, "%s/exit", argv[1]);
  signal(SIGTERM, on_term);
  print_ready("pid=%d", getpid());
  for (unsigned long ticks = 0;; ticks++) {
    if (got_term) {
      printf("got SIGTERM\n");
      fflush(stdout);
      signal(SIGTERM, SIG_DFL);
      raise(SIGTERM);
    }
    if (access(ping, F_OK) == 0) {
      unlink(ping);
      printf("pong %d %lu\n", getpid(), ticks);
      fflush(stdout);
    }
    FILE *f = fopen(exitp, "r");
    if (f) {
      int code = 0;
      if (fscanf(f, "%d", &code) != 1) code = 99;
      fclose(f);
      printf("exiting %d\n", code);
      fflush(stdout);
      exit(code);
    }
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
  }
}
