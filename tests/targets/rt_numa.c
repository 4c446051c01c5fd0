/* Round-trip target for NUMA memory policies: the main thread sets a task
 * policy (set_mempolicy MPOL_BIND on node 0), a second thread another one
 * (MPOL_PREFERRED | MPOL_F_STATIC_NODES on node 0), a third goes back to
 * the default (MPOL_DEFAULT: it was created with the main thread's), and two private
 * anonymous mappings get policies of their own with mbind (MPOL_INTERLEAVE
 * | MPOL_F_RELATIVE_NODES on node 0, and MPOL_BIND); a third mapping keeps
 * the default; four more get MPOL_LOCAL, MPOL_PREFERRED_MANY,
 * MPOL_WEIGHTED_INTERLEAVE and MPOL_BIND | MPOL_F_NUMA_BALANCING (each
 * where the kernel has it: a mode it refuses with EINVAL is left default,
 * "skip <mode>" printed). Node 0 is the one node every NUMA host has. Each mapping
 * holds a pattern. Then the target prints "ready pid=<pid>" and waits until
 * the trigger file argv[1] exists; then each thread reads its task policy
 * again with get_mempolicy, the main thread reads each mapping's policy
 * with MPOL_F_ADDR and its pattern, and prints "check <name> ok|FAIL
 * <detail>" lines, then PASS or FAIL.
 *
 * usage: rt_numa <trigger-path> [none|shared]
 *   none: set no policy at all (the default everywhere: what a restore
 *   must give back then too).
 *   shared: also mbind a shared anonymous mapping (a policy of the shmem
 *   object: the dump refuses it).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

/* include/uapi/linux/mempolicy.h */
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_F_STATIC_NODES (1 << 15)
#define MPOL_F_RELATIVE_NODES (1 << 14)
#define MPOL_F_ADDR (1 << 1)
#define MAXNODE 1024

static long set_mempolicy_(int mode, const unsigned long *mask, unsigned long maxnode) {
  return syscall(SYS_set_mempolicy, mode, mask, maxnode);
}
static long mbind_(void *addr, unsigned long len, int mode, const unsigned long *mask,
                   unsigned long maxnode) {
  return syscall(SYS_mbind, addr, len, mode, mask, maxnode, 0);
}

struct pol {
  int mode;
  unsigned long mask;
};

/* The policy get_mempolicy reports for the calling thread (addr NULL) or for addr. */
static struct pol read_pol(void *addr) {
  unsigned long mask[MAXNODE / 64];
  memset(mask, 0, sizeof mask);
  int mode = -1;
  if (syscall(SYS_get_mempolicy, &mode, mask, MAXNODE, addr, addr ? MPOL_F_ADDR : 0) != 0) {
    die("get_mempolicy");
  }
  return (struct pol){mode, mask[0]};
}

static int none;
static struct pol want_main, want_thread, want_a, want_b, want_c;
static const char *trigger;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int thread_set, thread_done;
static struct pol thread_after, want_thread2, thread2_after;

/* Worker 1 (arg NULL) sets MPOL_PREFERRED | MPOL_F_STATIC_NODES, worker 2 MPOL_DEFAULT. */
static void *worker(void *arg) {
  int second = arg != NULL;
  unsigned long node0 = 1;
  if (!none && !second &&
      set_mempolicy_(MPOL_PREFERRED | MPOL_F_STATIC_NODES, &node0, 64) != 0) {
    die("set_mempolicy in the thread");
  }
  if (!none && second && set_mempolicy_(MPOL_DEFAULT, NULL, 0) != 0) die("set_mempolicy default");
  *(second ? &want_thread2 : &want_thread) = read_pol(NULL);
  pthread_mutex_lock(&lock);
  thread_set++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&lock);
  wait_trigger(trigger);
  *(second ? &thread2_after : &thread_after) = read_pol(NULL);
  pthread_mutex_lock(&lock);
  thread_done++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void check_pol(const char *name, struct pol now, struct pol want) {
  check(name, now.mode == want.mode && now.mask == want.mask, "mode 0x%x mask 0x%lx, was 0x%x 0x%lx",
        now.mode, now.mask, want.mode, want.mask);
}

