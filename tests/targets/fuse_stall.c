/* A tiny FUSE file system spoken straight over /dev/fuse (no libfuse), for
 * probes of processes blocked in a FUSE request at dump time
 * (tests/dump_oddstate_test.ts). It serves one file "f" of FILE_SIZE bytes
 * (byte i is i % 251), opened with direct I/O (every read reaches us).
 *
 * usage: fuse_stall <mount-dir> <release-path> <mode>
 *   read: READ requests are held unanswered until the file <release-path>
 *     exists, then answered in full; INTERRUPT requests are ignored;
 *   read-eintr: the same, but an INTERRUPT of a held READ is answered at
 *     once with EINTR for that READ (as a server supporting interrupts);
 *   flush: FLUSH requests (every close) are held until <release-path>.
 * Prints "ready pid=N" once mounted, "held <opcode>" for each request it
 * holds, and unmounts (lazily) when <release-path> exists and nothing is
 * held. The kernel sends nothing once the mount is gone and no file is open.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define FILE_SIZE (1 << 20)
#define MAX_HELD 64

static int dev;

static void reply(uint64_t unique, int error, const void *body, size_t len) {
  struct fuse_out_header h = {.len = sizeof h + (error ? 0 : len), .error = -error, .unique = unique};
  char buf[sizeof h + 65536];
  memcpy(buf, &h, sizeof h);
  if (!error && len) memcpy(buf + sizeof h, body, len);
  if (write(dev, buf, h.len) < 0 && errno != ENOENT) die("write /dev/fuse");
}

static void fill_attr(struct fuse_attr *a, uint64_t node) {
  memset(a, 0, sizeof *a);
  a->ino = node;
  a->nlink = 1;
  a->blksize = 4096;
  if (node == FUSE_ROOT_ID) {
    a->mode = S_IFDIR | 0755;
    a->nlink = 2;
  } else {
    a->mode = S_IFREG | 0644;
    a->size = FILE_SIZE;
    a->blocks = FILE_SIZE / 512;
  }
}

struct held {
  uint64_t unique, offset;
  uint32_t opcode, size;
};

static struct held held[MAX_HELD];
static int nheld;

static void answer_read(uint64_t unique, uint64_t offset, uint32_t size) {
  static char data[65536];
  if (offset >= FILE_SIZE) size = 0;
  else if (offset + size > FILE_SIZE) size = FILE_SIZE - offset;
  if (size > sizeof data) size = sizeof data;
  for (uint32_t i = 0; i < size; i++) data[i] = (char)((offset + i) % 251);
  reply(unique, 0, data, size);
}

static void answer_held(struct held *h) {
  if (h->opcode == FUSE_READ) answer_read(h->unique, h->offset, h->size);
  else reply(h->unique, 0, NULL, 0);
}

int main(int argc, char **argv) {
  need_args(argc, 3, "fuse_stall <mount-dir> <release-path> read|read-eintr|flush");
  const char *dir = argv[1], *release = argv[2], *mode = argv[3];
  int hold_read = !strncmp(mode, "read", 4), eintr = !strcmp(mode, "read-eintr");
  int hold_flush = !strcmp(mode, "flush");
  dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (dev < 0) die("open /dev/fuse");
  char opts[128];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", dev);
  if (mount("cryo-fuse-stall", dir, "fuse.cryo-stall", MS_NOSUID | MS_NODEV, opts) != 0)
    die("mount fuse");
  print_ready("pid=%d", getpid());
  static char buf[FUSE_MIN_READ_BUFFER + 65536];
  int unmounted = 0;
  for (;;) {
    int released = access(release, F_OK) == 0;
    if (released && nheld) {
      for (int i = 0; i < nheld; i++) answer_held(&held[i]);
      nheld = 0;
    }
    if (released && !unmounted) {
      umount2(dir, MNT_DETACH);
      unmounted = 1;
    }
    struct pollfd p = {.fd = dev, .events = POLLIN};
    int r = poll(&p, 1, 20);
    if (r < 0 && errno != EINTR) die("poll");
    if (r <= 0) continue;
    ssize_t n = read(dev, buf, sizeof buf);
    if (n < 0) {
      if (errno == ENODEV) return 0; /* unmounted, every file closed */
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      die("read /dev/fuse");
    }
    struct fuse_in_header *in = (void *)buf;
    void *body = buf + sizeof *in;
    switch (in->opcode) {
    case FUSE_INIT: {
      struct fuse_init_in *ii = body;
      struct fuse_init_out o = {.major = FUSE_KERNEL_VERSION,
                                .minor = ii->minor < 31 ? ii->minor : 31,
                                .max_readahead = 65536,
                                .max_write = 65536,
                                .max_background = 4,
                                .congestion_threshold = 3};
      reply(in->unique, 0, &o, sizeof o);
      break;
    }
    case FUSE_LOOKUP: {
      if (in->nodeid != FUSE_ROOT_ID || strcmp(body, "f") != 0) {
        reply(in->unique, ENOENT, NULL, 0);
        break;
      }
      struct fuse_entry_out e = {.nodeid = 2, .generation = 1};
      fill_attr(&e.attr, 2);
      reply(in->unique, 0, &e, sizeof e);
      break;
    }
    case FUSE_GETATTR: {
      struct fuse_attr_out a = {0};
      fill_attr(&a.attr, in->nodeid);
      reply(in->unique, 0, &a, sizeof a);
      break;
    }
    case FUSE_OPEN:
    case FUSE_OPENDIR: {
      struct fuse_open_out o = {.fh = 1, .open_flags = FOPEN_DIRECT_IO};
      reply(in->unique, 0, &o, sizeof o);
      break;
    }
    case FUSE_READ: {
      struct fuse_read_in *ri = body;
      if (hold_read && !released && nheld < MAX_HELD) {
        held[nheld++] = (struct held){in->unique, ri->offset, FUSE_READ, ri->size};
        printf("held read\n");
        fflush(stdout);
      } else {
        answer_read(in->unique, ri->offset, ri->size);
      }
      break;
    }
    case FUSE_FLUSH:
      if (hold_flush && !released && nheld < MAX_HELD) {
        held[nheld++] = (struct held){in->unique, 0, FUSE_FLUSH, 0};
        printf("held flush\n");
        fflush(stdout);
      } else {
        reply(in->unique, 0, NULL, 0);
      }
      break;
    case FUSE_INTERRUPT: {
      struct fuse_interrupt_in *ii = body;
      printf("interrupt\n");
      fflush(stdout);
      if (!eintr) break; /* no reply: the interrupted request stays held */
      for (int i = 0; i < nheld; i++) {
        if (held[i].unique != ii->unique) continue;
        reply(held[i].unique, EINTR, NULL, 0);
        held[i] = held[--nheld];
        break;
      }
      break;
    }
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
      reply(in->unique, 0, NULL, 0);
      break;
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
      break; /* no reply */
    case FUSE_DESTROY:
      reply(in->unique, 0, NULL, 0);
      return 0;
    default:
      reply(in->unique, ENOSYS, NULL, 0);
    }
  }
}
