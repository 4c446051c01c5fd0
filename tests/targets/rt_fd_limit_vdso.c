/* Two things valgrind does to its process, on their own: fds kept just
 * under the NOFILE hard limit (valgrind moves its own to the top), and the
 * [vdso] unmapped (its guest gets none). Mode "fds": the hard limit is set
 * to 64 and four files opened at 60-63 (each written with its number), no
 * room above them for the restore's temporaries. Mode "vdso": the [vdso]
 * is unmapped ([vvar] stays). After the restore each checks its state; the
 * checks use no vdso call (glibc's clock_gettime would jump into it).
 * Mode "tree": as "fds", then a child forked with a pipe to the parent (an
 * object the restore hands over above every fd: no room, refused).
 *
 * usage: rt_fd_limit_vdso <trigger> <work dir> fds|vdso|tree
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int mapped(const char *name, unsigned long *start, unsigned long *end) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strstr(line, name)) {
      if (start) sscanf(line, "%lx-%lx", start, end);
      found = 1;
    }
  }
  if (f) fclose(f);
  return found;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_fd_limit_vdso <trigger> <work dir> fds|vdso|tree");
  setvbuf(stdout, NULL, _IONBF, 0);
  int tree = strcmp(argv[3], "tree") == 0;
  int fds = tree || strcmp(argv[3], "fds") == 0;
  if (fds) {
    struct rlimit rl = {64, 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) die("setrlimit");
    for (int n = 60; n < 64; n++) {
      char path[512];
      snprintf(path, sizeof path, "%s/f%d", argv[2], n);
      int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
      if (fd < 0 || dup2(fd, n) != n) die(path);
      close(fd);
      char text[8];
      int len = snprintf(text, sizeof text, "%d", n);
      if (write(n, text, len) != len) die("write");
    }
  } else {
    unsigned long start = 0, end = 0;
    if (!mapped("[vdso]", &start, &end)) die("no [vdso]");
    if (munmap((void *)start, end - start) != 0) die("munmap");
  }
  pid_t child = 0;
  int pipefd[2];
  if (tree) {
    if (pipe(pipefd) != 0) die("pipe");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      wait_trigger(argv[1]);
      char c;
      _exit(read(pipefd[0], &c, 1) == 1 && c == 'x' ? 0 : 1);
    }
    if (write(pipefd[1], "x", 1) != 1) die("write");
  }
  print_ready("pid=%d", (int)getpid());
  wait_trigger(argv[1]);
  if (tree) {
    int st;
    check("child", waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "%#x", st);
  }
  if (fds) {
    for (int n = 60; n < 64; n++) {
      char text[8] = {0};
      ssize_t got = pread(n, text, sizeof text - 1, 0);
      off_t pos = lseek(n, 0, SEEK_CUR);
      char name[32];
      snprintf(name, sizeof name, "fd-%d", n);
      check(name, got > 0 && atoi(text) == n && pos == (n >= 10 ? 2 : 1), "%s at %lld", text,
            (long long)pos);
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    check("nofile", rl.rlim_cur == 64 && rl.rlim_max == 64, "%llu/%llu",
          (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    if (!tree) check("no-other-fds", fcntl(3, F_GETFD) < 0 && fcntl(59, F_GETFD) < 0, "");
  } else {
    check("no-vdso", !mapped("[vdso]", NULL, NULL), "");
    check("vvar", mapped("[vvar]", NULL, NULL), "");
    struct timespec ts;
    check("clock", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0, "");
  }
  return verdict();
}
