/* Helpers shared by the C test targets in tests/targets/: the self-check
 * report the tests parse ("check <name> ok|FAIL <detail>" lines, then PASS
 * or FAIL), the "ready ..." line, setup failures, usage errors, and the two
 * ways a target waits for the test: a trigger file appearing, or SIGUSR1.
 *
 * Everything is static, so each target has its own copy; a target uses
 * what it needs. tests/helpers/targets.ts rebuilds every target when this
 * file changes.
 */
#ifndef CRYO_TEST_TARGETS_COMMON_H
#define CRYO_TEST_TARGETS_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* check() is printf-checked; a check that cannot fail may give "" as its detail. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

/* How many checks failed so far. */
__attribute__((unused)) static int failures;

/* Prints "check <name> ok", or "check <name> FAIL <detail>" (detail from
 * fmt) and counts a failure. */
__attribute__((format(printf, 3, 4)))
static inline void check(const char *name, int ok, const char *fmt, ...) {
  if (ok) {
    printf("check %s ok\n", name);
  } else {
    va_list ap;
    printf("check %s FAIL ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    failures++;
  }
  fflush(stdout);
}

/* Prints the verdict of all checks, PASS or FAIL; returns the exit code (0 or 1). */
static inline int verdict(void) {
  printf("%s\n", failures ? "FAIL" : "PASS");
  fflush(stdout);
  return failures ? 1 : 0;
}

/* Prints the line "ready <fmt...>" the test waits for. */
__attribute__((format(printf, 1, 2)))
static inline void print_ready(const char *fmt, ...) {
  va_list ap;
  printf("ready ");
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

/* Reports that setting up `what` failed with error `err`, then exits 2. */
__attribute__((noreturn))
static inline void die_err(const char *what, int err) {
  printf("setup failed: %s: %s\nFAIL\n", what, strerror(err));
  fflush(stdout);
  exit(2);
}

/* Reports that setting up `what` failed with the current errno, then exits 2. */
__attribute__((noreturn)) static inline void die(const char *what) { die_err(what, errno); }

/* Exits 2 with "usage: <usage>" on stderr unless there are at least `n` arguments. */
static inline void need_args(int argc, int n, const char *usage) {
  if (argc - 1 >= n) return;
  fprintf(stderr, "usage: %s\n", usage);
  exit(2);
}

/* Polling rounds of the last wait_trigger(), and how many of its sleeps a
 * signal cut short (EINTR) so far. */
__attribute__((unused)) static int trigger_rounds, trigger_eintr;

/* Polls every 20 ms until the file `path` exists; after two minutes prints
 * FAIL and exits 3. */
static inline void wait_trigger(const char *path) {
  struct timespec ts = {0, 20 * 1000 * 1000};
  for (trigger_rounds = 0; access(path, F_OK) != 0; trigger_rounds++) {
    if (trigger_rounds > 6000) {
      printf("timed out waiting for %s\nFAIL\n", path);
      fflush(stdout);
      exit(3);
    }
    if (nanosleep(&ts, NULL) != 0 && errno == EINTR) trigger_eintr++; /* poll again */
  }
}

__attribute__((unused)) static volatile sig_atomic_t usr1_arrived;

__attribute__((unused)) static void on_usr1_arrived(int sig) {
  (void)sig;
  usr1_arrived = 1;
}

/* Blocks SIGUSR1 and installs the handler wait_usr1() relies on; stores
 * the mask to wait with in `old`. */
static inline void arm_usr1(sigset_t *old) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, old);
  signal(SIGUSR1, on_usr1_arrived);
}

/* Waits in sigsuspend (with the mask `old` from arm_usr1) until SIGUSR1 came. */
static inline void wait_usr1(const sigset_t *old) {
  while (!usr1_arrived) sigsuspend(old);
}

/* Sleeps `ms` milliseconds, going on after signal handlers. */
static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The calling thread's id. */
static inline pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

#endif
