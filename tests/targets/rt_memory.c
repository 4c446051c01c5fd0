/* Round-trip target for memory: sets up many kinds of memory, prints
 * "ready ...", waits (at the bottom of a 2000-frame recursion) until the
 * trigger file argv[1] exists, then verifies everything itself and prints
 * one "check <name> ok|FAIL <detail>" line per item, then PASS or FAIL.
 *
 * usage: rt_memory <trigger-path> <work-dir> [option...]
 *   anon-shared: also check a MAP_SHARED|MAP_ANONYMOUS region;
 *   ro-shared-rdwr: also check that a read-only MAP_SHARED view of a file
 *     opened O_RDWR can be made writable (mprotect) after the restore.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define PAGE 4096UL
#define MiB (1024UL * 1024UL)

/* The byte expected at index j of a buffer filled with `seed`. */
static inline uint8_t pat(size_t j, unsigned seed) {
  return (uint8_t)(j * 31 + seed * 7 + (j >> 9) + (j >> 17));
}

static void fill(void *p, size_t n, unsigned seed) {
  uint8_t *b = p;
  for (size_t j = 0; j < n; j++) b[j] = pat(j, seed);
}

/* Index of the first byte that differs from the pattern, or -1. */
static long verify(const void *p, size_t n, unsigned seed) {
  const uint8_t *b = p;
  for (size_t j = 0; j < n; j++) {
    if (b[j] != pat(j, seed)) return (long)j;
  }
  return -1;
}

/* 64-bit word pattern for large regions: depends on the word's index. */
static inline uint64_t wpat(size_t k, uint64_t seed) {
  return (k * 0x9E3779B97F4A7C15ULL) ^ seed;
}

static long read_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    if (n == cap - 1) break;
  }
  close(fd);
  buf[n] = 0;
  return (long)n;
}

/* ---------------------------------------------------------------- state */

static const size_t heap_sizes[] = {24,     200,         4000,   65536,   100000,
                                    131073, 300000,      4 * MiB, 16 * MiB};
#define NHEAP (sizeof heap_sizes / sizeof heap_sizes[0])
static void *heap[NHEAP];

#define BIG_BYTES (256 * MiB)
static uint64_t *big;

#define SPARSE_BYTES (1024 * MiB)
static const size_t sparse_offsets[] = {0, MiB + PAGE, 300 * MiB, 777 * MiB + 5 * PAGE,
                                        SPARSE_BYTES - PAGE};
#define NSPARSE (sizeof sparse_offsets / sizeof sparse_offsets[0])
static const size_t sparse_untouched[] = {PAGE, 2 * MiB, 500 * MiB, SPARSE_BYTES - 2 * PAGE};
static uint8_t *sparse;

#define PRIV_PAGES 16
static const int priv_modified[] = {1, 5, 9, 15};
static char priv_path[4096];
static uint8_t *priv;

#define SHARED_PAGES 4
static char shared_path[4096];
static uint8_t *shared;

#define GUARD_PAGES 5 /* rw, none, rw, none, rw */
static uint8_t *guarded;
static uint8_t *reserved; /* 16 pages PROT_NONE */
static uint8_t *readonly; /* 2 pages of data, r-- */

#define SHARED_ANON_BYTES (64 * 1024)
static uint8_t *shared_anon; /* only with the "anon-shared" option */

/* Regions with madvise flags that show in smaps VmFlags. */
static const struct {
  int advice;
  const char *flag;
} advised_kinds[] = {{MADV_DONTFORK, "dc"}, {MADV_WIPEONFORK, "wf"}, {MADV_DONTDUMP, "dd"}};
#define NADVISED 3
static uint8_t *advised[NADVISED];

static char ro_shared_path[4096];
static uint8_t *ro_shared; /* r--s view of a file opened O_RDWR (option ro-shared-rdwr) */

static uint8_t *brk_start, *brk_end;
#define BRK_BYTES (1 * MiB)

static char maps_before[256 * 1024], maps_after[256 * 1024];
static char exe_before[4096], cmdline_before[65536], environ_before[65536], auxv_before[4096];
static long cmdline_len, environ_len, auxv_len;
static char stat_before[4096];

