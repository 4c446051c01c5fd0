/* Round-trip target for memory details (tests/restore_memflags_test.ts):
 * mlock and mlock2(MLOCK_ONFAULT) on parts of a mapping (also a locked
 * PROT_NONE part), every madvise flag that shows in VmFlags on its own
 * part of one mapping, mprotect splits, a MAP_GROWSDOWN area that grew,
 * MADV_GUARD_INSTALL guard pages, and optionally mlockall(MCL_FUTURE
 * [|MCL_ONFAULT]), PR_SET_THP_DISABLE, PR_SET_MEMORY_MERGE, or a sealed
 * mapping (which the dump must refuse).
 *
 * With "huge", also a 4 MiB area on a 2 MiB boundary with MADV_HUGEPAGE
 * between a plain page and 2 MiB with MADV_NOHUGEPAGE, filled: the restore
 * must give back their contents, flags and (when it had them) huge pages in
 * the first, none in the second.
 *
 * usage: rt_memflags <trigger-file> [future|future-onfault|nothp|ksm|sealed|huge]...
 * Prints "ready pid=N", waits for the trigger file, then checks that the
 * maps lines and VmFlags of its areas, their contents, VmLck and the
 * process-wide settings are what they were, and that the flags still act.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define PAGE 4096UL
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

/* The areas whose maps lines and flags are compared. */
static struct { char *at; size_t len; } areas[16];
static int nareas;

static char *map_area(size_t pages, int prot, int flags) {
  char *p = mmap(NULL, pages * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  areas[nareas].at = p;
  areas[nareas].len = pages * PAGE;
  nareas++;
  return p;
}

static int in_areas(uintptr_t s, uintptr_t e) {
  for (int i = 0; i < nareas; i++) {
    uintptr_t a = (uintptr_t)areas[i].at, b = a + areas[i].len;
    if (s < b && e > a) return 1;
  }
  return 0;
}

/* "start-end perms VmFlags" of every smaps area overlapping our areas. */
static void snapshot(char *out, size_t cap) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) die("smaps");
  char line[512], head[128] = "";
  int keep = 0;
  size_t n = 0;
  out[0] = 0;
  while (fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && strchr(line, '-') < strchr(line, ' ')) {
      keep = in_areas(s, e);
      snprintf(head, sizeof head, "%lx-%lx %s", s, e, perms);
    } else if (keep && strncmp(line, "VmFlags:", 8) == 0) {
      n += snprintf(out + n, cap - n, "%s%s", head, line + 8);
      if (n >= cap) die_err("snapshot too long", E2BIG);
    }
  }
  fclose(f);
}

static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t kl = strlen(key);
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, kl) == 0 && line[kl] == ':') v = strtol(line + kl + 1, NULL, 10);
  }
  if (f) fclose(f);
  return v;
}

static int ksm_merge_any(void) {
  FILE *f = fopen("/proc/self/ksm_stat", "r");
  char line[256];
  int v = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "ksm_merge_any: yes", 18) == 0) v = 1;
  }
  if (f) fclose(f);
  return v;
}

/* VmFlags of the area holding `p`, or "" if none. */
static void flags_of(void *p, char *out, size_t cap) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int here = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      here = (uintptr_t)p >= s && (uintptr_t)p < e;
    } else if (here && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, cap, "%s", line + 8);
    }
  }
  if (f) fclose(f);
}

static int has_flag(const char *flags, const char *f) {
  char pat[8];
  snprintf(pat, sizeof pat, " %s", f);
  for (const char *q = flags; (q = strstr(q, pat)); q++) {
    if (q[3] == ' ' || q[3] == '\n' || q[3] == 0) return 1;
  }
  return 0;
}

/* AnonHugePages (kB) of the area holding `p`, or -1. */
static long huge_kb_of(void *p) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int here = 0;
  long kb = -1;
  while (f && fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      here = (uintptr_t)p >= s && (uintptr_t)p < e;
    } else if (here && strncmp(line, "AnonHugePages:", 14) == 0) {
      kb = strtol(line + 14, NULL, 10);
    }
  }
  if (f) fclose(f);
  return kb;
}

static uint64_t pagemap_entry(void *p) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e = 0;
  if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)p / PAGE * 8)) != 8) die("pagemap");
  close(fd);
  return e;
}

