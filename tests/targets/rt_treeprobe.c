/* Process-tree relations and task states between processes, one mode per
 * run (usage: rt_treeprobe <trigger> <mode>). The root sets the relation
 * up, prints "ready pid=<root> pids=<every other live pid, comma-separated>
 * [semid=<id>]" and waits for the trigger file; so does every process it
 * made. Then each process checks what it can see of the relation and
 * reports to the root (an exit status, or a byte on a pipe); the root
 * prints "check <mode>-<what> ok|FAIL ..." lines and PASS/FAIL, and exits
 * 0. A mode cryo refuses is checked the same way on the process left
 * running, so every check holds on a tree never dumped.
 *
 * Modes:
 *   clonevm, clonesighand, clonefiles, clonefs, clonesysvsem: a child made
 *     by clone() with CLONE_VM, CLONE_VM|CLONE_SIGHAND, CLONE_FILES,
 *     CLONE_FS, CLONE_SYSVSEM (no CLONE_THREAD): a change by one after the
 *     trigger is seen by the other (memory, a signal action, an fd, the cwd,
 *     a SEM_UNDO adjustment left in place while the root lives).
 *   semundo     a child holds a SEM_UNDO adjustment (+1) of a semaphore; it
 *               exits after the trigger, which must undo it (value 0).
 *   cloneparent a child clones a grandchild with CLONE_PARENT: the
 *               grandchild's parent is the root (getppid, the root reaps it).
 *   continued   a child stopped (the stop collected by WUNTRACED), then
 *               continued by SIGCONT, the continue not collected: the root's
 *               waitid(WCONTINUED) reports it after the trigger.
 *               A second child, never stopped, has no report.
 *   continuedseen  the same, the continue collected before the dump: not
 *               reported again.
 *   continuedcaught  as continued, the child catching SIGCONT (its handler
 *               ran once).
 *   sigcont     a child blocks SIGCONT (caught), one is pending: after the
 *               trigger it unblocks it and its handler runs once.
 *   chldinfo    SIGCHLD blocked; one child exited 42, a second was killed by
 *               SIGTERM, neither reaped: the pending SIGCHLD is the first's
 *               (CLD_EXITED, its pid, 42) and only one; the reaps give 42 and
 *               SIGTERM.
 *   sigign      SIGCHLD is SIG_IGN: a live child that exits after the
 *               trigger is reaped by the kernel (waitpid: ECHILD).
 *   nocldwait   SA_NOCLDWAIT with a handler: the same, and the handler runs.
 *   nocldstop   SA_NOCLDSTOP with a handler: a child that stops after the
 *               trigger sends no SIGCHLD; its exit does.
 *   subreaper   the root is a child subreaper; a child forked a grandchild
 *               and exited (reaped): the grandchild's parent is the root;
 *               after the trigger the root is still a subreaper and an
 *               orphan made then comes to it too.
 *   pdeath      a grandchild with PR_SET_PDEATHSIG(SIGUSR1): after the
 *               trigger its parent exits and the signal arrives.
 *   pdeaththread  a worker thread of the root forked a child with
 *               PR_SET_PDEATHSIG(SIGUSR1): the signal arrives when that
 *               thread exits (the root lives on).
 *   ptrace      the root traces its child (PTRACE_SEIZE, options), which
 *               is in a ptrace stop; after the trigger it is still its
 *               tracee, still stopped, and is let go.
 *   setsid      a child leads its own session; its child is in it.
 *   joingroup   a child leads a group; a second child joined it.
 *   deadgroup   a child led a group and exited (reaped); a second child
 *               that joined that group is still in it (pgid of a dead pid);
 *               the root got one SIGCHLD (a handler counts) and has no other
 *               child waiting to be reaped.
 *   deadgroupign  deadgroup with SIGCHLD ignored by the root: the member
 *               (reaped by the kernel) tells its ids through a pipe.
 *   zombiegroup the same, the leader a zombie (not reaped): the member joins
 *               it again, the root reaps the leader after the trigger.
 *   deadsession a child made a session and a grandchild (CLONE_PARENT: the
 *               root's child) in it, then exited (reaped): the grandchild is
 *               still in that session and group.
 *   daemon      the root (a child subreaper) has a daemon's double fork: a
 *               grandchild made a session, its child exec'd this program
 *               and came to the root when its parent exited: after the
 *               trigger it is still in that session and group.
 *   latesetsid  a child forked a grandchild, then made its own session: the
 *               grandchild is still in the root's session.
 *   orphanpg    the root leads a session; its child leads another (an
 *               orphaned process group): SIGTSTP to it is discarded.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *trigger;
static char pids[256];
static int semid = -1;

static void add_pid(pid_t p) {
  size_t n = strlen(pids);
  snprintf(pids + n, sizeof pids - n, "%s%d", n ? "," : "", p);
}

static void ready(void) {
  if (semid >= 0) print_ready("pid=%d pids=%s semid=%d", getpid(), pids, semid);
  else print_ready("pid=%d pids=%s", getpid(), pids);
}

/* The state letter of /proc/<pid>/stat ('?' if gone). */
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

