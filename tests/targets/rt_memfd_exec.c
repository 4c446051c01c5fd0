/* A script kept in a memfd and run with execveat(fd, "", AT_EMPTY_PATH), as
 * programs do that exec code they received or generated. A memfd's own
 * description (from memfd_create) does not count as a writer of its inode,
 * so exec of it works although it is open read-write; a second read-write
 * open of the same memfd (through /proc/self/fd) does count and makes exec
 * fail with ETXTBSY. Memfd "plain" has only its own fd (a dup of it and a
 * read-only reopen beside it, its pages also mapped shared and writable);
 * memfd "busy" has a read-write reopen too. Prints "ready pid=<pid>",
 * waits for SIGUSR1 (sent after the restore), runs both again and prints
 * check lines and PASS/FAIL: "plain" must still run, "busy" must still
 * fail with ETXTBSY. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char script[] = "#!/bin/true\n";

static int make_script(const char *name) {
  int fd = (int)syscall(SYS_memfd_create, name, 0);
  if (fd < 0) die("memfd_create");
  if (write(fd, script, sizeof script - 1) != (ssize_t)(sizeof script - 1)) die("write");
  return fd;
}

static int reopen(int fd, int flags) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int r = open(path, flags);
  if (r < 0) die("reopen");
  return r;
}

/* The exit status of the script run from `fd` in a child: 0, or the errno of execveat. */
static int run_fd(int fd) {
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    char *argv[] = {"true", NULL};
    char *envp[] = {NULL};
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    _exit(errno);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

int main(void) {
  int plain = make_script("plain");
  int plain_dup = dup(plain);
  int plain_ro = reopen(plain, O_RDONLY);
  char *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, plain, 0);
  if (shared == MAP_FAILED) die("mmap");
  int busy = make_script("busy");
  int busy_rw = reopen(busy, O_RDWR);
  int before_plain = run_fd(plain), before_busy = run_fd(busy);
  if (before_plain != 0 || before_busy != ETXTBSY) {
    printf("setup: exec plain %d busy %d (the kernel treats memfd writers otherwise)\n",
           before_plain, before_busy);
    return 1;
  }
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  int r = run_fd(plain);
  check("plain-exec", r == 0, "execveat of the memfd: %s", r ? strerror(r) : "ran");
  r = run_fd(plain_dup);
  check("plain-dup-exec", r == 0, "execveat of its dup: %s", r ? strerror(r) : "ran");
  r = run_fd(busy);
  check("busy-exec", r == ETXTBSY, "execveat of the reopened memfd: %s",
        r ? strerror(r) : "ran");
  check("plain-shared", memcmp(shared, script, sizeof script - 1) == 0, "mapping %.12s", shared);
  int fl = fcntl(plain_ro, F_GETFL);
  check("plain-ro", (fl & O_ACCMODE) == O_RDONLY, "flags %o", fl);
  fl = fcntl(busy_rw, F_GETFL);
  check("busy-rw", (fl & O_ACCMODE) == O_RDWR, "flags %o", fl);
  fl = fcntl(plain, F_GETFL);
  check("plain-rw", (fl & O_ACCMODE) == O_RDWR, "flags %o", fl);
  return verdict();
}
