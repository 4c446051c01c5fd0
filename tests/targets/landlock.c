/* Target for tests/dump_landlock_test.ts: a process in a Landlock domain
 * (landlock_restrict_self with a ruleset that handles reading files and
 * allows none), which a dump must refuse (a domain cannot be read back: the
 * restored process would read anything). It checks that reading a file it
 * could read before the restriction is denied (EACCES) at once, and again
 * after the trigger: a dump refused by name left it restricted.
 *
 * Modes:
 *   restrict         the process restricts itself (one thread)
 *   restrict-threads the same, then 7 more threads (in its domain)
 *   thread           the main thread stays free; a second thread restricts
 *                    itself and checks its own reads
 *   nnp              no_new_privs only, no domain: reading works after the
 *                    trigger (the dump must not be refused)
 *   cap-drop         the process restricts itself without no_new_privs (with
 *                    CAP_SYS_ADMIN: run as root), then drops every
 *                    capability: its status then shows neither no_new_privs
 *                    nor CAP_SYS_ADMIN, as a child of such a process would,
 *                    and it is still in its domain (must be refused)
 *
 * usage: landlock <trigger-path> <work-dir> <mode>
 * Prints "ready pid=N".
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const char *probe_path; /* a file of the work directory, readable before any restriction */
static const char *trigger_path;

/* 0 when the file opens for reading, else the errno. */
static int read_error(void) {
  int fd = open(probe_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

/* With `nnp` no_new_privs, with `domain` a Landlock domain denying every file read, in this thread. */
static void restrict_self(int domain, int nnp) {
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
  if (!domain) return;
  struct landlock_ruleset_attr attr = {.handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE};
  int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
  if (rs < 0) die("landlock_create_ruleset");
  if (syscall(SYS_landlock_restrict_self, rs, 0) != 0) die("landlock_restrict_self");
  close(rs);
}

static int thread_denied_before, thread_denied_after;
static volatile int thread_ready;

/* Mode "thread": restricts itself, checks, waits for the trigger (stat: not a read), checks again. */
static void *restricted_thread(void *arg) {
  (void)arg;
  restrict_self(1, 1);
  thread_denied_before = read_error() == EACCES;
  thread_ready = 1;
  wait_trigger(trigger_path);
  thread_denied_after = read_error() == EACCES;
  return NULL;
}

static void *idle(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "landlock <trigger-path> <work-dir> <mode>");
  trigger_path = argv[1];
  const char *mode = argv[3];
  static char path[4096];
  snprintf(path, sizeof path, "%s/probe", argv[2]);
  probe_path = path;
  int fd = open(probe_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) die("create the probe file");
  close(fd);
  check("readable_first", read_error() == 0, "the probe file cannot be read at all");
  if (strcmp(mode, "thread") == 0) {
    pthread_t t;
    int err = pthread_create(&t, NULL, restricted_thread, NULL);
    if (err) die_err("pthread_create", err);
    while (!thread_ready) sleep_ms(1);
    print_ready("pid=%d", getpid());
    err = pthread_join(t, NULL);
    if (err) die_err("pthread_join", err);
    check("thread_denied_before", thread_denied_before, "the thread could read after restricting");
    check("thread_denied_after", thread_denied_after, "the thread can read after the dump");
    check("main_free", read_error() == 0, "the main thread cannot read");
    return verdict();
  }
  int domain = strcmp(mode, "nnp") != 0;
  int cap_drop = strcmp(mode, "cap-drop") == 0;
  restrict_self(domain, !cap_drop);
  if (cap_drop) {
    /* Every capability dropped from every set (this thread: the only one). */
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct caps[2];
    memset(caps, 0, sizeof caps);
    if (syscall(SYS_capset, &hdr, caps) != 0) die("capset");
    if (syscall(SYS_capget, &hdr, caps) != 0) die("capget");
    check("caps_dropped", (caps[0].effective | caps[1].effective | caps[0].permitted |
                           caps[1].permitted) == 0, "capabilities left");
    check("nnp_clear", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0, "no_new_privs is set");
  }
  int before = read_error();
  if (strcmp(mode, "restrict-threads") == 0) {
    for (int i = 0; i < 7; i++) {
      pthread_t t;
      int err = pthread_create(&t, NULL, idle, NULL);
      if (err) die_err("pthread_create", err);
    }
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger_path); /* access(): not a read, Landlock lets it by */
  int after = read_error();
  if (domain) {
    check("denied_before", before == EACCES, "read after restricting: %s", strerror(before));
    check("denied_after", after == EACCES, "read after the dump: %s", strerror(after));
  } else {
    check("readable_before", before == 0, "no read with no_new_privs: %s", strerror(before));
    check("readable_after", after == 0, "no read after the dump: %s", strerror(after));
  }
  return verdict();
}
