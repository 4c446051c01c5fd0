/* Round-trip target for reserved runs (engine/restore/anon_runs.ts
 * reservedRunLength: adjacent PROT_NONE and read-write private anonymous
 * areas, such as thread stacks and their guards, re-created by one
 * PROT_NONE mmap whose read-write members are opened by mprotect).
 *
 * Makes 12 threads with stacks of different sizes and guards of 0, 1 or 3
 * pages (glibc maps each with one PROT_NONE mmap and opens the stack with
 * mprotect; MAP_STACK gives "nh" on Linux 6.8 and later), each writing a
 * pattern into its own stack and into a malloc'd block (threads' malloc
 * makes arenas: a read-write head and a PROT_NONE reserve; the first
 * thread fills 3 MiB of its arena, which two threads load); and a region
 * of its own made the same way by hand: PROT_NONE with MADV_NOHUGEPAGE,
 * then pieces opened read-write by mprotect, some touched. Before waiting
 * it records every private anonymous area without a name (maps line and
 * VmFlags, in order); after the restore it checks the same list, each
 * thread its stack and block, and the region's content; then the threads
 * are joined.
 *
 * usage: rt_stack_runs <trigger-path>
 * Prints "ready pid=N areas=N", waits for the trigger file.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define THREADS 12
#define MAXAREAS 512
#define REGION_PAGES 64
#define SMALL 1024

static char areas[2][MAXAREAS][192];
static int nareas[2];
static char text[1 << 20];
static volatile int go;
static int thread_ok[THREADS];
static unsigned char *region;

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

/* Records the private anonymous areas without a name into slot s (maps line, VmFlags). */
static int record(int s) {
  if (read_all("/proc/self/smaps") <= 0) return -1;
  int k = -1;
  nareas[s] = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    unsigned long start, end, off, inode;
    char perms[8], dev[16];
    int used = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %15s %lu%n", &start, &end, perms, &off, dev, &inode,
               &used) == 6) {
      k = -1;
      while (line[used] == ' ') used++;
      if (inode == 0 && line[used] == 0 && perms[3] == 'p') {
        if (nareas[s] >= MAXAREAS) return -1;
        k = nareas[s]++;
        snprintf(areas[s][k], sizeof areas[s][k], "%lx-%lx %s", start, end, perms);
      }
    } else if (k >= 0 && !strncmp(line, "VmFlags:", 8)) {
      size_t len = strlen(areas[s][k]);
      snprintf(areas[s][k] + len, sizeof areas[s][k] - len, " |%s", line + 8);
      k = -1;
    }
  }
  return nareas[s];
}

static unsigned char pattern(int i, size_t j) { return (unsigned char)(i * 13 + j * 5 + 1); }

static void *worker(void *arg) {
  int i = (int)(intptr_t)arg;
  /* Some stack in use: 1 to 12 pages deep. */
  size_t n = PAGE * (size_t)(1 + i);
  unsigned char *buf = alloca(n);
  for (size_t j = 0; j < n; j++) buf[j] = pattern(i, j);
  unsigned char *block = malloc(PAGE * 3);
  for (size_t j = 0; j < PAGE * 3; j++) block[j] = pattern(i + 100, j);
  /* Thread 0 fills its arena's head with 3 MiB of small blocks (loaded by two threads). */
  static unsigned char *small[SMALL];
  for (int k = 0; i == 0 && k < SMALL; k++) {
    small[k] = malloc(3000);
    for (size_t j = 0; j < 3000; j++) small[k][j] = pattern(k, j);
  }
  while (!go) sleep_ms(5);
  int ok = 1;
  for (size_t j = 0; j < n; j++) ok &= buf[j] == pattern(i, j);
  for (size_t j = 0; j < PAGE * 3; j++) ok &= block[j] == pattern(i + 100, j);
  for (int k = 0; i == 0 && k < SMALL; k++) {
    for (size_t j = 0; j < 3000; j++) ok &= small[k][j] == pattern(k, j);
  }
  thread_ok[i] = ok;
  free(block);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_stack_runs <trigger>");
  /* A region made as glibc makes a stack, by hand: PROT_NONE, no huge pages, pieces opened. */
  region = mmap(NULL, REGION_PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                -1, 0);
  if (region == MAP_FAILED) die("mmap");
  if (madvise(region, REGION_PAGES * PAGE, MADV_NOHUGEPAGE) != 0) die("madvise");
  for (int p = 1; p < REGION_PAGES; p += 6) {
    /* Open 3 pages, touch the first and last when p / 6 is even. */
    if (mprotect(region + p * PAGE, 3 * PAGE, PROT_READ | PROT_WRITE) != 0) die("mprotect");
    if ((p / 6) % 2 == 0) {
      memset(region + p * PAGE, 0x40 + p, PAGE);
      memset(region + (p + 2) * PAGE, 0x80 + p, PAGE);
    }
  }
  pthread_t t[THREADS];
  static const size_t guards[] = {0, 1, 3};
  for (int i = 0; i < THREADS; i++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)(64 + 32 * i) * 1024);
    pthread_attr_setguardsize(&attr, guards[i % 3] * PAGE);
    if (pthread_create(&t[i], &attr, worker, (void *)(intptr_t)i) != 0) die("pthread_create");
    pthread_attr_destroy(&attr);
  }
  sleep_ms(200); /* every thread has written its stack and block */
  if (record(0) <= 0) die("record");
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
  int region_ok = 1;
  for (int p = 1; p < REGION_PAGES; p += 6) {
    int touched = (p / 6) % 2 == 0;
    for (size_t j = 0; j < 3 * PAGE; j++) {
      unsigned char want = 0;
      if (touched && j < PAGE) want = (unsigned char)(0x40 + p);
      if (touched && j >= 2 * PAGE) want = (unsigned char)(0x80 + p);
      region_ok &= region[p * PAGE + j] == want;
    }
  }
  go = 1;
  int threads_ok = 1;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    threads_ok &= thread_ok[i];
  }
  check("areas", areas_ok, "%d areas after, %d before", seen, nareas[0]);
  check("region", region_ok, "the hand-made region's pages");
  check("threads", threads_ok, "every thread's stack and block");
  return verdict();
}
