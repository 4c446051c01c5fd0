/* An epoll fd in flight (SCM_RIGHTS) that no process holds
 * (engine/fds/unix_scm.ts, engine/fds/epoll.ts inFlightEpollWatcher): the
 * process watches a pipe's read end with a byte in it (EPOLLIN, data
 * 0x1111), an eventfd at zero (EPOLLIN | EPOLLET, data 0x2222) and the
 * receiving end of a datagram socketpair (EPOLLIN, data 0x3333), sends the
 * epoll twice on that socketpair and closes it.
 *
 * After a restore the first message gives back an epoll (its /proc link
 * "anon_inode:[eventpoll]") whose fdinfo lists the three watches under
 * their fd numbers with their masks; epoll_wait reports the pipe and the
 * socket (a message is still queued) and not the eventfd, which it reports
 * once written; the second message gives the same description (kcmp), and
 * once it is read the socket is no longer reported.
 *
 * usage: rt_scm_epoll <trigger> <workdir> [moved]
 *   moved  the pipe's read end is moved to another number after it was
 *          watched (its watch's number no longer holds it: refused by name)
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

/* Sends `fd` in flight on `sock` with the one byte `tag`. */
static void send_fd(int sock, char tag, int fd) { send_fds(sock, &tag, 1, &fd, 1); }

/* Receives one byte with one fd (reported as check `name`); returns the fd or -1. */
static int recv_fd(const char *name, int sock, char tag) {
  char got = 0;
  struct iovec iov = {&got, 1};
  union { struct cmsghdr h; char buf[CMSG_SPACE(4 * sizeof(int))]; } c;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                       .msg_controllen = sizeof c.buf};
  ssize_t r = recvmsg(sock, &msg, MSG_DONTWAIT);
  struct cmsghdr *cm = r == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
  int fd = -1;
  if (cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int))) {
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  }
  check(name, r == 1 && got == tag && fd >= 0, "got %zd bytes '%c', fd %d", r, got, fd);
  return fd;
}

/* The data words epoll_wait reports on `ep` now, as a bit set: 1 pipe, 2 eventfd, 4 socket. */
static int ready(int ep) {
  struct epoll_event ev[8];
  int n = epoll_wait(ep, ev, 8, 0), set = 0;
  for (int i = 0; i < n; i++) {
    if (ev[i].data.u64 == 0x1111) set |= 1;
    else if (ev[i].data.u64 == 0x2222) set |= 2;
    else if (ev[i].data.u64 == 0x3333) set |= 4;
    else set |= 8;
  }
  return n < 0 ? -1 : set;
}

/* Whether the fdinfo of `ep` has a watch of fd `fd` with event mask `events` (the kernel adds
 * EPOLLERR and EPOLLHUP to every watch). */
static int watches(int ep, int fd, unsigned events) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
  FILE *f = fopen(path, "r");
  int found = 0;
  while (f && fgets(line, sizeof line, f)) {
    int tfd;
    unsigned ev;
    if (sscanf(line, "tfd: %d events: %x", &tfd, &ev) == 2 && tfd == fd &&
        (ev & ~(unsigned)(EPOLLERR | EPOLLHUP)) == events) {
      found = 1;
    }
  }
  if (f) fclose(f);
  return found;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_scm_epoll <trigger> <workdir> [moved]");
  int moved = argc > 3 && !strcmp(argv[3], "moved");
  int sp[2], p[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) != 0 || pipe(p) != 0) die("socketpair");
  int e = eventfd(0, EFD_NONBLOCK);
  int ep = epoll_create1(0);
  if (e < 0 || ep < 0) die("eventfd");
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1111};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) die("watch pipe");
  ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u64 = 0x2222};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != 0) die("watch eventfd");
  ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = 0x3333};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sp[1], &ev) != 0) die("watch socket");
  if (write(p[1], "x", 1) != 1) die("write");
  int watched = p[0]; /* the number its watch is under */
  if (moved) {
    int again = dup(p[0]);
    close(p[0]);
    p[0] = again;
  }
  send_fd(sp[0], 'a', ep);
  send_fd(sp[0], 'b', ep);
  close(ep);

  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  int r = recv_fd("received", sp[1], 'a');
  if (r < 0) return verdict();
  char path[64], link[64] = {0};
  snprintf(path, sizeof path, "/proc/self/fd/%d", r);
  ssize_t n = readlink(path, link, sizeof link - 1);
  check("kind", n > 0 && !strcmp(link, "anon_inode:[eventpoll]"), "link '%s'", link);
  check("watch-numbers", watches(r, watched, EPOLLIN) && watches(r, e, EPOLLIN | EPOLLET) &&
                             watches(r, sp[1], EPOLLIN),
        "pipe %d, eventfd %d, socket %d", watched, e, sp[1]);
  int now = ready(r);
  check("ready-pipe-socket", now == 5, "ready set %d", now);
  eventfd_write(e, 1);
  now = ready(r);
  check("ready-eventfd", now == 7, "ready set %d", now);
  check("eventfd-edge", ready(r) == 5, "");
  int r2 = recv_fd("received-again", sp[1], 'b');
  check("one-description", r2 >= 0 && syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, r, r2) == 0,
        "");
  now = ready(r);
  check("socket-drained", now == 1, "ready set %d", now);
  return verdict();
}
