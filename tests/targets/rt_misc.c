/* Round-trip target for process attributes: sets rlimits, umask, cwd,
 * comm, personality, a new session, a signal mask, and maps a file; prints
 * "ready ...", waits until the trigger file argv[1] exists, then verifies
 * everything itself and prints one "check <name> ok|FAIL <detail>" line per
 * item, then PASS or FAIL.
 *
 * usage: rt_misc <trigger-path> <work-dir> [highfd]
 *   highfd: also keep an fd numbered above the (lowered) RLIMIT_NOFILE soft limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define NLIMITS RLIM_NLIMITS
static struct rlimit limits_before[NLIMITS];
static char work[2048], comm_before[32];
static const char *COMM = "rt-misc-name";
static int persona_before;
static uid_t ruid, euid, suid;
static gid_t rgid, egid, sgid;
static sigset_t mask_before;
static char mapped_path[2600];
static unsigned char *mapped;
#define MAPPED_BYTES 8192
#define HIGH_FD 150
#define HIGH_FD_LIMIT 100
static int high_fd = -1;

static void setup(int with_high_fd) {
  if (with_high_fd) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, HIGH_FD) != HIGH_FD) die("dup2 high");
    close(fd);
    high_fd = HIGH_FD;
  }
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  rlim_t hard = r.rlim_max == RLIM_INFINITY || r.rlim_max > 400 ? 400 : r.rlim_max;
  r.rlim_cur = with_high_fd ? HIGH_FD_LIMIT : 200;
  r.rlim_max = hard;
  if (setrlimit(RLIMIT_NOFILE, &r)) die("setrlimit NOFILE");
  r.rlim_cur = 0;
  r.rlim_max = 0;
  if (setrlimit(RLIMIT_CORE, &r)) die("setrlimit CORE");
  getrlimit(RLIMIT_FSIZE, &r);
  r.rlim_cur = 1UL << 30;
  if (setrlimit(RLIMIT_FSIZE, &r)) die("setrlimit FSIZE");
  for (int i = 0; i < NLIMITS; i++) getrlimit(i, &limits_before[i]);

  umask(027);
  if (chdir(work)) die("chdir");
  if (prctl(PR_SET_NAME, COMM, 0, 0, 0)) die("PR_SET_NAME");
  prctl(PR_GET_NAME, comm_before, 0, 0, 0);
  personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE);
  persona_before = personality(0xffffffff);
  if (setsid() < 0) die("setsid");
  getresuid(&ruid, &euid, &suid);
  getresgid(&rgid, &egid, &sgid);

  sigemptyset(&mask_before);
  sigaddset(&mask_before, SIGUSR2);
  sigaddset(&mask_before, SIGWINCH);
  sigprocmask(SIG_SETMASK, &mask_before, NULL);

  snprintf(mapped_path, sizeof mapped_path, "%s/mapped.dat", work);
  int fd = open(mapped_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  unsigned char buf[MAPPED_BYTES];
  for (int i = 0; i < MAPPED_BYTES; i++) buf[i] = (unsigned char)(i * 13 + 5);
  if (fd < 0 || write(fd, buf, MAPPED_BYTES) != MAPPED_BYTES) die("write mapped.dat");
  mapped = mmap(NULL, MAPPED_BYTES, PROT_READ, MAP_PRIVATE, fd, 0);
  if (mapped == MAP_FAILED) die("mmap mapped.dat");
  close(fd);
}

static long tracer_pid(void) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strstr(buf, "TracerPid:");
  return p ? strtol(p + 10, NULL, 10) : -1;
}

static void checks(void) {
  static const char *names[NLIMITS] = {"CPU",   "FSIZE",   "DATA",       "STACK",  "CORE",
                                       "RSS",   "NPROC",   "NOFILE",     "MEMLOCK", "AS",
                                       "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE",   "RTPRIO",
                                       "RTTIME"};
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  check("rlimit-nofile", r.rlim_cur == limits_before[RLIMIT_NOFILE].rlim_cur &&
                             r.rlim_max == limits_before[RLIMIT_NOFILE].rlim_max &&
                             r.rlim_cur < r.rlim_max,
        "soft %lu hard %lu, expected %lu %lu", (unsigned long)r.rlim_cur,
        (unsigned long)r.rlim_max, (unsigned long)limits_before[RLIMIT_NOFILE].rlim_cur,
        (unsigned long)limits_before[RLIMIT_NOFILE].rlim_max);
  getrlimit(RLIMIT_CORE, &r);
  check("rlimit-core", r.rlim_cur == 0 && r.rlim_max == 0, "soft %lu hard %lu",
        (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
  int bad = -1;
  for (int i = 0; i < NLIMITS && bad < 0; i++) {
    getrlimit(i, &r);
    if (r.rlim_cur != limits_before[i].rlim_cur || r.rlim_max != limits_before[i].rlim_max) bad = i;
  }
  if (bad >= 0) getrlimit(bad, &r);
  check("rlimit-all", bad < 0, "RLIMIT_%s is %lu/%lu, was %lu/%lu", bad >= 0 ? names[bad] : "",
        (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max,
        bad >= 0 ? (unsigned long)limits_before[bad].rlim_cur : 0UL,
        bad >= 0 ? (unsigned long)limits_before[bad].rlim_max : 0UL);

  mode_t m = umask(0);
  umask(m);
  check("umask", m == 027, "umask 0%o", m);

  char cwd[4096] = {0};
  int ok = getcwd(cwd, sizeof cwd) != NULL && !strcmp(cwd, work);
  check("cwd", ok, "cwd is %s, expected %s", cwd, work);
  struct stat a, b;
  ok = stat(".", &a) == 0 && stat(work, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
  check("cwd-relative", ok, "\".\" is not %s", work);

  char comm[32] = {0};
  prctl(PR_GET_NAME, comm, 0, 0, 0);
  check("comm", !strcmp(comm, COMM) && !strcmp(comm, comm_before), "comm is \"%s\"", comm);

  int persona = personality(0xffffffff);
  check("personality", persona == persona_before && (persona & ADDR_NO_RANDOMIZE),
        "0x%x, was 0x%x", persona, persona_before);

  pid_t pid = getpid();
  check("session", getsid(0) == pid && getpgrp() == pid, "sid %d pgrp %d pid %d", getsid(0),
        getpgrp(), pid);

  uid_t u[3];
  gid_t g[3];
  getresuid(&u[0], &u[1], &u[2]);
  getresgid(&g[0], &g[1], &g[2]);
  check("ids", u[0] == ruid && u[1] == euid && u[2] == suid && g[0] == rgid && g[1] == egid &&
                   g[2] == sgid,
        "uids %d %d %d gids %d %d %d", u[0], u[1], u[2], g[0], g[1], g[2]);

  sigset_t mask, pending;
  sigprocmask(SIG_SETMASK, NULL, &mask);
  int mask_ok = 1;
  for (int s = 1; s < 65; s++)
    if (sigismember(&mask, s) != sigismember(&mask_before, s)) mask_ok = 0;
  check("sigmask", mask_ok, "SIGUSR2 %d SIGWINCH %d SIGINT %d", sigismember(&mask, SIGUSR2),
        sigismember(&mask, SIGWINCH), sigismember(&mask, SIGINT));
  sigpending(&pending);
  int first_pending = 0;
  for (int s = 1; s < 65 && !first_pending; s++)
    if (sigismember(&pending, s)) first_pending = s;
  check("no-pending-signals", first_pending == 0, "signal %d is pending", first_pending);
  /* No handlers are installed: nanosleep in wait_trigger() must never come back early. */
  check("no-eintr", trigger_eintr == 0, "nanosleep returned EINTR %d times", trigger_eintr);
  long tp = tracer_pid();
  check("not-traced", tp == 0, "TracerPid %ld", tp);

  ok = 1;
  for (int i = 0; i < MAPPED_BYTES; i++)
    if (mapped[i] != (unsigned char)(i * 13 + 5)) ok = 0;
  check("mapped-file", ok, "mapping of %s differs", mapped_path);

  if (high_fd >= 0) {
    struct stat st;
    ok = fstat(high_fd, &st) == 0 && S_ISCHR(st.st_mode);
    check("fd-above-nofile", ok, "fd %d (soft RLIMIT_NOFILE %d) is gone", high_fd, HIGH_FD_LIMIT);
  }
  printf("info ppid=%d waited=%d\n", getppid(), trigger_rounds);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_misc <trigger> <work-dir> [highfd]");
  if (!realpath(argv[2], work)) die("realpath");
  static char trigger[4096];
  if (argv[1][0] == '/') snprintf(trigger, sizeof trigger, "%s", argv[1]);
  else if (getcwd(trigger, 2048)) snprintf(trigger + strlen(trigger), 2048, "/%s", argv[1]);
  printf("start pid=%d\n", getpid());
  fflush(stdout);
  setup(argc > 3 && !strcmp(argv[3], "highfd"));
  print_ready("pid=%d ppid=%d mapped=%s", getpid(), getppid(), mapped_path);
  wait_trigger(trigger); /* absolute: the cwd changed */
  checks();
  return verdict();
}
