/* Probes of pseudo-terminal state that could come back silently different
 * after a checkpoint/restore. One mode per case (argv[1]); each sets up a
 * pty pair held by this process (or its child), prints
 * "ready pid=<pid> index=<N>", waits for SIGUSR1 (sent after the restore),
 * checks its own state and prints check lines, then PASS or FAIL.
 *
 * termios   every flag word and c_cc entry set to unusual values, raw mode
 *           with VMIN/VTIME, c_line left N_TTY
 * speeds    BOTHER speeds, input speed != output speed (termios2)
 * winsize   rows, columns and both pixel fields
 * partial   canonical: a child blocked in read() with "hel" typed; after
 *           the restore "lo\n" is typed, the child must read "hello\n"
 * vmin      raw, VMIN=5: a child blocked in read() with 3 bytes typed; after
 *           the restore 2 more, the child must read all 5 in one read
 * column    the slave wrote "ab" (column 2, a prompt); after the restore a
 *           TAB typed is echoed, and ERASE must echo 6 backspaces
 * columntyped the same with the TAB typed and echoed before the dump
 * columnout TAB3: the slave wrote "abc"; after the restore a TAB written
 *           must become 5 spaces
 * lnext     canonical, "a" then ^V typed: the next byte (ERASE) is literal
 * locked    slave opened once, then the master locked (TIOCSPTLCK)
 * exclslave TIOCEXCL set through the slave
 * exclmaster TIOCEXCL set through the master
 * ldisc     the slave's line discipline switched to N_NULL (TIOCSETD)
 * ixoff     output stopped by a ^S typed (IXON)
 * tcioff    tcflow(TCIOFF): a STOP byte waits on the master
 * mstopped  the master's own output stopped (tcflow(master, TCOOFF))
 * hup       the slave opened and closed again: the master reads EIO, polls HUP
 * devtty    session leader on the slave, holding /dev/tty open (and the
 *           slave): writes through /dev/tty reach the master
 * devttyonly the same with the slave's fd closed: /dev/tty holds it open
 * nonblock  master and slave opened O_NONBLOCK
 * hangup    session leader on the slave, vhangup(): its slave fd is hung up
 * hanggone  session leader on the slave (two fds of it, one O_NONBLOCK), the
 *           master closed: both slave fds hung up, the pty gone (a daemon
 *           whose ssh session ended)
 * fgbg      session leader on the slave, a child in its own group is the
 *           foreground group, the leader in the background
 * fggone    session leader on the slave, its foreground group a child's
 *           that exited and was reaped (an empty group)
 * extctty   (stdin is a pty the test holds) the parent makes it its
 *           controlling terminal, the child (this pid's child, dumped
 *           alone) checks that its controlling terminal is still that one
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>

struct termios2_raw {
  unsigned c_iflag, c_oflag, c_cflag, c_lflag;
  unsigned char c_line;
  unsigned char c_cc[19];
  unsigned c_ispeed, c_ospeed;
};
#define TCGETS2_NR 0x802c542aUL
#define TCSETS2_NR 0x402c542bUL
#define BOTHER_BIT 0010000
#define CBAUD_BITS 0010017
#define IBSHIFT_N 16

static int m = -1, s = -1, idx = -1;
static char path[64];

static void open_pair(int mflags, int sflags) {
  m = posix_openpt(O_RDWR | O_NOCTTY | mflags);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) die("posix_openpt");
  if (ptsname_r(m, path, sizeof path) != 0) die("ptsname");
  ioctl(m, TIOCGPTN, &idx);
  if (sflags >= 0) {
    s = open(path, O_RDWR | sflags);
    if (s < 0) die("open slave");
  }
}

static void put(int fd, const char *b, size_t n) {
  if (write(fd, b, n) != (ssize_t)n) die("write");
}

/* Reads what arrives on fd within `ms` (after the first byte, until 100 ms of quiet). */
static ssize_t drain(int fd, char *buf, size_t max, int ms) {
  size_t got = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, got ? 100 : ms) <= 0) break;
    ssize_t n = read(fd, buf + got, max - got);
    if (n <= 0) break;
    got += (size_t)n;
    if (got == max) break;
  }
  return (ssize_t)got;
}

static void wait_go(void) {
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d index=%d", getpid(), idx);
  wait_usr1(&old);
}

static void get2(int fd, struct termios2_raw *t) {
  memset(t, 0, sizeof *t);
  if (ioctl(fd, TCGETS2_NR, t) != 0) die("TCGETS2");
}

