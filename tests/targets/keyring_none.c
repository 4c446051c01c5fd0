/* Target for tests/dump_keyring_test.ts: a process that never touched
 * keyrings, whose real uid is one that owns no keys (the test picks an
 * unused uid: its line is absent from /proc/key-users). It takes real uid
 * N (effective and saved uid stay 0, to read the trigger), checks that
 * /proc/key-users has no line for N, prints ready, waits for the trigger
 * file and checks again: a dump that asked the kernel for its session
 * keyring (or the user's session keyring) made the kernel create N's user
 * keyrings, and install one in its cred (security/keys/process_keys.c
 * lookup_user_key). It never asks itself: that would install one.
 *
 * With a thread count, that many more threads (made after the uid change,
 * so all share the main thread's struct cred) wait until the process ends.
 *
 * usage: keyring_none <trigger-path> <uid> [threads]
 * Prints "ready pid=N".
 */
#define _GNU_SOURCE
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* Whether /proc/key-users has a line for `uid` (-1: unreadable). */
static int has_line(unsigned uid) {
  FILE *f = fopen("/proc/key-users", "r");
  if (!f) return -1;
  char line[256];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned u;
    if (sscanf(line, " %u:", &u) == 1 && u == uid) found = 1;
  }
  fclose(f);
  return found;
}

static void *idle(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "keyring_none <trigger-path> <uid>");
  unsigned uid = (unsigned)strtoul(argv[2], NULL, 10);
  if (syscall(SYS_setresuid, uid, 0, 0) != 0) die_err("setresuid", errno);
  int before = has_line(uid);
  int threads = argc > 3 ? atoi(argv[3]) : 0;
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    int err = pthread_create(&t, NULL, idle, NULL);
    if (err) die_err("pthread_create", err);
  }
  print_ready("pid=%d", getpid());
  /* Not wait_trigger(): access() checks the real uid, which may not search the test's directory. */
  struct stat st;
  for (int i = 0; stat(argv[1], &st) != 0; i++) {
    if (i > 6000) die_err("the trigger never came", ETIMEDOUT);
    sleep_ms(10);
  }
  check("keyusers_before", before == 0, "uid %u in /proc/key-users at start (%d)", uid, before);
  int after = has_line(uid);
  check("keyusers_after", after == 0, "uid %u in /proc/key-users after the dump (%d)", uid, after);
  return verdict();
}
