/* Round-trip target for fds of the process's own namespaces (CRIU's zdtm
 * proc-self): /proc/self/ns/net, uts and pid_for_children opened and held,
 * plus one through a duplicate (dup) of the net one.
 *
 * After the restore each fd names the namespace the process is in (the same
 * inode as its /proc/self/ns link), keeps its flags, and setns() through
 * the net one succeeds.
 *
 * usage: rt_nsfd <trigger>
 * prints: ready pid=<pid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

static int same_ns(int fd, const char *name) {
  char path[64];
  struct stat a, b;
  snprintf(path, sizeof path, "/proc/self/ns/%s", name);
  return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_nsfd <trigger>");
  int net = open("/proc/self/ns/net", O_RDONLY);
  int uts = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  int pidc = open("/proc/self/ns/pid_for_children", O_RDONLY);
  if (net < 0 || uts < 0 || pidc < 0) die("open ns");
  int dup_net = dup(net);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  check("ns-same", same_ns(net, "net") && same_ns(uts, "uts") &&
                       same_ns(pidc, "pid_for_children") && same_ns(dup_net, "net"),
        "an fd names another namespace");
  check("ns-cloexec", (fcntl(uts, F_GETFD) & FD_CLOEXEC) && !(fcntl(net, F_GETFD) & FD_CLOEXEC),
        "FD_CLOEXEC %d %d", fcntl(uts, F_GETFD), fcntl(net, F_GETFD));
  check("ns-setns", setns(net, CLONE_NEWNET) == 0, "setns: %s", strerror(errno));
  fcntl(net, F_SETFL, O_NONBLOCK);
  check("ns-dup", (fcntl(dup_net, F_GETFL) & O_NONBLOCK) != 0, "not one description");
  return verdict();
}
