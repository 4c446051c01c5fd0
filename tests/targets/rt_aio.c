/* Native AIO contexts across a checkpoint (raw syscalls, no libaio).
 *
 * usage: rt_aio <trigger> <work-dir> <mode>
 *
 * mode "rings": a context created and destroyed first (so the kernel ids
 * of the others have a gap), context A (small ring, MADV_DONTDUMP) with 5
 * events reaped and then 3 reads of a file completed, 1 of them reaped
 * (head 6, tail 8), context B (a ring of several pages) with 4 reads
 * completed and none reaped, and context C with 110 reads submitted from
 * CPUs 0 and 1 in turn and 10 of them reaped (100 pending in a ring of 127
 * slots). Prints "ready pid=<pid> a=<hex> b=<hex> c=<hex>", waits for
 * <trigger>, then checks the rings' headers, reaps the pending events and
 * checks their data, obj and res fields (and the bytes read), submits new
 * reads on A and B, and destroys the contexts.
 *
 * mode "inflight": a context with a poll request on an empty pipe (in
 * flight until the pipe is written). Prints "ready pid=<pid> a=<hex>",
 * waits for <trigger>, checks the ring did not change, writes the pipe and
 * reaps the poll's event.
 *
 * mode "wait": the main thread waits in io_getevents (again after EINTR)
 * while another thread waits for <trigger> and then submits a read.
 * Prints "ready pid=<pid> a=<hex>".
 *
 * mode "fork": a context, then a child (which has the ring mapping but no
 * context). Prints "ready pid=<pid> child=<pid> a=<hex>"; waits for
 * <trigger>, then the parent uses its context and reaps the child.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct ring {
  unsigned id, nr, head, tail, magic, compat, incompat, header_length;
  struct io_event events[];
};

static long io_setup_(unsigned n, aio_context_t *ctx) { return syscall(SYS_io_setup, n, ctx); }
static long io_destroy_(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long io_submit_(aio_context_t ctx, long n, struct iocb **v) {
  return syscall(SYS_io_submit, ctx, n, v);
}
static long io_getevents_(aio_context_t ctx, long min, long n, struct io_event *ev) {
  struct timespec ts = {10, 0};
  return syscall(SYS_io_getevents, ctx, min, n, ev, &ts);
}

static char bufs[16][64];
static struct iocb iocbs[16];
static struct iocb many[110];
static char sink[16];

/* Submits 110 reads on `ctx` (tagged 5000+i), alternating between CPUs 0 and 1
 * (when the process may run there), so that the kernel's per-CPU caches of
 * free slots both hold some. */
static void submit_many(aio_context_t ctx, int fd) {
  cpu_set_t all, one;
  sched_getaffinity(0, sizeof all, &all);
  for (int i = 0; i < 110; i++) {
    CPU_ZERO(&one);
    CPU_SET(i % 2, &one);
    sched_setaffinity(0, sizeof one, &one);
    struct iocb *cb = &many[i];
    memset(cb, 0, sizeof(*cb));
    cb->aio_data = 5000 + i;
    cb->aio_lio_opcode = IOCB_CMD_PREAD;
    cb->aio_fildes = fd;
    cb->aio_buf = (unsigned long)sink;
    cb->aio_nbytes = 16;
    if (io_submit_(ctx, 1, &cb) != 1) die("io_submit many");
  }
  sched_setaffinity(0, sizeof all, &all);
}

/* Reaps `n` events of `ctx`, which must be those of many[first..first+n-1]. */
static void reap_many(const char *name, aio_context_t ctx, int first, int n) {
  struct io_event ev[110];
  long got = io_getevents_(ctx, n, n, ev);
  int bad = 0;
  for (int k = 0; k < got && k < n; k++) {
    int i = first + k;
    if (ev[k].data != (unsigned long long)(5000 + i) || ev[k].obj != (unsigned long)&many[i] ||
        ev[k].res != 16)
      bad++;
  }
  check(name, got == n && bad == 0, "got %ld of %d events, %d wrong", got, n, bad);
}

/* Submits a read of 16 bytes at `off` of `fd` into bufs[i], tagged 1000+i. */
static void submit_read(aio_context_t ctx, int i, int fd, long off) {
  struct iocb *cb = &iocbs[i];
  memset(cb, 0, sizeof(*cb));
  cb->aio_data = 1000 + i;
  cb->aio_lio_opcode = IOCB_CMD_PREAD;
  cb->aio_fildes = fd;
  cb->aio_buf = (unsigned long)bufs[i];
  cb->aio_nbytes = 16;
  cb->aio_offset = off;
  if (io_submit_(ctx, 1, &cb) != 1) die("io_submit");
}

