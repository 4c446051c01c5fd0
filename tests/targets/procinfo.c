/*
 * procinfo: sets up known process state, prints facts about itself as
 * "key=value" lines, prints "ready" and sleeps. tests/proc_test.ts compares
 * the /proc readers against these lines.
 *
 * With argument "exit" it prints its pid and exits with status 3 at once.
 * Temporary files are /tmp/cryo-procinfo-<pid>.*; the test removes them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

static sem_t thread_ready;

static void on_term(int sig) { (void)sig; }

static void *worker(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "procinfo-work");
  printf("thread_tid=%d\n", (int)gettid());
  fflush(stdout);
  sem_post(&thread_ready);
  for (;;) pause();
  return NULL;
}

static void die(const char *what) {
  printf("error=%s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

static unsigned long long rl(rlim_t v) { return v == RLIM_INFINITY ? ~0ULL : (unsigned long long)v; }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "exit") == 0) {
    printf("exiting pid=%d\n", getpid());
    fflush(stdout);
    return 3;
  }
  int pid = getpid();
  long ps = sysconf(_SC_PAGESIZE);
  char path[256];

  /* Identity, session, credentials. */
  if (setpgid(0, 0) != 0) die("setpgid");
  umask(027);
  gid_t groups[2] = {5, 7};
  if (setgroups(2, groups) != 0) die("setgroups");
  printf("pid=%d\nppid=%d\npgrp=%d\nsid=%d\numask=027\n", pid, getppid(), getpgrp(), getsid(0));

  /* Signals: block USR1, ignore USR2 and CHLD (children auto-reaped), catch TERM. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGUSR2, SIG_IGN);
  signal(SIGCHLD, SIG_IGN);
  struct sigaction sa = {0};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);

  /* A child, which has a grandchild; both die with their parent. */
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != pid) _exit(0);
    pid_t me = getpid();
    pid_t grandchild = fork();
    if (grandchild == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != me) _exit(0);
      for (;;) pause();
    }
    printf("grandchild=%d\n", grandchild);
    fflush(stdout);
    for (;;) pause();
  }
  printf("child=%d\n", child);

  /* Memory: a patterned region, a sparse 8 GiB reservation, a private file mapping. */
  unsigned char *pat = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pat == MAP_FAILED) die("mmap pattern");
  madvise(pat, 4 * ps, MADV_NOHUGEPAGE);
  for (long i = 0; i < 4 * ps; i++) pat[i] = (unsigned char)(i * 7 + 3);
  printf("pattern_addr=%p\npattern_len=%ld\n", (void *)pat, 4 * ps);

  size_t big = 8UL << 30;
  char *res = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) die("mmap reservation");
  madvise(res, big, MADV_NOHUGEPAGE);
  res[0] = 1;
  for (int i = 1000; i < 1010; i++) res[(size_t)i * ps] = 1;
  res[big - ps] = 1;
  printf("reserve_addr=%p\nreserve_len=%zu\n", (void *)res, big);
  printf("touched_addr=%p\nuntouched_addr=%p\n", (void *)(res + 1000 * ps), (void *)(res + 500 * ps));

  snprintf(path, sizeof path, "/tmp/cryo-procinfo-%d.map", pid);
  int mf = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (mf < 0) die("open map file");
  char page[4096];
  memset(page, 'm', sizeof page);
  for (int i = 0; i < 3; i++) write(mf, page, sizeof page);
  volatile char *fmap = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
  if (fmap == MAP_FAILED) die("mmap file");
  close(mf);
  (void)fmap[0];   /* page 0: file page */
  fmap[ps] = 'x';  /* page 1: COW'd, anonymous */
  printf("filemap_addr=%p\nfilemap_path=%s\n", (void *)fmap, path);

  /* Files. */
  snprintf(path, sizeof path, "/tmp/cryo-procinfo-%d.dat", pid);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  if (fd < 0) die("open data");
  for (int i = 0; i < 2; i++) write(fd, page, sizeof page);
  lseek(fd, 1234, SEEK_SET);
  printf("file_fd=%d\nfile_path=%s\nfile_pos=1234\n", fd, path);

  int dirfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  printf("dir_fd=%d\n", dirfd);

  snprintf(path, sizeof path, "/tmp/cryo-procinfo-%d.del", pid);
  int delfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  write(delfd, "gone", 4);
  unlink(path);
  printf("deleted_fd=%d\ndeleted_path=%s\n", delfd, path);

  int evfd = eventfd(7, EFD_NONBLOCK);
  printf("eventfd_fd=%d\neventfd_count=7\n", evfd);

  int pipefd[2];
  if (pipe(pipefd) != 0) die("pipe");
  struct stat st;
  fstat(pipefd[0], &st);
  printf("pipe_r=%d\npipe_w=%d\npipe_ino=%lu\n", pipefd[0], pipefd[1], (unsigned long)st.st_ino);

  int epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1122334455ULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev);
  printf("epoll_fd=%d\nepoll_data=0x1122334455\n", epfd);

  int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {.it_interval = {5, 0}, .it_value = {1000, 0}};
  timerfd_settime(tfd, 0, &its, NULL);
  printf("timerfd_fd=%d\n", tfd);

  sigset_t sfmask;
  sigemptyset(&sfmask);
  sigaddset(&sfmask, SIGUSR1);
  int sfd = signalfd(-1, &sfmask, 0);
  printf("signalfd_fd=%d\n", sfd);

  int ifd = inotify_init1(0);
  int wd = inotify_add_watch(ifd, "/tmp", IN_CREATE);
  printf("inotify_fd=%d\ninotify_wd=%d\n", ifd, wd);

  int memfd = memfd_create("cryo-memfd", 0);
  printf("memfd_fd=%d\n", memfd);

  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  printf("pidfd_fd=%d\n", pidfd);

  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  printf("socket_fd=%d\n", sv[0]);

  int nullfd = open("/dev/null", O_RDONLY);
  printf("null_fd=%d\n", nullfd);

  int ptmx = open("/dev/ptmx", O_RDWR | O_NOCTTY);
  printf("ptmx_fd=%d\n", ptmx);

  snprintf(path, sizeof path, "/tmp/cryo-procinfo-%d.fifo", pid);
  mkfifo(path, 0600);
  int fifofd = open(path, O_RDWR | O_NONBLOCK);
  printf("fifo_fd=%d\n", fifofd);

  int fan = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
  printf("fanotify_fd=%d\n", fan);

  /* Limits, cwd, personality, comm. */
  struct rlimit lim = {123, 456};
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) die("setrlimit");
  getrlimit(RLIMIT_STACK, &lim);
  printf("rlimit_nofile=123/456\nrlimit_stack=%llu/%llu\n", rl(lim.rlim_cur), rl(lim.rlim_max));
  if (chdir("/tmp") != 0) die("chdir");
  printf("cwd=/tmp\n");
  personality(ADDR_NO_RANDOMIZE);
  printf("personality=0x%x\n", personality(0xffffffff));

  /* Addresses to check the stat mm fields and auxv against. */
  void *heap = malloc(100000);
  printf("main_addr=%p\nstack_addr=%p\nargv0_addr=%p\nenv0_addr=%p\nbrk=%p\nheap=%p\n",
         (void *)main, (void *)&lim, (void *)argv[0], (void *)environ[0], sbrk(0), heap);
  printf("at_pagesz=%lu\nat_entry=0x%lx\nat_phdr=0x%lx\nat_random=0x%lx\n", getauxval(AT_PAGESZ),
         getauxval(AT_ENTRY), getauxval(AT_PHDR), getauxval(AT_RANDOM));

  /* A thread; the main thread's comm has spaces and parentheses. */
  sem_init(&thread_ready, 0, 0);
  pthread_t th;
  pthread_create(&th, NULL, worker, NULL);
  sem_wait(&thread_ready);
  prctl(PR_SET_NAME, "x) (y z)", 0, 0, 0);
  printf("comm=x) (y z)\n");

  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
