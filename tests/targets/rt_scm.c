/* Fds in flight (SCM_RIGHTS) in the queues of unix sockets
 * (engine/fds/unix_scm.ts), checked after a restore (or a --leave-running
 * dump): on a stream socketpair, bytes without fds, then a message with
 * the fd of a file the process still holds (one description: the offset
 * is shared; the bytes before it are read with it), a message with the fd
 * of a file the process has closed (offset and flags kept), a message with
 * two fds (an eventfd the process closed and the held file again), a
 * message with a socketpair end (bytes queued on it) whose peer the
 * process holds; on a seqpacket pair, a message with the write end of a
 * pipe whose read end the process holds, one without fds, one with a
 * socket the process holds; on a bound datagram socket, the held file from
 * a sender since closed. Each message is read with its exact size: data,
 * boundaries and fds are checked.
 *
 * usage: rt_scm <trigger> <workdir> [epoll|socket|tree]
 *   epoll   an epoll fd no process holds in flight; checks it is still queued
 *           (rt_scm_epoll.c checks such an epoll's watches)
 *   socket  the same with a unix socket in flight that has an fd in flight itself
 *   tree    a child sends its parent the fd of a file it holds (one description
 *           in two processes after the restore too)
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

/* Receives up to `cap` bytes into `buf` and the fds that came with them
 * (at most 4, into `fds`); returns the byte count, -1 on error; *nfds gets
 * the fd count, -1 when the control part was truncated. */
static ssize_t recv_fds(int sock, char *buf, size_t cap, int *fds, int *nfds) {
  struct iovec iov = {buf, cap};
  union { struct cmsghdr h; char buf[CMSG_SPACE(16 * sizeof(int))]; } c;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                       .msg_controllen = sizeof c.buf};
  ssize_t r = recvmsg(sock, &msg, MSG_DONTWAIT);
  *nfds = 0;
  if (r < 0) return r;
  if (msg.msg_flags & MSG_CTRUNC) *nfds = -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    int n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (int i = 0; i < n && *nfds >= 0 && *nfds < 4; i++) {
      memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
  }
  return r;
}

