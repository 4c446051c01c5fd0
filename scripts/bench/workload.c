/* Benchmark workload for `deno task bench`: sets up memory of a given
 * shape, prints one "ready ..." line, then runs a heartbeat: it sleeps
 * 1 ms at a time and, whenever two beats are further apart than 5 ms
 * (the process was stopped: frozen by a dump, or dead until a restore),
 * prints "gap <from_ns> <to_ns>" in CLOCK_REALTIME nanoseconds. The first
 * such line after a restore says when the restored process ran again.
 * SIGUSR1 makes it verify its memory and print "verify ok" or
 * "verify FAIL <detail>".
 *
 * usage: workload anon <MiB>
 *        workload sparse <reserve-MiB> <touch-MiB>
 *        workload maps <count> [pages] [empty]  (count mappings of pages each, default 1;
 *                                               then empty one-page mappings never touched)
 *        workload threads <count> [MiB]   (count threads in all, MiB touched, default 16)
 *        workload tree <count> <MiB>       (count processes, each with MiB touched; the root
 *                                           writes to a pipe read by its first child; SIGUSR1 to
 *                                           the root makes every process verify itself)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MiB (1024UL * 1024UL)

/* Touched ranges to verify (the sparse workload has many). */
struct range {
  uint8_t *p;
  size_t len;
  unsigned seed;
};
static struct range *ranges;
static size_t nranges;
static volatile sig_atomic_t verify_requested;
/* tree: the root's children (to pass SIGUSR1 on). */
static pid_t tree_children[64];
static int ntree_children;

static void add_range(uint8_t *p, size_t len, unsigned seed) {
  ranges = realloc(ranges, (nranges + 1) * sizeof *ranges);
  if (!ranges) abort();
  ranges[nranges++] = (struct range){p, len, seed};
}

/* One 64-bit word per 64 bytes differs with the page and the seed; the rest
 * is a constant non-zero byte: no page is zero, filling is memset-fast. */
static void fill(uint8_t *p, size_t len, unsigned seed) {
  memset(p, 0x5a, len);
  for (size_t off = 0; off < len; off += 64) {
    *(uint64_t *)(p + off) = (uint64_t)(off / PAGE) * 2654435761u + seed;
  }
}

static long check(const uint8_t *p, size_t len, unsigned seed) {
  for (size_t off = 0; off < len; off += 64) {
    if (*(const uint64_t *)(p + off) != (uint64_t)(off / PAGE) * 2654435761u + seed) return off;
    for (size_t j = 8; j < 64; j++) {
      if (p[off + j] != 0x5a) return off + j;
    }
  }
  return -1;
}

static void verify(void) {
  for (size_t i = 0; i < nranges; i++) {
    long bad = check(ranges[i].p, ranges[i].len, ranges[i].seed);
    if (bad >= 0) {
      printf("verify FAIL range %zu at %p+%ld\n", i, (void *)ranges[i].p, bad);
      fflush(stdout);
      return;
    }
  }
  printf("verify ok %zu ranges\n", nranges);
  fflush(stdout);
}

static void on_usr1(int sig) {
  (void)sig;
  verify_requested = 1;
}

static void *map_anon(size_t len, int extra) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  return p;
}

