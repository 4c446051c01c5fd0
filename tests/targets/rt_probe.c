/* Probe target for per-process kernel state no other round-trip target
 * covers (tests/restore_probe_test.ts): one item per run, named by
 * argv[2]. The item is set up and recorded, "ready pid=N" is printed, the
 * target waits until the trigger file argv[1] exists, then checks the item
 * again and prints "check <item> ok|FAIL <detail>", then PASS or FAIL.
 * An item the kernel refuses at setup prints "info <item>=unavailable
 * <error>" and is not checked.
 *
 * usage: rt_probe <trigger-path> <item> [work-dir]
 *   (work-dir defaults to the trigger's directory)
 *   mdwe:      prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN);
 *   ioflusher: prctl(PR_SET_IO_FLUSHER, 1);
 *   tsc:       prctl(PR_SET_TSC, PR_TSC_SIGSEGV);
 *   spec:      prctl(PR_SET_SPECULATION_CTRL) of each control the process may
 *              set (store bypass, indirect branch, L1D flush) to the value
 *              it does not have (enable <-> disable);
 *   specforce: the same, with PR_SPEC_FORCE_DISABLE where it was enabled;
 *   mce:       prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY);
 *   anonname:  prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) on a private mapping;
 *   cmdline:   argv rewritten in place (setproctitle), /proc/self/cmdline;
 *   coredump:  /proc/self/coredump_filter set to 0x7c;
 *   mmfields:  /proc/self/exe, /proc/self/auxv and the mm fields of
 *              /proc/self/stat (code, stack, data, brk, arguments, environment);
 *   keyring:   a named session keyring joined, a key in it and one in the
 *              process keyring;
 *   sessionkeyring: only the session keyring and its key;
 *   emptyring: only a named session keyring joined, no key in it;
 *   landlock:  a landlock domain refusing mkdir;
 *   sud:       syscall user dispatch on, a blocked syscall raises SIGSYS;
 *   cpuid:     arch_prctl(ARCH_SET_CPUID, 0) (cpuid faults);
 *   schedcore: a core-scheduling cookie (PR_SCHED_CORE_CREATE);
 *   epoll:     EPOLLONESHOT (armed, and fired so disarmed), EPOLLEXCLUSIVE,
 *              EPOLLET, and the data of each watch;
 *   exitsig:   a child cloned with exit signal SIGUSR2 instead of SIGCHLD;
 *   dnotify:   fcntl(F_NOTIFY) on a directory (work-dir), with F_SETSIG;
 *   fdflags:   O_APPEND|O_NOATIME, FD_CLOEXEC on some fds only, O_NONBLOCK on
 *              one pipe end, F_SETPIPE_SZ, an eventfd in semaphore mode;
 *   uclamp:    sched_setattr utilization clamps (100..800);
 *   itprof:    ITIMER_PROF with an interval;
 *   absleep:   a thread in clock_nanosleep(TIMER_ABSTIME) 3 s ahead (the test
 *              restores after 2.5 s: it must wake at the deadline, not later).
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <pthread.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif
#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#define PR_GET_IO_FLUSHER 58
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif
#ifndef PR_SCHED_CORE
#define PR_SCHED_CORE 62
#define PR_SCHED_CORE_GET 0
#define PR_SCHED_CORE_CREATE 1
#endif
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012

static const char *item;
static char **g_argv;
static const char *workdir;

static void unavailable(const char *what) {
  printf("info %s=unavailable %s\n", what, strerror(errno));
  fflush(stdout);
}

/* ---- prctl values read back ------------------------------------------ */

static long prctl_get(int op, long a) { return prctl(op, a, 0, 0, 0); }

static long before_val;
static int tsc_before;
static long spec_before[3];

