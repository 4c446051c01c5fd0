/* Restore-time world probe: holds one kind of outside resource, prints
 * "ready <pid>", waits for the trigger file, then checks that what it sees
 * is what it had at the dump, one "check <name> ok|FAIL <detail>" line per
 * item, then PASS or FAIL. The test changes the world between dump and
 * restore (tests/restore_world_test.ts): a restore must either bring back
 * exactly the recorded state, or refuse.
 *
 * usage: rt_world <trigger> <work-dir> <mode>
 * modes:
 *   fd       <work>/f.bin open O_RDWR at offset 100
 *   private  <work>/p.bin mapped MAP_PRIVATE, 3 pages: page 0 read (clean),
 *            page 1 written (copied), page 2 never touched
 *   shared   <work>/s.bin mapped MAP_SHARED, page 0 written through the map
 *   cwd      working directory <work>/d
 *   dirfd    <work>/d open O_DIRECTORY
 *   dev      <work>/nul, a character device node (1:3, /dev/null's), open
 *   fifo     <work>/fifo open O_RDWR
 *   unix     a listening unix socket bound at <work>/sock
 *   root     root directory <work>/r (chroot; the trigger is then /go in it)
 *   plain    nothing outside (for image probes): a page of memory pattern
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include "common.h"

#define PAGE 4096
static char work[2048];
static char path[2600];

static const char *at(const char *name) {
  snprintf(path, sizeof path, "%s/%s", work, name);
  return path;
}

/* Byte i of the original content of the probe files. */
static char orig(long i) { return (char)('a' + i % 26); }

