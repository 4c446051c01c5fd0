/* Probe target for credentials, security and scheduling state the other
 * targets (rt_creds, rt_sched, rt_attrs, rt_probe, rt_threadprobe, rt_misc)
 * do not cover (tests/restore_credprobe_test.ts): one case per run, named
 * by argv[2]. The main thread and one worker ("cp-worker") set the case's
 * state, each records what it sees (a text of "key=value" items), "ready
 * pid=N" is printed, the target waits until the trigger file argv[1]
 * exists, then each thread records again and the main thread prints
 * "check <case>-main|worker ok|FAIL <before> / <after>" (plus the case's
 * own checks), then PASS or FAIL.
 *
 * usage: rt_credprobe <trigger-path> <case>
 *   seccompstack: five filters installed in order by the main thread before
 *                 the worker starts (both share them): getppid ERRNO(5) then
 *                 ERRNO(6) (the newer wins a tie), getpgrp TRAP (data 0x42,
 *                 a SIGSYS handler records it), uname TRACE (no tracer:
 *                 ENOSYS), acct KILL_PROCESS (never called), one with
 *                 SECCOMP_FILTER_FLAG_LOG;
 *   seccompsame:  the main thread and the worker each install the same
 *                 filter on their own (two filters with equal programs, not
 *                 one shared): a filter added with SECCOMP_FILTER_FLAG_TSYNC
 *                 by the main thread cannot reach the worker (the call
 *                 returns the worker's tid) before the dump; what it
 *                 returns after is printed as "info seccompsame-tsync
 *                 before=B after=A worker=W" (a known gap: the restore
 *                 shares them);
 *   credpdeath:   every thread other ids (raw setresuid/setresgid per
 *                 thread, the worker's differ), then each thread's
 *                 parent-death signal and dumpable 1 set after the change
 *                 (a credential change resets both);
 *   privsched:    as root: the worker SCHED_FIFO 10 with I/O class RT,
 *                 the main thread nice -5 (lowering oom_score_adj
 *                 needs CAP_SYS_RESOURCE, not had here); then every thread drops to uid 1000 without
 *                 capabilities (none of this could be set again then);
 *   rlimits:      every rlimit but RLIMIT_NICE and RLIMIT_RTPRIO (0 here, no
 *                 CAP_SYS_RESOURCE to raise them) set with soft < hard (some
 *                 RLIM_INFINITY),
 *                 RLIMIT_AS and RLIMIT_DATA just above what is in use;
 *   fsuidthread:  the worker alone changes its fs uid and fs gid (raw
 *                 setfsuid/setfsgid), its other ids stay root;
 *   groups:       65536 supplementary groups (setgroups for the process),
 *                 then the worker alone three others (raw setgroups);
 *   personality:  READ_IMPLIES_EXEC | UNAME26 | ADDR_COMPAT_LAYOUT |
 *                 SHORT_INODE; a PROT_READ mapping made after the restore
 *                 must be executable, uname must say 2.6;
 *   dumpable0:    prctl(PR_SET_DUMPABLE, 0) as root;
 *   cputime:      RLIMIT_CPU soft 20 s, 1 s of CPU time burnt (refused at
 *                 dump; when not, the process's CPU clock, which the limit
 *                 counts, must not go back).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>

#include "common.h"

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO(cls, data) (((cls) << 13) | (data))

static const char *mode;
static pthread_barrier_t set_barrier, go_barrier, done_barrier;
static char before[2][8192], after[2][8192];
static pid_t worker_tid;
static volatile int trap_data = -1;

static void add(char *buf, const char *fmt, ...) {
  size_t n = strlen(buf);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + n, 8192 - n, fmt, ap);
  va_end(ap);
}

/* The line `key` of /proc/thread-self/status, without its key. */
static void status_line(const char *key, char *out, size_t size) {
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", gettid_raw());
  FILE *f = fopen(path, "r");
  out[0] = 0;
  if (!f) return;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, klen) && line[klen] == ':') {
      char *v = line + klen + 1;
      while (*v == ' ' || *v == '\t') v++;
      v[strcspn(v, "\n")] = 0;
      snprintf(out, size, "%s", v);
      break;
    }
  }
  fclose(f);
}