/* Polls (5 s at most) until pid's state is `want`; whether it got there. */
static int await_state(pid_t pid, char want) {
  for (int i = 0; i < 500; i++) {
    if (state_of(pid) == want) return 1;
    sleep_ms(10);
  }
  return 0;
}

/* Waits for pid's exit; returns its raw status (-1 on error). */
static int reap(pid_t pid) {
  int st;
  pid_t r;
  while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
  }
  return r == pid ? st : -1;
}

static void check_exit0(const char *name, pid_t pid) {
  int st = reap(pid);
  check(name, st == 0, "status %#x (exit %d)", st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static char stack_a[65536] __attribute__((aligned(16)));

/* --- clone flags shared between processes --- */

static volatile int shared_word;
static volatile sig_atomic_t usr2_seen;
static void on_usr2(int sig) {
  (void)sig;
  usr2_seen = 1;
}

static int child_vm(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  for (int i = 0; i < 500 && shared_word != 1; i++) sleep_ms(10);
  if (shared_word != 1) _exit(1);
  shared_word = 2;
  _exit(0);
}

static int child_sighand(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  struct sigaction sa;
  for (int i = 0; i < 500; i++) {
    sigaction(SIGUSR2, NULL, &sa);
    if (sa.sa_handler == on_usr2) _exit(0);
    sleep_ms(10);
  }
  _exit(1);
}

static int child_files(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  for (int i = 0; i < 500; i++) {
    if (fcntl(77, F_GETFD) >= 0) _exit(0);
    sleep_ms(10);
  }
  _exit(1);
}

static int child_fs(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  char buf[256];
  for (int i = 0; i < 500; i++) {
    if (getcwd(buf, sizeof buf) && strcmp(buf, "/usr") == 0) _exit(0);
    sleep_ms(10);
  }
  _exit(1);
}

static int sem_adjust(int delta) {
  struct sembuf op = {0, (short)delta, SEM_UNDO};
  return semop(semid, &op, 1);
}

static int child_sysvsem(void *arg) {
  (void)arg;
  wait_trigger(trigger);
  _exit(sem_adjust(1) == 0 ? 0 : 1);
}

static void make_sem(void) {
  semid = semget(IPC_PRIVATE, 1, 0600 | IPC_CREAT);
  if (semid < 0) die("semget");
}

static int mode_clone(const char *mode) {
  int (*fn)(void *) = NULL;
  int flags = SIGCHLD;
  if (strcmp(mode, "clonevm") == 0) fn = child_vm, flags |= CLONE_VM;
  if (strcmp(mode, "clonesighand") == 0) fn = child_sighand, flags |= CLONE_VM | CLONE_SIGHAND;
  if (strcmp(mode, "clonefiles") == 0) fn = child_files, flags |= CLONE_FILES;
  if (strcmp(mode, "clonefs") == 0) fn = child_fs, flags |= CLONE_FS;
  if (strcmp(mode, "clonesysvsem") == 0) fn = child_sysvsem, flags |= CLONE_SYSVSEM, make_sem();
  pid_t c = clone(fn, stack_a + sizeof stack_a, flags, NULL);
  if (c < 0) die("clone");
  add_pid(c);
  ready();
  wait_trigger(trigger);
  if (fn == child_vm) {
    shared_word = 1;
    check_exit0("clonevm-child", c);
    check("clonevm-shared", shared_word == 2, "the child's store is not seen: %d", shared_word);
  } else if (fn == child_sighand) {
    signal(SIGUSR2, on_usr2);
    check_exit0("clonesighand-child", c);
  } else if (fn == child_files) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, 77) != 77) die("dup2");
    check_exit0("clonefiles-child", c);
  } else if (fn == child_fs) {
    if (chdir("/usr") != 0) die("chdir");
    check_exit0("clonefs-child", c);
  } else {
    check_exit0("clonesysvsem-child", c);
    int v = semctl(semid, 0, GETVAL);
    // One undo list for both: the child's +1 is undone only when the root exits.
    check("clonesysvsem-undo-shared", v == 1, "value %d after the child's exit (want 1)", v);
    semctl(semid, 0, IPC_RMID);
  }
  return verdict();
}

