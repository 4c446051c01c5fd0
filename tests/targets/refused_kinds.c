/* Holds one resource cryo refuses (argv[1]: "socket" for a netlink socket,
 * "inotify", "io_uring"), prints "ready pid=<pid>", and counts in memory
 * until SIGUSR1; then checks that it ran on untouched and that the
 * resource is still there (a refused dump must not disturb it). */
#include "common.h"
#include <sys/inotify.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <linux/io_uring.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "refused_kinds socket|inotify|io_uring");
  int fd = -1;
  if (strcmp(argv[1], "socket") == 0) {
    fd = socket(AF_NETLINK, SOCK_RAW, 0 /* NETLINK_ROUTE */);
    if (fd < 0) die("socket(AF_NETLINK)");
  } else if (strcmp(argv[1], "inotify") == 0) {
    fd = inotify_init1(0);
    if (fd < 0) die("inotify_init1");
  } else {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0) die("io_uring_setup");
  }
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d fd=%d", getpid(), fd);
  wait_usr1(&old);
  check("fd-open", fcntl(fd, 1 /* F_GETFD */) >= 0, "errno %d", errno);
  return verdict();
}
