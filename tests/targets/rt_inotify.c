/* Round-trip target for inotify: an instance watching a directory and a
 * file, whose watch numbers have a gap (two watches removed before the
 * dump), and a second, blocking instance. It records its watch lines from
 * /proc/self/fdinfo; after restore it checks they read the same (wd, inode,
 * mask, file handle), that nothing is queued, that the flags came back, and
 * that creating a file in the watched directory and writing the watched
 * file give events with the original watch numbers and the right name.
 *
 * With <gap>, that many more numbers are taken and given back before the
 * file's watch (a larger gap).
 *
 * usage: rt_inotify <trigger> <work> [gap]
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

/* The "inotify wd:..." lines of /proc/self/fdinfo/<fd>, concatenated. */
static void watch_lines(int fd, char *out, size_t size) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  if (!f) die("fdinfo");
  out[0] = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "inotify ", 8) == 0) strncat(out, line, size - strlen(out) - 1);
  }
  fclose(f);
}

/* Reads events from `fd` (waiting up to 2 s for the first) until one with
 * `mask` arrives; returns it in *ev / name, or 0 when none came. */
static int wait_event(int fd, uint32_t mask, struct inotify_event *ev, char *name) {
  char buf[4096] __attribute__((aligned(8)));
  struct pollfd p = {fd, POLLIN, 0};
  while (poll(&p, 1, 2000) == 1) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return 0;
    for (char *c = buf; c < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)c;
      if (e->mask & mask) {
        *ev = *e;
        strcpy(name, e->len ? e->name : "");
        return 1;
      }
      c += sizeof *e + e->len;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_inotify <trigger> <work> [gap]");
  int gap = argc > 3 ? atoi(argv[3]) : 0;
  char dir[512], file[512], gap1[512], gap2[512], created[600];
  snprintf(dir, sizeof dir, "%s/watched", argv[2]);
  snprintf(file, sizeof file, "%s/file.txt", argv[2]);
  snprintf(gap1, sizeof gap1, "%s/gap1", argv[2]);
  snprintf(gap2, sizeof gap2, "%s/gap2", argv[2]);
  snprintf(created, sizeof created, "%s/new-entry", dir);
  if (mkdir(dir, 0755) || mkdir(gap1, 0755) || mkdir(gap2, 0755)) die("mkdir");
  int ff = open(file, O_CREAT | O_WRONLY, 0644);
  if (ff < 0) die("create file");
  close(ff);

  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0) die("inotify_init1");
  int wd_dir = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE | IN_OPEN);
  int wd_gap1 = inotify_add_watch(in, gap1, IN_ATTRIB);
  int wd_gap2 = inotify_add_watch(in, gap2, IN_ATTRIB);
  char drain[4096];
  for (int i = 0; i < gap; i++) {
    if (inotify_rm_watch(in, inotify_add_watch(in, file, IN_ATTRIB))) die("gap watch");
    while (read(in, drain, sizeof drain) > 0) {
    }
  }
  int wd_file = inotify_add_watch(in, file, IN_MODIFY | IN_OPEN | IN_EXCL_UNLINK);
  if (wd_dir != 1 || wd_gap1 != 2 || wd_gap2 != 3 || wd_file != 4 + gap) die("watch numbers");
  if (inotify_rm_watch(in, wd_gap1) || inotify_rm_watch(in, wd_gap2)) die("rm_watch");
  while (read(in, drain, sizeof drain) > 0) {
  } /* the IN_IGNORED events */

  int blocking = inotify_init1(0);
  if (blocking < 0) die("inotify_init1 blocking");
  if (inotify_add_watch(blocking, dir, IN_DELETE) != 1) die("blocking watch");

  char before[2048], before2[1024];
  watch_lines(in, before, sizeof before);
  watch_lines(blocking, before2, sizeof before2);
  print_ready("pid=%d fd=%d", getpid(), in);
  wait_trigger(argv[1]);

  char after[2048], after2[1024];
  watch_lines(in, after, sizeof after);
  watch_lines(blocking, after2, sizeof after2);
  check("watch-lines", strcmp(before, after) == 0, "before:\n%safter:\n%s", before, after);
  check("blocking-watch-lines", strcmp(before2, after2) == 0, "before:\n%safter:\n%s", before2,
        after2);
  int queued = -1, queued2 = -1;
  ioctl(in, FIONREAD, &queued);
  ioctl(blocking, FIONREAD, &queued2);
  check("nothing-queued", queued == 0 && queued2 == 0, "%d and %d bytes queued", queued, queued2);
  int fl = fcntl(in, F_GETFL), fd_fl = fcntl(in, F_GETFD);
  check("flags", (fl & O_NONBLOCK) && (fd_fl & FD_CLOEXEC), "fl %o fd flags %o", fl, fd_fl);
  fl = fcntl(blocking, F_GETFL);
  fd_fl = fcntl(blocking, F_GETFD);
  check("blocking-flags", !(fl & O_NONBLOCK) && !(fd_fl & FD_CLOEXEC), "fl %o fd flags %o", fl,
        fd_fl);

  struct inotify_event ev;
  char name[256];
  int nf = open(created, O_CREAT | O_WRONLY, 0644);
  if (nf < 0) die("create in watched dir");
  close(nf);
  int got = wait_event(in, IN_CREATE, &ev, name);
  check("dir-event", got && ev.wd == wd_dir && !strcmp(name, "new-entry"), "got %d wd %d name '%s'",
        got, got ? ev.wd : 0, got ? name : "");
  int wf = open(file, O_WRONLY);
  if (wf < 0 || write(wf, "x", 1) != 1) die("write watched file");
  close(wf);
  got = wait_event(in, IN_MODIFY, &ev, name);
  check("file-event", got && ev.wd == wd_file && name[0] == 0, "got %d wd %d", got,
        got ? ev.wd : 0);
  int next = inotify_add_watch(in, argv[2], IN_ATTRIB);
  check("next-wd", next == wd_file + 1, "new watch got %d", next);

  unlink(created);
  got = wait_event(blocking, IN_DELETE, &ev, name);
  check("blocking-event", got && ev.wd == 1 && !strcmp(name, "new-entry"), "got %d wd %d name '%s'",
        got, got ? ev.wd : 0, got ? name : "");
  return verdict();
}
