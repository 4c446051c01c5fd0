/* Huge page (hugetlb) memory round trip (tests/restore_hugetlb_test.ts).
 *
 * usage: rt_hugetlb <trigger-file> <mode>
 *   private: a private anonymous MAP_HUGETLB area of three 2 MiB pages, two
 *            of them written with a pattern (the third never touched);
 *   shared:  a shared anonymous MAP_HUGETLB area of two 2 MiB pages shared
 *            with a forked child: the parent writes the first page, the
 *            child the second (which the parent never maps in before the
 *            dump); after the restore both see both, and each writes a
 *            byte the other must see (one object again);
 *   memfd:   two MFD_HUGETLB memfds of two 2 MiB pages, the first page of
 *            each written through a mapping: one stays mapped shared (its
 *            fd kept too), the other is held by its fd alone. After the
 *            restore both read the pattern (pread on the fd), are still
 *            hugetlbfs (st_blksize 2 MiB), the mapping is hugetlb and
 *            shows the fd's pages (a write through it is read by pread);
 *   deleted <dir>: the same file removed before the dump (held by its fd
 *            and mappings): made again there, removed, of huge pages;
 *   file <dir>: a file of two 2 MiB pages on the hugetlbfs mount <dir>, its
 *            first page written through a shared mapping; a private mapping
 *            of it whose first page is written too (copy on write). After
 *            the restore the shared mapping shows the file, the private
 *            one its own copy, both hugetlb.
 *
 * Prints "info hugetlb=unavailable <error>" when the kernel gives no huge
 * page (then checks nothing), else "ready pid=N", waits for the trigger
 * file (dumped, killed and restored meanwhile), then checks the pattern,
 * that each area is still hugetlb (KernelPageSize 2048 kB in smaps) at the
 * same address, and prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define HUGE (2UL << 20)

static void fill(unsigned char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) p[i] = (unsigned char)(i / 512 * 7 + seed);
}

static int same(const unsigned char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) {
    if (p[i] != (unsigned char)(i / 512 * 7 + seed)) return 0;
  }
  return 1;
}

/* The KernelPageSize (kB) of the area at `at`, from /proc/self/smaps; -1 if not found. */
static long kernel_page_kb(const void *at) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int in = 0;
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)at >= s && (uintptr_t)at < e;
      continue;
    }
    if (in && sscanf(line, "KernelPageSize: %ld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb;
}

static unsigned char *map_huge(size_t len, int flags) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) {
    printf("info hugetlb=unavailable mmap: %s\n", strerror(errno));
    print_ready("pid=%d", getpid());
    return NULL;
  }
  return p;
}

static int run_private(const char *trigger) {
  unsigned char *a = map_huge(3 * HUGE, MAP_PRIVATE);
  if (!a) {
    wait_trigger(trigger);
    return verdict();
  }
  fill(a, HUGE, 11);
  fill(a + 2 * HUGE, HUGE, 29);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  check("private-contents", same(a, HUGE, 11) && same(a + 2 * HUGE, HUGE, 29), "pattern differs");
  long kb = kernel_page_kb(a);
  check("private-hugetlb", kb == 2048, "KernelPageSize %ld kB", kb);
  check("private-untouched", a[HUGE] == 0 && a[2 * HUGE - 1] == 0, "the untouched page is not zero");
  return verdict();
}

