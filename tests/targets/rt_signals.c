/* Round-trip target for signals and timers: installs handlers with flags
 * and masks (SA_SIGINFO|SA_RESTART|SA_ONSTACK, SA_RESETHAND|SA_NODEFER),
 * an ignored signal, a blocked signal mask with pending signals (a
 * thread-directed SIGUSR2 from raise(), a process-wide SIGWINCH from kill(),
 * two queued SIGRTMIN+2 with values), a sigaltstack, a 50 ms ITIMER_REAL
 * with a counting SIGALRM handler and an ITIMER_VIRTUAL that never fires;
 * prints "ready ...", waits until the trigger file argv[1] exists, then
 * verifies everything itself and prints one "check <name> ok|FAIL <detail>"
 * line per item, then PASS or FAIL.
 *
 * usage: rt_signals <trigger-path> [alarm-pending]
 *   alarm-pending: SIGALRM is blocked too, so when the dump comes the timer
 *   has fired and waits (disarmed, value 0) for its signal to be taken;
 *   after the trigger SIGALRM is unblocked and the timer must go on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* The kernel's struct sigaction (rt_sigaction with an 8-byte mask). */
struct ksigaction {
  uint64_t handler, flags, restorer, mask;
};

static int raw_sigaction(int sig, struct ksigaction *old) {
  return (int)syscall(SYS_rt_sigaction, sig, NULL, old, 8);
}

/* ------------------------------------------------------------ handlers */

#define ALTSTACK_SIZE (64 * 1024)
static uint8_t *altstack;

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  alarms++;
}

/* SIGUSR1: SA_SIGINFO|SA_RESTART|SA_ONSTACK with sa_mask {SIGTERM, SIGRTMIN+3}. */
static volatile int usr1_runs, usr1_on_altstack, usr1_ss_onstack, usr1_mask_ok, usr1_code;
static void on_usr1(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  int local;
  uintptr_t a = (uintptr_t)&local;
  usr1_on_altstack = a >= (uintptr_t)altstack && a < (uintptr_t)altstack + ALTSTACK_SIZE;
  stack_t ss;
  sigaltstack(NULL, &ss);
  usr1_ss_onstack = (ss.ss_flags & SS_ONSTACK) != 0;
  sigset_t cur;
  pthread_sigmask(SIG_SETMASK, NULL, &cur);
  usr1_mask_ok = sigismember(&cur, SIGTERM) && sigismember(&cur, SIGRTMIN + 3) &&
                 sigismember(&cur, SIGUSR1);
  usr1_code = si->si_code;
  usr1_runs++;
}

/* SIGHUP: SA_RESETHAND|SA_NODEFER. */
static volatile int hup_runs, hup_unblocked;
static void on_hup(int sig) {
  (void)sig;
  sigset_t cur;
  pthread_sigmask(SIG_SETMASK, NULL, &cur);
  hup_unblocked = !sigismember(&cur, SIGHUP);
  hup_runs++;
}

/* Pending signals: record the order and siginfo of deliveries. */
#define MAXLOG 8
static volatile int log_n;
static volatile int log_sig[MAXLOG], log_code[MAXLOG], log_pid[MAXLOG], log_value[MAXLOG];
static void on_pending(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  int n = log_n;
  if (n < MAXLOG) {
    log_sig[n] = sig;
    log_code[n] = si->si_code;
    log_pid[n] = si->si_pid;
    log_value[n] = si->si_value.sival_int;
  }
  log_n = n + 1;
}

static void install(int sig, void *handler, int flags, const int *mask_sigs) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  if (flags & SA_SIGINFO)
    sa.sa_sigaction = handler;
  else
    sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  for (; mask_sigs && *mask_sigs; mask_sigs++) sigaddset(&sa.sa_mask, *mask_sigs);
  if (sigaction(sig, &sa, NULL) != 0) die("sigaction");
}