#define DEPTH 2000
#define FRAME_BYTES 512
static const char *trigger;
static int bad_frames, first_bad_frame = -1;
static uint8_t *deepest_frame, *shallowest_frame;

/* ---------------------------------------------------------------- setup */

static void make_file(const char *path, int pages, int seed) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(path);
  static uint8_t page[PAGE];
  for (int i = 0; i < pages; i++) {
    fill(page, PAGE, seed + i);
    if (write(fd, page, PAGE) != (ssize_t)PAGE) die("write");
  }
  close(fd);
}

static void setup(const char *work, int with_shared_anon, int with_ro_shared) {
  for (size_t i = 0; i < NHEAP; i++) {
    heap[i] = malloc(heap_sizes[i]);
    if (!heap[i]) die("malloc");
    fill(heap[i], heap_sizes[i], 100 + i);
  }

  big = mmap(NULL, BIG_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (big == MAP_FAILED) die("mmap big");
  for (size_t k = 0; k < BIG_BYTES / 8; k++) big[k] = wpat(k, 0xb16b16);

  sparse = mmap(NULL, SPARSE_BYTES, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sparse == MAP_FAILED) die("mmap sparse");
  for (size_t i = 0; i < NSPARSE; i++) fill(sparse + sparse_offsets[i], PAGE, 200 + i);

  snprintf(priv_path, sizeof priv_path, "%s/private.dat", work);
  make_file(priv_path, PRIV_PAGES, 300);
  int fd = open(priv_path, O_RDONLY);
  if (fd < 0) die("open private");
  priv = mmap(NULL, PRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (priv == MAP_FAILED) die("mmap private");
  close(fd);
  volatile uint8_t sink = 0;
  for (int i = 0; i < PRIV_PAGES; i++) sink += priv[i * PAGE]; /* clean pages, present */
  (void)sink;
  for (size_t i = 0; i < sizeof priv_modified / sizeof *priv_modified; i++) {
    fill(priv + priv_modified[i] * PAGE, PAGE, 400 + priv_modified[i]);
  }

  snprintf(shared_path, sizeof shared_path, "%s/shared.dat", work);
  make_file(shared_path, SHARED_PAGES, 500);
  fd = open(shared_path, O_RDWR);
  if (fd < 0) die("open shared");
  shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (shared == MAP_FAILED) die("mmap shared");
  close(fd);
  strcpy((char *)shared + 10, "written-before-dump");

  guarded = mmap(NULL, GUARD_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (guarded == MAP_FAILED) die("mmap guarded");
  for (int i = 0; i < GUARD_PAGES; i += 2) fill(guarded + i * PAGE, PAGE, 600 + i);
  if (mprotect(guarded + 1 * PAGE, PAGE, PROT_NONE) || mprotect(guarded + 3 * PAGE, PAGE, PROT_NONE))
    die("mprotect guard");
  reserved = mmap(NULL, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (reserved == MAP_FAILED) die("mmap reserved");
  readonly = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (readonly == MAP_FAILED) die("mmap readonly");
  fill(readonly, 2 * PAGE, 700);
  if (mprotect(readonly, 2 * PAGE, PROT_READ)) die("mprotect readonly");

  if (with_shared_anon) {
    shared_anon = mmap(NULL, SHARED_ANON_BYTES, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared_anon == MAP_FAILED) die("mmap shared anon");
    fill(shared_anon, SHARED_ANON_BYTES, 900);
  }

  for (int i = 0; i < NADVISED; i++) {
    advised[i] = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (advised[i] == MAP_FAILED) die("mmap advised");
    fill(advised[i], 2 * PAGE, 950 + i);
    if (madvise(advised[i], 2 * PAGE, advised_kinds[i].advice)) die("madvise");
  }

  if (with_ro_shared) {
    snprintf(ro_shared_path, sizeof ro_shared_path, "%s/ro-shared.dat", work);
    make_file(ro_shared_path, 2, 980);
    fd = open(ro_shared_path, O_RDWR);
    if (fd < 0) die("open ro-shared");
    ro_shared = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    if (ro_shared == MAP_FAILED) die("mmap ro-shared");
    close(fd);
  }

  brk_start = sbrk(0);
  if (sbrk(BRK_BYTES) == (void *)-1) die("sbrk");
  brk_end = sbrk(0);
  fill(brk_start, BRK_BYTES, 800);
}

/* ---------------------------------------------------------- maps compare */

struct vma {
  unsigned long start, end, offset, inode;
  char perms[8], dev[16], path[512];
};

static int parse_maps(char *text, struct vma *out, int cap) {
  int n = 0;
  for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
    struct vma *v = &out[n];
    int pos = 0;
    v->path[0] = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &v->start, &v->end, v->perms, &v->offset,
               v->dev, &v->inode, &pos) < 6)
      continue;
    snprintf(v->path, sizeof v->path, "%s", line + pos);
    n++;
  }
  return n;
}

/* Merges neighbours the kernel could merge (same perms and backing). */
static int normalize(struct vma *v, int n) {
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (m > 0) {
      struct vma *p = &v[m - 1];
      int same = p->end == v[i].start && !strcmp(p->perms, v[i].perms) &&
                 !strcmp(p->dev, v[i].dev) && p->inode == v[i].inode &&
                 !strcmp(p->path, v[i].path) &&
                 (p->inode == 0 || p->offset + (p->end - p->start) == v[i].offset);
      if (same) {
        p->end = v[i].end;
        continue;
      }
    }
    v[m++] = v[i];
  }
  return m;
}