static void check_same2(const char *name, int fd, const struct termios2_raw *want) {
  struct termios2_raw now;
  get2(fd, &now);
  check(name, memcmp(&now, want, sizeof now) == 0,
        "iflag %o/%o oflag %o/%o cflag %o/%o lflag %o/%o line %d/%d ispeed %u/%u ospeed %u/%u",
        now.c_iflag, want->c_iflag, now.c_oflag, want->c_oflag, now.c_cflag, want->c_cflag, now.c_lflag,
        want->c_lflag, now.c_line, want->c_line, now.c_ispeed, want->c_ispeed, now.c_ospeed, want->c_ospeed);
  for (int i = 0; i < 19; i++) {
    if (now.c_cc[i] != want->c_cc[i]) printf("  c_cc[%d] %d, was %d\n", i, now.c_cc[i], want->c_cc[i]);
  }
}

static int mode_termios(void) {
  open_pair(0, O_NOCTTY);
  struct termios2_raw t;
  get2(s, &t);
  t.c_iflag = IGNBRK | IGNPAR | PARMRK | INPCK | ISTRIP | IGNCR | IUCLC | IXANY | IMAXBEL | IUTF8;
  t.c_oflag = OPOST | OLCUC | OCRNL | ONOCR | ONLRET | OFILL | OFDEL | NL1 | CR2 | TAB2 | BS1 | VT1 | FF1;
  t.c_cflag = (t.c_cflag & CBAUD_BITS) | CS8 | CSTOPB | CREAD | HUPCL | CLOCAL | CRTSCTS | CMSPAR;
  t.c_lflag = ECHOE | ECHOK | ECHONL | NOFLSH | TOSTOP | ECHOCTL | ECHOPRT | ECHOKE | FLUSHO | PENDIN | XCASE;
  for (int i = 0; i < 19; i++) t.c_cc[i] = (unsigned char)(0x41 + i * 3);
  t.c_cc[VMIN] = 7;
  t.c_cc[VTIME] = 13;
  if (ioctl(s, TCSETS2_NR, &t) != 0) die("TCSETS2");
  struct termios2_raw want;
  get2(s, &want);
  wait_go();
  check_same2("termios", s, &want);
  check_same2("termios-via-master", m, &want);
  return verdict();
}

static int mode_speeds(void) {
  open_pair(0, O_NOCTTY);
  struct termios2_raw t;
  get2(s, &t);
  t.c_cflag &= ~(unsigned)(CBAUD_BITS | (CBAUD_BITS << IBSHIFT_N));
  t.c_cflag |= BOTHER_BIT | (BOTHER_BIT << IBSHIFT_N);
  t.c_ispeed = 12345;
  t.c_ospeed = 54321;
  if (ioctl(s, TCSETS2_NR, &t) != 0) die("TCSETS2");
  struct termios2_raw want;
  get2(s, &want);
  /* And the classic API: cfgetispeed != cfgetospeed. */
  wait_go();
  check_same2("speeds", s, &want);
  struct termios2_raw now;
  get2(s, &now);
  check("ispeed", now.c_ispeed == 12345, "%u", now.c_ispeed);
  check("ospeed", now.c_ospeed == 54321, "%u", now.c_ospeed);
  return verdict();
}

static int mode_winsize(void) {
  open_pair(0, O_NOCTTY);
  struct winsize w = {.ws_row = 61, .ws_col = 203, .ws_xpixel = 1623, .ws_ypixel = 977};
  if (ioctl(s, TIOCSWINSZ, &w) != 0) die("TIOCSWINSZ");
  wait_go();
  struct winsize now;
  ioctl(s, TIOCGWINSZ, &now);
  check("winsize", memcmp(&now, &w, sizeof w) == 0, "%d %d %d %d", now.ws_row, now.ws_col, now.ws_xpixel,
        now.ws_ypixel);
  return verdict();
}

/* A child reading one read() of at most `max` bytes from the slave; it
 * writes what it read into `res`. Returns its pid. */
static pid_t reader(int res, size_t max) {
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) {
    char buf[256];
    ssize_t n;
    while ((n = read(s, buf, max)) < 0 && errno == EINTR) {
    }
    if (n < 0) n = 0;
    if (write(res, buf, (size_t)n) < 0) _exit(3);
    _exit(0);
  }
  return c;
}

