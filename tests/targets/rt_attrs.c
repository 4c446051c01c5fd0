/* Round-trip target for process attributes: oom_score_adj, parent-death
 * signal (per thread), dumpable, child subreaper, THP disable, membarrier
 * registrations, no_new_privs, seccomp filters (one shared by all threads
 * with SECCOMP_FILTER_FLAG_LOG, one more in one thread), a thread in
 * seccomp strict mode, thread names, PR_SET_IO_FLUSHER in one thread, login
 * uid and session id. Records
 * everything, prints "ready ...", waits until the trigger file argv[1]
 * exists, then checks every value again and prints one
 * "check <name> ok|FAIL <detail>" line per item, then PASS or FAIL.
 *
 * usage: rt_attrs <trigger-path> [loginuid|loginuid-new|thread-login|notify|tsync]
 *   loginuid: also set its own login uid (so it differs from the restorer's);
 *   loginuid-new: the same, and expect the same login uid with another session id;
 *   thread-login: set its login uid after the strict thread started (which keeps its own);
 *   notify: thread "attr-extra" also has a filter handing acct() to a
 *           user-space listener (SECCOMP_RET_USER_NOTIF; the listener fd stays open);
 *   tsync: no strict thread and no filter of "attr-extra"'s own: both threads share
 *          one filter, so after the checks a filter added with
 *          SECCOMP_FILTER_FLAG_TSYNC must reach both ("tsync-shared").
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>

#include "common.h"

#define OOM_ADJ 345
#define FILTERED_ALL SYS_syslog /* every thread: ERRNO(77) */
#define FILTERED_ONE SYS_getpgid /* thread "attr-extra" only: ERRNO(78) */
#define MEMBARRIER_CMD_GET_REGISTRATIONS_ (1 << 9)
#define MB_REGISTERED (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#define PR_GET_IO_FLUSHER 58
#endif

struct thread_seen {
  int pdeathsig, nnp, errno_all, errno_one, filters, io_flusher;
  char comm[16];
};

static pthread_barrier_t ready_barrier, go_barrier, done_barrier;
static struct thread_seen before[2], after[2]; /* [0] main, [1] "attr-extra" */
static pid_t extra_tid, strict_tid;
static int io_flusher_set;
static int strict_in[2], strict_out[2];
static long loginuid_before, sessionid_before;

static long read_long(const char *path) {
  char buf[64] = {0};
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static int write_text(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A status field of thread `tid` ("Seccomp", "Seccomp_filters", ...); -1 if absent. */
static long status_field(pid_t tid, const char *name) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  int fd = open(path, O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char key[64];
  snprintf(key, sizeof key, "\n%s:", name);
  char *p = strstr(buf, key);
  return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static int notify_mode, tsync_mode;

/* Installs a filter returning `action` for syscall nr; returns what seccomp() returned. */
static long install_action(int nr, unsigned action, unsigned flags) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, action),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (r < 0) die("seccomp filter");
  return r;
}

/* Installs a filter returning ERRNO(err) for syscall nr. */
static void install_filter(int nr, int err, unsigned flags) {
  install_action(nr, SECCOMP_RET_ERRNO | (unsigned)err, flags);
}

/* errno of a filtered call (0 when it succeeded). */
static int errno_of(long nr) {
  errno = 0;
  long r = nr == SYS_syslog ? syscall(nr, 10 /* SIZE_BUFFER */, 0, 0) : syscall(nr, 0);
  return r < 0 ? errno : 0;
}

static void observe(struct thread_seen *s) {
  prctl(PR_GET_PDEATHSIG, &s->pdeathsig, 0, 0, 0);
  s->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  s->errno_all = errno_of(FILTERED_ALL);
  s->errno_one = errno_of(FILTERED_ONE);
  s->filters = (int)status_field(gettid_raw(), "Seccomp_filters");
  prctl(PR_GET_NAME, s->comm, 0, 0, 0);
  s->io_flusher = (int)prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0);
}

