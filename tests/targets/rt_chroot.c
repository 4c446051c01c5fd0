/* Round-trip target for a changed root directory: chroot()s into
 * <workdir>/jail (its cwd is the jail's /), prints "ready pid=<pid>" and
 * waits for /go inside the jail (<workdir>/jail/go outside); after the
 * restore its root and cwd must still be the jail.
 *
 * usage: rt_chroot <trigger (unused)> <workdir>
 */
#include "common.h"
#include <sys/stat.h>

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_chroot <trigger> <workdir>");
  char jail[512];
  snprintf(jail, sizeof jail, "%s/jail", argv[2]);
  struct stat js, st;
  if (mkdir(jail, 0755) != 0 || stat(jail, &js) != 0) die("jail");
  if (chdir(jail) != 0 || chroot(".") != 0) die("chroot");
  print_ready("pid=%d", getpid());
  wait_trigger("/go");
  check("root", stat("/", &st) == 0 && st.st_ino == js.st_ino && st.st_dev == js.st_dev, "ino %lu",
        (unsigned long)st.st_ino);
  check("cwd", stat(".", &st) == 0 && st.st_ino == js.st_ino, "ino %lu", (unsigned long)st.st_ino);
  return verdict();
}