static int mode_semundo(void) {
  make_sem();
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    char b = sem_adjust(1) == 0 ? 'y' : 'n';
    if (write(p[1], &b, 1) != 1) _exit(3);
    wait_trigger(trigger);
    _exit(0);
  }
  char b;
  if (read(p[0], &b, 1) != 1 || b != 'y') die("semop");
  add_pid(c);
  ready();
  wait_trigger(trigger);
  check("semundo-before", semctl(semid, 0, GETVAL) == 1, "value %d", semctl(semid, 0, GETVAL));
  check_exit0("semundo-child", c);
  int v = semctl(semid, 0, GETVAL);
  check("semundo-undone", v == 0, "value %d after the child's exit (want 0: its undo lost)", v);
  semctl(semid, 0, IPC_RMID);
  return verdict();
}

/* --- CLONE_PARENT --- */

static int child_cp(void *arg) {
  pid_t root = (pid_t)(long)arg;
  wait_trigger(trigger);
  _exit(getppid() == root ? 0 : 1);
}

static int mode_cloneparent(void) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t root = getpid();
  pid_t a = fork();
  if (a == 0) {
    pid_t b = clone(child_cp, stack_a + sizeof stack_a, CLONE_PARENT, (void *)(long)root);
    if (write(p[1], &b, sizeof b) != sizeof b) _exit(3);
    wait_trigger(trigger);
    _exit(0);
  }
  pid_t b;
  if (read(p[0], &b, sizeof b) != sizeof b || b < 0) die("clone(CLONE_PARENT)");
  add_pid(a);
  add_pid(b);
  ready();
  wait_trigger(trigger);
  check_exit0("cloneparent-a", a);
  // exit signal of a CLONE_PARENT child given 0: the parent's... use __WALL.
  int st;
  pid_t r;
  while ((r = waitpid(b, &st, __WALL)) < 0 && errno == EINTR) {
  }
  check("cloneparent-b", r == b && st == 0, "waitpid %d status %#x (%s)", r, st,
        r < 0 ? strerror(errno) : "");
  return verdict();
}

/* --- stop and continue --- */

static volatile sig_atomic_t cont_count;
static void on_cont(int sig) {
  (void)sig;
  cont_count++;
}

static pid_t spin_child(void) {
  pid_t c = fork();
  if (c == 0) {
    wait_trigger(trigger);
    sleep_ms(200);
    _exit(0);
  }
  return c;
}

static int mode_continued(int seen, int caught) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    if (caught) signal(SIGCONT, on_cont);
    if (write(p[1], "y", 1) != 1) _exit(3);
    wait_trigger(trigger);
    sleep_ms(200);
    _exit(caught && cont_count != 1 ? 1 : 0);
  }
  char b;
  if (read(p[0], &b, 1) != 1) die("read");
  pid_t other = spin_child(); // never stopped: no report for it
  int st;
  kill(c, SIGSTOP);
  if (waitpid(c, &st, WUNTRACED) != c || !WIFSTOPPED(st)) die("waitpid(WUNTRACED)");
  kill(c, SIGCONT);
  if (!await_state(c, 'S') && state_of(c) != 'R') die("continue");
  if (seen) {
    if (waitpid(c, &st, WCONTINUED) != c || !WIFCONTINUED(st)) die("waitpid(WCONTINUED)");
  }
  add_pid(c);
  add_pid(other);
  ready();
  wait_trigger(trigger);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = waitid(P_PID, c, &si, WCONTINUED | WNOHANG);
  if (seen) {
    check("continued-report", r == 0 && si.si_pid == 0, "a continue reported again (pid %d code %d)",
          si.si_pid, si.si_code);
  } else {
    check("continued-report", r == 0 && si.si_pid == c && si.si_code == CLD_CONTINUED,
          "no continue report (r %d pid %d code %d)", r, si.si_pid, si.si_code);
  }
  memset(&si, 0, sizeof si);
  r = waitid(P_PID, other, &si, WCONTINUED | WNOHANG);
  check("continued-other", r == 0 && si.si_pid == 0, "a report for a child never stopped (pid %d)",
        si.si_pid);
  check_exit0("continued-child", c);
  check_exit0("continued-other-child", other);
  return verdict();
}

