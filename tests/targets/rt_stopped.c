/* Round-trip target for stopped processes: forks two children, each its
 * own process group leader. The first forks a grandchild that stops itself
 * with SIGSTOP, collects that stop (waitpid WUNTRACED), then stops itself
 * with SIGSTOP, and the parent collects that stop too; the second stops
 * itself with SIGTSTP and the parent leaves that report uncollected. A
 * SIGCHLD handler counts the signals. Prints
 * "ready pid=<pid> children=<a>,<b> grandchild=<g>" and waits for the
 * trigger file (usage: rt_stopped <trigger>).
 *
 * After the restore it checks: both children are stopped (state T); no
 * SIGCHLD arrived meanwhile; the first child's stop is not reported again
 * and the second's is, with SIGTSTP; after SIGCONT both report being
 * continued, run on and exit with 5 and 6 — the first only once it found
 * its grandchild stopped with its stop not reported again, continued it
 * and reaped it (exit 8); otherwise it exits with 50 + the failed step.
 */
#include "common.h"

#include <sys/wait.h>

static volatile sig_atomic_t sigchld_count;

static void on_chld(int sig) {
  (void)sig;
  sigchld_count++;
}

static char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return '?';
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p ? p[2] : '?';
}

static void wait_state(pid_t pid, char want) {
  for (int i = 0; i < 500 && state_of(pid) != want; i++) sleep_ms(10);
  if (state_of(pid) != want) die_err("child did not stop", ETIMEDOUT);
}

static pid_t grandchild;
static int grandchild_pipe[2];

/* The first child's part: a stopped grandchild whose stop it collected. */
static void make_grandchild(void) {
  grandchild = fork();
  if (grandchild == 0) {
    raise(SIGSTOP);
    _exit(8);
  }
  int st;
  if (waitpid(grandchild, &st, WUNTRACED) != grandchild || !WIFSTOPPED(st)) _exit(60);
  if (write(grandchild_pipe[1], &grandchild, sizeof grandchild) != sizeof grandchild) _exit(61);
}

/* The first child's checks after it is continued; returns its exit code. */
static int check_grandchild(int code) {
  int st = 0;
  if (state_of(grandchild) != 'T') return 51;
  if (waitpid(grandchild, &st, WUNTRACED | WNOHANG) != 0) return 52;
  kill(grandchild, SIGCONT);
  if (waitpid(grandchild, &st, 0) != grandchild || !WIFEXITED(st) || WEXITSTATUS(st) != 8) {
    return 53;
  }
  return code;
}

static pid_t stopped_child(int sig, int code, int with_grandchild) {
  pid_t c = fork();
  if (c == 0) {
    setpgid(0, 0);
    signal(sig, SIG_DFL);
    if (with_grandchild) make_grandchild();
    raise(sig);
    sleep_ms(300); /* after SIGCONT: the parent collects "continued" first */
    _exit(with_grandchild ? check_grandchild(code) : code);
  }
  if (c < 0) die("fork");
  setpgid(c, c);
  return c;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_stopped <trigger>");
  const char *trigger = argv[1];
  struct sigaction sa = {0};
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);

  if (pipe(grandchild_pipe) != 0) die("pipe");
  pid_t a = stopped_child(SIGSTOP, 5, 1);
  pid_t g = 0;
  if (read(grandchild_pipe[0], &g, sizeof g) != sizeof g) die("read");
  int st = 0;
  if (waitpid(a, &st, WUNTRACED) != a || !WIFSTOPPED(st)) die_err("waitpid(a)", ECHILD);
  pid_t b = stopped_child(SIGTSTP, 6, 0);
  wait_state(b, 'T');
  sleep_ms(50); /* every SIGCHLD handled */
  int chld_before = sigchld_count;
  print_ready("pid=%d children=%d,%d grandchild=%d", getpid(), a, b, g);

  wait_trigger(trigger);

  check("stopped-a", state_of(a) == 'T', "state %c", state_of(a));
  check("stopped-b", state_of(b) == 'T', "state %c", state_of(b));
  check("no-sigchld", sigchld_count == chld_before, "%d SIGCHLD after the restore",
        sigchld_count - chld_before);
  pid_t r = waitpid(a, &st, WUNTRACED | WNOHANG);
  check("a-reported-once", r == 0, "r=%d status=0x%x", r, st);
  r = waitpid(b, &st, WUNTRACED | WNOHANG);
  check("b-report-tstp", r == b && WIFSTOPPED(st) && WSTOPSIG(st) == SIGTSTP, "r=%d status=0x%x",
        r, st);
  r = waitpid(b, &st, WUNTRACED | WNOHANG);
  check("b-reported-once", r == 0, "r=%d status=0x%x", r, st);

  kill(a, SIGCONT);
  kill(b, SIGCONT);
  r = waitpid(a, &st, WCONTINUED);
  check("a-continued", r == a && WIFCONTINUED(st), "r=%d status=0x%x", r, st);
  r = waitpid(b, &st, WCONTINUED);
  check("b-continued", r == b && WIFCONTINUED(st), "r=%d status=0x%x", r, st);
  r = waitpid(a, &st, 0);
  check("a-exit", r == a && WIFEXITED(st) && WEXITSTATUS(st) == 5, "r=%d status=0x%x", r, st);
  r = waitpid(b, &st, 0);
  check("b-exit", r == b && WIFEXITED(st) && WEXITSTATUS(st) == 6, "r=%d status=0x%x", r, st);
  return verdict();
}