static long read_long(const char *path) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -99999;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? strtol(buf, NULL, 10) : -99999;
}

/* ------------------------------------------------------------ seccomp */

static void on_sigsys(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  trap_data = si->si_errno;
}

/* Installs a filter giving syscall `nr` action `action` (all others allowed). */
static long install(int nr, uint32_t action, unsigned flags) {
  struct sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

/* The errno a raw syscall `nr` without arguments fails with (0: it succeeded). */
static int errno_of(int nr) {
  errno = 0;
  long r = syscall(nr, 0, 0, 0);
  return r < 0 ? errno : 0;
}

static void observe_seccomp(char *buf) {
  char v[256];
  status_line("Seccomp", v, sizeof v);
  add(buf, "seccomp=%s ", v);
  status_line("Seccomp_filters", v, sizeof v);
  add(buf, "filters=%s ", v);
  add(buf, "getppid=%d ", errno_of(SYS_getppid));
  if (!strcmp(mode, "seccompstack")) {
    trap_data = -1;
    syscall(SYS_getpgrp);
    add(buf, "getpgrp-trap=%d ", trap_data);
    add(buf, "uname=%d ", errno_of(SYS_uname));
  }
}

/* ------------------------------------------------------------ ids */

static void observe_ids(char *buf) {
  const char *keys[] = {"Uid", "Gid", "CapPrm", "CapEff", "NoNewPrivs"};
  char v[256];
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    status_line(keys[i], v, sizeof v);
    add(buf, "%s=%s ", keys[i], v);
  }
}

static void observe_groups(char *buf) {
  gid_t *g = malloc(70000 * sizeof *g);
  int n = (int)syscall(SYS_getgroups, 70000, g);
  unsigned long sum = 0;
  for (int i = 0; i < n; i++) sum = sum * 31 + g[i];
  add(buf, "ngroups=%d sum=%lx first=%u last=%u ", n, sum, n > 0 ? g[0] : 0, n > 0 ? g[n - 1] : 0);
  free(g);
}

static void observe_sched(char *buf) {
  struct sched_param sp;
  int policy = sched_getscheduler(0);
  sched_getparam(0, &sp);
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  long io = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
  struct rlimit r;
  getrlimit(RLIMIT_NICE, &r);
  add(buf, "policy=%d prio=%d nice=%d ioprio=%ld oom=%ld rlimit-nice=%ld/%ld ", policy,
      sp.sched_priority, nice, io, read_long("/proc/self/oom_score_adj"), (long)r.rlim_cur,
      (long)r.rlim_max);
  observe_ids(buf);
}

static void observe_rlimits(char *buf) {
  for (int i = 0; i < RLIM_NLIMITS; i++) {
    struct rlimit r;
    getrlimit(i, &r);
    add(buf, "%d=%lld/%lld ", i, (long long)(r.rlim_cur == RLIM_INFINITY ? -1 : (long long)r.rlim_cur),
        (long long)(r.rlim_max == RLIM_INFINITY ? -1 : (long long)r.rlim_max));
  }
}

static void observe(int who, char *buf) {
  buf[0] = 0;
  if (!strncmp(mode, "seccomp", 7)) observe_seccomp(buf);
  else if (!strcmp(mode, "credpdeath")) {
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig);
    add(buf, "pdeathsig=%d dumpable=%d ", sig, prctl(PR_GET_DUMPABLE));
    observe_ids(buf);
  } else if (!strcmp(mode, "privsched")) observe_sched(buf);
  else if (!strcmp(mode, "rlimits")) observe_rlimits(buf);
  else if (!strcmp(mode, "fsuidthread")) observe_ids(buf);
  else if (!strcmp(mode, "groups")) observe_groups(buf);
  else if (!strcmp(mode, "personality")) {
    struct utsname u;
    uname(&u);
    add(buf, "persona=%#x release=%.4s ", personality(0xffffffff), u.release);
  } else if (!strcmp(mode, "dumpable0")) add(buf, "dumpable=%d ", prctl(PR_GET_DUMPABLE));
  else if (!strcmp(mode, "cputime")) {
    struct rlimit r;
    getrlimit(RLIMIT_CPU, &r);
    add(buf, "rlimit-cpu=%ld/%ld ", (long)r.rlim_cur, (long)r.rlim_max);
  }
  (void)who;
}

