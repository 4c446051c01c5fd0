/* The scheduler autogroup's nice value (tests/restore_autogroup_test.ts).
 *
 * usage: rt_autogroup <trigger-file> leader|member
 *
 * leader: starts a session (setsid), sets its autogroup's nice value to
 * 10 (/proc/self/autogroup), prints "ready pid=<pid>", waits for the
 * trigger file, then checks it is still a session leader with nice 10.
 * member: starts a session, forks a child that sets the session's
 * autogroup nice to 7 and prints "ready pid=<leader> child=<child>" (the child is the
 * process to dump: its session leader stays outside); the child exits
 * after the trigger, the leader after the child.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <sys/wait.h>

static int autogroup_nice(void) {
  char buf[128] = {0};
  int fd = open("/proc/self/autogroup", O_RDONLY);
  if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) return -100;
  close(fd);
  char *n = strstr(buf, " nice ");
  return n ? atoi(n + 6) : -100;
}

static void set_nice(int nice) {
  int fd = open("/proc/self/autogroup", O_WRONLY);
  char s[16];
  int len = snprintf(s, sizeof s, "%d", nice);
  if (fd < 0 || write(fd, s, (size_t)len) != len) die("write /proc/self/autogroup");
  close(fd);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_autogroup <trigger-file> leader|member");
  if (setsid() < 0) die("setsid");
  if (!strcmp(argv[2], "member")) {
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child > 0) {
      int st;
      waitpid(child, &st, 0);
      return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    set_nice(7);
    printf("ready pid=%d child=%d\n", getppid(), getpid());
    fflush(stdout);
    wait_trigger(argv[1]);
    check("member-nice", autogroup_nice() == 7, "autogroup nice %d", autogroup_nice());
    return verdict();
  }
  set_nice(10);
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  wait_trigger(argv[1]);
  check("leader", getsid(0) == getpid(), "session %d", getsid(0));
  check("autogroup-nice", autogroup_nice() == 10, "autogroup nice %d", autogroup_nice());
  return verdict();
}
