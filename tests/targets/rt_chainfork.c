/* Pre-copy chain target: a child forked after a pre-dump (it inherits the
 * tracking userfaultfd, not the protection) writes part of the memory it
 * shares copy-on-write with its parent, and so does the parent.
 *
 * A 4 MiB area filled with pattern 0; after SIGUSR1 it forks, prints
 * "forked child=<pid>", then the child rewrites the first quarter with
 * pattern 1 and the parent the second quarter with pattern 2. Once the
 * trigger file exists each checks its own memory (child: quarter 1 is 1,
 * the rest 0; parent: quarter 2 is 2, the rest 0); the parent reaps the
 * child and checks it passed:
 *   memory  this process's pages hold what it wrote
 *   child   the child exited 0
 * then prints PASS or FAIL and exits.
 *
 * usage: rt_chainfork <trigger>
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

#define PAGES 1024u
#define PAGE 4096u
#define WORDS (PAGE / 8u)

static uint64_t word(unsigned pattern, unsigned page, unsigned w) {
  return ((uint64_t)pattern << 56) ^ ((uint64_t)page << 24) ^ (w * 0x9e3779b97f4a7c15ull);
}

static void fill(uint64_t *m, unsigned from, unsigned to, unsigned pattern) {
  for (unsigned p = from; p < to; p++)
    for (unsigned w = 0; w < WORDS; w++) m[p * WORDS + w] = word(pattern, p, w);
}

static long bad_pages(uint64_t *m, unsigned q, unsigned pattern) {
  long bad = 0;
  for (unsigned p = 0; p < PAGES; p++) {
    unsigned want = p / (PAGES / 4) == q ? pattern : 0;
    for (unsigned w = 0; w < WORDS; w++)
      if (m[p * WORDS + w] != word(want, p, w)) {
        bad++;
        break;
      }
  }
  return bad;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_chainfork <trigger>");
  uint64_t *m = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die_err("mmap", errno);
  fill(m, 0, PAGES, 0);
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  pid_t child = fork();
  if (child < 0) die_err("fork", errno);
  if (child == 0) {
    fill(m, 0, PAGES / 4, 1);
    wait_trigger(argv[1]);
    long bad = bad_pages(m, 0, 1);
    check("memory", bad == 0, "child: %ld pages wrong", bad);
    return verdict();
  }
  fill(m, PAGES / 4, PAGES / 2, 2);
  printf("forked child=%d\n", child);
  fflush(stdout);
  wait_trigger(argv[1]);
  long bad = bad_pages(m, 1, 2);
  check("memory", bad == 0, "parent: %ld pages wrong", bad);
  int status = 0;
  pid_t r = waitpid(child, &status, 0);
  check("child", r == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child status 0x%x (waitpid %d)", status, r);
  return verdict();
}
