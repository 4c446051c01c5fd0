/* A child holding its parent's /proc/<pid>/status open (as a fd opened
 * without O_CLOEXEC by one thread leaks into a child another thread forks
 * meanwhile: node's worker threads read /proc/self/maps so): the parent
 * opens /proc/self/status, reads 6 bytes, forks, and closes its copy. After
 * the restore the child checks that its fd is still at offset 6 and names
 * its parent (the "Pid:" line), not itself; the parent reports the child's
 * verdict. With "descendant", the parent also holds its child's
 * /proc/<pid>/status (which a restore could not open before the child
 * exists: refused).
 *
 * usage: rt_proc_parent <trigger> [descendant]
 */
#include "common.h"

#include <fcntl.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_proc_parent <trigger>");
  setvbuf(stdout, NULL, _IONBF, 0);
  int fd = open("/proc/self/status", O_RDONLY);
  char head[6];
  if (fd < 0 || read(fd, head, sizeof head) != (ssize_t)sizeof head) die("/proc/self/status");
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    wait_trigger(argv[1]);
    off_t pos = lseek(fd, 0, SEEK_CUR);
    check("proc-parent-offset", pos == 6, "%lld", (long long)pos);
    char text[8192];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = 0;
    char want[64];
    snprintf(want, sizeof want, "\nPid:\t%d\n", (int)parent);
    check("proc-parent-names-parent", n > 0 && strstr(text, want) != NULL, "%s", text);
    check("proc-parent-flags", fcntl(fd, F_GETFD) == 0, "%d", fcntl(fd, F_GETFD));
    return verdict();
  }
  close(fd);
  if (argc > 2 && strcmp(argv[2], "descendant") == 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)child);
    if (open(path, O_RDONLY) < 0) die(path);
  }
  print_ready("pid=%d child=%d", (int)parent, (int)child);
  int st;
  if (waitpid(child, &st, 0) != child) die("waitpid");
  check("proc-parent-child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
  return verdict();
}
