/* A cwd deleted while in use. Args: <work dir>. Makes <work>/gone, enters
 * it and removes it; prints "ready pid=<pid>", waits for SIGUSR1 (sent
 * after the restore) and checks that the cwd is still that deleted
 * directory: /proc/self/cwd reads "<work>/gone (deleted)", it has no links,
 * nothing can be created in it, and the path is free; prints check lines
 * and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_cwd_deleted <work dir>");
  char path[512], want[600], link[600];
  snprintf(path, sizeof path, "%s/gone", argv[1]);
  if (mkdir(path, 0750) != 0 || chdir(path) != 0 || rmdir(path) != 0) die("cwd");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);

  snprintf(want, sizeof want, "%s (deleted)", path);
  ssize_t n = readlink("/proc/self/cwd", link, sizeof link - 1);
  link[n > 0 ? n : 0] = 0;
  check("cwd-link", strcmp(link, want) == 0, "%s", link);
  struct stat st;
  check("cwd-unlinked", stat(".", &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 0,
        "nlink %ld", (long)st.st_nlink);
  int fd = open("new", O_CREAT | O_WRONLY, 0600);
  check("cwd-no-create", fd < 0 && errno == ENOENT, "fd %d errno %d", fd, errno);
  check("path-free", access(path, F_OK) != 0 && errno == ENOENT, "errno %d", errno);
  return verdict();
}
