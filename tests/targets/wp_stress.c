/* Write-tracking stress target: several threads write random pages all
 * the time, so that a pre-copied dump (engine/dump/precopy.ts: the pages
 * write-protected and copied while the tree runs, the written ones taken
 * again at the dump's freeze) would show any write the tracking missed.
 * tests/precopy_stress_test.ts reads the memory at the dump's freeze and
 * compares it with the image byte for byte.
 *
 * A region of <mib> MiB (private anonymous, 2 MiB aligned): the first half
 * in 4 KiB pages (MADV_NOHUGEPAGE), the second half MADV_HUGEPAGE (THP).
 * At start a quarter of the pages are written, a quarter only read (the
 * shared zero page, or the huge zero page), the rest never touched. The odd
 * pages of the 4 KiB half are never touched: the even ones are more than 512
 * separate runs, so the protecting PAGEMAP_SCAN fills its region buffer and
 * resumes its walk several times. Then
 * <threads> writers pick random pages of the whole region (first touches of
 * never-touched pages, writes over zero pages and into THPs included; two
 * threads often hit the same page) and write in it: an atomic counter in
 * word 0, the writer's own counter in word 1 + writer, and a few words
 * spread over the page. A reader thread reads random pages (zero pages
 * mapped while the dump runs). The writers write only the pages of a window
 * (one 64-page group in eight) that moves every 2 ms, when a dropper thread
 * also drops pages with MADV_DONTNEED: some 4 KiB pages of the first half,
 * and every 16 ms in the THP half one 4 KiB page (its PMD split) or a whole
 * 2 MiB; dropped pages stay absent until a writer or the reader touches
 * them first again.
 *
 * Once the trigger file exists the writers stop; it checks that the writers
 * wrote, prints PASS or FAIL and exits.
 *
 * With "dio", one more thread reads the two 64 MiB halves of a file (made
 * in the trigger's directory, each 4 KiB stamped with its offset) in turn
 * with O_DIRECT into a buffer of the brk heap (its 1 MiB pieces from the
 * highest address down, so the lowest pages are filled last): the kernel writes those
 * pages through references pinned when the read began (no fault). Once a
 * read ends with a page of the buffer write-protected (the dump's tracking
 * was armed while it was in flight), the thread waits until the protection
 * is gone (the dump is over): the buffer holds what that read brought,
 * written after the protection without a fault.
 *
 * usage: wp_stress <trigger> <mib> <threads> [dio]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define HUGE (2u << 20)
#define MAX_WRITERS 16

static uint64_t *base;
static size_t pages;
static atomic_int stop;
static atomic_ulong total;
/* Writers write only the pages of one window in eight, which moves with the epoch. */
static atomic_uint epoch;

struct writer {
  pthread_t th;
  int id;
};

static uint64_t next(uint64_t *seed) {
  *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
  return *seed >> 17;
}

static void *write_loop(void *arg) {
  struct writer *w = arg;
  uint64_t seed = 0x1234567ull * (uint64_t)(w->id + 1), mine = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    uint64_t r = next(&seed);
    size_t p = (size_t)(r % pages);
    /* One thread in four also hammers a small shared set (same pages from two threads). */
    if (w->id % 4 == 0 && (r >> 40) % 2 == 0) p = (size_t)((r >> 20) % 64) * 37 % pages;
    if ((p / 64 + atomic_load_explicit(&epoch, memory_order_relaxed)) % 8 != 0) continue;
    if (p < pages / 2) p &= ~(size_t)1; /* odd pages of the 4 KiB half stay absent */
    uint64_t *page = base + p * WORDS;
    __atomic_fetch_add(&page[0], 1, __ATOMIC_RELAXED);
    page[1 + w->id] = ++mine;
    page[32 + (r >> 8) % (WORDS - 32)] = r ^ mine;
    atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
  }
  return NULL;
}

