/* Round-trip target for shared anonymous memory across fork
 * (tests/restore_cow_test.ts): a MAP_SHARED|MAP_ANONYMOUS region created
 * by the parent before it forks a child, which forks a grandchild (no
 * exec). Before the dump the child writes into it; after the restore the
 * parent writes, the child must see it and write, the grandchild must see
 * that and write, and the parent must see the grandchild's write.
 * With "moved" the child first moves the region to another address
 * (mremap), so that parent and child hold the object at different
 * addresses: it must stay one object for the three.
 *
 * usage: rt_shmem <trigger-file> [moved]
 * Prints "ready pid=P child=C grandchild=G shm=0x..." and waits for the
 * trigger file; child and grandchild exit with their failure counts.
 */
#define _GNU_SOURCE
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define LEN (1UL << 20)

static volatile int *at(char *s, size_t off) { return (volatile int *)(s + off); }

/* Waits up to 5 s for the int at `off` to become `v`. */
static int await_value(char *s, size_t off, int v) {
  struct timespec ts = {0, 5 * 1000 * 1000};
  for (int i = 0; i < 1000; i++) {
    if (*at(s, off) == v) return 1;
    nanosleep(&ts, NULL);
  }
  return 0;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_shmem <trigger-file> [moved]");
  int moved = argc > 2 && strcmp(argv[2], "moved") == 0;
  char *shm = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm == MAP_FAILED) die("mmap");
  for (size_t i = 0; i < LEN; i += 4096) shm[i + 16] = (char)(i / 4096 + 1);
  int up[2];
  if (pipe(up)) die("pipe");
  pid_t child = fork(), grandchild = 0;
  if (child < 0) die("fork");
  if (child == 0) {
    char *s = shm;
    if (moved) {
      char *to = mmap(NULL, LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      s = mremap(shm, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, to);
      if (s == MAP_FAILED) die("mremap");
    }
    s[100] = 'c';
    pid_t g = fork();
    if (g < 0) die("fork");
    if (g == 0) {
      close(up[0]);
      close(up[1]);
      wait_trigger(argv[1]);
      check("grandchild-sees-child", await_value(s, 8192, 0x5678), "");
      *at(s, 12288) = 0x9abc;
      _exit(failures);
    }
    pid_t gpid = g;
    if (write(up[1], &gpid, sizeof gpid) != sizeof gpid) die("write");
    close(up[0]);
    close(up[1]);
    wait_trigger(argv[1]);
    check("child-sees-parent", await_value(s, 4096, 0x1234), "");
    *at(s, 8192) = 0x5678;
    int st = 0;
    if (waitpid(g, &st, 0) != g) die("waitpid");
    _exit(failures + !(WIFEXITED(st) && WEXITSTATUS(st) == 0));
  }
  close(up[1]);
  if (read(up[0], &grandchild, sizeof grandchild) != sizeof grandchild) die("child setup");
  close(up[0]);
  print_ready("pid=%d child=%d grandchild=%d shm=%p", getpid(), child, grandchild, (void *)shm);
  wait_trigger(argv[1]);
  int before = shm[100] == 'c';
  for (size_t i = 0; i < LEN; i += 4096) before &= shm[i + 16] == (char)(i / 4096 + 1);
  check("before", before, "");
  *at(shm, 4096) = 0x1234;
  check("parent-sees-grandchild", await_value(shm, 12288, 0x9abc), "");
  int st = 0;
  if (waitpid(child, &st, 0) != child) die("waitpid");
  check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
  return verdict();
}