static int mode_sigcont(void) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGCONT);
    sigprocmask(SIG_BLOCK, &s, &old);
    signal(SIGCONT, on_cont);
    if (write(p[1], "y", 1) != 1) _exit(3);
    wait_trigger(trigger);
    sigset_t pend;
    sigpending(&pend);
    int was = sigismember(&pend, SIGCONT);
    sigprocmask(SIG_SETMASK, &old, NULL);
    _exit(was && cont_count == 1 ? 0 : 10 + cont_count + (was ? 0 : 5));
  }
  char b;
  if (read(p[0], &b, 1) != 1) die("read");
  kill(c, SIGCONT);
  // Pending in the child (blocked).
  add_pid(c);
  for (int i = 0; i < 500; i++) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", c);
    FILE *f = fopen(path, "r");
    int got = 0;
    while (f && fgets(line, sizeof line, f)) {
      unsigned long long m;
      if (sscanf(line, "ShdPnd: %llx", &m) == 1 && (m & (1ULL << (SIGCONT - 1)))) got = 1;
    }
    if (f) fclose(f);
    if (got) break;
    sleep_ms(10);
  }
  ready();
  wait_trigger(trigger);
  check_exit0("sigcont-child", c);
  return verdict();
}

/* --- SIGCHLD --- */

static int mode_chldinfo(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGCHLD);
  sigprocmask(SIG_BLOCK, &s, NULL);
  pid_t a = fork();
  if (a == 0) _exit(42);
  if (!await_state(a, 'Z')) die("zombie a");
  pid_t b = fork();
  if (b == 0) {
    raise(SIGTERM);
    _exit(1);
  }
  if (!await_state(b, 'Z')) die("zombie b");
  add_pid(a);
  add_pid(b);
  ready();
  wait_trigger(trigger);
  struct timespec zero = {0, 0};
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r = sigtimedwait(&s, &si, &zero);
  check("chldinfo-pending", r == SIGCHLD && si.si_code == CLD_EXITED && si.si_pid == a &&
                               si.si_status == 42,
        "sigtimedwait %d code %d pid %d status %d (want CLD_EXITED %d 42)", r, si.si_code, si.si_pid,
        si.si_status, a);
  r = sigtimedwait(&s, &si, &zero);
  check("chldinfo-once", r < 0 && errno == EAGAIN, "a second SIGCHLD: %d code %d pid %d", r,
        si.si_code, si.si_pid);
  int st = reap(a);
  check("chldinfo-a", WIFEXITED(st) && WEXITSTATUS(st) == 42, "status %#x", st);
  st = reap(b);
  check("chldinfo-b", WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && !WCOREDUMP(st), "status %#x", st);
  return verdict();
}

static volatile sig_atomic_t chld_count;
static void on_chld(int sig) {
  (void)sig;
  chld_count++;
}

static int mode_autoreap(int nocldwait) {
  if (nocldwait) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_NOCLDWAIT | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
  } else {
    signal(SIGCHLD, SIG_IGN);
  }
  pid_t c = spin_child();
  add_pid(c);
  ready();
  wait_trigger(trigger);
  const char *m = nocldwait ? "nocldwait" : "sigign";
  char name[64];
  int gone = await_state(c, '?');
  snprintf(name, sizeof name, "%s-reaped", m);
  check(name, gone, "the child is still there (state %c)", state_of(c));
  snprintf(name, sizeof name, "%s-echild", m);
  int r = waitpid(-1, NULL, WNOHANG);
  check(name, r < 0 && errno == ECHILD, "waitpid %d (%s)", r, r < 0 ? strerror(errno) : "");
  if (nocldwait) {
    for (int i = 0; i < 100 && chld_count == 0; i++) sleep_ms(10);
    check("nocldwait-handler", chld_count == 1, "%d SIGCHLD", (int)chld_count);
  }
  return verdict();
}

static int mode_nocldstop(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  pid_t c = fork();
  if (c == 0) {
    wait_trigger(trigger);
    raise(SIGSTOP);
    _exit(0);
  }
  add_pid(c);
  ready();
  wait_trigger(trigger);
  check("nocldstop-stopped", await_state(c, 'T'), "state %c", state_of(c));
  sleep_ms(100);
  check("nocldstop-no-sigchld", chld_count == 0, "%d SIGCHLD for a stop", (int)chld_count);
  kill(c, SIGCONT);
  check_exit0("nocldstop-child", c);
  check("nocldstop-exit-sigchld", chld_count == 1, "%d SIGCHLD", (int)chld_count);
  return verdict();
}

/* --- subreaper, parent-death signal --- */

