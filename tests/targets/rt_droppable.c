/* A droppable mapping (mmap MAP_DROPPABLE, Linux 6.11: pages the kernel
 * may drop under memory pressure instead of swapping them, wiped in a
 * fork's child; glibc 2.41 keeps the state of its vDSO getrandom in one)
 * between two private ones, with data in all three. Prints
 * "ready pid=<pid> flags=<its VmFlags>", waits for SIGUSR1 (sent after the
 * restore or a dump that leaves it running: argument "running"), then
 * checks that the area is still droppable with the same VmFlags (dp, and
 * the wf dd nr it implies) and bounds, that it came back empty, as a
 * fork's child gets it (kept as it was when the dump left it running), its
 * neighbours with their data, and that a forked child still sees it wiped.
 * Prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#define PAGE 4096UL

/* The VmFlags line of the smaps area starting at `addr`, and the area's end. */
static int area_of(void *addr, char *flags, size_t size, unsigned long *end) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) die("smaps");
  char line[512];
  int in = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = s == (unsigned long)addr;
      if (in) *end = e;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(flags, size, "%s", line + 8);
      flags[strcspn(flags, "\n")] = 0;
      found = 1;
    }
  }
  fclose(f);
  return found;
}

static int has_flag(const char *flags, const char *code) {
  char padded[256];
  snprintf(padded, sizeof padded, " %s ", flags);
  char want[8];
  snprintf(want, sizeof want, " %s ", code);
  return strstr(padded, want) != NULL;
}

int main(int argc, char **argv) {
  int running = argc > 1 && strcmp(argv[1], "running") == 0;
  /* Three pages reserved, the middle one made droppable in place. */
  char *base = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) die("mmap");
  char *drop = mmap(base + PAGE, PAGE, PROT_READ | PROT_WRITE,
                    MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (drop == MAP_FAILED) {
    printf("no MAP_DROPPABLE here: %s\n", strerror(errno));
    return 2;
  }
  memset(base, 'a', PAGE);
  memset(drop, 'd', PAGE);
  memset(base + 2 * PAGE, 'c', PAGE);
  char before[256];
  unsigned long end = 0;
  if (!area_of(drop, before, sizeof before, &end)) die("no smaps area");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d flags=%s", getpid(), before);
  wait_usr1(&old);
  char after[256] = "";
  unsigned long end_after = 0;
  int found = area_of(drop, after, sizeof after, &end_after);
  check("area", found && end_after == (unsigned long)drop + PAGE, "end %lx", end_after);
  check("vmflags", strcmp(before, after) == 0, "before [%s] after [%s]", before, after);
  check("droppable", has_flag(after, "dp") && has_flag(after, "wf"), "[%s]", after);
  int ok = 1;
  for (size_t i = 0; i < PAGE; i++) ok &= base[i] == 'a' && base[2 * PAGE + i] == 'c';
  check("neighbours", ok, "%c %c", base[0], base[2 * PAGE]);
  ok = 1;
  for (size_t i = 0; i < PAGE; i++) ok &= drop[i] == (running ? 'd' : 0);
  check(running ? "kept" : "emptied", ok, "first byte %d", drop[0]);
  drop[0] = 'x';
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) _exit(drop[0] == 0 && base[0] == 'a' ? 0 : 1);
  int status = 0;
  waitpid(child, &status, 0);
  check("wiped-on-fork", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
  return verdict();
}
