/* A unix datagram socket bound to <workdir>/d/s, a client connected to it,
 * then the socket file removed and its directory too (zdtm's sk-unix01
 * does so). cryo refuses it by name at dump (the restore would have to make
 * the directory again to bind there); the target, left running, checks
 * that a datagram from the client arrives and that the directory is still
 * gone.
 *
 * usage: rt_unix_dir_gone <trigger> <workdir>
 */
#define _GNU_SOURCE
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_unix_dir_gone <trigger> <workdir>");
  char dir[256];
  snprintf(dir, sizeof dir, "%s/d", argv[2]);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/s", dir);
  int s = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (mkdir(dir, 0755) != 0) die("mkdir");
  if (s < 0 || c < 0 || bind(s, (void *)&a, sizeof a) != 0) die("bind");
  if (connect(c, (void *)&a, sizeof a) != 0) die("connect");
  if (unlink(a.sun_path) != 0 || rmdir(dir) != 0) die("rmdir");
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);
  int v = 7, w = 0;
  check("datagram", write(c, &v, sizeof v) == sizeof v && read(s, &w, sizeof w) == sizeof w &&
                        w == 7, "got %d", w);
  struct stat st;
  check("dir-gone", stat(dir, &st) != 0 && errno == ENOENT, "");
  return verdict();
}