/* Reaps `n` events of `ctx` and checks they are reads tagged first..first+n-1. */
static void reap_reads(const char *name, aio_context_t ctx, int first, int n, const char *file) {
  struct io_event ev[16];
  long got = io_getevents_(ctx, n, n, ev);
  check(name, got == n, "got %ld events, wanted %d", got, n);
  for (int k = 0; k < got && k < n; k++) {
    int i = first + k;
    char what[64];
    snprintf(what, sizeof what, "%s-event-%d", name, k);
    check(what,
          ev[k].data == (unsigned long long)(1000 + i) &&
              ev[k].obj == (unsigned long)&iocbs[i] && ev[k].res == 16 && ev[k].res2 == 0,
          "data %llu obj %llx res %lld res2 %lld", (unsigned long long)ev[k].data,
          (unsigned long long)ev[k].obj, (long long)ev[k].res, (long long)ev[k].res2);
    snprintf(what, sizeof what, "%s-bytes-%d", name, k);
    check(what, memcmp(bufs[i], file + 16 * i, 16) == 0, "%.16s", bufs[i]);
  }
}

static void ring_is(const char *name, aio_context_t ctx, unsigned head, unsigned tail) {
  struct ring *r = (struct ring *)ctx;
  check(name, r->head == head && r->tail == tail && r->magic == 0xa10a10a1,
        "head %u tail %u magic %x (wanted %u %u)", r->head, r->tail, r->magic, head, tail);
}

static int rings(const char *trigger, const char *work) {
  char path[4096], file[16 * 16 + 1];
  for (int i = 0; i < 16 * 16; i++) file[i] = 'a' + (i * 7) % 26;
  file[16 * 16] = 0;
  snprintf(path, sizeof path, "%s/data", work);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, file, 16 * 16) != 16 * 16) die("data file");

  aio_context_t gone = 0, a = 0, b = 0, c = 0;
  if (io_setup_(4, &gone) || io_setup_(8, &a) || io_setup_(300, &b) || io_setup_(50, &c))
    die("io_setup");
  if (io_destroy_(gone)) die("io_destroy");
  if (madvise((void *)a, 4096, MADV_DONTDUMP)) die("madvise");
  struct ring *ra = (struct ring *)a, *rb = (struct ring *)b;
  for (int i = 0; i < 5; i++) submit_read(a, i, fd, 16 * i);
  reap_reads("a-before", a, 0, 5, file);
  for (int i = 5; i < 8; i++) submit_read(a, i, fd, 16 * i);
  reap_reads("a-before2", a, 5, 1, file);
  for (int i = 8; i < 12; i++) submit_read(b, i, fd, 16 * i);
  submit_many(c, fd);
  reap_many("c-before", c, 0, 10);
  ring_is("c-ring-before", c, 10, 110);
  ring_is("a-ring-before", a, 6, 8);
  ring_is("b-ring-before", b, 0, 4);
  unsigned ida = ra->id, idb = rb->id, nra = ra->nr, nrb = rb->nr;
  print_ready("pid=%d a=%lx b=%lx c=%lx", getpid(), (unsigned long)a, (unsigned long)b,
              (unsigned long)c);
  wait_trigger(trigger);

  ring_is("a-ring", a, 6, 8);
  ring_is("b-ring", b, 0, 4);
  check("ring-ids", ra->id == ida && rb->id == idb, "%u %u (were %u %u)", ra->id, rb->id, ida, idb);
  check("ring-sizes", ra->nr == nra && rb->nr == nrb, "%u %u (were %u %u)", ra->nr, rb->nr, nra,
        nrb);
  ring_is("c-ring", c, 10, 110);
  reap_many("c-pending", c, 10, 100);
  reap_reads("a-pending", a, 6, 2, file);
  reap_reads("b-pending", b, 8, 4, file);
  ring_is("a-ring-reaped", a, 8, 8);
  ring_is("b-ring-reaped", b, 4, 4);
  /* New requests on both contexts. */
  for (int i = 12; i < 14; i++) submit_read(a, i, fd, 16 * i);
  submit_read(b, 14, fd, 16 * 14);
  reap_reads("a-new", a, 12, 2, file);
  reap_reads("b-new", b, 14, 1, file);
  check("destroy-a", io_destroy_(a) == 0, "%s", strerror(errno));
  check("destroy-b", io_destroy_(b) == 0, "%s", strerror(errno));
  check("destroy-c", io_destroy_(c) == 0, "%s", strerror(errno));
  check("destroyed", io_destroy_(a) == -1 && errno == EINVAL, "%s", strerror(errno));
  return verdict();
}

