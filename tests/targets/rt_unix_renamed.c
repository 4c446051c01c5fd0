/* A unix listener whose socket file was renamed after the bind, as
 * supervisord does (bind "<path>.<pid>", chmod, rename to "<path>").
 * Args: <work dir>. Prints "ready pid=<pid>", waits for SIGUSR1 (sent after
 * the restore), checks that the listener still has its bound name, that
 * its file is at the new name with its mode and nothing is left at the old
 * one, and that a client connecting through the new name is accepted;
 * prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_unix_renamed <work dir>");
  struct sockaddr_un tmp = {.sun_family = AF_UNIX}, final = {.sun_family = AF_UNIX};
  snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s/ctl.sock.%d", argv[1], (int)getpid());
  snprintf(final.sun_path, sizeof final.sun_path, "%s/ctl.sock", argv[1]);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0) die("socket");
  if (bind(l, (struct sockaddr *)&tmp, sizeof tmp) != 0) die("bind");
  if (listen(l, 8) != 0) die("listen");
  if (chmod(tmp.sun_path, 0600) != 0) die("chmod");
  if (rename(tmp.sun_path, final.sun_path) != 0) die("rename");
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d", getpid());
  wait_usr1(&old);
  struct sockaddr_un got = {0};
  socklen_t len = sizeof got;
  check("name", getsockname(l, (struct sockaddr *)&got, &len) == 0 &&
                    strcmp(got.sun_path, tmp.sun_path) == 0, "%s", got.sun_path);
  struct stat st;
  check("file", stat(final.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
                    (st.st_mode & 0777) == 0600, "mode %o", st.st_mode);
  check("old-name-gone", access(tmp.sun_path, F_OK) != 0 && errno == ENOENT, "errno %d", errno);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  check("connect", connect(c, (struct sockaddr *)&final, sizeof final) == 0, "errno %d", errno);
  int a = accept(l, NULL, NULL);
  check("accept", a >= 0 && write(c, "x", 1) == 1, "errno %d", errno);
  char b = 0;
  check("data", a >= 0 && read(a, &b, 1) == 1 && b == 'x', "%c", b);
  return verdict();
}
