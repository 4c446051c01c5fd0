/* Raw baselines for `deno task bench`: the kernel work a dump and a
 * restore cannot avoid, done serially by the simplest C program.
 *
 *   baseline dump <pid> <ranges-file> <out-file> [write|mmap|mmap-populate]
 *     reads each range "<addr-hex> <length>" (one per line) of process
 *     <pid> with process_vm_readv into one 16 MiB buffer and write()s it
 *     to <out-file>, chunk after chunk (no overlap, no fsync). The mmap
 *     variants (for the analysis in docs/PERFORMANCE.md, not the baseline)
 *     instead size the file first and process_vm_readv each chunk straight
 *     into a 16 MiB MAP_SHARED window of it (one copy instead of two);
 *     mmap-populate first faults the window in with MADV_POPULATE_WRITE.
 *   baseline restore <file> <bytes> [plain|populate|hugepage]
 *     mmaps <bytes> of fresh anonymous memory and pread()s <file> into
 *     it, 16 MiB at a time. The variants (for the analysis in
 *     docs/PERFORMANCE.md, not the baseline) first madvise the memory:
 *     populate = MADV_POPULATE_WRITE (fault everything in one call),
 *     hugepage = MADV_HUGEPAGE (transparent huge pages where aligned).
 *
 *   baseline warm <bytes>
 *     touches <bytes> of fresh anonymous memory and exits. Run right
 *     before a measurement, it leaves that much recently used free memory
 *     behind: on these VMs (free page reporting) memory freed more than
 *     ~1 s ago is handed back to the host and is 2-4x slower to use again,
 *     so without this the order of two measurements decides their speed.
 *
 * Each prints "seconds <s> bytes <n>" on stdout.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (16UL << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int dump_mmap(pid_t pid, FILE *rf, const char *outPath, int populate) {
  unsigned long long addr, len, total = 0;
  while (fscanf(rf, "%llx %llu", &addr, &len) == 2) total += len;
  rewind(rf);
  int out = open(outPath, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (out < 0) die(outPath);
  double t0 = now();
  if (ftruncate(out, (off_t)total) != 0) die("ftruncate");
  size_t pos = 0;
  while (fscanf(rf, "%llx %llu", &addr, &len) == 2) {
    for (unsigned long long done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      uint8_t *win = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, out, (off_t)pos);
      if (win == MAP_FAILED) die("mmap(window)");
      if (populate && madvise(win, n, MADV_POPULATE_WRITE) != 0) die("madvise");
      struct iovec local = {win, n}, remote = {(void *)(uintptr_t)(addr + done), n};
      ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (r != (ssize_t)n) die("process_vm_readv");
      munmap(win, n);
      done += n;
      pos += n;
    }
  }
  double t1 = now();
  close(out);
  printf("seconds %.6f bytes %zu\n", t1 - t0, pos);
  return 0;
}

static int dump(pid_t pid, const char *rangesPath, const char *outPath, const char *variant) {
  FILE *rf = fopen(rangesPath, "r");
  if (!rf) die(rangesPath);
  if (strncmp(variant, "mmap", 4) == 0) {
    return dump_mmap(pid, rf, outPath, strcmp(variant, "mmap-populate") == 0);
  }
  uint8_t *buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) die("mmap");
  memset(buf, 0, CHUNK); /* the buffer is warm, as a tool's reused buffer would be */
  int out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) die(outPath);
  unsigned long long addr, len;
  size_t total = 0;
  double t0 = now();
  while (fscanf(rf, "%llx %llu", &addr, &len) == 2) {
    for (unsigned long long done = 0; done < len;) {
      size_t n = len - done < CHUNK ? len - done : CHUNK;
      struct iovec local = {buf, n}, remote = {(void *)(uintptr_t)(addr + done), n};
      ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (r <= 0) die("process_vm_readv");
      for (ssize_t w = 0; w < r;) {
        ssize_t k = write(out, buf + w, r - w);
        if (k <= 0) die("write");
        w += k;
      }
      done += r;
      total += r;
    }
  }
  double t1 = now();
  close(out);
  printf("seconds %.6f bytes %zu\n", t1 - t0, total);
  return 0;
}

static int restore(const char *path, size_t bytes, const char *variant) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die(path);
  double t0 = now();
  uint8_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  if (strcmp(variant, "populate") == 0 && madvise(mem, bytes, MADV_POPULATE_WRITE) != 0) {
    die("madvise(MADV_POPULATE_WRITE)");
  }
  if (strcmp(variant, "hugepage") == 0 && madvise(mem, bytes, MADV_HUGEPAGE) != 0) {
    die("madvise(MADV_HUGEPAGE)");
  }
  size_t total = 0;
  while (total < bytes) {
    size_t n = bytes - total < CHUNK ? bytes - total : CHUNK;
    ssize_t r = pread(fd, mem + total, n, total);
    if (r <= 0) die("pread");
    total += r;
  }
  double t1 = now();
  printf("seconds %.6f bytes %zu\n", t1 - t0, total);
  return 0;
}

static int warm(size_t bytes) {
  double t0 = now();
  uint8_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  for (size_t off = 0; off < bytes; off += 4096) mem[off] = 1;
  printf("seconds %.6f bytes %zu\n", now() - t0, bytes);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "warm") == 0) return warm(strtoull(argv[2], NULL, 10));
  if ((argc == 5 || argc == 6) && strcmp(argv[1], "dump") == 0) {
    return dump(atoi(argv[2]), argv[3], argv[4], argc == 6 ? argv[5] : "write");
  }
  if ((argc == 4 || argc == 5) && strcmp(argv[1], "restore") == 0) {
    return restore(argv[2], strtoull(argv[3], NULL, 10), argc == 5 ? argv[4] : "plain");
  }
  fprintf(stderr, "usage: baseline dump <pid> <ranges> <out> [variant] | restore <file> <bytes> [variant] | warm <bytes>\n");
  return 2;
}