static void *extra_main(void *arg) {
  (void)arg;
  extra_tid = gettid_raw();
  prctl(PR_SET_NAME, "attr-extra", 0, 0, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0)) die("PR_SET_PDEATHSIG thread");
  /* Needs CAP_SYS_RESOURCE: without it the thread is no flusher, and the checks expect none. */
  io_flusher_set = prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0;
  if (!io_flusher_set) printf("info io-flusher=unavailable %s\n", strerror(errno));
  if (!tsync_mode) install_filter(FILTERED_ONE, 78, 0);
  if (notify_mode) install_action(SYS_acct, SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
  observe(&before[1]);
  pthread_barrier_wait(&ready_barrier);
  pthread_barrier_wait(&go_barrier);
  observe(&after[1]);
  pthread_barrier_wait(&done_barrier);
  if (tsync_mode) { /* once more, after main added a TSYNC filter */
    pthread_barrier_wait(&go_barrier);
    observe(&after[1]);
    pthread_barrier_wait(&done_barrier);
  }
  return NULL;
}

/* In strict mode only read, write, exit and sigreturn are allowed: echo one byte, then exit. */
static void *strict_main(void *arg) {
  (void)arg;
  strict_tid = gettid_raw();
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0)) die("strict mode");
  char c;
  if (read(strict_in[0], &c, 1) == 1) {
    c++;
    write(strict_out[1], &c, 1);
  }
  syscall(SYS_exit, 0);
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_attrs <trigger> [loginuid|loginuid-new|thread-login|notify|tsync]");
  notify_mode = argc > 2 && !strcmp(argv[2], "notify");
  tsync_mode = argc > 2 && !strcmp(argv[2], "tsync");
  prctl(PR_SET_NAME, "rt-attrs", 0, 0, 0);
  /* Before any thread starts: every thread has it. loginuid-new: restored with
   * --new-audit-session, the same login uid in a new session. */
  int new_session = argc > 2 && !strcmp(argv[2], "loginuid-new");
  if (argc > 2 && (new_session || !strcmp(argv[2], "loginuid")) &&
      write_text("/proc/self/loginuid", "4242"))
    die("write loginuid");
  /* Strict mode cannot follow filters: this thread starts before any filter. */
  pthread_t extra, strict;
  if (pipe(strict_in) || pipe(strict_out)) die("pipe");
  if (!tsync_mode && pthread_create(&strict, NULL, strict_main, NULL)) die("pthread_create");
  /* thread-login: written after the strict thread started, which keeps the unset one. */
  if (argc > 2 && !strcmp(argv[2], "thread-login") && write_text("/proc/self/loginuid", "4242"))
    die("write loginuid");
  char text[16];
  snprintf(text, sizeof text, "%d", OOM_ADJ);
  if (write_text("/proc/self/oom_score_adj", text)) die("oom_score_adj");
  if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0)) die("PR_SET_PDEATHSIG");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) die("PR_SET_DUMPABLE");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) die("PR_SET_CHILD_SUBREAPER");
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) die("PR_SET_THP_DISABLE");
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)) die("membarrier");
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0)) die("membarrier");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("PR_SET_NO_NEW_PRIVS");
  install_filter(FILTERED_ALL, 77, SECCOMP_FILTER_FLAG_LOG);
  loginuid_before = read_long("/proc/self/loginuid");
  sessionid_before = read_long("/proc/self/sessionid");

  pthread_barrier_init(&ready_barrier, NULL, 2);
  pthread_barrier_init(&go_barrier, NULL, 2);
  pthread_barrier_init(&done_barrier, NULL, 2);
  if (pthread_create(&extra, NULL, extra_main, NULL)) die("pthread_create");
  observe(&before[0]);
  pthread_barrier_wait(&ready_barrier);
  if (!tsync_mode) {
    while (status_field(strict_tid, "Seccomp") != 1) sleep_ms(5);
    pthread_setname_np(strict, "attr-strict");
  }
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  pthread_barrier_wait(&go_barrier);
  observe(&after[0]);
  pthread_barrier_wait(&done_barrier);

  long oom = read_long("/proc/self/oom_score_adj");
  check("oom_score_adj", oom == OOM_ADJ, "%ld", oom);
  int v = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  check("dumpable", v == 0, "%d", v);
  int sub = -1;
  prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
  check("subreaper", sub == 1, "%d", sub);
  v = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  check("thp-disable", v == 1, "%d", v);
  long mb = syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS_, 0, 0);
  check("membarrier-registrations", mb == MB_REGISTERED, "0x%lx, expected 0x%x", mb, MB_REGISTERED);
  long r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  check("membarrier-private-expedited", r == 0, "%s", strerror(errno));
  long login = read_long("/proc/self/loginuid"), session = read_long("/proc/self/sessionid");
  check("login-ids",
        login == loginuid_before &&
            (new_session ? session != sessionid_before && session != 4294967295L
                         : session == sessionid_before),
        "loginuid %ld sessionid %ld, were %ld %ld", login, session, loginuid_before,
        sessionid_before);

  const char *who[2] = {"main", "extra"};
  const int pdeath[2] = {SIGUSR2, SIGWINCH}, filters[2] = {1, tsync_mode ? 1 : 2 + notify_mode};
  const int one[2] = {0, tsync_mode ? 0 : 78};
  const char *comm[2] = {"rt-attrs", "attr-extra"};
  for (int i = 0; i < 2; i++) {
    const struct thread_seen *b = &before[i], *a = &after[i];
    char name[64];
    snprintf(name, sizeof name, "%s-pdeathsig", who[i]);
    check(name, a->pdeathsig == b->pdeathsig && b->pdeathsig == pdeath[i], "%d, was %d",
          a->pdeathsig, b->pdeathsig);
    snprintf(name, sizeof name, "%s-no-new-privs", who[i]);
    check(name, a->nnp == 1 && b->nnp == 1, "%d, was %d", a->nnp, b->nnp);
    snprintf(name, sizeof name, "%s-seccomp-filters", who[i]);
    check(name, a->filters == b->filters && b->filters == filters[i], "%d filters, was %d",
          a->filters, b->filters);
    snprintf(name, sizeof name, "%s-seccomp-effect", who[i]);
    check(name, a->errno_all == 77 && a->errno_one == one[i] && b->errno_all == 77 &&
                    b->errno_one == one[i],
          "syslog errno %d getpgid errno %d, were %d %d", a->errno_all, a->errno_one,
          b->errno_all, b->errno_one);
    snprintf(name, sizeof name, "%s-io-flusher", who[i]);
    if (io_flusher_set) /* (PR_GET_IO_FLUSHER needs CAP_SYS_RESOURCE too) */
      check(name, a->io_flusher == b->io_flusher && b->io_flusher == i, "%d, was %d",
            a->io_flusher, b->io_flusher);
    snprintf(name, sizeof name, "%s-comm", who[i]);
    check(name, !strcmp(a->comm, comm[i]) && !strcmp(b->comm, comm[i]), "\"%s\", was \"%s\"",
          a->comm, b->comm);
  }
  if (tsync_mode) {
    /* Both threads share the restored filter: a TSYNC filter reaches the other thread too. */
    errno = 0;
    long r = install_action(FILTERED_ONE, SECCOMP_RET_ERRNO | 79, SECCOMP_FILTER_FLAG_TSYNC);
    pthread_barrier_wait(&go_barrier);
    pthread_barrier_wait(&done_barrier);
    check("tsync-shared", r == 0 && after[1].errno_one == 79 && after[1].filters == 2,
          "seccomp(TSYNC) %ld, the other thread's getpgid errno %d with %d filters", r,
          after[1].errno_one, after[1].filters);
    pthread_join(extra, NULL);
    return verdict();
  }
  long mode = status_field(strict_tid, "Seccomp");
  check("strict-mode", mode == 1, "Seccomp %ld", mode);
  char tname[16] = "";
  pthread_getname_np(strict, tname, sizeof tname);
  check("strict-comm", !strcmp(tname, "attr-strict"), "\"%s\"", tname);
  char c = 'a';
  int echoed = write(strict_in[1], &c, 1) == 1 && read(strict_out[0], &c, 1) == 1 && c == 'b';
  check("strict-thread-runs", echoed, "no echo from the strict thread");
  pthread_join(extra, NULL);
  return verdict();
}
