/* Round-trip target for the shared zero page (tests/zeropage_test.ts): a
 * private area only read maps the zero page (or the huge zero page), which
 * holds zeros and is not counted in Rss; the dump must leave those pages
 * out of the image and the restore must leave them unpopulated.
 *
 * Setup: a 64 MiB area between two PROT_NONE pages (its own smaps entry),
 * every page read, then every 64th page written with a pattern. Modes:
 *   anon:    MAP_PRIVATE|MAP_ANONYMOUS, MADV_NOHUGEPAGE (4 KiB zero pages);
 *   devzero: MAP_PRIVATE of /dev/zero (anonymous memory behind a file name);
 *   thp:     MAP_PRIVATE|MAP_ANONYMOUS, 2 MiB aligned, MADV_HUGEPAGE (the
 *            huge zero page where THP allows it; a written 2 MiB piece
 *            becomes a huge page, in the original and in the restored one:
 *            only every 4th piece is written);
 *   fork:    anon, then a forked child drops pages 0 to 127 of its copy
 *            (MADV_DONTNEED) and reads them again (the zero page where its
 *            parent has pages 0 and 64) and writes page 96: restored by
 *            inheritance, its image stores page 96 alone and discards 0
 *            and 64. The child checks itself first (contents, Rss at most
 *            its Rss before plus 2 MiB), then the parent (and the child's exit).
 *
 * usage: rt_zeropage <trigger-path> <mode>
 * Prints "ready pid=N rss=KB" (the area's Rss after the setup), then waits
 * for the trigger file. If "<trigger-path>.more" appears first, it also
 * writes the pattern into every 64th page from page 32 (zero pages until
 * then), prints "more written", and waits on. After the trigger it reads
 * the area's Rss first (before any read maps the zero page again), checks
 * it is at most the Rss before plus 2 MiB and at most the written pages
 * plus 2 MiB (2 MiB per written piece in thp mode), then checks
 * every page: the pattern where written, zeros elsewhere.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define AREA (64UL << 20)
#define HUGE (2UL << 20)
#define STRIDE 64
#define SLACK_KB 2048L

static char *area;
static int more, thp, child;
static pid_t kid = -1;
static char text[1 << 20];

static unsigned char pattern(size_t page, size_t j) { return (unsigned char)(page * 13 + j * 7 + 1); }

static void write_page(size_t page) {
  for (size_t j = 0; j < PAGE; j++) area[page * PAGE + j] = (char)pattern(page, j);
}

/* Whether page `page` is written: every 64th (and with "more" every 64th from 32); in
 * thp mode only in every 4th 2 MiB piece (each written piece is a huge page). */
static int written(size_t page) {
  if (child && page < 128) return page == 96;
  if (thp && (page / (HUGE / PAGE)) % 4 != 0) return 0;
  return page % STRIDE == 0 || (more && page % STRIDE == 32);
}