static int mode_subreaper(void) {
  pid_t root = getpid();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t a = fork();
  if (a == 0) {
    pid_t g = fork();
    if (g == 0) {
      wait_trigger(trigger);
      _exit(0);
    }
    if (write(p[1], &g, sizeof g) != sizeof g) _exit(3);
    _exit(0);
  }
  pid_t g;
  if (read(p[0], &g, sizeof g) != sizeof g) die("read");
  check_exit0("subreaper-setup", a);
  add_pid(g);
  ready();
  wait_trigger(trigger);
  int on = -1;
  prctl(PR_GET_CHILD_SUBREAPER, &on);
  check("subreaper-flag", on == 1, "PR_GET_CHILD_SUBREAPER %d", on);
  check_exit0("subreaper-orphan", g);
  pid_t a2 = fork();
  if (a2 == 0) {
    pid_t g2 = fork();
    if (g2 == 0) {
      sleep_ms(100);
      _exit(getppid() == root ? 0 : 1);
    }
    _exit(0);
  }
  check_exit0("subreaper-a2", a2);
  int st;
  pid_t r = wait(&st);
  check("subreaper-new-orphan", r > 0 && st == 0, "wait %d status %#x", r, st);
  return verdict();
}

static volatile sig_atomic_t usr1_count;
static void on_usr1(int sig) {
  (void)sig;
  usr1_count++;
}

static int mode_pdeath(void) {
  int p[2], q[2], q2[2];
  if (pipe(p) != 0 || pipe(q) != 0 || pipe(q2) != 0) die("pipe");
  pid_t a = fork();
  if (a == 0) {
    pid_t g = fork();
    if (g == 0) {
      signal(SIGUSR1, on_usr1);
      prctl(PR_SET_PDEATHSIG, SIGUSR1);
      if (write(q2[1], "r", 1) != 1) _exit(3);
      wait_trigger(trigger);
      for (int i = 0; i < 500 && usr1_count == 0; i++) sleep_ms(10);
      int sig = -1;
      prctl(PR_GET_PDEATHSIG, &sig);
      char b = usr1_count == 1 && sig == SIGUSR1 ? 'y' : 'n';
      if (write(p[1], &b, 1) != 1) _exit(3);
      _exit(0);
    }
    char r;
    if (read(q2[0], &r, 1) != 1 || write(q[1], &g, sizeof g) != sizeof g) _exit(3);
    wait_trigger(trigger);
    sleep_ms(100);
    _exit(0);
  }
  pid_t g;
  if (read(q[0], &g, sizeof g) != sizeof g) die("read");
  close(p[1]);
  add_pid(a);
  add_pid(g);
  ready();
  wait_trigger(trigger);
  check_exit0("pdeath-parent", a);
  char b = 0;
  ssize_t n = read(p[0], &b, 1);
  check("pdeath-signal", n == 1 && b == 'y', "the grandchild said %c (%zd)", b ? b : '-', n);
  return verdict();
}

/* pdeaththread: a worker thread forks the grandchild-to-be (here: a child)
 * with PR_SET_PDEATHSIG; the signal fires when that thread exits. */
static int pt_pipe[2], pt_sync[2];
static pid_t pt_child;

static void *pdeath_thread(void *arg) {
  (void)arg;
  pt_child = fork();
  if (pt_child == 0) {
    signal(SIGUSR1, on_usr1);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (write(pt_sync[1], "r", 1) != 1) _exit(3);
    wait_trigger(trigger);
    for (int i = 0; i < 300 && usr1_count == 0; i++) sleep_ms(10);
    char b = usr1_count == 1 ? 'y' : 'n';
    if (write(pt_pipe[1], &b, 1) != 1) _exit(3);
    _exit(0);
  }
  char r;
  if (read(pt_sync[0], &r, 1) != 1) return NULL;
  wait_trigger(trigger);
  sleep_ms(50);
  return NULL; // the thread exits: the child's parent-death signal fires
}

static int mode_pdeaththread(void) {
  if (pipe(pt_pipe) != 0 || pipe(pt_sync) != 0) die("pipe");
  pthread_t th;
  if (pthread_create(&th, NULL, pdeath_thread, NULL) != 0) die("pthread_create");
  while (pt_child == 0) sleep_ms(5);
  add_pid(pt_child);
  sleep_ms(50); // the child has set its signal (it wrote to pt_sync, read by the thread)
  ready();
  wait_trigger(trigger);
  pthread_join(th, NULL);
  char b = 0;
  ssize_t n = read(pt_pipe[0], &b, 1);
  check("pdeaththread-signal", n == 1 && b == 'y', "the child said %c (%zd)", b ? b : '-', n);
  check_exit0("pdeaththread-child", pt_child);
  return verdict();
}

