/* Round-trip target for unix sockets. Before the checkpoint it sets up:
 * - a stream socketpair with bytes queued both ways, one end shut for writing;
 * - datagram and seqpacket socketpairs with messages of different sizes queued
 *   (a zero-length datagram among them);
 * - a path-bound listener (mode 0640, backlog 7) with one accepted connection
 *   (bytes queued both ways) and one connection not accepted yet;
 * - an abstract-name listener with a connection not accepted yet;
 * - a path-bound datagram receiver with datagrams from a bound sender and from
 *   an unnamed sender that is closed since, and a client connected to it;
 * - a stream socketpair whose peer was closed after writing into it;
 * - a socketpair shared with a child process (its end is the child's stdin;
 *   the child checks it);
 * - options: SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_RCVTIMEO, SO_SNDTIMEO,
 *   SO_KEEPALIVE, SO_REUSEADDR, SO_PEEK_OFF, and O_NONBLOCK on one fd.
 * After the trigger it checks every one of them works as before.
 *
 * Modes that a dump must refuse (the target then checks it still runs):
 *   scm          an fd in flight (SCM_RIGHTS) in a socketpair's queue
 *   pending-data bytes sent on a connection not accepted yet
 *   oob          urgent (MSG_OOB) data in a stream socket's queue
 *   listen       a listener (<workdir>/listen.sock) the test connects to from outside
 *   named-peer   a connection whose accepted end (named as the listener) was closed
 *   pair         just a socketpair with bytes queued (the test runs it as another user)
 *   external P   a stream socket connected to the listener at path P (outside)
 *
 * usage: rt_unix <trigger> <workdir> [scm|pending-data|oob|listen|named-peer|pair|external <path>]
 */
#define _GNU_SOURCE
#include "common.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static socklen_t mkaddr(struct sockaddr_un *a, const char *path, int abstract) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (abstract) {
    memcpy(a->sun_path + 1, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  }
  memcpy(a->sun_path, path, n + 1);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int optint(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0) return -2;
  return v;
}

/* Reads exactly what is queued (non-blocking) into buf; returns its length. */
static ssize_t drain(int fd, char *buf, size_t size) {
  ssize_t total = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + total, size - (size_t)total, MSG_DONTWAIT);
    if (n <= 0) break;
    total += n;
  }
  return total;
}

static int expect_msg(int fd, const char *want, size_t len) {
  char buf[8192];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n == (ssize_t)len && memcmp(buf, want, len) == 0;
}

/* Receives one datagram that must be `want`; returns the pid of its
 * SCM_CREDENTIALS, 0 when it carries none, -1 when it is not `want`. */
static pid_t recv_cred_pid(int fd, const char *want) {
  char buf[64];
  union { struct cmsghdr h; char c[CMSG_SPACE(sizeof(struct ucred))]; } u;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c, .msg_controllen = sizeof u.c};
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n)) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
      return cred.pid;
    }
  }
  return 0;
}

