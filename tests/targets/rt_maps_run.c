/* Round-trip target for one long run of private anonymous mappings
 * (tests/restore_maps_run_test.ts): N one-page mappings side by side, the
 * odd ones read-only (the layout of the bench's maps workload, which the
 * restore maps as one run, engine/restore/anon_runs.ts), among them
 * locked members (mlock on a read-write and on a read-only one,
 * mlock2(MLOCK_ONFAULT)), members with madvise flags (MADV_DONTDUMP,
 * MADV_DONTFORK) and a member with a guard page (MADV_GUARD_INSTALL).
 *
 * usage: rt_maps_run <trigger-file> <N>
 * Prints "ready pid=N start=0x... count=N", waits for the trigger file,
 * then checks that every area of the run has the maps line and VmFlags it
 * had, the same content, the same guard page, and VmLck is what it was.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define MAXN 8192
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

static unsigned char *run;
static int count;
static char lines[2][MAXN][96];
static char flags[2][MAXN][160];
static char text[16 << 20];

/* Members with something of their own (all below 64, so N >= 64). */
#define LOCKED_RW 10
#define LOCKED_RO 21
#define LOCKED_ONFAULT 30
#define DONTDUMP 41
#define DONTFORK 44
#define GUARD 50

static unsigned char pattern(int i, size_t j) { return (unsigned char)(i * 11 + j * 7 + 3); }

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

/* Records the maps line and VmFlags of every area inside the run into slot `s`; returns how
 * many areas were seen there (an area that is not one page counts, and shows in its line). */
static int record(int s) {
  if (read_all("/proc/self/smaps") <= 0) return -1;
  int seen = 0, cur = -1;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long start, end;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && strchr(line, ' ') &&
        line[strspn(line, "0123456789abcdef")] == '-') {
      cur = -1;
      if (start < (unsigned long)run || start >= (unsigned long)run + (unsigned long)count * PAGE)
        continue;
      cur = (int)((start - (unsigned long)run) / PAGE);
      snprintf(lines[s][cur], sizeof lines[s][cur], "%lx-%lx %s", start, end, perms);
      seen++;
    } else if (cur >= 0 && !strncmp(line, "VmFlags:", 8)) {
      snprintf(flags[s][cur], sizeof flags[s][cur], "%s", line + 8);
      cur = -1;
    }
  }
  return seen;
}

/* VmLck of this process in kB. */
static long vmlck(void) {
  if (read_all("/proc/self/status") <= 0) return -1;
  char *p = strstr(text, "VmLck:");
  return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Whether the page at `p` reads through /proc/self/mem (a guard page does not). */
static int readable(unsigned char *p) {
  int mem = open("/proc/self/mem", O_RDONLY);
  if (mem < 0) die("/proc/self/mem");
  unsigned char b;
  int ok = pread(mem, &b, 1, (off_t)(uintptr_t)p) == 1;
  close(mem);
  return ok;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_maps_run <trigger-file> <N>");
  count = atoi(argv[2]);
  if (count < 64 || count > MAXN) return 2;
  /* The run, with a free page on each side. */
  unsigned char *r = mmap(NULL, (size_t)(count + 2) * PAGE, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED || munmap(r, (size_t)(count + 2) * PAGE) != 0) die("reserve");
  run = r + PAGE;
  if (mmap(run, (size_t)count * PAGE, PROT_READ | PROT_WRITE,
           MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != run)
    die("mmap");
  for (int i = 0; i < count; i++)
    for (size_t j = 0; j < PAGE; j++) run[(size_t)i * PAGE + j] = pattern(i, j);
  for (int i = 1; i < count; i += 2)
    if (mprotect(run + (size_t)i * PAGE, PAGE, PROT_READ) != 0) die("mprotect");
  if (mlock(run + LOCKED_RW * PAGE, PAGE) != 0) die("mlock");
  if (mlock(run + LOCKED_RO * PAGE, PAGE) != 0) die("mlock ro");
  if (syscall(SYS_mlock2, run + LOCKED_ONFAULT * PAGE, PAGE, MLOCK_ONFAULT) != 0) die("mlock2");
  if (madvise(run + DONTDUMP * PAGE, PAGE, MADV_DONTDUMP) != 0) die("dontdump");
  if (madvise(run + DONTFORK * PAGE, PAGE, MADV_DONTFORK) != 0) die("dontfork");
  if (madvise(run + GUARD * PAGE, PAGE, MADV_GUARD_INSTALL) != 0) die("guard");
  int seen = record(0);
  long locked = vmlck();
  int guard_before = readable(run + GUARD * PAGE);
  if (seen != count || locked < 12 || guard_before) {
    fprintf(stderr, "recorded %d of %d areas, VmLck %ld kB, guard readable %d\n", seen, count,
            locked, guard_before);
    return 2;
  }
  print_ready("pid=%d start=%p count=%d", getpid(), (void *)run, count);
  wait_trigger(argv[1]);

  int seen_after = record(1);
  int lines_ok = seen_after == seen, flags_ok = 1, bad_line = -1, bad_flags = -1;
  for (int i = 0; i < count; i++) {
    if (strcmp(lines[0][i], lines[1][i]) != 0) {
      lines_ok = 0;
      if (bad_line < 0) bad_line = i;
    }
    if (strcmp(flags[0][i], flags[1][i]) != 0) {
      flags_ok = 0;
      if (bad_flags < 0) bad_flags = i;
    }
  }
  int content_ok = 1, bad = -1;
  for (int i = 0; i < count && content_ok; i++) {
    if (i == GUARD) continue;
    for (size_t j = 0; j < PAGE; j++)
      if (run[(size_t)i * PAGE + j] != pattern(i, j)) {
        content_ok = 0;
        bad = i;
        break;
      }
  }
  check("lines", lines_ok, "%d of %d areas after; first differing %d: '%s' now '%s'", seen_after,
        seen, bad_line, bad_line < 0 ? "" : lines[0][bad_line],
        bad_line < 0 ? "" : lines[1][bad_line]);
  check("vmflags", flags_ok, "first differing %d: '%s' now '%s'", bad_flags,
        bad_flags < 0 ? "" : flags[0][bad_flags], bad_flags < 0 ? "" : flags[1][bad_flags]);
  check("content", content_ok, "member %d", bad);
  check("guard", !readable(run + GUARD * PAGE), "the guard page reads");
  long locked_after = vmlck();
  check("vmlck", locked_after == locked, "VmLck %ld kB, was %ld", locked_after, locked);
  return verdict();
}