static int setup_simple(void) {
  if (!strcmp(item, "mdwe")) {
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)) return unavailable(item), 0;
    before_val = prctl_get(PR_GET_MDWE, 0);
  } else if (!strcmp(item, "ioflusher")) {
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0)) return unavailable(item), 0;
    before_val = prctl_get(PR_GET_IO_FLUSHER, 0);
  } else if (!strcmp(item, "tsc")) {
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)) return unavailable(item), 0;
    prctl(PR_GET_TSC, &tsc_before, 0, 0, 0);
    before_val = tsc_before;
  } else if (!strcmp(item, "spec") || !strcmp(item, "specforce")) {
    int set = 0;
    for (int c = 0; c < 3; c++) {
      long g = prctl_get(PR_GET_SPECULATION_CTRL, c);
      if (g < 0 || !(g & PR_SPEC_PRCTL)) continue; /* nothing a process can set */
      long want = g & PR_SPEC_ENABLE ? (item[4] == 'f' ? PR_SPEC_FORCE_DISABLE : PR_SPEC_DISABLE)
                                     : PR_SPEC_ENABLE;
      if (prctl(PR_SET_SPECULATION_CTRL, c, want, 0, 0)) continue;
      spec_before[c] = prctl_get(PR_GET_SPECULATION_CTRL, c);
      printf("info %s-%d=%ld (was %ld)\n", item, c, spec_before[c], g);
      set++;
    }
    if (!set) return errno = EOPNOTSUPP, unavailable(item), 0;
    return 1;
  } else if (!strcmp(item, "mce")) {
    if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0)) return unavailable(item), 0;
    before_val = prctl_get(PR_MCE_KILL_GET, 0);
  } else if (!strcmp(item, "cpuid")) {
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0)) return unavailable(item), 0;
    before_val = syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0);
  } else {
    return -1;
  }
  printf("info %s=%ld\n", item, before_val);
  return 1;
}

static void check_simple(void) {
  long now = 0;
  if (!strcmp(item, "mdwe")) now = prctl_get(PR_GET_MDWE, 0);
  else if (!strcmp(item, "ioflusher")) now = prctl_get(PR_GET_IO_FLUSHER, 0);
  else if (!strcmp(item, "tsc")) {
    int v = -1;
    prctl(PR_GET_TSC, &v, 0, 0, 0);
    now = v;
  } else if (!strcmp(item, "spec") || !strcmp(item, "specforce")) {
    for (int c = 0; c < 3; c++) {
      long v = spec_before[c] ? prctl_get(PR_GET_SPECULATION_CTRL, c) : 0;
      if (v != spec_before[c]) now = before_val + 1;
      if (v != spec_before[c]) printf("info %s-%d was %ld, now %ld\n", item, c, spec_before[c], v);
    }
  }
  else if (!strcmp(item, "mce")) now = prctl_get(PR_MCE_KILL_GET, 0);
  else if (!strcmp(item, "cpuid")) now = syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0);
  check(item, now == before_val, "was %ld, now %ld", before_val, now);
}

/* ---- anonymous mapping name ------------------------------------------ */

static char *named_area;

static int maps_has(const char *needle) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, needle)) found = 1;
  if (f) fclose(f);
  return found;
}

static int setup_anonname(void) {
  named_area = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (named_area == MAP_FAILED) die("mmap");
  named_area[0] = 1;
  if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)named_area + 4096, 4096,
            (unsigned long)"probe-name"))
    return unavailable(item), 0;
  return 1;
}

static void check_anonname(void) {
  check("anonname", maps_has("[anon:probe-name]"), "no [anon:probe-name] in /proc/self/maps");
}

/* ---- command line rewritten in place --------------------------------- */

static char cmdline_before[4096];
static ssize_t cmdline_len;

static ssize_t read_file(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t r = read(fd, buf, n);
  close(fd);
  return r;
}

static int setup_cmdline(void) {
  /* setproctitle: overwrite argv[0] in place (same length). */
  size_t n = strlen(g_argv[0]);
  memset(g_argv[0], 'x', n);
  memcpy(g_argv[0], "probe:", n < 6 ? n : 6);
  cmdline_len = read_file("/proc/self/cmdline", cmdline_before, sizeof cmdline_before);
  return 1;
}