#define PATTERN_LEN 100000

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_unix <trigger> <workdir> [scm|pending-data|oob|listen|named-peer|pair|external <path>]");
  const char *mode = argc > 3 ? argv[3] : "";
  signal(SIGPIPE, SIG_IGN);
  char path[256], dpath[256], spath[256];
  snprintf(path, sizeof path, "%s/listen.sock", argv[2]);
  snprintf(dpath, sizeof dpath, "%s/dgram.sock", argv[2]);
  snprintf(spath, sizeof spath, "%s/sender.sock", argv[2]);

  if (!strcmp(mode, "scm")) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
    int passed = 1;
    send_fds(sp[0], "x", 1, &passed, 1);
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    char got = 0;
    check("scm-still-queued", recv(sp[1], &got, 1, MSG_DONTWAIT) == 1 && got == 'x', "");
    return verdict();
  }
  if (!strcmp(mode, "oob")) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) die("socketpair");
    if (send(sp[0], "ab", 2, 0) != 2 || send(sp[0], "!", 1, MSG_OOB) != 1) die("send oob");
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    char oob = 0;
    check("oob-still-queued", recv(sp[1], &oob, 1, MSG_OOB | MSG_DONTWAIT) == 1 && oob == '!', "");
    return verdict();
  }
  if (!strcmp(mode, "listen")) {
    struct sockaddr_un a;
    socklen_t al = mkaddr(&a, path, 0);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (void *)&a, al) || listen(l, 4)) die("listen");
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    int s = accept(l, NULL, NULL);
    check("outside-pending-intact", s >= 0 && expect_msg(s, "waiting", 7), "");
    return verdict();
  }
  if (!strcmp(mode, "pair")) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0 || send(sp[0], "mine", 4, 0) != 4) die("pair");
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    check("pair-intact", expect_msg(sp[1], "mine", 4), "");
    return verdict();
  }
  if (!strcmp(mode, "named-peer")) {
    struct sockaddr_un a, got;
    socklen_t al = mkaddr(&a, path, 0), gl = sizeof got;
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (void *)&a, al) || listen(l, 4) || connect(c, (void *)&a, al)) die("listen");
    int s = accept(l, NULL, NULL);
    if (s < 0 || send(s, "bye", 3, 0) != 3) die("accept");
    close(s);
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    check("named-peer-intact", expect_msg(c, "bye", 3) && getpeername(c, (void *)&got, &gl) == 0 &&
                                   gl == al, "len %u", gl);
    return verdict();
  }
  if (!strcmp(mode, "pending-data")) {
    struct sockaddr_un a;
    socklen_t al = mkaddr(&a, path, 0);
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (void *)&a, al) || listen(l, 4) || connect(c, (void *)&a, al)) die("listen");
    if (send(c, "early", 5, 0) != 5) die("send");
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    int s = accept(l, NULL, NULL);
    check("pending-data-intact", s >= 0 && expect_msg(s, "early", 5), "");
    return verdict();
  }
  if (!strcmp(mode, "external")) {
    need_args(argc, 4, "rt_unix <trigger> <workdir> external <path>");
    struct sockaddr_un a;
    socklen_t al = mkaddr(&a, argv[4], 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, al) != 0) die("connect");
    print_ready("pid=%d fd=%d", getpid(), c);
    wait_trigger(argv[1]);
    check("external-send", send(c, "after", 5, MSG_NOSIGNAL) == 5, "send: %s", strerror(errno));
    char buf[16] = {0};
    ssize_t n = recv(c, buf, sizeof buf, 0);
    check("external-reply", n == 5 && !memcmp(buf, "reply", 5), "recv %zd '%s'", n, buf);
    return verdict();
  }

  /* Stream pair: bytes both ways, st[0] shut for writing. */
  int st[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0) die("socketpair stream");
  static char pattern[PATTERN_LEN];
  for (int i = 0; i < PATTERN_LEN; i++) pattern[i] = (char)(i * 7 + 3);
  if (send(st[0], pattern, PATTERN_LEN, 0) != PATTERN_LEN) die("send pattern");
  if (send(st[1], "to zero", 7, 0) != 7) die("send");
  if (shutdown(st[0], SHUT_WR) != 0) die("shutdown");

  /* Datagram and seqpacket pairs. */
  int dg[2], sq[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq))
    die("socketpair");
  if (send(dg[0], "one", 3, 0) != 3 || send(dg[0], "second datagram", 15, 0) != 15 ||
      send(dg[0], "", 0, 0) != 0 || send(dg[0], pattern, 3000, 0) != 3000)
    die("send dgram");
  if (send(sq[1], "seq-a", 5, 0) != 5 || send(sq[1], "seq-bb", 6, 0) != 6) die("send seq");

  /* Options. */
  int sndbuf = 32768, rcvbuf = 65536, one = 1, peekoff = 2;
  struct timeval rcvto = {1, 500000}, sndto = {2, 250000};
  if (setsockopt(dg[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) ||
      setsockopt(dg[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) ||
      setsockopt(dg[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) ||
      setsockopt(dg[1], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) ||
      setsockopt(dg[1], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      setsockopt(dg[1], SOL_SOCKET, SO_RCVTIMEO, &rcvto, sizeof rcvto) ||
      setsockopt(dg[1], SOL_SOCKET, SO_SNDTIMEO, &sndto, sizeof sndto) ||
      setsockopt(sq[0], SOL_SOCKET, SO_PEEK_OFF, &peekoff, sizeof peekoff))
    die("setsockopt");
  fcntl(sq[0], F_SETFL, O_NONBLOCK);
  int want_snd = optint(dg[1], SO_SNDBUF), want_rcv = optint(dg[1], SO_RCVBUF);
  struct timeval want_rto, want_sto; /* as the kernel keeps them (in jiffies) */
  socklen_t tvl = sizeof want_rto;
  getsockopt(dg[1], SOL_SOCKET, SO_RCVTIMEO, &want_rto, &tvl);
  getsockopt(dg[1], SOL_SOCKET, SO_SNDTIMEO, &want_sto, &tvl);

  /* Path listener: one accepted connection, one pending. */
  struct sockaddr_un la, aa, da, sa;
  socklen_t lal = mkaddr(&la, path, 0);
  char abs_name[64];
  snprintf(abs_name, sizeof abs_name, "cryo-rt-unix-%d", getpid());
  socklen_t aal = mkaddr(&aa, abs_name, 1);
  int lst = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(lst, (void *)&la, lal) || chmod(path, 0640) || listen(lst, 7)) die("listener");
  int cli = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(cli, (void *)&la, lal)) die("connect");
  int acc = accept(lst, NULL, NULL);
  if (acc < 0) die("accept");
  if (send(cli, "client->server", 14, 0) != 14 || send(acc, "server->client", 14, 0) != 14)
    die("send conn");
  int pend = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(pend, (void *)&la, lal)) die("connect pending");
  struct stat before;
  if (stat(path, &before)) die("stat");

  /* Abstract listener with a pending connection. */
  int alst = socket(AF_UNIX, SOCK_STREAM, 0), apend = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(alst, (void *)&aa, aal) || listen(alst, 3) || connect(apend, (void *)&aa, aal))
    die("abstract");

  /* Datagram receiver: from a bound sender and from a closed unnamed one; a connected client. */
  socklen_t dal = mkaddr(&da, dpath, 0), sal = mkaddr(&sa, spath, 0);
  int drecv = socket(AF_UNIX, SOCK_DGRAM, 0), dsend = socket(AF_UNIX, SOCK_DGRAM, 0);
  int tmp = socket(AF_UNIX, SOCK_DGRAM, 0), dcli = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bind(drecv, (void *)&da, dal) || bind(dsend, (void *)&sa, sal)) die("bind dgram");
  if (sendto(dsend, "named", 5, 0, (void *)&da, dal) != 5 ||
      sendto(tmp, "anon", 4, 0, (void *)&da, dal) != 4)
    die("sendto");
  close(tmp);
  if (connect(dcli, (void *)&da, dal)) die("connect dgram");

  /* A connection whose listener is closed since (its accepted end keeps the
   * listener's name), and a datagram socket bound to a name relative to the cwd. */
  char opath[256];
  snprintf(opath, sizeof opath, "%s/orphan.sock", argv[2]);
  struct sockaddr_un oa, ra;
  socklen_t oal = mkaddr(&oa, opath, 0), ral = mkaddr(&ra, "rel.sock", 0);
  int olst = socket(AF_UNIX, SOCK_STREAM, 0), ocli = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(olst, (void *)&oa, oal) || listen(olst, 1) || connect(ocli, (void *)&oa, oal)) die("orphan");
  int oacc = accept(olst, NULL, NULL);
  if (oacc < 0) die("accept orphan");
  close(olst);
  if (send(ocli, "orphaned", 8, 0) != 8) die("send orphan");
  /* A listener whose socket file was removed, with a connection waiting. */
  char gpath[256];
  snprintf(gpath, sizeof gpath, "%s/gone.sock", argv[2]);
  struct sockaddr_un ga;
  socklen_t gal = mkaddr(&ga, gpath, 0);
  int glst = socket(AF_UNIX, SOCK_STREAM, 0), gcli = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(glst, (void *)&ga, gal) || listen(glst, 2) || connect(gcli, (void *)&ga, gal) ||
      unlink(gpath))
    die("gone listener");

  if (chdir(argv[2]) != 0) die("chdir");
  int rel = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bind(rel, (void *)&ra, ral) != 0) die("bind relative");

  /* A stream pair whose peer wrote, then closed. */
  int half[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, half)) die("socketpair half");
  if (send(half[1], "last words", 10, 0) != 10) die("send");
  close(half[1]);

  /* Datagrams that carry the sender's credentials (the receiver asked for
   * them when the first was sent) and one that does not. */
  int cr[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, cr)) die("socketpair creds");
  if (setsockopt(cr[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) || send(cr[0], "creds", 5, 0) != 5)
    die("creds");
  int off = 0;
  if (setsockopt(cr[1], SOL_SOCKET, SO_PASSCRED, &off, sizeof off) || send(cr[0], "none", 4, 0) != 4 ||
      setsockopt(cr[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one))
    die("no creds");

  /* A datagram with credentials queued on a receiver that stopped asking for them. */
  int cr2[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, cr2) ||
      setsockopt(cr2[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) || send(cr2[0], "c2", 2, 0) != 2 ||
      setsockopt(cr2[1], SOL_SOCKET, SO_PASSCRED, &off, sizeof off))
    die("creds off");

  /* A stream pair whose peer closed with bytes unread: ECONNRESET pending. */
  int rs[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, rs)) die("socketpair reset");
  if (send(rs[1], "before reset", 12, 0) != 12 || send(rs[0], "unread", 6, 0) != 6) die("send");
  close(rs[1]);

  /* A pair shared with a child. */
  int sh[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sh)) die("socketpair shared");
  if (send(sh[0], "to the child", 12, 0) != 12) die("send");
  pid_t child = fork();
  if (child == 0) {
    /* Its end is its stdin: a socket on 0-2 whose peer is in the tree is re-created. */
    close(sh[0]);
    if (dup2(sh[1], 0) != 0) _exit(2);
    close(sh[1]);
    wait_trigger(argv[1]);
    int ok = expect_msg(0, "to the child", 12) && send(0, "to the parent", 13, 0) == 13;
    _exit(ok ? 0 : 1);
  }
  close(sh[1]);

  print_ready("pid=%d child=%d", getpid(), child);
  wait_trigger(argv[1]);

  static char got[PATTERN_LEN + 16];
  ssize_t n = drain(st[1], got, sizeof got);
  check("stream-bytes", n == PATTERN_LEN && !memcmp(got, pattern, PATTERN_LEN), "read %zd", n);
  check("stream-eof", recv(st[1], got, 1, MSG_DONTWAIT) == 0, "");
  check("stream-shut-wr", send(st[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "%s",
        strerror(errno));
  n = drain(st[0], got, sizeof got);
  check("stream-other-way", n == 7 && !memcmp(got, "to zero", 7), "read %zd", n);
  check("stream-open-way", send(st[1], "more", 4, MSG_NOSIGNAL) == 4 && expect_msg(st[0], "more", 4),
        "");

  check("dgram-1", expect_msg(dg[1], "one", 3), "");
  check("dgram-2", expect_msg(dg[1], "second datagram", 15), "");
  check("dgram-zero-length", recv(dg[1], got, 16, MSG_DONTWAIT) == 0, "%s", strerror(errno));
  check("dgram-3", expect_msg(dg[1], pattern, 3000), "");
  check("dgram-empty", recv(dg[1], got, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "");
  check("dgram-again", send(dg[0], "new", 3, 0) == 3 && expect_msg(dg[1], "new", 3), "");
  char pk[8] = {0};
  check("seq-peek-off", recv(sq[0], pk, 3, MSG_PEEK) == 3 && !memcmp(pk, "q-a", 3), "'%s'", pk);
  int zero = -1;
  setsockopt(sq[0], SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero);
  check("seq-1", expect_msg(sq[0], "seq-a", 5), "");
  check("seq-2", expect_msg(sq[0], "seq-bb", 6), "");
  check("seq-nonblock", (fcntl(sq[0], F_GETFL) & O_NONBLOCK) != 0, "");

  struct timeval tv;
  socklen_t tl = sizeof tv;
  check("opt-sndbuf", optint(dg[1], SO_SNDBUF) == want_snd, "%d != %d", optint(dg[1], SO_SNDBUF),
        want_snd);
  check("opt-rcvbuf", optint(dg[1], SO_RCVBUF) == want_rcv, "%d != %d", optint(dg[1], SO_RCVBUF),
        want_rcv);
  check("opt-passcred", optint(dg[1], SO_PASSCRED) == 1, "");
  check("opt-keepalive", optint(dg[1], SO_KEEPALIVE) == 1, "");
  check("opt-reuseaddr", optint(dg[1], SO_REUSEADDR) == 1, "");
  getsockopt(dg[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
  check("opt-rcvtimeo", tv.tv_sec == want_rto.tv_sec && tv.tv_usec == want_rto.tv_usec, "%ld.%06ld", (long)tv.tv_sec,
        (long)tv.tv_usec);
  getsockopt(dg[1], SOL_SOCKET, SO_SNDTIMEO, &tv, &tl);
  check("opt-sndtimeo", tv.tv_sec == want_sto.tv_sec && tv.tv_usec == want_sto.tv_usec, "%ld.%06ld", (long)tv.tv_sec,
        (long)tv.tv_usec);
  check("opt-default", optint(st[1], SO_PASSCRED) == 0 && optint(st[1], SO_KEEPALIVE) == 0, "");

  check("conn-to-server", expect_msg(acc, "client->server", 14), "");
  check("conn-to-client", expect_msg(cli, "server->client", 14), "");
  struct sockaddr_un got_a;
  socklen_t gl = sizeof got_a;
  check("conn-names", getpeername(cli, (void *)&got_a, &gl) == 0 && gl == lal &&
                          !strcmp(got_a.sun_path, path), "len %u", gl);
  struct stat after;
  check("listener-file", stat(path, &after) == 0 && S_ISSOCK(after.st_mode) &&
                             (after.st_mode & 07777) == 0640 && after.st_uid == before.st_uid,
        "mode %o", after.st_mode);
  check("listener-backlog-pending", optint(lst, SO_ACCEPTCONN) == 1, "");
  int p2 = accept4(lst, NULL, NULL, SOCK_NONBLOCK);
  check("pending-accepted", p2 >= 0, "accept: %s", strerror(errno));
  check("pending-talks", send(pend, "hi", 2, 0) == 2 && expect_msg(p2, "hi", 2), "");
  fcntl(lst, F_SETFL, O_NONBLOCK);
  check("pending-only-one", accept4(lst, NULL, NULL, SOCK_NONBLOCK) < 0 && errno == EAGAIN, "");
  int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
  check("listener-new", connect(c3, (void *)&la, lal) == 0 && accept(lst, NULL, NULL) >= 0, "");
  int ap = accept4(alst, NULL, NULL, SOCK_NONBLOCK);
  gl = sizeof got_a;
  check("abstract-pending", ap >= 0 && getsockname(ap, (void *)&got_a, &gl) == 0 && gl == aal &&
                                !memcmp(got_a.sun_path + 1, abs_name, strlen(abs_name)),
        "len %u", gl);

  char db[16] = {0};
  gl = sizeof got_a;
  n = recvfrom(drecv, db, sizeof db, MSG_DONTWAIT, (void *)&got_a, &gl);
  check("dgram-named-sender", n == 5 && !memcmp(db, "named", 5) && gl == sal &&
                                  !strcmp(got_a.sun_path, spath), "%zd '%s' len %u", n, db, gl);
  gl = sizeof got_a;
  n = recvfrom(drecv, db, sizeof db, MSG_DONTWAIT, (void *)&got_a, &gl);
  check("dgram-anon-sender", n == 4 && !memcmp(db, "anon", 4), "%zd", n);
  check("dgram-client", send(dcli, "via connect", 11, 0) == 11 && expect_msg(drecv, "via connect", 11),
        "");

  gl = sizeof got_a;
  check("orphan-names", getsockname(oacc, (void *)&got_a, &gl) == 0 && gl == oal &&
                            !strcmp(got_a.sun_path, opath), "len %u", gl);
  gl = sizeof got_a;
  check("orphan-peer-name", getpeername(ocli, (void *)&got_a, &gl) == 0 && gl == oal &&
                                !strcmp(got_a.sun_path, opath), "len %u", gl);
  check("orphan-bytes", expect_msg(oacc, "orphaned", 8), "");
  check("orphan-talks", send(oacc, "back", 4, 0) == 4 && expect_msg(ocli, "back", 4), "");
  check("orphan-refused", connect(socket(AF_UNIX, SOCK_STREAM, 0), (void *)&oa, oal) < 0 &&
                              errno == ECONNREFUSED, "%s", strerror(errno));
  gl = sizeof got_a;
  check("relative-name", getsockname(rel, (void *)&got_a, &gl) == 0 && gl == ral &&
                             !strcmp(got_a.sun_path, "rel.sock"), "len %u '%s'", gl, got_a.sun_path);
  check("relative-file", access(argv[2], F_OK) == 0 && faccessat(AT_FDCWD, "rel.sock", F_OK, 0) == 0, "");
  check("relative-send", sendto(dsend, "rel", 3, 0, (void *)&ra, ral) == 3 && expect_msg(rel, "rel", 3),
        "%s", strerror(errno));

  int gacc = accept4(glst, NULL, NULL, SOCK_NONBLOCK);
  check("gone-pending", gacc >= 0 && send(gcli, "g", 1, 0) == 1 && expect_msg(gacc, "g", 1), "%s",
        strerror(errno));
  gl = sizeof got_a;
  check("gone-name", getsockname(glst, (void *)&got_a, &gl) == 0 && gl == gal &&
                         !strcmp(got_a.sun_path, gpath) && access(gpath, F_OK) != 0, "len %u", gl);

  check("half-bytes", expect_msg(half[0], "last words", 10), "");
  check("half-eof", recv(half[0], got, 1, MSG_DONTWAIT) == 0, "");

  pid_t cp1 = recv_cred_pid(cr[1], "creds"), cp2 = recv_cred_pid(cr[1], "none");
  check("creds-kept", cp1 == getpid(), "pid %d", cp1);
  check("no-creds-kept", cp2 == 0, "pid %d", cp2);
  check("creds-option-off", optint(cr2[1], SO_PASSCRED) == 0, "%d", optint(cr2[1], SO_PASSCRED));
  int on2 = 1;
  setsockopt(cr2[1], SOL_SOCKET, SO_PASSCRED, &on2, sizeof on2);
  pid_t cp3 = recv_cred_pid(cr2[1], "c2");
  check("creds-kept-while-off", cp3 == getpid(), "pid %d", cp3);

  check("reset-bytes", expect_msg(rs[0], "before reset", 12), "");
  check("reset-error", recv(rs[0], got, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET, "%s",
        strerror(errno));
  check("reset-eof", recv(rs[0], got, 1, MSG_DONTWAIT) == 0, "");

  int status = -1;
  waitpid(child, &status, 0);
  check("child", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
  check("shared-pair", expect_msg(sh[0], "to the parent", 13), "");
  return verdict();
}