/* Whether the child `c` is blocked (state S) in read. */
static void wait_blocked(pid_t c) {
  char f[64], stat[512];
  snprintf(f, sizeof f, "/proc/%d/wchan", c);
  for (int i = 0; i < 2000; i++) {
    FILE *fp = fopen(f, "r");
    if (fp) {
      size_t n = fread(stat, 1, sizeof stat - 1, fp);
      fclose(fp);
      stat[n] = 0;
      if (strstr(stat, "wait_woken") || strstr(stat, "n_tty_read")) return;
    }
    sleep_ms(2);
  }
}

static int child_read_case(const char *before, size_t nb, const char *after, size_t na, const char *want,
                           size_t nw, int raw) {
  open_pair(0, O_NOCTTY);
  struct termios t;
  tcgetattr(s, &t);
  t.c_lflag &= ~(tcflag_t)ECHO;
  if (raw) {
    t.c_lflag &= ~(tcflag_t)(ICANON | ISIG | IEXTEN);
    t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
    t.c_cc[VMIN] = 5;
    t.c_cc[VTIME] = 0;
  }
  if (tcsetattr(s, TCSANOW, &t) != 0) die("tcsetattr");
  int res[2];
  if (pipe(res) != 0) die("pipe");
  pid_t c = reader(res[1], sizeof(char[256]));
  close(res[1]);
  put(m, before, nb);
  wait_blocked(c);
  sleep_ms(20);
  wait_go();
  put(m, after, na);
  char buf[256];
  ssize_t n = drain(res[0], buf, sizeof buf, 5000);
  check("read", n == (ssize_t)nw && memcmp(buf, want, nw) == 0, "read %zd bytes: %.*s", n, (int)(n > 0 ? n : 0),
        buf);
  int st;
  waitpid(c, &st, 0);
  return verdict();
}

/* `typed_before`: the TAB is typed (and echoed) before the dump, else after the restore. */
static int mode_column(int typed_before) {
  open_pair(0, O_NOCTTY);
  struct termios t;
  tcgetattr(s, &t);
  t.c_lflag |= ICANON | ECHO | ECHOE;
  t.c_oflag |= OPOST;
  if (tcsetattr(s, TCSANOW, &t) != 0) die("tcsetattr");
  put(s, "ab", 2); /* a prompt: column 2 */
  char buf[256];
  drain(m, buf, sizeof buf, 1000);
  if (typed_before) {
    put(m, "\t", 1); /* echoed as a TAB: the line's echo starts at column 2 */
    drain(m, buf, sizeof buf, 1000);
  }
  wait_go();
  if (!typed_before) {
    put(m, "\t", 1);
    ssize_t n = drain(m, buf, sizeof buf, 2000);
    check("tab-echo", n == 1 && buf[0] == '\t', "%zd bytes echoed", n);
  }
  put(m, "\x7f", 1); /* ERASE of the TAB: back to column 2 */
  ssize_t n = drain(m, buf, sizeof buf, 2000);
  check("erase-tab-echo", n == 6 && memcmp(buf, "\b\b\b\b\b\b", 6) == 0, "%zd bytes echoed", n);
  return verdict();
}

static int mode_column_out(void) {
  open_pair(0, O_NOCTTY);
  struct termios t;
  tcgetattr(s, &t);
  t.c_oflag = (t.c_oflag & ~(tcflag_t)TABDLY) | TAB3 | OPOST;
  if (tcsetattr(s, TCSANOW, &t) != 0) die("tcsetattr");
  put(s, "abc", 3); /* column 3, read by the master */
  char buf[256];
  drain(m, buf, sizeof buf, 1000);
  wait_go();
  put(s, "\t", 1);
  ssize_t n = drain(m, buf, sizeof buf, 1000);
  check("tab3-column", n == 5 && memcmp(buf, "     ", 5) == 0, "%zd spaces, wanted 5", n);
  return verdict();
}

static int mode_lnext(void) {
  open_pair(0, O_NOCTTY);
  struct termios t;
  tcgetattr(s, &t);
  t.c_lflag |= ICANON | IEXTEN;
  t.c_lflag &= ~(tcflag_t)ECHO;
  if (tcsetattr(s, TCSANOW, &t) != 0) die("tcsetattr");
  put(m, "a\x16", 2);
  sleep_ms(50);
  wait_go();
  put(m, "\x7f\n", 2);
  char buf[64];
  struct pollfd p = {.fd = s, .events = POLLIN};
  ssize_t n = poll(&p, 1, 3000) > 0 ? read(s, buf, sizeof buf) : -2;
  check("literal-next", n == 3 && memcmp(buf, "a\x7f\n", 3) == 0, "read %zd: %.*s", n, (int)(n > 0 ? n : 0), buf);
  return verdict();
}