static void *read_loop(void *arg) {
  (void)arg;
  uint64_t seed = 99, sum = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    size_t p = (size_t)(next(&seed) % pages);
    if (p < pages / 2) p &= ~(size_t)1;
    sum += *(volatile uint64_t *)(base + p * WORDS + 7);
  }
  return (void *)(uintptr_t)sum;
}

/* Moves the writers' window and drops pages (never touched again, or touched first again). */
static void *drop_loop(void *arg) {
  (void)arg;
  uint64_t seed = 4242, n = 0;
  size_t half = pages / 2;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    sleep_ms(2);
    atomic_fetch_add_explicit(&epoch, 1, memory_order_relaxed);
    uint64_t r = next(&seed);
    size_t p = (size_t)(r % (half - 16));
    if (madvise(base + p * WORDS, (1 + (r >> 40) % 16) * PAGE, MADV_DONTNEED) != 0) die("madvise");
    /* In the THP half, every 16th tick: a whole 2 MiB (faulted again as a THP or the huge
     * zero page), or one 4 KiB page of it (its PMD split), 8 ticks apart. */
    if (++n % 8 != 0) continue;
    p = half + (size_t)((r >> 20) % half);
    if (n % 16 == 0) p &= ~(size_t)511;
    if (madvise(base + p * WORDS, n % 16 == 0 ? HUGE : PAGE, MADV_DONTNEED) != 0) die("madvise");
  }
  return NULL;
}

#define DIO_BLOCK (64u << 20)
#define DIO_BLOCKS 2u
#define DIO_BUFS 1u
static int dio_fd = -1;
static char *dio_buf;
static atomic_ulong dio_reads, dio_stops;

/* Makes the file, stamped per 4 KiB, synced and out of the page cache. */
static void dio_setup(const char *trigger) {
  /* In the brk heap: low addresses, so the pre-copy copies them first. */
  char *cur = sbrk(0);
  size_t pad = (size_t)(-(uintptr_t)cur & (PAGE - 1));
  dio_buf = sbrk((intptr_t)(pad + DIO_BUFS * DIO_BLOCK));
  if (dio_buf == (void *)-1) die("sbrk");
  dio_buf += pad;
  char path[4096];
  snprintf(path, sizeof path, "%s.dio", trigger);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open dio file");
  uint64_t *block = (uint64_t *)dio_buf;
  for (uint64_t b = 0; b < DIO_BLOCKS; b++) {
    for (uint64_t w = 0; w < DIO_BLOCK / 8; w++) block[w] = (b * DIO_BLOCK + w * 8) ^ 0x5a5a0000;
    if (write(fd, block, DIO_BLOCK) != (ssize_t)DIO_BLOCK) die("write dio file");
  }
  if (fsync(fd) != 0) die("fsync");
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  dio_fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (dio_fd < 0) die("open O_DIRECT");
  unlink(path);
  memset(dio_buf, 0, DIO_BUFS * DIO_BLOCK);
}

/* Whether any page of the O_DIRECT buffer is write-protected (pagemap bit 57). */
static int dio_protected(void) {
  static uint64_t e[DIO_BUFS * DIO_BLOCK / PAGE];
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open pagemap");
  ssize_t n = pread(fd, e, sizeof e, (off_t)((uintptr_t)dio_buf / PAGE * 8));
  close(fd);
  if (n != (ssize_t)sizeof e) die("read pagemap");
  for (size_t i = 0; i < sizeof e / 8; i++) {
    if (e[i] >> 57 & 1) return 1;
  }
  return 0;
}

/* Reads blocks into the buffer; when a read ends with the buffer write-protected (the
 * tracking was armed while it was in flight), leaves the buffer alone until the
 * protection is gone (the dump released its tracking). */