static int run_shared(const char *trigger) {
  unsigned char *a = map_huge(2 * HUGE, MAP_SHARED);
  if (!a) {
    wait_trigger(trigger);
    return verdict();
  }
  fill(a, HUGE, 5);
  int toChild[2], toParent[2];
  if (pipe(toChild) || pipe(toParent)) die_err("pipe", errno);
  pid_t child = fork();
  if (child < 0) die_err("fork", errno);
  if (child == 0) {
    char c;
    fill(a + HUGE, HUGE, 5 + HUGE / 512 * 7);
    if (write(toParent[1], "w", 1) != 1) _exit(2);
    if (read(toChild[0], &c, 1) != 1) _exit(2);
    /* 'y', or which check failed: 'c' contents, 's' not shared, 'h' not hugetlb. */
    unsigned char first = a[0];
    a[0] = 5; /* the pattern's first byte, so that the whole area can be compared */
    char ok = !same(a, 2 * HUGE, 5) ? 'c'
              : first != 0xa1                     ? 's'
              : kernel_page_kb(a) != 2048         ? 'h'
                                                  : 'y';
    a[1] = 0xb2;
    if (write(toParent[1], &ok, 1) != 1) _exit(2);
    _exit(ok == 'y' ? 0 : 1);
  }
  char written = 0;
  if (read(toParent[0], &written, 1) != 1) die_err("read", errno);
  printf("info child=%d\n", child); /* the test ends it too, whatever happens */
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  check("shared-contents", same(a, 2 * HUGE, 5), "pattern differs");
  long kb = kernel_page_kb(a);
  check("shared-hugetlb", kb == 2048, "KernelPageSize %ld kB", kb);
  a[0] = 0xa1;
  char answer = 0;
  if (write(toChild[1], "g", 1) != 1 || read(toParent[0], &answer, 1) != 1) answer = '?';
  check("shared-child-sees", answer == 'y', "child answered %c", answer);
  check("shared-parent-sees", a[1] == 0xb2, "byte 1 is %#x", a[1]);
  int status = 0;
  waitpid(child, &status, 0);
  check("shared-child-exit", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
  return verdict();
}

static int huge_memfd(const char *name, int seed, unsigned char **mapped) {
  int fd = memfd_create(name, MFD_HUGETLB);
  if (fd < 0 || ftruncate(fd, 2 * HUGE)) return -1;
  unsigned char *m = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return -1;
  fill(m, HUGE, seed);
  if (mapped) *mapped = m;
  else munmap(m, 2 * HUGE);
  return fd;
}

/* Whether the first huge page of `fd` holds the pattern of `seed` and the second zeros (pread). */
static int memfd_same(int fd, int seed) {
  static unsigned char buf[HUGE];
  if (pread(fd, buf, HUGE, 0) != (ssize_t)HUGE || !same(buf, HUGE, seed)) return 0;
  if (pread(fd, buf, HUGE, HUGE) != (ssize_t)HUGE) return 0;
  for (size_t i = 0; i < HUGE; i++) if (buf[i]) return 0;
  return 1;
}

static int run_memfd(const char *trigger) {
  unsigned char *m = NULL;
  int a = huge_memfd("huge-mapped", 3, &m);
  int b = a < 0 ? -1 : huge_memfd("huge-fd", 17, NULL);
  if (a < 0 || b < 0) {
    printf("info hugetlb=unavailable memfd: %s\n", strerror(errno));
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    return verdict();
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  check("memfd-mapped-contents", same(m, HUGE, 3) && memfd_same(a, 3), "pattern differs");
  check("memfd-fd-contents", memfd_same(b, 17), "pattern differs");
  struct stat sa, sb;
  int st = fstat(a, &sa) == 0 && fstat(b, &sb) == 0;
  check("memfd-hugetlbfs", st && sa.st_blksize == (long)HUGE && sb.st_blksize == (long)HUGE,
        "st_blksize %ld %ld", (long)sa.st_blksize, (long)sb.st_blksize);
  long kb = kernel_page_kb(m);
  check("memfd-mapping-hugetlb", kb == 2048, "KernelPageSize %ld kB", kb);
  m[HUGE + 1] = 0x5a;
  unsigned char c = 0;
  check("memfd-mapping-shared", pread(a, &c, 1, HUGE + 1) == 1 && c == 0x5a, "read %#x", c);
  return verdict();
}

static int run_file(const char *trigger, const char *dir, int deleted) {
  char path[4096];
  snprintf(path, sizeof path, "%s/huge", dir);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  unsigned char *sh = MAP_FAILED, *pr = MAP_FAILED;
  if (fd >= 0 && !ftruncate(fd, 2 * HUGE)) {
    sh = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pr = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  }
  if (sh == MAP_FAILED || pr == MAP_FAILED) {
    printf("info hugetlb=unavailable file: %s\n", strerror(errno));
    print_ready("pid=%d", getpid());
    wait_trigger(trigger);
    return verdict();
  }
  fill(sh, HUGE, 9);
  fill(pr, HUGE, 41); /* its own copy: the file keeps seed 9 */
  if (deleted) unlink(path);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  if (deleted) {
    char fdpath[64], link[4200] = "", want[4200];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(fdpath, link, sizeof link - 1);
    if (n > 0) link[n] = 0;
    snprintf(want, sizeof want, "%s (deleted)", path);
    struct stat st;
    check("file-deleted", !strcmp(link, want) && fstat(fd, &st) == 0 && st.st_nlink == 0 &&
                              st.st_blksize == HUGE && st.st_size == 2 * HUGE,
          "fd %s, nlink %lu", link, (unsigned long)st.st_nlink);
  }
  check("file-shared-contents", same(sh, HUGE, 9) && memfd_same(fd, 9), "pattern differs");
  check("file-private-contents", same(pr, HUGE, 41), "pattern differs");
  long ks = kernel_page_kb(sh), kp = kernel_page_kb(pr);
  check("file-hugetlb", ks == 2048 && kp == 2048, "KernelPageSize %ld %ld kB", ks, kp);
  sh[HUGE + 1] = 0x6b;
  unsigned char c = 0;
  check("file-shared-follows", pread(fd, &c, 1, HUGE + 1) == 1 && c == 0x6b, "read %#x", c);
  unlink(path);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_hugetlb <trigger-file> <private|shared>");
  if (!strcmp(argv[2], "private")) return run_private(argv[1]);
  if (!strcmp(argv[2], "shared")) return run_shared(argv[1]);
  if (!strcmp(argv[2], "memfd")) return run_memfd(argv[1]);
  if (!strcmp(argv[2], "file") && argc > 3) return run_file(argv[1], argv[3], 0);
  if (!strcmp(argv[2], "deleted") && argc > 3) return run_file(argv[1], argv[3], 1);
  fprintf(stderr, "unknown mode %s\n", argv[2]);
  return 2;
}
