/* Processes sharing one fd table (clone with CLONE_FILES) and fs info
 * (CLONE_FS). Args: <trigger> <work dir>.
 *
 * The root opens <work>/a at fd 40 and clones:
 *   files  (CLONE_FILES), which clones
 *     grand  (CLONE_FILES | CLONE_FS: the table and fs info of files), and
 *     own    (a plain fork: a copy of the table);
 *   fs     (CLONE_FS).
 * Each child keeps a word of its own memory and waits on a pipe of its
 * own. The root prints "ready pid=<root> pids=<files>,<fs>,<grand>,<own>"
 * and waits for the trigger (after the restore). Then it checks with
 * kcmp who shares what, opens <work>/b at fd 41 and tells files and grand
 * its number: each must see it (and read "bravo" from it); files then
 * closes fd 40, which own (its copy of the table) must still hold and the
 * root must see closed. The root changes its cwd and umask and tells fs,
 * which must see them. The children report by exit status; the root
 * prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char stack_files[1 << 16], stack_grand[1 << 16], stack_fs[1 << 16];
static int cmd_files[2], cmd_grand[2], cmd_fs[2], cmd_own[2], report[2];
static const char *work;
static volatile int role = 'r'; /* each process its own value: its own memory */

static int kcmp_same(pid_t a, pid_t b, int type) {
  return syscall(SYS_kcmp, a, b, type, 0, 0) == 0;
}

static int read_int(int fd) {
  int n = -1;
  while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {
  }
  return n;
}

/* Whether fd `n` is open and reads "bravo". */
static int sees_b(int n) {
  char buf[8] = {0};
  return fcntl(n, F_GETFD) >= 0 && pread(n, buf, 5, 0) == 5 && strcmp(buf, "bravo") == 0;
}

static int wait_exit(pid_t pid) {
  int st;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int grand_main(void *arg) {
  (void)arg;
  role = 'g';
  int n = read_int(cmd_grand[0]);
  _exit(role == 'g' && sees_b(n) ? 0 : 1);
}

static int files_main(void *arg) {
  pid_t *kids = arg;
  role = 'f';
  kids[0] = clone(grand_main, stack_grand + sizeof stack_grand, CLONE_FILES | CLONE_FS | SIGCHLD,
                  NULL);
  kids[1] = fork();
  if (kids[1] == 0) {
    role = 'o';
    read_int(cmd_own[0]);
    /* Its own copy of the table: fd 40 still open, fd 41 never seen. */
    _exit(role == 'o' && fcntl(40, F_GETFD) >= 0 && fcntl(41, F_GETFD) < 0 ? 0 : 1);
  }
  if (kids[0] < 0 || kids[1] < 0) _exit(9);
  if (write(report[1], kids, 2 * sizeof(pid_t)) != 2 * sizeof(pid_t)) _exit(9);
  int n = read_int(cmd_files[0]);
  int ok = role == 'f' && sees_b(n);
  close(40); /* the root must see it closed */
  int x = 1;
  if (write(cmd_own[1], &x, sizeof x) != sizeof x) ok = 0;
  int grand = wait_exit(kids[0]), own = wait_exit(kids[1]);
  _exit(!ok ? 1 : grand != 0 ? 2 : own != 0 ? 3 : 0);
}

static int fs_main(void *arg) {
  char want[600], cwd[600];
  (void)arg;
  role = 's';
  read_int(cmd_fs[0]);
  snprintf(want, sizeof want, "%s/sub", work);
  mode_t mask = umask(0);
  _exit(role == 's' && getcwd(cwd, sizeof cwd) && strcmp(cwd, want) == 0 && mask == 027 ? 0 : 1);
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_files_shared <trigger> <work dir>");
  const char *trigger = argv[1];
  work = argv[2];
  char path[512];
  snprintf(path, sizeof path, "%s/a", work);
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || dup2(fd, 40) != 40 || close(fd) != 0) die("a");
  if (pipe(cmd_files) || pipe(cmd_grand) || pipe(cmd_fs) || pipe(cmd_own) || pipe(report))
    die("pipe");
  static pid_t kids[2];
  pid_t files = clone(files_main, stack_files + sizeof stack_files, CLONE_FILES | SIGCHLD, kids);
  if (files < 0) die("clone files");
  pid_t got[2];
  if (read(report[0], got, sizeof got) != sizeof got) die("kids");
  pid_t fs = clone(fs_main, stack_fs + sizeof stack_fs, CLONE_FS | SIGCHLD, NULL);
  if (fs < 0) die("clone fs");
  print_ready("pid=%d pids=%d,%d,%d,%d", getpid(), files, fs, got[0], got[1]);
  wait_trigger(trigger);

  pid_t me = getpid(), grand = got[0], own = got[1];
  check("kcmp-files", kcmp_same(me, files, KCMP_FILES), "the root and files");
  check("kcmp-files-grand", kcmp_same(files, grand, KCMP_FILES), "files and grand");
  check("kcmp-fs-grand", kcmp_same(files, grand, KCMP_FS), "files and grand");
  check("kcmp-fs", kcmp_same(me, fs, KCMP_FS), "the root and fs");
  check("own-table", !kcmp_same(me, own, KCMP_FILES), "own shares the root's table");
  check("fs-own-table", !kcmp_same(me, fs, KCMP_FILES), "fs shares the root's table");
  check("files-own-fs", !kcmp_same(me, files, KCMP_FS), "files shares the root's fs info");
  check("root-memory", role == 'r', "role %c", role);

  snprintf(path, sizeof path, "%s/b", work);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, "bravo", 5) != 5 || dup2(fd, 41) != 41 || close(fd) != 0) die("b");
  int n = 41;
  if (write(cmd_grand[1], &n, sizeof n) != sizeof n || write(cmd_files[1], &n, sizeof n) != sizeof n)
    die("tell");
  int st = wait_exit(files);
  check("files-sees-fd", st == 0, "files exited with %d (1: it did not see fd 41, 2: grand did "
                                  "not, 3: own saw the shared table)", st);
  check("close-seen", fcntl(40, F_GETFD) < 0 && errno == EBADF, "fd 40 still open in the root");

  snprintf(path, sizeof path, "%s/sub", work);
  if (mkdir(path, 0700) != 0 || chdir(path) != 0) die("sub");
  umask(027);
  if (write(cmd_fs[1], &n, sizeof n) != sizeof n) die("tell fs");
  st = wait_exit(fs);
  check("fs-sees-cwd-umask", st == 0, "fs exited with %d", st);
  return verdict();
}
