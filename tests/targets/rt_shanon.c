/* One shared anonymous object (MAP_SHARED|MAP_ANONYMOUS, 4 pages) mapped
 * in three places not side by side: its first 3 pages where it was made,
 * its last page moved elsewhere by mremap, and its second page mapped once
 * more through /proc/self/map_files (an overlapping view; not with
 * argument "noview"). Argument "forked": a child forked after that holds
 * the same three pieces.
 * Prints "ready pid=<pid> child=<its child, or -1>", waits for SIGUSR1
 * (sent after the restore), then checks that the pieces are still one object: the maps offsets and
 * the object's size are as before, every piece's map_files entry is one
 * inode, the data is intact, a write through one piece is seen through the
 * others (and through the object itself, read by pread), a child forked
 * now writes into it, the moved page moved back merges with the first
 * piece; "forked": the old child writes through its moved piece and the
 * parent sees it. Argument "apart": a parent and a child hold pieces of one
 * object at different addresses and offsets (see apart()); both check
 * them, and each sees the other's write. Prints check lines and PASS/FAIL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096UL

/* The maps offset and inode of the area starting at `addr`, and its end. */
static int area_of(void *addr, unsigned long *offset, unsigned long *inode, unsigned long *end) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) die("maps");
  char line[512];
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e, off, ino;
    unsigned maj, min;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &s, &e, perms, &off, &maj, &min, &ino) != 7)
      continue;
    if (s != (unsigned long)addr) continue;
    *offset = off;
    *inode = ino;
    *end = e;
    found = 1;
  }
  fclose(f);
  return found;
}

/* The object behind [addr, end), opened through map_files. */
static int open_object(void *addr, unsigned long end) {
  char path[128];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)addr, end);
  return open(path, O_RDWR);
}

struct piece {
  char *addr;
  unsigned long offset, inode, end;
};

static void record(struct piece *p) {
  if (!area_of(p->addr, &p->offset, &p->inode, &p->end)) die("no area");
}

/* The checks both processes make of their pieces `now` against `was`. */
static void check_pieces(const char *who, struct piece *was, int n, long size) {
  struct piece now[3];
  for (int i = 0; i < n; i++) {
    now[i].addr = was[i].addr;
    int found = area_of(now[i].addr, &now[i].offset, &now[i].inode, &now[i].end);
    char name[64];
    snprintf(name, sizeof name, "%s-area%d", who, i);
    check(name, found && now[i].end == was[i].end && now[i].offset == was[i].offset,
          "offset %lx end %lx (before %lx %lx)", now[i].offset, now[i].end, was[i].offset,
          was[i].end);
  }
  struct stat st[3];
  int same = 1;
  for (int i = 0; i < n; i++) {
    int fd = open_object(now[i].addr, now[i].end);
    if (fd < 0 || fstat(fd, &st[i]) != 0) die("map_files");
    close(fd);
    same &= st[i].st_ino == st[0].st_ino && st[i].st_dev == st[0].st_dev &&
            now[i].inode == now[0].inode;
  }
  char name[64];
  snprintf(name, sizeof name, "%s-one-inode", who);
  check(name, same, "inodes %lu %lu %lu", (unsigned long)st[0].st_ino,
        (unsigned long)st[1].st_ino, (unsigned long)st[n - 1].st_ino);
  snprintf(name, sizeof name, "%s-size", who);
  check(name, st[0].st_size == size, "size %ld", (long)st[0].st_size);
}

/* Whether the `n` pieces' data is as written: page i of the object holds 'a' + i. */
static int data_ok(struct piece *ps, int n) {
  int ok = 1;
  for (int i = 0; i < n; i++)
    for (unsigned long a = (unsigned long)ps[i].addr; a < ps[i].end; a += 64)
      ok &= *(char *)a == 'a' + (int)((ps[i].offset + a - (unsigned long)ps[i].addr) / PAGE);
  return ok;
}

/* "apart": the parent and a child hold pieces of one object at different
 * addresses and offsets, each moved by mremap after the fork. */
