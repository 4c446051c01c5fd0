/* A pseudo-terminal held inside the tree, as tmux or `script` holds one:
 * the parent keeps the master (in packet mode, with its own termios and
 * window size); a child is a session leader whose controlling terminal is
 * the slave; a grandchild is in its own process group, the terminal's
 * foreground group. "ready pid=<pid> index=<N>", then SIGUSR1 (after the
 * restore) makes the parent check the master's state and ask the child,
 * through the terminal, to check its side; the child answers through it.
 * The report: check lines, then PASS or FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <termios.h>

static int master_fd;
static struct termios before_termios;
static struct winsize before_ws = {.ws_row = 37, .ws_col = 111, .ws_xpixel = 5, .ws_ypixel = 7};

/* The grandchild, foreground group of the terminal: answers "go" with its checks. */
static void grandchild(int s, pid_t leader, pid_t *member) {
  char buf[16];
  ssize_t n = read(s, buf, sizeof buf); /* blocks across the checkpoint */
  char why[200] = "";
  int bad = 0;
  pid_t me = getpid();
  if (n < 2 || memcmp(buf, "go", 2) != 0) bad = 1, snprintf(why, sizeof why, "read %zd: %s", n, strerror(errno));
  if (!bad && getsid(0) != leader) bad = 1, snprintf(why, sizeof why, "sid %d", getsid(0));
  if (!bad && tcgetsid(s) != leader) bad = 1, snprintf(why, sizeof why, "tcgetsid %d", tcgetsid(s));
  if (!bad && getpgid(0) != me) bad = 1, snprintf(why, sizeof why, "pgid %d", getpgid(0));
  if (!bad && tcgetpgrp(s) != me) bad = 1, snprintf(why, sizeof why, "fg %d != %d", tcgetpgrp(s), me);
  if (!bad && getpgid(*member) != me) bad = 1, snprintf(why, sizeof why, "member pgid %d", getpgid(*member));
  if (!bad && open("/dev/tty", O_RDWR) < 0) bad = 1, snprintf(why, sizeof why, "/dev/tty: %s", strerror(errno));
  char out[256];
  snprintf(out, sizeof out, "child %s %s\n", bad ? "FAIL" : "ok", why);
  if (write(s, out, strlen(out)) < 0) _exit(3);
  _exit(bad);
}

/* The child: session leader on the slave, with the grandchild in the foreground. */
static void child(const char *slave_path, int notify) {
  setsid();
  int s = open(slave_path, O_RDWR);
  if (s < 0) die("open slave");
  if (ioctl(s, TIOCSCTTY, 0) != 0) die("TIOCSCTTY");
  pid_t leader = getpid();
  /* The grandchild learns the other member's pid through this pipe. */
  int tell[2];
  if (pipe(tell) != 0) die("pipe");
  pid_t g = fork();
  if (g == 0) {
    setpgid(0, 0);
    close(tell[1]);
    pid_t member = 0;
    if (read(tell[0], &member, sizeof member) != sizeof member) _exit(5);
    close(tell[0]);
    while (tcgetpgrp(s) != getpid()) sleep_ms(1);
    grandchild(s, leader, &member);
  }
  setpgid(g, g);
  /* A second member of the grandchild's group, as in a shell pipeline. */
  pid_t h = fork();
  if (h == 0) {
    setpgid(0, g);
    for (;;) pause();
  }
  setpgid(h, g);
  close(tell[0]);
  if (write(tell[1], &h, sizeof h) != sizeof h) _exit(3);
  close(tell[1]);
  if (tcsetpgrp(s, g) != 0) die("tcsetpgrp");
  if (write(notify, &g, sizeof g) != sizeof g) _exit(3);
  close(notify);
  int st = 0;
  while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
  }
  kill(h, SIGKILL);
  waitpid(h, NULL, 0);
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 4);
}

