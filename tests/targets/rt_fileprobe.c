/* Round-trip target: a third probe of file and fd state, one mode per case.
 *
 *   rt_fileprobe <trigger-file> <work-dir> <mode>
 *
 * Each mode sets its state, prints "ready pid=<pid>", waits for the
 * trigger file (the test dumps, kills and restores it meanwhile), then
 * checks that state (check lines, then PASS or FAIL). The work dir is on
 * the file system of the test's temporary directories. Modes:
 *
 *   lock-wait     a POSIX write lock held by the process while a child
 *                 waits for it in F_SETLKW: the child must get it only
 *                 after the parent unlocks
 *   lock-ranges   POSIX locks of several ranges and types, one on a file
 *                 opened read-only; probed by a fresh child with F_GETLK
 *   ofd-fork      an OFD lock on a description shared with a child, and a
 *                 flock LOCK_SH held by two processes (two descriptions)
 *   memfd-huge    a memfd made with MFD_HUGETLB (still on hugetlbfs after)
 *   open-flags    O_DIRECT, O_TRUNC (written after: must not be truncated
 *                 again), O_CREAT|O_EXCL (the file exists now), O_APPEND
 *                 after writes, O_NOFOLLOW, a position beyond EOF
 *   tmpfile-excl  O_TMPFILE never linked (linkat must work), and one made
 *                 with O_EXCL; tmpfile-excl-gap also checks that the O_EXCL
 *                 one stays unlinkable (a known gap: it comes back linkable)
 *   file-moved    files whose mode became 000, renamed into another
 *                 directory, given a second hard link since the open
 *   dir-fds       a directory fd used by openat, a cwd renamed since
 *   shm           a POSIX shm object (/dev/shm) opened and mapped
 *   proc-mem      /proc/self/mem and /proc/self/pagemap fds with positions,
 *                 a /sys file read part-way
 *   sparse-fds    fds 3 and RLIMIT_NOFILE's hard limit - 1 only (a sparse
 *                 fd table; 19999 here, the hard limit cannot be raised)
 *   far-fd        fds 3 and 15000 only (under a hard limit of 20000)
 *   root-moved    a chroot into a directory renamed since, an fd of a file
 *                 outside that root
 *   cwd-deleted   a cwd whose directory was removed since (made again at restore)
 *   odd-names     files named "x (deleted)" (not deleted) and with a newline,
 *                 a cwd with a space and a newline in its name
 *   ofd-wait      children blocked in F_OFD_SETLKW and in flock(LOCK_SH) on
 *                 the parent's locks
 *   ghost-dir-gone  a deleted file whose directory was removed too
 *   opath-deleted an O_PATH fd of a deleted file (also open read-write)
 *   shadowed      a file whose directory got a tmpfs mounted over it (with
 *                 a file of the same name) since the open; the target
 *                 unmounts it at its end
 *   immutable     an fd open read-write on a file made immutable since (chattr
 *                 +i), one open write-only on a file made append-only (+a)
 *   fifo-size     a FIFO and a pipe grown with F_SETPIPE_SZ
 *   ghost-sparse  deleted files: 0 bytes; 1 GiB sparse with 4 KiB of data
 *                 at 512 MiB; fallocated (unwritten) ranges, one beyond EOF
 *                 (their blocks must stay reserved)
 *   memfd-falloc  a memfd with 2 MiB fallocated (1 MiB past its size) and
 *                 4 bytes written (refused: tmpfs shows not where they are)
 *   inotify-moved an inotify watch on a directory renamed into another one
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

static void put(int fd, const char *s) {
  if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

static void lk(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  if (fcntl(fd, cmd, &fl)) die("fcntl lock");
}

/* In a fresh child: F_GETLK of [start, start+len) for `type` on `path`;
 * returns the conflicting lock's type (F_UNLCK if none) and its pid. */
static int probe_lock(const char *path, short type, off_t start, off_t len, pid_t *by) {
  int p[2];
  if (pipe(p)) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    int fd = open(path, O_RDWR);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    int r[2] = {-1, 0};
    if (fd >= 0 && !fcntl(fd, F_GETLK, &fl)) {
      r[0] = fl.l_type;
      r[1] = fl.l_pid;
    }
    if (write(p[1], r, sizeof r) != sizeof r) _exit(1);
    _exit(0);
  }
  int r[2] = {-1, 0};
  close(p[1]);
  if (read(p[0], r, sizeof r) != sizeof r) r[0] = -2;
  close(p[0]);
  waitpid(c, NULL, 0);
  if (by) *by = r[1];
  return r[0];
}

