/* Round-trip target for memory shared copy-on-write across fork
 * (tests/restore_cow_test.ts). The parent fills a 32 MiB region, a heap
 * buffer and a private file mapping, then forks a child that does not exec:
 *   - pages 0-9 of the region: written by the child after the fork;
 *   - pages 10-19: dropped by the child (MADV_DONTNEED: zero in the child);
 *   - pages 20-29: written by the parent after the fork;
 *   - the rest (and the heap buffer): untouched by both, so still shared;
 *     the child locks 4 pages of it and makes the last 4 read-only;
 *   - the child maps a region of its own and unmaps one the parent keeps;
 *   - the private file mapping: page 0 COW'd before the fork (shared
 *     anonymous page), page 1 written by the child only.
 *
 * usage: rt_cow <trigger-file> <work-dir> [clonevm]
 * ("clonevm": instead, a child made with clone(CLONE_VM) shares the whole
 * address space, which the dump must refuse.)
 * Prints "ready pid=P child=C region=0x... pages=N file=0x..." once both are
 * set up, waits for the trigger file; then both check their memory, the
 * child exits with its failure count and the parent reports it.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define PAGES 8192UL

static char *region, *heap, *own, *gone, *filemap;
static char maps_before[32768], maps_after[32768];

/* /proc/self/maps without the [stack] line (the stack may grow meanwhile). */
static void maps_text(char *out, size_t cap) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  size_t n = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strstr(line, "[stack]")) continue;
    n += snprintf(out + n, cap - n, "%s", line);
    if (n >= cap) die_err("maps too long", E2BIG);
  }
  if (f) fclose(f);
}

/* The byte at offset `i` of page `p` as the parent first wrote it. */
static char pattern(size_t p, size_t i) { return (char)(p * 7 + i / 512 + 1); }

static int page_is(const char *base, size_t p, char (*f)(size_t, size_t), char plus) {
  for (size_t i = 0; i < PAGE; i += 512) {
    if (base[p * PAGE + i] != (char)(f(p, i) + plus)) return 0;
  }
  return 1;
}

static char zero(size_t p, size_t i) { (void)p; (void)i; return 0; }

static int child_checks(void) {
  maps_text(maps_after, sizeof maps_after);
  check("child-maps", strcmp(maps_before, maps_after) == 0, "before:\n%safter:\n%s", maps_before,
        maps_after);
  int ok = 1;
  for (size_t p = 0; p < PAGES && ok; p++) {
    if (p < 10) ok = page_is(region, p, pattern, 100);
    else if (p < 20) ok = page_is(region, p, zero, 0);
    else ok = page_is(region, p, pattern, 0);
  }
  check("child-region", ok, "");
  int heap_ok = 1;
  for (size_t i = 0; i < (1 << 20); i += 4096) heap_ok &= heap[i] == (char)(i / 4096 + 3);
  check("child-heap", heap_ok, "");
  check("child-own", own[0] == 'c' && own[PAGE] == 'C', "");
  FILE *m = fopen("/proc/self/maps", "r");
  char line[256];
  int gone_back = 0;
  while (m && fgets(line, sizeof line, m)) gone_back |= strtoul(line, NULL, 16) == (uintptr_t)gone;
  if (m) fclose(m);
  check("child-unmapped", !gone_back, "");
  check("child-file", filemap[0] == 'P' && filemap[PAGE] == 'c' && filemap[2 * PAGE] == 'f', "");
  return failures;
}

static int parent_checks(void) {
  maps_text(maps_after, sizeof maps_after);
  check("maps", strcmp(maps_before, maps_after) == 0, "before:\n%safter:\n%s", maps_before,
        maps_after);
  int ok = 1;
  for (size_t p = 0; p < PAGES && ok; p++) ok = page_is(region, p, pattern, p >= 20 && p < 30 ? 50 : 0);
  check("region", ok, "");
  int heap_ok = 1;
  for (size_t i = 0; i < (1 << 20); i += 4096) heap_ok &= heap[i] == (char)(i / 4096 + 3);
  check("heap", heap_ok, "");
  check("kept", gone[0] == 'g', "");
  check("file", filemap[0] == 'P' && filemap[PAGE] == 'f' && filemap[2 * PAGE] == 'f', "");
  return failures;
}

