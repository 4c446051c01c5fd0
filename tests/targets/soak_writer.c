/* Soak target for policies: a writer that never stops. Every `period` ms it
 * writes record number n (32 bytes, a pure function of n) at offset n*32 of
 * `<work>/data` with pwrite, sets word n of an in-memory log (a 4 MiB
 * buffer, wrapping) to the same function, and adds it to a running sum.
 * Records are a function of their number, so a restore from an older
 * checkpoint that writes them again writes the same bytes.
 *
 * It prints "ready pid=<pid>" first, then "wrote <n>" every 100 records.
 * Once the trigger file exists, it checks itself: the in-memory log and
 * the running sum agree with the records written so far, the data file
 * holds every record below n, and its fd still points at that file and
 * offset; it prints "check memory|sum|file|fd ok|FAIL" lines, then PASS or
 * FAIL, and exits.
 *
 * usage: soak_writer <trigger-path> <work-dir> [period-ms]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common.h"

#define LOG_WORDS ((4u << 20) / 8u)

struct record {
  uint64_t n, a, b, c;
};

static uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 29);
}

static struct record record_of(uint64_t n) {
  struct record r = {n, mix(n), mix(n + 1) ^ 0xa5a5a5a5a5a5a5a5ull, mix(~n)};
  return r;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "soak_writer <trigger> <work> [period-ms]");
  const char *trigger = argv[1];
  long period = argc > 3 ? atol(argv[3]) : 10;
  char path[512];
  snprintf(path, sizeof path, "%s/data", argv[2]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open data");
  uint64_t *log = malloc(LOG_WORDS * sizeof(uint64_t));
  if (!log) die("malloc");
  memset(log, 0, LOG_WORDS * sizeof(uint64_t));
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready pid=%d\n", getpid());

  uint64_t n = 0, sum = 0;
  while (access(trigger, F_OK) != 0) {
    struct record r = record_of(n);
    if (pwrite(fd, &r, sizeof r, (off_t)(n * sizeof r)) != sizeof r) die("pwrite");
    log[n % LOG_WORDS] = r.a;
    sum += r.a;
    n++;
    if (n % 100 == 0) printf("wrote %llu\n", (unsigned long long)n);
    sleep_ms(period);
  }

  int mem_ok = 1;
  uint64_t sum_check = 0, bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t a = record_of(i).a;
    sum_check += a;
    if (i + LOG_WORDS >= n && log[i % LOG_WORDS] != a && mem_ok) {
      mem_ok = 0;
      bad = i;
    }
  }
  check("memory", mem_ok, "log word %llu of %llu", (unsigned long long)bad,
        (unsigned long long)n);
  check("sum", sum_check == sum, "sum %llx, want %llx", (unsigned long long)sum,
        (unsigned long long)sum_check);

  int file_ok = 1;
  for (uint64_t i = 0; i < n && file_ok; i++) {
    struct record r, want = record_of(i);
    if (pread(fd, &r, sizeof r, (off_t)(i * sizeof r)) != sizeof r ||
        memcmp(&r, &want, sizeof r) != 0) {
      file_ok = 0;
      bad = i;
    }
  }
  check("file", file_ok, "record %llu of %llu", (unsigned long long)bad, (unsigned long long)n);

  struct stat a, b;
  int fd_ok = fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
              a.st_dev == b.st_dev && (fcntl(fd, F_GETFD) & FD_CLOEXEC);
  check("fd", fd_ok, "fd %d is not %s", fd, path);
  printf("records %llu\n", (unsigned long long)n);
  return verdict();
}
