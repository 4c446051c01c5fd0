/* Target for task states a dump refuses. Modes (usage: rt_vfork <mode>):
 *
 *   vfork        the parent vfork()s; the child prints
 *                "ready pid=<parent> child=<child>" and pauses, so the
 *                parent waits in vfork. When the child is killed, the
 *                parent prints "parent resumed" and exits with 0.
 *   spawn        every 500 ms the parent vfork()s a child that prints
 *                "spawned <n>" and exits 60 ms later (a spawn's brief
 *                vfork wait, long enough for a dump to meet it); after the
 *                trigger file <argv[2]> appears it prints "spawns <n>" and
 *                exits with 0. Prints "ready pid=<pid>" first.
 *   leader-exit  the main thread exits (pthread_exit) while a worker runs
 *                on; the worker prints "ready pid=<pid> worker=<tid>" and
 *                polls every 10 ms until SIGUSR1 arrives, then prints
 *                "worker done" and exits the process with 0.
 */
#include "common.h"

#include <pthread.h>
#include <sys/wait.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) {
  (void)sig;
  go = 1;
}

static void *worker(void *arg) {
  (void)arg;
  print_ready("pid=%d worker=%d", getpid(), gettid_raw());
  while (!go) sleep_ms(10);
  printf("worker done\n");
  fflush(stdout);
  exit(0);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_vfork vfork|spawn <trigger>|leader-exit");
  if (strcmp(argv[1], "vfork") == 0) {
    pid_t parent = getpid();
    pid_t c = vfork();
    if (c == 0) {
      char line[96];
      int n = snprintf(line, sizeof line, "ready pid=%d child=%d\n", parent,
                       (int)syscall(SYS_getpid));
      syscall(SYS_write, 1, line, n);
      for (;;) syscall(SYS_pause);
    }
    int st;
    waitpid(c, &st, 0);
    printf("parent resumed\n");
    return 0;
  }
  if (strcmp(argv[1], "spawn") == 0 && argc > 2) {
    print_ready("pid=%d", getpid());
    int n = 0;
    while (access(argv[2], F_OK) != 0) {
      n++;
      pid_t c = vfork();
      if (c == 0) {
        char line[32];
        int len = snprintf(line, sizeof line, "spawned %d\n", n);
        syscall(SYS_write, 1, line, len);
        struct timespec ts = {0, 60 * 1000 * 1000};
        syscall(SYS_nanosleep, &ts, NULL);
        syscall(SYS_exit, 0);
      }
      int st;
      if (waitpid(c, &st, 0) != c || !WIFEXITED(st)) die("waitpid");
      sleep_ms(500);
    }
    printf("spawns %d\n", n);
    return 0;
  }
  signal(SIGUSR1, on_usr1);
  pthread_t th;
  if (pthread_create(&th, NULL, worker, NULL) != 0) die("pthread_create");
  pthread_exit(NULL);
}
