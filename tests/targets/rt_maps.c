/* Round-trip target for many mappings (tests/restore_maps_test.ts): N
 * one- or two-page mappings of six kinds, one unmapped page between each
 * two (so that none merge): private anonymous read-write and read-only,
 * shared anonymous, private file-backed with a written (copy-on-write)
 * page, untouched anonymous, and anonymous with MADV_WIPEONFORK; each
 * touched page holds a pattern of its index. Then RUN one-page private
 * anonymous mappings side by side (the restore maps such runs together,
 * engine/restore/anon_runs.ts), each unlike its neighbours: read-write,
 * read-only, untouched read-write, read-only, MADV_DONTFORK,
 * MADV_WIPEONFORK, untouched read-only (accounted, without pages), and
 * every eighth one PROT_NONE. Then MOVED one-page areas side by side that
 * the kernel keeps apart although alike (read-write, read-write,
 * read-write, read-only, read-only; all but the first of each kind made
 * elsewhere and moved there with mremap, so their page offsets do not
 * follow on): the restore must not merge them. Before waiting it records the
 * maps line and the VmFlags of every one of them; after the restore it
 * checks that the lines, the VmFlags and the contents are the same.
 *
 * usage: rt_maps <trigger-path> <work-dir> <N>
 * Prints "ready pid=N base=0x... count=N", waits for the trigger file.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define MAXN 8192
/* Mappings side by side after the N spaced ones, then the moved ones. */
#define RUN 64
#define MOVED 5
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

static unsigned char *base, *run, *moved;
static int count; /* the spaced mappings; RUN more follow them */
/* Per mapping: its maps line (without the inode of shared anonymous memory) and VmFlags. */
static char lines[2][MAXN][160];
static char flags[2][MAXN][160];
static char text[8 << 20];

static unsigned char pattern(int i, size_t j) { return (unsigned char)(i * 7 + j * 13 + 1); }
static int kind_of(int i) { return i % 6; }
/* Kind of mapping count + j of the run: 0..6 as in the comment above, 7 PROT_NONE. */
static int run_kind(int j) { return j % 8 == 7 ? 7 : j % 7; }
static int untouched(int i) {
  if (i < count) return kind_of(i) == 4;
  if (i >= count + RUN) return 0;
  int k = run_kind(i - count);
  return k == 2 || k == 6 || k == 7;
}
static size_t pages_of(int i) { return i >= count ? 1 : i % 5 == 0 ? 2 : 1; }
static unsigned char *addr_of(int i) {
  if (i < count) return base + (size_t)i * 3 * PAGE;
  if (i < count + RUN) return run + (size_t)(i - count) * PAGE;
  return moved + (size_t)(i - count - RUN) * PAGE;
}

static long read_all(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, text + n, sizeof text - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  text[n] = 0;
  return (long)n;
}

/* Index of the mapping starting at `start`, or -1. */
static int index_of(unsigned long start) {
  if (start >= (unsigned long)run && start < (unsigned long)run + RUN * PAGE)
    return count + (int)((start - (unsigned long)run) / PAGE);
  if (start >= (unsigned long)moved && start < (unsigned long)moved + MOVED * PAGE)
    return count + RUN + (int)((start - (unsigned long)moved) / PAGE);
  unsigned long off = start - (unsigned long)base;
  if (start < (unsigned long)base || off % (3 * PAGE)) return -1;
  unsigned long i = off / (3 * PAGE);
  return i < (unsigned long)count ? (int)i : -1;
}