/* In a fresh child: does flock(LOCK_EX|LOCK_NB) on a new description of `path` succeed? */
static int flock_free(const char *path) {
  pid_t c = fork();
  if (c == 0) {
    int fd = open(path, O_RDONLY);
    _exit(fd >= 0 && !flock(fd, LOCK_EX | LOCK_NB) ? 0 : 1);
  }
  int st = 0;
  waitpid(c, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static off_t pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

static long long fsize(int fd) {
  struct stat st;
  return fstat(fd, &st) ? -1 : (long long)st.st_size;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_fileprobe <trigger-file> <work-dir> <mode>");
  const char *trigger = argv[1], *work = argv[2], *mode = argv[3];
  char path[4096], p2[4096];

  if (!strcmp(mode, "lock-wait")) {
    snprintf(path, sizeof path, "%s/lockfile", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) die("open");
    lk(fd, F_SETLK, F_WRLCK, 0, 100);
    int got[2];
    if (pipe(got)) die("pipe");
    pid_t c = fork();
    if (c == 0) {
      close(got[0]);
      int cfd = open(path, O_RDWR);
      struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
      while (fcntl(cfd, F_SETLKW, &fl) && errno == EINTR) {
      }
      put(got[1], "L");
      pause();
      _exit(0);
    }
    close(got[1]);
    /* the child is blocked on the lock (its wait shows in /proc/locks as "->") */
    for (int i = 0; i < 200; i++) {
      FILE *f = fopen("/proc/locks", "r");
      char line[256];
      int seen = 0;
      while (f && fgets(line, sizeof line, f))
        if (strstr(line, "->")) seen = 1;
      if (f) fclose(f);
      if (seen) break;
      usleep(10000);
    }
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    usleep(200000);
    fcntl(got[0], F_SETFL, O_NONBLOCK);
    char b = 0;
    ssize_t r = read(got[0], &b, 1);
    check("lock-wait-held", r == -1 && errno == EAGAIN, "%zd: the child took the lock while the parent holds it", r);
    pid_t by = 0;
    int t = probe_lock(path, F_RDLCK, 0, 5, &by);
    check("lock-wait-parent", t == F_WRLCK && by == getpid(), "type %d by %d", t, by);
    lk(fd, F_SETLK, F_UNLCK, 0, 0);
    fcntl(got[0], F_SETFL, 0);
    r = read(got[0], &b, 1);
    check("lock-wait-child-gets", r == 1 && b == 'L', "%zd", r);
    t = probe_lock(path, F_RDLCK, 10, 10, &by);
    check("lock-wait-child-holds", t == F_WRLCK && by == c, "type %d by %d (child %d)", t, by, c);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
  } else if (!strcmp(mode, "lock-ranges")) {
    snprintf(path, sizeof path, "%s/ranges", work);
    snprintf(p2, sizeof p2, "%s/readonly", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    int ro0 = open(p2, O_RDWR | O_CREAT, 0644);
    close(ro0);
    int ro = open(p2, O_RDONLY);
    if (fd < 0 || ro < 0) die("open");
    lk(fd, F_SETLK, F_RDLCK, 0, 10);
    lk(fd, F_SETLK, F_WRLCK, 20, 10);
    lk(fd, F_SETLK, F_RDLCK, 40, 0);
    lk(fd, F_SETLK, F_WRLCK, 50, 5); /* splits the read lock to EOF */
    lk(ro, F_SETLK, F_RDLCK, 0, 0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    pid_t me = getpid(), by = 0;
    int a = probe_lock(path, F_WRLCK, 0, 10, &by);
    int b = probe_lock(path, F_RDLCK, 0, 10, NULL);
    check("lock-ranges-rd", a == F_RDLCK && by == me && b == F_UNLCK, "%d by %d, %d", a, by, b);
    a = probe_lock(path, F_RDLCK, 20, 10, &by);
    b = probe_lock(path, F_WRLCK, 10, 10, NULL);
    check("lock-ranges-wr", a == F_WRLCK && by == me && b == F_UNLCK, "%d by %d, gap %d", a, by, b);
    a = probe_lock(path, F_RDLCK, 50, 5, NULL);
    b = probe_lock(path, F_RDLCK, 56, 1000, NULL);
    int c = probe_lock(path, F_WRLCK, 1000000, 1, NULL);
    check("lock-ranges-split", a == F_WRLCK && b == F_UNLCK && c == F_RDLCK, "%d %d %d", a, b, c);
    a = probe_lock(p2, F_WRLCK, 0, 1, &by);
    check("lock-ranges-readonly", a == F_RDLCK && by == me, "%d by %d", a, by);
  } else if (!strcmp(mode, "ofd-fork")) {
    snprintf(path, sizeof path, "%s/ofd", work);
    snprintf(p2, sizeof p2, "%s/flock", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    int f1 = open(p2, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || f1 < 0) die("open");
    lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10);
    if (flock(f1, LOCK_SH)) die("flock");
    int go[2];
    if (pipe(go)) die("pipe");
    pid_t c = fork();
    if (c == 0) {
      close(go[1]);
      close(f1);
      int f2 = open(p2, O_RDONLY);
      if (f2 < 0 || flock(f2, LOCK_SH)) _exit(3);
      char x;
      if (read(go[0], &x, 1) != 1) _exit(4); /* after the restore: drop both */
      close(fd);
      flock(f2, LOCK_UN);
      _exit(0);
    }
    close(go[0]);
    usleep(100000);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int fresh = open(path, O_RDWR);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    int r = fcntl(fresh, F_OFD_GETLK, &fl);
    check("ofd-fork-held", !r && fl.l_type == F_WRLCK, "%d type %d", r, fl.l_type);
    check("flock-sh-two", !flock_free(p2), "a LOCK_EX on a new description succeeded");
    put(go[1], "x");
    int st = 0;
    waitpid(c, &st, 0);
    check("ofd-fork-child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %x", st);
    struct flock f2 = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    r = fcntl(fresh, F_OFD_GETLK, &f2);
    check("ofd-fork-still", !r && f2.l_type == F_WRLCK, "%d type %d (the child's close dropped it)", r, f2.l_type);
    check("flock-sh-one", !flock_free(p2), "the parent's LOCK_SH is gone");
    flock(f1, LOCK_UN);
    check("flock-sh-none", flock_free(p2), "still locked after both let go");
  } else if (!strcmp(mode, "memfd-huge")) {
    int fd = memfd_create("huge", MFD_HUGETLB);
    if (fd < 0) die("memfd_create MFD_HUGETLB");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct statfs sf;
    int r = fstatfs(fd, &sf);
    check("memfd-huge", !r && (unsigned long)sf.f_type == HUGETLBFS_MAGIC, "f_type %lx", (unsigned long)sf.f_type);
  } else if (!strcmp(mode, "open-flags")) {
    char a[4096], t[4096], e[4096], ap[4096], nf[4096], be[4096];
    snprintf(a, sizeof a, "%s/direct", work);
    snprintf(t, sizeof t, "%s/trunc", work);
    snprintf(e, sizeof e, "%s/excl", work);
    snprintf(ap, sizeof ap, "%s/append", work);
    snprintf(nf, sizeof nf, "%s/nofollow", work);
    snprintf(be, sizeof be, "%s/beyond", work);
    int fa = open(a, O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (fa < 0) die("open O_DIRECT");
    void *buf;
    if (posix_memalign(&buf, 4096, 4096)) die("memalign");
    memset(buf, 'd', 4096);
    if (write(fa, buf, 4096) != 4096) die("write O_DIRECT");
    int ft0 = open(t, O_RDWR | O_CREAT, 0644);
    put(ft0, "old content");
    close(ft0);
    int ft = open(t, O_RDWR | O_TRUNC);
    put(ft, "new content"); /* as long as the old: a reopen with O_TRUNC would empty it */
    int fe = open(e, O_RDWR | O_CREAT | O_EXCL, 0644);
    put(fe, "excl");
    int fap = open(ap, O_RDWR | O_CREAT | O_APPEND, 0644);
    put(fap, "one");
    put(fap, "two");
    lseek(fap, 1, SEEK_SET);
    int fn0 = open(nf, O_RDWR | O_CREAT, 0644);
    close(fn0);
    int fn = open(nf, O_RDWR | O_NOFOLLOW);
    int fb = open(be, O_RDWR | O_CREAT, 0644);
    put(fb, "0123456789");
    lseek(fb, 1 << 20, SEEK_SET);
    if (ft < 0 || fe < 0 || fap < 0 || fn < 0 || fb < 0) die("open");
    int fla = fcntl(fa, F_GETFL), flt = fcntl(ft, F_GETFL), fle = fcntl(fe, F_GETFL), flap = fcntl(fap, F_GETFL);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    check("o-direct", fcntl(fa, F_GETFL) == fla && (fla & O_DIRECT), "%x, was %x", fcntl(fa, F_GETFL), fla);
    lseek(fa, 0, SEEK_SET);
    memset(buf, 0, 4096);
    ssize_t r = read(fa, buf, 4096);
    check("o-direct-read", r == 4096 && ((char *)buf)[4095] == 'd', "%zd %s", r, r < 0 ? strerror(errno) : "");
    check("o-trunc-kept", fsize(ft) == 11 && pos(ft) == 11 && fcntl(ft, F_GETFL) == flt, "size %lld pos %lld flags %x/%x",
          fsize(ft), (long long)pos(ft), fcntl(ft, F_GETFL), flt);
    check("o-excl", fsize(fe) == 4 && pos(fe) == 4 && fcntl(fe, F_GETFL) == fle, "size %lld pos %lld", fsize(fe),
          (long long)pos(fe));
    check("o-append-pos", pos(fap) == 1 && fcntl(fap, F_GETFL) == flap, "pos %lld flags %x/%x", (long long)pos(fap),
          fcntl(fap, F_GETFL), flap);
    put(fap, "3");
    check("o-append-write", pos(fap) == 7 && fsize(fap) == 7, "pos %lld size %lld", (long long)pos(fap), fsize(fap));
    struct stat s1, s2;
    check("o-nofollow", !fstat(fn, &s1) && !stat(nf, &s2) && s1.st_ino == s2.st_ino, "");
    check("beyond-eof", pos(fb) == 1 << 20 && fsize(fb) == 10, "pos %lld size %lld", (long long)pos(fb), fsize(fb));
  } else if (!strcmp(mode, "tmpfile-excl") || !strcmp(mode, "tmpfile-excl-gap")) {
    int fx = open(work, O_TMPFILE | O_RDWR | O_EXCL, 0600);
    int fl = open(work, O_TMPFILE | O_RDWR, 0600);
    if (fx < 0 || fl < 0) die("O_TMPFILE");
    put(fx, "excl");
    put(fl, "linkable");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fx);
    snprintf(path, sizeof path, "%s/linked-excl", work);
    int r;
    if (!strcmp(mode, "tmpfile-excl-gap")) { /* a known gap: comes back linkable */
      r = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
      check("tmpfile-excl-unlinkable", r == -1, "linkat of an O_TMPFILE|O_EXCL file succeeded");
    }
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fl);
    snprintf(path, sizeof path, "%s/linked", work);
    r = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
    check("tmpfile-linkable", r == 0, "linkat: %s", strerror(errno));
    struct stat st;
    check("tmpfile-content", !fstat(fl, &st) && st.st_size == 8 && pos(fl) == 8 && pos(fx) == 4, "size %lld",
          (long long)st.st_size);
  } else if (!strcmp(mode, "file-moved")) {
    char z[4096], mv[4096], sub[4096], hl[4096], hl2[4096];
    snprintf(z, sizeof z, "%s/zero", work);
    snprintf(mv, sizeof mv, "%s/moved", work);
    snprintf(sub, sizeof sub, "%s/sub", work);
    snprintf(hl, sizeof hl, "%s/hard", work);
    snprintf(hl2, sizeof hl2, "%s/hard2", work);
    int fz = open(z, O_RDWR | O_CREAT, 0644);
    int fm = open(mv, O_RDWR | O_CREAT, 0644);
    int fh = open(hl, O_RDWR | O_CREAT, 0644);
    if (fz < 0 || fm < 0 || fh < 0 || mkdir(sub, 0755)) die("open");
    put(fz, "zz");
    put(fm, "mm");
    put(fh, "hh");
    fchmod(fz, 0);
    snprintf(path, sizeof path, "%s/sub/moved-here", work);
    if (rename(mv, path)) die("rename");
    if (link(hl, hl2)) die("link");
    struct stat z0, m0, h0;
    int zfl = fcntl(fz, F_GETFL);
    fstat(fz, &z0);
    fstat(fm, &m0);
    fstat(fh, &h0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat z1, m1, h1;
    fstat(fz, &z1);
    fstat(fm, &m1);
    fstat(fh, &h1);
    check("mode-000", z1.st_ino == z0.st_ino && (z1.st_mode & 07777) == 0 && pos(fz) == 2 &&
                          fcntl(fz, F_GETFL) == zfl,
          "ino %lu/%lu mode %o pos %lld flags %x", z1.st_ino, z0.st_ino, z1.st_mode & 07777, (long long)pos(fz),
          fcntl(fz, F_GETFL));
    check("moved-dir", m1.st_ino == m0.st_ino && pos(fm) == 2, "ino %lu/%lu", m1.st_ino, m0.st_ino);
    check("hard-link", h1.st_ino == h0.st_ino && h1.st_nlink == 2, "ino %lu/%lu nlink %lu", h1.st_ino, h0.st_ino,
          (unsigned long)h1.st_nlink);
  } else if (!strcmp(mode, "dir-fds")) {
    char d[4096], d2[4096], cw[4096], cw2[4096];
    snprintf(d, sizeof d, "%s/d", work);
    snprintf(d2, sizeof d2, "%s/d-renamed", work);
    snprintf(cw, sizeof cw, "%s/cwd", work);
    snprintf(cw2, sizeof cw2, "%s/d-renamed/cwd-moved", work);
    if (mkdir(d, 0755) || mkdir(cw, 0755)) die("mkdir");
    int dfd = open(d, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || chdir(cw)) die("open dir");
    int f = openat(dfd, "inside", O_RDWR | O_CREAT, 0644);
    put(f, "in");
    close(f);
    if (rename(d, d2) || rename(cw, cw2)) die("rename");
    struct stat c0;
    stat(".", &c0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    f = openat(dfd, "inside", O_RDONLY);
    char b[4] = {0};
    check("dirfd-openat", f >= 0 && read(f, b, 4) == 2 && !strcmp(b, "in"), "%d", f);
    int g = openat(dfd, "made-after", O_RDWR | O_CREAT, 0644);
    snprintf(path, sizeof path, "%s/made-after", d2);
    check("dirfd-create", g >= 0 && !access(path, F_OK), "");
    struct stat c1;
    char here[4096];
    check("cwd-moved", !stat(".", &c1) && c1.st_ino == c0.st_ino && getcwd(here, sizeof here) && !strcmp(here, cw2),
          "%s", here);
  } else if (!strcmp(mode, "shm")) {
    char name[64];
    snprintf(name, sizeof name, "/cryo-fileprobe-%d", getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) die("shm_open");
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) die("mmap");
    strcpy(m, "shm-before");
    lseek(fd, 3, SEEK_SET);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int other = shm_open(name, O_RDWR, 0);
    char b[16] = {0};
    pread(other, b, 10, 0);
    check("shm-content", !strcmp(b, "shm-before") && pos(fd) == 3, "'%s' pos %lld", b, (long long)pos(fd));
    strcpy(m, "shm-after!");
    pread(other, b, 10, 0);
    struct stat s1, s2;
    fstat(fd, &s1);
    fstat(other, &s2);
    check("shm-same-object", !strcmp(b, "shm-after!") && s1.st_ino == s2.st_ino, "'%s'", b);
    shm_unlink(name);
  } else if (!strcmp(mode, "proc-mem")) {
    static volatile unsigned long long secret = 0x1122334455667788ULL;
    int mem = open("/proc/self/mem", O_RDWR);
    int pm = open("/proc/self/pagemap", O_RDONLY);
    int sys = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY);
    if (sys < 0) sys = open("/sys/kernel/kexec_loaded", O_RDONLY);
    if (mem < 0 || pm < 0 || sys < 0) die("open");
    lseek(mem, (off_t)(unsigned long)&secret, SEEK_SET);
    off_t pmpos = (off_t)((unsigned long)&secret / 4096 * 8);
    lseek(pm, pmpos, SEEK_SET);
    char sb[256] = {0};
    ssize_t sn = pread(sys, sb, sizeof sb - 1, 0);
    char first[2];
    if (read(sys, first, 2) != 2) die("read sys");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    unsigned long long v = 0;
    ssize_t r = read(mem, (void *)&v, 8);
    check("proc-mem", r == 8 && v == 0x1122334455667788ULL, "%zd %llx", r, v);
    unsigned long long ent = 0;
    check("proc-pagemap", pos(pm) == pmpos && read(pm, &ent, 8) == 8 && (ent >> 63), "pos %lld ent %llx",
          (long long)pos(pm), ent);
    char rest[256] = {0};
    ssize_t rn = read(sys, rest, sizeof rest - 1);
    check("sys-pos", rn == sn - 2 && !memcmp(rest, sb + 2, rn > 0 ? rn : 0), "%zd of %zd", rn, sn);
  } else if (!strcmp(mode, "sparse-fds")) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_max < 4096) die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl)) die("setrlimit");
    const int far = (int)rl.rlim_max - 1;
    snprintf(path, sizeof path, "%s/far", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    put(fd, "far");
    if (dup2(fd, far) != far) die("dup2");
    if (fd != 3) {
      if (dup2(fd, 3) != 3) die("dup2 3");
      close(fd);
    }
    int p[2];
    if (pipe(p)) die("pipe"); /* 4 and 5: then closed, and the fd table gapped */
    close(p[0]);
    close(p[1]);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat a, b;
    int ok = !fstat(far, &a) && !fstat(3, &b) && a.st_ino == b.st_ino && pos(far) == 3;
    check("fd-far", ok, "fd %d", far);
    int open_fds = 0;
    for (int i = 4; i < far; i++)
      if (fcntl(i, F_GETFD) != -1) open_fds++;
    check("fd-gaps", open_fds == 0, "%d more fds open above 3", open_fds);
    struct rlimit now;
    getrlimit(RLIMIT_NOFILE, &now);
    check("fd-rlimit", now.rlim_cur == rl.rlim_max, "%lu", (unsigned long)now.rlim_cur);
  } else if (!strcmp(mode, "fifo-size")) {
    snprintf(path, sizeof path, "%s/fifo", work);
    if (mkfifo(path, 0600)) die("mkfifo");
    int f = open(path, O_RDWR);
    int p[2];
    if (f < 0 || pipe(p)) die("open fifo");
    int sz = fcntl(f, F_SETPIPE_SZ, 1 << 20), psz = fcntl(p[0], F_SETPIPE_SZ, 256 << 10);
    if (sz < 0 || psz < 0) die("F_SETPIPE_SZ");
    put(f, "fifo");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int now = fcntl(f, F_GETPIPE_SZ), pnow = fcntl(p[1], F_GETPIPE_SZ);
    check("fifo-pipe-sz", now == sz, "%d, was %d", now, sz);
    check("pipe-sz", pnow == psz, "%d, was %d", pnow, psz);
  } else if (!strcmp(mode, "ghost-sparse")) {
    char e[4096], s[4096], fa[4096];
    snprintf(e, sizeof e, "%s/empty", work);
    snprintf(s, sizeof s, "%s/sparse", work);
    snprintf(fa, sizeof fa, "%s/falloc", work);
    int fe = open(e, O_RDWR | O_CREAT, 0644);
    int fs = open(s, O_RDWR | O_CREAT, 0644);
    int ff = open(fa, O_RDWR | O_CREAT, 0644);
    if (fe < 0 || fs < 0 || ff < 0) die("open");
    if (ftruncate(fs, 1LL << 30)) die("ftruncate");
    char blk[4096];
    memset(blk, 's', sizeof blk);
    if (pwrite(fs, blk, sizeof blk, 512LL << 20) != 4096) die("pwrite");
    if (fallocate(ff, 0, 0, 1 << 20)) die("fallocate");
    if (pwrite(ff, "data", 4, 8192) != 4) die("pwrite");
    if (fallocate(ff, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)) die("fallocate keep");
    lseek(fs, 12345, SEEK_SET);
    unlink(e);
    unlink(s);
    unlink(fa);
    struct stat ffs0;
    fstat(ff, &ffs0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat st;
    check("ghost-empty", !fstat(fe, &st) && st.st_size == 0 && st.st_nlink == 0, "size %lld", (long long)st.st_size);
    check("ghost-sparse-size", !fstat(fs, &st) && st.st_size == 1LL << 30 && pos(fs) == 12345, "size %lld pos %lld",
          (long long)st.st_size, (long long)pos(fs));
    off_t d = lseek(fs, 0, SEEK_DATA);
    char b[4096];
    int got = pread(fs, b, sizeof b, 512LL << 20) == 4096 && b[0] == 's' && b[4095] == 's';
    check("ghost-sparse-data", d == 512LL << 20 && got, "first data at %lld", (long long)d);
    check("ghost-sparse-blocks", st.st_blocks <= 64, "%lld blocks", (long long)st.st_blocks);
    memset(b, 1, 16);
    fstat(ff, &st);
    int z = pread(ff, b, 16, 4096) == 16 && !b[0] && !b[15];
    check("ghost-falloc", st.st_size == 1 << 20 && z && pread(ff, b, 4, 8192) == 4 && !memcmp(b, "data", 4),
          "size %lld", (long long)st.st_size);
    check("ghost-falloc-blocks", st.st_blocks == ffs0.st_blocks, "%lld blocks, were %lld", (long long)st.st_blocks,
          (long long)ffs0.st_blocks);
  } else if (!strcmp(mode, "far-fd")) {
    snprintf(path, sizeof path, "%s/far", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    put(fd, "far");
    if (fd < 0 || dup2(fd, 15000) != 15000 || (fd != 3 && (dup2(fd, 3) != 3 || close(fd)))) die("dup2");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat a, b;
    check("far-fd", !fstat(15000, &a) && !fstat(3, &b) && a.st_ino == b.st_ino && pos(15000) == 3, "");
    int open_fds = 0;
    for (int i = 4; i < (int)rl.rlim_max; i++)
      if (i != 15000 && fcntl(i, F_GETFD) != -1) open_fds++;
    check("far-fd-gaps", open_fds == 0, "%d more fds open above 3", open_fds);
  } else if (!strcmp(mode, "root-moved")) {
    /* the work dir is reached through an fd: the chroot hides it */
    int wfd = open(work, O_RDONLY | O_DIRECTORY);
    if (wfd < 0 || mkdirat(wfd, "root", 0755)) die("mkdir");
    int m = openat(wfd, "root/marker", O_CREAT | O_RDWR, 0644);
    close(m);
    struct stat r0;
    int outside = openat(wfd, "outside", O_RDWR | O_CREAT, 0644); /* a file outside the new root */
    put(outside, "out");
    struct stat o0;
    fstat(outside, &o0);
    if (fstatat(wfd, "root", &r0, 0) || chroot(work) || chdir("/root") || chroot(".") || chdir("/")) die("chroot");
    if (renameat(wfd, "root", wfd, "root-renamed")) die("rename");
    print_ready("pid=%d", getpid());
    for (int i = 0; faccessat(wfd, "go", F_OK, 0); i++) {
      if (i > 6000) die("trigger");
      usleep(20000);
    }
    struct stat r1;
    check("root-moved", !stat("/", &r1) && r1.st_ino == r0.st_ino && !access("/marker", F_OK), "ino %lu/%lu",
          r1.st_ino, r0.st_ino);
    struct stat o1;
    check("root-outside-fd", !fstat(outside, &o1) && o1.st_ino == o0.st_ino && pos(outside) == 3, "ino %lu/%lu",
          o1.st_ino, o0.st_ino);
  } else if (!strcmp(mode, "cwd-deleted")) {
    snprintf(path, sizeof path, "%s/gone", work);
    if (mkdir(path, 0755) || chdir(path) || rmdir(path)) die("cwd");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat st;
    char here[4096] = "";
    int r = getcwd(here, sizeof here) ? 0 : errno;
    check("cwd-deleted", !stat(".", &st) && st.st_nlink == 0 && r == ENOENT, "nlink %lu getcwd %s (%s)",
          (unsigned long)st.st_nlink, here, strerror(r));
  } else if (!strcmp(mode, "odd-names")) {
    char a[4096], b[4096], d[4096];
    snprintf(a, sizeof a, "%s/x (deleted)", work);
    snprintf(b, sizeof b, "%s/new\nline", work);
    snprintf(d, sizeof d, "%s/sp ace\nnl", work);
    int fa = open(a, O_RDWR | O_CREAT, 0644), fb = open(b, O_RDWR | O_CREAT, 0644);
    if (fa < 0 || fb < 0 || mkdir(d, 0755) || chdir(d)) die("open");
    put(fa, "a");
    put(fb, "bb");
    struct stat sa0, sb0, sd0;
    fstat(fa, &sa0);
    fstat(fb, &sb0);
    stat(".", &sd0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat sa, sb, sd, sn;
    check("name-deleted-suffix", !fstat(fa, &sa) && sa.st_ino == sa0.st_ino && sa.st_nlink == 1 && !stat(a, &sn) &&
                                     sn.st_ino == sa.st_ino && pos(fa) == 1,
          "ino %lu/%lu nlink %lu", sa.st_ino, sa0.st_ino, (unsigned long)sa.st_nlink);
    check("name-newline", !fstat(fb, &sb) && sb.st_ino == sb0.st_ino && pos(fb) == 2, "ino %lu/%lu", sb.st_ino,
          sb0.st_ino);
    check("cwd-newline", !stat(".", &sd) && sd.st_ino == sd0.st_ino, "ino %lu/%lu", sd.st_ino, sd0.st_ino);
  } else if (!strcmp(mode, "ofd-wait")) {
    snprintf(path, sizeof path, "%s/ofdwait", work);
    snprintf(p2, sizeof p2, "%s/flockwait", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644), ff = open(p2, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ff < 0) die("open");
    lk(fd, F_OFD_SETLK, F_WRLCK, 0, 10);
    if (flock(ff, LOCK_EX)) die("flock");
    int got[2];
    if (pipe(got)) die("pipe");
    pid_t c1 = fork();
    if (c1 == 0) {
      int cfd = open(path, O_RDWR);
      struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1};
      while (fcntl(cfd, F_OFD_SETLKW, &fl) && errno == EINTR) {
      }
      put(got[1], "O");
      pause();
      _exit(0);
    }
    pid_t c2 = fork();
    if (c2 == 0) {
      int cf = open(p2, O_RDONLY);
      while (flock(cf, LOCK_SH) && errno == EINTR) {
      }
      put(got[1], "F");
      pause();
      _exit(0);
    }
    close(got[1]);
    for (int i = 0; i < 200; i++) {
      FILE *f = fopen("/proc/locks", "r");
      char line[256];
      int seen = 0;
      while (f && fgets(line, sizeof line, f))
        if (strstr(line, "->")) seen++;
      if (f) fclose(f);
      if (seen >= 2) break;
      usleep(10000);
    }
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    usleep(200000);
    fcntl(got[0], F_SETFL, O_NONBLOCK);
    char b[4] = {0};
    ssize_t r = read(got[0], b, sizeof b);
    check("waiters-blocked", r == -1 && errno == EAGAIN, "%zd '%.2s': a waiter got its lock while it is held", r, b);
    lk(fd, F_OFD_SETLK, F_UNLCK, 0, 0);
    fcntl(got[0], F_SETFL, 0);
    r = read(got[0], b, 1);
    check("ofd-waiter-gets", r == 1 && b[0] == 'O', "%zd '%c'", r, b[0]);
    flock(ff, LOCK_UN);
    r = read(got[0], b, 1);
    check("flock-waiter-gets", r == 1 && b[0] == 'F', "%zd '%c'", r, b[0]);
    kill(c1, SIGKILL);
    kill(c2, SIGKILL);
    waitpid(c1, NULL, 0);
    waitpid(c2, NULL, 0);
  } else if (!strcmp(mode, "ghost-dir-gone")) {
    char d[4096];
    snprintf(d, sizeof d, "%s/dir", work);
    snprintf(path, sizeof path, "%s/dir/file", work);
    if (mkdir(d, 0755)) die("mkdir");
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    put(fd, "ghost");
    if (unlink(path) || rmdir(d)) die("rmdir");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    char b[8] = {0};
    check("ghost-dir-gone", pread(fd, b, 5, 0) == 5 && !strcmp(b, "ghost") && pos(fd) == 5, "'%s'", b);
    char link[4096] = {0}, want[4200], proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, link, sizeof link - 1);
    snprintf(want, sizeof want, "%s (deleted)", path);
    check("ghost-dir-gone-link", n > 0 && !strcmp(link, want), "'%s'", link);
    check("ghost-dir-gone-dir", access(d, F_OK) == -1 && errno == ENOENT, "the directory is there again");
  } else if (!strcmp(mode, "opath-deleted")) {
    snprintf(path, sizeof path, "%s/opath", work);
    int w = open(path, O_RDWR | O_CREAT, 0644);
    put(w, "content");
    int fd = open(path, O_PATH);
    struct stat s0;
    fstat(fd, &s0);
    unlink(path);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat s1, s2;
    int fl = fcntl(fd, F_GETFL);
    check("opath-deleted", (fl & O_PATH) && !fstat(fd, &s1) && !fstat(w, &s2) && s1.st_ino == s2.st_ino &&
                               s1.st_size == 7 && s1.st_nlink == 0,
          "flags %x ino %lu/%lu size %lld", fl, s1.st_ino, s2.st_ino, (long long)s1.st_size);
  } else if (!strcmp(mode, "shadowed")) {
    char d[4096];
    snprintf(d, sizeof d, "%s/dir", work);
    snprintf(path, sizeof path, "%s/dir/file", work);
    if (mkdir(d, 0755)) die("mkdir");
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    put(fd, "under");
    struct stat s0;
    fstat(fd, &s0);
    if (mount("none", d, "tmpfs", 0, "size=1m")) die("mount");
    int over = open(path, O_RDWR | O_CREAT, 0644);
    put(over, "over!");
    close(over);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    struct stat s1;
    char b[8] = {0};
    check("shadowed", !fstat(fd, &s1) && s1.st_ino == s0.st_ino && s1.st_dev == s0.st_dev &&
                          pread(fd, b, 5, 0) == 5 && !strcmp(b, "under"),
          "dev %lx/%lx ino %lu/%lu '%s'", (unsigned long)s1.st_dev, (unsigned long)s0.st_dev, s1.st_ino, s0.st_ino, b);
    umount2(d, MNT_DETACH);
  } else if (!strcmp(mode, "immutable")) {
    char ap[4096];
    snprintf(path, sizeof path, "%s/immutable", work);
    snprintf(ap, sizeof ap, "%s/appendonly", work);
    int fd = open(path, O_RDWR | O_CREAT, 0644), fa = open(ap, O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || fa < 0) die("open");
    put(fd, "imm");
    int fl = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &fl)) die("getflags");
    int fi = fl | FS_IMMUTABLE_FL, fap = fl | FS_APPEND_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &fi) || ioctl(fa, FS_IOC_SETFLAGS, &fap)) die("setflags");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    int ffl = fcntl(fd, F_GETFL);
    check("immutable-fd", (ffl & O_ACCMODE) == O_RDWR && pos(fd) == 3, "flags %x", ffl);
    ssize_t w = write(fd, "x", 1);
    check("immutable-write", w == -1 && errno == EPERM, "%zd", w);
    check("appendonly-fd", (fcntl(fa, F_GETFL) & O_ACCMODE) == O_WRONLY, "flags %x", fcntl(fa, F_GETFL));
    if (ioctl(fd, FS_IOC_SETFLAGS, &fl) || ioctl(fa, FS_IOC_SETFLAGS, &fl)) printf("could not clear the flags\n");
  } else if (!strcmp(mode, "memfd-falloc")) {
    int mf = memfd_create("falloc", 0);
    if (mf < 0 || fallocate(mf, 0, 0, 1 << 20) || fallocate(mf, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20))
      die("fallocate memfd");
    if (pwrite(mf, "data", 4, 8192) != 4) die("pwrite");
    struct stat mfs0, st;
    fstat(mf, &mfs0);
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    fstat(mf, &st);
    check("memfd-falloc-blocks", st.st_blocks == mfs0.st_blocks && st.st_size == 1 << 20, "%lld blocks, were %lld",
          (long long)st.st_blocks, (long long)mfs0.st_blocks);
  } else if (!strcmp(mode, "inotify-moved")) {
    char d[4096], other[4096], d2[4096];
    snprintf(d, sizeof d, "%s/watched", work);
    snprintf(other, sizeof other, "%s/other", work);
    snprintf(d2, sizeof d2, "%s/other/watched-moved", work);
    if (mkdir(d, 0755) || mkdir(other, 0755)) die("mkdir");
    int in = inotify_init1(IN_NONBLOCK);
    int wd = inotify_add_watch(in, d, IN_CREATE);
    if (in < 0 || wd < 0) die("inotify");
    if (rename(d, d2)) die("rename");
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    snprintf(path, sizeof path, "%s/new", d2);
    int f = open(path, O_CREAT | O_RDWR, 0644);
    close(f);
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(in, buf, sizeof buf);
    struct inotify_event *ev = (struct inotify_event *)buf;
    check("inotify-moved", n > 0 && ev->wd == wd && (ev->mask & IN_CREATE) && !strcmp(ev->name, "new"), "%zd wd %d/%d",
          n, n > 0 ? ev->wd : -1, wd);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}
