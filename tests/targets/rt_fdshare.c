/* Round-trip target for fd flags, open file descriptions shared across
 * processes, fd owners and paths:
 *
 * - pipe flags exactly as before: an in-process pipe whose write end alone
 *   is O_NONBLOCK, a pipe shared with the child (its read end blocking here,
 *   its write end O_NONBLOCK in the child), a pipe leading out of the tree
 *   (the write end held by a process that left the tree), an epoll and an
 *   eventfd with O_NONBLOCK set by fcntl;
 * - open file descriptions shared by parent and child after fork (a regular
 *   file with its offset, an eventfd, an epoll, a pipe end): kcmp(KCMP_FILE)
 *   across the two pids must still find them equal, and the child moving
 *   the shared offset must move the parent's;
 * - F_SETOWN / F_SETSIG / O_ASYNC on a pipe: the signal still comes;
 * - a file opened and a cwd entered through a symlinked directory.
 *
 * usage: rt_fdshare <trigger> <workdir>
 * prints: ready pid=<pid> child=<child> outside=<pid of the outside holder>
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SHARED_FILE_FD 40
#define CHILD_FILE_FD 41
/* The child goes on after the restore once <trigger>.child exists. */

static int kcmp_file(pid_t a, int fa, pid_t b, int fb) {
  return (int)syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
}

/* Status flags and access mode, without O_LARGEFILE (which every open() from
 * a 64-bit process gets, and a restorer's stdio may have). */
