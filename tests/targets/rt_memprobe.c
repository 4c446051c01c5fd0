/* Probe target for per-mapping and address-space memory state
 * (tests/restore_memprobe_test.ts): one piece of state per run, named by
 * argv[3]. The state is set up and recorded, "ready pid=N" is printed, the
 * target waits until the trigger file argv[1] exists (it is dumped, killed
 * and restored meanwhile), then checks the state and prints
 * "check <name> ok|FAIL <detail>" lines, then PASS or FAIL. A mode the
 * kernel refuses at setup prints "info <mode>=unavailable <error>" and
 * checks nothing.
 *
 * Every mode also compares the "start-end perms VmFlags" lines of the areas
 * it made (check "maps") before and after.
 *
 * usage: rt_memprobe <trigger-path> <work-dir> <mode>
 *   sealed:     a read-write area sealed with mseal, the middle of a
 *               read-only one with contents, a private file mapping;
 *   sealedfork: a sealed area a forked child inherited (sealed in both);
 *   guard:      guard regions (MADV_GUARD_INSTALL) in a private anonymous,
 *               a private file, a shared anonymous and a shared file area;
 *   madvise:    one part per madvise flag (dc wf dd hg nh mg rr sr); a child
 *               forked after the restore sees no DONTFORK part and zeroed
 *               WIPEONFORK pages;
 *   thp:        PR_SET_THP_DISABLE; thpexcept: with PR_THP_DISABLE_EXCEPT_ADVISED;
 *   ksm:        PR_SET_MEMORY_MERGE and a MADV_MERGEABLE area;
 *   mlock:      mlock, mlock2(MLOCK_ONFAULT) and MAP_LOCKED areas;
 *   mlockall:   mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT): a mapping made
 *               after the restore is locked on fault too;
 *   mlockallnow: mlockall(MCL_CURRENT|MCL_FUTURE): a new mapping is locked and populated;
 *   growsdown:  a MAP_GROWSDOWN area grows on a fault below it after the restore;
 *   noreserve:  MAP_NORESERVE, a PROT_READ private area and MAP_32BIT;
 *   zeropage:   256 MiB of anonymous memory only read (the shared zero page
 *               everywhere): it still reads zeros, and VmRSS after the restore
 *               is at most 8 MiB above before (the zero page is a hole: not
 *               saved, not allocated at restore);
 *   madvfree:   MADV_FREE'd pages (one written again after it);
 *   protnone:   a 256 MiB PROT_NONE reservation with an mprotect'd piece;
 *   bigreserve: 4 TiB PROT_NONE and 1 TiB read-write MAP_NORESERVE (as Go,
 *               V8 and sanitizers reserve), a few pages written far apart;
 *   mremap:     areas grown and moved by mremap (also MREMAP_DONTUNMAP);
 *   shared:     MAP_SHARED|MAP_ANONYMOUS shared with a forked child (split in
 *               two pieces by mprotect in both), and a private area the child
 *               wrote after the fork (stays private);
 *   secret:     a memfd_secret area (its fd closed); secretfd: its fd kept;
 *   uffd:       ranges registered with a userfaultfd (MISSING and WP) whose
 *               fd is held only by a process outside the tree;
 *   hugetlb:    a MAP_HUGETLB area;
 *   brk:        the heap grown and shrunk with sbrk: sbrk(0) is the same and
 *               the heap grows on from there;
 *   beyondeof:  a private file mapping longer than its file (SIGBUS past the
 *               end), its first page written;
 *   filecow:    a private file mapping with some pages written: the others
 *               still show what the file holds when it changes;
 *   maywrite:   shared mappings of a file opened read-only (mprotect to
 *               write fails) and read-write (it succeeds).
 *   hidden:     contents of areas made PROT_NONE after they were written;
 *   sharedgrow: a shared anonymous area grown with mremap past its object
 *               (SIGBUS there), and one split by mprotect;
 *   sharedpast: a shared anonymous area grown with mremap past its object,
 *               then the object's part unmapped (all of it SIGBUS);
 *   shareddup:  a shared anonymous area mapped a second time (mremap with
 *               old size 0): a write through one shows through the other;
 *   deletedtwice: a deleted file and a memfd, each mapped shared twice
 *               (their fds closed): a write through one shows through the other;
 *   memfdseal:  a sealed memfd (F_SEAL_FUTURE_WRITE, grow, shrink) mapped
 *               shared read-only, its fd closed: mprotect to write fails, the
 *               seals read through /proc/self/map_files are the same;
 *   fork:       areas a forked child holds differently from its parent: one
 *               MADV_WIPEONFORK before the fork (the child wrote its copy),
 *               one made WIPEONFORK and one DONTFORK by the parent after the
 *               fork, one whose guard region the child removed (and put
 *               another), one the child advised MADV_RANDOM; the child checks
 *               its copies and its own maps lines after the restore;
 *   ksmfork:    KSM merge-any (PR_SET_MEMORY_MERGE) set in the parent before
 *               a fork, turned off in the child (which advises its copy of an
 *               area MADV_MERGEABLE again, so that it has the parent's flags):
 *               each keeps its own;
 *   deletedcow: a private mapping of a deleted file, one page written (its
 *               fd closed): the written page kept, the others the file's;
 *   edges:      areas at the lowest address mmap allows (vm.mmap_min_addr,
 *               64 KiB if it is lower) and 1 GiB below the top of the 47-bit
 *               address space;
 *   stack:      the main stack grows past its size at the dump (a deep call);
 *   brkempty:   the heap shrunk back to its start: sbrk(0) is the same, the
 *               heap grows on from there.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/ioctl.h>
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
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef PR_THP_DISABLE_EXCEPT_ADVISED
#define PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
#endif

static const char *mode;
static const char *workdir;

static void unavailable(const char *what) {
  printf("info %s=unavailable %s\n", what, strerror(errno));
  fflush(stdout);
}

/* ---- the areas a mode made, their maps lines and VmFlags -------------- */

static struct { char *at; size_t len; } areas[32];
static int nareas;

static void track(void *at, size_t len) {
  areas[nareas].at = at;
  areas[nareas].len = len;
  nareas++;
}

static char *map_area(size_t len, int prot, int flags) {
  char *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  track(p, len);
  return p;
}

static int in_areas(uintptr_t s, uintptr_t e) {
  for (int i = 0; i < nareas; i++) {
    uintptr_t a = (uintptr_t)areas[i].at, b = a + areas[i].len;
    if (s < b && e > a) return 1;
  }
  return 0;
}

/* "start-end perms VmFlags" of every smaps area overlapping the tracked areas (all areas but
 * the vdso's and vvar's with `all`). */
