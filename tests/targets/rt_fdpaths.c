/* Fds that name a file by a path other than a plain open would
 * (tests/restore_fdpaths_test.ts).
 *
 * usage: rt_fdpaths <trigger-file> <work-dir> [keep-socket]
 *
 * Sets up in <work-dir>:
 * - an O_PATH | O_NOFOLLOW fd of a symbolic link (the link itself);
 * - O_PATH fds of a unix socket's file (its socket closed after the bind,
 *   as a server outside the tree would have it; with "keep-socket" the
 *   socket stays open: a dump must refuse that fd) and of a FIFO;
 * - a file opened as "hl_a", then linked as "hl_b" and "hl_a" removed: the
 *   fd's name is gone but the file is not (its link count is 1);
 * - an O_TMPFILE file with content (linked to a name after the restore);
 * - a MAP_SHARED mapping of a file whose name was removed the same way
 *   ("map_a" linked as "map_b"), its fd closed;
 * then prints "ready pid=<pid>", waits for the trigger file, and checks
 * that each fd is still the same file: the link's fd a link with the same
 * inode, the socket's and the FIFO's fds theirs, a write through the
 * hard-linked file's fd visible through "hl_b" (the same file, not a
 * copy), a write through the mapping visible through "map_b", and the
 * temporary file linkable with its content.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static char work[400];

static const char *at(const char *name) {
  static char buf[4][512];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 512, "%s/%s", work, name);
  return p;
}

static int same(int fd, const struct stat *before, mode_t type) {
  struct stat s;
  return fstat(fd, &s) == 0 && (s.st_mode & S_IFMT) == type && s.st_ino == before->st_ino &&
         s.st_dev == before->st_dev;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_fdpaths <trigger-file> <work-dir> [keep-socket]");
  snprintf(work, sizeof work, "%s", argv[2]);

  int t = open(at("target"), O_CREAT | O_RDWR, 0644);
  if (t < 0 || write(t, "T", 1) != 1) die("target");
  close(t);
  if (symlink("target", at("link")) != 0) die("symlink");
  int link_fd = open(at("link"), O_PATH | O_NOFOLLOW);
  if (link_fd < 0) die("open link O_PATH");

  int us = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", at("sock"));
  if (us < 0 || bind(us, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
  int sock_fd = open(at("sock"), O_PATH);
  if (sock_fd < 0) die("open socket O_PATH");
  if (argc < 4 || strcmp(argv[3], "keep-socket") != 0) close(us);
  if (mkfifo(at("fifo"), 0644) != 0) die("mkfifo");
  int fifo_fd = open(at("fifo"), O_PATH);
  if (fifo_fd < 0) die("open fifo O_PATH");

  int hl = open(at("hl_a"), O_CREAT | O_RDWR, 0644);
  if (hl < 0 || write(hl, "H", 1) != 1) die("hl_a");
  if (link(at("hl_a"), at("hl_b")) != 0 || unlink(at("hl_a")) != 0) die("link hl_b");

  int tmp = open(work, O_TMPFILE | O_RDWR, 0600);
  if (tmp < 0 || write(tmp, "tmpdata", 7) != 7) die("O_TMPFILE");

  int mf = open(at("map_a"), O_CREAT | O_RDWR, 0644);
  if (mf < 0 || ftruncate(mf, 4096) != 0 || pwrite(mf, "M", 1, 0) != 1) die("map_a");
  char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 0);
  if (map == MAP_FAILED) die("mmap");
  close(mf);
  if (link(at("map_a"), at("map_b")) != 0 || unlink(at("map_a")) != 0) die("link map_b");

  struct stat s_link, s_sock, s_fifo, s_hl;
  if (fstat(link_fd, &s_link) || fstat(sock_fd, &s_sock) || fstat(fifo_fd, &s_fifo) ||
      fstat(hl, &s_hl))
    die("fstat");
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  wait_trigger(argv[1]);

  check("opath-symlink", same(link_fd, &s_link, S_IFLNK), "not the link itself");
  check("opath-symlink-flags", (fcntl(link_fd, F_GETFL) & (O_PATH | O_NOFOLLOW)) == (O_PATH | O_NOFOLLOW),
        "flags %o", fcntl(link_fd, F_GETFL));
  check("opath-socket", same(sock_fd, &s_sock, S_IFSOCK), "not the socket's file");
  check("opath-fifo", same(fifo_fd, &s_fifo, S_IFIFO), "not the FIFO");
  check("opath-fifo-flags", (fcntl(fifo_fd, F_GETFL) & O_PATH) != 0, "flags %o",
        fcntl(fifo_fd, F_GETFL));

  struct stat s;
  check("hardlink-same", same(hl, &s_hl, S_IFREG), "another inode than hl_b's");
  check("hardlink-nlink", fstat(hl, &s) == 0 && s.st_nlink == 1, "link count %ld",
        (long)s.st_nlink);
  char c = 0;
  int hb = open(at("hl_b"), O_RDONLY);
  check("hardlink-write", pwrite(hl, "Z", 1, 0) == 1 && hb >= 0 && pread(hb, &c, 1, 0) == 1 && c == 'Z',
        "a write through the fd is not seen through hl_b (read %c)", c);

  map[1] = 'Q';
  char mb[2] = {0};
  int mbfd = open(at("map_b"), O_RDONLY);
  check("hardlink-mapping", mbfd >= 0 && pread(mbfd, mb, 2, 0) == 2 && mb[0] == 'M' && mb[1] == 'Q',
        "map_b reads %c%c: the mapping is not of that file", mb[0], mb[1]);

  char fdpath[64], data[16] = {0};
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", tmp);
  int linked = linkat(AT_FDCWD, fdpath, AT_FDCWD, at("published"), AT_SYMLINK_FOLLOW);
  int pub = open(at("published"), O_RDONLY);
  check("tmpfile-linkat", linked == 0 && pub >= 0 && read(pub, data, 7) == 7 && !strcmp(data, "tmpdata"),
        "linkat %d (%s), content %s", linked, strerror(errno), data);
  return verdict();
}