static void make_file(const char *name, long bytes) {
  int fd = open(at(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("create");
  static char buf[4 * PAGE];
  for (long i = 0; i < bytes; i++) buf[i] = orig(i);
  if (write(fd, buf, bytes) != bytes) die("write");
  close(fd);
}

static int same_orig(const char *p, long from, long n) {
  for (long i = 0; i < n; i++)
    if (p[i] != orig(from + i)) return 0;
  return 1;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_world <trigger> <work-dir> <mode>");
  snprintf(work, sizeof work, "%s", argv[2]);
  const char *mode = argv[3];
  static char memory[PAGE];
  for (int i = 0; i < PAGE; i++) memory[i] = orig(i * 7);
  int fd = -1;
  char *map = NULL;
  struct stat before;
  memset(&before, 0, sizeof before);

  if (!strcmp(mode, "fd")) {
    make_file("f.bin", 2 * PAGE);
    fd = open(at("f.bin"), O_RDWR);
    if (fd < 0 || lseek(fd, 100, SEEK_SET) != 100) die("open f.bin");
    fstat(fd, &before);
  } else if (!strcmp(mode, "private")) {
    make_file("p.bin", 3 * PAGE);
    fd = open(at("p.bin"), O_RDONLY);
    if (fd < 0) die("open p.bin");
    map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) die("mmap");
    fstat(fd, &before);
    close(fd);
    fd = -1;
    volatile char c = map[0];
    (void)c;
    memset(map + PAGE, 'W', PAGE);
  } else if (!strcmp(mode, "shared")) {
    make_file("s.bin", PAGE);
    fd = open(at("s.bin"), O_RDWR);
    if (fd < 0) die("open s.bin");
    map = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) die("mmap");
    fstat(fd, &before);
    close(fd);
    fd = -1;
    map[0] = 'S';
  } else if (!strcmp(mode, "cwd")) {
    mkdir(at("d"), 0755);
    if (chdir(at("d"))) die("chdir");
    stat(".", &before);
  } else if (!strcmp(mode, "dirfd")) {
    mkdir(at("d"), 0755);
    fd = open(at("d"), O_RDONLY | O_DIRECTORY);
    if (fd < 0) die("open d");
    fstat(fd, &before);
  } else if (!strcmp(mode, "dev")) {
    if (mknod(at("nul"), S_IFCHR | 0666, makedev(1, 3))) die("mknod");
    fd = open(at("nul"), O_RDWR);
    if (fd < 0) die("open nul");
    fstat(fd, &before);
  } else if (!strcmp(mode, "fifo")) {
    if (mkfifo(at("fifo"), 0644)) die("mkfifo");
    fd = open(at("fifo"), O_RDWR);
    if (fd < 0) die("open fifo");
    if (write(fd, "q", 1) != 1) die("write fifo");
    fstat(fd, &before);
  } else if (!strcmp(mode, "unix")) {
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", at("sock"));
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4)) die("unix");
  } else if (!strcmp(mode, "root")) {
    /* The trigger is then <work>/r/go, seen as /go; the cwd stays <work>, outside the root. */
    mkdir(at("r"), 0755);
    if (chroot(at("r"))) die("chroot");
    stat("/", &before);
  } else if (strcmp(mode, "plain")) {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }

  print_ready("%d", getpid());
  wait_trigger(strcmp(mode, "root") ? argv[1] : "/go");

  int mem_ok = 1;
  for (int i = 0; i < PAGE; i++) mem_ok &= memory[i] == orig(i * 7);
  check("memory", mem_ok, "");
  struct stat now;
  if (!strcmp(mode, "fd") || !strcmp(mode, "dirfd") || !strcmp(mode, "dev") || !strcmp(mode, "fifo")) {
    int ok = fstat(fd, &now) == 0;
    check("same-inode", ok && now.st_ino == before.st_ino && now.st_dev == before.st_dev,
          "ino %lu -> %lu", (unsigned long)before.st_ino, (unsigned long)now.st_ino);
    check("same-type", ok && (now.st_mode & S_IFMT) == (before.st_mode & S_IFMT), "");
    check("same-rdev", ok && now.st_rdev == before.st_rdev, "");
  }
  if (!strcmp(mode, "fd")) {
    check("offset", lseek(fd, 0, SEEK_CUR) == 100, "");
    check("size", now.st_size == before.st_size, "%ld -> %ld", (long)before.st_size, (long)now.st_size);
    char buf[64];
    check("content", pread(fd, buf, 64, 100) == 64 && same_orig(buf, 100, 64), "");
  } else if (!strcmp(mode, "private")) {
    check("page0-clean", same_orig(map, 0, PAGE), "'%c' at 0", map[0]);
    int w = 1;
    for (int i = 0; i < PAGE; i++) w &= map[PAGE + i] == 'W';
    check("page1-written", w, "");
    check("page2-untouched", same_orig(map + 2 * PAGE, 2 * PAGE, PAGE), "'%c' at 2*PAGE", map[2 * PAGE]);
  } else if (!strcmp(mode, "shared")) {
    int f = open(at("s.bin"), O_RDONLY);
    char buf[PAGE];
    int ok = f >= 0 && pread(f, buf, PAGE, 0) == PAGE && !memcmp(buf, map, PAGE);
    check("coherent", ok, "");
    struct stat st;
    check("same-inode", f >= 0 && fstat(f, &st) == 0 && st.st_ino == before.st_ino, "");
  } else if (!strcmp(mode, "cwd")) {
    int ok = stat(".", &now) == 0;
    check("cwd-inode", ok && now.st_ino == before.st_ino && now.st_dev == before.st_dev, "");
  } else if (!strcmp(mode, "root")) {
    int ok = stat("/", &now) == 0;
    check("root-inode", ok && now.st_ino == before.st_ino && now.st_dev == before.st_dev, "");
  } else if (!strcmp(mode, "fifo")) {
    char c = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    check("fifo-data", read(fd, &c, 1) == 1 && c == 'q', "");
  } else if (!strcmp(mode, "unix")) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", at("sock"));
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    check("connect", c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof sa) == 0, "%s", strerror(errno));
  }
  return verdict();
}
