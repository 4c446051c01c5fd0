/* Round-trip target for credentials. Started as root, it gives itself (and
 * in "threads" mode each of its threads, by raw syscalls, which change only
 * the calling thread) credentials other than the launcher's, records them
 * in every thread (its /proc/thread-self/status lines, getresuid/getresgid,
 * the fs ids, getgroups, capget, PR_GET_SECUREBITS, PR_GET_KEEPCAPS; and the
 * process's PR_GET_DUMPABLE), prints "ready pid=<pid>", waits until the
 * trigger file argv[1] exists, then every thread records them again and
 * the main thread prints one "check <thread>-<field> ok|FAIL" line per
 * field and thread, then PASS or FAIL.
 *
 * usage: rt_creds <trigger-path> switched|ambient|threads|fsids|tree
 *   switched: groups, setresgid(1001,1002,1003), keep-caps, setresuid(1001,
 *             1002,0), some capabilities kept (capset), dumpable set back to 1,
 *             then a pipe (owned by the fs ids 1002:1002);
 *   ambient:  keep-caps, uids 1000, inheritable and ambient capabilities,
 *             bounding set drops, locked securebits, no_new_privs;
 *   threads:  the main thread and two others with different ids, groups,
 *             capabilities, keep-caps and no_new_privs (raw syscalls);
 *   fsids:    fs uid and fs gid other than the effective ones;
 *   tree:     a child process takes the "switched" credentials, the parent
 *             stays root; a pipe owned by 1500:1600 is shared by both; the
 *             child prints its checks as "child-..." and exits with its
 *             verdict, which the parent checks.
 */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <libgen.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

#define SECBIT(n) (1 << (n))
#define SB_NOROOT SECBIT(0)
#define SB_NOROOT_LOCKED SECBIT(1)
#define SB_KEEP_CAPS SECBIT(4)
#define SB_NO_CAP_AMBIENT_RAISE SECBIT(6)
#define SB_NO_CAP_AMBIENT_RAISE_LOCKED SECBIT(7)
#define BIT(c) (1ULL << (c))

/* ------------------------------------------------------------ a record */

struct creds {
  char status[9][128]; /* Uid Gid Groups CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs */
  unsigned ids[8]; /* ruid euid suid fsuid rgid egid sgid fsgid */
  int ngroups;
  gid_t groups[64];
  uint64_t capget[3]; /* effective permitted inheritable */
  int securebits, keepcaps;
};

static const char *status_keys[9] = {"Uid",    "Gid",    "Groups", "CapInh",    "CapPrm",
                                     "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"};

/* Records the calling thread's credentials into `c`. */
static void record(struct creds *c) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen("/proc/thread-self/status", "r");
  if (!f) die("open /proc/thread-self/status");
  char line[512];
  while (fgets(line, sizeof line, f)) {
    for (int i = 0; i < 9; i++) {
      size_t n = strlen(status_keys[i]);
      if (strncmp(line, status_keys[i], n) == 0 && line[n] == ':') {
        snprintf(c->status[i], sizeof c->status[i], "%s", line + n + 1);
        c->status[i][strcspn(c->status[i], "\n")] = 0;
      }
    }
  }
  fclose(f);
  uid_t r, e, s;
  gid_t gr, ge, gs;
  syscall(SYS_getresuid, &r, &e, &s);
  syscall(SYS_getresgid, &gr, &ge, &gs);
  c->ids[0] = r, c->ids[1] = e, c->ids[2] = s;
  c->ids[3] = (unsigned)syscall(SYS_setfsuid, -1); /* an invalid id only reads it */
  c->ids[4] = gr, c->ids[5] = ge, c->ids[6] = gs;
  c->ids[7] = (unsigned)syscall(SYS_setfsgid, -1);
  c->ngroups = (int)syscall(SYS_getgroups, 64, c->groups);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0) die("capget");
  c->capget[0] = d[0].effective | ((uint64_t)d[1].effective << 32);
  c->capget[1] = d[0].permitted | ((uint64_t)d[1].permitted << 32);
  c->capget[2] = d[0].inheritable | ((uint64_t)d[1].inheritable << 32);
  c->securebits = prctl(PR_GET_SECUREBITS);
  c->keepcaps = prctl(PR_GET_KEEPCAPS);
}