/* ptrace: the root traces its child (PTRACE_SEIZE with options), which sits in a ptrace stop. */
static int mode_ptrace(void) {
  pid_t c = spin_child();
  if (ptrace(PTRACE_SEIZE, c, 0, (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXIT)) != 0) {
    die("PTRACE_SEIZE");
  }
  if (ptrace(PTRACE_INTERRUPT, c, 0, 0) != 0) die("PTRACE_INTERRUPT");
  int st;
  if (waitpid(c, &st, __WALL) != c || !WIFSTOPPED(st)) die("waitpid(ptrace stop)");
  add_pid(c);
  ready();
  wait_trigger(trigger);
  char path[64], line[256];
  int tracer = -1;
  snprintf(path, sizeof path, "/proc/%d/status", c);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) sscanf(line, "TracerPid: %d", &tracer);
  if (f) fclose(f);
  check("ptrace-tracer", tracer == getpid(), "TracerPid %d", tracer);
  long opts = 0;
  check("ptrace-stopped", ptrace(PTRACE_GETEVENTMSG, c, 0, &opts) == 0, "not in a ptrace stop: %s",
        strerror(errno));
  check("ptrace-detach", ptrace(PTRACE_DETACH, c, 0, 0) == 0, "%s", strerror(errno));
  check_exit0("ptrace-child", c);
  return verdict();
}

/* --- sessions and groups --- */

/* A pipe whose write end the root closes when a member may exit (deadgroup); -1: none. */
static int hold_fd = -1;

/* Exit 0 if this process is in session `sid` and group `pgid`, else 1. */
static void report_ids_after_trigger(pid_t sid, pid_t pgid) {
  wait_trigger(trigger);
  int ok = getsid(0) == sid && getpgrp() == pgid;
  char b;
  if (hold_fd >= 0 && read(hold_fd, &b, 1) < 0) _exit(3);
  _exit(ok ? 0 : 1);
}

static int mode_setsid(void) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t a = fork();
  if (a == 0) {
    setsid();
    pid_t b = fork();
    if (b == 0) report_ids_after_trigger(getppid(), getppid());
    if (write(p[1], &b, sizeof b) != sizeof b) _exit(3);
    wait_trigger(trigger);
    int ok = getsid(0) == getpid() && getpgrp() == getpid();
    int st = reap(b);
    _exit(ok && st == 0 ? 0 : 1);
  }
  pid_t b;
  if (read(p[0], &b, sizeof b) != sizeof b) die("read");
  add_pid(a);
  add_pid(b);
  ready();
  wait_trigger(trigger);
  check_exit0("setsid-ids", a);
  return verdict();
}

static int mode_groups(const char *mode) {
  int p[2], j[2];
  if (pipe(p) != 0 || pipe(j) != 0) die("pipe");
  pid_t root = getpid(), sid = getsid(0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    if (write(p[1], "l", 1) != 1) _exit(3);
    char b;
    if (read(j[0], &b, 1) != 1) _exit(3); // the member joined
    if (strcmp(mode, "joingroup") != 0) _exit(0);
    report_ids_after_trigger(sid, getpid());
  }
  char c;
  if (read(p[0], &c, 1) != 1) die("read");
  int hold[2];
  if (pipe(hold) != 0) die("pipe");
  pid_t member = fork();
  if (member == 0) {
    close(hold[1]);
    if (strcmp(mode, "deadgroup") == 0) hold_fd = hold[0];
    if (setpgid(0, leader) != 0) _exit(4);
    if (write(p[1], "m", 1) != 1) _exit(3);
    report_ids_after_trigger(sid, leader);
  }
  if (read(p[0], &c, 1) != 1) die("read");
  if (write(j[1], "j", 1) != 1) die("write");
  if (strcmp(mode, "deadgroup") == 0) {
    check_exit0("deadgroup-setup", leader);
  } else {
    add_pid(leader);
  }
  if (strcmp(mode, "zombiegroup") == 0 && !await_state(leader, 'Z')) die("zombie leader");
  add_pid(member);
  (void)root;
  ready();
  wait_trigger(trigger);
  if (strcmp(mode, "joingroup") == 0) check_exit0("joingroup-leader", leader);
  char name[64];
  if (strcmp(mode, "deadgroup") == 0) {
    // One SIGCHLD (the leader's exit) and no child but the member: nothing left by the restore.
    check("deadgroup-sigchld", chld_count == 1, "%d SIGCHLD before the member's exit (want 1)",
          (int)chld_count);
    int st;
    pid_t r = waitpid(-1, &st, WNOHANG);
    check("deadgroup-no-other-child", r == 0, "waitpid(-1) gave %d", r);
  }
  close(hold[1]); // the member may exit now
  snprintf(name, sizeof name, "%s-member", mode);
  check_exit0(name, member);
  if (strcmp(mode, "zombiegroup") == 0) check_exit0("zombiegroup-leader", leader);
  return verdict();
}

/* deadgroupign: deadgroup with SIGCHLD ignored by the root (its children reaped by the
 * kernel): the member tells its ids through a pipe; the placeholder must leave nothing. */
