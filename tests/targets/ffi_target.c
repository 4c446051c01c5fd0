/* Target for tests/ffi_test.ts. Modes (argv[1]):
 *
 *   state <expected-poke-hex>  sets up signal, timer, rlimit and FPU state,
 *       prints it as key=value lines, then spins in spin_here() (its own
 *       section, so the test knows its exact address range) until SIGUSR2.
 *       Then it checks that its state survived the test's ptrace work and
 *       prints one "check <name> ok|FAIL" line per item and PASS or FAIL.
 *   sleep <ms>   sleeps once in clock_nanosleep(CLOCK_MONOTONIC) and reports
 *       the return code and the elapsed time.
 *   fds          copies stdin to stdout, reports which of fds 5 and 6 are open.
 *   exit <code>  exits with that code.
 *   idle         pauses forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define XMM15_MAGIC 0x1122334455667788ULL
#define FPU_CONTROL_WORD 0x027f /* double precision, all exceptions masked */
#define BUF_SIZE 8192
#define ALT_SIZE 65536

volatile unsigned long counter;
volatile sig_atomic_t got_usr2;
volatile uint64_t poke_target = 0xa5a5a5a5a5a5a5a5ULL;
volatile uint64_t xmm15_after;
unsigned char shared_buf[BUF_SIZE];
static char altstack[ALT_SIZE];
static int failures;

static unsigned char old_pattern(int i) { return (unsigned char)(i * 7 + 3); }
static unsigned char new_pattern(int i) { return (unsigned char)(i * 13 + 1); }

/* Loops until SIGUSR2 with a marker in xmm15; its own section gives the test
 * the exact [__start_spin_text, __stop_spin_text) range. */
__attribute__((noinline, section("spin_text"))) void spin_here(void) {
  uint64_t magic = XMM15_MAGIC;
  __asm__ volatile("movq %0, %%xmm15" : : "r"(magic) : "xmm15");
  while (!got_usr2) counter++;
  uint64_t out;
  __asm__ volatile("movq %%xmm15, %0" : "=r"(out));
  xmm15_after = out;
}
extern char __start_spin_text[], __stop_spin_text[];

static void on_usr2(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  (void)uc;
  got_usr2 = 1;
}

static void on_trap(int sig) { (void)sig; }

/* The kernel's 64-bit view of a signal set. */
static uint64_t mask_word(const sigset_t *set) {
  uint64_t w = 0;
  for (int sig = 1; sig <= 64; sig++)
    if (sigismember(set, sig) == 1) w |= 1ULL << (sig - 1);
  return w;
}