/* Whether `a` and `b` are the same file (device and inode). */
static int same_file(int a, const char *path) {
  struct stat x, y;
  return fstat(a, &x) == 0 && stat(path, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Receives one message of `want` bytes and checks its data and fd count. */
static ssize_t expect(const char *name, int sock, const char *want, int *fds, int wantFds) {
  char buf[64] = {0};
  int n = 0;
  size_t len = strlen(want);
  ssize_t r = recv_fds(sock, buf, len, fds, &n);
  check(name, r == (ssize_t)len && !memcmp(buf, want, len) && n == wantFds,
        "got %zd bytes \"%.*s\" with %d fds, want \"%s\" with %d", r, (int)(r > 0 ? r : 0), buf,
        n, want, wantFds);
  return r;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_scm <trigger> <workdir> [epoll|socket|tree|ambiguous]");
  const char *mode = argc > 3 ? argv[3] : "";
  signal(SIGPIPE, SIG_IGN);
  char held[256], gone[256];
  snprintf(held, sizeof held, "%s/held.txt", argv[2]);
  snprintf(gone, sizeof gone, "%s/gone.txt", argv[2]);

  if (!strcmp(mode, "epoll") || !strcmp(mode, "socket")) {
    int sp[2], other[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, other) != 0) die("socketpair");
    int ep = other[1];
    if (!strcmp(mode, "epoll")) ep = epoll_create1(0);
    else send_fds(other[0], "i", 1, &sp[0], 1); /* other[1] has an fd in flight itself */
    if (ep < 0) die("epoll_create1");
    send_fds(sp[0], "e", 1, &ep, 1);
    close(ep);
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    int fds[4], n = 0;
    char b = 0;
    ssize_t r = recv_fds(sp[1], &b, 1, fds, &n);
    check("epoll-still-queued", r == 1 && b == 'e' && n == 1, "got %zd bytes, %d fds", r, n);
    return verdict();
  }

  if (!strcmp(mode, "ambiguous")) {
    /* Bytes without fds, then a message with fds, in one stream. */
    int sp[2];
    int f = open(held, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
    send_fds(sp[0], "pre", 3, NULL, 0);
    send_fds(sp[0], "hello", 5, &f, 1);
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    int fds[4];
    expect("ambiguous-plain-first", sp[1], "pre", fds, 0);
    if (expect("ambiguous-then-fds", sp[1], "hello", fds, 1) == 5) {
      check("ambiguous-same-file", same_file(fds[0], held), "");
    }
    return verdict();
  }

  if (!strcmp(mode, "tree")) {
    int sp[2], go[2], ready[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0 || pipe(go) != 0 || pipe(ready) != 0) {
      die("socketpair/pipe");
    }
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      int f = open(held, O_RDWR | O_CREAT | O_TRUNC, 0600);
      if (f < 0 || write(f, "0123456789", 10) != 10 || lseek(f, 4, SEEK_SET) != 4) _exit(2);
      send_fds(sp[0], "c", 1, &f, 1);
      if (write(ready[1], "r", 1) != 1) _exit(2);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(3); /* the parent moved the offset */
      _exit(lseek(f, 0, SEEK_CUR) == 9 ? 0 : 4);
    }
    char c;
    if (read(ready[0], &c, 1) != 1) die("child ready");
    print_ready("pid=%d child=%d", getpid(), child);
    wait_trigger(argv[1]);
    int fds[4];
    if (expect("tree-message", sp[1], "c", fds, 1) == 1) {
      check("tree-offset", lseek(fds[0], 0, SEEK_CUR) == 4, "");
      check("tree-same-file", same_file(fds[0], held), "");
      lseek(fds[0], 9, SEEK_SET);
    }
    if (write(go[1], "g", 1) != 1) die("go");
    int status = -1;
    waitpid(child, &status, 0);
    check("tree-child-shares", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x",
          status);
    return verdict();
  }

  /* Files: `held` stays open at fd f1 (offset 3); `gone` is closed once sent. */
  int f1 = open(held, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int f2 = open(gone, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (f1 < 0 || f2 < 0) die("open");
  if (write(f1, "0123456789", 10) != 10 || write(f2, "abcdefgh", 8) != 8) die("write");
  if (lseek(f1, 3, SEEK_SET) != 3 || lseek(f2, 2, SEEK_SET) != 2) die("lseek");
  int ev = eventfd(42, EFD_NONBLOCK);
  int pp[2];
  if (ev < 0 || pipe(pp) != 0) die("eventfd/pipe");

  /* A datagram socket bound in the work dir, sent the held file by a sender since closed. */
  struct sockaddr_un da = {.sun_family = AF_UNIX};
  snprintf(da.sun_path, sizeof da.sun_path, "%s/d.sock", argv[2]);
  int dr = socket(AF_UNIX, SOCK_DGRAM, 0), ds = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (dr < 0 || ds < 0 || bind(dr, (struct sockaddr *)&da, sizeof da) != 0) die("dgram");
  if (connect(ds, (struct sockaddr *)&da, sizeof da) != 0) die("connect dgram");
  send_fds(ds, "dgram", 5, &f1, 1);
  close(ds);

  int st[2], sq[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0) die("socketpair stream");
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) != 0) die("socketpair seqpacket");
  /* Stream messages with fds are one byte each: a longer one is refused
   * (where its fds begin cannot be seen: "ambiguous" mode). */
  send_fds(st[0], "h", 1, &f1, 1);
  send_fds(st[0], "w", 1, &f2, 1);
  int two[2] = {ev, f1};
  send_fds(st[0], "2", 1, two, 2);
  /* A socketpair end with bytes queued, in flight; its peer stays. */
  int inner[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, inner) != 0) die("socketpair inner");
  if (write(inner[0], "queued", 6) != 6) die("write inner");
  send_fds(st[0], "s", 1, &inner[1], 1);
  close(inner[1]);
  send_fds(sq[0], "pipe", 4, &pp[1], 1);
  send_fds(sq[0], "after", 5, NULL, 0);
  send_fds(sq[0], "ref", 3, &inner[0], 1); /* a socket the process holds */
  close(f2);
  close(ev);
  close(pp[1]);

  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  int fds[4];
  if (expect("stream-held", st[1], "h", fds, 1) == 1) {
    off_t at = lseek(fds[0], 0, SEEK_CUR);
    lseek(f1, 7, SEEK_SET);
    off_t moved = lseek(fds[0], 0, SEEK_CUR);
    check("held-shared-offset", at == 3 && moved == 7, "offset %ld then %ld, want 3 then 7",
          (long)at, (long)moved);
    check("held-same-file", same_file(fds[0], held), "");
    close(fds[0]);
  }
  if (expect("stream-gone", st[1], "w", fds, 1) == 1) {
    int fl = fcntl(fds[0], F_GETFL);
    off_t at = lseek(fds[0], 0, SEEK_CUR);
    check("gone-flags", (fl & (O_ACCMODE | O_APPEND)) == (O_RDWR | O_APPEND), "flags 0%o", fl);
    check("gone-offset", at == 2, "offset %ld", (long)at);
    check("gone-same-file", same_file(fds[0], gone), "");
    check("gone-alone", lseek(f1, 0, SEEK_CUR) == 7, "");
    close(fds[0]);
  }
  if (expect("stream-two", st[1], "2", fds, 2) == 1) {
    uint64_t count = 0;
    check("two-eventfd", read(fds[0], &count, 8) == 8 && count == 42, "count %llu",
          (unsigned long long)count);
    lseek(f1, 5, SEEK_SET);
    check("two-held-shared", lseek(fds[1], 0, SEEK_CUR) == 5, "");
    close(fds[0]);
    close(fds[1]);
  }
  if (expect("stream-sock", st[1], "s", fds, 1) == 1) {
    char got[8] = {0};
    ssize_t r = read(fds[0], got, sizeof got);
    check("sock-queue", r == 6 && !memcmp(got, "queued", 6), "read %zd \"%s\"", r, got);
    int w = write(fds[0], "back", 4);
    memset(got, 0, sizeof got);
    r = recv(inner[0], got, sizeof got, MSG_DONTWAIT);
    check("sock-peer", w == 4 && r == 4 && !memcmp(got, "back", 4), "read %zd \"%s\"", r, got);
    close(fds[0]);
  }
  char b;
  int n = 0;
  check("stream-empty", recv_fds(st[1], &b, 1, fds, &n) < 0 && errno == EAGAIN, "");
  if (expect("seq-pipe", sq[1], "pipe", fds, 1) == 4) {
    char got[8] = {0};
    int w = write(fds[0], "ping", 4);
    close(fds[0]);
    check("pipe-arrives", w == 4 && read(pp[0], got, sizeof got) == 4 && !memcmp(got, "ping", 4),
          "wrote %d, read \"%s\"", w, got);
  }
  expect("seq-after", sq[1], "after", fds, 0);
  if (expect("seq-socket", sq[1], "ref", fds, 1) == 3) {
    struct stat x, y;
    check("seq-socket-same", fstat(fds[0], &x) == 0 && fstat(inner[0], &y) == 0 &&
          x.st_ino == y.st_ino, "");
    close(fds[0]);
  }
  if (expect("dgram-held", dr, "dgram", fds, 1) == 5) {
    lseek(f1, 1, SEEK_SET);
    check("dgram-held-shared", lseek(fds[0], 0, SEEK_CUR) == 1, "");
    close(fds[0]);
  }
  check("seq-empty", recv_fds(sq[1], &b, 1, fds, &n) < 0 && errno == EAGAIN, "");
  return verdict();
}