static void fill(char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) p[i] = (char)(seed + i / 512);
}

static int same(const char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) {
    if (p[i] != (char)(seed + i / 512)) return 0;
  }
  return 1;
}

static int mode(int argc, char **argv, const char *m) {
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], m) == 0) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_memflags <trigger-file> [future|future-onfault|nothp|ksm|sealed]...");
  int future = mode(argc, argv, "future"), onfault = mode(argc, argv, "future-onfault");

  /* Locks: pages 0-3 mlock'ed, 8-11 mlock2(MLOCK_ONFAULT) with only 8 touched. */
  char *locked = map_area(16, PROT_READ | PROT_WRITE, 0);
  fill(locked, 8 * PAGE, 1);
  if (mlock(locked, 4 * PAGE)) die("mlock");
  locked[8 * PAGE] = 42;
  if (syscall(SYS_mlock2, locked + 8 * PAGE, 4 * PAGE, MLOCK_ONFAULT)) die("mlock2");
  /* A locked area whose second half became PROT_NONE. */
  char *locked_none = map_area(4, PROT_READ | PROT_WRITE, 0);
  fill(locked_none, 4 * PAGE, 2);
  if (mlock(locked_none, 4 * PAGE)) die("mlock");
  if (mprotect(locked_none + 2 * PAGE, 2 * PAGE, PROT_NONE)) die("mprotect");

  /* One madvise flag per part. */
  static const int advice[] = {MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_HUGEPAGE,
                               MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_SEQUENTIAL, MADV_RANDOM};
  const int nadv = sizeof advice / sizeof advice[0];
  char *advised = map_area(2 * nadv + 1, PROT_READ | PROT_WRITE, 0);
  fill(advised, (2 * nadv + 1) * PAGE, 3);
  for (int i = 0; i < nadv; i++) {
    if (madvise(advised + 2 * i * PAGE, 2 * PAGE, advice[i])) die("madvise");
  }

  /* mprotect splits: r-- in the middle, --- after it. */
  char *split = map_area(12, PROT_READ | PROT_WRITE, 0);
  fill(split, 12 * PAGE, 4);
  if (mprotect(split + 4 * PAGE, 4 * PAGE, PROT_READ)) die("mprotect");
  if (mprotect(split + 8 * PAGE, 2 * PAGE, PROT_NONE)) die("mprotect");

  /* A MAP_GROWSDOWN area that grew by one page (touching just below it). */
  /* Placed above 3 MiB of free space: growing needs the stack guard gap free below. */
  char *room = mmap(NULL, 4 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (room == MAP_FAILED || munmap(room, 4 << 20)) die("mmap room");
  char *gd = mmap(room + (3 << 20), 4 * PAGE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED_NOREPLACE, -1, 0);
  if (gd == MAP_FAILED) die("mmap growsdown");
  areas[nareas].at = gd - 2 * PAGE;
  areas[nareas].len = 6 * PAGE;
  nareas++;
  gd[0] = 5;
  *(volatile char *)(gd - 1) = 6; /* grows to gd - PAGE */

  /* Guard pages 2-3 of 8. */
  char *guarded = map_area(8, PROT_READ | PROT_WRITE, 0);
  fill(guarded, 8 * PAGE, 7);
  if (madvise(guarded + 2 * PAGE, 2 * PAGE, MADV_GUARD_INSTALL)) die("madvise(MADV_GUARD_INSTALL)");

  /* Mode "huge": one page, then 4 MiB on a 2 MiB boundary asking for huge pages, then 2 MiB
   * asking for none: three areas side by side (the restore must load each as the area it is,
   * not as one run split by the advice under its loads). */
  char *huge = NULL;
  const size_t huge_len = 4UL << 20, nohuge_len = 2UL << 20;
  if (mode(argc, argv, "huge")) {
    char *r = mmap(NULL, huge_len + nohuge_len + (4UL << 20), PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) die("mmap huge room");
    char *aligned = (char *)(((uintptr_t)r + (2UL << 20) - 1) & ~((2UL << 20) - 1)) + (2UL << 20);
    char *first = mmap(aligned - PAGE, PAGE + huge_len + nohuge_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (first == MAP_FAILED) die("mmap huge");
    huge = aligned;
    if (madvise(huge, huge_len, MADV_HUGEPAGE)) die("madvise(MADV_HUGEPAGE)");
    if (madvise(huge + huge_len, nohuge_len, MADV_NOHUGEPAGE)) die("madvise(MADV_NOHUGEPAGE)");
    fill(first, PAGE + huge_len + nohuge_len, 9);
    areas[nareas].at = first;
    areas[nareas].len = PAGE + huge_len + nohuge_len;
    nareas++;
  }

  if (mode(argc, argv, "sealed")) {
    char *sealed = map_area(1, PROT_READ, 0);
    if (syscall(462 /* mseal */, sealed, PAGE, 0)) die("mseal");
  }
  if (mode(argc, argv, "nothp") && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) die("PR_SET_THP_DISABLE");
  if (mode(argc, argv, "ksm") && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) die("PR_SET_MEMORY_MERGE");
  if ((future || onfault) && mlockall(MCL_FUTURE | (onfault ? MCL_ONFAULT : 0))) die("mlockall");

  static char before[16384], after[16384];
  snapshot(before, sizeof before);
  long vmlck = status_kb("VmLck");
  int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), ksm = ksm_merge_any();

  long huge_kb = huge ? huge_kb_of(huge) : 0;

  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  snapshot(after, sizeof after);
  check("maps-and-flags", strcmp(before, after) == 0, "before:\n%safter:\n%s", before, after);
  check("vmlck", status_kb("VmLck") == vmlck, "%ld kB, was %ld kB", status_kb("VmLck"), vmlck);
  check("contents", same(locked, 8 * PAGE, 1) && locked[8 * PAGE] == 42 &&
                        same(locked_none, 2 * PAGE, 2) && same(advised, (2 * nadv + 1) * PAGE, 3) &&
                        same(split, 8 * PAGE, 4) && gd[0] == 5 && gd[-1] == 6 &&
                        same(guarded, 2 * PAGE, 7) && same(guarded + 4 * PAGE, 4 * PAGE, 7 + 32),
        "");
  int guards = (pagemap_entry(guarded + 2 * PAGE) >> 58 & 1) && (pagemap_entry(guarded + 3 * PAGE) >> 58 & 1) &&
               !(pagemap_entry(guarded + PAGE) >> 58 & 1) && !(pagemap_entry(guarded + 4 * PAGE) >> 58 & 1);
  check("guard-pages", guards, "pagemap bit 58 not as installed");
  *(volatile char *)(gd - PAGE - 1) = 8; /* grows once more */
  char f[256];
  flags_of(gd - 2 * PAGE, f, sizeof f);
  check("growsdown-grows", has_flag(f, "gd") && gd[-PAGE - 1] == 8, "flags %s", f);
  check("thp-disable", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == thp, "");
  check("ksm-merge-any", ksm_merge_any() == ksm, "");

  if (huge) {
    long now_kb = huge_kb_of(huge);
    check("huge-pages", same(huge - PAGE, PAGE + huge_len + nohuge_len, 9) && now_kb >= huge_kb &&
                            huge_kb_of(huge + huge_len) == 0,
          "AnonHugePages %ld kB, was %ld kB", now_kb, huge_kb);
    printf("huge area: AnonHugePages %ld kB, was %ld kB\n", now_kb, huge_kb);
  }

  /* The fork flags still act: the child has no DONTFORK part and a zeroed WIPEONFORK part. */
  pid_t child = fork();
  if (child == 0) {
    char cf[256];
    flags_of(advised, cf, sizeof cf);
    int dc_gone = cf[0] == 0, wf_zero = advised[2 * PAGE] == 0 && advised[3 * PAGE + 512] == 0;
    _exit(dc_gone && wf_zero ? 0 : 1);
  }
  int st = 0;
  waitpid(child, &st, 0);
  check("fork-flags", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);

  /* mlockall(MCL_FUTURE) still applies to new mappings. */
  char *fresh = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  flags_of(fresh, f, sizeof f);
  int want_lo = future || onfault;
  check("mlock-future", has_flag(f, "lo") == want_lo && has_flag(f, "lf") == onfault, "new mapping: %s", f);
  return verdict();
}