static int pattern_ok(const unsigned char *p, size_t len, unsigned char seed) {
  for (size_t i = 0; i < len; i += 512) {
    if (p[i] != (unsigned char)(seed + i / 512)) return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_numa <trigger-path> [none]");
  trigger = argv[1];
  none = argc > 2 && strcmp(argv[2], "none") == 0;
  if (argc > 2 && strcmp(argv[2], "shared") == 0) {
    unsigned long node = 1;
    void *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap shared");
    if (mbind_(sh, 4096, MPOL_BIND, &node, 64) != 0) die("mbind shared");
  }
  const size_t len = 16 * 4096;
  /* Seven mappings with guard gaps, so none merges with another. */
  unsigned char *area = mmap(NULL, 15 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) die("mmap");
  unsigned char *a = area + len, *b = area + 3 * len, *c = area + 5 * len;
  unsigned char *more[4] = {area + 7 * len, area + 9 * len, area + 11 * len, area + 13 * len};
  const int more_modes[4] = {4 /* MPOL_LOCAL */, 5 /* MPOL_PREFERRED_MANY */,
                             6 /* MPOL_WEIGHTED_INTERLEAVE */, MPOL_BIND | (1 << 13)};
  struct pol want_more[4];
  for (unsigned char *m = a; m <= more[3]; m += 2 * len) {
    if (mmap(m, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
        m) {
      die("mmap fixed");
    }
  }
  unsigned long node0 = 1;
  if (!none) {
    if (set_mempolicy_(MPOL_BIND, &node0, 64) != 0) die("set_mempolicy");
    if (mbind_(a, len, MPOL_INTERLEAVE | MPOL_F_RELATIVE_NODES, &node0, 64) != 0) die("mbind a");
    if (mbind_(b, len, MPOL_BIND, &node0, 64) != 0) die("mbind b");
    for (int i = 0; i < 4; i++) {
      int local = more_modes[i] == 4;
      if (mbind_(more[i], len, more_modes[i], local ? NULL : &node0, local ? 0 : 64) != 0) {
        if (errno != EINVAL) die("mbind more");
        printf("skip 0x%x\n", more_modes[i]);
      }
    }
  }
  for (size_t i = 0; i < len; i += 512) {
    a[i] = (unsigned char)(1 + i / 512);
    b[i] = (unsigned char)(2 + i / 512);
    c[i] = (unsigned char)(3 + i / 512);
  }
  want_main = read_pol(NULL);
  want_a = read_pol(a);
  want_b = read_pol(b);
  want_c = read_pol(c);
  for (int i = 0; i < 4; i++) want_more[i] = read_pol(more[i]);
  pthread_t th, th2;
  if (pthread_create(&th, NULL, worker, NULL) != 0) die("pthread_create");
  if (pthread_create(&th2, NULL, worker, &th2) != 0) die("pthread_create");
  pthread_mutex_lock(&lock);
  while (thread_set < 2) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  printf("policies main=0x%x/0x%lx thread=0x%x/0x%lx a=0x%x/0x%lx b=0x%x/0x%lx c=0x%x/0x%lx\n",
         want_main.mode, want_main.mask, want_thread.mode, want_thread.mask, want_a.mode,
         want_a.mask, want_b.mode, want_b.mask, want_c.mode, want_c.mask);
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  pthread_mutex_lock(&lock);
  while (thread_done < 2) pthread_cond_wait(&cv, &lock);
  pthread_mutex_unlock(&lock);
  check_pol("main_policy", read_pol(NULL), want_main);
  check_pol("thread_policy", thread_after, want_thread);
  check_pol("thread2_policy", thread2_after, want_thread2);
  check_pol("mapping_a", read_pol(a), want_a);
  check_pol("mapping_b", read_pol(b), want_b);
  check_pol("mapping_c", read_pol(c), want_c);
  const char *more_names[4] = {"mapping_local", "mapping_preferred_many", "mapping_weighted",
                               "mapping_balancing"};
  for (int i = 0; i < 4; i++) check_pol(more_names[i], read_pol(more[i]), want_more[i]);
  check("patterns", pattern_ok(a, len, 1) && pattern_ok(b, len, 2) && pattern_ok(c, len, 3), "");
  if (!none) {
    check("policies_set",
          want_main.mode == MPOL_BIND && want_thread2.mode == MPOL_DEFAULT &&
              want_a.mode != MPOL_DEFAULT,
          "");
  }
  return verdict();
}
