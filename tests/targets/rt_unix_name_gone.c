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
 *         <workdir>/p.sock, the file removed after each bind (bound again
 *         together, the second bind would take the first one's file);
 *         checks datagrams go both ways
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
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_unix_name_gone <trigger> <workdir> dir|pair");
  if (!strcmp(argv[3], "pair")) return pair_in_turn(argv[1], argv[2]);
  return dir_gone(argv[1], argv[2]);
}
