/* An inotify watch on a file that was deleted while the process still
 * holds it open (a log or lock file removed under a watcher), beside a
 * watch on its directory. Args: <work dir> [closed]: with "closed" the
 * file's fd is closed too (the inode lives on only if something outside
 * holds it open: the test does). Prints
 * "ready pid=<pid>", waits for SIGUSR1 (sent after the restore), then
 * checks that both watches kept their numbers, that a write through the
 * fd is reported by the file's watch (IN_MODIFY on wd 2) and a file
 * created in the directory by the other (IN_CREATE on wd 1), and that the
 * fd still names the deleted file with its content. Prints check lines
 * and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_inotify_deleted <work dir> [closed]");
  char path[512], other[512];
  snprintf(path, sizeof path, "%s/watched.log", argv[1]);
  snprintf(other, sizeof other, "%s/created", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  if (fd < 0) die("create");
  if (write(fd, "line1\n", 6) != 6) die("write");
  int in = inotify_init1(IN_NONBLOCK);
  if (in < 0) die("inotify_init1");
  int wd_dir = inotify_add_watch(in, argv[1], IN_CREATE);
  int wd_file = inotify_add_watch(in, path, IN_MODIFY | IN_DELETE_SELF);
  if (wd_dir != 1 || wd_file != 2) die("inotify_add_watch");
  if (unlink(path) != 0) die("unlink");
  if (argc > 2 && strcmp(argv[2], "closed") == 0) close(fd);
  char buf[4096];
  while (read(in, buf, sizeof buf) > 0) {
  } /* the events of the unlink and close: read away */
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  struct stat st;
  check("deleted", fstat(fd, &st) == 0 && st.st_nlink == 0 && st.st_size == 6,
        "nlink %ld size %ld", (long)st.st_nlink, (long)st.st_size);
  check("append", pwrite(fd, "line2\n", 6, 6) == 6, "%s", strerror(errno));
  int c = open(other, O_CREAT | O_WRONLY, 0600);
  if (c >= 0) close(c);
  unlink(other);
  int modified = 0, created = 0;
  ssize_t n = read(in, buf, sizeof buf);
  for (ssize_t off = 0; off < n;) {
    struct inotify_event *e = (struct inotify_event *)(buf + off);
    if (e->wd == 2 && (e->mask & IN_MODIFY)) modified = 1;
    if (e->wd == 1 && (e->mask & IN_CREATE) && strcmp(e->name, "created") == 0) created = 1;
    off += (ssize_t)sizeof *e + e->len;
  }
  check("modify-event", modified, "read %ld bytes of events", (long)n);
  check("create-event", created, "read %ld bytes of events", (long)n);
  return verdict();
}