static int mode_locked(void) {
  open_pair(0, O_NOCTTY);
  int one = 1;
  if (ioctl(m, TIOCSPTLCK, &one) != 0) die("lock");
  wait_go();
  int l = -1;
  ioctl(m, TIOCGPTLCK, &l);
  check("locked", l == 1, "%d", l);
  int fd = open(path, O_RDWR | O_NOCTTY);
  check("open-refused", fd < 0 && errno == EIO, "open %d: %s", fd, strerror(errno));
  return verdict();
}

static int mode_excl(int through_slave) {
  open_pair(0, O_NOCTTY);
  if (ioctl(through_slave ? s : m, TIOCEXCL) != 0) die("TIOCEXCL");
  int before_s = -1, before_m = -1;
  ioctl(s, TIOCGEXCL, &before_s);
  ioctl(m, TIOCGEXCL, &before_m);
  wait_go();
  int now_s = -1, now_m = -1;
  ioctl(s, TIOCGEXCL, &now_s);
  ioctl(m, TIOCGEXCL, &now_m);
  check("excl-slave", now_s == before_s, "%d, was %d", now_s, before_s);
  check("excl-master", now_m == before_m, "%d, was %d", now_m, before_m);
  return verdict();
}

static int mode_ldisc(void) {
  open_pair(0, O_NOCTTY);
  int d = 27; /* N_NULL */
  if (ioctl(s, TIOCSETD, &d) != 0) die("TIOCSETD");
  wait_go();
  int now = -1;
  ioctl(s, TIOCGETD, &now);
  check("ldisc", now == 27, "%d", now);
  return verdict();
}

static int mode_ixoff(void) {
  open_pair(0, O_NOCTTY);
  struct termios t;
  tcgetattr(s, &t);
  t.c_iflag |= IXON;
  tcsetattr(s, TCSANOW, &t);
  put(m, "\x13", 1);
  sleep_ms(50);
  wait_go();
  struct pollfd p = {.fd = s, .events = POLLOUT};
  poll(&p, 1, 0);
  check("stopped", !(p.revents & POLLOUT), "revents %x", p.revents);
  return verdict();
}

/* The master's own output stopped (tcflow on the master): writes to it wait. */
static int mode_mstopped(void) {
  open_pair(O_NONBLOCK, O_NOCTTY);
  if (tcflow(m, TCOOFF) != 0) die("tcflow master");
  wait_go();
  struct pollfd p = {.fd = m, .events = POLLOUT};
  poll(&p, 1, 0);
  check("master-stopped", !(p.revents & POLLOUT), "revents %x", p.revents);
  ssize_t n = write(m, "x", 1);
  check("master-write-waits", n < 0 && errno == EAGAIN, "write %zd: %s", n, strerror(errno));
  if (tcflow(m, TCOON) != 0) die("tcflow master on");
  n = write(m, "y\n", 2);
  char buf[8];
  ssize_t r = drain(s, buf, sizeof buf, 2000);
  check("master-restarted", n == 2 && r == 2 && memcmp(buf, "y\n", 2) == 0, "write %zd, read %zd", n, r);
  return verdict();
}

static int mode_tcioff(void) {
  open_pair(0, O_NOCTTY);
  if (tcflow(s, TCIOFF) != 0) die("tcflow");
  wait_go();
  char buf[16];
  ssize_t n = drain(m, buf, sizeof buf, 1000);
  check("stop-byte", n == 1 && buf[0] == 0x13, "read %zd", n);
  return verdict();
}

static int mode_hup(void) {
  open_pair(0, O_NOCTTY);
  close(s);
  s = -1;
  wait_go();
  struct pollfd p = {.fd = m, .events = POLLIN};
  int r = poll(&p, 1, 0);
  check("master-hup", r == 1 && (p.revents & POLLHUP), "poll %d revents %x", r, p.revents);
  char b[4];
  int fl = fcntl(m, F_GETFL);
  fcntl(m, F_SETFL, fl | O_NONBLOCK);
  ssize_t n = read(m, b, sizeof b);
  check("master-eio", n < 0 && errno == EIO, "read %zd: %s", n, strerror(errno));
  return verdict();
}

