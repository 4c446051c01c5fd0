/* Target for signals arriving while a freeze seizes the threads: two
 * threads spin beside the main one, a SIGRTMIN+3 handler counts every signal (real-time
 * signals are queued, never merged, so each one sent must be counted
 * once). With "send <pid> <count>" it is the sender instead: it queues
 * <count> SIGRTMIN+3 to <pid>, one every 25 us, then prints "sent <count>".
 *
 * usage: rt_sigflood <trigger-path>   (prints "ready pid=<pid>"; once the
 *          trigger exists, waits until no signal came for 200 ms, then
 *          prints "received <n>")
 *        rt_sigflood send <pid> <count>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

static atomic_long received;

static void on_signal(int sig) {
  (void)sig;
  atomic_fetch_add(&received, 1);
}

static void *spin(void *arg) {
  (void)arg;
  for (volatile unsigned long i = 0;; i++) {
  }
  return NULL;
}

/* Nanoseconds of CLOCK_MONOTONIC. */
static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One signal every 25 us, spinning in between (a steady stream: one may come
 * at any moment of a freeze, and no more pile up in a freeze than its restore
 * program can carry). */
static int send_signals(pid_t pid, long count) {
  for (long i = 0; i < count; i++) {
    /* sigqueue, not kill: a real-time signal sent by kill() while the user's
     * queued-signal limit is full (other processes' floods) is set pending
     * without a queue entry, merged with the next, and counts as lost here;
     * sigqueue() fails with EAGAIN instead, and is tried again. */
    while (sigqueue(pid, SIGRTMIN + 3, (union sigval){.sival_int = 0}) != 0) {
      if (errno != EAGAIN) die("sigqueue");
      sleep_ms(1);
    }
    for (long long until = now_ns() + 25000; now_ns() < until;) {
    }
  }
  printf("sent %ld\n", count);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 4 && strcmp(argv[1], "send") == 0) {
    return send_signals((pid_t)atoi(argv[2]), atol(argv[3]));
  }
  need_args(argc, 1, "rt_sigflood <trigger-path> | rt_sigflood send <pid> <count>");
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGRTMIN + 3, &sa, NULL) != 0) die("sigaction");
  for (int i = 0; i < 2; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, spin, NULL) != 0) die("pthread_create");
  }
  print_ready("pid=%d", getpid());
  /* Not wait_trigger(): each signal cuts its sleep short, which it counts as a round. */
  for (long long deadline = now_ns() + 120000000000LL; access(argv[1], F_OK) != 0;) {
    if (now_ns() > deadline) {
      printf("timed out waiting for %s\nFAIL\n", argv[1]);
      return 3;
    }
    sleep_ms(20);
  }
  for (long last = -1; last != atomic_load(&received);) {
    last = atomic_load(&received);
    sleep_ms(200);
  }
  printf("received %ld\n", atomic_load(&received));
  return 0;
}
