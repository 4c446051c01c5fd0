/* Files with no name to reopen: a file deleted while open (two fds with
 * their own offsets and access modes, a shared mapping, a sparse size and
 * its access and modification times set back),
 * an O_TMPFILE file, a sealed memfd mapped shared and private, and a POSIX
 * shared memory object removed while mapped. Args: <work dir>. Prints
 * "ready pid=<pid>", waits for SIGUSR1 (sent after the restore), checks
 * everything and prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define BIG (64L << 20)

static int same_link(int fd, const char *want) {
  char path[64], got[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, got, sizeof got - 1);
  if (n < 0) return 0;
  got[n] = 0;
  if (strcmp(got, want) != 0) {
    printf("link of fd %d: %s, want %s\n", fd, got, want);
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_ghost <work dir>");
  char path[512], want[600];
  /* 1. A deleted file: content, a hole up to BIG, two fds, a shared mapping. */
  snprintf(path, sizeof path, "%s/deleted.bin", argv[1]);
  int rw = open(path, O_RDWR | O_CREAT | O_EXCL, 0640);
  if (rw < 0) die("create");
  if (pwrite(rw, "hello, ghost", 12, 0) != 12) die("write");
  if (pwrite(rw, "tail", 4, BIG - 4) != 4) die("write tail");
  int ro = open(path, O_RDONLY);
  if (ro < 0) die("open ro");
  char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
  if (map == MAP_FAILED) die("mmap");
  /* Times set back (an extracted archive's file). */
  struct timespec times[2] = {{1000, 250000000}, {123456, 789}};
  if (futimens(rw, times) != 0) die("futimens");
  if (unlink(path) != 0) die("unlink");
  lseek(rw, 3, SEEK_SET);
  lseek(ro, 7, SEEK_SET);
  /* 2. An O_TMPFILE file. */
  int tmpf = open(argv[1], O_TMPFILE | O_RDWR, 0600);
  if (tmpf < 0) die("O_TMPFILE");
  if (write(tmpf, "unnamed", 7) != 7) die("write tmpfile");
  /* Not mapped: its access time too, older than the modification time, which a
   * read of the content would move (relatime). */
  struct timespec tmp_times[2] = {{2000, 5}, {3000, 6}};
  if (futimens(tmpf, tmp_times) != 0) die("futimens tmpfile");
  /* 3. A sealed memfd, mapped shared and private (one private page written). */
  int mfd = memfd_create("cryo-test", MFD_ALLOW_SEALING);
  if (mfd < 0) die("memfd_create");
  if (ftruncate(mfd, 8192) != 0) die("ftruncate");
  if (pwrite(mfd, "memfd data", 10, 0) != 10) die("write memfd");
  if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) die("seals");
  char *mshared = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  char *mpriv = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
  if (mshared == MAP_FAILED || mpriv == MAP_FAILED) die("mmap memfd");
  memcpy(mpriv + 4096, "private copy", 12);
  /* 4. POSIX shared memory removed while mapped. */
  char shmname[64];
  snprintf(shmname, sizeof shmname, "/cryo-ghost-%d", getpid());
  int shm = shm_open(shmname, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (shm < 0) die("shm_open");
  if (ftruncate(shm, 4096) != 0) die("ftruncate shm");
  char *shmap = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
  if (shmap == MAP_FAILED) die("mmap shm");
  close(shm);
  shm_unlink(shmname);
  strcpy(shmap, "posix shm");

  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);

  /* First: the reads below move the access times. The mapped file's access time is
   * moved by the restore's mmap (as any mmap does), its modification time is not. */
  struct stat ts;
  fstat(rw, &ts);
  check("deleted-mtime", ts.st_mtim.tv_sec == 123456 && ts.st_mtim.tv_nsec == 789,
        "mtime %ld.%09ld", (long)ts.st_mtim.tv_sec, ts.st_mtim.tv_nsec);
  fstat(tmpf, &ts);
  check("tmpfile-times",
        ts.st_mtim.tv_sec == 3000 && ts.st_mtim.tv_nsec == 6 && ts.st_atim.tv_sec == 2000 &&
            ts.st_atim.tv_nsec == 5,
        "mtime %ld.%09ld atime %ld.%09ld", (long)ts.st_mtim.tv_sec, ts.st_mtim.tv_nsec,
        (long)ts.st_atim.tv_sec, ts.st_atim.tv_nsec);
  snprintf(want, sizeof want, "%s (deleted)", path);
  check("deleted-name", same_link(rw, want) && same_link(ro, want), "");
  check("deleted-offsets", lseek(rw, 0, SEEK_CUR) == 3 && lseek(ro, 0, SEEK_CUR) == 7, "%ld %ld",
        (long)lseek(rw, 0, SEEK_CUR), (long)lseek(ro, 0, SEEK_CUR));
  char buf[64] = {0};
  check("deleted-content", pread(ro, buf, 12, 0) == 12 && memcmp(buf, "hello, ghost", 12) == 0, "%s", buf);
  memset(buf, 0, sizeof buf);
  check("deleted-tail", pread(ro, buf, 4, BIG - 4) == 4 && memcmp(buf, "tail", 4) == 0, "%s", buf);
  check("deleted-ro", write(ro, "x", 1) < 0 && errno == EBADF, "write on O_RDONLY: errno %d", errno);
  struct stat st;
  fstat(rw, &st);
  check("deleted-size", st.st_size == BIG, "%ld", (long)st.st_size);
  check("deleted-holes", st.st_blocks * 512L < (1L << 20), "%ld blocks", (long)st.st_blocks);
  check("deleted-mode", (st.st_mode & 0777) == 0640 && st.st_nlink == 0, "mode %o nlink %ld",
        st.st_mode & 0777, (long)st.st_nlink);
  check("deleted-map", memcmp(map, "hello, ghost", 12) == 0, "%.12s", map);
  /* The mapping and the fds are one file. */
  map[0] = 'J';
  buf[0] = 0;
  check("deleted-shared", pread(ro, buf, 1, 0) == 1 && buf[0] == 'J', "%c", buf[0]);
  if (pwrite(rw, "Q", 1, 1) != 1) die("pwrite");
  check("deleted-shared-back", map[1] == 'Q', "%c", map[1]);

  snprintf(want, sizeof want, "%s/#", argv[1]);
  char link[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", tmpf);
  ssize_t n = readlink(path, link, sizeof link - 1);
  link[n > 0 ? n : 0] = 0;
  check("tmpfile-dir", strncmp(link, want, strlen(want)) == 0 && strstr(link, " (deleted)") != NULL,
        "%s", link);
  memset(buf, 0, sizeof buf);
  check("tmpfile-content", pread(tmpf, buf, 7, 0) == 7 && memcmp(buf, "unnamed", 7) == 0, "%s", buf);
  check("tmpfile-offset", lseek(tmpf, 0, SEEK_CUR) == 7, "");

  check("memfd-name", same_link(mfd, "/memfd:cryo-test (deleted)"), "");
  check("memfd-seals", fcntl(mfd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "%d",
        fcntl(mfd, F_GET_SEALS));
  check("memfd-grow-refused", ftruncate(mfd, 16384) != 0 && errno == EPERM, "errno %d", errno);
  check("memfd-shared", memcmp(mshared, "memfd data", 10) == 0, "%.10s", mshared);
  mshared[0] = 'M';
  memset(buf, 0, sizeof buf);
  check("memfd-shared-file", pread(mfd, buf, 1, 0) == 1 && buf[0] == 'M', "%c", buf[0]);
  check("memfd-private", memcmp(mpriv + 4096, "private copy", 12) == 0 && mpriv[0] == 'M', "%c", mpriv[0]);
  check("shm", strcmp(shmap, "posix shm") == 0, "%s", shmap);
  return verdict();
}
