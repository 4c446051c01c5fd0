/* Round-trip target for pending signals, including stop signals and
 * SIGTRAP. Two modes:
 *
 *   rt_pending <trigger> [after-sigcont]
 *     Blocks SIGTSTP, SIGTTIN, SIGTRAP and SIGUSR1 (in every thread) with
 *     SA_SIGINFO handlers, then makes pending: for the main thread SIGTSTP
 *     and SIGTRAP (raise: its own queue), for the worker thread SIGTRAP
 *     and SIGUSR1 (pthread_kill), for the process SIGTTIN (kill). Prints
 *     "ready pid=<pid> worker=<tid>" and waits for the trigger file. Then
 *     each thread checks what is pending for it (sigpending: its own
 *     queue and the process's), unblocks, and checks which handlers ran
 *     in it, with the sender's si_code and si_pid. With "after-sigcont" the
 *     test sends SIGCONT before the trigger, which discards the pending
 *     SIGTSTP and SIGTTIN: they must be gone.
 *
 *   rt_pending stopper <pid>
 *     Sends SIGSTOP to <pid> every 200 us until <pid> is a zombie or gone
 *     (at most 20 s); prints "stopper sent=<n>".
 */
#include "common.h"

#include <pthread.h>

#define NSIG_SEEN 32
static __thread int seen[NSIG_SEEN];
static __thread int seen_code[NSIG_SEEN];
static __thread pid_t seen_pid[NSIG_SEEN];

static void on_signal(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  seen[sig]++;
  seen_code[sig] = si->si_code;
  seen_pid[sig] = si->si_pid;
}

static const int blocked_sigs[] = {SIGTSTP, SIGTTIN, SIGTRAP, SIGUSR1};

static char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p ? p[2] : 0;
}

static int stopper(pid_t pid) {
  long sent = 0;
  for (int i = 0; i < 100000; i++) {
    char st = state_of(pid);
    if (st == 0 || st == 'Z' || st == 'X') break;
    if (kill(pid, SIGSTOP) != 0) break;
    sent++;
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  printf("stopper sent=%ld\n", sent);
  return 0;
}

static const char *trigger;
static pid_t main_pid;

/* Checks, in the calling thread, that exactly `want` of the blocked signals are pending. */
static void check_pending(const char *name, const int *want, int n) {
  sigset_t set;
  sigpending(&set);
  char detail[256] = "";
  int ok = 1;
  for (size_t i = 0; i < sizeof blocked_sigs / sizeof *blocked_sigs; i++) {
    int sig = blocked_sigs[i], expected = 0;
    for (int k = 0; k < n; k++) expected |= want[k] == sig;
    if (sigismember(&set, sig) != expected) {
      ok = 0;
      snprintf(detail + strlen(detail), sizeof detail - strlen(detail), " %s%s",
               expected ? "missing:" : "extra:", strsignal(sig));
    }
  }
  check(name, ok, "%s", detail);
}

/* Unblocks the signals, then checks that each of `want` ran its handler once with `codes`. */
static void check_delivered(const char *name, const int *want, const int *codes, int n) {
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof blocked_sigs / sizeof *blocked_sigs; i++) {
    sigaddset(&set, blocked_sigs[i]);
  }
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  char detail[256] = "";
  int ok = 1;
  for (int k = 0; k < n; k++) {
    int sig = want[k];
    if (seen[sig] != 1 || seen_code[sig] != codes[k] || seen_pid[sig] != main_pid) {
      ok = 0;
      snprintf(detail + strlen(detail), sizeof detail - strlen(detail),
               " %s:seen=%d,code=%d,pid=%d", strsignal(sig), seen[sig], seen_code[sig],
               seen_pid[sig]);
    }
  }
  check(name, ok, "%s", detail);
}

static volatile int worker_ready;
static pid_t worker_tid;

static void *worker(void *arg) {
  (void)arg;
  worker_tid = gettid_raw();
  worker_ready = 1;
  wait_trigger(trigger);
  /* The main thread takes the process-wide SIGTTIN: wait until it has. */
  sleep_ms(300);
  const int want[] = {SIGTRAP, SIGUSR1};
  check_pending("worker-pending", want, 2);
  const int codes[] = {SI_TKILL, SI_TKILL};
  check_delivered("worker-delivered", want, codes, 2);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_pending <trigger> | rt_pending stopper <pid>");
  if (strcmp(argv[1], "stopper") == 0) {
    need_args(argc, 2, "rt_pending stopper <pid>");
    return stopper(atoi(argv[2]));
  }
  trigger = argv[1];
  int after_sigcont = argc > 2 && strcmp(argv[2], "after-sigcont") == 0;
  main_pid = getpid();
  struct sigaction sa = {0};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof blocked_sigs / sizeof *blocked_sigs; i++) {
    sigaction(blocked_sigs[i], &sa, NULL);
    sigaddset(&set, blocked_sigs[i]);
  }
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  pthread_t th;
  if (pthread_create(&th, NULL, worker, NULL) != 0) die("pthread_create");
  while (!worker_ready) sleep_ms(1);
  raise(SIGTSTP);
  raise(SIGTRAP);
  pthread_kill(th, SIGTRAP);
  pthread_kill(th, SIGUSR1);
  kill(getpid(), SIGTTIN);
  print_ready("pid=%d worker=%d", getpid(), worker_tid);

  wait_trigger(trigger);
  if (after_sigcont) {
    /* SIGCONT discards every pending stop signal. */
    const int want[] = {SIGTRAP};
    check_pending("main-pending", want, 1);
    const int codes[] = {SI_TKILL};
    check_delivered("main-delivered", want, codes, 1);
  } else {
    const int want[] = {SIGTSTP, SIGTRAP, SIGTTIN};
    check_pending("main-pending", want, 3);
    const int codes[] = {SI_TKILL, SI_TKILL, SI_USER};
    check_delivered("main-delivered", want, codes, 3);
  }
  pthread_join(th, NULL);
  return verdict();
}
