/* Bytes waiting in pseudo-terminals held inside the tree.
 *
 * "queues": three pty pairs, both ends held here.
 *  - A, non-canonical with ICRNL|INLCR and OPOST|ONLCR: input written to
 *    the master (CR and NL swapped by the input processing, a ^C that is
 *    not a signal, a NUL, 0xff) and output written to the slave (NL became
 *    CR NL, then 6000 bytes: more than the master's line discipline holds);
 *    processing them a second time would show.
 *  - B, canonical (ISIG, IEXTEN, VEOL ';', no echo), master in packet mode:
 *    complete lines — ended by NL (typed as CR), holding a literal ^C,
 *    ended by EOF, an empty EOF line, ended by EOL — then a partial line
 *    holding a literal NL; and output.
 *  - C, default termios (canonical, echo on): a typed line, and its echo
 *    waiting on the master.
 * After SIGUSR1 it reads both sides of both and checks the exact bytes,
 * that the canonical reads split as before, that ERASE still edits the
 * partial line, and that termios and packet mode are
 * unchanged.
 *
 * "pktstatus": one pair whose master is in packet mode with a status byte
 * (FLUSHREAD) not read yet; after SIGUSR1 it checks the byte is still there.
 * "stopped": one pair whose output is stopped (tcflow TCOOFF); after
 * SIGUSR1 it restarts it and checks the output path.
 * "unopened": a master whose slave was never opened, with input written to
 * it; after SIGUSR1 it checks that the master shows no hang-up and that
 * the input is there.
 *
 * "ready pid=<pid>", then SIGUSR1; the report: check lines, PASS or FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>

static int open_pair(int *slave) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) die("posix_openpt");
  char path[64];
  if (ptsname_r(m, path, sizeof path) != 0) die("ptsname");
  *slave = open(path, O_RDWR | O_NOCTTY);
  if (*slave < 0) die("open slave");
  return m;
}

static void put(int fd, const char *b, size_t n) {
  if (write(fd, b, n) != (ssize_t)n) die("write");
}

/* Waits until FIONREAD of fd reaches n. */
static void settle(int fd, int n) {
  for (int i = 0; i < 10000; i++) {
    int c = 0;
    ioctl(fd, FIONREAD, &c);
    if (c >= n) return;
    sleep_ms(1);
  }
  die_err("settle", ETIMEDOUT);
}

/* One read of fd, after waiting up to 5 s for something to read; -2 on timeout. */
static ssize_t read_one(int fd, char *buf, size_t max) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, 5000) <= 0) return -2;
  return read(fd, buf, max);
}

/* Reads until `want` bytes came (or a read fails or times out). */
static size_t read_n(int fd, char *buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    ssize_t n = read_one(fd, buf + got, want - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  return got;
}

static int idle(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) == 0;
}

static int same_termios(const struct termios *a, const struct termios *b) {
  return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
         a->c_lflag == b->c_lflag && memcmp(a->c_cc, b->c_cc, sizeof a->c_cc) == 0;
}

/* Checks that one canonical read of fd returns exactly `want` (`len` bytes). */
static void check_read(const char *name, int fd, const char *want, size_t len) {
  char buf[4096];
  ssize_t n = read_one(fd, buf, sizeof buf);
  check(name, n == (ssize_t)len && memcmp(buf, want, len) == 0, "read %zd bytes, wanted %zu", n, len);
}

/* Output beyond what the master's line discipline holds (the rest waits before it). */
#define BIG 6000
static char big[BIG];

