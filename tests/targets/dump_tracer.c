/* A tracer in the way: PTRACE_SEIZEs the thread argv[1] (without stopping
 * it), prints "tracing <tid> tracer=<pid>", then waits for it forever,
 * passing on any signal it stops with, until it exits.
 *
 * usage: dump_tracer <tid>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  need_args(argc, 1, "dump_tracer <tid>");
  pid_t tid = atoi(argv[1]);
  if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
    printf("seize failed: %s\n", strerror(errno));
    return 1;
  }
  printf("tracing %d tracer=%d\n", tid, getpid());
  fflush(stdout);
  for (;;) {
    int st;
    pid_t r = waitpid(tid, &st, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      printf("waitpid: %s\n", strerror(errno));
      return 1;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) return 0;
    if (WIFSTOPPED(st)) {
      int sig = WSTOPSIG(st);
      int event = st >> 16;
      ptrace(PTRACE_CONT, tid, 0, event ? 0 : sig);
    }
  }
}