/* ------------------------------------------------------------ set up */

static void drop_thread_ids(uid_t uid, gid_t gid) {
  if (syscall(SYS_setresgid, gid, gid + 1, gid + 2)) die("setresgid");
  if (syscall(SYS_setresuid, uid, uid + 1, uid + 2)) die("setresuid");
}

/* What each thread sets for itself (who 0: main, 1: worker). */
static void set_thread(int who) {
  if (!strcmp(mode, "seccompsame")) {
    if (install(SYS_getppid, SECCOMP_RET_ERRNO | 5, 0)) die("seccomp same");
  } else if (!strcmp(mode, "credpdeath")) {
    drop_thread_ids(who ? 2000 : 1000, who ? 2100 : 1100);
    if (prctl(PR_SET_PDEATHSIG, who ? SIGUSR2 : SIGWINCH)) die("pdeathsig");
    if (!who && prctl(PR_SET_DUMPABLE, 1)) die("dumpable");
  } else if (!strcmp(mode, "fsuidthread")) {
    if (who) {
      syscall(SYS_setfsuid, 4321);
      syscall(SYS_setfsgid, 5432);
    }
  } else if (!strcmp(mode, "groups")) {
    gid_t g[3] = {7, 77, 777};
    if (who && syscall(SYS_setgroups, 3, g)) die("setgroups worker");
  } else if (!strcmp(mode, "privsched") && who) {
    struct sched_param sp = {.sched_priority = 10};
    if (sched_setscheduler(0, SCHED_FIFO, &sp)) die("SCHED_FIFO");
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO(1, 3))) die("ioprio RT");
  }
}

static void *worker(void *arg) {
  (void)arg;
  worker_tid = gettid_raw();
  prctl(PR_SET_NAME, "cp-worker");
  set_thread(1);
  pthread_barrier_wait(&set_barrier);
  pthread_barrier_wait(&set_barrier); /* the main thread's process-wide setup */
  observe(1, before[1]);
  pthread_barrier_wait(&done_barrier);
  pthread_barrier_wait(&go_barrier);
  observe(1, after[1]);
  pthread_barrier_wait(&done_barrier);
  return NULL;
}

/* Process-wide setup before the worker starts. */
static void setup_before(void) {
  if (!strcmp(mode, "seccompstack")) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("nnp");
    if (install(SYS_getppid, SECCOMP_RET_ERRNO | 5, 0)) die("filter 1");
    if (install(SYS_getpgrp, SECCOMP_RET_TRAP | 0x42, SECCOMP_FILTER_FLAG_LOG)) die("filter 2");
    if (install(SYS_getppid, SECCOMP_RET_ERRNO | 6, 0)) die("filter 3");
    if (install(SYS_uname, SECCOMP_RET_TRACE | 7, 0)) die("filter 4");
    if (install(SYS_acct, SECCOMP_RET_KILL_PROCESS, 0)) die("filter 5");
  } else if (!strcmp(mode, "groups")) {
    static gid_t g[65536];
    for (int i = 0; i < 65536; i++) g[i] = 100000 + (unsigned)i * 3;
    if (setgroups(65536, g)) die("setgroups 65536");
  } else if (!strcmp(mode, "rlimits")) {
    /* soft, hard for each resource; 0 for "leave", ~0 for infinity */
    long vm = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &vm) != 1) die("statm");
    fclose(f);
    rlim_t as = (rlim_t)vm * 4096 + (512UL << 20);
    struct {
      int res;
      rlim_t soft, hard;
    } set[] = {
        {RLIMIT_CPU, 5000, 6000},
        {RLIMIT_FSIZE, 1 << 30, RLIM_INFINITY},
        {RLIMIT_DATA, 256UL << 20, 512UL << 20},
        {RLIMIT_STACK, 4UL << 20, 64UL << 20},
        {RLIMIT_CORE, 4096, 1 << 20},
        {RLIMIT_RSS, 1 << 20, 1 << 21},
        {RLIMIT_NPROC, 50, 100},
        {RLIMIT_NOFILE, 200, 300},
        {RLIMIT_MEMLOCK, 65536, 131072},
        {RLIMIT_AS, as, as + (256UL << 20)},
        {RLIMIT_LOCKS, 30, 40},
        {RLIMIT_SIGPENDING, 20, 40},
        {RLIMIT_MSGQUEUE, 4096, 8192},
        {RLIMIT_RTTIME, 900000, RLIM_INFINITY},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
      struct rlimit r = {set[i].soft, set[i].hard};
      if (setrlimit(set[i].res, &r)) die("setrlimit");
    }
  } else if (!strcmp(mode, "personality")) {
    if (personality(READ_IMPLIES_EXEC | UNAME26 | ADDR_COMPAT_LAYOUT | SHORT_INODE) < 0) die("personality");
  } else if (!strcmp(mode, "dumpable0")) {
    if (prctl(PR_SET_DUMPABLE, 0)) die("dumpable 0");
  } else if (!strcmp(mode, "cputime")) {
    struct rlimit r = {20, 30};
    if (setrlimit(RLIMIT_CPU, &r)) die("RLIMIT_CPU");
    struct timespec t0, t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000000L);
  } else if (!strcmp(mode, "privsched")) {
    if (setpriority(PRIO_PROCESS, 0, -5)) die("nice -5");
  }
}