static void snapshot(char *out, size_t cap, int all) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) die("smaps");
  char line[512], head[300] = "";
  int keep = 0;
  size_t n = 0;
  out[0] = 0;
  while (fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && strchr(line, '-') < strchr(line, ' ')) {
      keep = all ? !strstr(line, "[vdso]") && !strstr(line, "[vvar") && !strstr(line, "[vsyscall]")
                 : in_areas(s, e);
      /* The name column too (after offset, device and inode). */
      const char *name = line;
      for (int field = 0; field < 5 && name; field++) {
        name = strchr(name, ' ');
        while (name && *name == ' ') name++;
      }
      char nm[200] = "";
      if (name) snprintf(nm, sizeof nm, "%s", name);
      nm[strcspn(nm, "\n")] = 0;
      snprintf(head, sizeof head, "%lx-%lx %s %s:", s, e, perms, nm);
    } else if (keep && strncmp(line, "VmFlags:", 8) == 0) {
      /* "gu" (VM_MAYBE_GUARD) left out: a hint the kernel keeps on an area that ever had a
       * guard region (or merged with one that had), whether or not it still has one; the
       * guard regions themselves are checked by pagemap. */
      char *gu = strstr(line, " gu ");
      if (gu) memmove(gu, gu + 3, strlen(gu + 3) + 1);
      n += snprintf(out + n, cap - n, "%s%s", head, line + 8);
      if (n >= cap) die_err("snapshot too long", E2BIG);
    }
  }
  fclose(f);
}

/* VmFlags of the area holding `p`, or "" if none. */
static void flags_of(const void *p, char *out, size_t cap) {
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
      out[strcspn(out, "\n")] = 0;
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

/* The maps line of the area holding `p` (without its newline), or "". */
static void maps_line_of(const void *p, char *out, size_t cap) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && (uintptr_t)p >= s && (uintptr_t)p < e) {
      line[strcspn(line, "\n")] = 0;
      snprintf(out, cap, "%s", line);
    }
  }
  if (f) fclose(f);
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

static uint64_t pagemap_entry(const void *p) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e = 0;
  if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)p / PAGE * 8)) != 8) die("pagemap");
  close(fd);
  return e;
}

static int present(const void *p) { return pagemap_entry(p) >> 63 & 1; }
static int guarded(const void *p) { return pagemap_entry(p) >> 58 & 1; }

static void fill(char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) p[i] = (char)(seed + i / 512);
}

static int same(const char *p, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 512) {
    if (p[i] != (char)(seed + i / 512)) return 0;
  }
  return 1;
}

/* ---- touching an address that may fault ------------------------------ */

static sigjmp_buf touch_env;
static volatile int touch_sig;

static void on_fault(int sig) {
  touch_sig = sig;
  siglongjmp(touch_env, 1);
}

/* The signal a read (or a write of `value` if `write`) of `p` raised, 0 if none. */
static int touch(volatile char *p, int write, char value) {
  struct sigaction sa = {0}, old_segv, old_bus;
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  touch_sig = 0;
  if (sigsetjmp(touch_env, 1) == 0) {
    if (write) *p = value;
    else (void)*p;
  }
  sigaction(SIGSEGV, &old_segv, NULL);
  sigaction(SIGBUS, &old_bus, NULL);
  return touch_sig;
}

/* A file of `len` bytes in the work directory, byte i = seed + i / 512; opened with `flags`. */
static int make_file(const char *name, size_t len, int seed, int flags) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", workdir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die("open");
  char *buf = calloc(1, len ? len : 1);
  fill(buf, len, seed);
  if (write(fd, buf, len) != (ssize_t)len) die("write");
  free(buf);
  if (flags != O_RDWR) {
    close(fd);
    fd = open(path, flags);
    if (fd < 0) die("open");
  }
  return fd;
}

/* ---- the modes -------------------------------------------------------- */

static char *a, *b, *c;
static long v1;
static char info[512];
static pid_t child = -1;
static int argc_seen;

/* Uses about `kb` KiB of stack; returns a sum that depends on all of it. */
__attribute__((noinline)) static long deep(int kb) {
  volatile char frame[1024];
  for (size_t i = 0; i < sizeof frame; i += 64) frame[i] = (char)kb;
  long r = kb > 0 ? deep(kb - 1) : 0;
  return r + frame[kb % 16 * 64];
}

/* The size of the area holding the address `p`, 0 if none. */
static size_t area_size(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  size_t size = 0;
  while (f && fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && (uintptr_t)p >= s && (uintptr_t)p < e) size = e - s;
  }
  if (f) fclose(f);
  return size;
}