/* Shared anonymous memory: a fresh shmem object after a restore, so a new inode. */
static int is_shmem(const struct vma *v) {
  return !strcmp(v->path, "/dev/zero (deleted)");
}

static struct vma vb[2048], va[2048];

/* Index of the first entry that differs (nb == na == result when none does). */
static int first_difference(struct vma *b, int nb, struct vma *a, int na) {
  int i = 0;
  for (; i < nb && i < na; i++) {
    /* The stack may grow down between the snapshot and the dump (or after the restore). */
    int stack_grew = !strcmp(b[i].path, "[stack]") && !strcmp(a[i].path, "[stack]") &&
                     a[i].start <= b[i].start && b[i].start - a[i].start <= 16 * 4096;
    if ((b[i].start != a[i].start && !stack_grew) || b[i].end != a[i].end ||
        strcmp(b[i].perms, a[i].perms) || b[i].offset != a[i].offset || strcmp(b[i].dev, a[i].dev) ||
        (b[i].inode != a[i].inode && !is_shmem(&b[i])) || strcmp(b[i].path, a[i].path))
      break;
  }
  return i;
}

static void check_maps(void) {
  static char before[sizeof maps_before], after[sizeof maps_after];
  long n = read_file("/proc/self/maps", maps_after, sizeof maps_after);
  if (n <= 0) {
    check("maps", 0, "cannot read /proc/self/maps after restore");
    return;
  }
  strcpy(before, maps_before);
  strcpy(after, maps_after);
  int rb = parse_maps(before, vb, 2048);
  int ra = parse_maps(after, va, 2048);
  int exact = rb == ra && first_difference(vb, rb, va, ra) == rb;
  int nb = normalize(vb, rb);
  int na = normalize(va, ra);
  int i = first_difference(vb, nb, va, na);
  if (i == nb && i == na) {
    check("maps", 1, "");
  } else {
    check("maps", 0, "differ at entry %d: before %lx-%lx %s %lx %s %lu %s | after %lx-%lx %s %lx %s %lu %s", i,
          i < nb ? vb[i].start : 0, i < nb ? vb[i].end : 0, i < nb ? vb[i].perms : "-",
          i < nb ? vb[i].offset : 0, i < nb ? vb[i].dev : "-", i < nb ? vb[i].inode : 0,
          i < nb ? vb[i].path : "(none)", i < na ? va[i].start : 0, i < na ? va[i].end : 0,
          i < na ? va[i].perms : "-", i < na ? va[i].offset : 0, i < na ? va[i].dev : "-",
          i < na ? va[i].inode : 0, i < na ? va[i].path : "(none)");
  }
  printf("info maps-exact %s (%d normalized entries before, %d after)\n", exact ? "yes" : "no", nb,
         na);
  if (!exact) printf("info maps-before:\n%s\ninfo maps-after:\n%s\n", maps_before, maps_after);
  fflush(stdout);
}

