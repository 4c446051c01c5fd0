/* A daemon's listener made by its parent: the parent binds and listens on
 * a unix socket, forks the child that keeps it, and exits (mode "exit", as
 * gpg-agent --daemon does) or stays (mode "stay"). The listener's peer
 * credentials, which every client copies at connect(), name the parent.
 * The child, checkpointed alone, checks after the restore that the
 * listener's credentials and a new client's still name the parent (gone),
 * and that the client is accepted.
 *
 * usage: rt_unix_listen_parent <trigger> <work dir> exit|stay
 */
#define _GNU_SOURCE
#include "common.h"

#include <sys/socket.h>
#include <sys/un.h>

static pid_t cred_pid(int fd) {
  struct ucred c;
  socklen_t len = sizeof c;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0 ? c.pid : -1;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_unix_listen_parent <trigger> <work dir> exit|stay");
  setvbuf(stdout, NULL, _IONBF, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s/sock", argv[2]);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(l, 5) != 0) {
    die("listener");
  }
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child > 0) {
    print_ready("pid=%d child=%d", (int)parent, (int)child);
    if (strcmp(argv[3], "stay") == 0) pause();
    return 0;
  }
  wait_trigger(argv[1]);
  check("listener-cred", cred_pid(l) == parent, "%d, not %d", (int)cred_pid(l), (int)parent);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
  check("client-cred", cred_pid(c) == parent, "%d, not %d", (int)cred_pid(c), (int)parent);
  int a = accept(l, NULL, NULL);
  check("accepted", a >= 0 && cred_pid(a) == getpid(), "%d", a);
  return verdict();
}