/* Prints one check per field of `after` compared with `before`. */
static void compare(const char *who, const struct creds *before, const struct creds *after) {
  char name[64];
  for (int i = 0; i < 9; i++) {
    snprintf(name, sizeof name, "%s-%s", who, status_keys[i]);
    int ok = strcmp(before->status[i], after->status[i]) == 0;
    check(name, ok, "before %.60s after %.60s", before->status[i], after->status[i]);
  }
  snprintf(name, sizeof name, "%s-ids", who);
  check(name, memcmp(before->ids, after->ids, sizeof before->ids) == 0,
        "before %u %u %u %u / %u %u %u %u after %u %u %u %u / %u %u %u %u", before->ids[0],
        before->ids[1], before->ids[2], before->ids[3], before->ids[4], before->ids[5],
        before->ids[6], before->ids[7], after->ids[0], after->ids[1], after->ids[2], after->ids[3],
        after->ids[4], after->ids[5], after->ids[6], after->ids[7]);
  snprintf(name, sizeof name, "%s-getgroups", who);
  check(name,
        before->ngroups == after->ngroups &&
            memcmp(before->groups, after->groups, sizeof(gid_t) * (size_t)before->ngroups) == 0,
        "before %d groups, after %d", before->ngroups, after->ngroups);
  snprintf(name, sizeof name, "%s-capget", who);
  check(name, memcmp(before->capget, after->capget, sizeof before->capget) == 0,
        "before eff %llx prm %llx inh %llx after eff %llx prm %llx inh %llx",
        (unsigned long long)before->capget[0], (unsigned long long)before->capget[1],
        (unsigned long long)before->capget[2], (unsigned long long)after->capget[0],
        (unsigned long long)after->capget[1], (unsigned long long)after->capget[2]);
  snprintf(name, sizeof name, "%s-securebits", who);
  check(name, before->securebits == after->securebits, "before %#x after %#x",
        before->securebits, after->securebits);
  snprintf(name, sizeof name, "%s-keepcaps", who);
  check(name, before->keepcaps == after->keepcaps, "before %d after %d", before->keepcaps,
        after->keepcaps);
}

/* ------------------------------------------------------------ a pipe's owner */

/* A pipe made with the fs ids of its creator (switched and tree modes), -1 when none. */
static int owned_pipe = -1;
static struct stat owned_before;

/* Makes the pipe `owned_pipe` (read end; the write end is `*write_end`) and records its owner. */
static void make_owned_pipe(int *write_end) {
  int p[2];
  if (pipe(p) != 0) die("pipe");
  owned_pipe = p[0];
  *write_end = p[1];
  if (fstat(owned_pipe, &owned_before) != 0) die("fstat pipe");
}

/* Checks that the pipe still has the owner it had before the dump. */
static void check_owned_pipe(const char *name) {
  if (owned_pipe < 0) return;
  struct stat st;
  /* (Its inode number is the kernel's choice: a re-created pipe has another.) */
  int ok = fstat(owned_pipe, &st) == 0 && S_ISFIFO(st.st_mode) &&
           st.st_uid == owned_before.st_uid && st.st_gid == owned_before.st_gid;
  check(name, ok, "before %u:%u after %u:%u", owned_before.st_uid, owned_before.st_gid,
        st.st_uid, st.st_gid);
}

/* ------------------------------------------------------------ the setups */

static void must(long r, const char *what) {
  if (r != 0) die(what);
}

/* capset of the calling thread (raw syscall). */
static void set_caps(uint64_t eff, uint64_t prm, uint64_t inh) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {
      {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
      {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
  };
  must(syscall(SYS_capset, &h, d), "capset");
}

static void setup_switched(void) {
  gid_t groups[] = {100, 2000, 3000};
  must(syscall(SYS_setgroups, 3, groups), "setgroups");
  must(syscall(SYS_setresgid, 1001, 1002, 1003), "setresgid");
  must(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "PR_SET_KEEPCAPS");
  must(syscall(SYS_setresuid, 1001, 1002, 0), "setresuid");
  uint64_t keep = BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE);
  set_caps(keep, keep | BIT(CAP_SYS_NICE), BIT(CAP_NET_BIND_SERVICE));
  must(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "PR_SET_DUMPABLE");
  int w;
  make_owned_pipe(&w); /* owned by the fs ids 1002:1002, both ends kept */
}

static void setup_ambient(void) {
  must(prctl(PR_SET_SECUREBITS, SB_KEEP_CAPS, 0, 0, 0), "PR_SET_SECUREBITS keep-caps");
  must(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0), "PR_CAPBSET_DROP");
  must(prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0), "PR_CAPBSET_DROP");
  must(syscall(SYS_setresuid, 1000, 1000, 1000), "setresuid");
  uint64_t amb = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_NET_RAW);
  uint64_t inh = amb | BIT(CAP_SYS_NICE);
  set_caps(BIT(CAP_SETPCAP), inh | BIT(CAP_SETPCAP), inh);
  must(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0), "ambient raise");
  must(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0), "ambient raise");
  int bits = SB_KEEP_CAPS | SB_NOROOT | SB_NOROOT_LOCKED | SB_NO_CAP_AMBIENT_RAISE |
             SB_NO_CAP_AMBIENT_RAISE_LOCKED;
  must(prctl(PR_SET_SECUREBITS, bits, 0, 0, 0), "PR_SET_SECUREBITS");
  set_caps(amb, inh, inh);
  must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
}

static void setup_fsids(void) {
  must(syscall(SYS_setresgid, 2001, 2002, 2003), "setresgid");
  syscall(SYS_setfsgid, 2005);
  must(syscall(SYS_setresuid, 1001, 1002, 1003), "setresuid");
  syscall(SYS_setfsuid, 1003);
}

/* ------------------------------------------------------------ threads */

