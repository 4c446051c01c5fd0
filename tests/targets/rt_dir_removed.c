/* Fds of a removed directory and of a removed symlink. Args: <work dir>.
 * Makes <work>/outer/gone (mode 0751, owner 1234:2345 when run as root,
 * set access and modification times), opens it O_RDONLY|O_DIRECTORY (fd
 * 20) and O_PATH (fd 21); makes the symlink <work>/outer/link ->
 * "some/target" (owner 1234:2345 as root) and opens it itself
 * (O_PATH|O_NOFOLLOW, fd 22); removes them and outer; prints "ready
 * pid=<pid>", waits for
 * SIGUSR1 (sent after the restore) and checks that both fds hold one
 * removed, empty directory: a directory with no links, the same inode for
 * both, /proc/self/fd/20 reading "<work>/outer/gone (deleted)", its mode,
 * owner and times, O_DIRECTORY and O_PATH kept, nothing creatable in it,
 * and the paths free; and that fd 22 holds a removed symlink of that
 * content and owner, its /proc link reading "<work>/outer/link (deleted)";
 * prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_dir_removed <work dir>");
  char outer[512], path[600], want[700], link[700];
  snprintf(outer, sizeof outer, "%s/outer", argv[1]);
  snprintf(path, sizeof path, "%s/gone", outer);
  uid_t uid = geteuid() == 0 ? 1234 : geteuid();
  gid_t gid = geteuid() == 0 ? 2345 : getegid();
  const struct timespec times[2] = {{1000000000, 500}, {1100000000, 250000}};
  if (mkdir(outer, 0700) != 0 || mkdir(path, 0700) != 0 || chown(path, uid, gid) != 0 ||
      chmod(path, 0751) != 0 || utimensat(AT_FDCWD, path, times, 0) != 0)
    die("gone");
  int d = open(path, O_RDONLY | O_DIRECTORY), o = open(path, O_PATH);
  if (d < 0 || o < 0 || dup2(d, 20) != 20 || dup2(o, 21) != 21 || close(d) || close(o)) die("open");
  char lpath[600];
  snprintf(lpath, sizeof lpath, "%s/link", outer);
  if (symlink("some/target", lpath) != 0 || lchown(lpath, uid, gid) != 0) die("symlink");
  int l = open(lpath, O_PATH | O_NOFOLLOW);
  if (l < 0 || dup2(l, 22) != 22 || close(l) != 0 || unlink(lpath) != 0) die("link");
  if (rmdir(path) != 0 || rmdir(outer) != 0) die("rmdir");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);

  struct stat a, b;
  check("fstat", fstat(20, &a) == 0 && fstat(21, &b) == 0, "errno %d", errno);
  check("dir-unlinked", S_ISDIR(a.st_mode) && a.st_nlink == 0, "mode %o nlink %ld", a.st_mode,
        (long)a.st_nlink);
  check("same-inode", a.st_ino == b.st_ino && a.st_dev == b.st_dev, "%ld vs %ld", (long)a.st_ino,
        (long)b.st_ino);
  snprintf(want, sizeof want, "%s (deleted)", path);
  ssize_t n = readlink("/proc/self/fd/20", link, sizeof link - 1);
  link[n > 0 ? n : 0] = 0;
  check("link", strcmp(link, want) == 0, "%s", link);
  check("mode", (a.st_mode & 07777) == 0751, "mode %o", a.st_mode & 07777);
  check("owner", a.st_uid == uid && a.st_gid == gid, "owner %d:%d", a.st_uid, a.st_gid);
  check("times",
        a.st_atim.tv_sec == times[0].tv_sec && a.st_atim.tv_nsec == times[0].tv_nsec &&
            a.st_mtim.tv_sec == times[1].tv_sec && a.st_mtim.tv_nsec == times[1].tv_nsec,
        "atime %ld.%09ld mtime %ld.%09ld", (long)a.st_atim.tv_sec, a.st_atim.tv_nsec,
        (long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec);
  int fl20 = fcntl(20, F_GETFL), fl21 = fcntl(21, F_GETFL);
  check("flags", (fl20 & O_DIRECTORY) && !(fl20 & O_PATH) && (fl21 & O_PATH), "%o %o", fl20, fl21);
  int fd = openat(20, "new", O_CREAT | O_WRONLY, 0600);
  check("no-create", fd < 0 && errno == ENOENT, "fd %d errno %d", fd, errno);
  check("paths-free", access(path, F_OK) != 0 && access(outer, F_OK) != 0, "a path exists");
  struct stat ls;
  char content[64] = {0};
  check("link-removed",
        fstatat(22, "", &ls, AT_EMPTY_PATH) == 0 && S_ISLNK(ls.st_mode) && ls.st_nlink == 0,
        "mode %o nlink %ld", ls.st_mode, (long)ls.st_nlink);
  check("link-content", readlinkat(22, "", content, sizeof content - 1) == 11 &&
                            strcmp(content, "some/target") == 0, "%s", content);
  check("link-owner", ls.st_uid == uid && ls.st_gid == gid, "owner %d:%d", ls.st_uid, ls.st_gid);
  snprintf(want, sizeof want, "%s (deleted)", lpath);
  n = readlink("/proc/self/fd/22", link, sizeof link - 1);
  link[n > 0 ? n : 0] = 0;
  check("link-path", strcmp(link, want) == 0 && (fcntl(22, F_GETFL) & O_PATH), "%s", link);
  return verdict();
}