/* Line of maps_after describing addr, for perms checks. */
static const char *perms_at(void *addr) {
  static char perms[8];
  static char text[sizeof maps_after];
  static struct vma v[2048];
  strcpy(text, maps_after);
  int n = parse_maps(text, v, 2048);
  for (int i = 0; i < n; i++) {
    if ((unsigned long)addr >= v[i].start && (unsigned long)addr < v[i].end) {
      strcpy(perms, v[i].perms);
      return perms;
    }
  }
  return "none";
}

/* ------------------------------------------------------------- checks */

static sigjmp_buf segv_env;
static void on_segv(int sig) {
  (void)sig;
  siglongjmp(segv_env, 1);
}

/* 1 if reading (or writing, when `write`) addr faults. */
static int faults(volatile uint8_t *addr, int write) {
  if (sigsetjmp(segv_env, 1)) return 1;
  if (write) *addr = 1;
  else (void)*addr;
  return 0;
}

static void snapshot(void) {
  read_file("/proc/self/maps", maps_before, sizeof maps_before);
  ssize_t n = readlink("/proc/self/exe", exe_before, sizeof exe_before - 1);
  exe_before[n > 0 ? n : 0] = 0;
  cmdline_len = read_file("/proc/self/cmdline", cmdline_before, sizeof cmdline_before);
  environ_len = read_file("/proc/self/environ", environ_before, sizeof environ_before);
  auxv_len = read_file("/proc/self/auxv", auxv_before, sizeof auxv_before);
  read_file("/proc/self/stat", stat_before, sizeof stat_before);
}

/* Fields 26-28 and 45-51 of /proc/self/stat (the mm bounds). */
static void mm_fields(const char *stat, char *out, size_t cap) {
  const char *p = strrchr(stat, ')');
  out[0] = 0;
  if (!p) return;
  p += 2; /* field 3 */
  int field = 3;
  size_t o = 0;
  while (*p && field <= 51) {
    const char *e = strchr(p, ' ');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if ((field >= 26 && field <= 28) || (field >= 45 && field <= 51)) {
      if (field == 51 && len && p[len - 1] == '\n') len--;
      o += snprintf(out + o, cap - o, "%d=%.*s ", field, (int)len, p);
    }
    if (!e) break;
    p = e + 1;
    field++;
  }
}

static void check_identity(void) {
  static char buf[65536], a[1024], b[1024];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  check("exe", strcmp(buf, exe_before) == 0, "before %s after %s", exe_before, buf);
  long len = read_file("/proc/self/cmdline", buf, sizeof buf);
  check("cmdline", len == cmdline_len && memcmp(buf, cmdline_before, len) == 0,
        "length %ld vs %ld", len, cmdline_len);
  len = read_file("/proc/self/environ", buf, sizeof buf);
  check("environ", len == environ_len && memcmp(buf, environ_before, len) == 0,
        "length %ld vs %ld", len, environ_len);
  len = read_file("/proc/self/auxv", buf, sizeof buf);
  check("auxv", len == auxv_len && memcmp(buf, auxv_before, len) == 0, "length %ld vs %ld", len,
        auxv_len);
  read_file("/proc/self/stat", buf, sizeof buf);
  mm_fields(stat_before, a, sizeof a);
  mm_fields(buf, b, sizeof b);
  check("mm-fields", strcmp(a, b) == 0 && a[0], "before %s after %s", a, b);
}