static int inflight(const char *trigger) {
  int p[2];
  if (pipe(p)) die("pipe");
  aio_context_t a = 0;
  if (io_setup_(16, &a)) die("io_setup");
  struct iocb cb, *v = &cb;
  memset(&cb, 0, sizeof cb);
  cb.aio_data = 77;
  cb.aio_lio_opcode = IOCB_CMD_POLL;
  cb.aio_fildes = p[0];
  cb.aio_buf = POLLIN;
  if (io_submit_(a, 1, &v) != 1) die("io_submit poll");
  print_ready("pid=%d a=%lx", getpid(), (unsigned long)a);
  wait_trigger(trigger);
  ring_is("ring-untouched", a, 0, 0);
  if (write(p[1], "x", 1) != 1) die("write");
  struct io_event ev;
  long got = io_getevents_(a, 1, 1, &ev);
  check("poll-event", got == 1 && ev.data == 77 && (ev.res & POLLIN), "got %ld res %lld", got,
        (long long)ev.res);
  ring_is("ring-after", a, 1, 1);
  return verdict();
}

static int forked(const char *trigger) {
  aio_context_t a = 0;
  if (io_setup_(8, &a)) die("io_setup");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    wait_trigger(trigger);
    _exit(0);
  }
  print_ready("pid=%d child=%d a=%lx", getpid(), child, (unsigned long)a);
  wait_trigger(trigger);
  struct iocb cb, *v = &cb;
  memset(&cb, 0, sizeof cb);
  int fd = open("/dev/zero", O_RDONLY);
  cb.aio_lio_opcode = IOCB_CMD_PREAD;
  cb.aio_fildes = fd;
  cb.aio_buf = (unsigned long)bufs[0];
  cb.aio_nbytes = 8;
  check("submit", io_submit_(a, 1, &v) == 1, "%s", strerror(errno));
  struct io_event ev;
  check("reap", io_getevents_(a, 1, 1, &ev) == 1 && ev.res == 8, "");
  int st;
  check("child", waitpid(child, &st, 0) == child && WIFEXITED(st), "");
  return verdict();
}

struct waiter {
  const char *trigger;
  aio_context_t ctx;
  int fd;
};

static void *submit_after_trigger(void *arg) {
  struct waiter *w = arg;
  wait_trigger(w->trigger);
  submit_read(w->ctx, 0, w->fd, 0);
  return NULL;
}

/* The main thread waits in io_getevents (again after EINTR) while another
 * thread waits for the trigger, then submits a read. */
static int waiting(const char *trigger) {
  aio_context_t a = 0;
  if (io_setup_(8, &a)) die("io_setup");
  struct waiter w = {trigger, a, open("/dev/zero", O_RDONLY)};
  pthread_t th;
  if (pthread_create(&th, NULL, submit_after_trigger, &w)) die("pthread_create");
  print_ready("pid=%d a=%lx", getpid(), (unsigned long)a);
  struct io_event ev;
  struct timespec ts = {120, 0};
  long got;
  int eintr = 0;
  while ((got = syscall(SYS_io_getevents, a, 1, 1, &ev, &ts)) < 0 && errno == EINTR) eintr++;
  printf("io_getevents interrupted %d time(s)\n", eintr);
  check("waited-event", got == 1 && ev.data == 1000 && ev.res == 16, "got %ld res %lld", got,
        (long long)ev.res);
  pthread_join(th, NULL);
  ring_is("waited-ring", a, 1, 1);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_aio <trigger> <work-dir> rings|inflight|fork|wait");
  if (strcmp(argv[3], "rings") == 0) return rings(argv[1], argv[2]);
  if (strcmp(argv[3], "inflight") == 0) return inflight(argv[1]);
  if (strcmp(argv[3], "fork") == 0) return forked(argv[1]);
  if (strcmp(argv[3], "wait") == 0) return waiting(argv[1]);
  return 2;
}