static void *idle_thread(void *arg) {
  (void)arg;
  for (;;) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: workload anon|sparse|maps|threads N [M]\n");
    return 2;
  }
  const char *kind = argv[1];
  unsigned long n = strtoul(argv[2], NULL, 10);
  size_t touched = 0;
  int faulting = strcmp(kind, "faulting") == 0;
  volatile uint8_t *scratch = NULL;
  size_t next_page = 0;
  if (faulting) {
    scratch = map_anon(PAGE, 0);
    kind = "anon";
  }
  if (strcmp(kind, "anon") == 0) {
    size_t len = n * MiB;
    uint8_t *p = map_anon(len, 0);
    fill(p, len, 1);
    add_range(p, len, 1);
    touched = len;
  } else if (strcmp(kind, "sparse") == 0) {
    /* Reserve n MiB, touch m MiB of it: 1 MiB at even strides. */
    unsigned long m = argc > 3 ? strtoul(argv[3], NULL, 10) : 256;
    size_t len = n * MiB;
    uint8_t *p = map_anon(len, MAP_NORESERVE);
    size_t stride = (n / m) * MiB;
    for (unsigned long i = 0; i < m; i++) {
      fill(p + i * stride, MiB, 2 + (unsigned)i);
      add_range(p + i * stride, MiB, 2 + (unsigned)i);
    }
    touched = m * MiB;
  } else if (strcmp(kind, "maps") == 0) {
    /* n mappings of k pages (default 1): a touched region whose odd
     * mappings are made read-only, so no two neighbours merge into one. */
    unsigned long k = argc > 3 ? strtoul(argv[3], NULL, 10) : 1;
    size_t len = n * k * PAGE;
    uint8_t *p = map_anon(len, 0);
    fill(p, len, 3);
    add_range(p, len, 3);
    for (unsigned long i = 1; i < n; i += 2) {
      if (mprotect(p + i * k * PAGE, k * PAGE, PROT_READ) != 0) {
        perror("mprotect");
        return 2;
      }
    }
    unsigned long e = argc > 4 ? strtoul(argv[4], NULL, 10) : 0;
    uint8_t *q = e ? map_anon(e * PAGE, 0) : NULL;
    for (unsigned long i = 1; i < e; i += 2) {
      if (mprotect(q + i * PAGE, PAGE, PROT_READ) != 0) {
        perror("mprotect");
        return 2;
      }
    }
    touched = len;
  } else if (strcmp(kind, "threads") == 0) {
    /* n threads in all (the main thread included), idle in nanosleep. */
    for (unsigned long i = 1; i < n; i++) {
      pthread_t t;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 256 * 1024);
      if (pthread_create(&t, &attr, idle_thread, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 2;
      }
    }
    size_t len = (argc > 3 ? strtoul(argv[3], NULL, 10) : 16) * MiB;
    uint8_t *p = map_anon(len, 0);
    fill(p, len, 4);
    add_range(p, len, 4);
    touched = len;
  } else if (strcmp(kind, "tree") == 0) {
    size_t len = (argc > 3 ? strtoul(argv[3], NULL, 10) : 64) * MiB;
    int fds[2], ready[2];
    if (pipe(fds) != 0 || pipe(ready) != 0) {
      perror("pipe");
      return 2;
    }
    int is_child = 0;
    for (unsigned long i = 1; i < n && i < 64; i++) {
      pid_t c = fork();
      if (c < 0) {
        perror("fork");
        return 2;
      }
      if (c == 0) {
        is_child = (int)i;
        break;
      }
      tree_children[ntree_children++] = c;
    }
    /* The root keeps the write end, the first child the read end. */
    if (is_child) close(fds[1]);
    if (is_child != 1) close(fds[0]);
    if (!is_child) (void)!write(fds[1], "x", 1);
    uint8_t *p = map_anon(len, 0);
    fill(p, len, 5 + (unsigned)is_child);
    add_range(p, len, 5 + (unsigned)is_child);
    touched = len;
    if (is_child) {
      (void)!write(ready[1], "r", 1); /* filled */
      close(ready[0]);
      close(ready[1]);
      struct sigaction sc;
      memset(&sc, 0, sizeof sc);
      sc.sa_handler = on_usr1;
      sigaction(SIGUSR1, &sc, NULL);
      for (;;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (verify_requested) {
          verify_requested = 0;
          verify();
        }
      }
    }
    /* Ready once every child has filled its memory. */
    close(ready[1]);
    char byte;
    for (int i = 0; i < ntree_children; i++) (void)!read(ready[0], &byte, 1);
    close(ready[0]);
  } else {
    fprintf(stderr, "unknown workload %s\n", kind);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  printf("ready %s touched %zu region %p children", kind, touched,
         ranges ? (void *)ranges[0].p : NULL);
  for (int i = 0; i < ntree_children; i++) printf(" %d", (int)tree_children[i]);
  printf("\n");
  fflush(stdout);
  uint64_t last = now_ns();
  for (;;) {
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
    if (faulting) {
      volatile uint8_t *q = ranges[0].p + next_page * PAGE;
      *q = *q;
      next_page = (next_page + 1) % (ranges[0].len / PAGE);
      madvise((void *)scratch, PAGE, MADV_DONTNEED);
      *scratch = 1;
    }
    uint64_t t = now_ns();
    if (t - last > 5 * 1000 * 1000) {
      printf("gap %llu %llu\n", (unsigned long long)last, (unsigned long long)t);
      fflush(stdout);
    }
    last = t;
    if (verify_requested) {
      verify_requested = 0;
      for (int i = 0; i < ntree_children; i++) kill(tree_children[i], SIGUSR1);
      verify();
      last = now_ns();
    }
  }
}