static int mode_deadgroupign(void) {
  signal(SIGCHLD, SIG_IGN);
  int p[2], j[2], res[2];
  if (pipe(p) != 0 || pipe(j) != 0 || pipe(res) != 0) die("pipe");
  pid_t sid = getsid(0);
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    if (write(p[1], "l", 1) != 1) _exit(3);
    char b;
    if (read(j[0], &b, 1) != 1) _exit(3);
    _exit(0);
  }
  char c;
  if (read(p[0], &c, 1) != 1) die("read");
  pid_t member = fork();
  if (member == 0) {
    if (setpgid(0, leader) != 0) _exit(4);
    if (write(p[1], "m", 1) != 1) _exit(3);
    wait_trigger(trigger);
    char ok = getsid(0) == sid && getpgrp() == leader ? 'y' : 'n';
    if (write(res[1], &ok, 1) != 1) _exit(3);
    _exit(0);
  }
  if (read(p[0], &c, 1) != 1) die("read");
  if (write(j[1], "j", 1) != 1) die("write");
  if (!await_state(leader, '?')) die("leader not reaped by the kernel");
  add_pid(member);
  ready();
  wait_trigger(trigger);
  char ok = 0;
  ssize_t n = read(res[0], &ok, 1);
  check("deadgroupign-member", n == 1 && ok == 'y', "the member said %c: not in group %d",
        ok ? ok : '-', leader);
  check("deadgroupign-member-gone", await_state(member, '?'), "state %c", state_of(member));
  int r = waitpid(-1, NULL, WNOHANG);
  check("deadgroupign-echild", r < 0 && errno == ECHILD, "waitpid %d", r);
  return verdict();
}

/* The CLONE_PARENT child of deadsession: its session and group are its maker's. */
static pid_t ds_leader;
static int ds_member(void *arg) {
  (void)arg;
  report_ids_after_trigger(ds_leader, ds_leader);
  return 0;
}

static int mode_deadsession2(void) {
  int p[2], hold[2];
  if (pipe(p) != 0 || pipe(hold) != 0) die("pipe");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  pid_t l = fork();
  if (l == 0) {
    setsid();
    ds_leader = getpid();
    close(hold[1]);
    hold_fd = hold[0]; // the member waits for the root's checks before it exits
    pid_t m = clone(ds_member, stack_a + sizeof stack_a, CLONE_PARENT, NULL);
    if (write(p[1], &m, sizeof m) != sizeof m) _exit(3);
    _exit(0);
  }
  pid_t m;
  if (read(p[0], &m, sizeof m) != sizeof m || m < 0) die("clone");
  check_exit0("deadsession-setup", l);
  add_pid(m);
  ready();
  wait_trigger(trigger);
  // One SIGCHLD (the leader's exit) and no child but the member: nothing left by the restore.
  check("deadsession-sigchld", chld_count == 1, "%d SIGCHLD before the member's exit (want 1)",
        (int)chld_count);
  int st;
  pid_t r = waitpid(-1, &st, WNOHANG);
  check("deadsession-no-other-child", r == 0, "waitpid(-1) gave %d", r);
  close(hold[1]);
  // A CLONE_PARENT child has the exit signal of its maker (SIGCHLD here).
  st = reap(m);
  check("deadsession-member", st == 0, "status %#x: not in session and group %d", st, l);
  return verdict();
}

/* daemon: a double fork under the root, a child subreaper: A forks B, B makes a session and
 * forks C, which execs this program in mode "member"; B and A exit: C is the root's child, in
 * the session and group of B (gone). */
static int mode_daemon(char *self) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int p[2], hold[2];
  if (pipe(p) != 0 || pipe(hold) != 0) die("pipe");
  pid_t a = fork();
  if (a == 0) {
    pid_t b = fork();
    if (b == 0) {
      setsid();
      pid_t c = fork();
      if (c == 0) {
        close(hold[1]);
        char sid[16], fd[16];
        snprintf(sid, sizeof sid, "%d", getsid(0));
        snprintf(fd, sizeof fd, "%d", hold[0]);
        execl("/proc/self/exe", self, trigger, "member", sid, fd, (char *)NULL);
        _exit(5);
      }
      if (write(p[1], &c, sizeof c) != sizeof c) _exit(3);
      _exit(0);
    }
    _exit(0);
  }
  pid_t c;
  if (read(p[0], &c, sizeof c) != sizeof c) die("read");
  check_exit0("daemon-setup", a);
  for (int i = 0; i < 500 && getppid() != 0; i++) { // B's exit: C comes to the root
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", c);
    FILE *f = fopen(path, "r");
    if (!f) break;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')');
    int ppid = 0;
    if (q) sscanf(q + 2, "%*c %d", &ppid);
    if (ppid == getpid()) break;
    sleep_ms(10);
  }
  // B (reparented to the root as well, a zombie or gone) is reaped now.
  int st;
  while (waitpid(-1, &st, WNOHANG) > 0) {
  }
  add_pid(c);
  ready();
  wait_trigger(trigger);
  pid_t r = waitpid(-1, &st, WNOHANG);
  check("daemon-no-other-child", r == 0, "waitpid(-1) gave %d", r);
  close(hold[1]);
  st = reap(c);
  check("daemon-member", st == 0, "status %#x: not in its session and group", st);
  return verdict();
}