/* `only`: the slave's own fd closed, /dev/tty its only holder. */
static int mode_devtty(int only) {
  if (setsid() < 0) die("setsid");
  open_pair(0, 0); /* without O_NOCTTY: the controlling terminal */
  int tty = open("/dev/tty", O_RDWR);
  if (tty < 0) die("/dev/tty");
  if (only) close(s);
  struct termios t;
  tcgetattr(tty, &t);
  t.c_oflag &= ~(tcflag_t)OPOST;
  tcsetattr(tty, TCSANOW, &t);
  wait_go();
  put(tty, "via-tty", 7);
  char buf[64];
  ssize_t n = drain(m, buf, sizeof buf, 2000);
  check("devtty-output", n == 7 && memcmp(buf, "via-tty", 7) == 0, "master read %zd", n);
  check("devtty-sid", tcgetsid(tty) == getpid(), "tcgetsid %d", tcgetsid(tty));
  return verdict();
}

static int mode_nonblock(void) {
  open_pair(O_NONBLOCK, O_NOCTTY | O_NONBLOCK);
  wait_go();
  check("master-nonblock", fcntl(m, F_GETFL) & O_NONBLOCK, "%o", fcntl(m, F_GETFL));
  check("slave-nonblock", fcntl(s, F_GETFL) & O_NONBLOCK, "%o", fcntl(s, F_GETFL));
  char b[4];
  ssize_t n = read(s, b, sizeof b);
  check("slave-eagain", n < 0 && errno == EAGAIN, "read %zd: %s", n, strerror(errno));
  return verdict();
}

static int mode_hangup(void) {
  if (setsid() < 0) die("setsid");
  signal(SIGHUP, SIG_IGN);
  signal(SIGCONT, SIG_IGN);
  open_pair(0, 0);
  if (vhangup() != 0) die("vhangup");
  struct termios t;
  int before = tcgetattr(s, &t) == 0 ? 0 : errno;
  wait_go();
  int now = tcgetattr(s, &t) == 0 ? 0 : errno;
  check("slave-hung-up", now == before && before == EIO, "tcgetattr errno %d, was %d", now, before);
  char b[4];
  ssize_t n = read(s, b, sizeof b);
  check("read-eof", n == 0, "read %zd: %s", n, strerror(errno));
  return verdict();
}

/* Whether fd's /proc/self/fd link names a pty slave whose node is gone. */
static int gone_pts(int fd) {
  char link[64], target[128];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return !strncmp(target, "/dev/pts/", 9) && strstr(target, " (deleted)") != NULL;
}

static int mode_hanggone(void) {
  if (setsid() < 0) die("setsid");
  signal(SIGHUP, SIG_IGN);
  signal(SIGCONT, SIG_IGN);
  open_pair(0, 0);
  int s2 = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  if (s2 < 0 || ioctl(s, TIOCSCTTY, 0) != 0) die("slave");
  close(m);
  struct termios t;
  if (tcgetattr(s, &t) == 0 || errno != EIO || !gone_pts(s)) die("not hung up");
  int fl = fcntl(s, F_GETFL), fl2 = fcntl(s2, F_GETFL);
  wait_go();
  int e1 = tcgetattr(s, &t) == 0 ? 0 : errno, e2 = tcgetattr(s2, &t) == 0 ? 0 : errno;
  check("hung-up-both", e1 == EIO && e2 == EIO, "tcgetattr errno %d %d", e1, e2);
  char b[4];
  ssize_t n = read(s, b, sizeof b), n2 = read(s2, b, sizeof b);
  check("hung-up-read-eof", n == 0 && n2 == 0, "read %zd %zd", n, n2);
  errno = 0;
  n = write(s, "x", 1);
  check("hung-up-write-eio", n < 0 && errno == EIO, "write %zd errno %d", n, errno);
  check("hung-up-flags", fcntl(s, F_GETFL) == fl && fcntl(s2, F_GETFL) == fl2, "fl %o %o, was %o %o",
        fcntl(s, F_GETFL), fcntl(s2, F_GETFL), fl, fl2);
  check("hung-up-gone", gone_pts(s) && gone_pts(s2), "not a removed /dev/pts node");
  int dt = open("/dev/tty", O_RDWR);
  check("hung-up-no-ctty", dt < 0, "/dev/tty opened");
  return verdict();
}

static int mode_fgbg(void) {
  if (setsid() < 0) die("setsid");
  open_pair(0, 0);
  signal(SIGTTOU, SIG_IGN);
  pid_t c = fork();
  if (c == 0) {
    setpgid(0, 0);
    for (;;) pause();
  }
  setpgid(c, c);
  if (tcsetpgrp(s, c) != 0) die("tcsetpgrp");
  wait_go();
  check("sid", tcgetsid(s) == getpid(), "%d", tcgetsid(s));
  check("fg", tcgetpgrp(s) == c, "%d, wanted %d", tcgetpgrp(s), c);
  kill(c, SIGKILL);
  waitpid(c, NULL, 0);
  return verdict();
}

