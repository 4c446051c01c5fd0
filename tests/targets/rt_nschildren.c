/* Target: a process that unshared a namespace for its children to come.
 *
 *   rt_nschildren <pid|time>
 *
 * unshare(CLONE_NEWPID) or unshare(CLONE_NEWTIME) (the time namespace with
 * a monotonic offset of 1000 s, which its children would see), then
 * prints "ready pid=<pid>" and sleeps: no child is forked yet, so only
 * /proc/<pid>/ns/<kind>_for_children shows the new namespace.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>

#include "common.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_nschildren <pid|time>");
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(argv[1], "pid")) {
    if (unshare(CLONE_NEWPID)) die("unshare(CLONE_NEWPID)");
  } else if (!strcmp(argv[1], "time")) {
    if (unshare(CLONE_NEWTIME)) die("unshare(CLONE_NEWTIME)");
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    const char *line = "monotonic 1000 0";
    if (fd < 0 || write(fd, line, strlen(line)) < 0) die("timens_offsets");
    close(fd);
  } else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  print_ready("pid=%d", getpid());
  for (;;) pause();
}
