/* Round-trip target for file descriptors: opens files in many ways, prints
 * "ready ...", waits until the trigger file argv[1] exists, then verifies
 * every fd itself and prints one "check <name> ok|FAIL <detail>" line per
 * item, then PASS or FAIL.
 *
 * usage: rt_files <trigger-path> <work-dir>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static char work[2048];
static char path_buf[8][2600];

static const char *in_work(int slot, const char *name) {
  snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", work, name);
  return path_buf[slot];
}

/* Content of data.txt: 4096 bytes, byte i = 'a' + i % 26. */
#define DATA_BYTES 4096
static char data_byte(long i) { return (char)('a' + i % 26); }

static void write_all(int fd, const void *buf, size_t n) {
  if (write(fd, buf, n) != (ssize_t)n) die("write");
}

static int fd_ro, fd_wo, fd_dup_a, fd_dup_b, fd_indep, fd_append, fd_cloexec, fd_plain;
static int fd_dir, fd_null, fd_zero, fd_rdwr, fd_high;
#define HIGH_FD 100
#define RO_POS 100
#define DUP_POS 1000
#define INDEP_POS 2000
static char open_before[1024];

static void fd_set_text(char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  for (int fd = 0; fd < 1024; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) o += snprintf(out + o, cap - o, "%d ", fd);
  }
}

