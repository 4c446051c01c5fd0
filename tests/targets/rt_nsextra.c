/* A launched tree with UTS and IPC namespaces and a tmpfs of its own
 * (tests/nsextra_test.ts).
 *
 * usage: rt_nsextra <dir> <launched|self|mq>   (run by "cryo launch", pid 1)
 *
 * "launched": cryo launch gave it --hostname nsx-launch --ipc (checked);
 * "self": it unshares its UTS and IPC namespaces itself. Then it sets the
 * host and domain names, creates a System V message queue with two
 * messages, a semaphore set with values, a shm segment it fills and
 * detaches, another it keeps attached and marks removed, and mounts a tmpfs (nosuid, size=1m, mode=0750) at <dir>/mnt
 * with a file (owner 1234:5678, mode 0640), a directory with a file, and
 * a symlink (and times), and a second tmpfs at <dir>/ro made read-only
 * once filled. Prints "ready msq=<id> sem=<id> shm=<id>" and waits for
 * <dir>/go; then writes to <dir>/report the checks that all of it is
 * unchanged (ids, keys, contents, modes, owners, mount flags) and PASS.
 * "mq": it also opens a POSIX message queue (refused by cryo) and only waits.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>

#define MSG_KEY 0x4e5301
#define SEM_KEY 0x4e5302
#define SHM_KEY 0x4e5303
#define SHM_SIZE 8192
#define BIG 3000
#define TMPFS_MAGIC_ 0x01021994

struct msg {
  long mtype;
  char text[64];
};

union semun_ {
  int val;
  struct semid_ds *buf;
  unsigned short *array;
};

static void write_file(const char *path, const void *data, size_t n, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0 || write(fd, data, n) != (ssize_t)n) die("write file");
  close(fd);
  if (chmod(path, mode) != 0) die("chmod");
}

static int file_is(const char *path, const void *want, size_t n) {
  char buf[BIG + 16];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t got = read(fd, buf, sizeof buf);
  close(fd);
  return got == (ssize_t)n && memcmp(buf, want, n) == 0;
}

int main(int argc, char **argv) {
  need_args(argc, 2, "rt_nsextra <dir> <launched|self|mq>");
  const char *dir = argv[1], *mode = argv[2];
  char go[512], mnt[512], path[600];
  snprintf(go, sizeof go, "%s/go", dir);
  snprintf(mnt, sizeof mnt, "%s/mnt", dir);
  char host0[65] = "";
  gethostname(host0, sizeof host0);
  if (strcmp(mode, "self") == 0 && unshare(CLONE_NEWUTS | CLONE_NEWIPC) != 0) die("unshare");
  if (strcmp(mode, "mq") == 0) {
    mqd_t q = mq_open("/nsx-queue", O_CREAT | O_RDWR, 0600, NULL);
    if (q == (mqd_t)-1) die("mq_open");
    print_ready("mq");
    wait_trigger(go);
    return 0;
  }
  if (sethostname("nsx-host", 8) != 0 || setdomainname("nsx.domain", 10) != 0) die("names");

  int msq = msgget(MSG_KEY, IPC_CREAT | IPC_EXCL | 0640);
  if (msq < 0) die("msgget");
  struct msg m1 = {3, "first"}, m2 = {5, "second message"};
  if (msgsnd(msq, &m1, 6, 0) != 0 || msgsnd(msq, &m2, 15, 0) != 0) die("msgsnd");

  int sem = semget(SEM_KEY, 3, IPC_CREAT | IPC_EXCL | 0600);
  if (sem < 0) die("semget");
  unsigned short vals[3] = {1, 42, 7};
  if (semctl(sem, 0, SETALL, (union semun_){.array = vals}) != 0) die("semctl");

  int shm = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0604);
  if (shm < 0) die("shmget");
  unsigned char *p = shmat(shm, NULL, 0);
  if (p == (void *)-1) die("shmat");
  for (int i = 0; i < SHM_SIZE; i++) p[i] = (unsigned char)(i * 13 + 1);
  shmdt(p);

  /* A second segment, removed and kept attached. */
  int shm2 = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (shm2 < 0) die("shmget 2");
  unsigned char *p2 = shmat(shm2, NULL, 0);
  if (p2 == (void *)-1) die("shmat 2");
  memcpy(p2, "attached", 9);
  shmctl(shm2, IPC_RMID, NULL);

  static unsigned char big[BIG];
  for (int i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7 + 3);
  mkdir(mnt, 0755);
  if (mount("nsx", mnt, "tmpfs", MS_NOSUID, "size=1m,mode=0750") != 0) die("mount");
  snprintf(path, sizeof path, "%s/a.txt", mnt);
  write_file(path, "alpha\n", 6, 0640);
  if (chown(path, 1234, 5678) != 0) die("chown");
  snprintf(path, sizeof path, "%s/sub", mnt);
  if (mkdir(path, 0700) != 0) die("mkdir");
  snprintf(path, sizeof path, "%s/sub/b.bin", mnt);
  write_file(path, big, BIG, 0600);
  snprintf(path, sizeof path, "%s/link", mnt);
  if (symlink("a.txt", path) != 0) die("symlink");
  snprintf(path, sizeof path, "%s/a.txt", mnt);
  struct timespec times[2] = {{1000000000, 5}, {1200000000, 0}};
  if (utimensat(AT_FDCWD, path, times, 0) != 0) die("utimensat");
  /* A second tmpfs, filled and then made read-only. */
  char ro[512];
  snprintf(ro, sizeof ro, "%s/ro", dir);
  mkdir(ro, 0755);
  if (mount("nsx-ro", ro, "tmpfs", 0, "size=64k") != 0) die("mount ro");
  snprintf(path, sizeof path, "%s/c", ro);
  write_file(path, "frozen", 6, 0444);
  if (mount(NULL, ro, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) die("remount ro");

  print_ready("msq=%d sem=%d shm=%d", msq, sem, shm);
  wait_trigger(go);
  snprintf(path, sizeof path, "%s/report", dir);
  if (!freopen(path, "w", stdout)) die("freopen");

  if (strcmp(mode, "launched") == 0) {
    check("launch_hostname", strcmp(host0, "nsx-launch") == 0, "was %s", host0);
  }
  char host[65] = "", domain[65] = "";
  gethostname(host, sizeof host);
  getdomainname(domain, sizeof domain);
  check("hostname", strcmp(host, "nsx-host") == 0, "%s", host);
  check("domainname", strcmp(domain, "nsx.domain") == 0, "%s", domain);

  check("msq_id", msgget(MSG_KEY, 0) == msq, "msgget %d, was %d", msgget(MSG_KEY, 0), msq);
  struct msqid_ds mds;
  check("msq_stat", msgctl(msq, IPC_STAT, &mds) == 0 && mds.msg_qnum == 2 &&
                        (mds.msg_perm.mode & 0777) == 0640, "qnum %lu mode %o",
        (unsigned long)mds.msg_qnum, mds.msg_perm.mode);
  struct msg r = {0, ""};
  ssize_t n = msgrcv(msq, &r, sizeof r.text, 0, IPC_NOWAIT);
  check("msg_1", n == 6 && r.mtype == 3 && strcmp(r.text, "first") == 0, "%zd %ld %s", n,
        r.mtype, r.text);
  memset(&r, 0, sizeof r);
  n = msgrcv(msq, &r, sizeof r.text, 0, IPC_NOWAIT);
  check("msg_2", n == 15 && r.mtype == 5 && strcmp(r.text, "second message") == 0,
        "%zd %ld %s", n, r.mtype, r.text);

  check("sem_id", semget(SEM_KEY, 0, 0) == sem, "semget %d, was %d", semget(SEM_KEY, 0, 0), sem);
  unsigned short now[3] = {0, 0, 0};
  semctl(sem, 0, GETALL, (union semun_){.array = now});
  check("sem_values", now[0] == 1 && now[1] == 42 && now[2] == 7, "%u %u %u", now[0], now[1],
        now[2]);

  check("shm_id", shmget(SHM_KEY, 0, 0) == shm, "shmget %d, was %d", shmget(SHM_KEY, 0, 0), shm);
  struct shmid_ds sds;
  check("shm_stat", shmctl(shm, IPC_STAT, &sds) == 0 && sds.shm_segsz == SHM_SIZE &&
                        sds.shm_nattch == 0 && (sds.shm_perm.mode & 0777) == 0604,
        "size %zu nattch %lu mode %o", sds.shm_segsz, (unsigned long)sds.shm_nattch,
        sds.shm_perm.mode);
  p = shmat(shm, NULL, SHM_RDONLY);
  int same = p != (void *)-1;
  for (int i = 0; same && i < SHM_SIZE; i++) same = p[i] == (unsigned char)(i * 13 + 1);
  check("shm_content", same, "content differs");

  check("shm2", memcmp(p2, "attached", 9) == 0 && shmctl(shm2, IPC_STAT, &sds) == 0 &&
                   sds.shm_nattch == 1 && (sds.shm_perm.mode & SHM_DEST),
        "content or state differs");

  struct statfs sf;
  struct statvfs sv;
  check("tmpfs", statfs(mnt, &sf) == 0 && sf.f_type == TMPFS_MAGIC_ &&
                     sf.f_blocks * sf.f_bsize == 1 << 20, "type %lx blocks %lu",
        (unsigned long)sf.f_type, (unsigned long)sf.f_blocks);
  check("nosuid", statvfs(mnt, &sv) == 0 && (sv.f_flag & ST_NOSUID), "flags %lx", sv.f_flag);
  struct stat st;
  check("root_mode", stat(mnt, &st) == 0 && (st.st_mode & 07777) == 0750, "%o", st.st_mode);
  snprintf(path, sizeof path, "%s/a.txt", mnt);
  check("a_stat", stat(path, &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_uid == 1234 &&
                      st.st_gid == 5678, "mode %o owner %d:%d", st.st_mode, st.st_uid, st.st_gid);
  check("a_times", st.st_mtim.tv_sec == 1200000000 && st.st_atim.tv_sec == 1000000000,
        "mtime %ld atime %ld", (long)st.st_mtim.tv_sec, (long)st.st_atim.tv_sec);
  snprintf(path, sizeof path, "%s/a.txt", mnt);
  check("a_content", file_is(path, "alpha\n", 6), "differs");
  snprintf(path, sizeof path, "%s/ro/c", dir);
  check("ro_content", file_is(path, "frozen", 6), "differs");
  snprintf(path, sizeof path, "%s/ro", dir);
  check("ro_mount", statvfs(path, &sv) == 0 && (sv.f_flag & ST_RDONLY), "flags %lx", sv.f_flag);
  snprintf(path, sizeof path, "%s/sub", mnt);
  check("sub_mode", stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700,
        "%o", st.st_mode);
  snprintf(path, sizeof path, "%s/sub/b.bin", mnt);
  check("b_content", file_is(path, big, BIG), "differs");
  char target[64] = "";
  snprintf(path, sizeof path, "%s/link", mnt);
  check("link", readlink(path, target, sizeof target) == 5 && strncmp(target, "a.txt", 5) == 0,
        "%s", target);
  return verdict();
}