static void check(const char *name, int ok) {
  printf("check %s %s\n", name, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

static int state_mode(uint64_t expected_poke) {
  for (int i = 0; i < BUF_SIZE; i++) shared_buf[i] = old_pattern(i);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr2;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGQUIT);
  sigaction(SIGUSR2, &sa, NULL);

  struct sigaction trap;
  memset(&trap, 0, sizeof trap);
  trap.sa_handler = on_trap;
  sigaction(SIGTRAP, &trap, NULL);
  signal(SIGALRM, SIG_IGN);

  stack_t ss = {.ss_sp = altstack, .ss_flags = 0, .ss_size = ALT_SIZE};
  sigaltstack(&ss, NULL);

  struct itimerval itv = {.it_interval = {7, 250000}, .it_value = {50, 0}};
  setitimer(ITIMER_REAL, &itv, NULL);

  struct rlimit rl = {321, 654};
  setrlimit(RLIMIT_NOFILE, &rl);

  sigset_t block, mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_SETMASK, &block, NULL);
  sigprocmask(SIG_SETMASK, NULL, &mask);

  unsigned short cw = FPU_CONTROL_WORD;
  __asm__ volatile("fldcw %0" : : "m"(cw));

  uintptr_t tp;
  __asm__("mov %%fs:0, %0" : "=r"(tp));

  printf("pid=%d\n", getpid());
  printf("spin_start=%p\nspin_end=%p\n", (void *)__start_spin_text, (void *)__stop_spin_text);
  printf("usr2_handler=%p\n", (void *)on_usr2);
  printf("trap_handler=%p\n", (void *)on_trap);
  printf("poke_addr=%p\n", (void *)&poke_target);
  printf("buf_addr=%p\nbuf_size=%d\n", (void *)shared_buf, BUF_SIZE);
  printf("altstack=%p\naltstack_size=%d\n", (void *)altstack, ALT_SIZE);
  printf("rseq_addr=%p\n", (void *)(tp + __rseq_offset));
  printf("sigmask=0x%llx\n", (unsigned long long)mask_word(&mask));
  printf("ready\n");
  fflush(stdout);

  spin_here();

  check("xmm15", xmm15_after == XMM15_MAGIC);
  unsigned short cw_now;
  __asm__ volatile("fnstcw %0" : "=m"(cw_now));
  check("fpu_cw", cw_now == FPU_CONTROL_WORD);
  check("poke", poke_target == expected_poke);
  int buf_ok = 1;
  for (int i = 0; i < BUF_SIZE; i++) {
    unsigned char want = (i >= 4000 && i < 4300) ? new_pattern(i) : old_pattern(i);
    if (shared_buf[i] != want) buf_ok = 0;
  }
  check("buffer", buf_ok);
  sigset_t now, pend;
  sigprocmask(SIG_SETMASK, NULL, &now);
  check("sigmask", mask_word(&now) == mask_word(&mask));
  sigpending(&pend);
  check("usr1_pending", sigismember(&pend, SIGUSR1) == 1);
  struct sigaction cur;
  sigaction(SIGUSR2, NULL, &cur);
  check("usr2_action", cur.sa_sigaction == on_usr2 && (cur.sa_flags & SA_RESTART) &&
                           (cur.sa_flags & SA_SIGINFO) && sigismember(&cur.sa_mask, SIGQUIT));
  sigaction(SIGTRAP, NULL, &cur);
  check("trap_action", cur.sa_handler == on_trap);
  stack_t cur_ss;
  sigaltstack(NULL, &cur_ss);
  check("altstack", cur_ss.ss_sp == altstack && cur_ss.ss_size == ALT_SIZE);
  struct itimerval cur_itv;
  getitimer(ITIMER_REAL, &cur_itv);
  check("itimer", cur_itv.it_interval.tv_sec == 7 && cur_itv.it_interval.tv_usec == 250000);
  struct rlimit cur_rl;
  getrlimit(RLIMIT_NOFILE, &cur_rl);
  check("rlimit", cur_rl.rlim_cur == 321 && cur_rl.rlim_max == 654);
  printf("%s\n", failures ? "FAIL" : "PASS");
  fflush(stdout);
  return 0;
}

static int sleep_mode(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L}, a, b;
  printf("pid=%d\nready\n", getpid());
  fflush(stdout);
  clock_gettime(CLOCK_MONOTONIC, &a);
  int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
  clock_gettime(CLOCK_MONOTONIC, &b);
  long el = (b.tv_sec - a.tv_sec) * 1000L + (b.tv_nsec - a.tv_nsec) / 1000000L;
  printf("slept rc=%d elapsed_ms=%ld\n", rc, el);
  fflush(stdout);
  return 0;
}

static int fds_mode(void) {
  char buf[4096];
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) write(1, buf, (size_t)n);
  dprintf(2, "fd5=%s fd6=%s\n", fcntl(5, F_GETFD) == -1 && errno == EBADF ? "closed" : "open",
          fcntl(6, F_GETFD) == -1 ? "closed" : "open");
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "idle";
  if (strcmp(mode, "state") == 0) return state_mode(strtoull(argv[2], NULL, 16));
  if (strcmp(mode, "sleep") == 0) return sleep_mode(atol(argv[2]));
  if (strcmp(mode, "fds") == 0) return fds_mode();
  if (strcmp(mode, "exit") == 0) return atoi(argv[2]);
  for (;;) pause();
}
