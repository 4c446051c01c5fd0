/* Target for waits a stop ends with EINTR (engine/task/eintr.ts): the
 * main thread waits in epoll_wait (mode "epoll_wait"), epoll_pwait with no
 * mask of its own ("epoll_pwait") or epoll_pwait2 ("epoll_pwait2") on an
 * eventfd, with no timeout; a second thread writes the eventfd once the
 * trigger file appears. The wait must return the eventfd's event, never
 * -1 EINTR (the freeze of a --leave-running dump, or a restore, is no
 * signal of the program's).
 *
 * usage: rt_eintr <trigger> <mode>
 * prints: ready pid=<pid>, then the report once the wait returned
 */
#define _GNU_SOURCE
#include "common.h"
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int ev;
static const char *trigger;

static void *waker(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  uint64_t one = 1;
  if (write(ev, &one, sizeof one) != sizeof one) die("write");
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_eintr <trigger> epoll_wait|epoll_pwait|epoll_pwait2");
  trigger = argv[1];
  const char *mode = argv[2];
  int ep = epoll_create1(0);
  ev = eventfd(0, 0);
  struct epoll_event e = {.events = EPOLLIN}, out;
  if (ep < 0 || ev < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) die("epoll");
  pthread_t t;
  if (pthread_create(&t, NULL, waker, NULL) != 0) die("pthread_create");
  print_ready("pid=%d", getpid());
  int n, eintrs = 0;
  for (;;) {
    if (strcmp(mode, "epoll_wait") == 0) n = epoll_wait(ep, &out, 1, -1);
    else if (strcmp(mode, "epoll_pwait") == 0) n = epoll_pwait(ep, &out, 1, -1, NULL);
    else n = (int)syscall(441 /* epoll_pwait2 */, ep, &out, 1, NULL, NULL, 0);
    if (n >= 0 || errno != EINTR) break;
    eintrs++;
  }
  check("wait", n == 1 && eintrs == 0, "returned %d (%s) after %d EINTR", n, n < 0 ? strerror(errno) : "",
        eintrs);
  return verdict();
}