static void check_memory(void) {
  size_t bad = NHEAP;
  long at = -1;
  for (size_t i = 0; i < NHEAP; i++) {
    at = verify(heap[i], heap_sizes[i], 100 + i);
    if (at >= 0) {
      bad = i;
      break;
    }
  }
  check("heap", bad == NHEAP, "chunk of %zu bytes differs at byte %ld", bad < NHEAP ? heap_sizes[bad] : 0, at);
  /* The heap is still usable: allocate and free more. */
  void *more = malloc(1000), *large = malloc(1 * MiB);
  int usable = more && large;
  if (usable) {
    fill(more, 1000, 1);
    fill(large, MiB, 2);
    usable = verify(more, 1000, 1) < 0 && verify(large, MiB, 2) < 0;
  }
  free(more);
  free(large);
  free(heap[0]);
  heap[0] = malloc(24);
  check("heap-usable", usable && heap[0], "malloc after restore failed");

  size_t k = 0;
  for (; k < BIG_BYTES / 8; k++) {
    if (big[k] != wpat(k, 0xb16b16)) break;
  }
  check("anon-256m", k == BIG_BYTES / 8, "word %zu (page %zu) is %016lx", k, k * 8 / PAGE,
        k < BIG_BYTES / 8 ? (unsigned long)big[k] : 0UL);

  int sp_ok = 1;
  long sp_at = -1;
  size_t sp_page = 0;
  for (size_t i = 0; i < NSPARSE && sp_ok; i++) {
    sp_at = verify(sparse + sparse_offsets[i], PAGE, 200 + i);
    if (sp_at >= 0) sp_ok = 0, sp_page = sparse_offsets[i];
  }
  check("sparse-touched", sp_ok, "page at +%zu differs at byte %ld", sp_page, sp_at);
  int zero_ok = 1;
  size_t zero_at = 0;
  for (size_t i = 0; i < sizeof sparse_untouched / sizeof *sparse_untouched; i++) {
    for (size_t j = 0; j < PAGE; j++) {
      if (sparse[sparse_untouched[i] + j]) {
        zero_ok = 0;
        zero_at = sparse_untouched[i] + j;
        break;
      }
    }
  }
  check("sparse-untouched-zero", zero_ok, "byte at +%zu is not zero", zero_at);
  check("sparse-writable", !faults(sparse + 600 * MiB, 1), "write into the reservation faulted");
}

static void check_file_mappings(void) {
  static uint8_t page[PAGE];
  int fd = open(priv_path, O_RDONLY);
  int mod_ok = 1, clean_ok = 1, file_ok = 1;
  int bad_mod = -1, bad_clean = -1, bad_file = -1;
  for (int i = 0; i < PRIV_PAGES; i++) {
    int modified = 0;
    for (size_t m = 0; m < sizeof priv_modified / sizeof *priv_modified; m++)
      if (priv_modified[m] == i) modified = 1;
    if (pread(fd, page, PAGE, (off_t)i * PAGE) != (ssize_t)PAGE || verify(page, PAGE, 300 + i) >= 0) {
      file_ok = 0;
      bad_file = i;
    }
    if (modified) {
      if (verify(priv + i * PAGE, PAGE, 400 + i) >= 0) mod_ok = 0, bad_mod = i;
    } else if (memcmp(priv + i * PAGE, page, PAGE) != 0) {
      clean_ok = 0;
      bad_clean = i;
    }
  }
  close(fd);
  check("private-file-modified", mod_ok, "modified page %d lost its content", bad_mod);
  check("private-file-clean", clean_ok, "untouched page %d differs from the file", bad_clean);
  check("private-file-unchanged", file_ok, "file page %d changed on disk", bad_file);

  int before_ok = strcmp((char *)shared + 10, "written-before-dump") == 0;
  check("shared-file-before", before_ok, "mapping holds \"%.20s\"", (char *)shared + 10);
  const char *msg = "written-after-restore";
  strcpy((char *)shared + 2 * PAGE + 100, msg);
  char buf[64] = {0};
  fd = open(shared_path, O_RDWR);
  ssize_t n = pread(fd, buf, strlen(msg), 2 * PAGE + 100);
  check("shared-file-writes-through", n == (ssize_t)strlen(msg) && !memcmp(buf, msg, strlen(msg)),
        "file has \"%.*s\"", (int)(n > 0 ? n : 0), buf);
  const char *msg2 = "pwrite-after-restore";
  ssize_t w = pwrite(fd, msg2, strlen(msg2), 3 * PAGE + 7);
  check("shared-file-sees-writes", w == (ssize_t)strlen(msg2) && !memcmp(shared + 3 * PAGE + 7, msg2, strlen(msg2)),
        "mapping has \"%.20s\"", (char *)shared + 3 * PAGE + 7);
  close(fd);
}

