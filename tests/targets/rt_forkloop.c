/* A tree that keeps changing: the parent forks children all the time, each
 * child lives a while and exits, the parent reaps them, and both rewrite
 * their private memory meanwhile (pre-copy chains of a changing tree).
 *
 * A private area of <mib> MiB; page p holds a pattern of (p, version[p])
 * and version[] (another private area) says which. The parent rewrites one
 * page (a new version) every iteration, forks while fewer than 4 children
 * live, and reaps the children that exited (WNOHANG). Each child rewrites a
 * few pages of its own copy with versions of its own, then lives
 * <child_ms> milliseconds (0: exits at once), checking those pages every
 * millisecond, then checks its whole area against its version[] and exits
 * 0, or 1 when a page is wrong (or 3 when its parent changed: orphaned).
 *
 * On SIGUSR1 the parent forks a lingering child (prints "lingering
 * child=<pid>"): it rewrites its pages as the others do, then lives until
 * the trigger file exists, checking them, and checks its whole area.
 *
 * Once the trigger file exists the parent forks on for 300 ms (forking
 * still works after a restore), then stops forking, reaps every child and
 * checks its own area:
 *   memory    the parent's pages hold what its version[] says
 *   children  every child reaped exited 0 (a child's pages were right)
 *   forked    at least 2 children were forked after the trigger
 * then prints PASS or FAIL and exits.
 *
 * usage: rt_forkloop <trigger> <mib> <child_ms>
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

#define PAGE 4096u
#define WORDS (PAGE / 8u)
#define MAX_LIVE 4

static uint64_t *area;
static uint32_t *version;
static unsigned pages;

static uint64_t word(unsigned page, uint32_t v, unsigned w) {
  return ((uint64_t)v << 32) ^ ((uint64_t)page << 12) ^ (w * 0x9e3779b97f4a7c15ull);
}

static void write_page(unsigned p, uint32_t v) {
  version[p] = v;
  for (unsigned w = 0; w < WORDS; w++) area[p * WORDS + w] = word(p, v, w);
}

static int page_ok(unsigned p) {
  for (unsigned w = 0; w < WORDS; w++)
    if (area[p * WORDS + w] != word(p, version[p], w)) return 0;
  return 1;
}

static long bad_pages(void) {
  long bad = 0;
  for (unsigned p = 0; p < pages; p++) bad += !page_ok(p);
  return bad;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The child's life: its own pages, checked while it lives, then everything. */
static int child(pid_t parent, unsigned seq, long child_ms) {
  unsigned mine[4];
  uint32_t v = 0x80000000u | seq;
  for (unsigned i = 0; i < 4; i++) {
    mine[i] = (seq * 4u + i * 97u) % pages;
    write_page(mine[i], v + i);
  }
  double end = now_ms() + child_ms;
  while (now_ms() < end) {
    if (getppid() != parent) return 3;
    for (unsigned i = 0; i < 4; i++)
      if (!page_ok(mine[i])) return 1;
    sleep_ms(1);
  }
  return bad_pages() ? 1 : 0;
}

/* A child forked on SIGUSR1: lives until the trigger file exists. */
static int linger(pid_t parent, unsigned seq, const char *trigger) {
  uint32_t v = 0x40000000u | seq;
  for (unsigned i = 0; i < 8; i++) write_page((seq * 8u + i * 131u) % pages, v + i);
  while (access(trigger, F_OK) != 0) {
    if (getppid() != parent) return 3;
    sleep_ms(5);
  }
  return bad_pages() ? 1 : 0;
}

static volatile sig_atomic_t linger_wanted;

static void on_usr1(int sig) {
  (void)sig;
  linger_wanted = 1;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_forkloop <trigger> <mib> <child_ms>");
  pages = (unsigned)atoi(argv[2]) * 256u;
  long child_ms = atol(argv[3]);
  if (pages == 0) die_err("mib", EINVAL);
  area = mmap(NULL, (size_t)pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
              -1, 0);
  version = mmap(NULL, (size_t)pages * 4u, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (area == MAP_FAILED || version == MAP_FAILED) die_err("mmap", errno);
  for (unsigned p = 0; p < pages; p++) write_page(p, 1);
  pid_t self = getpid();
  signal(SIGUSR1, on_usr1);
  print_ready("pid=%d", self);
  unsigned seq = 0, live = 0, forked_after = 0, reaped = 0;
  long bad_children = 0;
  uint32_t v = 2;
  double stop_at = 0;
  for (unsigned it = 0;; it++) {
    write_page((it * 7919u) % pages, v++);
    int status;
    pid_t r;
    while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
      live--;
      reaped++;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (bad_children++ < 5) printf("child %d: status 0x%x\n", r, status);
      }
    }
    if (stop_at == 0 && access(argv[1], F_OK) == 0) stop_at = now_ms() + 300;
    if (stop_at != 0 && now_ms() > stop_at) break;
    if (linger_wanted) {
      linger_wanted = 0;
      pid_t c = fork();
      if (c < 0) die_err("fork", errno);
      if (c == 0) _exit(linger(self, ++seq, argv[1]));
      seq++;
      live++;
      printf("lingering child=%d\n", c);
      fflush(stdout);
    } else if (live < MAX_LIVE) {
      pid_t c = fork();
      if (c < 0) die_err("fork", errno);
      if (c == 0) _exit(child(self, ++seq, child_ms));
      seq++;
      live++;
      if (stop_at != 0) forked_after++;
    } else {
      sleep_ms(1);
    }
  }
  while (live > 0) {
    int status;
    pid_t r = waitpid(-1, &status, 0);
    if (r < 0) break;
    live--;
    reaped++;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (bad_children++ < 5) printf("child %d: status 0x%x\n", r, status);
    }
  }
  long bad = bad_pages();
  printf("reaped=%u forked_after=%u\n", reaped, forked_after);
  check("memory", bad == 0, "%ld pages wrong", bad);
  check("children", bad_children == 0 && live == 0, "%ld children failed, %u not reaped",
        bad_children, live);
  check("forked", forked_after >= 2, "%u forked after the trigger", forked_after);
  return verdict();
}