/* The exec'd member of mode daemon: exit 0 if in session and group <sid> after the trigger,
 * once the root closed the hold pipe (fd <fd>). */
static int mode_member(char **argv) {
  pid_t sid = atoi(argv[3]);
  hold_fd = atoi(argv[4]);
  report_ids_after_trigger(sid, sid);
  return 0;
}

static int mode_latesetsid(void) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  pid_t sid = getsid(0), pgid = getpgrp();
  pid_t a = fork();
  if (a == 0) {
    pid_t b = fork();
    if (b == 0) report_ids_after_trigger(sid, pgid);
    setsid();
    if (write(p[1], &b, sizeof b) != sizeof b) _exit(3);
    wait_trigger(trigger);
    int st = reap(b);
    _exit(st == 0 && getsid(0) == getpid() ? 0 : 1);
  }
  pid_t b;
  if (read(p[0], &b, sizeof b) != sizeof b) die("read");
  add_pid(a);
  add_pid(b);
  ready();
  wait_trigger(trigger);
  check_exit0("latesetsid-ids", a);
  return verdict();
}

static int mode_orphanpg(void) {
  if (setsid() < 0) die("setsid");
  pid_t a = fork();
  if (a == 0) {
    setsid();
    wait_trigger(trigger);
    raise(SIGTSTP); // discarded: an orphaned process group
    _exit(0);
  }
  add_pid(a);
  ready();
  wait_trigger(trigger);
  int stopped = 0;
  for (int i = 0; i < 50; i++) {
    if (state_of(a) == 'T') {
      stopped = 1;
      kill(a, SIGCONT);
      break;
    }
    if (state_of(a) == 'Z') break;
    sleep_ms(10);
  }
  check("orphanpg-not-stopped", !stopped, "SIGTSTP stopped a member of an orphaned group");
  check_exit0("orphanpg-child", a);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_treeprobe <trigger> <mode>");
  setvbuf(stdout, NULL, _IONBF, 0);
  trigger = argv[1];
  const char *m = argv[2];
  if (strncmp(m, "clone", 5) == 0 && strcmp(m, "cloneparent") != 0) return mode_clone(m);
  if (strcmp(m, "semundo") == 0) return mode_semundo();
  if (strcmp(m, "cloneparent") == 0) return mode_cloneparent();
  if (strcmp(m, "continued") == 0) return mode_continued(0, 0);
  if (strcmp(m, "continuedseen") == 0) return mode_continued(1, 0);
  if (strcmp(m, "continuedcaught") == 0) return mode_continued(0, 1);
  if (strcmp(m, "sigcont") == 0) return mode_sigcont();
  if (strcmp(m, "chldinfo") == 0) return mode_chldinfo();
  if (strcmp(m, "sigign") == 0) return mode_autoreap(0);
  if (strcmp(m, "nocldwait") == 0) return mode_autoreap(1);
  if (strcmp(m, "nocldstop") == 0) return mode_nocldstop();
  if (strcmp(m, "subreaper") == 0) return mode_subreaper();
  if (strcmp(m, "pdeath") == 0) return mode_pdeath();
  if (strcmp(m, "ptrace") == 0) return mode_ptrace();
  if (strcmp(m, "pdeaththread") == 0) return mode_pdeaththread();
  if (strcmp(m, "setsid") == 0) return mode_setsid();
  if (strcmp(m, "joingroup") == 0 || strcmp(m, "deadgroup") == 0 || strcmp(m, "zombiegroup") == 0) {
    return mode_groups(m);
  }
  if (strcmp(m, "deadsession") == 0) return mode_deadsession2();
  if (strcmp(m, "deadgroupign") == 0) return mode_deadgroupign();
  if (strcmp(m, "latesetsid") == 0) return mode_latesetsid();
  if (strcmp(m, "daemon") == 0) return mode_daemon(argv[0]);
  if (strcmp(m, "member") == 0 && argc >= 5) return mode_member(argv);
  if (strcmp(m, "orphanpg") == 0) return mode_orphanpg();
  fprintf(stderr, "unknown mode %s\n", m);
  return 2;
}