/* VmFlags of the smaps entry starting at addr ("" if none). */
static const char *vmflags_at(void *addr) {
  static char text[512 * 1024];
  static char flags[256];
  flags[0] = 0;
  if (read_file("/proc/self/smaps", text, sizeof text) <= 0) return flags;
  char head[32];
  snprintf(head, sizeof head, "%lx-", (unsigned long)addr);
  for (char *line = text; line && *line;) {
    char *next = strchr(line, '\n');
    if (next) *next++ = 0;
    if (!strncmp(line, head, strlen(head))) {
      for (char *l = next; l && *l;) {
        char *n2 = strchr(l, '\n');
        if (n2) *n2++ = 0;
        if (!strncmp(l, "VmFlags:", 8)) {
          snprintf(flags, sizeof flags, "%s", l + 8);
          return flags;
        }
        l = n2;
      }
    }
    line = next;
  }
  return flags;
}

static int has_flag(const char *flags, const char *flag) {
  char want[8];
  snprintf(want, sizeof want, " %s", flag);
  const char *p = strstr(flags, want);
  return p && (p[3] == ' ' || p[3] == 0);
}

static void check_more_memory(void) {
  if (shared_anon) {
    long at = verify(shared_anon, SHARED_ANON_BYTES, 900);
    check("anon-shared", at < 0 && !strcmp(perms_at(shared_anon), "rw-s"),
          "perms %s, differs at %ld", perms_at(shared_anon), at);
  }

  int ok = 1;
  char detail[512] = "";
  for (int i = 0; i < NADVISED; i++) {
    const char *flags = vmflags_at(advised[i]);
    if (!has_flag(flags, advised_kinds[i].flag) || verify(advised[i], 2 * PAGE, 950 + i) >= 0) {
      ok = 0;
      snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "[%s missing:%s] ",
               advised_kinds[i].flag, flags);
    }
  }
  check("madvise-flags", ok, "%s", detail);

  if (!ro_shared) return;
  /* The file was opened O_RDWR: the read-only shared view may become writable. */
  static const char msg[] = "made-writable";
  int prot = mprotect(ro_shared, 2 * PAGE, PROT_READ | PROT_WRITE);
  int err = errno;
  char buf[32] = {0};
  if (prot == 0) {
    memcpy(ro_shared + PAGE + 3, msg, sizeof msg);
    int fd = open(ro_shared_path, O_RDONLY);
    if (pread(fd, buf, sizeof msg, PAGE + 3) != (ssize_t)sizeof msg) buf[0] = 0;
    close(fd);
  }
  check("shared-file-mprotect", prot == 0 && !strcmp(buf, msg), "mprotect: %s, file has \"%s\"",
        prot ? strerror(err) : "ok", buf);
}

