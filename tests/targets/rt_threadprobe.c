/* Probe target for per-thread state (tests/restore_threadprobe_test.ts):
 * one kind per run, named by argv[2]. A worker thread (made with
 * pthread_create) sets its OWN value of the kind, different from the main
 * thread's; in "many" mode 8 more threads keep the main thread's. Every
 * thread reads its value ("before"), then "ready pid=N" is printed and the
 * target waits until the trigger file argv[1] exists; every thread reads
 * its value again ("after") and the main thread prints one
 * "check <kind>-<thread> ok|FAIL <detail>" line per thread, then PASS or
 * FAIL. A kind the kernel refuses to set prints
 * "info <kind>=unavailable <error>" and is not checked.
 *
 * usage: rt_threadprobe <trigger-path> <kind> [many]
 *   tsc:        PR_SET_TSC PR_TSC_SIGSEGV in the worker;
 *   tscmain:    the same in the main thread only (after the worker started);
 *   mce:        PR_MCE_KILL early in the worker;
 *   spec:       the first speculation control the process may set flipped;
 *   ioflusher:  PR_SET_IO_FLUSHER in the worker;
 *   personality: personality(ADDR_NO_RANDOMIZE) in the worker;
 *   mempolicy:  set_mempolicy(MPOL_PREFERRED, node 0) in the worker;
 *   mempolicymain: the same in the main thread only (after the worker started);
 *   seccomp:    a filter (sched_yield fails with errno 77) in the worker only;
 *   gsbase:     arch_prctl(ARCH_SET_GS) in the worker;
 *   unsharefs:  unshare(CLONE_FS), its own cwd and umask in the worker;
 *   unsharefiles: unshare(CLONE_FILES), an fd closed and another opened;
 *   uts:        unshare(CLONE_NEWUTS) and its own host name in the worker;
 *   nnp:        PR_SET_NO_NEW_PRIVS in the worker;
 *   slack:      PR_SET_TIMERSLACK in the worker;
 *   sigmask:    SIGUSR2 blocked in the worker;
 *   comm:       the worker's own name;
 *   affinity:   the worker on CPU 0 only;
 *   nice:       setpriority of the worker's tid;
 *   ioprio:     ioprio_set(IOPRIO_WHO_PROCESS, worker tid);
 *   caps:       capset in the worker (CAP_NET_RAW dropped from effective);
 *   uid:        SYS_setresuid(1000, 1000, 0) in the worker;
 *   cpuid:      arch_prctl(ARCH_SET_CPUID, 0) in the worker;
 *   sigaltstack: an alternate signal stack in the worker;
 *   pdeathsig:  PR_SET_PDEATHSIG in the worker;
 *   pending:    SIGUSR2 blocked in the worker and sent to it alone (tgkill);
 *   ctid:       set_tid_address in the worker;
 *   robust:     set_robust_list in the worker (an empty list of its own);
 *   threadkeyring: a thread keyring of the worker's own (keyctl);
 *   timertid:   a CLOCK_MONOTONIC timer with SIGEV_THREAD_ID to the worker:
 *               after the trigger its signals reach the worker only;
 *   cputimer:   a timer on the worker's own CPU clock (CLOCK_THREAD_CPUTIME_ID,
 *               SIGEV_THREAD_ID to itself): after the trigger it fires while
 *               the worker spins, not while the main thread spins.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/fsuid.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#define PR_GET_IO_FLUSHER 58
#endif
#define ARCH_SET_GS 0x1001
#define ARCH_GET_GS 0x1004
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#define MPOL_PREFERRED 1
#define IOPRIO_WHO_PROCESS 1
#define IOPRIO(cls, data) (((cls) << 13) | (data))
#define NEXTRA 8
#define PROBE_FD 100
#define OWN_FD 101

static const char *kind;
static char workdir[4096];

/* ---- the value of the kind in the calling thread ---------------------- */

static unsigned long gs_area[16];
static uint8_t altstack[64 * 1024];
static int ctid_word;
static struct robust_list_head robust_head = {{&robust_head.list}, 0, NULL};

