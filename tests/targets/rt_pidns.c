/* A tree in a private pid namespace (tests/pidns_test.ts).
 *
 * usage: rt_pidns <dir>   (run by "cryo launch", so it is pid 1)
 *
 * The parent (pid 1 inside its namespace) forks a child; each records
 * getpid() (and the child getppid()) and fills 1 MiB with a pattern. Prints
 * "ready pid=<pid> child=<pid>" and both wait for <dir>/go.
 *
 * Then each writes its report to <dir>/report.<pid ns inode>.<parent|child>
 * (each copy of the tree is in its own namespace): its pids are the recorded
 * ones (the same in every copy), the child's parent is the parent, the
 * pattern is intact; the parent also checks that the child exits 0.
 */
#define _GNU_SOURCE
#include "common.h"

#include <sys/stat.h>
#include <sys/wait.h>

#define SIZE (1 << 20)

static unsigned char *fill(unsigned seed) {
  unsigned char *m = malloc(SIZE);
  if (!m) die("malloc");
  for (int i = 0; i < SIZE; i++) m[i] = (unsigned char)(i * 31 + seed);
  return m;
}

static int intact(const unsigned char *m, unsigned seed) {
  for (int i = 0; i < SIZE; i++) {
    if (m[i] != (unsigned char)(i * 31 + seed)) return 0;
  }
  return 1;
}

static void report_to(const char *dir, const char *role) {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0) die("stat ns");
  char path[512];
  snprintf(path, sizeof path, "%s/report.%lu.%s", dir, (unsigned long)st.st_ino, role);
  if (!freopen(path, "w", stdout)) die("freopen");
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_pidns <dir>");
  char go[512];
  snprintf(go, sizeof go, "%s/go", argv[1]);
  pid_t parent = getpid();
  unsigned char *pm = fill(7);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    pid_t me = getpid();
    unsigned char *cm = fill(11);
    wait_trigger(go);
    report_to(argv[1], "child");
    check("child_pid", getpid() == me, "getpid %d, was %d", getpid(), me);
    check("child_ppid", getppid() == parent, "getppid %d, want %d", getppid(), parent);
    check("child_memory", intact(cm, 11), "pattern changed");
    return verdict();
  }
  print_ready("pid=%d child=%d", parent, child);
  wait_trigger(go);
  report_to(argv[1], "parent");
  check("parent_pid", getpid() == parent, "getpid %d, was %d", getpid(), parent);
  check("parent_memory", intact(pm, 7), "pattern changed");
  int status = 0;
  pid_t w = waitpid(child, &status, 0);
  check("child_exit", w == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "waitpid %d status 0x%x", w, status);
  return verdict();
}
