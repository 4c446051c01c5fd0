/* Holds one resource cryo refuses (argv[1]: "socket" for a generic
 * netlink socket (route netlink sockets are saved, unix sockets may be),
 * "inotify-queued" for an inotify instance with an event not yet read,
 * "inotify-gap" for a watch numbered 2101 (the ones below given back),
 * "inotify-shared" and "pidfd-shared" for an instance, or a pidfd of
 * itself, that a child it forked holds too,
 * "pidfd-outside" for a pidfd of its parent (outside the tree),
 * "pidfd-dead" for a PIDFD_THREAD pidfd of a thread that has exited, "io_uring", "userfaultfd",
 * "perf" (a software perf event), "fanotify", "bpf" (an array map)),
 * prints "ready pid=<pid> fd=<fd>", and counts in memory until SIGUSR1;
 * then checks that it ran on untouched and that the resource is still
 * there (a refused dump must not disturb it).
 *
 * usage: refused_kinds <kind> [work dir]
 */
#include "common.h"
#include <sys/inotify.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <pthread.h>

static volatile pid_t thread_tid_value;
static volatile int thread_go;

/* A thread that publishes its tid and ends when told to. */
static void *thread_tid(void *arg) {
  (void)arg;
  thread_tid_value = gettid_raw();
  while (!thread_go) sleep_ms(1);
  return NULL;
}

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

int main(int argc, char **argv) {
  need_args(argc, 1, "refused_kinds <kind> [work dir]");
  const char *kind = argv[1];
  char path[600] = "";
  int fd = -1, keep = -1;
  pid_t child = -1;
  if (is(kind, "socket")) {
    fd = socket(AF_NETLINK, SOCK_RAW, 16 /* NETLINK_GENERIC */);
    if (fd < 0) die("socket(AF_NETLINK)");
  } else if (is(kind, "inotify-gap")) {
    need_args(argc, 2, "refused_kinds inotify-gap <work dir>");
    fd = inotify_init1(IN_NONBLOCK);
    char drain[4096];
    for (int i = 0; i < 2100; i++) {
      if (inotify_rm_watch(fd, inotify_add_watch(fd, argv[2], IN_ATTRIB))) die("gap watch");
      while (read(fd, drain, sizeof drain) > 0) {
      }
    }
    if (inotify_add_watch(fd, argv[2], IN_CREATE) != 2101) die("inotify_add_watch");
  } else if (is(kind, "inotify-queued")) {
    need_args(argc, 2, "refused_kinds inotify-* <work dir>");
    snprintf(path, sizeof path, "%s/entry", argv[2]);
    fd = inotify_init1(IN_NONBLOCK);
    if (fd < 0) die("inotify_init1");
    if (inotify_add_watch(fd, argv[2], IN_CREATE) != 1) die("inotify_add_watch");
    keep = open(path, O_CREAT | O_WRONLY, 0644); /* queues IN_CREATE "entry" */
    if (keep < 0) die("open");
  } else if (is(kind, "inotify-shared") || is(kind, "pidfd-shared")) {
    fd = is(kind, "pidfd-shared") ? (int)syscall(SYS_pidfd_open, getpid(), 0) : inotify_init1(0);
    if (fd < 0) die(kind);
    child = fork();
    if (child == 0) {
      pause();
      _exit(0);
    }
  } else if (is(kind, "pidfd-outside")) {
    fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
  } else if (is(kind, "pidfd-dead")) {
    pthread_t th;
    if (pthread_create(&th, NULL, thread_tid, NULL) != 0) die("pthread_create");
    while (!thread_tid_value) sleep_ms(1);
    fd = (int)syscall(SYS_pidfd_open, thread_tid_value, 0200 /* PIDFD_THREAD */);
    __atomic_store_n(&thread_go, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
  } else if (is(kind, "userfaultfd")) {
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  } else if (is(kind, "perf")) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    a.exclude_kernel = 1;
    fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
  } else if (is(kind, "fanotify")) {
    fd = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
  } else if (is(kind, "bpf")) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = 1;
    fd = (int)syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a);
  } else if (is(kind, "io_uring")) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    fd = (int)syscall(SYS_io_uring_setup, 4, &p);
  } else {
    fprintf(stderr, "unknown kind %s\n", kind);
    return 2;
  }
  if (fd < 0) die(kind);
  sigset_t old;
  arm_usr1(&old);
  print_ready("pid=%d fd=%d", getpid(), fd);
  wait_usr1(&old);
  if (is(kind, "socket")) {
    int proto = -1;
    socklen_t len = sizeof proto;
    check("socket-kind", getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == 16,
          "protocol %d", proto);
  }
  if (is(kind, "inotify-queued")) {
    char buf[512] __attribute__((aligned(8)));
    struct inotify_event *e = (struct inotify_event *)buf;
    ssize_t n = read(fd, buf, sizeof buf);
    check("inotify-event", n > 0 && (e->mask & IN_CREATE) && !strcmp(e->name, "entry"),
          "read %zd mask %x", n, n > 0 ? e->mask : 0);
    int left = -1;
    ioctl(fd, FIONREAD, &left);
    check("inotify-only-event", left == 0, "%d bytes more", left);
    unlink(path);
  }
  check("fd-open", fcntl(fd, 1 /* F_GETFD */) >= 0, "errno %d", errno);
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }
  return verdict();
}
