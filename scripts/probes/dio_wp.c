/* Kernel probe: does a write through pages pinned before their uffd-wp
 * protection (an O_DIRECT read in flight) show as PAGE_IS_WRITTEN?
 *
 * A 4 MiB buffer registered with a WP_ASYNC userfaultfd; per trial a thread
 * starts an O_DIRECT read into it, 0.3 ms later PAGEMAP_SCAN with
 * PM_SCAN_WP_MATCHING protects the buffer, the buffer is copied (the
 * pre-copy), the read ends, and a PAGEMAP_SCAN for PAGE_IS_WRITTEN lists
 * what was written since. Prints per trial the pages changed after the
 * copy and how many of them were not reported written (docs/PERFORMANCE.md,
 * "The write tracking under stress").
 *
 * build: cc -O1 -pthread -o /tmp/dio_wp scripts/probes/dio_wp.c
 * usage: /tmp/dio_wp <file of 32 MiB on a disk that does O_DIRECT> [trials]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/types.h>
struct page_region { __u64 start, end, categories; };
struct pm_scan_arg { __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask; };
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING 1
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define SZ (4u << 20)
static char *buf; static int fd; static atomic_int go, done; static off_t off;
static void *reader(void *a) { (void)a; for (int seen = 0;; seen++) { while (atomic_load(&go) == seen) ; if (pread(fd, buf, SZ, off) != SZ) { perror("pread"); exit(1);} atomic_fetch_add(&done, 1);} }
static long scan(int pm, __u64 flags, __u64 mask, __u64 any, __u64 ret, struct page_region *v, size_t n) {
  struct pm_scan_arg a = { .size = sizeof a, .flags = flags, .start = (uintptr_t)buf, .end = (uintptr_t)buf + SZ,
    .vec = (uintptr_t)v, .vec_len = n, .category_mask = mask, .category_anyof_mask = any, .return_mask = ret };
  return ioctl(pm, PAGEMAP_SCAN, &a);
}
int main(int argc, char **argv) {
  int trials = argc > 2 ? atoi(argv[2]) : 20;
  fd = open(argv[1], O_RDONLY | O_DIRECT); if (fd < 0) { perror("open"); return 1; }
  buf = mmap(NULL, SZ, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  madvise(buf, SZ, MADV_NOHUGEPAGE); memset(buf, 1, SZ);
  char *copy = malloc(SZ);
  int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
  if (ioctl(uffd, UFFDIO_API, &api)) { perror("api"); return 1; }
  struct uffdio_register reg = { .range = { (uintptr_t)buf, SZ }, .mode = UFFDIO_REGISTER_MODE_WP };
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("register"); return 1; }
  int pm = open("/proc/self/pagemap", O_RDONLY);
  static struct page_region v[1024];
  pthread_t th; pthread_create(&th, NULL, reader, NULL);
  int missed_trials = 0; long missed_pages = 0;
  for (int t = 0; t < trials; t++) {
    off = (off_t)(t % 8) * SZ;
    int d0 = atomic_load(&done);
    atomic_fetch_add(&go, 1);                       /* the read starts: buffer pinned, I/O submitted */
    struct timespec ts = { 0, 300000 }; nanosleep(&ts, NULL);
    if (scan(pm, PM_SCAN_WP_MATCHING, 0, PAGE_IS_PRESENT, PAGE_IS_PRESENT, v, 1024) < 0) { perror("wp scan"); return 1; }
    memcpy(copy, buf, SZ);                           /* the pre-copy */
    int early = atomic_load(&done) != d0;
    while (atomic_load(&done) == d0) ;              /* the DMA completes */
    long n = scan(pm, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN, v, 1024);
    long changed = 0, unreported = 0;
    for (size_t p = 0; p < SZ / 4096; p++) {
      if (!memcmp(copy + p * 4096, buf + p * 4096, 4096)) continue;
      changed++;
      uintptr_t a = (uintptr_t)buf + p * 4096; int rep = 0;
      for (long i = 0; i < n; i++) if (a >= v[i].start && a < v[i].end) rep = 1;
      if (!rep) unreported++;
    }
    printf("trial %d: read finished before the copy: %d; pages changed after the copy: %ld, not reported written: %ld\n", t, early, changed, unreported);
    if (unreported) { missed_trials++; missed_pages += unreported; }
  }
  printf("SUMMARY trials=%d with_missed=%d missed_pages=%ld\n", trials, missed_trials, missed_pages);
  return 0;
}
