/* Target of tests/dump_cow_left_test.ts: pages a parent and its (not
 * exec'ed) child share copy-on-write must still be shared after a dump that
 * leaves the tree running. The parent fills a region, forks a child that
 * only waits, and both wait for the trigger file; then the parent looks at
 * both processes' pagemap: every page of the region must be present in
 * both and mapped exclusively by neither (pagemap bit 56: readable without
 * privileges), and hold what the parent wrote.
 *
 * usage: lr_cow <trigger-file>
 * Prints "ready pid=P child=C region=0x... pages=N".
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define PAGES 64UL
#define PM_PRESENT (1ULL << 63)
#define PM_EXCLUSIVE (1ULL << 56)

/* The pagemap entry of `addr` in process `pid`, 0 when it cannot be read. */
static uint64_t entry_of(pid_t pid, const void *addr) {
  char path[64];
  uint64_t e = 0;
  snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  if (pread(fd, &e, sizeof e, (off_t)((uintptr_t)addr / PAGE * sizeof e)) != sizeof e) e = 0;
  close(fd);
  return e;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "lr_cow <trigger-file>");
  char *region = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) die_err("mmap", errno);
  for (size_t i = 0; i < PAGES * PAGE; i++) region[i] = (char)(i / PAGE * 3 + i % 251);
  pid_t child = fork();
  if (child < 0) die_err("fork", errno);
  if (child == 0) {
    wait_trigger(argv[1]);
    sleep_ms(2000); /* alive while the parent looks at its pagemap */
    _exit(0);
  }
  print_ready("pid=%d child=%d region=%p pages=%lu", (int)getpid(), (int)child, (void *)region, PAGES);
  wait_trigger(argv[1]);
  int shared = 0, intact = 1;
  for (size_t p = 0; p < PAGES; p++) {
    uint64_t a = entry_of(getpid(), region + p * PAGE), b = entry_of(child, region + p * PAGE);
    if ((a & PM_PRESENT) && (b & PM_PRESENT) && !(a & PM_EXCLUSIVE) && !(b & PM_EXCLUSIVE)) shared++;
  }
  for (size_t i = 0; i < PAGES * PAGE; i++) {
    if (region[i] != (char)(i / PAGE * 3 + i % 251)) intact = 0;
  }
  check("still-shared", shared == (int)PAGES, "%d of %lu pages still shared with the child", shared, PAGES);
  check("content", intact, "the region's bytes changed");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  return verdict();
}