static int flags_of(int fd) { return fcntl(fd, F_GETFL) & ~0100000; }

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_fdshare <trigger> <workdir>");
  const char *trigger = argv[1], *work = argv[2];
  char path[512], go2[512];
  snprintf(go2, sizeof go2, "%s.child", trigger);

  /* 1. Pipe flags. */
  int a[2];
  if (pipe2(a, 0) != 0 || fcntl(a[1], F_SETFL, O_NONBLOCK) != 0) die("pipe a");
  int a_flags[2] = {flags_of(a[0]), flags_of(a[1])};

  int b[2]; /* shared with the child: read end here (blocking), write end there (O_NONBLOCK) */
  if (pipe2(b, 0) != 0) die("pipe b");

  int out[2]; /* leads out of the tree: its write end goes to a process that leaves it */
  if (pipe2(out, 0) != 0) die("pipe out");
  int hold[2]; /* mid tells the outside holder's pid once it is set */
  if (pipe(hold) != 0) die("pipe hold");
  pid_t mid = fork();
  if (mid == 0) {
    int rdy[2];
    close(hold[0]);
    if (pipe(rdy) != 0) _exit(1);
    pid_t outside = fork();
    if (outside == 0) { /* keeps only out[1] open until the test kills it or removes <work> */
      for (int fd = 3; fd < 1024; fd++)
        if (fd != out[1] && fd != rdy[1]) close(fd);
      if (write(rdy[1], "", 1) != 1) _exit(1);
      close(rdy[1]);
      while (access(work, F_OK) == 0) sleep_ms(200);
      _exit(0);
    }
    close(rdy[1]);
    char c;
    if (read(rdy[0], &c, 1) != 1 || write(hold[1], &outside, sizeof outside) != sizeof outside) _exit(1);
    _exit(0);
  }
  close(out[1]);
  close(hold[1]);
  pid_t outside = 0;
  if (read(hold[0], &outside, sizeof outside) != sizeof outside) die("outside");
  close(hold[0]);
  waitpid(mid, NULL, 0);
  int out_flags = flags_of(out[0]);

  int efd = eventfd(3, 0);
  int ep = epoll_create1(0);
  if (efd < 0 || ep < 0 || fcntl(efd, F_SETFL, O_NONBLOCK) || fcntl(ep, F_SETFL, O_NONBLOCK)) die("efd/ep");
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xfeed};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0) die("epoll_ctl");

  /* 3. A regular file whose description (and offset) parent and child share. */
  snprintf(path, sizeof path, "%s/shared.txt", work);
  int file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (file < 0 || write(file, "0123456789", 10) != 10 || fcntl(file, F_SETFL, 0) != 0) die("file");
  if (lseek(file, 4, SEEK_SET) != 4 || dup2(file, SHARED_FILE_FD) < 0) die("dup2");
  close(file);

  /* 6. Owner, signal and O_ASYNC on the in-process pipe's read end. */
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, NULL);
  if (fcntl(a[0], F_SETOWN, getpid()) != 0 || fcntl(a[0], F_SETSIG, SIGUSR2) != 0 ||
      fcntl(a[0], F_SETFL, O_ASYNC) != 0)
    die("owner");
  a_flags[0] = flags_of(a[0]);

  /* 7. Paths through a symlinked directory. */
  char real[512], link[512], viapath[512];
  snprintf(real, sizeof real, "%s/real", work);
  snprintf(link, sizeof link, "%s/link", work);
  snprintf(viapath, sizeof viapath, "%s/link/f", work);
  if (mkdir(real, 0755) != 0 || symlink(real, link) != 0) die("symlink");
  int via = open(viapath, O_RDWR | O_CREAT, 0644);
  struct stat via_st, cwd_st;
  if (via < 0 || fstat(via, &via_st) != 0 || chdir(link) != 0 || stat(".", &cwd_st) != 0) die("via");

  pid_t child = fork();
  if (child == 0) {
    close(b[0]);
    if (fcntl(b[1], F_SETFL, O_NONBLOCK) != 0) _exit(10);
    int child_flags = flags_of(b[1]);
    if (dup2(SHARED_FILE_FD, CHILD_FILE_FD) < 0) _exit(11);
    close(SHARED_FILE_FD);
    if (write(b[1], "s", 1) != 1) _exit(13); /* set up */
    wait_trigger(go2);
    /* After the restore and the parent's kcmp checks: move the shared offset. */
    int ok = flags_of(b[1]) == child_flags;
    char two[2];
    ok = ok && read(CHILD_FILE_FD, two, 2) == 2 && two[0] == '4';
    uint64_t n;
    ok = ok && read(efd, &n, 8) == 8 && n == 3; /* empties the shared eventfd */
    ok = ok && write(b[1], ok ? "y" : "n", 1) == 1;
    _exit(ok ? 0 : 12);
  }
  close(b[1]);
  int b_flags = flags_of(b[0]);
  char setup = 0;
  if (read(b[0], &setup, 1) != 1 || setup != 's') die("child setup");

  print_ready("pid=%d child=%d outside=%d", getpid(), child, outside);
  wait_trigger(trigger);

  check("pipe-flags-in-process", flags_of(a[0]) == a_flags[0] && flags_of(a[1]) == a_flags[1],
        "read %o (was %o) write %o (was %o)", flags_of(a[0]), a_flags[0], flags_of(a[1]), a_flags[1]);
  check("pipe-flags-shared", flags_of(b[0]) == b_flags, "read end %o (was %o)", flags_of(b[0]), b_flags);
  check("pipe-flags-outside", flags_of(out[0]) == out_flags, "%o (was %o)", flags_of(out[0]), out_flags);
  check("eventfd-epoll-flags", flags_of(efd) == O_RDWR + O_NONBLOCK && flags_of(ep) == O_RDWR + O_NONBLOCK,
        "eventfd %o epoll %o", flags_of(efd), flags_of(ep));

  pid_t me = getpid();
  check("shared-file", kcmp_file(me, SHARED_FILE_FD, child, CHILD_FILE_FD) == 0, "kcmp %d errno %d",
        kcmp_file(me, SHARED_FILE_FD, child, CHILD_FILE_FD), errno);
  check("shared-eventfd", kcmp_file(me, efd, child, efd) == 0, "kcmp errno %d", errno);
  check("shared-epoll", kcmp_file(me, ep, child, ep) == 0, "kcmp errno %d", errno);

  struct epoll_event got;
  check("epoll-watch", epoll_wait(ep, &got, 1, 0) == 1 && got.data.u64 == 0xfeed, "no event");
  int go = open(go2, O_WRONLY | O_CREAT, 0644); /* now the child may go on */
  if (go < 0) die("go2");
  close(go);

  struct pollfd pfd = {b[0], POLLIN, 0};
  poll(&pfd, 1, 5000);
  char answer = 0;
  check("child-said", read(b[0], &answer, 1) == 1 && answer == 'y', "answer '%c'", answer);
  int status = 0;
  check("child", waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "status %x", status);
  off_t pos = lseek(SHARED_FILE_FD, 0, SEEK_CUR);
  check("shared-offset", pos == 6, "offset %ld (the child read 2 bytes from 4)", (long)pos);
  uint64_t n = 0;
  check("shared-eventfd-count", read(efd, &n, 8) == -1 && errno == EAGAIN, "count %lu", (unsigned long)n);
  check("file-flags", flags_of(SHARED_FILE_FD) == O_RDWR, "%o (O_APPEND was cleared)", flags_of(SHARED_FILE_FD));

  check("owner", fcntl(a[0], F_GETOWN) == me && fcntl(a[0], F_GETSIG) == SIGUSR2, "owner %d sig %d",
        fcntl(a[0], F_GETOWN), fcntl(a[0], F_GETSIG));
  if (write(a[1], "z", 1) != 1) die("write a");
  struct timespec ts = {5, 0};
  siginfo_t si;
  int sig = sigtimedwait(&usr2, &si, &ts);
  check("async-signal", sig == SIGUSR2 && si.si_fd == a[0], "sig %d fd %d", sig, si.si_fd);

  struct stat now;
  check("symlinked-file", fstat(via, &now) == 0 && now.st_ino == via_st.st_ino, "ino %lu", (unsigned long)now.st_ino);
  check("symlinked-cwd", stat(".", &now) == 0 && now.st_ino == cwd_st.st_ino, "ino %lu", (unsigned long)now.st_ino);
  return verdict();
}