static int apart(void) {
  char *obj = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (obj == MAP_FAILED) die("mmap");
  for (int i = 0; i < 4; i++) memset(obj + i * PAGE, 'a' + i, PAGE);
  sigset_t old;
  arm_usr1(&old);
  int ready[2];
  if (pipe(ready) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    /* The child: the first 3 pages where they were, the last one moved. */
    char *hole = mmap(NULL, 5 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *moved = mremap(obj + 3 * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 2 * PAGE);
    if (hole == MAP_FAILED || moved == MAP_FAILED) die("child mremap");
    struct piece was[2] = {{.addr = obj}, {.addr = moved}};
    for (int i = 0; i < 2; i++) record(&was[i]);
    if (write(ready[1], "r", 1) != 1) die("write");
    wait_usr1(&old);
    check_pieces("child", was, 2, 4 * PAGE);
    check("child-data", data_ok(was, 1) && moved[0] == 'd', "%c %c", obj[0], moved[0]);
    check("parent-write-seen", obj[PAGE + 5] == 'P', "read %c", obj[PAGE + 5]);
    moved[7] = 'K';
    _exit(verdict());
  }
  char c;
  if (read(ready[0], &c, 1) != 1) die("read");
  /* The parent: page 0 unmapped, page 2 moved elsewhere. */
  char *hole = mmap(NULL, 7 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *moved = mremap(obj + 2 * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 3 * PAGE);
  if (hole == MAP_FAILED || moved == MAP_FAILED) die("mremap");
  munmap(obj, PAGE);
  struct piece was[3] = {{.addr = obj + PAGE}, {.addr = moved}, {.addr = obj + 3 * PAGE}};
  for (int i = 0; i < 3; i++) record(&was[i]);
  print_ready("pid=%d child=%d", getpid(), (int)child);
  wait_usr1(&old);
  check_pieces("parent", was, 3, 4 * PAGE);
  check("parent-data", data_ok(was, 3), "%c %c %c", obj[PAGE], moved[0], obj[3 * PAGE]);
  obj[PAGE + 5] = 'P';
  kill(child, SIGUSR1);
  int status = 0;
  waitpid(child, &status, 0);
  check("child", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
  check("child-write-seen", obj[3 * PAGE + 7] == 'K', "read %c", obj[3 * PAGE + 7]);
  return verdict();
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "apart") == 0) return apart();
  int forked = argc > 1 && strcmp(argv[1], "forked") == 0;
  int noview = argc > 1 && strcmp(argv[1], "noview") == 0;
  int n = noview ? 2 : 3;
  char *obj = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (obj == MAP_FAILED) die("mmap");
  for (int i = 0; i < 4; i++) memset(obj + i * PAGE, 'a' + i, PAGE);
  /* A hole of 3 pages far from it; the last page moved into its middle. */
  char *hole = mmap(NULL, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (hole == MAP_FAILED) die("mmap hole");
  char *moved = mremap(obj + 3 * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, hole + PAGE);
  if (moved == MAP_FAILED) die("mremap");
  int fd = open_object(obj, (unsigned long)obj + 3 * PAGE);
  if (fd < 0) die("map_files");
  char *view = noview ? obj + PAGE : mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, PAGE);
  if (view == MAP_FAILED) die("mmap view");
  close(fd);
  struct piece was[3] = {{.addr = obj}, {.addr = moved}, {.addr = view}};
  for (int i = 0; i < n; i++) record(&was[i]);
  sigset_t old;
  arm_usr1(&old);
  pid_t child = -1;
  if (forked) {
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      wait_usr1(&old);
      check_pieces("child", was, n, 4 * PAGE);
      moved[7] = 'K';
      _exit(verdict());
    }
  }
  print_ready("pid=%d child=%d", getpid(), (int)child);
  wait_usr1(&old);
  check_pieces("parent", was, n, 4 * PAGE);
  int ok = 1;
  for (int i = 0; i < 3; i++)
    for (size_t k = 0; k < PAGE; k++) ok &= obj[i * PAGE + k] == 'a' + i;
  for (size_t k = 0; k < PAGE; k++) ok &= moved[k] == 'd' && view[k] == 'b';
  check("data", ok, "%c %c %c %c", obj[0], obj[PAGE], moved[0], view[0]);
  /* Through the moved piece, seen in the object at its offset. */
  moved[1] = 'M';
  fd = open_object(obj, (unsigned long)obj + 3 * PAGE);
  char c = 0;
  if (fd < 0 || pread(fd, &c, 1, 3 * PAGE + 1) != 1) die("pread");
  check("moved-write-seen", c == 'M', "read %c", c);
  /* Through the first piece, seen in the view. */
  obj[PAGE + 2] = 'V';
  check("view-write-seen", view[2] == 'V', "view %c", view[2]);
  /* A child forked now writes through the moved piece. */
  pid_t now = fork();
  if (now < 0) die("fork");
  if (now == 0) {
    moved[3] = 'F';
    _exit(0);
  }
  int status = 0;
  waitpid(now, &status, 0);
  c = 0;
  if (pread(fd, &c, 1, 3 * PAGE + 3) != 1) die("pread");
  check("fork-write-seen", c == 'F', "read %c", c);
  if (forked) {
    kill(child, SIGUSR1);
    waitpid(child, &status, 0);
    check("old-child", WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
    c = 0;
    if (pread(fd, &c, 1, 3 * PAGE + 7) != 1) die("pread");
    check("old-child-write-seen", c == 'K', "read %c", c);
  }
  close(fd);
  /* Moved back: one area again, its last page the moved one. */
  char *back = mremap(moved, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, obj + 3 * PAGE);
  unsigned long off = 1, ino = 0, end = 0;
  int found = back != MAP_FAILED && area_of(obj, &off, &ino, &end);
  check("moved-back-merges", found && end == (unsigned long)obj + 4 * PAGE && off == 0,
        "end %lx offset %lx", end, off);
  check("moved-back-data", back != MAP_FAILED && obj[3 * PAGE + 1] == 'M', "%c",
        back != MAP_FAILED ? obj[3 * PAGE + 1] : '?');
  return verdict();
}