static void status_line(const char *key, char *out, size_t n) {
  char buf[8192];
  int fd = open("/proc/thread-self/status", O_RDONLY);
  ssize_t r = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0) close(fd);
  buf[r < 0 ? 0 : r] = 0;
  char *p = strstr(buf, key);
  if (!p) {
    snprintf(out, n, "%s?", key);
    return;
  }
  char *e = strchr(p, '\n');
  if (e) *e = 0;
  snprintf(out, n, "%s", p);
}

static void get_value(char *out, size_t n) {
  errno = 0;
  if (!strcmp(kind, "tsc") || !strcmp(kind, "tscmain")) {
    int v = -1;
    long r = prctl(PR_GET_TSC, &v, 0, 0, 0);
    snprintf(out, n, "tsc=%d r=%ld", v, r);
  } else if (!strcmp(kind, "mce")) {
    snprintf(out, n, "mce=%d", prctl(PR_MCE_KILL_GET, 0, 0, 0, 0));
  } else if (!strcmp(kind, "spec")) {
    snprintf(out, n, "spec=%d,%d,%d", prctl(PR_GET_SPECULATION_CTRL, 0, 0, 0, 0),
             prctl(PR_GET_SPECULATION_CTRL, 1, 0, 0, 0), prctl(PR_GET_SPECULATION_CTRL, 2, 0, 0, 0));
  } else if (!strcmp(kind, "ioflusher")) {
    snprintf(out, n, "ioflusher=%d", prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0));
  } else if (!strcmp(kind, "personality")) {
    snprintf(out, n, "personality=0x%x", personality(0xffffffff));
  } else if (!strcmp(kind, "mempolicy") || !strcmp(kind, "mempolicymain")) {
    int mode = -1;
    long r = syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 0);
    snprintf(out, n, "mempolicy=%d r=%ld", mode, r);
  } else if (!strcmp(kind, "seccomp")) {
    long r = syscall(SYS_sched_yield);
    char line[128];
    status_line("Seccomp:", line, sizeof line);
    snprintf(out, n, "yield=%ld errno=%d %s", r, r < 0 ? errno : 0, line);
  } else if (!strcmp(kind, "gsbase")) {
    unsigned long gs = 0;
    syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
    snprintf(out, n, "gs=0x%lx", gs);
  } else if (!strcmp(kind, "unsharefs")) {
    char cwd[4096], line[64];
    status_line("Umask:", line, sizeof line); /* umask() would race with the other threads' reads */
    snprintf(out, n, "cwd=%s %s", getcwd(cwd, sizeof cwd) ? cwd : "?", line);
  } else if (!strcmp(kind, "unsharefiles")) {
    snprintf(out, n, "fd%d=%s fd%d=%s", PROBE_FD, fcntl(PROBE_FD, F_GETFD) >= 0 ? "open" : "closed",
             OWN_FD, fcntl(OWN_FD, F_GETFD) >= 0 ? "open" : "closed");
  } else if (!strcmp(kind, "uts")) {
    struct utsname u;
    uname(&u);
    snprintf(out, n, "nodename=%s", u.nodename);
  } else if (!strcmp(kind, "nnp")) {
    snprintf(out, n, "nnp=%d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  } else if (!strcmp(kind, "slack")) {
    snprintf(out, n, "slack=%d", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
  } else if (!strcmp(kind, "sigmask")) {
    sigset_t s;
    pthread_sigmask(SIG_BLOCK, NULL, &s);
    snprintf(out, n, "usr2=%d", sigismember(&s, SIGUSR2));
  } else if (!strcmp(kind, "comm")) {
    char name[32] = "";
    prctl(PR_GET_NAME, name, 0, 0, 0);
    snprintf(out, n, "comm=%s", name);
  } else if (!strcmp(kind, "affinity")) {
    cpu_set_t s;
    CPU_ZERO(&s);
    sched_getaffinity(0, sizeof s, &s);
    snprintf(out, n, "cpus=%d cpu0=%d", CPU_COUNT(&s), CPU_ISSET(0, &s));
  } else if (!strcmp(kind, "nice")) {
    errno = 0;
    int v = getpriority(PRIO_PROCESS, gettid_raw());
    snprintf(out, n, "nice=%d", v);
  } else if (!strcmp(kind, "ioprio")) {
    snprintf(out, n, "ioprio=0x%lx", syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, gettid_raw()));
  } else if (!strcmp(kind, "caps")) {
    status_line("CapEff:", out, n);
  } else if (!strcmp(kind, "uid")) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    snprintf(out, n, "uid=%d,%d,%d fsuid=%d", r, e, s, setfsuid(-1));
  } else if (!strcmp(kind, "cpuid")) {
    snprintf(out, n, "cpuid=%ld", syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0));
  } else if (!strcmp(kind, "sigaltstack")) {
    stack_t ss;
    sigaltstack(NULL, &ss);
    snprintf(out, n, "ss=%p,%zu,%d", ss.ss_sp, ss.ss_size, ss.ss_flags);
  } else if (!strcmp(kind, "pdeathsig")) {
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
    snprintf(out, n, "pdeathsig=%d", sig);
  } else if (!strcmp(kind, "pending")) {
    sigset_t s;
    sigpending(&s);
    snprintf(out, n, "usr2-pending=%d", sigismember(&s, SIGUSR2));
  } else if (!strcmp(kind, "ctid")) {
    int *addr = NULL;
    prctl(PR_GET_TID_ADDRESS, &addr, 0, 0, 0);
    snprintf(out, n, "ctid=%s", addr == &ctid_word ? "own" : "glibc");
  } else if (!strcmp(kind, "robust")) {
    void *head = NULL;
    size_t len = 0;
    syscall(SYS_get_robust_list, 0, &head, &len);
    snprintf(out, n, "robust=%s,%zu", head == &robust_head ? "own" : "glibc", len);
  } else if (!strcmp(kind, "threadkeyring")) {
    snprintf(out, n, "threadkeyring=%s",
             syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1 /* THREAD */, 0) > 0 ? "yes" : "no");
  } else {
    snprintf(out, n, "-");
  }
}