static void check_cmdline(void) {
  char now[4096];
  ssize_t n = read_file("/proc/self/cmdline", now, sizeof now);
  check("cmdline", n == cmdline_len && !memcmp(now, cmdline_before, (size_t)n),
        "was %zd bytes \"%s\", now %zd bytes \"%s\"", cmdline_len, cmdline_before, n,
        n > 0 ? now : "");
}

/* ---- exe link, auxv, mm fields of stat --------------------------------- */

static char exe_before[4096], auxv_before[1024], mm_before[512];
static ssize_t auxv_len;

/* Fields 26-28 and 45-51 of /proc/self/stat (code, stack, data, brk, args, env). */
static void mm_fields(char *out, size_t n) {
  char buf[2048];
  ssize_t r = read_file("/proc/self/stat", buf, sizeof buf - 1);
  out[0] = 0;
  if (r <= 0) return;
  buf[r] = 0;
  char *p = strrchr(buf, ')') + 2;
  int field = 3;
  for (char *tok = strtok(p, " \n"); tok; tok = strtok(NULL, " \n"), field++) {
    if ((field >= 26 && field <= 28) || (field >= 45 && field <= 51))
      snprintf(out + strlen(out), n - strlen(out), "%d=%s ", field, tok);
  }
}

static int setup_mmfields(void) {
  if (readlink("/proc/self/exe", exe_before, sizeof exe_before - 1) < 0) die("readlink");
  auxv_len = read_file("/proc/self/auxv", auxv_before, sizeof auxv_before);
  mm_fields(mm_before, sizeof mm_before);
  return 1;
}

static void check_mmfields(void) {
  char exe[4096] = "", auxv[1024], mm[512];
  if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) strcpy(exe, strerror(errno));
  check("exe", !strcmp(exe, exe_before), "was %s, now %s", exe_before, exe);
  ssize_t n = read_file("/proc/self/auxv", auxv, sizeof auxv);
  check("auxv", n == auxv_len && !memcmp(auxv, auxv_before, (size_t)n), "%zd bytes, were %zd", n,
        auxv_len);
  mm_fields(mm, sizeof mm);
  check("mm-fields", !strcmp(mm, mm_before), "were %s, now %s", mm_before, mm);
}

/* ---- coredump_filter ------------------------------------------------- */

static char filter_before[64];

static int setup_coredump(void) {
  int fd = open("/proc/self/coredump_filter", O_WRONLY);
  if (fd < 0 || write(fd, "0x7c", 4) != 4) return unavailable(item), 0;
  close(fd);
  ssize_t n = read_file("/proc/self/coredump_filter", filter_before, sizeof filter_before - 1);
  filter_before[n > 0 ? n : 0] = 0;
  return 1;
}

static void check_coredump(void) {
  char now[64];
  ssize_t n = read_file("/proc/self/coredump_filter", now, sizeof now - 1);
  now[n > 0 ? n : 0] = 0;
  check("coredump", !strcmp(now, filter_before), "was %s, now %s", filter_before, now);
}

/* ---- keyrings -------------------------------------------------------- */

#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_DESCRIBE 6
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11
#define KEY_SPEC_PROCESS_KEYRING (-2)
#define KEY_SPEC_SESSION_KEYRING (-3)

static int setup_keyring(void) {
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "probe-ring") < 0) return unavailable(item), 0;
  if (!strcmp(item, "emptyring")) return 1;
  if (syscall(SYS_add_key, "user", "probe-key", "secret", 6, KEY_SPEC_SESSION_KEYRING) < 0)
    return unavailable(item), 0;
  if (!strcmp(item, "sessionkeyring")) return 1;
  if (syscall(SYS_add_key, "user", "probe-pkey", "psecret", 7, KEY_SPEC_PROCESS_KEYRING) < 0)
    return unavailable(item), 0;
  return 1;
}

