/* A file created the way Python's tempfile.mkstemp does (O_RDWR | O_CREAT |
 * O_EXCL | O_NOFOLLOW | O_CLOEXEC), then deleted, shared with a forked
 * child (gunicorn's worker heartbeat files). Args: <work dir>. Prints
 * "ready pid=<pid>", waits for SIGUSR1 (sent after the restore), checks
 * that the fd is still the deleted file with its content, offset, access
 * mode and close-on-exec, and one file with the child's, and prints check
 * lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_ghost_nofollow <work dir>");
  char path[512];
  snprintf(path, sizeof path, "%s/tmp-nofollow", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) die("create");
  if (write(fd, "beat", 4) != 4) die("write");
  if (unlink(path) != 0) die("unlink");
  sigset_t old;
  arm_usr1(&old);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    /* The child writes through the shared description once the parent asks (SIGUSR1). */
    wait_usr1(&old);
    _exit(write(fd, "-kid", 4) == 4 ? 0 : 1);
  }
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  int flags = fcntl(fd, F_GETFL);
  check("access", (flags & O_ACCMODE) == O_RDWR, "flags %o", flags);
  check("cloexec", fcntl(fd, F_GETFD) == FD_CLOEXEC, "%d", fcntl(fd, F_GETFD));
  check("offset", lseek(fd, 0, SEEK_CUR) == 4, "%ld", (long)lseek(fd, 0, SEEK_CUR));
  struct stat st;
  check("deleted", fstat(fd, &st) == 0 && st.st_nlink == 0 && (st.st_mode & 0777) == 0600,
        "nlink %ld mode %o", (long)st.st_nlink, st.st_mode & 0777);
  kill(child, SIGUSR1);
  int status = 0;
  waitpid(child, &status, 0);
  check("child-wrote", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
  char buf[16] = {0};
  check("shared", pread(fd, buf, 8, 0) == 8 && memcmp(buf, "beat-kid", 8) == 0, "%s", buf);
  check("shared-offset", lseek(fd, 0, SEEK_CUR) == 8, "%ld", (long)lseek(fd, 0, SEEK_CUR));
  return verdict();
}
