/* Target for tests/inject_safe_test.ts: blocks in read() on a FIFO (the
 * freeze interrupts it with -ERESTARTSYS), then reports what read returned.
 * A thread let go inside an injected syscall must issue its read again
 * (not return EINTR or a raw -ERESTARTSYS).
 *
 * usage: inject_restart <fifo>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
  need_args(argc, 1, "inject_restart <fifo>");
  int fd = open(argv[1], O_RDWR);
  if (fd < 0) die("open fifo");
  print_ready("pid=%d", getpid());
  char c = 0;
  ssize_t n = read(fd, &c, 1);
  if (n == 1) printf("read %c\n", c);
  else printf("read failed %zd errno %d\n", n, errno);
  fflush(stdout);
  return 0;
}