static void check_keyring(void) {
  char desc[256] = "";
  if (!strcmp(item, "emptyring")) { /* restored with the restorer's session keyring */
    long n = syscall(SYS_keyctl, KEYCTL_READ, KEY_SPEC_SESSION_KEYRING, NULL, 0);
    check("emptyring", n >= 0, "session keyring unreadable: %s", strerror(errno));
    return;
  }
  long r = syscall(SYS_keyctl, KEYCTL_DESCRIBE, KEY_SPEC_SESSION_KEYRING, desc, sizeof desc);
  check("keyring-session", r > 0 && strstr(desc, ";probe-ring") != NULL, "session keyring is \"%s\"",
        desc);
  r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", "probe-key", 0);
  check("keyring-key", r > 0, "probe-key not found: %s", strerror(errno));
  if (!strcmp(item, "sessionkeyring")) return;
  r = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_PROCESS_KEYRING, "user", "probe-pkey", 0);
  check("keyring-process", r > 0, "probe-pkey not found: %s", strerror(errno));
}

/* ---- landlock -------------------------------------------------------- */

static int setup_landlock(void) {
  struct landlock_ruleset_attr attr = {.handled_access_fs = LANDLOCK_ACCESS_FS_MAKE_DIR};
  int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (rs < 0) return unavailable(item), 0;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
  if (syscall(SYS_landlock_restrict_self, rs, 0)) return unavailable(item), 0;
  close(rs);
  char path[4200];
  snprintf(path, sizeof path, "%s/before", workdir);
  if (mkdir(path, 0700) == 0 || errno != EACCES) {
    printf("info landlock=unavailable mkdir not refused\n");
    return 0;
  }
  return 1;
}

static void check_landlock(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/after", workdir);
  int r = mkdir(path, 0700);
  check("landlock", r != 0 && errno == EACCES, "mkdir %s", r == 0 ? "succeeded" : strerror(errno));
}

/* ---- syscall user dispatch ------------------------------------------- */

static volatile char sud_selector; /* 0 allow, 1 block */
static volatile int sud_caught;

static void on_sigsys(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  sud_selector = 0;
  if (si->si_code == 2 /* SYS_USER_DISPATCH */) sud_caught++;
}

static int sud_probe(void) {
  int before = sud_caught;
  sud_selector = 1;
  syscall(SYS_getppid);
  sud_selector = 0;
  return sud_caught - before;
}

static int setup_sud(void) {
  struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
  sigaction(SIGSYS, &sa, NULL);
  sud_selector = 0;
  if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &sud_selector))
    return unavailable(item), 0;
  if (sud_probe() != 1) {
    printf("info sud=unavailable no SIGSYS\n");
    return 0;
  }
  return 1;
}

static void check_sud(void) {
  int n = sud_probe();
  check("sud", n == 1, "a blocked syscall raised %d SIGSYS", n);
}

/* ---- core scheduling ------------------------------------------------- */

static unsigned long cookie_before;

static int setup_schedcore(void) {
  if (prctl(PR_SCHED_CORE, PR_SCHED_CORE_CREATE, 0, 1 /* PIDTYPE_TGID */, 0))
    return unavailable(item), 0;
  if (prctl(PR_SCHED_CORE, PR_SCHED_CORE_GET, 0, 0, (unsigned long)&cookie_before))
    return unavailable(item), 0;
  return 1;
}

static void check_schedcore(void) {
  unsigned long c = 0;
  prctl(PR_SCHED_CORE, PR_SCHED_CORE_GET, 0, 0, (unsigned long)&c);
  check("schedcore", (c != 0) == (cookie_before != 0), "cookie was %#lx, now %#lx", cookie_before, c);
}

/* ---- epoll flags ----------------------------------------------------- */

static int ep, ev_armed, ev_fired, ev_excl, ev_et;

