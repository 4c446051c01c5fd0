/* Round-trip target for a pipe end above fd 2 that leads out of the tree.
 *
 * The process started (the "outer" one, never dumped) makes a pipe, keeps
 * its write end and forks the tree that is dumped; the tree's process
 * holds the read end at fd 3 (and /dev/null on 0):
 *
 * - mode "root": the dumped root itself holds it. After a restore given
 *   `--inherit-fd 3=<file>` it reads that file's first line from fd 3 and
 *   prints "got <line>" (anything else, e.g. the restorer's stdin, fails);
 * - mode "nested": the root (holding nothing of the pipe) has a child that
 *   holds it: nothing can stand for it at restore;
 * - mode "stdin": the root holds the read end at fd 0, its child a dup at
 *   fd 3 (and /dev/null on 0): both stand for the restorer's stdin;
 * - mode "tty": as "root", but fd 3 is the slave of a pty whose master the
 *   outer process holds (a terminal outside the tree, not on fds 0-2).
 *
 * usage: rt_outpipe <trigger> root|nested|stdin|tty
 * prints: ready outer=<pid> root=<dumped root> [child=<its child>]
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>

/* Puts /dev/null on fd 0. */
static void null_stdin(void) {
  int n = open("/dev/null", O_RDONLY);
  if (n < 0 || dup2(n, 0) != 0) die("/dev/null");
  if (n != 0) close(n);
}

/* The dumped root of mode "root": reads fd 3 after the trigger. */
static int read_fd3(const char *trigger) {
  wait_trigger(trigger);
  char line[128] = "";
  struct pollfd p = {3, POLLIN, 0};
  ssize_t n = poll(&p, 1, 5000) == 1 ? read(3, line, sizeof line - 1) : -1;
  if (n > 0) line[n] = 0;
  char *nl = strchr(line, '\n');
  if (nl) *nl = 0;
  printf("got %s\n", n > 0 ? line : "(nothing)");
  check("fd3", n > 0 && strcmp(line, "given") == 0, "read %zd bytes: %s", n, line);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_outpipe <trigger> root|nested|stdin|tty");
  const char *trigger = argv[1], *mode = argv[2];
  int p[2];
  if (strcmp(mode, "tty") == 0) {
    p[1] = posix_openpt(O_RDWR | O_NOCTTY);
    if (p[1] < 0 || grantpt(p[1]) != 0 || unlockpt(p[1]) != 0) die("posix_openpt");
    p[0] = open(ptsname(p[1]), O_RDWR | O_NOCTTY);
    if (p[0] < 0) die("open the slave");
  } else if (pipe(p) != 0) die("pipe");
  pid_t root = fork();
  if (root < 0) die("fork");
  if (root == 0) {
    close(p[1]);
    if (strcmp(mode, "root") == 0 || strcmp(mode, "tty") == 0) {
      null_stdin();
      if (dup2(p[0], 3) != 3) die("dup2");
      if (p[0] != 3) close(p[0]);
      return read_fd3(trigger);
    }
    int at = strcmp(mode, "stdin") == 0 ? 0 : 9;
    if (dup2(p[0], at) != at) die("dup2");
    close(p[0]);
    if (at != 0) null_stdin();
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      if (dup2(at, 3) != 3) die("dup2");
      close(at);
      null_stdin();
      for (;;) pause();
    }
    if (at != 0) close(at);
    printf("ready outer=%d root=%d child=%d\n", getppid(), getpid(), child);
    fflush(stdout);
    for (;;) pause();
  }
  close(p[0]);
  if (strcmp(mode, "root") == 0 || strcmp(mode, "tty") == 0) {
    printf("ready outer=%d root=%d\n", getpid(), root);
    fflush(stdout);
  }
  /* Reaps the dumped root once the dump killed it (its pid is then free for the restore). */
  while (waitpid(root, NULL, 0) < 0 && errno == EINTR) {
  }
  for (;;) pause();
}