static int setup(void) {
  if (!strcmp(mode, "sealed")) {
    a = map_area(2 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 2 * PAGE, 1);
    if (syscall(462 /* mseal */, a, 2 * PAGE, 0)) return unavailable(mode), 0;
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0); /* written, then read-only, then sealed */
    fill(b, 4 * PAGE, 2);
    if (mprotect(b, 4 * PAGE, PROT_READ)) die("mprotect");
    if (syscall(462, b + PAGE, 2 * PAGE, 0)) die("mseal");
    int fd = make_file("sealed", 2 * PAGE, 3, O_RDONLY); /* a sealed file mapping */
    c = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    if (c == MAP_FAILED) die("mmap");
    close(fd);
    track(c, 2 * PAGE);
    if (syscall(462, c, 2 * PAGE, 0)) die("mseal");
  } else if (!strcmp(mode, "sealedfork")) {
    a = map_area(2 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 2 * PAGE, 1);
    if (syscall(462 /* mseal */, a, 2 * PAGE, 0)) return unavailable(mode), 0;
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      a[0] = 9; /* its own copy of the first page */
      wait_trigger(getenv("RT_TRIGGER"));
      errno = 0;
      int sealed = munmap(a, PAGE) == -1 && errno == EPERM;
      _exit(sealed && a[0] == 9 && same(a + PAGE, PAGE, 1 + 8) ? 0 : 1);
    }
    snprintf(info, sizeof info, "child=%d", child);
  } else if (!strcmp(mode, "guard")) {
    a = map_area(8 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 8 * PAGE, 1);
    if (madvise(a + 2 * PAGE, 2 * PAGE, MADV_GUARD_INSTALL)) return unavailable(mode), 0;
    int fd = make_file("guarded", 4 * PAGE, 2, O_RDWR);
    b = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (b == MAP_FAILED) die("mmap file");
    close(fd);
    track(b, 4 * PAGE);
    b[0] = 9; /* one private copy */
    if (madvise(b + PAGE, PAGE, MADV_GUARD_INSTALL)) die("guard in a private file mapping");
    c = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED) die("mmap shared");
    track(c, 4 * PAGE);
    fill(c, 4 * PAGE, 3);
    if (madvise(c + 3 * PAGE, PAGE, MADV_GUARD_INSTALL)) die("guard in a shared area");
    int sfd = make_file("guarded-shared", 4 * PAGE, 4, O_RDWR);
    char *d = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (d == MAP_FAILED) die("mmap shared file");
    close(sfd);
    track(d, 4 * PAGE);
    if (madvise(d + 2 * PAGE, PAGE, MADV_GUARD_INSTALL)) die("guard in a shared file mapping");
    v1 = (long)d;
  } else if (!strcmp(mode, "madvise")) {
    static const int advice[] = {MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_HUGEPAGE,
                                 MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_SEQUENTIAL, MADV_RANDOM};
    a = map_area(17 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 17 * PAGE, 1);
    for (int i = 0; i < 8; i++) {
      if (madvise(a + 2 * i * PAGE, 2 * PAGE, advice[i])) die("madvise");
    }
  } else if (!strcmp(mode, "thp") || !strcmp(mode, "thpexcept")) {
    long how = mode[3] ? PR_THP_DISABLE_EXCEPT_ADVISED : 0;
    if (prctl(PR_SET_THP_DISABLE, 1, how, 0, 0)) return unavailable(mode), 0;
    v1 = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    printf("info thp=%ld\n", v1);
  } else if (!strcmp(mode, "ksm")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 4 * PAGE, 1);
    if (madvise(a, 2 * PAGE, MADV_MERGEABLE)) return unavailable(mode), 0;
    if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) return unavailable(mode), 0;
    v1 = prctl(68 /* PR_GET_MEMORY_MERGE */, 0, 0, 0, 0);
  } else if (!strcmp(mode, "mlock")) {
    a = map_area(8 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, PAGE, 1);
    if (mlock(a, 4 * PAGE)) die("mlock");
    a[4 * PAGE] = 7;
    if (syscall(SYS_mlock2, a + 4 * PAGE, 4 * PAGE, MLOCK_ONFAULT)) die("mlock2");
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, MAP_LOCKED);
    b[0] = 8;
    v1 = status_kb("VmLck");
  } else if (!strcmp(mode, "mlockall") || !strcmp(mode, "mlockallnow")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    a[0] = 1;
    int onfault = !strcmp(mode, "mlockall");
    if (mlockall(MCL_CURRENT | MCL_FUTURE | (onfault ? MCL_ONFAULT : 0))) return unavailable(mode), 0;
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    b[0] = 2;
    v1 = status_kb("VmLck");
  } else if (!strcmp(mode, "growsdown")) {
    /* Above 3 MiB of free space: growing needs the stack guard gap free below. */
    char *room = mmap(NULL, 4 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (room == MAP_FAILED || munmap(room, 4 << 20)) die("mmap room");
    a = mmap(room + (3 << 20), 4 * PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED_NOREPLACE, -1, 0);
    if (a == MAP_FAILED) die("mmap growsdown");
    track(a - 4 * PAGE, 8 * PAGE);
    a[0] = 5;
    *(volatile char *)(a - 1) = 6; /* grows by one page */
  } else if (!strcmp(mode, "noreserve")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, MAP_NORESERVE);
    fill(a, 4 * PAGE, 1);
    b = map_area(4 * PAGE, PROT_READ, 0);
    c = map_area(4 * PAGE, PROT_READ | PROT_WRITE, MAP_32BIT);
    fill(c, 4 * PAGE, 3);
  } else if (!strcmp(mode, "zeropage")) {
    a = map_area(256UL << 20, PROT_READ | PROT_WRITE, 0);
    long sum = 0;
    for (size_t i = 0; i < (256UL << 20); i += PAGE) sum += *(volatile char *)(a + i);
    a[0] = (char)(sum + 1); /* one page really written */
    v1 = status_kb("VmRSS");
    printf("info rss=%ld kB\n", v1);
  } else if (!strcmp(mode, "madvfree")) {
    a = map_area(8 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 8 * PAGE, 1);
    if (madvise(a + 2 * PAGE, 4 * PAGE, MADV_FREE)) return unavailable(mode), 0;
    a[3 * PAGE] = 99; /* written again: no longer free */
  } else if (!strcmp(mode, "protnone")) {
    a = map_area(256UL << 20, PROT_NONE, 0);
    if (mprotect(a + (128UL << 20), 16 * PAGE, PROT_READ | PROT_WRITE)) die("mprotect");
    fill(a + (128UL << 20), 16 * PAGE, 1);
  } else if (!strcmp(mode, "bigreserve")) {
    a = mmap(NULL, 4UL << 40, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    b = mmap(NULL, 1UL << 40, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) return unavailable(mode), 0;
    track(a, 4UL << 40);
    track(b, 1UL << 40);
    for (int i = 0; i < 16; i++) b[(size_t)i << 36] = (char)(i + 1);
  } else if (!strcmp(mode, "mremap")) {
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    fill(p, 4 * PAGE, 1);
    a = mremap(p, 4 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
    if (a == MAP_FAILED) die("mremap");
    fill(a + 4 * PAGE, 60 * PAGE, 2);
    track(a, 64 * PAGE);
    char *q = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) die("mmap");
    fill(q, 4 * PAGE, 3);
    b = (char *)syscall(SYS_mremap, q, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    if (b == MAP_FAILED) return unavailable(mode), 0;
    c = q; /* the source: mapped, empty */
    track(b, 4 * PAGE);
    track(c, 4 * PAGE);
  } else if (!strcmp(mode, "shared")) {
    a = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) die("mmap");
    track(a, 4 * PAGE);
    a[3 * PAGE] = 33;
    if (mprotect(a + 3 * PAGE, PAGE, PROT_READ)) die("mprotect"); /* two pieces of one object */
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(b, 4 * PAGE, 2);
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      b[0] = 77; /* its own copy */
      a[100] = 1; /* set up */
      wait_trigger(getenv("RT_TRIGGER"));
      /* After the restore: wait for the parent's ping, write our private copy, answer. */
      for (int i = 0; i < 6000 && *(volatile char *)&a[0] != 'p'; i++) sleep_ms(10);
      b[PAGE] = 55;
      *(volatile char *)&a[1] = 'a';
      /* Its pieces are still one object: made writable again, the read-only one takes a write
       * the parent sees. */
      int one = !mprotect(a + 3 * PAGE, PAGE, PROT_READ | PROT_WRITE);
      if (one) a[3 * PAGE + 1] = 34;
      *(volatile char *)&a[2] = 'b';
      _exit(a[0] == 'p' && b[0] == 77 && one && a[3 * PAGE] == 33 ? 0 : 1);
    }
    for (int i = 0; i < 6000 && *(volatile char *)&a[100] != 1; i++) sleep_ms(10);
    snprintf(info, sizeof info, "child=%d", child);
  } else if (!strcmp(mode, "secret") || !strcmp(mode, "secretfd")) {
    int fd = syscall(447 /* memfd_secret */, 0);
    if (fd < 0) return unavailable(mode), 0;
    if (ftruncate(fd, 2 * PAGE)) die("ftruncate");
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED) return unavailable(mode), 0;
    if (!strcmp(mode, "secret")) close(fd);
    track(a, 2 * PAGE);
    fill(a, 2 * PAGE, 1);
  } else if (!strcmp(mode, "uffd-missing") || !strcmp(mode, "uffd-wp")) {
    int wp = !strcmp(mode, "uffd-wp");
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0) return unavailable(mode), 0;
    struct uffdio_api api = {.api = UFFD_API, .features = wp ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0};
    if (ioctl(fd, UFFDIO_API, &api)) return unavailable(mode), 0;
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 4 * PAGE, 1);
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)a, .len = 2 * PAGE},
        .mode = wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg)) return unavailable(mode), 0;
    if (wp) {
      struct uffdio_writeprotect w = {.range = {.start = (uintptr_t)a, .len = 2 * PAGE},
                                      .mode = UFFDIO_WRITEPROTECT_MODE_WP};
      if (ioctl(fd, UFFDIO_WRITEPROTECT, &w)) return unavailable(mode), 0;
    }
    /* Its only holder: a grandchild, outside the tree once its parent is gone. */
    int p[2];
    if (pipe(p)) die("pipe");
    pid_t mid = fork();
    if (mid == 0) {
      pid_t g = fork();
      if (g == 0) {
        int keep = fcntl(fd, F_DUPFD, 100); /* (F_DUPFD: not close-on-exec) */
        close(p[0]);
        pid_t me = getpid();
        if (write(p[1], &me, sizeof me) != sizeof me) _exit(1);
        (void)keep;
        for (;;) pause();
      }
      _exit(0);
    }
    waitpid(mid, NULL, 0);
    pid_t holder;
    close(p[1]);
    if (read(p[0], &holder, sizeof holder) != sizeof holder) die("grandchild");
    close(p[0]);
    close(fd);
    snprintf(info, sizeof info, "holder=%d", holder);
  } else if (!strcmp(mode, "hugetlb")) {
    a = mmap(NULL, 2UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (a == MAP_FAILED) return unavailable(mode), 0;
    track(a, 2UL << 20);
    fill(a, 2UL << 20, 1);
  } else if (!strcmp(mode, "brk")) {
    char *base = sbrk(0);
    if (sbrk(64 * PAGE) == (void *)-1) die("sbrk");
    fill(base, 64 * PAGE, 1);
    if (sbrk(-16 * (long)PAGE) == (void *)-1) die("sbrk");
    a = base;
    b = sbrk(0);
  } else if (!strcmp(mode, "beyondeof")) {
    int fd = make_file("short", PAGE + 100, 1, O_RDONLY);
    a = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) die("mmap");
    track(a, 4 * PAGE);
    b = mmap(NULL, 4 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    if (b == MAP_FAILED) die("mmap");
    track(b, 4 * PAGE);
    close(fd);
    a[0] = 42;
    (void)*(volatile char *)(a + PAGE);
    if (touch(a + 2 * PAGE, 0, 0) != SIGBUS || touch(b + 3 * PAGE, 0, 0) != SIGBUS) {
      die_err("no SIGBUS past the end", EINVAL);
    }
  } else if (!strcmp(mode, "filecow")) {
    int fd = make_file("cow", 4 * PAGE, 1, O_RDWR);
    a = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) die("mmap");
    track(a, 4 * PAGE);
    v1 = fd;
    for (int i = 0; i < 4; i++) (void)*(volatile char *)(a + i * PAGE); /* all read in */
    a[PAGE] = 21;
    a[3 * PAGE] = 23;
  } else if (!strcmp(mode, "maywrite")) {
    int ro = make_file("ro", 2 * PAGE, 1, O_RDONLY);
    a = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, ro, 0);
    if (a == MAP_FAILED) die("mmap");
    track(a, 2 * PAGE);
    close(ro);
    int rw = make_file("rw", 2 * PAGE, 2, O_RDWR);
    b = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, rw, 0);
    if (b == MAP_FAILED) die("mmap");
    track(b, 2 * PAGE);
    close(rw);
    int rx = make_file("rx", 2 * PAGE, 3, O_RDONLY);
    c = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, rx, 0);
    if (c == MAP_FAILED) die("mmap");
    track(c, 2 * PAGE);
    close(rx);
  } else if (!strcmp(mode, "hidden")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 4 * PAGE, 1);
    if (mprotect(a, 4 * PAGE, PROT_NONE)) die("mprotect");
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(b, 4 * PAGE, 2);
    if (mprotect(b + 2 * PAGE, 2 * PAGE, PROT_NONE)) die("mprotect");
    int fd = make_file("hidden", 2 * PAGE, 3, O_RDWR);
    c = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (c == MAP_FAILED) die("mmap");
    close(fd);
    track(c, 2 * PAGE);
    c[0] = 77; /* a private copy, then hidden */
    if (mprotect(c, 2 * PAGE, PROT_NONE)) die("mprotect");
  } else if (!strcmp(mode, "sharedgrow")) {
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) die("mmap");
    fill(a, 2 * PAGE, 1);
    a = mremap(a, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE);
    if (a == MAP_FAILED) return unavailable(mode), 0;
    track(a, 4 * PAGE);
    if (touch(a + 3 * PAGE, 0, 0) != SIGBUS) die_err("no SIGBUS past the object", EINVAL);
    b = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) die("mmap");
    track(b, 3 * PAGE);
    fill(b, 3 * PAGE, 2);
    if (mprotect(b + PAGE, PAGE, PROT_READ)) die("mprotect");
  } else if (!strcmp(mode, "sharedpast")) {
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) die("mmap");
    a = mremap(a, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE);
    if (a == MAP_FAILED) return unavailable(mode), 0;
    if (munmap(a, 2 * PAGE)) die("munmap");
    a += 2 * PAGE;
    track(a, 2 * PAGE);
  } else if (!strcmp(mode, "shareddup")) {
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) die("mmap");
    fill(a, 2 * PAGE, 1);
    b = mremap(a, 0, 2 * PAGE, MREMAP_MAYMOVE);
    if (b == MAP_FAILED) return unavailable(mode), 0;
    track(a, 2 * PAGE);
    track(b, 2 * PAGE);
  } else if (!strcmp(mode, "deletedtwice")) {
    char path[512];
    int fd = make_file("deleted", 2 * PAGE, 1, O_RDWR);
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    b = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) die("mmap");
    close(fd);
    snprintf(path, sizeof path, "%s/deleted", workdir);
    if (unlink(path)) die("unlink");
    int mfd = memfd_create("probe", 0);
    if (mfd < 0 || ftruncate(mfd, 2 * PAGE)) die("memfd");
    c = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    char *c2 = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (c == MAP_FAILED || c2 == MAP_FAILED) die("mmap");
    close(mfd);
    fill(c, 2 * PAGE, 2);
    track(a, 2 * PAGE);
    track(b, 2 * PAGE);
    track(c, 2 * PAGE);
    track(c2, 2 * PAGE);
    v1 = (long)c2;
  } else if (!strcmp(mode, "memfdseal")) {
    int mfd = memfd_create("sealed", MFD_ALLOW_SEALING);
    if (mfd < 0 || ftruncate(mfd, 2 * PAGE)) die("memfd");
    char buf[2 * PAGE];
    fill(memset(buf, 0, sizeof buf), sizeof buf, 1);
    if (pwrite(mfd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) die("pwrite");
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)) {
      return unavailable(mode), 0;
    }
    v1 = fcntl(mfd, F_GET_SEALS);
    a = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, mfd, 0);
    if (a == MAP_FAILED) die("mmap");
    track(a, 2 * PAGE);
    close(mfd);
  } else if (!strcmp(mode, "fork")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0); /* WIPEONFORK before the fork */
    fill(a, 4 * PAGE, 1);
    if (madvise(a, 4 * PAGE, MADV_WIPEONFORK)) die("madvise");
    b = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0); /* WIPEONFORK after */
    fill(b, 4 * PAGE, 2);
    c = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0); /* DONTFORK after */
    fill(c, 4 * PAGE, 3);
    char *g = map_area(8 * PAGE, PROT_READ | PROT_WRITE, 0); /* guards */
    fill(g, 8 * PAGE, 4);
    if (madvise(g + 2 * PAGE, PAGE, MADV_GUARD_INSTALL)) return unavailable(mode), 0;
    char *r = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0); /* the child's MADV_RANDOM */
    fill(r, 4 * PAGE, 5);
    v1 = (long)g;
    int p[2];
    if (pipe(p)) die("pipe");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      static char kbefore[65536], kafter[65536];
      close(p[0]);
      a[0] = 50;
      a[PAGE] = 51;
      c[0] = 60;
      if (madvise(g + 2 * PAGE, PAGE, 103 /* MADV_GUARD_REMOVE */)) _exit(20);
      g[2 * PAGE] = 70;
      if (madvise(g + 5 * PAGE, PAGE, MADV_GUARD_INSTALL)) _exit(21);
      if (madvise(r, 4 * PAGE, MADV_RANDOM)) _exit(22);
      snapshot(kbefore, sizeof kbefore, 0);
      if (write(p[1], "x", 1) != 1) _exit(23);
      wait_trigger(getenv("RT_TRIGGER"));
      snapshot(kafter, sizeof kafter, 0);
      int bad = 0;
      if (strcmp(kbefore, kafter)) {
        printf("child maps before:\n%safter:\n%s", kbefore, kafter);
        bad |= 1;
      }
      if (!(a[0] == 50 && a[PAGE] == 51 && a[2 * PAGE] == 0 && a[3 * PAGE + 512] == 0)) bad |= 2;
      if (!same(b, 4 * PAGE, 2)) bad |= 4;
      if (!(c[0] == 60 && same(c + PAGE, 3 * PAGE, 3 + 8))) bad |= 8;
      if (guarded(g + 2 * PAGE) || !guarded(g + 5 * PAGE) || g[2 * PAGE] != 70 ||
          !same(g + 3 * PAGE, 2 * PAGE, 4 + 24))
        bad |= 16;
      if (!same(r, 4 * PAGE, 5)) bad |= 32;
      fflush(stdout);
      _exit(bad);
    }
    close(p[1]);
    char x;
    if (read(p[0], &x, 1) != 1) die("child setup");
    close(p[0]);
    if (madvise(b, 4 * PAGE, MADV_WIPEONFORK)) die("madvise");
    if (madvise(c, 4 * PAGE, MADV_DONTFORK)) die("madvise");
    snprintf(info, sizeof info, "child=%d", child);
  } else if (!strcmp(mode, "ksmfork")) {
    a = map_area(4 * PAGE, PROT_READ | PROT_WRITE, 0);
    fill(a, 4 * PAGE, 1);
    if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) return unavailable(mode), 0;
    int p[2];
    if (pipe(p)) die("pipe");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      close(p[0]);
      if (prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0)) _exit(20);
      /* Advised mergeable again on its own: its copy of the area has the parent's flags. */
      if (madvise(a, 4 * PAGE, MADV_MERGEABLE)) _exit(21);
      long before = prctl(68, 0, 0, 0, 0);
      if (write(p[1], "x", 1) != 1) _exit(23);
      wait_trigger(getenv("RT_TRIGGER"));
      long now = prctl(68, 0, 0, 0, 0);
      if (now != before) printf("child: merge-any %ld, was %ld\n", now, before);
      fflush(stdout);
      _exit(now == before && same(a, 4 * PAGE, 1) ? 0 : 1);
    }
    close(p[1]);
    char x;
    if (read(p[0], &x, 1) != 1) die("child setup");
    close(p[0]);
    v1 = prctl(68, 0, 0, 0, 0);
    snprintf(info, sizeof info, "child=%d", child);
  } else if (!strcmp(mode, "deletedcow")) {
    char path[512];
    int fd = make_file("deletedcow", 3 * PAGE, 1, O_RDONLY);
    a = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) die("mmap");
    close(fd);
    track(a, 3 * PAGE);
    a[PAGE] = 42;
    snprintf(path, sizeof path, "%s/deletedcow", workdir);
    if (unlink(path)) die("unlink");
  } else if (!strcmp(mode, "edges")) {
    unsigned long low = 0x10000;
    FILE *mf = fopen("/proc/sys/vm/mmap_min_addr", "r");
    if (mf) {
      if (fscanf(mf, "%lu", &low) != 1 || low < 0x10000) low = 0x10000;
      fclose(mf);
    }
    a = mmap((void *)low, 2 * PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    b = mmap((void *)((1UL << 47) - (1UL << 30)), 2 * PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) return unavailable(mode), 0;
    track(a, 2 * PAGE);
    track(b, 2 * PAGE);
    fill(a, 2 * PAGE, 1);
    fill(b, 2 * PAGE, 2);
  } else if (!strcmp(mode, "stack")) {
    if (v1 == 0) die_err("no stack area", ENOENT);
  } else if (!strcmp(mode, "brkempty")) {
    a = sbrk(0);
    if (sbrk(16 * PAGE) == (void *)-1) die("sbrk");
    a[0] = 1;
    if (sbrk(-16 * (long)PAGE) == (void *)-1) die("sbrk");
    b = sbrk(0);
  } else {
    die_err(mode, EINVAL);
  }
  return 1;
}