static int setup_epoll(void) {
  ep = epoll_create1(0);
  ev_armed = eventfd(0, EFD_NONBLOCK);
  ev_fired = eventfd(1, EFD_NONBLOCK);
  ev_excl = eventfd(0, EFD_NONBLOCK);
  ev_et = eventfd(0, EFD_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x1111};
  epoll_ctl(ep, EPOLL_CTL_ADD, ev_armed, &e);
  e = (struct epoll_event){.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x2222};
  epoll_ctl(ep, EPOLL_CTL_ADD, ev_fired, &e);
  e = (struct epoll_event){.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 0x3333};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ev_excl, &e)) die("EPOLLEXCLUSIVE");
  e = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u64 = 0x4444};
  epoll_ctl(ep, EPOLL_CTL_ADD, ev_et, &e);
  struct epoll_event got[4];
  int n = epoll_wait(ep, got, 4, 0);
  if (n != 1 || got[0].data.u64 != 0x2222) die("the fired oneshot");
  return 1;
}

static void check_epoll(void) {
  struct epoll_event got[4];
  int n = epoll_wait(ep, got, 4, 0);
  check("epoll-oneshot-disarmed", n == 0, "%d events (first data %#lx)", n,
        n > 0 ? (unsigned long)got[0].data.u64 : 0UL);
  uint64_t one = 1;
  if (write(ev_armed, &one, 8) != 8) die("write");
  n = epoll_wait(ep, got, 4, 0);
  check("epoll-oneshot-armed", n == 1 && got[0].data.u64 == 0x1111, "%d events (data %#lx)", n,
        n > 0 ? (unsigned long)got[0].data.u64 : 0UL);
  n = epoll_wait(ep, got, 4, 0);
  check("epoll-oneshot-once", n == 0, "%d events", n);
  if (write(ev_et, &one, 8) != 8) die("write");
  n = epoll_wait(ep, got, 4, 0);
  int first = n == 1 && got[0].data.u64 == 0x4444;
  n = epoll_wait(ep, got, 4, 0);
  check("epoll-et", first && n == 0, "edge-triggered watch reported again (%d)", n);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
  int r = epoll_ctl(ep, EPOLL_CTL_MOD, ev_excl, &e);
  check("epoll-exclusive", r != 0 && errno == EINVAL, "EPOLL_CTL_MOD on it %s",
        r == 0 ? "succeeded (not exclusive)" : strerror(errno));
}

/* ---- exit signal of a child ------------------------------------------ */

static pid_t child;
static volatile sig_atomic_t got_usr2, got_chld;

static void on_usr2(int s) { (void)s; got_usr2 = 1; }
static void on_chld(int s) { (void)s; got_chld = 1; }

static int stat_exit_signal(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  ssize_t n = read_file(path, buf, sizeof buf - 1);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  int field = 2;
  for (; p && *p; p++)
    if (*p == ' ' && ++field == 38) return atoi(p + 1);
  return -1;
}

static int setup_exitsig(void) {
  signal(SIGUSR2, on_usr2);
  signal(SIGCHLD, on_chld);
  child = (pid_t)syscall(SYS_clone, SIGUSR2, 0, 0, 0, 0);
  if (child < 0) die("clone");
  if (child == 0) {
    for (;;) pause();
  }
  printf("info child=%d exit_signal=%d\n", child, stat_exit_signal(child));
  return 1;
}

static void check_exitsig(void) {
  int es = stat_exit_signal(child);
  check("exitsig-stat", es == SIGUSR2, "child exit signal %d", es);
  kill(child, SIGKILL);
  int st;
  waitpid(child, &st, __WALL);
  sleep_ms(50);
  check("exitsig-signal", got_usr2 && !got_chld, "usr2=%d chld=%d", got_usr2, got_chld);
}

/* ---- dnotify --------------------------------------------------------- */

static volatile int dn_count;
static void on_dn(int s, siginfo_t *si, void *uc) {
  (void)s;
  (void)si;
  (void)uc;
  dn_count++;
}

static int dn_fd;

static int setup_dnotify(void) {
  struct sigaction sa = {.sa_sigaction = on_dn, .sa_flags = SA_SIGINFO};
  sigaction(SIGRTMIN + 1, &sa, NULL);
  dn_fd = open(workdir, O_RDONLY | O_DIRECTORY);
  if (dn_fd < 0) die("open dir");
  if (fcntl(dn_fd, F_SETSIG, SIGRTMIN + 1)) die("F_SETSIG");
  if (fcntl(dn_fd, F_NOTIFY, DN_CREATE | DN_MULTISHOT)) return unavailable(item), 0;
  return 1;
}