int main(void) {
  master_fd = posix_openpt(O_RDWR | O_NOCTTY);
  if (master_fd < 0 || grantpt(master_fd) != 0 || unlockpt(master_fd) != 0) die("posix_openpt");
  char slave_path[64];
  if (ptsname_r(master_fd, slave_path, sizeof slave_path) != 0) die("ptsname");
  int index = -1;
  ioctl(master_fd, TIOCGPTN, &index);
  /* The slave belongs to a user, as a login program leaves it. */
  if (chown(slave_path, 1234, 5) != 0 || chmod(slave_path, 0620) != 0) die("chown slave");
  /* Non-default terminal settings: no echo, a different interrupt char, a window size. */
  struct termios t;
  if (tcgetattr(master_fd, &t) != 0) die("tcgetattr");
  t.c_lflag &= ~(ECHO | ECHOE | ECHOK);
  t.c_cc[VINTR] = 1;
  t.c_oflag &= ~ONLCR;
  if (tcsetattr(master_fd, TCSANOW, &t) != 0) die("tcsetattr");
  if (ioctl(master_fd, TIOCSWINSZ, &before_ws) != 0) die("TIOCSWINSZ");
  int one = 1;
  if (ioctl(master_fd, TIOCPKT, &one) != 0) die("TIOCPKT");
  tcgetattr(master_fd, &before_termios);

  int notify[2];
  if (pipe(notify) != 0) die("pipe");
  pid_t c = fork();
  if (c == 0) {
    close(notify[0]);
    child(slave_path, notify[1]);
  }
  close(notify[1]);
  pid_t g = 0;
  if (read(notify[0], &g, sizeof g) != sizeof g) die("child setup");
  close(notify[0]);
  sleep_ms(50); /* the child is reading */
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d index=%d child=%d grandchild=%d", getpid(), index, c, g);
  wait_usr1(&old);

  int after = -1;
  check("pty-index", ioctl(master_fd, TIOCGPTN, &after) == 0 && after == index, "index %d, was %d", after, index);
  char path_after[64] = "";
  ptsname_r(master_fd, path_after, sizeof path_after);
  check("pty-path", strcmp(path_after, slave_path) == 0, "%s, was %s", path_after, slave_path);
  struct termios now;
  tcgetattr(master_fd, &now);
  check("termios", now.c_iflag == before_termios.c_iflag && now.c_oflag == before_termios.c_oflag &&
                       now.c_cflag == before_termios.c_cflag && now.c_lflag == before_termios.c_lflag &&
                       memcmp(now.c_cc, before_termios.c_cc, sizeof now.c_cc) == 0,
        "lflag %o was %o", now.c_lflag, before_termios.c_lflag);
  struct winsize ws;
  ioctl(master_fd, TIOCGWINSZ, &ws);
  check("winsize", memcmp(&ws, &before_ws, sizeof ws) == 0, "%dx%d", ws.ws_row, ws.ws_col);
  int pkt = 0;
  ioctl(master_fd, TIOCGPKT, &pkt);
  check("packet-mode", pkt == 1, "%d", pkt);
  struct stat sst;
  check("slave-owner", stat(slave_path, &sst) == 0 && sst.st_uid == 1234 && sst.st_gid == 5 &&
                           (sst.st_mode & 07777) == 0620,
        "%d:%d %o", (int)sst.st_uid, (int)sst.st_gid, sst.st_mode & 07777);
  check("master-flags", (fcntl(master_fd, F_GETFL) & O_ACCMODE) == O_RDWR, "");

  if (write(master_fd, "go\n", 3) != 3) die("write master");
  char line[512];
  size_t got = 0;
  while (got < sizeof line - 1 && (got == 0 || line[got - 1] != '\n')) {
    char b[256];
    ssize_t n = read(master_fd, b, sizeof b);
    if (n <= 0) break;
    if (b[0] != 0) continue; /* a packet-mode control byte alone */
    memcpy(line + got, b + 1, (size_t)n - 1);
    got += (size_t)n - 1;
  }
  line[got] = 0;
  check("child", strncmp(line, "child ok", 8) == 0, "%s", line);
  int st = 0;
  waitpid(c, &st, 0);
  check("child-exit", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %x", st);
  return verdict();
}
