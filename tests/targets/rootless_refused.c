/* State a rootless dump refuses by name (tests/rootless_test.ts).
 *
 * usage: rootless_refused <shm|tcp|memfd|sharedanon>   (run by "cryo launch" as a user)
 *
 * shm:   attaches a System V shm segment (its id needs the host's shm_next_id);
 * tcp:   holds an established TCP connection to itself (TCP repair needs
 *        CAP_NET_ADMIN in the host's network namespace);
 * memfd: maps a memfd (map_files cannot be opened without
 *        CAP_CHECKPOINT_RESTORE on the host);
 * sharedanon: shared anonymous memory a child wrote a page of and exited
 *        (the page is in the memory object, not in this process's page
 *        tables: found only through map_files).
 * Prints "ready" and sleeps; the test checks it still runs after the refusal.
 */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rootless_refused <shm|tcp|memfd|sharedanon>");
  if (strcmp(argv[1], "shm") == 0) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) die("shmget");
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) die("shmat");
    shmctl(id, IPC_RMID, NULL);
    p[0] = 1;
  } else if (strcmp(argv[1], "tcp") == 0) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1)) die("listen");
    if (getsockname(l, (struct sockaddr *)&a, &len)) die("getsockname");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a)) die("connect");
    int s = accept(l, NULL, NULL);
    if (s < 0) die("accept");
    close(l);
  } else if (strcmp(argv[1], "sharedanon") == 0) {
    char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    p[0] = 1;
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
      p[2 * 4096] = 42; /* a page the parent never maps */
      _exit(0);
    }
    if (waitpid(c, NULL, 0) != c) die("waitpid");
  } else {
    int fd = memfd_create("rootless", 0);
    if (fd < 0 || ftruncate(fd, 4096)) die("memfd");
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    close(fd);
    p[0] = 1;
  }
  print_ready("%s", argv[1]);
  for (;;) pause();
}
