/* Round-trip target for runs of adjacent private anonymous mappings
 * (tests/restore_anon_runs_test.ts, engine/restore/anon_runs.ts): in a
 * reserved region of N pages, N one-page mappings side by side, each with
 * a pseudo-random protection (read-write, read-only, none), touched or
 * not, and madvise flags (MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP),
 * some of them moved into place with mremap (their page offsets do not
 * follow on, so the kernel keeps them apart from an alike neighbour).
 * Neighbours alike in everything merge as the kernel likes. Before
 * waiting it records every area of the region (maps line and VmFlags, in
 * order); after the restore it checks the same list and every page's
 * content.
 *
 * usage: rt_anon_runs <trigger-path> <N> <seed>
 * Prints "ready pid=N areas=N", waits for the trigger file.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define MAXN 4096
#define MAXAREAS (MAXN + 16)

static unsigned char *region, *scratch;
static int n;
static unsigned seed;
/* Per page: 0 untouched, else the pattern seed; and whether it is readable. */
static unsigned char touched[MAXN], readable[MAXN];
/* The areas of the region: "start-end perms" and VmFlags, before [0] and after [1]. */
static char areas[2][MAXAREAS][192];
static int nareas[2];
static char text[16 << 20];

static unsigned next_rand(void) {
  seed = seed * 1103515245u + 12345u;
  return (seed >> 16) & 0x7fff;
}

static unsigned char pattern(int i, size_t j) { return (unsigned char)(i * 11 + j * 7 + 3); }

static long read_all(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, text + len, sizeof text - 1 - len);
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  text[len] = 0;
  return (long)len;
}

/* Records the areas inside the region into slot s (maps line without dev/inode, then VmFlags). */
static int record(int s) {
  if (read_all("/proc/self/smaps") <= 0) return -1;
  int k = -1;
  nareas[s] = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long start, end;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && strchr(line, ' ')) {
      k = -1;
      if (start >= (unsigned long)region && end <= (unsigned long)region + n * PAGE) {
        if (nareas[s] >= MAXAREAS) return -1;
        k = nareas[s]++;
        snprintf(areas[s][k], sizeof areas[s][k], "%lx-%lx %s", start, end, perms);
      }
    } else if (k >= 0 && !strncmp(line, "VmFlags:", 8)) {
      size_t used = strlen(areas[s][k]);
      snprintf(areas[s][k] + used, sizeof areas[s][k] - used, " |%s", line + 8);
      k = -1;
    }
  }
  return nareas[s];
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: rt_anon_runs <trigger> <N> <seed>\n");
    return 2;
  }
  n = atoi(argv[2]);
  seed = (unsigned)atoi(argv[3]);
  if (n <= 0 || n > MAXN) return 2;
  /* The region, with a free page on each side; a scratch range elsewhere for the moved ones. */
  unsigned char *r = mmap(NULL, (n + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  scratch = mmap(NULL, 4 * PAGE * (size_t)n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED || scratch == MAP_FAILED || munmap(r, (n + 2) * PAGE) != 0 ||
      munmap(scratch, 4 * PAGE * (size_t)n) != 0)
    return 2;
  region = r + PAGE;
  for (int i = 0; i < n; i++) {
    unsigned x = next_rand();
    int prot = x % 8 == 0 ? PROT_NONE : x % 3 == 0 ? PROT_READ : PROT_READ | PROT_WRITE;
    int touch = prot != PROT_NONE && (x / 8) % 4 != 0;
    int moved = (x / 32) % 5 == 0;
    unsigned char *want = region + (size_t)i * PAGE;
    unsigned char *at = moved ? scratch + (size_t)i * 4 * PAGE : want;
    unsigned char *p = mmap(at, PAGE, PROT_READ | PROT_WRITE,
                            MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != at) {
      perror("mmap");
      return 2;
    }
    if (touch)
      for (size_t j = 0; j < PAGE; j++) p[j] = pattern(i, j);
    touched[i] = (unsigned char)touch;
    readable[i] = prot != PROT_NONE;
    if (prot != (PROT_READ | PROT_WRITE)) mprotect(p, PAGE, prot);
    unsigned f = (x / 160) % 8;
    if (f == 1) madvise(p, PAGE, MADV_DONTFORK);
    if (f == 2) madvise(p, PAGE, MADV_WIPEONFORK);
    if (f == 3) madvise(p, PAGE, MADV_DONTDUMP);
    if (moved && mremap(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, want) != want) {
      perror("mremap");
      return 2;
    }
  }
  if (record(0) <= 0) {
    fprintf(stderr, "no areas recorded\n");
    return 2;
  }
  print_ready("pid=%d areas=%d", getpid(), nareas[0]);
  wait_trigger(argv[1]);

  int seen = record(1);
  int areas_ok = seen == nareas[0];
  for (int k = 0; k < nareas[0] && k < seen; k++) {
    if (strcmp(areas[0][k], areas[1][k])) {
      if (areas_ok) printf("info area %d: before %s | after %s\n", k, areas[0][k], areas[1][k]);
      areas_ok = 0;
    }
  }
  int content_ok = 1, bad = -1;
  for (int i = 0; i < n && content_ok; i++) {
    if (!readable[i]) continue;
    const unsigned char *p = region + (size_t)i * PAGE;
    for (size_t j = 0; j < PAGE; j++) {
      if (p[j] != (touched[i] ? pattern(i, j) : 0)) {
        content_ok = 0;
        bad = i;
        break;
      }
    }
  }
  check("areas", areas_ok, "%d areas after, %d before", seen, nareas[0]);
  check("content", content_ok, "page %d", bad);
  return verdict();
}
