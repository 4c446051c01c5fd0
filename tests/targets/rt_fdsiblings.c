/* Round-trip target for descriptions shared by processes that are not
 * parent and child: this process opens an eventfd E and a file F, forks
 * c1 and c2 and closes both itself; c1 forks g1 and closes E. So E is
 * held by c2 and g1 (cousins), F by c1 and c2 (siblings), and their
 * creator at restore (the common ancestor, this process) holds neither.
 * After the restore this process checks with kcmp that the holders still
 * share them; every process checks that it has exactly the fds it had (no
 * transfer fd left open) and exits when <trigger>.end exists.
 *
 * usage: rt_fdsiblings <trigger> <workdir>
 * prints: ready pid=<pid> c1=<pid> c2=<pid> g1=<pid> e=<fd> f=<fd>
 */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory's own fd */
}

static const char *trigger;

/* In a child: waits for the restore, checks its fds, waits for the end. */
static void child_life(int expect_fds, pid_t sub) {
  char end[512];
  snprintf(end, sizeof end, "%s.end", trigger);
  wait_trigger(trigger);
  int ok = count_fds() == expect_fds;
  wait_trigger(end);
  if (sub > 0) {
    int st = 0;
    ok = ok && waitpid(sub, &st, 0) == sub && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  _exit(ok ? 0 : 1);
}

static int same(pid_t a, int fa, pid_t b, int fb) {
  return syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb) == 0;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_fdsiblings <trigger> <workdir>");
  trigger = argv[1];
  char path[512];
  snprintf(path, sizeof path, "%s/f", argv[2]);
  int e = eventfd(7, 0);
  int f = open(path, O_RDWR | O_CREAT, 0644);
  if (e < 0 || f < 0 || write(f, "abcdef", 6) != 6 || lseek(f, 3, SEEK_SET) != 3) die("setup");
  /* pidp: c1 tells g1's pid; rdy: g1 and c2 say they are set. Both are
   * read to EOF, so every child has closed what it closes before the dump. */
  int pidp[2], rdy[2];
  if (pipe(pidp) != 0 || pipe(rdy) != 0) die("pipe");
  pid_t c1 = fork();
  if (c1 == 0) {
    close(pidp[0]);
    close(rdy[0]);
    pid_t g1 = fork();
    if (g1 == 0) {
      close(pidp[1]);
      close(f);
      if (write(rdy[1], "g", 1) != 1) _exit(2);
      close(rdy[1]);
      child_life(3 + 1, 0); /* stdio + E */
    }
    close(e);
    close(rdy[1]);
    if (write(pidp[1], &g1, sizeof g1) != sizeof g1) _exit(2);
    close(pidp[1]);
    child_life(3 + 1, g1); /* stdio + F */
  }
  pid_t c2 = fork();
  if (c2 == 0) {
    close(pidp[0]);
    close(pidp[1]);
    close(rdy[0]);
    if (write(rdy[1], "c", 1) != 1) _exit(2);
    close(rdy[1]);
    child_life(3 + 2, 0); /* stdio + E + F */
  }
  close(pidp[1]);
  close(rdy[1]);
  pid_t g1 = 0;
  char buf[8];
  if (read(pidp[0], &g1, sizeof g1) != sizeof g1 || read(pidp[0], buf, 1) != 0) die("g1 pid");
  if (read(rdy[0], buf, 2) + read(rdy[0], buf, 2) < 2 || read(rdy[0], buf, 1) != 0) die("children ready");
  close(pidp[0]);
  close(rdy[0]);
  close(e);
  close(f);
  int mine = count_fds();
  print_ready("pid=%d c1=%d c2=%d g1=%d e=%d f=%d", getpid(), c1, c2, g1, e, f);
  wait_trigger(trigger);

  check("cousins-share-eventfd", same(c2, e, g1, e), "kcmp errno %d", errno);
  check("siblings-share-file", same(c1, f, c2, f), "kcmp errno %d", errno);
  check("no-transfer-fds", count_fds() == mine, "%d fds (had %d)", count_fds(), mine);
  char end[512];
  snprintf(end, sizeof end, "%s.end", trigger);
  int fd = open(end, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) die("end");
  close(fd);
  int ok = 1;
  for (int i = 0; i < 2; i++) {
    int st = 0;
    pid_t w = waitpid(i ? c2 : c1, &st, 0);
    ok = ok && w > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  check("children", ok, "a child found other fds than it had, or failed");
  return verdict();
}