static void check_dnotify(void) {
  int before = dn_count;
  char path[4200];
  snprintf(path, sizeof path, "%s/created", workdir);
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  close(fd);
  for (int i = 0; i < 50 && dn_count == before; i++) sleep_ms(10);
  check("dnotify", dn_count > before, "no signal for a file created in the directory");
}

/* ---- fd status and descriptor flags ---------------------------------- */

#define NFD 5
static int fds[NFD], fl_before[NFD], fd_before[NFD], pipe_size_before;

static int setup_fdflags(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/appended", workdir);
  fds[0] = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOATIME, 0600);
  if (fds[0] < 0) die("open");
  fds[1] = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
  int p[2];
  if (pipe2(p, O_NONBLOCK) != 0) die("pipe2");
  fds[2] = p[0];
  fds[3] = p[1];
  fcntl(p[1], F_SETFL, 0); /* the write end blocking again */
  fcntl(p[1], F_SETFD, FD_CLOEXEC);
  if (fcntl(p[0], F_SETPIPE_SZ, 1 << 20) < 0) die("F_SETPIPE_SZ");
  pipe_size_before = fcntl(p[0], F_GETPIPE_SZ);
  fds[4] = eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC);
  for (int i = 0; i < NFD; i++) {
    fl_before[i] = fcntl(fds[i], F_GETFL);
    fd_before[i] = fcntl(fds[i], F_GETFD);
  }
  return 1;
}

static void check_fdflags(void) {
  int same = 1;
  char detail[512] = "";
  for (int i = 0; i < NFD; i++) {
    int fl = fcntl(fds[i], F_GETFL), fd = fcntl(fds[i], F_GETFD);
    if (fl != fl_before[i] || fd != fd_before[i]) {
      same = 0;
      snprintf(detail + strlen(detail), sizeof detail - strlen(detail),
               "fd %d: fl %#x->%#x fd %d->%d; ", fds[i], fl_before[i], fl, fd_before[i], fd);
    }
  }
  check("fdflags", same, "%s", detail);
  int ps = fcntl(fds[2], F_GETPIPE_SZ);
  check("pipe-size", ps == pipe_size_before, "was %d, now %d", pipe_size_before, ps);
  uint64_t v = 0;
  ssize_t n = read(fds[4], &v, 8);
  check("eventfd-semaphore", n == 8 && v == 1, "read %zd bytes, value %lu", n, (unsigned long)v);
}

/* ---- utilization clamps ---------------------------------------------- */

struct probe_sched_attr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
  uint32_t util_min, util_max;
};

static struct probe_sched_attr uclamp_before;

static int setup_uclamp(void) {
  struct probe_sched_attr a = {.size = sizeof a,
                               .flags = 0x18 /* KEEP_ALL */ | 0x20 | 0x40 /* UTIL_CLAMP_MIN|MAX */,
                               .util_min = 100,
                               .util_max = 800};
  if (syscall(SYS_sched_setattr, 0, &a, 0)) return unavailable(item), 0;
  if (syscall(SYS_sched_getattr, 0, &uclamp_before, sizeof uclamp_before, 0))
    return unavailable(item), 0;
  return 1;
}

static void check_uclamp(void) {
  struct probe_sched_attr a = {0};
  syscall(SYS_sched_getattr, 0, &a, sizeof a, 0);
  check("uclamp", a.util_min == uclamp_before.util_min && a.util_max == uclamp_before.util_max,
        "was %u..%u, now %u..%u", uclamp_before.util_min, uclamp_before.util_max, a.util_min,
        a.util_max);
}

/* ---- ITIMER_PROF ----------------------------------------------------- */

