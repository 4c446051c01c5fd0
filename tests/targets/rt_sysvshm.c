/* Round-trip target for System V shared memory (tests/restore_sysvshm_test.ts).
 *
 * Segment A has a key (0x5c000000 | pid), 3 pages + 100 bytes, mode 0640,
 * owner set to uid 1234 gid 5678 with IPC_SET; the parent attaches it
 * read-write and read-only. Segment B is IPC_PRIVATE, 2 pages, attached
 * read-write and then marked for removal (IPC_RMID). The parent forks a
 * child, which inherits the three attachments and attaches A once more.
 * After the restore (trigger file): both segments have the same ids, key,
 * size, mode, owner, content, removal mark and attach counts; the
 * read-only attachment cannot be made writable, the read-write one keeps
 * its read-only middle page (three mappings); writes by one process
 * are seen by the other through every attachment.
 *
 * usage: rt_sysvshm <trigger-file>
 * Prints "ready pid=P child=C a=<shmid> b=<shmid>" and waits for the trigger.
 */
#define _GNU_SOURCE
#include "common.h"
#include <errno.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define A_SIZE (3 * 4096 + 100)
#define B_SIZE (2 * 4096)

static volatile int *at(char *s, size_t off) { return (volatile int *)(s + off); }

static int await_value(char *s, size_t off, int v) {
  struct timespec ts = {0, 5 * 1000 * 1000};
  for (int i = 0; i < 1000; i++) {
    if (*at(s, off) == v) return 1;
    nanosleep(&ts, NULL);
  }
  return 0;
}

static int pattern_ok(const char *s, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 97)
    if (s[i] != (char)(i * 7 + seed)) return 0;
  return 1;
}

static void fill(char *s, size_t len, int seed) {
  for (size_t i = 0; i < len; i += 97) s[i] = (char)(i * 7 + seed);
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_sysvshm <trigger-file>");
  key_t key = (key_t)(0x5c000000 | getpid());
  int a = shmget(key, A_SIZE, IPC_CREAT | IPC_EXCL | 0640);
  if (a < 0) die("shmget a");
  int b = shmget(IPC_PRIVATE, B_SIZE, IPC_CREAT | 0600);
  if (b < 0) die("shmget b");
  char *pa = shmat(a, NULL, 0);
  char *pr = shmat(a, NULL, SHM_RDONLY);
  char *pb = shmat(b, NULL, 0);
  if (pa == (void *)-1 || pr == (void *)-1 || pb == (void *)-1) die("shmat");
  fill(pa, A_SIZE, 3);
  fill(pb, B_SIZE, 11);
  struct shmid_ds ds;
  if (shmctl(a, IPC_STAT, &ds)) die("IPC_STAT");
  ds.shm_perm.uid = 1234;
  ds.shm_perm.gid = 5678;
  if (shmctl(a, IPC_SET, &ds)) die("IPC_SET");
  if (shmctl(b, IPC_RMID, NULL)) die("IPC_RMID");
  /* The middle page of the read-write attachment made read-only: one attachment, three mappings. */
  if (mprotect(pa + 4096, 4096, PROT_READ)) die("mprotect");
  int sync[2];
  if (pipe(sync)) die("pipe");

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    char *pc = shmat(a, NULL, 0);
    if (pc == (void *)-1) die("child shmat");
    close(sync[0]);
    if (write(sync[1], "x", 1) != 1) die("write");
    close(sync[1]);
    wait_trigger(argv[1]);
    check("child-content", pattern_ok(pc, A_SIZE, 3), "");
    check("child-sees-parent", await_value(pc, 100, 0x1234), "");
    check("child-sees-parent-ro", *at(pr, 100) == 0x1234, "");
    *at(pb, 200) = 0x5678;
    *at(pa, 300) = 0x9abc;
    _exit(failures);
  }
  close(sync[1]);
  char c;
  if (read(sync[0], &c, 1) != 1) die("child setup");
  close(sync[0]);
  struct shmid_ds ra, rb;
  if (shmctl(a, IPC_STAT, &ra) || shmctl(b, IPC_STAT, &rb)) die("IPC_STAT");
  print_ready("pid=%d child=%d a=%d b=%d", getpid(), child, a, b);
  wait_trigger(argv[1]);

  struct shmid_ds sa, sb;
  check("stat-a", shmctl(a, IPC_STAT, &sa) == 0, "errno %d", errno);
  check("stat-b", shmctl(b, IPC_STAT, &sb) == 0, "errno %d", errno);
  check("key-a", sa.shm_perm.__key == key, "0x%x", sa.shm_perm.__key);
  check("size-a", sa.shm_segsz == A_SIZE, "%zu", sa.shm_segsz);
  check("mode-a", (sa.shm_perm.mode & 07777) == 0640, "0%o", sa.shm_perm.mode);
  check("owner-a", sa.shm_perm.uid == 1234 && sa.shm_perm.gid == 5678, "%d:%d",
        sa.shm_perm.uid, sa.shm_perm.gid);
  check("creator-a", sa.shm_perm.cuid == getuid(), "%d", sa.shm_perm.cuid);
  check("nattch-a", sa.shm_nattch == ra.shm_nattch, "%lu, was %lu", (unsigned long)sa.shm_nattch,
        (unsigned long)ra.shm_nattch);
  check("key-b", sb.shm_perm.__key == IPC_PRIVATE, "0x%x", sb.shm_perm.__key);
  check("size-b", sb.shm_segsz == B_SIZE, "%zu", sb.shm_segsz);
  check("removed-b", (sb.shm_perm.mode & SHM_DEST) != 0, "0%o", sb.shm_perm.mode);
  check("mode-b", (sb.shm_perm.mode & 0777) == 0600, "0%o", sb.shm_perm.mode);
  check("nattch-b", sb.shm_nattch == rb.shm_nattch && rb.shm_nattch == 2, "%lu, was %lu",
        (unsigned long)sb.shm_nattch, (unsigned long)rb.shm_nattch);
  check("ro-page", mprotect(pa + 4096, 4096, PROT_READ | PROT_WRITE) == 0, "errno %d", errno);
  check("content-a", pattern_ok(pa, A_SIZE, 3), "");
  check("content-ro", pattern_ok(pr, A_SIZE, 3), "");
  check("content-b", pattern_ok(pb, B_SIZE, 11), "");
  check("ro-stays-ro", mprotect(pr, 4096, PROT_READ | PROT_WRITE) != 0 && errno == EACCES,
        "errno %d", errno);
  *at(pa, 100) = 0x1234;
  check("parent-sees-child-b", await_value(pb, 200, 0x5678), "");
  check("parent-sees-child-a", await_value(pa, 300, 0x9abc), "");
  check("parent-sees-child-ro", *at(pr, 300) == 0x9abc, "");
  int st = 0;
  if (waitpid(child, &st, 0) != child) die("waitpid");
  check("child", WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
  shmctl(a, IPC_RMID, NULL);
  return verdict();
}
