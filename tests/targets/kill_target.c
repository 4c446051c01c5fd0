/* Target for the kill-anywhere tests: checks itself all the time.
 *
 * The main thread and one extra thread loop forever; each round
 *   - runs an asm loop with known values in r12-r15 and xmm6/xmm7 and checks
 *     them after it (an injection that left registers changed shows here),
 *   - checks its signal mask is exactly what it set (SIGUSR2, and for the
 *     extra thread SIGUSR1 too),
 * and the main thread also
 *   - rewrites and checks a 4 MiB pattern (each page a word that depends on
 *     the page and on how many times it was rewritten),
 *   - checks its fds: file <dir>/data at offset 12345 with its flags, and a
 *     pipe holding 5 bytes,
 *   - sends one byte each way over a loopback TCP connection between two
 *     of its own sockets (a connection left in repair mode fails here).
 * "ready" is printed once the extra thread has set its mask.
 * On SIGUSR1 the main thread prints "alive <n> rounds=<r>" (n counts the
 * SIGUSR1s) after a full round of checks. Any failed check prints
 * "FAIL <what>" and exits 3.
 *
 * usage: kill_target <dir>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "common.h"

#define PAGE 4096
#define PAGES 1024
#define OFFSET 12345

static volatile sig_atomic_t usr1;
static void on_usr1(int sig) {
  (void)sig;
  usr1++;
}

__attribute__((noreturn)) static void fail(const char *what) {
  printf("FAIL %s\n", what);
  fflush(stdout);
  _exit(3);
}

/* Spins `iters` times with known values in r12-r15 and xmm6/7; 0 if they survived. */
static long reg_check(long iters) {
  long bad;
  __asm__ volatile(
      "movabs $0x1111222233334444, %%r12\n\t"
      "movabs $0x5555666677778888, %%r13\n\t"
      "movabs $0x9999aaaabbbbcccc, %%r14\n\t"
      "movabs $0x0ddddeeeeffff000, %%r15\n\t"
      "movq %%r13, %%xmm6\n\t"
      "movq %%r14, %%xmm7\n\t"
      "1: dec %1\n\t"
      "jnz 1b\n\t"
      "xor %0, %0\n\t"
      "movabs $0x1111222233334444, %%rax\n\tcmp %%rax, %%r12\n\tjne 2f\n\t"
      "movabs $0x5555666677778888, %%rax\n\tcmp %%rax, %%r13\n\tjne 2f\n\t"
      "movabs $0x9999aaaabbbbcccc, %%rax\n\tcmp %%rax, %%r14\n\tjne 2f\n\t"
      "movabs $0x0ddddeeeeffff000, %%rax\n\tcmp %%rax, %%r15\n\tjne 2f\n\t"
      "movq %%xmm6, %%rax\n\tcmp %%rax, %%r13\n\tjne 2f\n\t"
      "movq %%xmm7, %%rax\n\tcmp %%rax, %%r14\n\tjne 2f\n\t"
      "jmp 3f\n\t"
      "2: mov $1, %0\n\t"
      "3:\n\t"
      : "=&r"(bad), "+r"(iters)
      :
      : "rax", "r12", "r13", "r14", "r15", "xmm6", "xmm7", "cc", "memory");
  return bad;
}

static void check_mask(const sigset_t *want, const char *who) {
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  for (int s = 1; s < 65; s++) {
    if (sigismember(&now, s) != sigismember(want, s)) {
      char msg[64];
      snprintf(msg, sizeof msg, "%s signal mask (signal %d)", who, s);
      fail(msg);
    }
  }
}

/* Passed by the worker once its mask is set: "ready" is printed only after that. */
static pthread_barrier_t started;

static void *worker(void *arg) {
  (void)arg;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  pthread_sigmask(SIG_SETMASK, &mask, NULL);
  pthread_barrier_wait(&started);
  for (;;) {
    if (reg_check(2000000)) fail("thread registers");
    check_mask(&mask, "thread");
  }
  return NULL;
}

/* A connected pair of TCP sockets over 127.0.0.1 (the listener closed again). */
static void tcp_pair(int *a, int *b) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (struct sockaddr *)&addr, &len) < 0)
    die_err("tcp listen", errno);
  *a = socket(AF_INET, SOCK_STREAM, 0);
  if (*a < 0 || connect(*a, (struct sockaddr *)&addr, sizeof addr) < 0) die_err("tcp connect", errno);
  *b = accept(l, NULL, NULL);
  if (*b < 0) die_err("tcp accept", errno);
  close(l);
}

/* One byte from `from` to `to`; 0 if it arrived intact. */
static int tcp_hop(int from, int to, unsigned char v) {
  unsigned char got = 0;
  if (send(from, &v, 1, 0) != 1) return -1;
  if (recv(to, &got, 1, MSG_WAITALL) != 1) return -1;
  return got == v ? 0 : -1;
}

static uint64_t pattern(size_t page, uint64_t gen) {
  return (page * 0x9e3779b97f4a7c15ull) ^ (gen * 0xbf58476d1ce4e5b9ull) ^ 0x5eedull;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "kill_target <dir>");
  char path[4096];
  snprintf(path, sizeof path, "%s/data", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) die_err("open", errno);
  static char zeros[OFFSET + 100];
  if (write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) die_err("write", errno);
  lseek(fd, OFFSET, SEEK_SET);
  int flags = fcntl(fd, F_GETFL);
  int pfd[2];
  if (pipe(pfd) < 0) die_err("pipe", errno);
  if (write(pfd[1], "hello", 5) != 5) die_err("pipe write", errno);

  int ta, tb;
  tcp_pair(&ta, &tb);

  uint64_t *region = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) die_err("mmap", errno);
  static uint64_t gen[PAGES];
  for (size_t p = 0; p < PAGES; p++) region[p * PAGE / 8] = pattern(p, 0);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR2);
  pthread_sigmask(SIG_SETMASK, &mask, NULL);
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t th;
  pthread_barrier_init(&started, NULL, 2);
  pthread_create(&th, NULL, worker, NULL);
  /* A new thread starts with every signal blocked (glibc's pthread_create) until it
   * first runs: on a busy machine that can be after "ready" and the first answers,
   * and the harness would take that for the thread's own mask. */
  pthread_barrier_wait(&started);

  print_ready("pid=%d", getpid());
  sig_atomic_t seen = 0;
  for (unsigned long rounds = 0;; rounds++) {
    if (reg_check(500000)) fail("main registers");
    check_mask(&mask, "main");
    for (size_t p = 0; p < PAGES; p++) {
      uint64_t *w = &region[p * PAGE / 8];
      if (*w != pattern(p, gen[p])) fail("memory pattern");
      gen[p]++;
      *w = pattern(p, gen[p]);
    }
    if (lseek(fd, 0, SEEK_CUR) != OFFSET) fail("file offset");
    if (fcntl(fd, F_GETFL) != flags) fail("file flags");
    int queued = -1;
    if (ioctl(pfd[0], FIONREAD, &queued) < 0 || queued != 5) fail("pipe contents");
    if (tcp_hop(ta, tb, (unsigned char)rounds) || tcp_hop(tb, ta, (unsigned char)~rounds))
      fail("tcp connection");
    if (usr1 != seen) {
      seen = usr1;
      printf("alive %d rounds=%lu\n", (int)seen, rounds);
      fflush(stdout);
    }
  }
}