/* Session leader on the slave whose foreground group is a child's, the child gone (reaped). */
static int mode_fggone(void) {
  if (setsid() < 0) die("setsid");
  open_pair(0, 0);
  signal(SIGTTOU, SIG_IGN);
  pid_t c = fork();
  if (c == 0) {
    setpgid(0, 0);
    _exit(0);
  }
  setpgid(c, c);
  if (tcsetpgrp(s, c) != 0) die("tcsetpgrp");
  waitpid(c, NULL, 0);
  pid_t fg = tcgetpgrp(s);
  wait_go();
  check("fg", tcgetpgrp(s) == fg, "%d, was %d", tcgetpgrp(s), fg);
  return verdict();
}

/* Parent: session leader on its stdin (a pty of the test); the child is dumped alone. */
static int mode_extctty(int keep_fd) {
  if (setsid() < 0) die("setsid");
  if (ioctl(0, TIOCSCTTY, 0) != 0) die("TIOCSCTTY");
  pid_t c = fork();
  if (c == 0) {
    char before[64];
    snprintf(before, sizeof before, "%s", ttyname(0) ? ttyname(0) : "?");
    if (!keep_fd) {
      int null = open("/dev/null", O_RDONLY);
      if (null < 0 || dup2(null, 0) != 0) die("/dev/null");
      close(null);
    }
    pid_t sid = getsid(0);
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    int had = tty >= 0;
    if (tty >= 0) close(tty);
    sigset_t old;
    arm_usr1(&old);
    print_ready("pid=%d ctty=%s", getpid(), before);
    wait_usr1(&old);
    tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    check("has-ctty", had && tty >= 0, "open /dev/tty: %s", strerror(errno));
    char now[64] = "";
    if (tty >= 0 && ttyname_r(tty, now, sizeof now) != 0) now[0] = 0;
    check("same-ctty", strcmp(now, before) == 0, "%s, was %s", now, before);
    check("same-sid", getsid(0) == sid, "%d, was %d", getsid(0), sid);
    exit(verdict());
  }
  int st;
  while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_ttyprobe <mode>");
  const char *mo = argv[1];
  if (!strcmp(mo, "termios")) return mode_termios();
  if (!strcmp(mo, "speeds")) return mode_speeds();
  if (!strcmp(mo, "winsize")) return mode_winsize();
  if (!strcmp(mo, "partial")) return child_read_case("hel", 3, "lo\n", 3, "hello\n", 6, 0);
  if (!strcmp(mo, "vmin")) return child_read_case("abc", 3, "de", 2, "abcde", 5, 1);
  if (!strcmp(mo, "column")) return mode_column(0);
  if (!strcmp(mo, "columntyped")) return mode_column(1);
  if (!strcmp(mo, "columnout")) return mode_column_out();
  if (!strcmp(mo, "lnext")) return mode_lnext();
  if (!strcmp(mo, "locked")) return mode_locked();
  if (!strcmp(mo, "exclslave")) return mode_excl(1);
  if (!strcmp(mo, "exclmaster")) return mode_excl(0);
  if (!strcmp(mo, "ldisc")) return mode_ldisc();
  if (!strcmp(mo, "ixoff")) return mode_ixoff();
  if (!strcmp(mo, "tcioff")) return mode_tcioff();
  if (!strcmp(mo, "mstopped")) return mode_mstopped();
  if (!strcmp(mo, "hup")) return mode_hup();
  if (!strcmp(mo, "devtty")) return mode_devtty(0);
  if (!strcmp(mo, "devttyonly")) return mode_devtty(1);
  if (!strcmp(mo, "nonblock")) return mode_nonblock();
  if (!strcmp(mo, "hangup")) return mode_hangup();
  if (!strcmp(mo, "hanggone")) return mode_hanggone();
  if (!strcmp(mo, "fgbg")) return mode_fgbg();
  if (!strcmp(mo, "fggone")) return mode_fggone();
  if (!strcmp(mo, "extctty")) return mode_extctty(1);
  if (!strcmp(mo, "extcttynofd")) return mode_extctty(0);
  fprintf(stderr, "unknown mode %s\n", mo);
  return 2;
}
