/* Round-trip target for file locks, and the probe that checks them from
 * another process.
 *
 * rt_locks <trigger> <workdir>
 *   takes: flock LOCK_EX on <work>/flock (through a description its child
 *   shares), POSIX write lock on bytes 0-9, read lock on 20-29 and write
 *   lock from 100 to EOF of <work>/posix, an OFD write lock on bytes 5-14
 *   of <work>/ofd; prints "ready pid=<pid> child=<child>" and waits for the
 *   trigger; after the restore prints "restored" and waits for
 *   <trigger>.unlock, then unlocks everything (checking each unlock
 *   succeeds), prints "unlocked", waits for <trigger>.end and reports.
 *
 * rt_locks probe <workdir> <holder pid> locked|free
 *   tries to take each lock from this new process; "locked": every
 *   conflicting one must fail (and F_GETLK must name the holder), the
 *   compatible and unlocked ranges must succeed; "free": all succeed.
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

static int open_in(const char *work, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", work, name);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (fd < 0) die(path);
  return fd;
}

static int lk(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
  return fcntl(fd, cmd, &fl);
}

static void wait_file(const char *trigger, const char *suffix) {
  char path[512];
  snprintf(path, sizeof path, "%s%s", trigger, suffix);
  wait_trigger(path);
}

static int hold(const char *trigger, const char *work) {
  int f = open_in(work, "flock"), p = open_in(work, "posix"), o = open_in(work, "ofd");
  if (flock(f, LOCK_EX | LOCK_NB) != 0) die("flock");
  if (lk(p, F_SETLK, F_WRLCK, 0, 10) || lk(p, F_SETLK, F_RDLCK, 20, 10) || lk(p, F_SETLK, F_WRLCK, 100, 0))
    die("posix");
  if (lk(o, F_OFD_SETLK, F_WRLCK, 5, 10)) die("ofd");
  pid_t child = fork();
  if (child == 0) { /* shares the flock'ed description; exits after the restore */
    wait_trigger(trigger);
    _exit(0);
  }
  print_ready("pid=%d child=%d", getpid(), child);
  wait_trigger(trigger);
  printf("restored\n");
  fflush(stdout);
  wait_file(trigger, ".unlock");
  check("unlock-flock", flock(f, LOCK_UN) == 0, "errno %d", errno);
  check("unlock-posix", lk(p, F_SETLK, F_UNLCK, 0, 0) == 0, "errno %d", errno);
  check("unlock-ofd", lk(o, F_OFD_SETLK, F_UNLCK, 0, 0) == 0, "errno %d", errno);
  int status = 0;
  check("child", waitpid(child, &status, 0) == child && WIFEXITED(status), "status %x", status);
  printf("unlocked\n");
  fflush(stdout);
  wait_file(trigger, ".end");
  return verdict();
}

/* 1 if the lock attempt failed because of a conflict, 0 if it was granted (and is dropped again). */
static int blocked(int fd, int cmd, short type, off_t start, off_t len) {
  if (lk(fd, cmd, type, start, len) == 0) {
    lk(fd, cmd, F_UNLCK, start, len);
    return 0;
  }
  return errno == EAGAIN || errno == EACCES;
}

static int probe(const char *work, pid_t holder, int locked) {
  int f = open_in(work, "flock"), p = open_in(work, "posix"), o = open_in(work, "ofd");
  int fl = flock(f, LOCK_EX | LOCK_NB);
  check("flock", locked ? fl != 0 && errno == EWOULDBLOCK : fl == 0, "flock %d errno %d", fl, errno);
  if (fl == 0) flock(f, LOCK_UN);

  struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  fcntl(p, F_GETLK, &q);
  check("posix-owner", locked ? q.l_type == F_WRLCK && q.l_pid == holder : q.l_type == F_UNLCK,
        "type %d pid %d", q.l_type, q.l_pid);
  check("posix-write", blocked(p, F_SETLK, F_WRLCK, 0, 10) == locked, "bytes 0-9");
  check("posix-read", blocked(p, F_SETLK, F_WRLCK, 20, 10) == locked && !blocked(p, F_SETLK, F_RDLCK, 20, 10),
        "bytes 20-29");
  check("posix-eof", blocked(p, F_SETLK, F_WRLCK, 1000, 10) == locked, "bytes 1000-1009");
  check("posix-free", !blocked(p, F_SETLK, F_WRLCK, 10, 10) && !blocked(p, F_SETLK, F_WRLCK, 30, 70),
        "bytes 10-19 and 30-99");
  check("ofd", blocked(o, F_OFD_SETLK, F_WRLCK, 5, 10) == locked && !blocked(o, F_OFD_SETLK, F_WRLCK, 0, 5) &&
                   !blocked(o, F_OFD_SETLK, F_WRLCK, 15, 10),
        "bytes 5-14");
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_locks <trigger> <workdir> | probe <workdir> <pid> locked|free");
  if (strcmp(argv[1], "probe")) return hold(argv[1], argv[2]);
  need_args(argc, 4, "rt_locks probe <workdir> <pid> locked|free");
  return probe(argv[2], (pid_t)atoi(argv[3]), !strcmp(argv[4], "locked"));
}
