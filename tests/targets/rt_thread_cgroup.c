/* A thread in another cgroup than its process: a v1 hierarchy places each
 * thread on its own (its `tasks` file). Args: <mount point of a v1 named
 * hierarchy, with a child cgroup "sub">. The second thread moves itself
 * into "sub"; the main thread stays at the root. Prints "ready pid=<pid>",
 * waits for SIGUSR1 (sent after the restore), then each thread checks its
 * own /proc/thread-self/cgroup and the target prints check lines and
 * PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <pthread.h>
#include <fcntl.h>

static const char *hier;
static char name[128];
static int moved[2], checked[2];

/* The path of this thread's cgroup in the hierarchy named `name`, or "". */
static void own_cgroup(char *out, size_t len) {
  char line[512];
  out[0] = 0;
  FILE *f = fopen("/proc/thread-self/cgroup", "r");
  if (!f) die("open thread-self/cgroup");
  while (fgets(line, sizeof line, f)) {
    char *c = strchr(line, ':');
    if (!c) continue;
    line[strcspn(line, "\n")] = 0;
    size_t n = strlen(name);
    if (strncmp(c + 1, name, n) == 0 && c[1 + n] == ':') snprintf(out, len, "%s", c + 2 + n);
  }
  fclose(f);
}

static void *mover(void *arg) {
  (void)arg;
  char path[512];
  snprintf(path, sizeof path, "%s/sub/tasks", hier);
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, "0", 1) != 1) die("move into sub");
  close(fd);
  int ok = 1;
  if (write(moved[1], &ok, sizeof ok) != sizeof ok) die("write");
  if (read(checked[0], &ok, sizeof ok) != sizeof ok) die("read");
  char cg[256];
  own_cgroup(cg, sizeof cg);
  check("thread-cgroup", strcmp(cg, "/sub") == 0, "%s", cg);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_thread_cgroup <hierarchy dir> <hierarchy name>");
  hier = argv[1];
  snprintf(name, sizeof name, "name=%s", argv[2]);
  if (pipe(moved) || pipe(checked)) die("pipe");
  sigset_t old;
  arm_usr1(&old); /* before the thread: it keeps SIGUSR1 blocked */
  pthread_t th;
  if (pthread_create(&th, NULL, mover, NULL)) die("pthread_create");
  int ok;
  if (read(moved[0], &ok, sizeof ok) != sizeof ok) die("read");
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  char cg[256];
  own_cgroup(cg, sizeof cg);
  check("main-cgroup", strcmp(cg, "/") == 0, "%s", cg);
  if (write(checked[1], &ok, sizeof ok) != sizeof ok) die("write");
  pthread_join(th, NULL);
  return verdict();
}