static const char *trigger_path;

/* A process sharing the whole address space (clone with CLONE_VM, no thread). */
static int vm_child(void *arg) {
  (void)arg;
  wait_trigger(trigger_path);
  return 0;
}

/* "clonevm" mode: the dump must refuse a process that shares its parent's mm. */
static int clonevm_main(void) {
  static char stack[256 * 1024];
  pid_t child = clone(vm_child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
  if (child < 0) die("clone");
  print_ready("pid=%d child=%d region=0x0 pages=0 file=0x0", getpid(), child);
  wait_trigger(trigger_path);
  int st = 0;
  if (waitpid(child, &st, 0) != child) die("waitpid");
  check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_cow <trigger-file> <work-dir> [clonevm]");
  trigger_path = argv[1];
  if (argc > 3 && strcmp(argv[3], "clonevm") == 0) return clonevm_main();
  region = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  gone = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED || gone == MAP_FAILED) die("mmap");
  if (madvise(region, PAGES * PAGE, MADV_NOHUGEPAGE)) die("madvise");
  for (size_t p = 0; p < PAGES; p++) {
    for (size_t i = 0; i < PAGE; i += 512) region[p * PAGE + i] = pattern(p, i);
  }
  gone[0] = 'g';
  heap = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20); i += 4096) heap[i] = (char)(i / 4096 + 3);
  char path[512];
  snprintf(path, sizeof path, "%s/file", argv[2]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die("open");
  char fbuf[3 * 4096];
  memset(fbuf, 'f', sizeof fbuf);
  if (write(fd, fbuf, sizeof fbuf) != (ssize_t)sizeof fbuf) die("write");
  filemap = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (filemap == MAP_FAILED) die("mmap file");
  close(fd);
  filemap[0] = 'P';

  int up[2];
  if (pipe(up)) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(up[0]);
    for (size_t p = 0; p < 10; p++) {
      for (size_t i = 0; i < PAGE; i += 512) region[p * PAGE + i] = (char)(pattern(p, i) + 100);
    }
    if (madvise(region + 10 * PAGE, 10 * PAGE, MADV_DONTNEED)) die("madvise");
    own = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (own == MAP_FAILED) die("mmap own");
    own[0] = 'c';
    own[PAGE] = 'C';
    if (munmap(gone, 2 * PAGE)) die("munmap");
    filemap[PAGE] = 'c';
    /* Split the child's copy of the region: a locked piece and a read-only end. */
    if (mlock(region + (PAGES - 8) * PAGE, 4 * PAGE)) die("mlock");
    if (mprotect(region + (PAGES - 4) * PAGE, 4 * PAGE, PROT_READ)) die("mprotect");
    maps_text(maps_before, sizeof maps_before);
    if (write(up[1], "k", 1) != 1) die("write");
    close(up[1]);
    wait_trigger(argv[1]);
    _exit(child_checks());
  }
  close(up[1]);
  char k;
  if (read(up[0], &k, 1) != 1) die("child setup");
  close(up[0]);
  for (size_t p = 20; p < 30; p++) {
    for (size_t i = 0; i < PAGE; i += 512) region[p * PAGE + i] = (char)(pattern(p, i) + 50);
  }
  maps_text(maps_before, sizeof maps_before);
  print_ready("pid=%d child=%d region=%p pages=%lu file=%p", getpid(), child, (void *)region, PAGES,
              (void *)filemap);
  wait_trigger(argv[1]);
  parent_checks();
  int st = 0;
  if (waitpid(child, &st, 0) != child) die("waitpid");
  check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
  return verdict();
}