static void *dio_loop(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    unsigned long n = atomic_load_explicit(&dio_reads, memory_order_relaxed);
    char *to = dio_buf + (n % DIO_BUFS) * DIO_BLOCK;
    off_t at = (off_t)(n % DIO_BLOCKS * DIO_BLOCK);
    /* The buffer's 1 MiB pieces from the highest address down: the device fills the lowest
     * pages last, while the pre-copy copies them first. */
    struct iovec iov[DIO_BLOCK >> 20];
    for (size_t i = 0; i < DIO_BLOCK >> 20; i++) {
      iov[i].iov_base = to + DIO_BLOCK - ((i + 1) << 20);
      iov[i].iov_len = 1u << 20;
    }
    if (preadv(dio_fd, iov, (int)(DIO_BLOCK >> 20), at) != (ssize_t)DIO_BLOCK) die("preadv");
    atomic_fetch_add_explicit(&dio_reads, 1, memory_order_relaxed);
    /* Armed while that read was in flight: leave the buffer alone until the dump is over. */
    if (!dio_protected()) continue;
    atomic_fetch_add_explicit(&dio_stops, 1, memory_order_relaxed);
    while (dio_protected() && !atomic_load_explicit(&stop, memory_order_relaxed)) sleep_ms(5);
  }
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "wp_stress <trigger> <mib> <threads>");
  const char *trigger = argv[1];
  size_t mib = (size_t)atol(argv[2]);
  int threads = atoi(argv[3]);
  int dio = argc > 4 && strcmp(argv[4], "dio") == 0;
  if (mib < 4 || mib % 4 || threads < 1 || threads > MAX_WRITERS) die_err("arguments", EINVAL);
  if (dio) dio_setup(trigger);
  pages = mib * 256u;
  /* 2 MiB aligned, so that the second half can be PMD-mapped THPs. */
  char *raw = mmap(NULL, pages * PAGE + HUGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) die("mmap");
  char *at = (char *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
  if (at > raw) munmap(raw, (size_t)(at - raw));
  munmap(at + pages * PAGE, (size_t)(raw + HUGE - at));
  base = (uint64_t *)at;
  if (madvise(base, pages / 2 * PAGE, MADV_NOHUGEPAGE) != 0) die("madvise nohugepage");
  if (madvise(base + pages / 2 * WORDS, pages / 2 * PAGE, MADV_HUGEPAGE) != 0) {
    die("madvise hugepage");
  }
  /* A quarter written, a quarter read only, the rest never touched (per 2 MiB in the THP half). */
  uint64_t seed = 7;
  for (size_t p = 0; p < pages; p++) {
    int kind = p < pages / 2 ? (int)(next(&seed) % 4) : (int)((p - pages / 2) / 512 % 4);
    if (p < pages / 2 && p % 2) continue;
    if (kind == 0) base[p * WORDS + 2] = p + 1;
    else if (kind == 1) (void)*(volatile uint64_t *)(base + p * WORDS);
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  struct writer ws[MAX_WRITERS];
  for (int i = 0; i < threads; i++) {
    ws[i].id = i;
    if (pthread_create(&ws[i].th, NULL, write_loop, &ws[i]) != 0) die("pthread_create");
  }
  pthread_t reader;
  if (pthread_create(&reader, NULL, read_loop, NULL) != 0) die("pthread_create");
  pthread_t dio_th;
  if (dio && pthread_create(&dio_th, NULL, dio_loop, NULL) != 0) die("pthread_create");
  pthread_t dropper;
  if (pthread_create(&dropper, NULL, drop_loop, NULL) != 0) die("pthread_create");
  print_ready("pid=%d region=%p pages=%zu", getpid(), (void *)base, pages);

  while (access(trigger, F_OK) != 0) sleep_ms(5);
  atomic_store(&stop, 1);
  for (int i = 0; i < threads; i++) pthread_join(ws[i].th, NULL);
  pthread_join(reader, NULL);
  pthread_join(dropper, NULL);
  if (dio) {
    pthread_join(dio_th, NULL);
    check("dio", atomic_load(&dio_reads) > 0 && atomic_load(&dio_stops) > 0,
          "%lu O_DIRECT reads, %lu armed in flight", atomic_load(&dio_reads),
          atomic_load(&dio_stops));
  }
  unsigned long n = atomic_load(&total);
  check("writes", n > 0, "no write (%lu)", n);
  return verdict();
}