static void check_guards(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);

  const char *p1 = perms_at(guarded + 1 * PAGE), *p3 = perms_at(guarded + 3 * PAGE);
  const char *pr = perms_at(reserved);
  int maps_ok = !strcmp(p1, "---p") && !strcmp(p3, "---p") && !strcmp(pr, "---p");
  check("guard-maps", maps_ok, "guard perms %s %s, reservation %s", p1, p3, pr);
  int f1 = faults(guarded + 1 * PAGE + 5, 0), f3 = faults(guarded + 3 * PAGE, 0);
  int fr = faults(reserved + 7 * PAGE, 0);
  check("guard-segv", f1 && f3 && fr, "reads faulted: %d %d %d", f1, f3, fr);
  int data_ok = 1;
  for (int i = 0; i < GUARD_PAGES; i += 2)
    if (verify(guarded + i * PAGE, PAGE, 600 + i) >= 0) data_ok = 0;
  int rw_ok = !faults(guarded + 2 * PAGE + 1, 0) && !faults(guarded + 4 * PAGE + 1, 0);
  check("guard-neighbours", data_ok && rw_ok, "data %d accessible %d", data_ok, rw_ok);

  const char *pro = perms_at(readonly);
  int ro_data = verify(readonly, 2 * PAGE, 700) < 0;
  int ro_write_faults = faults(readonly + 10, 1);
  check("readonly-anon", !strcmp(pro, "r--p") && ro_data && ro_write_faults,
        "perms %s data %d write faults %d", pro, ro_data, ro_write_faults);

  signal(SIGSEGV, SIG_DFL);
  signal(SIGBUS, SIG_DFL);
}

static void check_brk(void) {
  uint8_t *now = sbrk(0);
  long at = verify(brk_start, BRK_BYTES, 800);
  check("brk-content", at < 0, "differs at byte %ld", at);
  check("brk-end", now == brk_end, "sbrk(0) is %p, was %p", (void *)now, (void *)brk_end);
  uint8_t *grown = sbrk(256 * 1024);
  int ok = grown == now;
  if (ok) {
    fill(grown, 256 * 1024, 801);
    ok = verify(grown, 256 * 1024, 801) < 0 && sbrk(0) == now + 256 * 1024;
  }
  check("brk-grows", ok, "sbrk(256K) returned %p (break was %p)", (void *)grown, (void *)now);
  int shrunk = sbrk(-256 * 1024) != (void *)-1 && sbrk(0) == now;
  check("brk-shrinks", shrunk, "sbrk(-256K) failed");
}

/* ---------------------------------------------------------- deep stack */

__attribute__((noinline)) static void fill_frame(uint8_t *buf, int depth) {
  fill(buf, FRAME_BYTES, 1000 + depth);
}

__attribute__((noinline)) static void verify_frame(const uint8_t *buf, int depth) {
  if (verify(buf, FRAME_BYTES, 1000 + depth) >= 0) {
    bad_frames++;
    if (first_bad_frame < 0) first_bad_frame = depth;
  }
}

static void at_bottom(void) {
  snapshot();
  print_ready("pid=%d sparse=%p sparse_len=%lu sparse_touched=%zu stack=%lu", getpid(),
              (void *)sparse, (unsigned long)SPARSE_BYTES, NSPARSE,
              (unsigned long)(shallowest_frame - deepest_frame));
  wait_trigger(trigger);
  check_maps(); /* first: nothing below may change the mappings before this */
  check_identity();
  check_brk(); /* before anything that may call malloc */
  check_memory();
  check_file_mappings();
  check_guards();
  check_more_memory();
}

__attribute__((noinline)) static int recurse(int depth) {
  uint8_t buf[FRAME_BYTES];
  fill_frame(buf, depth);
  if (depth == 0) shallowest_frame = buf;
  int r;
  if (depth == DEPTH - 1) {
    deepest_frame = buf;
    at_bottom();
    r = 1;
  } else {
    r = recurse(depth + 1) + 1;
  }
  verify_frame(buf, depth);
  return r;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_memory <trigger> <work-dir> [option...]");
  trigger = argv[1];
  printf("start pid=%d\n", getpid()); /* stdio allocates its buffer now, not at "ready" */
  fflush(stdout);
  int with_shared_anon = 0, with_ro_shared = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "anon-shared")) with_shared_anon = 1;
    else if (!strcmp(argv[i], "ro-shared-rdwr")) with_ro_shared = 1;
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  setup(argv[2], with_shared_anon, with_ro_shared);
  int frames = recurse(0);
  check("deep-stack", frames == DEPTH && bad_frames == 0, "%d frames, %d bad, first bad at depth %d",
        frames, bad_frames, first_bad_frame);
  return verdict();
}
