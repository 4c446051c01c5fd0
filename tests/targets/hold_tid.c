/* Holds a given pid: forks a child with that exact pid (clone3 set_tid)
 * which sleeps until killed; prints "held <tid>" (or "setup failed ..."),
 * then waits for the child and exits.
 *
 * usage: hold_tid <tid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "hold_tid <tid>");
  pid_t tid = (pid_t)atoi(argv[1]);
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  args.set_tid = (uint64_t)(uintptr_t)&tid;
  args.set_tid_size = 1;
  long r = syscall(SYS_clone3, &args, sizeof args);
  if (r < 0) die("clone3");
  if (r == 0) {
    for (;;) pause();
  }
  printf("held %d\n", (int)r);
  fflush(stdout);
  int st;
  waitpid((pid_t)r, &st, 0);
  return 0;
}
