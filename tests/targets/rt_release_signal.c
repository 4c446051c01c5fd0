/* Target for a signal that reaches a restored thread before it is back in
 * the call the freeze interrupted (engine/task/syscalls.ts): the main
 * thread waits in the call of <mode>, with a SIGUSR1 handler that counts:
 *
 *   read          read of an empty pipe (ERESTARTSYS at a stop)
 *   read-restart  the same, the handler installed with SA_RESTART
 *   epoll         epoll_wait on the pipe, no timeout (EINTR at a stop)
 *   epoll-cont    the same; the test sends SIGCONT alone: the wait ends in
 *                 EINTR all the same (the process's own stop ended it)
 *   nanosleep     an 8 s nanosleep (glibc: clock_nanosleep; ERESTART_RESTARTBLOCK at a stop)
 *   futex         FUTEX_WAIT with no timeout (ERESTARTSYS at a stop)
 *
 * A second thread, SIGUSR1 blocked from its birth, writes a byte into the pipe (and wakes
 * the futex) once the trigger file appears.
 *
 * The test stops the process (SIGSTOP), dumps and restores it stopped (or
 * not, for the kernel's own behaviour), sends SIGUSR1, then SIGCONT. The
 * kernel runs the handler, then ends the call in EINTR, or, with
 * SA_RESTART, issues it again: it returns the byte once the trigger file
 * appears. Check "call": the call ended as the mode expects, after exactly
 * one SIGUSR1.
 *
 * usage: rt_release_signal <trigger> <mode>
 * prints: ready pid=<pid>, then its report once the call returned
 */
#define _GNU_SOURCE
#include "common.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>

static volatile sig_atomic_t usr1_count;
static int pipefd[2];
static uint32_t futex_word;
static const char *trigger;

static void on_usr1(int sig) {
  (void)sig;
  usr1_count++;
}

static void *waker(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  if (write(pipefd[1], "x", 1) != 1) die("write");
  __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_release_signal <trigger> read|read-restart|epoll|epoll-cont|nanosleep|futex");
  trigger = argv[1];
  const char *mode = argv[2];
  int restart = strcmp(mode, "read-restart") == 0;
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0};
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, NULL) != 0) die("sigaction");
  if (pipe(pipefd) != 0) die("pipe");
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN}, out;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &e) != 0) die("epoll");
  /* The waker is born with SIGUSR1 blocked (created with it blocked, so
   * that it never takes the signal, even before it first runs); then the
   * main thread unblocks it for itself. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  pthread_t t;
  if (pthread_create(&t, NULL, waker, NULL) != 0) die("pthread_create");
  pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
  print_ready("pid=%d", getpid());
  long r;
  char byte = 0;
  if (strncmp(mode, "read", 4) == 0) {
    r = read(pipefd[0], &byte, 1);
  } else if (strncmp(mode, "epoll", 5) == 0) {
    r = epoll_wait(ep, &out, 1, -1);
  } else if (strcmp(mode, "nanosleep") == 0) {
    struct timespec ts = {8, 0};
    r = nanosleep(&ts, NULL);
  } else {
    r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  }
  int err = r < 0 ? errno : 0;
  if (restart) {
    check("call", r == 1 && byte == 'x' && usr1_count == 1,
          "read returned %ld (%s), byte %d, %d SIGUSR1", r, strerror(err), byte, (int)usr1_count);
  } else {
    int want = strcmp(mode, "epoll-cont") == 0 ? 0 : 1;
    check("call", r == -1 && err == EINTR && usr1_count == want,
          "returned %ld (%s) after %d SIGUSR1", r, strerror(err), (int)usr1_count);
  }
  return verdict();
}
