/* Holds one piece of fd or fs state cryo refuses by name, prints
 * "ready pid=<pid> fd=<fd>", and waits for SIGUSR1; then checks that it ran
 * on untouched (a refused dump must not disturb it).
 *
 *   root-deleted the root directory (chroot) was removed
 *   lease        a read lease (F_SETLEASE) on a file, being broken (a
 *                non-blocking open for writing started its break)
 *   pipe-reopen  a pipe's read end opened again through /proc/self/fd, the
 *                pipe also held by a child (killed when this process dies)
 *   lock-mapped  a flock held through a description only a mapping keeps
 *   owner-outside  an fd owned (F_SETOWN) by the parent, outside the tree
 *
 * usage: refused_fds <workdir> root-deleted|lease|pipe-reopen|lock-mapped|owner-outside
 */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *work;

static int lease_before = -1;

int main(int argc, char **argv) {
  need_args(argc, 2, "refused_fds <workdir> root-deleted|lease|pipe-reopen|lock-mapped|owner-outside");
  work = argv[1];
  const char *mode = argv[2];
  char path[512];
  int fd = -1;
  if (!strcmp(mode, "root-deleted")) {
    /* Relative to the cwd (work, outside the new root): absolute paths now resolve in it. */
    if (chdir(work) != 0 || mkdir("gone", 0755) != 0 || chroot("gone") != 0 || rmdir("gone") != 0) {
      die("root");
    }
  } else if (!strcmp(mode, "lease")) {
    snprintf(path, sizeof path, "%s/leased", work);
    int w = open(path, O_WRONLY | O_CREAT, 0600);
    if (w < 0) die("create");
    close(w);
    fd = open(path, O_RDONLY);
    if (fd < 0 || fcntl(fd, F_SETLEASE, F_RDLCK) != 0) die("lease");
    /* A child's non-blocking open for writing starts the break (lease-break-time, 45 s by
     * default, before the lease is removed). */
    signal(SIGIO, SIG_IGN); /* the break's signal (F_SETLEASE made this process the owner) */
    pid_t c = fork();
    if (c == 0) _exit(open(path, O_WRONLY | O_NONBLOCK) < 0 && errno == EWOULDBLOCK ? 0 : 1);
    int st;
    if (c < 0 || waitpid(c, &st, 0) != c || st != 0) die("lease break");
    lease_before = fcntl(fd, F_GETLEASE);
  } else if (!strcmp(mode, "pipe-reopen")) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die("reopen");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() == 1) _exit(0);
      for (;;) pause();
    }
  } else if (!strcmp(mode, "owner-outside")) {
    fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || fcntl(fd, F_SETOWN, getppid()) != 0) die("owner");
  } else if (!strcmp(mode, "lock-mapped")) {
    snprintf(path, sizeof path, "%s/mapped", work);
    int m = open(path, O_RDWR | O_CREAT, 0600);
    if (m < 0 || ftruncate(m, 4096) != 0) die("mapped");
    if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0) == MAP_FAILED) die("mmap");
    if (flock(m, LOCK_EX) != 0) die("flock");
    close(m);
  } else {
    die_err(mode, EINVAL);
  }
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d fd=%d", getpid(), fd);
  wait_usr1(&old);
  if (!strcmp(mode, "root-deleted")) {
    struct stat st;
    check("root", stat("/", &st) == 0 && st.st_nlink == 0, "nlink %lu", (unsigned long)st.st_nlink);
  } else if (!strcmp(mode, "owner-outside")) {
    check("owner", fcntl(fd, F_GETOWN) == getppid(), "owner %d", fcntl(fd, F_GETOWN));
  } else if (!strcmp(mode, "lock-mapped")) {
    int other = open(path, O_RDONLY);
    check("still-locked", flock(other, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK, "errno %d", errno);
  } else if (!strcmp(mode, "lease")) {
    check("lease", fcntl(fd, F_GETLEASE) == lease_before, "lease %d, was %d", fcntl(fd, F_GETLEASE),
          lease_before);
  } else {
    check("fd-open", fcntl(fd, F_GETFD) >= 0, "errno %d", errno);
  }
  return verdict();
}