/* The Rss line of the smaps entry starting at `area`, in kB (-1: not found). */
static long area_rss_kb(void) {
  int fd = open("/proc/self/smaps", O_RDONLY);
  if (fd < 0) return -1;
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, text + len, sizeof text - 1 - len);
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  text[len] = 0;
  int in = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long start, end;
    char perms[8];
    long kb;
    if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) in = start == (unsigned long)area;
    else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_zeropage <trigger-path> anon|devzero|thp|fork");
  const char *trigger = argv[1], *mode = argv[2];
  char more_path[4096];
  thp = !strcmp(mode, "thp");
  snprintf(more_path, sizeof more_path, "%s.more", trigger);

  /* Reserve room with a PROT_NONE page either side (2 MiB aligned for thp). */
  size_t room = AREA + 2 * HUGE;
  char *res = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) die("mmap reserve");
  char *at = (char *)(((uintptr_t)res + HUGE + HUGE - 1) & ~(HUGE - 1));
  int prot = PROT_READ | PROT_WRITE;
  if (!strcmp(mode, "devzero")) {
    int fd = open("/dev/zero", O_RDWR);
    if (fd < 0) die("open /dev/zero");
    area = mmap(at, AREA, prot, MAP_PRIVATE | MAP_FIXED, fd, 0);
    close(fd);
  } else if (!strcmp(mode, "anon") || !strcmp(mode, "thp") || !strcmp(mode, "fork")) {
    area = mmap(at, AREA, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  if (area == MAP_FAILED) die("mmap area");
  if (madvise(area, AREA, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) die("madvise");

  long sum = 0;
  for (size_t i = 0; i < AREA; i += PAGE) sum += *(volatile char *)(area + i);
  if (sum != 0) die_err("read-touch: not zeros", EINVAL);
  for (size_t p = 0; p < AREA / PAGE; p++) if (written(p)) write_page(p);
  if (!strcmp(mode, "fork")) {
    kid = fork();
    if (kid < 0) die("fork");
    if (kid == 0) {
      child = 1;
      if (madvise(area, 128 * PAGE, MADV_DONTNEED)) die("madvise DONTNEED");
      for (size_t i = 0; i < 128 * PAGE; i += PAGE) sum += *(volatile char *)(area + i);
      write_page(96);
    } else {
      /* The child is set up before the test is told it is ready. */
      char path[4096];
      snprintf(path, sizeof path, "%s.child", trigger);
      struct timespec ts = {0, 10 * 1000 * 1000};
      while (access(path, F_OK) != 0) nanosleep(&ts, NULL);
    }
  }
  long before = area_rss_kb();
  if (child) {
    char path[4096];
    snprintf(path, sizeof path, "%s.child", trigger);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd < 0) die("create the child's file");
    close(fd);
  } else {
    print_ready("pid=%d rss=%ld", getpid(), before);
  }

  struct timespec ts = {0, 20 * 1000 * 1000};
  for (int rounds = 0; access(trigger, F_OK) != 0; rounds++) {
    if (rounds > 6000) die_err("waiting for the trigger", ETIMEDOUT);
    if (!more && access(more_path, F_OK) == 0) {
      more = 1;
      for (size_t p = 0; p < AREA / PAGE; p++) if (written(p) && p % STRIDE == 32) write_page(p);
      before = area_rss_kb();
      printf("more written rss=%ld\n", before);
      fflush(stdout);
    }
    nanosleep(&ts, NULL);
  }

  long after = area_rss_kb();
  if (kid > 0) {
    int st = 0;
    pid_t w = waitpid(kid, &st, 0);
    check("child-exit", w == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait status %#x", st);
  }
  long pages = 0, pieces = 0;
  for (size_t p = 0; p < AREA / PAGE; p++) pages += written(p);
  for (size_t h = 0; h < AREA / HUGE; h++) {
    int any = 0;
    for (size_t p = h * (HUGE / PAGE); p < (h + 1) * (HUGE / PAGE); p++) any |= written(p);
    pieces += any;
  }
  long bound = thp ? pieces * (long)(HUGE >> 10) : pages * (long)(PAGE >> 10);
  printf("info %s mode=%s rss before=%ld after=%ld kB, written %ld pages\n", child ? "child" : "parent",
         mode, before, after, pages);
  check("rss-before", before >= 0 && before <= bound + SLACK_KB, "%ld kB, bound %ld", before,
        bound);
  check("rss-after", after >= 0 && after <= before + SLACK_KB && after <= bound + SLACK_KB,
        "%ld kB after the restore, %ld before, bound %ld", after, before, bound);
  size_t bad = 0, first_bad = 0;
  for (size_t p = 0; p < AREA / PAGE; p++) {
    for (size_t j = 0; j < PAGE; j += 64) {
      unsigned char want = written(p) ? pattern(p, j) : 0;
      if ((unsigned char)area[p * PAGE + j] != want) {
        if (!bad++) first_bad = p;
        break;
      }
    }
  }
  check("contents", bad == 0, "%zu pages differ, the first %zu", bad, first_bad);
  return verdict();
}