/* ---- the worker's own value ------------------------------------------- */


/* Sets the kind in the calling thread (the worker); 0 when the kernel refuses. */
static int set_value(void) {
  if (!strcmp(kind, "tsc")) return prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0;
  if (!strcmp(kind, "mce"))
    return prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0) == 0;
  if (!strcmp(kind, "spec")) {
    for (int i = 0; i < 3; i++) {
      int v = prctl(PR_GET_SPECULATION_CTRL, i, 0, 0, 0);
      if (v < 0 || !(v & PR_SPEC_PRCTL)) continue;
      int to = (v & PR_SPEC_ENABLE) ? PR_SPEC_DISABLE : PR_SPEC_ENABLE;
      if (prctl(PR_SET_SPECULATION_CTRL, i, to, 0, 0) == 0) return 1;
    }
    errno = ENODEV;
    return 0;
  }
  if (!strcmp(kind, "ioflusher")) return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0;
  if (!strcmp(kind, "personality"))
    return personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE) != -1;
  if (!strcmp(kind, "mempolicy")) {
    unsigned long mask = 1;
    return syscall(SYS_set_mempolicy, MPOL_PREFERRED, &mask, 64) == 0;
  }
  if (!strcmp(kind, "seccomp")) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sched_yield, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 77),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
  }
  if (!strcmp(kind, "gsbase"))
    return syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_area) == 0;
  if (!strcmp(kind, "unsharefs")) {
    if (unshare(CLONE_FS) != 0 || chdir(workdir) != 0) return 0;
    umask(077);
    return 1;
  }
  if (!strcmp(kind, "unsharefiles")) {
    if (unshare(CLONE_FILES) != 0) return 0;
    close(PROBE_FD);
    int fd = open("/dev/null", O_RDONLY);
    return fd >= 0 && dup2(fd, OWN_FD) == OWN_FD && close(fd) == 0;
  }
  if (!strcmp(kind, "uts"))
    return unshare(CLONE_NEWUTS) == 0 && sethostname("cryo-thread", 11) == 0;
  if (!strcmp(kind, "nnp")) return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
  if (!strcmp(kind, "slack")) return prctl(PR_SET_TIMERSLACK, 123457, 0, 0, 0) == 0;
  if (!strcmp(kind, "sigmask")) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    return pthread_sigmask(SIG_BLOCK, &s, NULL) == 0;
  }
  if (!strcmp(kind, "comm")) return prctl(PR_SET_NAME, "probe-worker", 0, 0, 0) == 0;
  if (!strcmp(kind, "affinity")) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    return sched_setaffinity(0, sizeof s, &s) == 0;
  }
  if (!strcmp(kind, "nice")) return setpriority(PRIO_PROCESS, gettid_raw(), 7) == 0;
  if (!strcmp(kind, "ioprio"))
    return syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, gettid_raw(), IOPRIO(2, 6)) == 0;
  if (!strcmp(kind, "caps")) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return 0;
    d[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
    return syscall(SYS_capset, &h, d) == 0;
  }
  if (!strcmp(kind, "uid")) return syscall(SYS_setresuid, 1000, 1000, 0) == 0;
  if (!strcmp(kind, "cpuid")) return syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0;
  if (!strcmp(kind, "sigaltstack")) {
    stack_t ss = {altstack, 0, sizeof altstack};
    return sigaltstack(&ss, NULL) == 0;
  }
  if (!strcmp(kind, "pdeathsig")) return prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0) == 0;
  if (!strcmp(kind, "pending")) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    return pthread_sigmask(SIG_BLOCK, &s, NULL) == 0 &&
           syscall(SYS_tgkill, getpid(), gettid_raw(), SIGUSR2) == 0;
  }
  if (!strcmp(kind, "ctid")) return syscall(SYS_set_tid_address, &ctid_word) > 0;
  if (!strcmp(kind, "robust"))
    return syscall(SYS_set_robust_list, &robust_head, sizeof robust_head) == 0;
  if (!strcmp(kind, "threadkeyring"))
    return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1 /* THREAD */, 1) > 0;
  return 1;
}

