/* Unix socket names whose files are gone, as zdtm's sk-unix01 leaves them:
 * after a restore (or a refused dump, which leaves the target running) the
 * target checks that its sockets still work as they did.
 *
 * usage: rt_unix_name_gone <trigger> <workdir> dir|pair
 *   dir   a datagram socket bound to <workdir>/t/d/s with a client
 *         connected to it, a stream listener at <workdir>/t/d/l with an
 *         accepted connection, then both files removed and the two
 *         directories too (restored: the directories are made again around
 *         the binds and removed); checks a datagram from the client
 *         arrives, the bound names, bytes both ways on the connection, and
 *         that the directories are still gone
 *   pair  the two ends of a datagram socketpair bound in turn to
 *         <workdir>/p.sock, the file removed after each bind (restored:
 *         made by socketpair(), bound in turn); checks datagrams go both
 *         ways, both names, the peer credentials, no file left
 *   replaced  two datagram sockets bound in turn at <workdir>/r.sock, each
 *         with a client, the first one's file removed before the second
 *         bind (restored: the first bound and its file removed before the
 *         second binds); checks each client reaches its socket, the names,
 *         and that a new client reaches the second
 *   replaced-file  the first of those, its file replaced by a regular file
 *         (refused by name)
 */
#define _GNU_SOURCE
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* Whether the bound name of `fd` is `path`. */
static int named(int fd, const char *path) {
  struct sockaddr_un got = {0};
  socklen_t len = sizeof got;
  return getsockname(fd, (void *)&got, &len) == 0 && !strcmp(got.sun_path, path);
}

static int dir_gone(const char *trigger, const char *work) {
  char top[256], dir[256];
  snprintf(top, sizeof top, "%s/t", work);
  snprintf(dir, sizeof dir, "%s/t/d", work);
  struct sockaddr_un a = {.sun_family = AF_UNIX}, b = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/s", dir);
  snprintf(b.sun_path, sizeof b.sun_path, "%s/l", dir);
  int s = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_DGRAM, 0);
  int l = socket(AF_UNIX, SOCK_STREAM, 0), cl = socket(AF_UNIX, SOCK_STREAM, 0);
  if (mkdir(top, 0755) != 0 || mkdir(dir, 0755) != 0) die("mkdir");
  if (s < 0 || c < 0 || bind(s, (void *)&a, sizeof a) != 0) die("bind");
  if (connect(c, (void *)&a, sizeof a) != 0) die("connect");
  if (l < 0 || cl < 0 || bind(l, (void *)&b, sizeof b) != 0 || listen(l, 4) != 0) die("listen");
  if (connect(cl, (void *)&b, sizeof b) != 0) die("connect stream");
  int acc = accept(l, NULL, NULL);
  if (acc < 0) die("accept");
  if (unlink(a.sun_path) != 0 || unlink(b.sun_path) != 0 || rmdir(dir) != 0 || rmdir(top) != 0) {
    die("rmdir");
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int v = 7, w = 0;
  check("datagram", write(c, &v, sizeof v) == sizeof v && read(s, &w, sizeof w) == sizeof w &&
                        w == 7, "got %d", w);
  check("names", named(s, a.sun_path) && named(l, b.sun_path) && named(acc, b.sun_path), "");
  char x = 0, y = 0;
  check("stream", write(cl, "q", 1) == 1 && read(acc, &x, 1) == 1 && x == 'q' &&
                      write(acc, "r", 1) == 1 && read(cl, &y, 1) == 1 && y == 'r', "");
  struct stat st;
  check("dir-gone", stat(top, &st) != 0 && errno == ENOENT, "");
  return verdict();
}

/* Whether SO_PEERCRED of `fd` names this process. */
static int peer_is_me(int fd) {
  struct ucred cr;
  socklen_t len = sizeof cr;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.pid == getpid();
}

static int pair_in_turn(const char *trigger, const char *work) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/p.sock", work);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) != 0) die("socketpair");
  if (bind(sp[0], (void *)&a, sizeof a) != 0 || unlink(a.sun_path) != 0) die("bind 0");
  if (bind(sp[1], (void *)&a, sizeof a) != 0 || unlink(a.sun_path) != 0) die("bind 1");
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int v = 7, w = 0, x = 9, y = 0;
  check("one-to-zero", write(sp[1], &v, sizeof v) == sizeof v &&
                           recv(sp[0], &w, sizeof w, MSG_DONTWAIT) == sizeof w && w == 7,
        "got %d", w);
  check("zero-to-one", write(sp[0], &x, sizeof x) == sizeof x &&
                           recv(sp[1], &y, sizeof y, MSG_DONTWAIT) == sizeof y && y == 9,
        "got %d", y);
  check("pair-names", named(sp[0], a.sun_path) && named(sp[1], a.sun_path), "");
  check("pair-peercred", peer_is_me(sp[0]) && peer_is_me(sp[1]), "");
  check("pair-file-gone", access(a.sun_path, F_OK) != 0 && errno == ENOENT, "");
  return verdict();
}

/* Two datagram sockets bound in turn at <workdir>/r.sock, each with a client connected; the
 * first one's file removed before the second bind, the second's kept (or, with `file`, replaced
 * by a regular file). */
static int replaced(const char *trigger, const char *work, int file) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/r.sock", work);
  int s1 = socket(AF_UNIX, SOCK_DGRAM, 0), c1 = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (s1 < 0 || c1 < 0 || bind(s1, (void *)&a, sizeof a) != 0) die("bind 1");
  if (connect(c1, (void *)&a, sizeof a) != 0 || unlink(a.sun_path) != 0) die("connect 1");
  int s2 = -1, c2 = -1;
  if (file) {
    FILE *f = fopen(a.sun_path, "w");
    if (!f) die("fopen");
    fclose(f);
  } else {
    s2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    c2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s2 < 0 || c2 < 0 || bind(s2, (void *)&a, sizeof a) != 0) die("bind 2");
    if (connect(c2, (void *)&a, sizeof a) != 0) die("connect 2");
  }
  print_ready("pid=%d", getpid());
  wait_trigger(trigger);
  int v = 1, w = 0;
  check("first-client", write(c1, &v, sizeof v) == sizeof v &&
                            recv(s1, &w, sizeof w, MSG_DONTWAIT) == sizeof w && w == 1,
        "got %d", w);
  check("first-name", named(s1, a.sun_path), "");
  if (file) return verdict();
  v = 2;
  check("second-client", write(c2, &v, sizeof v) == sizeof v &&
                             recv(s2, &w, sizeof w, MSG_DONTWAIT) == sizeof w && w == 2,
        "got %d", w);
  /* The file at the name is the second socket's: a new client reaches it, not the first. */
  int n = socket(AF_UNIX, SOCK_DGRAM, 0);
  v = 3;
  int sent = sendto(n, &v, sizeof v, 0, (void *)&a, sizeof a) == sizeof v;
  check("file-is-second", sent && recv(s2, &w, sizeof w, MSG_DONTWAIT) == sizeof w && w == 3 &&
                              recv(s1, &w, sizeof w, MSG_DONTWAIT) < 0,
        "sent %d", sent);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_unix_name_gone <trigger> <workdir> dir|pair|replaced|replaced-file");
  if (!strcmp(argv[3], "pair")) return pair_in_turn(argv[1], argv[2]);
  if (!strcmp(argv[3], "replaced")) return replaced(argv[1], argv[2], 0);
  if (!strcmp(argv[3], "replaced-file")) return replaced(argv[1], argv[2], 1);
  return dir_gone(argv[1], argv[2]);
}
