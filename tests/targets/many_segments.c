/* Target of tests/predump_segments_test.ts: thousands of one-page mappings
 * of a file alternating with one-page anonymous mappings (each pair written
 * to), which a pre-copy's page walk must cover without a pagemap fd per
 * stretch. Waits for the trigger file, then checks every page still holds
 * what it wrote.
 *
 * usage: many_segments <trigger-file> <work-dir> <pairs>
 * Prints "ready pid=P start=0x... pairs=N".
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096UL

int main(int argc, char **argv) {
  need_args(argc, 3, "many_segments <trigger-file> <work-dir> <pairs>");
  size_t pairs = strtoul(argv[3], NULL, 10);
  char path[4096];
  snprintf(path, sizeof path, "%s/backing", argv[2]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, PAGE) != 0) die("backing file");
  char *start = mmap(NULL, 2 * pairs * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (start == MAP_FAILED) die("reserve");
  for (size_t i = 0; i < pairs; i++) {
    char *f = start + 2 * i * PAGE;
    if (mmap(f, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) die("file page");
    if (mmap(f + PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
      die("anon page");
    }
    f[0] = (char)(i + 1);
    f[PAGE] = (char)(i + 2);
  }
  print_ready("pid=%d start=%p pairs=%zu", (int)getpid(), (void *)start, pairs);
  wait_trigger(argv[1]);
  size_t bad = 0;
  for (size_t i = 0; i < pairs; i++) {
    char *f = start + 2 * i * PAGE;
    if (f[0] != (char)(i + 1) || f[PAGE] != (char)(i + 2)) bad++;
  }
  check("pages", bad == 0, "%zu of %zu pairs changed", bad, pairs);
  return verdict();
}