static int queues(void) {
  int as, bs, cs;
  int am = open_pair(&as), bm = open_pair(&bs), cm = open_pair(&cs);
  for (int i = 0; i < BIG; i++) big[i] = (char)('A' + i % 26);
  struct termios ta, tb;
  tcgetattr(as, &ta);
  ta.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
  ta.c_iflag |= ICRNL | INLCR;
  ta.c_iflag &= ~(tcflag_t)IXON;
  ta.c_oflag |= OPOST | ONLCR;
  ta.c_cc[VMIN] = 1;
  ta.c_cc[VTIME] = 0;
  if (tcsetattr(as, TCSANOW, &ta) != 0) die("tcsetattr A");
  tcgetattr(bs, &tb);
  tb.c_lflag |= ICANON | ISIG | IEXTEN;
  tb.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
  tb.c_iflag |= ICRNL;
  tb.c_oflag |= OPOST | ONLCR;
  tb.c_cc[VEOL] = ';';
  if (tcsetattr(bs, TCSANOW, &tb) != 0) die("tcsetattr B");
  int one = 1;
  if (ioctl(bm, TIOCPKT, &one) != 0) die("TIOCPKT");
  tcgetattr(as, &ta);
  tcgetattr(bs, &tb);

  /* A: input (CR and NL swapped on the way in) and output (NL -> CR NL). */
  put(am, "ab\rc\n\x03\0\xff", 8);
  settle(as, 8);
  put(as, "x\ny\n", 4);
  put(as, big, BIG);
  settle(am, 4095);
  /* B: five complete lines, then a partial line; output. */
  put(bm, "line one\r", 9);
  put(bm, "two\x16\x03x\n", 7);
  put(bm, "eof-ended\x04", 10);
  put(bm, "\x04", 1);
  put(bm, "custom;", 7);
  settle(bs, 9 + 6 + 9 + 7);
  /* The partial line is typed with TIOCSTI: processed at once, where FIONREAD cannot see it. */
  for (const char *c = "pa\x16\nrt"; *c; c++) {
    if (ioctl(bs, TIOCSTI, c) != 0) die("TIOCSTI");
  }
  put(bs, "out\n", 4);
  settle(bm, 5);
  /* C: default termios, echo on: a line typed, its echo waiting on the master. */
  struct termios tc;
  tcgetattr(cs, &tc);
  put(cm, "hi\r", 3);
  settle(cs, 3);
  settle(cm, 4);

  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);

  struct termios now;
  tcgetattr(as, &now);
  check("termios-a", same_termios(&now, &ta), "lflag %o iflag %o", now.c_lflag, now.c_iflag);
  tcgetattr(bs, &now);
  check("termios-b", same_termios(&now, &tb), "lflag %o iflag %o", now.c_lflag, now.c_iflag);
  int pkt = 0;
  ioctl(bm, TIOCGPKT, &pkt);
  check("packet-b", pkt == 1, "%d", pkt);

  char buf[4096];
  size_t n = read_n(as, buf, 8);
  check("a-input", n == 8 && memcmp(buf, "ab\nc\r\x03\0\xff", 8) == 0, "%zu bytes: %.*s", n, (int)n, buf);
  check("a-input-end", idle(as), "more input");
  static char out[BIG + 6];
  n = read_n(am, out, sizeof out);
  check("a-output", n == sizeof out && memcmp(out, "x\r\ny\r\n", 6) == 0 && memcmp(out + 6, big, BIG) == 0,
        "%zu bytes: %.6s", n, out);
  check("a-output-end", idle(am), "more output");

  check_read("b-line-nl", bs, "line one\n", 9);
  check_read("b-line-literal", bs, "two\x03x\n", 6);
  check_read("b-line-eof", bs, "eof-ended", 9);
  check_read("b-line-empty-eof", bs, "", 0);
  check_read("b-line-eol", bs, "custom;", 7);
  check("b-partial-pending", idle(bs), "the partial line reads as complete");
  /* ERASE takes the partial line's last byte. */
  put(bm, "\x7fX\n", 3);
  check_read("b-partial", bs, "pa\nrX\n", 6);
  n = read_n(bm, buf, 6);
  check("b-output", n == 6 && memcmp(buf, "\0out\r\n", 6) == 0, "%zu bytes: %.*s", n, (int)n, buf);
  check("b-output-end", idle(bm), "more output");

  tcgetattr(cs, &now);
  check("termios-c", same_termios(&now, &tc), "lflag %o iflag %o", now.c_lflag, now.c_iflag);
  check_read("c-line", cs, "hi\n", 3);
  check("c-input-end", idle(cs), "more input");
  n = read_n(cm, buf, 4);
  check("c-echo", n == 4 && memcmp(buf, "hi\r\n", 4) == 0, "%zu bytes: %.*s", n, (int)n, buf);
  check("c-echo-end", idle(cm), "more output");
  return verdict();
}

static int pktstatus(void) {
  int s;
  int m = open_pair(&s);
  int one = 1;
  if (ioctl(m, TIOCPKT, &one) != 0) die("TIOCPKT");
  if (tcflush(s, TCIFLUSH) != 0) die("tcflush");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  char buf[16];
  ssize_t n = read_one(m, buf, sizeof buf);
  check("status-byte", n == 1 && buf[0] == TIOCPKT_FLUSHREAD, "read %zd, first %d", n, n > 0 ? buf[0] : -1);
  return verdict();
}

static int stopped(void) {
  int s;
  int m = open_pair(&s);
  if (tcflow(s, TCOOFF) != 0) die("tcflow");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  check("master-empty", idle(m), "bytes in the master's queue");
  if (tcflow(s, TCOON) != 0) die("tcflow on");
  put(s, "z\n", 2);
  char buf[16];
  size_t n = read_n(m, buf, 3);
  check("output-after", n == 3 && memcmp(buf, "z\r\n", 3) == 0, "%zu bytes", n);
  return verdict();
}

static int unopened(void) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) die("posix_openpt");
  put(m, "abc\n", 4);
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  struct pollfd p = {.fd = m, .events = POLLIN};
  int r = poll(&p, 1, 0);
  check("no-hangup", r >= 0 && !(p.revents & POLLHUP), "poll %d revents %x", r, p.revents);
  char path[64];
  if (ptsname_r(m, path, sizeof path) != 0) die("ptsname");
  int s = open(path, O_RDWR | O_NOCTTY);
  if (s < 0) die("open slave");
  check_read("input-kept", s, "abc\n", 4);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_ptyq queues|pktstatus|stopped|unopened");
  if (strcmp(argv[1], "queues") == 0) return queues();
  if (strcmp(argv[1], "stopped") == 0) return stopped();
  if (strcmp(argv[1], "unopened") == 0) return unopened();
  return pktstatus();
}