static void setup(void) {
  int fd = open(in_work(0, "data.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("create data.txt");
  char buf[DATA_BYTES];
  for (long i = 0; i < DATA_BYTES; i++) buf[i] = data_byte(i);
  write_all(fd, buf, DATA_BYTES);
  close(fd);

  fd_ro = open(in_work(0, "data.txt"), O_RDONLY);
  if (fd_ro < 0 || read(fd_ro, buf, RO_POS) != RO_POS) die("read data.txt");

  fd_wo = open(in_work(1, "written.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_wo < 0) die("open written.txt");
  write_all(fd_wo, "0123456789", 10);

  fd_dup_a = open(in_work(0, "data.txt"), O_RDONLY);
  if (fd_dup_a < 0) die("open dup");
  fd_dup_b = dup(fd_dup_a);
  if (lseek(fd_dup_a, DUP_POS, SEEK_SET) != DUP_POS) die("lseek dup");
  fd_indep = open(in_work(0, "data.txt"), O_RDONLY);
  if (fd_indep < 0 || lseek(fd_indep, INDEP_POS, SEEK_SET) != INDEP_POS) die("open indep");

  fd_append = open(in_work(2, "append.log"), O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
  if (fd_append < 0) die("open append.log");
  write_all(fd_append, "one\n", 4);

  fd_cloexec = open(in_work(0, "data.txt"), O_RDONLY | O_CLOEXEC);
  fd_plain = open(in_work(0, "data.txt"), O_RDONLY);
  if (fd_cloexec < 0 || fd_plain < 0) die("open cloexec");

  fd_dir = open(work, O_RDONLY | O_DIRECTORY);
  if (fd_dir < 0) die("open dir");
  fd_null = open("/dev/null", O_WRONLY | O_NONBLOCK);
  fd_zero = open("/dev/zero", O_RDONLY);
  if (fd_null < 0 || fd_zero < 0) die("open /dev");

  fd_rdwr = open(in_work(3, "rdwr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd_rdwr < 0) die("open rdwr.txt");
  write_all(fd_rdwr, "before-dump|", 12);

  fd = open(in_work(0, "data.txt"), O_RDONLY);
  if (fd < 0 || dup2(fd, HIGH_FD) != HIGH_FD) die("dup2 high");
  close(fd);
  fd_high = HIGH_FD;
  if (lseek(fd_high, 7, SEEK_SET) != 7) die("lseek high");

  fd_set_text(open_before, sizeof open_before);
}

static int read_matches(int fd, long at, long n) {
  char buf[256];
  if (n > (long)sizeof buf || read(fd, buf, n) != n) return 0;
  for (long i = 0; i < n; i++)
    if (buf[i] != data_byte(at + i)) return 0;
  return 1;
}

static void checks(void) {
  char now[1024];
  fd_set_text(now, sizeof now);
  check("fd-set", strcmp(now, open_before) == 0, "open fds before: %s after: %s", open_before, now);

  off_t pos = lseek(fd_ro, 0, SEEK_CUR);
  check("offset-read", pos == RO_POS, "offset %ld, expected %d", (long)pos, RO_POS);
  check("offset-read-data", read_matches(fd_ro, RO_POS, 50), "read at the offset gave other bytes");
  int fl = fcntl(fd_ro, F_GETFL);
  check("flags-rdonly", (fl & O_ACCMODE) == O_RDONLY && !(fl & O_APPEND), "F_GETFL 0%o", fl);

  pos = lseek(fd_wo, 0, SEEK_CUR);
  check("offset-write", pos == 10, "offset %ld, expected 10", (long)pos);
  fl = fcntl(fd_wo, F_GETFL);
  check("flags-wronly", (fl & O_ACCMODE) == O_WRONLY, "F_GETFL 0%o", fl);
  int ok = write(fd_wo, "abc", 3) == 3;
  char buf[64] = {0};
  int fd = open(in_work(1, "written.txt"), O_RDONLY);
  ok = ok && read(fd, buf, sizeof buf - 1) == 13 && !strcmp(buf, "0123456789abc");
  close(fd);
  check("write-continues", ok, "written.txt holds \"%s\"", buf);

  off_t a = lseek(fd_dup_a, 0, SEEK_CUR), b = lseek(fd_dup_b, 0, SEEK_CUR);
  check("dup-offset", a == DUP_POS && b == DUP_POS, "offsets %ld %ld, expected %d", (long)a,
        (long)b, DUP_POS);
  lseek(fd_dup_a, 300, SEEK_SET);
  b = lseek(fd_dup_b, 0, SEEK_CUR);
  int r1 = read_matches(fd_dup_b, 300, 20);
  a = lseek(fd_dup_a, 0, SEEK_CUR);
  check("dup-shared", b == 300 && r1 && a == 320,
        "after lseek(a, 300): b at %ld (read ok %d), after read(b, 20): a at %ld", (long)b, r1,
        (long)a);
  pos = lseek(fd_indep, 0, SEEK_CUR);
  check("independent-open", pos == INDEP_POS, "separately opened fd moved to %ld", (long)pos);

  fl = fcntl(fd_append, F_GETFL);
  check("append-flag", (fl & O_APPEND) && (fl & O_ACCMODE) == O_WRONLY, "F_GETFL 0%o", fl);
  lseek(fd_append, 0, SEEK_SET);
  ok = write(fd_append, "two\n", 4) == 4;
  memset(buf, 0, sizeof buf);
  fd = open(in_work(2, "append.log"), O_RDONLY);
  ok = ok && read(fd, buf, sizeof buf - 1) == 8 && !strcmp(buf, "one\ntwo\n");
  close(fd);
  check("append-writes", ok, "append.log holds \"%s\"", buf);

  int c1 = fcntl(fd_cloexec, F_GETFD), c2 = fcntl(fd_plain, F_GETFD);
  check("cloexec-set", c1 == FD_CLOEXEC, "F_GETFD %d", c1);
  check("cloexec-clear", c2 == 0, "F_GETFD %d", c2);

  struct stat st;
  ok = fstat(fd_dir, &st) == 0 && S_ISDIR(st.st_mode);
  check("dir-fstat", ok, "mode 0%o", ok ? st.st_mode : 0);
  char cwd[4096] = {0};
  ok = fchdir(fd_dir) == 0 && getcwd(cwd, sizeof cwd) && !strcmp(cwd, work);
  check("dir-fchdir", ok, "cwd is %s", cwd);
  fd = openat(fd_dir, "data.txt", O_RDONLY);
  ok = fd >= 0 && read_matches(fd, 0, 26);
  if (fd >= 0) close(fd);
  check("dir-openat", ok, "openat(dirfd, data.txt) failed");

  ok = fstat(fd_null, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
  check("dev-null", ok && write(fd_null, "x", 1) == 1, "not /dev/null (rdev %lx)",
        (unsigned long)st.st_rdev);
  fl = fcntl(fd_null, F_GETFL);
  check("dev-null-flags", (fl & O_NONBLOCK) && (fl & O_ACCMODE) == O_WRONLY, "F_GETFL 0%o", fl);
  ok = fstat(fd_zero, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5);
  memset(buf, 1, sizeof buf);
  ok = ok && read(fd_zero, buf, sizeof buf) == sizeof buf;
  for (size_t i = 0; ok && i < sizeof buf; i++)
    if (buf[i]) ok = 0;
  check("dev-zero", ok, "not /dev/zero or read non-zero bytes");

  pos = lseek(fd_rdwr, 0, SEEK_CUR);
  fl = fcntl(fd_rdwr, F_GETFL);
  ok = pos == 12 && (fl & O_ACCMODE) == O_RDWR && write(fd_rdwr, "after-restore", 13) == 13;
  memset(buf, 0, sizeof buf);
  ok = ok && pread(fd_rdwr, buf, sizeof buf - 1, 0) == 25 &&
       !strcmp(buf, "before-dump|after-restore");
  check("rdwr-write", ok, "offset %ld flags 0%o content \"%s\"", (long)pos, fl, buf);

  pos = lseek(fd_high, 0, SEEK_CUR);
  check("high-fd", pos == 7 && read_matches(fd_high, 7, 10), "fd %d at %ld", HIGH_FD, (long)pos);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_files <trigger> <work-dir>");
  if (!realpath(argv[2], work)) die("realpath");
  printf("start pid=%d\n", getpid());
  fflush(stdout);
  setup();
  print_ready("pid=%d fds=%s", getpid(), open_before);
  wait_trigger(argv[1]);
  checks();
  return verdict();
}