static int setup_itprof(void) {
  struct itimerval v = {.it_interval = {7, 0}, .it_value = {100, 0}};
  if (setitimer(ITIMER_PROF, &v, NULL)) die("setitimer");
  return 1;
}

static void check_itprof(void) {
  struct itimerval v;
  getitimer(ITIMER_PROF, &v);
  check("itprof", v.it_interval.tv_sec == 7 && v.it_value.tv_sec > 90 && v.it_value.tv_sec <= 100,
        "interval %ld s, value %ld s", (long)v.it_interval.tv_sec, (long)v.it_value.tv_sec);
}

/* ---- clock_nanosleep(TIMER_ABSTIME) in a thread ----------------------- */

static struct timespec abs_deadline, abs_woke;
static int abs_rc = -1;

static void *abs_sleeper(void *arg) {
  (void)arg;
  do abs_rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs_deadline, NULL);
  while (abs_rc == EINTR);
  clock_gettime(CLOCK_MONOTONIC, &abs_woke);
  return NULL;
}

static pthread_t abs_thread;

static int setup_absleep(void) {
  clock_gettime(CLOCK_MONOTONIC, &abs_deadline);
  abs_deadline.tv_sec += 3;
  if (pthread_create(&abs_thread, NULL, abs_sleeper, NULL)) die("pthread_create");
  sleep_ms(50);
  return 1;
}

static void check_absleep(void) {
  pthread_join(abs_thread, NULL);
  double late = (double)(abs_woke.tv_sec - abs_deadline.tv_sec) +
                (double)(abs_woke.tv_nsec - abs_deadline.tv_nsec) / 1e9;
  check("absleep", abs_rc == 0 && late >= 0 && late < 1.5, "rc %d, woke %.3f s after the deadline",
        abs_rc, late);
}

/* ---------------------------------------------------------------------- */

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_probe <trigger-path> <item> [work-dir]");
  g_argv = argv;
  item = argv[2];
  static char trigger_dir[4096];
  snprintf(trigger_dir, sizeof trigger_dir, "%s", argv[1]);
  char *slash = strrchr(trigger_dir, '/');
  if (slash) *slash = 0;
  workdir = argc > 3 ? argv[3] : slash ? trigger_dir : ".";
  int ok = setup_simple();
  if (ok < 0) {
#define ITEM(name)                                                                                 \
  else if (!strcmp(item, #name)) ok = setup_##name();
    if (0) {
    }
    ITEM(anonname)
    ITEM(cmdline)
    ITEM(coredump)
    ITEM(keyring)
    else if (!strcmp(item, "sessionkeyring") || !strcmp(item, "emptyring")) ok = setup_keyring();
    ITEM(landlock)
    ITEM(sud)
    ITEM(schedcore)
    ITEM(epoll)
    ITEM(exitsig)
    ITEM(dnotify)
    ITEM(fdflags)
    ITEM(mmfields)
    ITEM(uclamp)
    ITEM(itprof)
    ITEM(absleep)
    else {
      fprintf(stderr, "unknown item %s\n", item);
      return 2;
    }
  }
  fflush(stdout);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  if (ok) {
#define CHECK(name) else if (!strcmp(item, #name)) check_##name();
    if (!strcmp(item, "mdwe") || !strcmp(item, "ioflusher") || !strcmp(item, "tsc") ||
        !strcmp(item, "spec") || !strcmp(item, "specforce") || !strcmp(item, "mce") || !strcmp(item, "cpuid"))
      check_simple();
    CHECK(anonname)
    CHECK(cmdline)
    CHECK(coredump)
    CHECK(keyring)
    else if (!strcmp(item, "sessionkeyring") || !strcmp(item, "emptyring")) check_keyring();
    CHECK(landlock)
    CHECK(sud)
    CHECK(schedcore)
    CHECK(epoll)
    CHECK(exitsig)
    CHECK(dnotify)
    CHECK(fdflags)
    CHECK(mmfields)
    CHECK(uclamp)
    CHECK(itprof)
    CHECK(absleep)
  }
  return verdict();
}