#define NTHREADS 2
static struct creds thread_before[NTHREADS], thread_after[NTHREADS];
static volatile int phase, thread_ready[NTHREADS];
static const char *thread_error[NTHREADS];

static void thread_setup(int i) {
  if (i == 0) {
    if (syscall(SYS_setresgid, 3001, 3002, 3003) != 0) thread_error[i] = "setresgid";
    if (syscall(SYS_setresuid, 1101, 1102, 1103) != 0) thread_error[i] = "setresuid";
  } else {
    gid_t g = 77;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) thread_error[i] = "keepcaps";
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0) thread_error[i] = "capbset";
    if (syscall(SYS_setgroups, 1, &g) != 0) thread_error[i] = "setgroups";
    if (syscall(SYS_setresuid, 1201, 1201, 1201) != 0) thread_error[i] = "setresuid";
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{BIT(CAP_KILL), BIT(CAP_KILL) | BIT(CAP_CHOWN), 0},
                                          {0, 0, 0}};
    if (syscall(SYS_capset, &h, d) != 0) thread_error[i] = "capset";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) thread_error[i] = "no_new_privs";
  }
}

static void *worker(void *arg) {
  int i = (int)(intptr_t)arg;
  thread_setup(i);
  record(&thread_before[i]);
  thread_ready[i] = 1;
  while (!phase) sleep_ms(10);
  record(&thread_after[i]);
  return NULL;
}

static pthread_t threads[NTHREADS];

static void setup_threads(void) {
  for (int i = 0; i < NTHREADS; i++) {
    if (pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i) != 0) die("pthread_create");
  }
  for (int i = 0; i < NTHREADS; i++) {
    while (!thread_ready[i]) sleep_ms(5);
    if (thread_error[i]) die(thread_error[i]);
  }
  gid_t groups[] = {10, 20};
  must(syscall(SYS_setgroups, 2, groups), "setgroups");
  must(syscall(SYS_setresuid, 0, 1500, 0), "setresuid");
}

/* ------------------------------------------------------------ tree */

/* The child of "tree" mode: switched credentials, then the same checks as a main thread. */
static void tree_child(const char *trigger, int done_fd) {
  setup_switched();
  struct creds before, after;
  record(&before);
  int dumpable = prctl(PR_GET_DUMPABLE);
  if (write(done_fd, "x", 1) != 1) die("write");
  close(done_fd);
  wait_trigger(trigger);
  check_owned_pipe("child-pipe-owner");
  record(&after);
  compare("child", &before, &after);
  check("child-dumpable", prctl(PR_GET_DUMPABLE) == dumpable, "before %d after %d", dumpable,
        prctl(PR_GET_DUMPABLE));
  exit(failures ? 1 : 0);
}

static pid_t child;

/* Starts the child of "tree" mode and waits until it has recorded its credentials. */
static void setup_tree(const char *trigger) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  /* A pipe shared by parent (write end) and child (read end), owned by 1500:1600. */
  int w;
  syscall(SYS_setfsgid, 1600);
  syscall(SYS_setfsuid, 1500);
  make_owned_pipe(&w);
  syscall(SYS_setfsuid, 0);
  syscall(SYS_setfsgid, 0);
  fflush(stdout);
  child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(fds[0]);
    close(w);
    tree_child(trigger, fds[1]);
  }
  close(fds[1]);
  int r = owned_pipe;
  owned_pipe = w; /* the parent checks the write end, the child the read end */
  close(r);
  char c;
  if (read(fds[0], &c, 1) != 1) die("read from the child");
  close(fds[0]);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_creds <trigger-path> switched|ambient|threads|fsids");
  const char *mode = argv[2];
  /* The trigger's directory must stay searchable once we are not root. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", argv[1]);
  chmod(dirname(dir), 0755);

  if (strcmp(mode, "switched") == 0) setup_switched();
  else if (strcmp(mode, "ambient") == 0) setup_ambient();
  else if (strcmp(mode, "threads") == 0) setup_threads();
  else if (strcmp(mode, "fsids") == 0) setup_fsids();
  else if (strcmp(mode, "tree") == 0) setup_tree(argv[1]);
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  struct creds before, after;
  record(&before);
  int dumpable = prctl(PR_GET_DUMPABLE);
  print_ready("pid=%d mode=%s dumpable=%d", getpid(), mode, dumpable);

  wait_trigger(argv[1]);

  record(&after);
  phase = 1;
  compare("main", &before, &after);
  check_owned_pipe("pipe-owner");
  check("dumpable", prctl(PR_GET_DUMPABLE) == dumpable, "before %d after %d", dumpable,
        prctl(PR_GET_DUMPABLE));
  if (strcmp(mode, "threads") == 0) {
    for (int i = 0; i < NTHREADS; i++) {
      pthread_join(threads[i], NULL);
      char who[16];
      snprintf(who, sizeof who, "t%d", i + 1);
      compare(who, &thread_before[i], &thread_after[i]);
    }
  }
  if (child > 0) {
    int status = 0;
    pid_t w = waitpid(child, &status, 0);
    check("child-exit", w == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "waitpid %d status %#x", (int)w, status);
  }
  return verdict();
}