static int find_log(int sig, int nth) {
  for (int i = 0; i < log_n && i < MAXLOG; i++)
    if (log_sig[i] == sig && nth-- == 0) return i;
  return -1;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_signals <trigger> [alarm-pending]");
  pid_t pid = getpid();
  int alarm_blocked = argc > 2 && strcmp(argv[2], "alarm-pending") == 0;
  int rt2 = SIGRTMIN + 2, rt3 = SIGRTMIN + 3;

  /* sigaltstack */
  altstack = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (altstack == MAP_FAILED) die("mmap");
  stack_t ss = {.ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");

  /* handlers */
  const int usr1_mask[] = {SIGTERM, rt3, 0};
  install(SIGUSR1, (void *)on_usr1, SA_SIGINFO | SA_RESTART | SA_ONSTACK, usr1_mask);
  install(SIGHUP, (void *)on_hup, SA_RESETHAND | SA_NODEFER, NULL);
  const int alarm_mask[] = {SIGUSR1, 0};
  install(SIGALRM, (void *)on_alarm, SA_RESTART, alarm_mask);
  install(SIGUSR2, (void *)on_pending, SA_SIGINFO, NULL);
  install(SIGWINCH, (void *)on_pending, SA_SIGINFO, NULL);
  install(rt2, (void *)on_pending, SA_SIGINFO | SA_RESTART, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTSTP, SIG_IGN);
  signal(SIGINT, SIG_DFL); /* whatever was inherited */

  /* blocked mask and pending signals */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR2);
  sigaddset(&mask, SIGWINCH);
  sigaddset(&mask, rt2);
  sigaddset(&mask, SIGQUIT);
  sigaddset(&mask, SIGRTMAX);
  if (alarm_blocked) sigaddset(&mask, SIGALRM);
  if (pthread_sigmask(SIG_SETMASK, &mask, NULL) != 0) die("sigmask");
  raise(SIGUSR2); /* tgkill: pending for this thread */
  kill(pid, SIGWINCH); /* pending for the process */
  union sigval v1 = {.sival_int = 1111}, v2 = {.sival_int = 2222};
  if (sigqueue(pid, rt2, v1) != 0 || sigqueue(pid, rt2, v2) != 0) die("sigqueue");

  /* timers */
  struct itimerval real = {{0, 50000}, {0, 50000}};
  if (setitimer(ITIMER_REAL, &real, NULL) != 0) die("setitimer real");
  struct itimerval virt = {{7, 0}, {100, 0}};
  if (setitimer(ITIMER_VIRTUAL, &virt, NULL) != 0) die("setitimer virtual");

  /* snapshot */
  struct ksigaction before[65];
  for (int s = 1; s <= 64; s++) {
    memset(&before[s], 0, sizeof before[s]);
    raw_sigaction(s, &before[s]);
  }
  sigset_t mask_before, pending_before;
  pthread_sigmask(SIG_SETMASK, NULL, &mask_before);
  sigpending(&pending_before);
  stack_t ss_before;
  sigaltstack(NULL, &ss_before);

  sleep_ms(120); /* a few alarms before the dump */
  print_ready("pid=%d altstack=%p alarms=%d", pid, (void *)altstack, (int)alarms);
  wait_trigger(argv[1]);
  int alarms_at_trigger = alarms;

  /* dispositions */
  int bad = 0;
  for (int s = 1; s <= 64 && !bad; s++) {
    struct ksigaction now;
    memset(&now, 0, sizeof now);
    raw_sigaction(s, &now);
    if (memcmp(&now, &before[s], sizeof now) != 0) bad = s;
  }
  check("sigaction-table", !bad, "signal %d: handler %lx flags %lx mask %lx differ", bad,
        bad ? (unsigned long)before[bad].handler : 0UL, bad ? (unsigned long)before[bad].flags : 0UL,
        bad ? (unsigned long)before[bad].mask : 0UL);
  struct sigaction old;
  sigaction(SIGUSR1, NULL, &old);
  int want = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  check("sigaction-usr1", old.sa_sigaction == on_usr1 && (old.sa_flags & want) == want &&
                              sigismember(&old.sa_mask, SIGTERM) && sigismember(&old.sa_mask, rt3) &&
                              !sigismember(&old.sa_mask, SIGINT),
        "handler %p flags %x", (void *)old.sa_sigaction, old.sa_flags);
  sigaction(SIGHUP, NULL, &old);
  check("sigaction-hup", old.sa_handler == on_hup &&
                             (old.sa_flags & (SA_RESETHAND | SA_NODEFER)) == (SA_RESETHAND | SA_NODEFER),
        "handler %p flags %x", (void *)old.sa_handler, old.sa_flags);
  sigaction(SIGPIPE, NULL, &old);
  check("sig-ign", old.sa_handler == SIG_IGN, "SIGPIPE handler %p", (void *)old.sa_handler);
  sigaction(SIGINT, NULL, &old);
  check("sig-dfl", old.sa_handler == SIG_DFL, "SIGINT handler %p", (void *)old.sa_handler);

  /* mask and pending */
  sigset_t now_mask, now_pending;
  pthread_sigmask(SIG_SETMASK, NULL, &now_mask);
  check("sigmask", !memcmp(&now_mask, &mask_before, 8), "mask %lx, was %lx",
        *(unsigned long *)&now_mask, *(unsigned long *)&mask_before);
  sigpending(&now_pending);
  int pend_ok = sigismember(&now_pending, SIGALRM) == alarm_blocked && sigismember(&now_pending, SIGUSR2) && sigismember(&now_pending, SIGWINCH) &&
                sigismember(&now_pending, rt2) && !sigismember(&now_pending, SIGQUIT) &&
                !sigismember(&now_pending, SIGRTMAX);
  check("sigpending", pend_ok && sigismember(&pending_before, SIGUSR2), "pending %lx, was %lx",
        *(unsigned long *)&now_pending, *(unsigned long *)&pending_before);

  /* sigaltstack */
  stack_t ss_now;
  sigaltstack(NULL, &ss_now);
  check("sigaltstack", ss_now.ss_sp == ss_before.ss_sp && ss_now.ss_size == ss_before.ss_size &&
                           ss_now.ss_flags == 0 && ss_before.ss_sp == altstack,
        "sp %p size %zu flags %d, was sp %p size %zu", ss_now.ss_sp, ss_now.ss_size,
        ss_now.ss_flags, ss_before.ss_sp, ss_before.ss_size);

  /* timers */
  struct itimerval r, vt;
  getitimer(ITIMER_REAL, &r);
  /* With its SIGALRM pending the timer waits, disarmed, until the signal is taken. */
  check("itimer-real", r.it_interval.tv_sec == 0 && r.it_interval.tv_usec == 50000 &&
                           r.it_value.tv_sec == 0 && r.it_value.tv_usec <= 50000 &&
                           (!alarm_blocked || r.it_value.tv_usec == 0),
        "interval %ld.%06ld value %ld.%06ld", (long)r.it_interval.tv_sec,
        (long)r.it_interval.tv_usec, (long)r.it_value.tv_sec, (long)r.it_value.tv_usec);
  getitimer(ITIMER_VIRTUAL, &vt);
  check("itimer-virtual", vt.it_interval.tv_sec == 7 && vt.it_interval.tv_usec == 0 &&
                              vt.it_value.tv_sec >= 90 && vt.it_value.tv_sec <= 100,
        "interval %ld.%06ld value %ld.%06ld", (long)vt.it_interval.tv_sec,
        (long)vt.it_interval.tv_usec, (long)vt.it_value.tv_sec, (long)vt.it_value.tv_usec);
  if (alarm_blocked) {
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
  }
  int a0 = alarms;
  for (int i = 0; i < 100 && alarms < a0 + 6; i++) sleep_ms(20);
  check("alarms-continue", alarms >= a0 + 6 && a0 >= alarms_at_trigger,
        "%d alarms before the trigger, %d after 2 s", a0, (int)alarms);
  printf("info alarms %d at trigger, %d now\n", alarms_at_trigger, (int)alarms);

  /* SIG_IGN really ignores */
  kill(pid, SIGPIPE);
  check("sig-ign-effective", 1, "");

  /* pending signals are delivered when unblocked */
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, SIGUSR2);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  int i = find_log(SIGUSR2, 0);
  check("pending-thread-usr2", i >= 0 && log_code[i] == SI_TKILL && log_pid[i] == pid &&
                                   find_log(SIGUSR2, 1) < 0,
        "delivered %d times, code %d pid %d", find_log(SIGUSR2, 1) >= 0 ? 2 : i >= 0,
        i >= 0 ? log_code[i] : 0, i >= 0 ? log_pid[i] : 0);
  sigemptyset(&one);
  sigaddset(&one, SIGWINCH);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  i = find_log(SIGWINCH, 0);
  check("pending-process-winch", i >= 0 && log_code[i] == SI_USER && log_pid[i] == pid,
        "index %d code %d pid %d", i, i >= 0 ? log_code[i] : 0, i >= 0 ? log_pid[i] : 0);
  sigemptyset(&one);
  sigaddset(&one, rt2);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  int q0 = find_log(rt2, 0), q1 = find_log(rt2, 1);
  check("pending-queued-rt", q0 >= 0 && q1 > q0 && find_log(rt2, 2) < 0 &&
                                 log_value[q0] == 1111 && log_value[q1] == 2222 &&
                                 log_code[q0] == SI_QUEUE && log_pid[q0] == pid,
        "values %d %d code %d", q0 >= 0 ? log_value[q0] : -1, q1 >= 0 ? log_value[q1] : -1,
        q0 >= 0 ? log_code[q0] : 0);
  check("no-spurious-signals", log_n == 4, "%d deliveries", (int)log_n);

  /* SA_ONSTACK handler runs on the alternate stack, with its sa_mask */
  raise(SIGUSR1);
  check("handler-onstack", usr1_runs == 1 && usr1_on_altstack && usr1_ss_onstack,
        "runs %d on altstack %d SS_ONSTACK %d", usr1_runs, usr1_on_altstack, usr1_ss_onstack);
  check("handler-mask", usr1_mask_ok && usr1_code == SI_TKILL, "mask ok %d code %d", usr1_mask_ok,
        usr1_code);

  /* SA_RESETHAND|SA_NODEFER: runs once unblocked, then the default is back */
  raise(SIGHUP);
  sigaction(SIGHUP, NULL, &old);
  check("resethand", hup_runs == 1 && hup_unblocked && old.sa_handler == SIG_DFL,
        "runs %d unblocked %d handler now %p", hup_runs, hup_unblocked, (void *)old.sa_handler);

  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  return verdict();
}