static void check_mode(void) {
  char f[256], line[512];
  if (!strcmp(mode, "hidden")) {
    int ok = !mprotect(a, 4 * PAGE, PROT_READ) && !mprotect(b + 2 * PAGE, 2 * PAGE, PROT_READ) &&
             !mprotect(c, 2 * PAGE, PROT_READ);
    check("hidden-contents", ok && same(a, 4 * PAGE, 1) && same(b, 4 * PAGE, 2) && c[0] == 77 &&
                                 c[512] == 3 + 1 && c[PAGE] == 3 + 8,
          "a[0]=%d b[2p]=%d c[0]=%d", ok ? a[0] : -1, ok ? b[2 * PAGE] : -1, ok ? c[0] : -1);
  } else if (!strcmp(mode, "sharedgrow")) {
    int s1 = touch(a + 2 * PAGE, 0, 0), s2 = touch(a + 3 * PAGE, 1, 1);
    check("sharedgrow-sigbus", s1 == SIGBUS && s2 == SIGBUS && same(a, 2 * PAGE, 1),
          "signals %d %d past the object", s1, s2);
    /* The three pieces were one object (split by mprotect): one inode, offsets following on. */
    unsigned long off[3], ino[3];
    for (int k = 0; k < 3; k++) {
      maps_line_of(b + k * PAGE, line, sizeof line);
      if (sscanf(line, "%*s %*s %lx %*s %lu", &off[k], &ino[k]) != 2) off[k] = ino[k] = 0;
    }
    check("sharedgrow-one-object", ino[0] && ino[0] == ino[1] && ino[1] == ino[2] &&
                                       off[1] == off[0] + PAGE && off[2] == off[0] + 2 * PAGE,
          "inodes %lu %lu %lu, offsets %lx %lx %lx", ino[0], ino[1], ino[2], off[0], off[1], off[2]);
    int ok = !mprotect(b + PAGE, PAGE, PROT_READ | PROT_WRITE);
    pid_t k = fork();
    if (k == 0) {
      b[PAGE + 1] = 9;
      b[2 * PAGE + 1] = 10;
      _exit(0);
    }
    waitpid(k, NULL, 0);
    check("sharedgrow-split", ok && same(b, 3 * PAGE, 2) && b[PAGE + 1] == 9 && b[2 * PAGE + 1] == 10,
          "the child's writes: %d %d", b[PAGE + 1], b[2 * PAGE + 1]);
  } else if (!strcmp(mode, "sharedpast")) {
    int s1 = touch(a, 0, 0), s2 = touch(a + PAGE, 1, 1);
    check("sharedpast-sigbus", s1 == SIGBUS && s2 == SIGBUS, "signals %d %d", s1, s2);
  } else if (!strcmp(mode, "shareddup")) {
    a[100] = 5;
    b[PAGE + 100] = 6;
    check("shareddup", same(b, 2 * PAGE, 1) && b[100] == 5 && a[PAGE + 100] == 6,
          "b[100]=%d a[p+100]=%d", b[100], a[PAGE + 100]);
  } else if (!strcmp(mode, "deletedtwice")) {
    char *c2 = (char *)v1;
    a[100] = 5;
    c[100] = 6;
    check("deletedtwice-file", same(b, 2 * PAGE, 1) && b[100] == 5, "b[100]=%d", b[100]);
    check("deletedtwice-memfd", same(c2, 2 * PAGE, 2) && c2[100] == 6, "c2[100]=%d", c2[100]);
  } else if (!strcmp(mode, "memfdseal")) {
    errno = 0;
    int r = mprotect(a, 2 * PAGE, PROT_READ | PROT_WRITE);
    check("memfdseal-mprotect", r == -1 && errno == EACCES, "mprotect: %d %s", r, strerror(errno));
    maps_line_of(a, line, sizeof line);
    char path[128];
    uintptr_t s0, e0;
    sscanf(line, "%lx-%lx", &s0, &e0);
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", s0, e0);
    int fd = open(path, O_RDONLY);
    long seals = fd < 0 ? -1 : fcntl(fd, F_GET_SEALS);
    check("memfdseal-seals", seals == v1, "seals %ld, were %ld (%s)", seals, v1, line);
    check("memfdseal-contents", same(a, 2 * PAGE, 1), "");
  } else if (!strcmp(mode, "fork")) {
    char *g = (char *)v1;
    check("fork-parent", same(a, 4 * PAGE, 1) && same(b, 4 * PAGE, 2) && same(c, 4 * PAGE, 3) &&
                             guarded(g + 2 * PAGE) && !guarded(g + 5 * PAGE),
          "");
    int st = 0;
    pid_t w = waitpid(child, &st, 0);
    check("fork-child", w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "waitpid %d (%s), child status 0x%x (exit bits: 1 maps, 2 wipeonfork-before, 4 wipeonfork-after, "
          "8 dontfork-after, 16 guards, 32 advice)",
          w, strerror(errno), st);
  } else if (!strcmp(mode, "ksmfork")) {
    long now = prctl(68, 0, 0, 0, 0);
    check("ksmfork-parent", now == v1, "merge-any %ld, was %ld", now, v1);
    int st = 0;
    pid_t w = waitpid(child, &st, 0);
    check("ksmfork-child", w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
  } else if (!strcmp(mode, "deletedcow")) {
    check("deletedcow", a[0] == 1 && a[PAGE] == 42 && a[PAGE + 512] == 1 + 9 &&
                            same(a + 2 * PAGE, PAGE, 1 + 16),
          "a[0]=%d a[p]=%d", a[0], a[PAGE]);
  } else if (!strcmp(mode, "edges")) {
    check("edges", same(a, 2 * PAGE, 1) && same(b, 2 * PAGE, 2), "");
  } else if (!strcmp(mode, "stack")) {
    size_t before = v1, now = area_size(&f);
    long sum = deep(2048); /* 2 MiB more than the few KiB used so far */
    size_t grown = area_size(&f);
    check("stack-grows", sum != 0 && grown > now && now == before, "stack %zu, was %zu, grew to %zu",
          now, before, grown);
    maps_line_of(&f, line, sizeof line);
    check("stack-name", strstr(line, "[stack]") != NULL, "%s", line);
  } else if (!strcmp(mode, "brkempty")) {
    char *now = sbrk(0);
    check("brk-same", now == b && now == a, "sbrk(0) %p, was %p", now, b);
    char *more = sbrk(64 * PAGE);
    check("brk-grows", more == now && touch(more + 63 * PAGE, 1, 4) == 0, "sbrk gave %p", more);
  }
  if (!strcmp(mode, "sealed")) {
    flags_of(a, f, sizeof f);
    check("sealed-flag", has_flag(f, "sl"), "VmFlags%s", f);
    check("sealed-contents", same(a, 2 * PAGE, 1), "");
    errno = 0;
    check("sealed-munmap", munmap(a, PAGE) == -1 && errno == EPERM, "munmap: %s", strerror(errno));
    errno = 0;
    check("sealed-mprotect", mprotect(a, PAGE, PROT_READ) == -1 && errno == EPERM, "mprotect: %s",
          strerror(errno));
    /* The read-only one: sealed in the middle only; its ends still change. */
    errno = 0;
    int mid = mprotect(b + PAGE, PAGE, PROT_READ | PROT_WRITE);
    int mid_errno = errno;
    int ends = mprotect(b, PAGE, PROT_READ | PROT_WRITE) == 0 && munmap(b + 3 * PAGE, PAGE) == 0;
    check("sealed-readonly", mid == -1 && mid_errno == EPERM && ends && same(b, 3 * PAGE, 2),
          "mprotect of the sealed middle: %d %s; ends changed: %d", mid, strerror(mid_errno), ends);
    errno = 0;
    int fm = munmap(c, PAGE);
    check("sealed-file", fm == -1 && errno == EPERM && c[512] == 3 + 1, "munmap: %s", strerror(errno));
  } else if (!strcmp(mode, "sealedfork")) {
    errno = 0;
    check("sealedfork-parent", munmap(a, PAGE) == -1 && errno == EPERM && same(a, 2 * PAGE, 1),
          "munmap: %s", strerror(errno));
    int st = 0;
    pid_t w = waitpid(child, &st, 0);
    check("sealedfork-child", w == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x",
          st);
  } else if (!strcmp(mode, "guard")) {
    check("guard-anon", guarded(a + 2 * PAGE) && guarded(a + 3 * PAGE) && !guarded(a + PAGE) &&
                            !guarded(a + 4 * PAGE) && touch(a + 2 * PAGE, 0, 0) == SIGSEGV &&
                            same(a, 2 * PAGE, 1) && same(a + 4 * PAGE, 4 * PAGE, 1 + 32),
          "pagemap %d%d%d%d", guarded(a + PAGE), guarded(a + 2 * PAGE), guarded(a + 3 * PAGE),
          guarded(a + 4 * PAGE));
    check("guard-file", guarded(b + PAGE) && !guarded(b) && !guarded(b + 2 * PAGE) &&
                            touch(b + PAGE, 0, 0) == SIGSEGV && b[0] == 9 && b[2 * PAGE] == 2 + 16,
          "pagemap %d%d%d", guarded(b), guarded(b + PAGE), guarded(b + 2 * PAGE));
    char *d = (char *)v1;
    check("guard-shared-file", guarded(d + 2 * PAGE) && !guarded(d + PAGE) &&
                                   touch(d + 2 * PAGE, 0, 0) == SIGSEGV && d[PAGE] == 4 + 8,
          "pagemap %d%d", guarded(d + PAGE), guarded(d + 2 * PAGE));
    check("guard-shared", guarded(c + 3 * PAGE) && !guarded(c + 2 * PAGE) &&
                              touch(c + 3 * PAGE, 0, 0) == SIGSEGV && same(c, 3 * PAGE, 3),
          "pagemap %d%d", guarded(c + 2 * PAGE), guarded(c + 3 * PAGE));
  } else if (!strcmp(mode, "madvise")) {
    check("madvise-contents", same(a, 17 * PAGE, 1), "");
    pid_t k = fork();
    if (k == 0) {
      int dc_gone = touch(a, 0, 0) == SIGSEGV;
      int wf_zero = a[2 * PAGE] == 0 && a[3 * PAGE + 512] == 0;
      int rest = same(a + 4 * PAGE, 13 * PAGE, 1 + 32);
      _exit((dc_gone ? 0 : 1) | (wf_zero ? 0 : 2) | (rest ? 0 : 4));
    }
    int st = 0;
    waitpid(k, &st, 0);
    check("madvise-fork", WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
  } else if (!strcmp(mode, "thp") || !strcmp(mode, "thpexcept")) {
    long now = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    check("thp-disable", now == v1, "was %ld, now %ld", v1, now);
  } else if (!strcmp(mode, "ksm")) {
    long now = prctl(68 /* PR_GET_MEMORY_MERGE */, 0, 0, 0, 0);
    check("ksm-merge", now == v1, "was %ld, now %ld", v1, now);
    check("ksm-contents", same(a, 4 * PAGE, 1), "");
  } else if (!strcmp(mode, "mlock")) {
    long now = status_kb("VmLck");
    check("mlock-vmlck", now == v1, "VmLck %ld kB, was %ld kB", now, v1);
    check("mlock-present", present(a) && present(a + 3 * PAGE) && present(a + 4 * PAGE) &&
                               !present(a + 5 * PAGE) && present(b + 3 * PAGE),
          "present %d%d %d%d %d", present(a), present(a + 3 * PAGE), present(a + 4 * PAGE),
          present(a + 5 * PAGE), present(b + 3 * PAGE));
    check("mlock-contents", same(a, PAGE, 1) && a[4 * PAGE] == 7 && b[0] == 8, "");
  } else if (!strcmp(mode, "mlockall") || !strcmp(mode, "mlockallnow")) {
    int onfault = !strcmp(mode, "mlockall");
    char *fresh = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    flags_of(fresh, f, sizeof f);
    check("mlockall-new-mapping", has_flag(f, "lo") && has_flag(f, "lf") == onfault &&
                                      present(fresh + 3 * PAGE) == !onfault,
          "VmFlags%s, present %d", f, present(fresh + 3 * PAGE));
    munmap(fresh, 4 * PAGE);
    long now = status_kb("VmLck");
    check("mlockall-vmlck", now == v1, "VmLck %ld kB, was %ld kB", now, v1);
    check("mlockall-contents", a[0] == 1 && b[0] == 2, "");
  } else if (!strcmp(mode, "growsdown")) {
    *(volatile char *)(a - PAGE - 1) = 8; /* grows once more */
    flags_of(a - 2 * PAGE, f, sizeof f);
    check("growsdown-grows", has_flag(f, "gd") && a[-PAGE - 1] == 8 && a[0] == 5 && a[-1] == 6,
          "VmFlags%s", f);
  } else if (!strcmp(mode, "noreserve")) {
    check("noreserve-contents", same(a, 4 * PAGE, 1) && same(c, 4 * PAGE, 3) &&
                                    (uintptr_t)c < (1UL << 31),
          "");
  } else if (!strcmp(mode, "zeropage")) {
    long rss = status_kb("VmRSS");
    int ok = a[0] == 1;
    for (size_t i = PAGE; i < (256UL << 20); i += PAGE) ok &= a[i] == 0;
    check("zeropage-contents", ok, "");
    printf("info rss=%ld kB after the restore, %ld kB before\n", rss, v1);
    check("zeropage-rss", rss <= v1 + 8192, "VmRSS %ld kB after the restore, %ld kB before", rss, v1);
  } else if (!strcmp(mode, "madvfree")) {
    int ok = same(a, 2 * PAGE, 1) && a[3 * PAGE] == 99 && same(a + 6 * PAGE, 2 * PAGE, 1 + 48);
    for (int pg = 2; pg < 6; pg++) {
      if (pg == 3) continue;
      int zero = 1, old = 1;
      for (size_t i = 0; i < PAGE; i += 512) {
        zero &= a[pg * PAGE + i] == 0;
        old &= a[pg * PAGE + i] == (char)(1 + (pg * PAGE + i) / 512);
      }
      if (!zero && !old) ok = 0;
    }
    check("madvfree-contents", ok, "");
  } else if (!strcmp(mode, "protnone")) {
    char *piece = a + (128UL << 20);
    check("protnone-contents", same(piece, 16 * PAGE, 1), "");
    check("protnone-faults", touch(a, 0, 0) == SIGSEGV && touch(piece + 16 * PAGE, 0, 0) == SIGSEGV,
          "");
    void *r = mmap(a + PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    check("protnone-reserved", r == MAP_FAILED && errno == EEXIST, "mmap inside: %p", r);
    int grow = mprotect(a, 16 * PAGE, PROT_READ | PROT_WRITE);
    check("protnone-usable", grow == 0 && touch(a + PAGE, 1, 3) == 0, "mprotect %d", grow);
  } else if (!strcmp(mode, "bigreserve")) {
    int ok = 1;
    for (int i = 0; i < 16; i++) ok &= b[(size_t)i << 36] == (char)(i + 1) && b[((size_t)i << 36) + PAGE] == 0;
    check("bigreserve-contents", ok, "");
    check("bigreserve-rss", status_kb("VmRSS") < 64 * 1024, "VmRSS %ld kB", status_kb("VmRSS"));
  } else if (!strcmp(mode, "mremap")) {
    check("mremap-contents", same(a, 4 * PAGE, 1) && same(a + 4 * PAGE, 60 * PAGE, 2) &&
                                 same(b, 4 * PAGE, 3) && c[0] == 0 && c[3 * PAGE] == 0,
          "");
    char *m = mremap(a, 64 * PAGE, 128 * PAGE, MREMAP_MAYMOVE);
    check("mremap-again", m != MAP_FAILED && same(m + 4 * PAGE, 60 * PAGE, 2), "");
  } else if (!strcmp(mode, "shared")) {
    a[0] = 'p';
    for (int i = 0; i < 6000 && *(volatile char *)&a[1] != 'a'; i++) sleep_ms(10);
    int st = 0;
    check("shared-child-answers", a[1] == 'a', "");
    for (int i = 0; i < 6000 && *(volatile char *)&a[2] != 'b'; i++) sleep_ms(10);
    check("shared-pieces", a[3 * PAGE] == 33 && a[3 * PAGE + 1] == 34, "%d %d", a[3 * PAGE],
          a[3 * PAGE + 1]);
    check("shared-child-exit", waitpid(child, &st, 0) == child && WIFEXITED(st) &&
                                   WEXITSTATUS(st) == 0,
          "status 0x%x", st);
    check("shared-private-stays", b[0] == 2 && same(b + PAGE, 3 * PAGE, 2 + 8), "b[0]=%d", b[0]);
  } else if (!strcmp(mode, "secret") || !strcmp(mode, "secretfd")) {
    maps_line_of(a, line, sizeof line);
    check("secret-contents", same(a, 2 * PAGE, 1), "");
    check("secret-kind", strstr(line, "secretmem") != NULL, "%s", line);
  } else if (!strcmp(mode, "uffd-missing") || !strcmp(mode, "uffd-wp")) {
    flags_of(a, f, sizeof f);
    check("uffd-flags", has_flag(f, mode[5] == 'w' ? "uw" : "um"), "VmFlags%s", f);
  } else if (!strcmp(mode, "hugetlb")) {
    flags_of(a, f, sizeof f);
    check("hugetlb", has_flag(f, "ht") && same(a, 2UL << 20, 1), "VmFlags%s", f);
  } else if (!strcmp(mode, "brk")) {
    char *now = sbrk(0);
    check("brk-same", now == b, "sbrk(0) %p, was %p", now, b);
    check("brk-contents", same(a, 48 * PAGE, 1), "");
    char *more = sbrk(256 * PAGE);
    int ok = more == now && touch(more + 255 * PAGE, 1, 4) == 0 && more[255 * PAGE] == 4;
    check("brk-grows", ok, "sbrk gave %p", more);
  } else if (!strcmp(mode, "beyondeof")) {
    check("beyondeof-contents", a[0] == 42 && a[512] == 2 && a[PAGE] == 1 + 8 &&
                                    a[PAGE + 512] == 0 && b[0] == 1,
          "");
    int s1 = touch(a + 2 * PAGE, 0, 0), s2 = touch(a + 3 * PAGE, 1, 1), s3 = touch(b + 2 * PAGE, 0, 0);
    check("beyondeof-sigbus", s1 == SIGBUS && s2 == SIGBUS && s3 == SIGBUS, "signals %d %d %d", s1,
          s2, s3);
  } else if (!strcmp(mode, "filecow")) {
    check("filecow-contents", a[0] == 1 && a[PAGE] == 21 && a[2 * PAGE] == 1 + 16 &&
                                  a[3 * PAGE] == 23 && same(a + PAGE + 512, 512, 1 + 9),
          "");
    /* The file changes: the pages never written show it, the written ones do not. */
    char path[512];
    snprintf(path, sizeof path, "%s/cow", workdir);
    int fd = open(path, O_RDWR);
    char buf[4 * PAGE];
    memset(buf, 'Z', sizeof buf);
    if (fd < 0 || pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) die("pwrite");
    close(fd);
    check("filecow-follows-file", a[0] == 'Z' && a[2 * PAGE + 100] == 'Z' && a[PAGE] == 21 &&
                                      a[3 * PAGE] == 23,
          "a[0]=%d a[2p]=%d a[p]=%d", a[0], a[2 * PAGE + 100], a[PAGE]);
  } else if (!strcmp(mode, "maywrite")) {
    errno = 0;
    int ro = mprotect(a, 2 * PAGE, PROT_READ | PROT_WRITE);
    check("maywrite-readonly-file", ro == -1 && errno == EACCES, "mprotect: %d %s", ro,
          strerror(errno));
    int rw = mprotect(b, 2 * PAGE, PROT_READ | PROT_WRITE);
    check("maywrite-readwrite-file", rw == 0 && touch(b, 1, 5) == 0, "mprotect: %s", strerror(errno));
    int cp = mprotect(c, 2 * PAGE, PROT_READ | PROT_WRITE);
    check("maywrite-private", cp == 0 && touch(c, 1, 5) == 0 && c[512] == 3 + 1, "mprotect: %s",
          strerror(errno));
  }
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_memprobe <trigger-file> <work-dir> <mode>");
  workdir = argv[2];
  mode = argv[3];
  setenv("RT_TRIGGER", argv[1], 1);
  int all = !strncmp(mode, "mlockall", 8);
  static char before[65536], after[65536];
  argc_seen = argc;
  v1 = (long)area_size(&argc); /* the stack's size (mode "stack") */
  int ok = setup();
  if (ok) snapshot(before, sizeof before, all);
  if (info[0]) printf("info %s\n", info);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  if (!ok) return verdict();
  snapshot(after, sizeof after, all);
  check("maps", strcmp(before, after) == 0, "before:\n%safter:\n%s", before, after);
  check_mode();
  return verdict();
}
