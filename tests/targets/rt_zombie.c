/* Round-trip target for zombie children: forks four children — one that
 * exits with 42, one killed by SIGTERM, one that makes itself a process
 * group leader and exits with 0, and one that stays alive until the
 * parent writes to a pipe and then exits with 7 — and does not reap the
 * first three. A SIGCHLD handler counts the signals. Once the three are
 * zombies it prints "ready pid=<pid> zombies=<a>,<b>,<c> live=<d>" and
 * waits for the trigger file (usage: rt_zombie <trigger> [ignore-sigchld]).
 *
 * With "ignore-sigchld" it sets SIGCHLD to SIG_IGN before the ready line
 * (a dump must refuse its zombies) and after the trigger only checks that
 * the zombies are still there.
 *
 * After the restore it checks: each zombie is still a zombie child of this
 * process with the same pid, raw exit status (/proc stat field 52) and
 * process group, the first with nobody's uids and gids (65534); no SIGCHLD arrived meanwhile; waitpid reaps each with its
 * recorded status; the live child exits with 7; then no child is left.
 */
#include "common.h"

#include <grp.h>
#include <sys/wait.h>

static volatile sig_atomic_t sigchld_count;

static void on_chld(int sig) {
  (void)sig;
  sigchld_count++;
}

/* The "Uid:" or "Gid:" line of /proc/<pid>/status, tabs as spaces ("" if unreadable). */
static void status_line(pid_t pid, const char *key, char *out, size_t size) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  out[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, strlen(key)) != 0) continue;
    for (char *c = line; *c; c++) {
      if (*c == '\t' || *c == '\n') *c = ' ';
    }
    snprintf(out, size, "%s", line);
    break;
  }
  fclose(f);
}

/* Fields of /proc/<pid>/stat after the comm: state (3), ppid (4), pgrp (5), exit_code (52). */
static int read_stat(pid_t pid, char *state, int *ppid, int *pgrp, int *exit_code) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2;
  int field = 3;
  *exit_code = -1;
  for (char *tok = strtok(p, " "); tok; tok = strtok(NULL, " "), field++) {
    if (field == 3) *state = tok[0];
    if (field == 4) *ppid = atoi(tok);
    if (field == 5) *pgrp = atoi(tok);
    if (field == 52) *exit_code = atoi(tok);
  }
  return 0;
}

static void wait_zombie(pid_t pid) {
  for (int i = 0; i < 500; i++) {
    char st = 0;
    int ppid, pgrp, code;
    if (read_stat(pid, &st, &ppid, &pgrp, &code) == 0 && st == 'Z') return;
    sleep_ms(10);
  }
  die_err("child did not become a zombie", ETIMEDOUT);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_zombie <trigger> [ignore-sigchld]");
  int ignore = argc > 2 && strcmp(argv[2], "ignore-sigchld") == 0;
  const char *trigger = argv[1];
  struct sigaction sa = {0};
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);

  pid_t z[3];
  int expect_status[3];
  int expect_pgrp[3];
  z[0] = fork();
  if (z[0] == 0) {
    /* nobody's ids, kept by the zombie */
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(99);
    }
    _exit(42);
  }
  z[1] = fork();
  if (z[1] == 0) {
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
    _exit(1);
  }
  z[2] = fork();
  if (z[2] == 0) {
    setpgid(0, 0);
    _exit(0);
  }
  int go[2];
  if (pipe(go) != 0) die("pipe");
  pid_t live = fork();
  if (live == 0) {
    char c;
    close(go[1]);
    while (read(go[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(7);
  }
  close(go[0]);
  if (z[0] < 0 || z[1] < 0 || z[2] < 0 || live < 0) die("fork");
  for (int i = 0; i < 3; i++) wait_zombie(z[i]);
  for (int i = 0; i < 3; i++) {
    char st;
    int ppid;
    read_stat(z[i], &st, &ppid, &expect_pgrp[i], &expect_status[i]);
  }
  sleep_ms(50); /* every SIGCHLD handled */
  int chld_before = sigchld_count;
  if (ignore) signal(SIGCHLD, SIG_IGN);
  print_ready("pid=%d zombies=%d,%d,%d live=%d", getpid(), z[0], z[1], z[2], live);
  printf("info status=%d,%d,%d pgrp=%d,%d,%d\n", expect_status[0], expect_status[1],
         expect_status[2], expect_pgrp[0], expect_pgrp[1], expect_pgrp[2]);
  fflush(stdout);

  wait_trigger(trigger);

  int ok_state = 1, ok_code = 1, ok_pgrp = 1;
  char detail[512] = "";
  for (int i = 0; i < 3; i++) {
    char st = 0;
    int ppid = 0, pgrp = 0, code = -1;
    if (read_stat(z[i], &st, &ppid, &pgrp, &code) != 0) {
      ok_state = 0;
      snprintf(detail, sizeof detail, "%d gone", z[i]);
      continue;
    }
    if (st != 'Z' || ppid != getpid()) {
      ok_state = 0;
      snprintf(detail, sizeof detail, "%d state %c ppid %d", z[i], st, ppid);
    }
    if (code != expect_status[i]) ok_code = 0;
    if (pgrp != expect_pgrp[i]) ok_pgrp = 0;
  }
  check("zombie-state", ok_state, "%s", detail);
  if (ignore) {
    if (write(go[1], "x", 1) != 1) die("write");
    return verdict();
  }
  check("zombie-exit-code", ok_code, "exit_code differs");
  check("zombie-pgrp", ok_pgrp, "process group differs");
  char uid_line[256], gid_line[256];
  status_line(z[0], "Uid:", uid_line, sizeof uid_line);
  status_line(z[0], "Gid:", gid_line, sizeof gid_line);
  check("zombie-ids",
        strcmp(uid_line, "Uid: 65534 65534 65534 65534 ") == 0 &&
            strcmp(gid_line, "Gid: 65534 65534 65534 65534 ") == 0,
        "[%s] [%s]", uid_line, gid_line);
  check("no-sigchld", sigchld_count == chld_before, "%d SIGCHLD after the restore",
        sigchld_count - chld_before);

  if (write(go[1], "x", 1) != 1) die("write");
  int st = 0;
  pid_t r = waitpid(z[0], &st, WNOHANG);
  check("reap-exit-42", r == z[0] && WIFEXITED(st) && WEXITSTATUS(st) == 42, "r=%d status=0x%x", r,
        st);
  r = waitpid(z[1], &st, WNOHANG);
  check("reap-sigterm", r == z[1] && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && !WCOREDUMP(st),
        "r=%d status=0x%x", r, st);
  r = waitpid(z[2], &st, WNOHANG);
  check("reap-exit-0", r == z[2] && WIFEXITED(st) && WEXITSTATUS(st) == 0, "r=%d status=0x%x", r,
        st);
  r = waitpid(live, &st, 0);
  check("live-child", r == live && WIFEXITED(st) && WEXITSTATUS(st) == 7, "r=%d status=0x%x", r, st);
  errno = 0;
  r = waitpid(-1, &st, WNOHANG);
  check("no-other-child", r == -1 && errno == ECHILD, "r=%d errno=%d", r, errno);
  return verdict();
}