/* Records the maps line and VmFlags of every mapping into slot `s`; returns how many were seen. */
static int record(int s) {
  if (read_all("/proc/self/smaps") <= 0) return -1;
  int seen = 0, cur = -1;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long start, end;
    char perms[8], dev[16];
    unsigned long offset, inode;
    int pos = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &start, &end, perms, &offset, dev, &inode,
               &pos) == 6) {
      cur = index_of(start);
      if (cur < 0) continue;
      const char *path = line + pos;
      /* Shared anonymous memory is a new shmem object after a restore (another inode). */
      int shmem = !strncmp(path, "/dev/zero", 9);
      snprintf(lines[s][cur], sizeof lines[s][cur], "%lx-%lx %s %lx %s %lu %s", start, end, perms,
               offset, shmem ? "-" : dev, shmem ? 0 : inode, path);
      seen++;
    } else if (cur >= 0 && !strncmp(line, "VmFlags:", 8)) {
      snprintf(flags[s][cur], sizeof flags[s][cur], "%s", line + 8);
      cur = -1;
    }
  }
  return seen;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: rt_maps <trigger> <work-dir> <N>\n");
    return 2;
  }
  count = atoi(argv[3]);
  if (count <= 0 || count > MAXN - RUN - MOVED) return 2;
  char file[4096];
  snprintf(file, sizeof file, "%s/rt_maps.bin", argv[2]);
  int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)count * 2 * PAGE) != 0) {
    perror("file");
    return 2;
  }
  size_t span = (size_t)count * 3 * PAGE;
  base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED || munmap(base, span) != 0) return 2;
  for (int i = 0; i < count; i++) {
    size_t len = pages_of(i) * PAGE;
    int k = kind_of(i);
    int prot = PROT_READ | PROT_WRITE;
    int flags_ = MAP_FIXED_NOREPLACE | (k == 2 ? MAP_SHARED : MAP_PRIVATE);
    void *p = k == 3 ? mmap(addr_of(i), len, prot, flags_, fd, (off_t)i / 3 * PAGE)
                     : mmap(addr_of(i), len, prot, flags_ | MAP_ANONYMOUS, -1, 0);
    if (p != addr_of(i)) {
      perror("mmap");
      return 2;
    }
    if (k != 4)
      for (size_t j = 0; j < len; j++) addr_of(i)[j] = pattern(i, j);
    if (k == 1) mprotect(p, len, PROT_READ);
    if (k == 5) madvise(p, len, MADV_WIPEONFORK);
  }
  /* The run: reserved with a free page on each side, then mapped page by page. */
  unsigned char *r = mmap(NULL, (RUN + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED || munmap(r, (RUN + 2) * PAGE) != 0) return 2;
  run = r + PAGE;
  for (int j = 0; j < RUN; j++) {
    int i = count + j, k = run_kind(j);
    unsigned char *p = mmap(addr_of(i), PAGE, k == 7 ? PROT_NONE : PROT_READ | PROT_WRITE,
                            MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != addr_of(i)) {
      perror("mmap run");
      return 2;
    }
    if (!untouched(i))
      for (size_t b = 0; b < PAGE; b++) p[b] = pattern(i, b);
    if (k == 1 || k == 3 || k == 6) mprotect(p, PAGE, PROT_READ);
    if (k == 4) madvise(p, PAGE, MADV_DONTFORK);
    if (k == 5) madvise(p, PAGE, MADV_WIPEONFORK);
  }
  /* The moved ones: 0 and 3 made in place, the others made 8 pages apart in a
   * scratch range and moved next to them (read-only ones made read-only first). */
  unsigned char *m = mmap(NULL, (MOVED + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char *scratch = mmap(NULL, 8 * MOVED * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || scratch == MAP_FAILED || munmap(m, (MOVED + 2) * PAGE) != 0 ||
      munmap(scratch, 8 * MOVED * PAGE) != 0)
    return 2;
  moved = m + PAGE;
  for (int j = 0; j < MOVED; j++) {
    int i = count + RUN + j;
    int in_place = j == 0 || j == 3;
    unsigned char *at = in_place ? addr_of(i) : scratch + (size_t)j * 8 * PAGE;
    unsigned char *p = mmap(at, PAGE, PROT_READ | PROT_WRITE,
                            MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != at) {
      perror("mmap moved");
      return 2;
    }
    for (size_t b = 0; b < PAGE; b++) p[b] = pattern(i, b);
    if (j >= 3) mprotect(p, PAGE, PROT_READ);
    if (!in_place && mremap(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, addr_of(i)) != addr_of(i)) {
      perror("mremap");
      return 2;
    }
  }
  int total = count + RUN + MOVED;
  int seen = record(0);
  if (seen != total) {
    fprintf(stderr, "recorded %d of %d mappings\n", seen, total);
    return 2;
  }
  print_ready("pid=%d base=%p count=%d", getpid(), (void *)base, count);
  wait_trigger(argv[1]);

  int seen_after = record(1);
  int lines_ok = seen_after == total, flags_ok = 1, content_ok = 1;
  int bad = -1;
  for (int i = 0; i < total; i++) {
    if (strcmp(lines[0][i], lines[1][i])) {
      if (lines_ok) printf("info line %d: before %s | after %s\n", i, lines[0][i], lines[1][i]);
      lines_ok = 0;
    }
    if (strcmp(flags[0][i], flags[1][i])) {
      if (flags_ok) printf("info flags %d: before %s | after %s\n", i, flags[0][i], flags[1][i]);
      flags_ok = 0;
    }
    size_t len = pages_of(i) * PAGE;
    if (i >= count && i < count + RUN && run_kind(i - count) == 7) continue; /* PROT_NONE */
    for (size_t j = 0; j < len && content_ok; j++) {
      unsigned char want = untouched(i) ? 0 : pattern(i, j);
      if (addr_of(i)[j] != want) {
        content_ok = 0;
        bad = i;
      }
    }
  }
  check("lines", lines_ok, "%d of %d mappings seen after", seen_after, total);
  check("vmflags", flags_ok, "");
  check("content", content_ok, "mapping %d", bad);
  /* The shared file mapping's pages are private: the file itself was never written. */
  unsigned char b = 1;
  check("file-untouched", pread(fd, &b, 1, PAGE) == 1 && b == 0, "byte %lu is %u", PAGE, b);
  return verdict();
}