/* Process-wide setup after the worker set its own state. */
static void setup_after(void) {
  if (!strcmp(mode, "privsched")) {
    /* libc's setresuid changes every thread; no capability is kept */
    if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000)) die("drop to 1000");
  }
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_credprobe <trigger-path> <case>");
  mode = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  pthread_barrier_init(&set_barrier, NULL, 2);
  pthread_barrier_init(&go_barrier, NULL, 2);
  pthread_barrier_init(&done_barrier, NULL, 2);
  setup_before();
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL)) die("pthread_create");
  set_thread(0);
  pthread_barrier_wait(&set_barrier);
  setup_after();
  long tsync_before = 0;
  if (!strcmp(mode, "seccompsame")) tsync_before = install(SYS_getpgid, SECCOMP_RET_ERRNO | 9, SECCOMP_FILTER_FLAG_TSYNC);
  pthread_barrier_wait(&set_barrier);
  observe(0, before[0]);
  pthread_barrier_wait(&done_barrier);
  struct timespec cpu_before;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_before);
  print_ready("pid=%d worker=%d", getpid(), worker_tid);
  wait_trigger(argv[1]);
  pthread_barrier_wait(&go_barrier);
  observe(0, after[0]);
  pthread_barrier_wait(&done_barrier);
  pthread_join(t, NULL);
  const char *who[2] = {"main", "worker"};
  for (int i = 0; i < 2; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s-%s", mode, who[i]);
    check(name, !strcmp(before[i], after[i]), "%s/ %s", before[i], after[i]);
  }
  if (!strcmp(mode, "seccompsame")) {
    long tsync = install(SYS_getpgid, SECCOMP_RET_ERRNO | 9, SECCOMP_FILTER_FLAG_TSYNC);
    /* Known gap (docs/ARCHITECTURE.md): the restore shares equal filters. */
    printf("info seccompsame-tsync before=%ld after=%ld worker=%d\n", tsync_before, tsync, worker_tid);
  } else if (!strcmp(mode, "personality")) {
    void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char line[512], perms[8];
    unsigned long start, end;
    FILE *f = fopen("/proc/self/maps", "r");
    int exec = 0;
    while (f && fgets(line, sizeof line, f))
      if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && start == (unsigned long)p)
        exec = perms[2] == 'x';
    if (f) fclose(f);
    check("personality-read-implies-exec", exec, "a new PROT_READ mapping is not executable");
  } else if (!strcmp(mode, "cputime")) {
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    check("cputime-clock", cpu.tv_sec > cpu_before.tv_sec ||
                               (cpu.tv_sec == cpu_before.tv_sec && cpu.tv_nsec >= cpu_before.tv_nsec),
          "CLOCK_PROCESS_CPUTIME_ID %ld.%09ld, was %ld.%09ld at the dump", (long)cpu.tv_sec, cpu.tv_nsec,
          (long)cpu_before.tv_sec, cpu_before.tv_nsec);
  }
  return verdict();
}