/* ---- timers ------------------------------------------------------------ */

static atomic_int worker_tid, worker_hits, other_hits;

static void on_timer(int sig) {
  (void)sig;
  if (gettid_raw() == atomic_load(&worker_tid)) atomic_fetch_add(&worker_hits, 1);
  else atomic_fetch_add(&other_hits, 1);
}

static timer_t make_timer(clockid_t clock, pid_t tid, int sig, long interval_ns) {
  struct sigevent ev = {0};
  ev.sigev_notify = SIGEV_THREAD_ID;
  ev.sigev_signo = sig;
  ev._sigev_un._tid = tid;
  timer_t t;
  if (timer_create(clock, &ev, &t) != 0) die("timer_create");
  struct itimerspec its = {{0, interval_ns}, {0, interval_ns}};
  if (timer_settime(t, 0, &its, NULL) != 0) die("timer_settime");
  return t;
}

static double thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void spin_cpu(double seconds) {
  double until = thread_cpu() + seconds;
  while (thread_cpu() < until) {
  }
}

/* ---- threads ----------------------------------------------------------- */

struct thread {
  pthread_t th;
  int worker, set_ok, set_errno;
  pid_t tid;
  char before[512], after[512];
  atomic_int phase; /* 1: before read; 2: go on; 3: after read */
};

static struct thread threads[NEXTRA + 2];
static int nthreads;

static void wait_phase(struct thread *t, int p) {
  while (atomic_load(&t->phase) < p) sleep_ms(1);
}

