/* Freeze target: a process that never stops changing its thread list and
 * its children. Two threads create short-lived threads in a loop (each new
 * thread creates one more before it ends), two threads fork children in a
 * loop (each child lives about a millisecond, sometimes forking a child of
 * its own, and is reaped by its parent), and 16 threads sleep. With the
 * argument "nofork" the forking threads are left out (one process only).
 * Prints "ready pid=<pid>" once everything runs; it runs until killed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static void *leaf(void *arg) {
  (void)arg;
  return NULL;
}

static void *inner(void *arg) {
  (void)arg;
  pthread_t t;
  if (pthread_create(&t, NULL, leaf, NULL) == 0) pthread_join(t, NULL);
  return NULL;
}

static void *thread_churn(void *arg) {
  (void)arg;
  for (;;) {
    pthread_t t;
    if (pthread_create(&t, NULL, inner, NULL) == 0) pthread_join(t, NULL);
  }
  return NULL;
}

static void *fork_churn(void *arg) {
  long n = (long)arg;
  for (unsigned i = 0;; i++) {
    pid_t c = fork();
    if (c == 0) {
      if ((i + n) % 3 == 0) {
        pid_t g = fork();
        if (g == 0) {
          usleep(500);
          _exit(0);
        }
        if (g > 0) waitpid(g, NULL, 0);
      }
      usleep(1000);
      _exit(0);
    }
    if (c > 0) waitpid(c, NULL, 0);
  }
  return NULL;
}

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  int forks = !(argc > 1 && strcmp(argv[1], "nofork") == 0);
  pthread_t t;
  for (int i = 0; i < 16; i++) pthread_create(&t, NULL, sleeper, NULL);
  for (long i = 0; i < 2; i++) {
    pthread_create(&t, NULL, thread_churn, NULL);
    if (forks) pthread_create(&t, NULL, fork_churn, (void *)i);
  }
  print_ready("pid=%d", getpid());
  for (;;) pause();
}
