/* A cwd deleted while in use. Args: <work dir>. Makes <work>/gone with
 * mode 0751, owner 1234:2345 (when run as root) and set access and
 * modification times, enters it and removes it; prints "ready pid=<pid>",
 * waits for SIGUSR1 (sent after the restore) and checks that the cwd is
 * still that deleted directory: /proc/self/cwd reads "<work>/gone
 * (deleted)", it has no links, nothing can be created in it, the path is
 * free, and its mode, owner and times are those set; fd 30, opened on the
 * directory before, holds that same directory; prints check lines and
 * PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_cwd_deleted <work dir>");
  char path[512], want[600], link[600];
  snprintf(path, sizeof path, "%s/gone", argv[1]);
  uid_t uid = geteuid() == 0 ? 1234 : geteuid();
  gid_t gid = geteuid() == 0 ? 2345 : getegid();
  const struct timespec times[2] = {{1000000000, 500}, {1100000000, 250000}};
  if (mkdir(path, 0700) != 0 || chown(path, uid, gid) != 0 || chmod(path, 0751) != 0 ||
      utimensat(AT_FDCWD, path, times, 0) != 0)
    die("gone");
  int dfd = open(path, O_RDONLY | O_DIRECTORY);
  if (dfd < 0 || dup2(dfd, 30) != 30 || close(dfd) != 0) die("dir fd");
  if (chdir(path) != 0 || rmdir(path) != 0) die("cwd");
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
  stat(".", &st);
  struct stat fst;
  check("fd-is-cwd", fstat(30, &fst) == 0 && fst.st_ino == st.st_ino && fst.st_dev == st.st_dev,
        "fd 30: inode %ld, cwd %ld", (long)fst.st_ino, (long)st.st_ino);
  check("cwd-mode", (st.st_mode & 07777) == 0751, "mode %o", st.st_mode & 07777);
  check("cwd-owner", st.st_uid == uid && st.st_gid == gid, "owner %d:%d", st.st_uid, st.st_gid);
  check("cwd-times",
        st.st_atim.tv_sec == times[0].tv_sec && st.st_atim.tv_nsec == times[0].tv_nsec &&
            st.st_mtim.tv_sec == times[1].tv_sec && st.st_mtim.tv_nsec == times[1].tv_nsec,
        "atime %ld.%09ld mtime %ld.%09ld", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
        (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  return verdict();
}