static void *run(void *arg) {
  struct thread *t = arg;
  t->tid = gettid_raw();
  if (t->worker) {
    atomic_store(&worker_tid, t->tid);
    if (!strcmp(kind, "cputimer")) make_timer(CLOCK_THREAD_CPUTIME_ID, t->tid, SIGRTMIN + 1, 5000000);
    else if (strcmp(kind, "tscmain") != 0 && strcmp(kind, "mempolicymain") != 0) {
      t->set_ok = set_value();
      t->set_errno = errno;
    }
  }
  get_value(t->before, sizeof t->before);
  atomic_store(&t->phase, 1);
  wait_phase(t, 2);
  if (t->worker && !strcmp(kind, "cputimer")) {
    atomic_store(&worker_hits, 0);
    spin_cpu(0.15);
  }
  get_value(t->after, sizeof t->after);
  atomic_store(&t->phase, 3);
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_threadprobe <trigger-path> <kind> [many]");
  kind = argv[2];
  int many = argc > 3 && !strcmp(argv[3], "many");
  snprintf(workdir, sizeof workdir, "%s", argv[1]);
  char *slash = strrchr(workdir, '/');
  if (slash && slash != workdir) *slash = 0;
  else snprintf(workdir, sizeof workdir, "/tmp");
  if (chdir("/") != 0) die("chdir");
  umask(022);
  signal(SIGRTMIN, on_timer);
  signal(SIGRTMIN + 1, on_timer);
  if (!strcmp(kind, "unsharefiles")) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, PROBE_FD) != PROBE_FD) die("dup2");
    close(fd);
  }
  struct thread *main_t = &threads[0];
  main_t->tid = getpid();
  nthreads = 2 + (many ? NEXTRA : 0);
  for (int i = 1; i < nthreads; i++) {
    threads[i].worker = i == 1;
    if (pthread_create(&threads[i].th, NULL, run, &threads[i]) != 0) die("pthread_create");
    wait_phase(&threads[i], 1);
  }
  struct thread *w = &threads[1];
  if (!strcmp(kind, "tscmain")) {
    w->set_ok = prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0;
    w->set_errno = errno;
  }
  if (!strcmp(kind, "mempolicymain")) {
    unsigned long mask = 1;
    w->set_ok = syscall(SYS_set_mempolicy, MPOL_PREFERRED, &mask, 64) == 0;
    w->set_errno = errno;
  }
  if (!strcmp(kind, "timertid")) make_timer(CLOCK_MONOTONIC, w->tid, SIGRTMIN, 20000000);
  int timers = !strcmp(kind, "timertid") || !strcmp(kind, "cputimer");
  if (!timers && !w->set_ok) {
    errno = w->set_errno;
    printf("info %s=unavailable %s\n", kind, strerror(errno));
  }
  get_value(main_t->before, sizeof main_t->before);
  for (int i = 0; i < nthreads; i++) {
    printf("thread %d tid=%d %s\n", i, threads[i].tid, threads[i].before);
  }
  int differs = strcmp(main_t->before, w->before) != 0;
  if (!timers && w->set_ok && !differs) {
    printf("info %s=unavailable the worker's value is the main thread's\n", kind);
    w->set_ok = 0;
  }
  fflush(stdout);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  if (!strcmp(kind, "timertid")) {
    atomic_store(&worker_hits, 0);
    atomic_store(&other_hits, 0);
    sleep_ms(300);
    int wh = atomic_load(&worker_hits), oh = atomic_load(&other_hits);
    check("timertid", wh > 0 && oh == 0, "worker got %d signals, other threads %d", wh, oh);
  } else if (!strcmp(kind, "cputimer")) {
    atomic_store(&worker_hits, 0);
    spin_cpu(0.15); /* the main thread's CPU time must not move the worker's clock */
    int early = atomic_load(&worker_hits) + atomic_load(&other_hits);
    atomic_store(&w->phase, 2);
    wait_phase(w, 3);
    int wh = atomic_load(&worker_hits), oh = atomic_load(&other_hits);
    /* The worker's clock may expire once early: the restore's own steps in the worker count
     * on its CPU clock (microseconds), enough when the dump caught the timer about to fire.
     * Driven by the main thread's CPU time it would fire ~30 times in the 150 ms spin. */
    check("cputimer", early <= 1 && wh >= 5 && oh == 0,
          "%d signals while the main thread spun, then %d in the worker, %d elsewhere", early, wh,
          oh);
  }
  get_value(main_t->after, sizeof main_t->after);
  for (int i = 1; i < nthreads; i++) {
    int one = 1;
    atomic_compare_exchange_strong(&threads[i].phase, &one, 2);
  }
  for (int i = 1; i < nthreads; i++) wait_phase(&threads[i], 3);
  if (!timers && w->set_ok) {
    for (int i = 0; i < nthreads; i++) {
      char name[64];
      snprintf(name, sizeof name, "%s-%s%d", kind, i == 0 ? "main" : i == 1 ? "worker" : "extra", i);
      check(name, !strcmp(threads[i].before, threads[i].after), "was \"%s\", now \"%s\"",
            threads[i].before, threads[i].after);
    }
  }
  return verdict();
}
