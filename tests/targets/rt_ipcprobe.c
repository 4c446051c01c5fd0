/* Inter-process communication and state shared between the processes of a
 * tree, one mode per run (usage: rt_ipcprobe <trigger> <work-dir> <mode>).
 * The root sets the case up, prints "ready pid=<root> pids=<every other
 * live pid, comma-separated> ipc=<sysv objects to remove, e.g.
 * sem:3,msg:4,shm:5; may be empty>" and waits for the trigger file; its
 * children are blocked in the call the case is about, or wait for the
 * trigger too. Then the root checks the state, releases the children and
 * collects their reports (exit status 0 = their own checks held), prints
 * "check <what> ok|FAIL ..." lines and PASS/FAIL. Every check holds on a
 * tree never dumped, so a refused case is checked the same way.
 *
 * Modes:
 *   semwait     a System V semaphore set of 3 (values 5 0 7, mode 0640);
 *               one child blocked in semop(-1) on #1 (semncnt 1), another
 *               waiting for #0 to be zero (semzcnt 1). After the trigger:
 *               the values, both counts, then #1 is posted and #0 taken to
 *               zero: both children's semop return 0.
 *               A third child waits in semtimedop (60 s) for 8 of #2.
 *   semrefused  semwait with a descriptor cryo refuses (a POSIX message
 *               queue): the dump's freeze must not make the waits fail.
 *   msgwait     a System V message queue (msg_qbytes 4000, mode 0620)
 *               holding 3 messages (types 1 2 3, 10 100 1000 bytes); a
 *               child blocked in msgrcv(type 9), another in msgsnd (3000
 *               bytes of type 7: the queue is too full). After the trigger: qnum,
 *               cbytes, qbytes; a type-9 message reaches the child; the 3
 *               are read back by type, contents checked; then the sender's
 *               message is in.
 *   shmalone    a keyed System V shm segment (2 pages, content written)
 *               that no process attaches any more; after the trigger it is
 *               still there with its key, size, mode and content.
 *   mqwait      a named POSIX message queue (maxmsg 5, msgsize 64) holding
 *               2 messages of priorities 3 and 9, opened O_NONBLOCK by the
 *               root; a child blocked in mq_receive on a second, empty
 *               named queue (opened itself), whose root's descriptor it
 *               also inherited.
 *               After the trigger: attributes, the child gets a message
 *               sent then and one more through the inherited descriptor,
 *               and the 2 come back highest priority first.
 *   mqgone      mqwait with the root's queue unlinked while open.
 *   mqinflight  a named queue's descriptor (a message queued in it) in flight
 *               in a unix datagram socket, its sender's fd closed: after
 *               the trigger it is received and reads the message.
 *   mqinflightref  the same, the sender's fd kept: one description (a flag
 *               set through one is seen through the other).
 *   mqnotify    mqwait with the root registered for the notification of
 *               its queue (SIGEV_SIGNAL): still registered after (EBUSY).
 *   pmutex      a MAP_SHARED|MAP_ANONYMOUS area inherited by 3 children
 *               holds a process-shared mutex the root holds (child 1
 *               blocked locking it), a condvar child 2 waits on, a barrier
 *               of 2 child 3 waits at, and a rwlock the root holds for
 *               writing (child 1 takes it for reading after the mutex).
 *               After the trigger the root unlocks, signals, joins the
 *               barrier: every child gets through.
 *   robust      a robust process-shared mutex in a shared area, held by
 *               child 1, child 2 blocked locking it. After the trigger
 *               child 1 exits holding it: child 2 gets EOWNERDEAD.
 *   memfdscm    the root makes a memfd, sends it to a child by SCM_RIGHTS;
 *               both map it shared and write to it. After the trigger each
 *               sees the other's writes, before and after.
 *   filemap     a file in the work directory mapped MAP_SHARED by the root
 *               and a child (forked before the map: not inherited), both
 *               writing without msync. After the trigger each sees the
 *               other's writes, and read() of the file sees them too.
 *   eventfd     an eventfd (count 5) inherited by a child blocked reading
 *               a second one; after the trigger the root writes the second
 *               and reads 5 from the first.
 *   posixshm    a /dev/shm file (shm_open) mapped by the root and a child,
 *               then unlinked; after the trigger writes are shared, the
 *               name is still gone, the mapping is the same file in both.
 *   posixsem    a named POSIX semaphore (sem_open, value 2), a second one
 *               (value 0) a child waits on, and an unnamed process-shared
 *               one in a shared area another child waits on; after the
 *               trigger the value, and both waiters get through a post.
 *   shmhuge     a System V shm segment of huge pages (SHM_HUGETLB, 2 MiB)
 *               attached by the root and a child: after the trigger still
 *               huge pages (smaps), writes shared both ways.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/eventfd.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

union semun {
  int val;
  struct semid_ds *buf;
  unsigned short *array;
};

static const char *trigger;
static const char *work;
static pid_t pids[8];
static int npids;
static char ipc[256];

static void add_pid(pid_t p) { pids[npids++] = p; }

static void ready(void) {
  char list[128] = "";
  for (int i = 0; i < npids; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", pids[i]);
  print_ready("pid=%d pids=%s ipc=%s", getpid(), list, ipc);
}

/* Forks a child running fn(arg) and exiting with its result. */
static pid_t spawn(int (*fn)(void *), void *arg) {
  pid_t c = fork();
  if (c < 0) die("fork");
  if (c == 0) _exit(fn(arg));
  add_pid(c);
  return c;
}

/* Checks that child `c` exited 0 (its own checks held). */
static void check_exit0(const char *name, pid_t c) {
  int st;
  pid_t r = waitpid(c, &st, 0);
  check(name, r == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait %d status 0x%x errno %d",
        (int)r, st, errno);
}

/* Polls until cond(arg) holds (up to 3 s). */
static int await(int (*cond)(long), long arg) {
  for (int i = 0; i < 300; i++) {
    if (cond(arg)) return 1;
    sleep_ms(10);
  }
  return 0;
}

/* ---- semwait ---- */
static int semid;

static int sem_ncnt1(long want) { return semctl(semid, 1, GETNCNT) == want; }
static int sem_zcnt0(long want) { return semctl(semid, 0, GETZCNT) == want; }

static int sem_taker(void *arg) {
  (void)arg;
  struct sembuf op = {1, -1, 0};
  int r = semop(semid, &op, 1);
  if (r != 0) printf("taker semop: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static int sem_zero_waiter(void *arg) {
  (void)arg;
  struct sembuf op = {0, 0, 0};
  int r = semop(semid, &op, 1);
  if (r != 0) printf("zero waiter semop: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static int sem_timed_waiter(void *arg) {
  (void)arg;
  struct sembuf op = {2, -8, 0};
  struct timespec ts = {60, 0};
  int r = semtimedop(semid, &op, 1, &ts);
  if (r != 0) printf("timed waiter semtimedop: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static int sem_ncnt2(long want) { return semctl(semid, 2, GETNCNT) == want; }

/* An fd cryo refuses (a POSIX message queue), for the refused variants. */
static void hold_refused_fd(void) {
  char name[64];
  snprintf(name, sizeof name, "/cryo-ipcprobe-%d-r", getpid());
  struct mq_attr attr = {.mq_maxmsg = 2, .mq_msgsize = 8};
  if (mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr) == (mqd_t)-1) die("mq_open");
  mq_unlink(name);
}

static void mode_semwait(void) {
  semid = semget(IPC_PRIVATE, 3, IPC_CREAT | 0640);
  if (semid < 0) die("semget");
  unsigned short v[3] = {5, 0, 7};
  if (semctl(semid, 0, SETALL, (union semun){.array = v}) != 0) die("SETALL");
  snprintf(ipc, sizeof ipc, "sem:%d", semid);
  pid_t a = spawn(sem_taker, NULL);
  pid_t b = spawn(sem_zero_waiter, NULL);
  pid_t c = spawn(sem_timed_waiter, NULL);
  if (!await(sem_ncnt1, 1) || !await(sem_zcnt0, 1) || !await(sem_ncnt2, 1)) die("waiters");
  ready();
  wait_trigger(trigger);
  unsigned short now[3] = {0, 0, 0};
  if (semctl(semid, 0, GETALL, (union semun){.array = now}) != 0) die("GETALL");
  check("sem-values", now[0] == 5 && now[1] == 0 && now[2] == 7, "%d %d %d", now[0], now[1],
        now[2]);
  check("sem-ncnt", await(sem_ncnt1, 1), "semncnt %d", semctl(semid, 1, GETNCNT));
  check("sem-zcnt", await(sem_zcnt0, 1), "semzcnt %d", semctl(semid, 0, GETZCNT));
  struct semid_ds ds;
  if (semctl(semid, 0, IPC_STAT, (union semun){.buf = &ds}) != 0) die("IPC_STAT");
  check("sem-mode", (ds.sem_perm.mode & 0777) == 0640 && ds.sem_nsems == 3, "mode 0%o nsems %lu",
        ds.sem_perm.mode, (unsigned long)ds.sem_nsems);
  struct sembuf post = {1, 1, 0};
  if (semop(semid, &post, 1) != 0) die("post");
  check_exit0("sem-taker", a);
  struct sembuf take = {0, -5, 0};
  if (semop(semid, &take, 1) != 0) die("take");
  check_exit0("sem-zero-waiter", b);
  check("sem-ncnt2", await(sem_ncnt2, 1), "semncnt %d", semctl(semid, 2, GETNCNT));
  struct sembuf one = {2, 1, 0};
  if (semop(semid, &one, 1) != 0) die("post 2");
  check_exit0("sem-timed-waiter", c);
  check("sem-after", semctl(semid, 1, GETVAL) == 0 && semctl(semid, 0, GETVAL) == 0 &&
                         semctl(semid, 2, GETVAL) == 0,
        "%d %d %d", semctl(semid, 0, GETVAL), semctl(semid, 1, GETVAL), semctl(semid, 2, GETVAL));
}

/* ---- msgwait ---- */
static int msqid;
struct msg {
  long type;
  char text[1000];
};

static void msg_fill(struct msg *m, long type, size_t n) {
  m->type = type;
  for (size_t i = 0; i < n; i++) m->text[i] = (char)(i * 13 + type);
}

static int msg_ok(const struct msg *m, long type, size_t n) {
  if (m->type != type) return 0;
  for (size_t i = 0; i < n; i++)
    if (m->text[i] != (char)(i * 13 + type)) return 0;
  return 1;
}

static int msg_receiver(void *arg) {
  (void)arg;
  struct msg m;
  ssize_t n = msgrcv(msqid, &m, sizeof m.text, 9, 0);
  if (n < 0) printf("msgrcv: %s\n", strerror(errno));
  fflush(stdout);
  return n == 20 && msg_ok(&m, 9, 20) ? 0 : 1;
}

static int msg_sender(void *arg) {
  (void)arg;
  static struct msg big;
  big.type = 7;
  for (int i = 0; i < 1000; i++) big.text[i] = (char)(i * 13 + 7);
  /* 3000 bytes: the first 1000 of the pattern three times over. */
  static char buf[sizeof(long) + 3000];
  memcpy(buf, &big.type, sizeof(long));
  for (int k = 0; k < 3; k++) memcpy(buf + sizeof(long) + 1000 * k, big.text, 1000);
  int r = msgsnd(msqid, buf, 3000, 0);
  if (r != 0) printf("msgsnd: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static int msg_qnum(long want) {
  struct msqid_ds ds;
  return msgctl(msqid, IPC_STAT, &ds) == 0 && (long)ds.msg_qnum == want;
}

static void mode_msgwait(void) {
  msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0620);
  if (msqid < 0) die("msgget");
  snprintf(ipc, sizeof ipc, "msg:%d", msqid);
  struct msqid_ds ds;
  if (msgctl(msqid, IPC_STAT, &ds) != 0) die("IPC_STAT");
  ds.msg_qbytes = 4000;
  if (msgctl(msqid, IPC_SET, &ds) != 0) die("IPC_SET");
  static const size_t sizes[3] = {10, 100, 1000};
  struct msg m;
  for (int i = 0; i < 3; i++) {
    msg_fill(&m, i + 1, sizes[i]);
    if (msgsnd(msqid, &m, sizes[i], 0) != 0) die("msgsnd");
  }
  pid_t c = spawn(msg_receiver, NULL);
  pid_t d = spawn(msg_sender, NULL); /* 1110 + 3000 > 4000: blocked in msgsnd */
  sleep_ms(100); /* both are in their calls (no count shows them) */
  ready();
  wait_trigger(trigger);
  if (msgctl(msqid, IPC_STAT, &ds) != 0) die("IPC_STAT");
  check("msg-stat", ds.msg_qnum == 3 && ds.msg_cbytes == 1110 && ds.msg_qbytes == 4000 &&
                        (ds.msg_perm.mode & 0777) == 0620,
        "qnum %lu cbytes %lu qbytes %lu mode 0%o", (unsigned long)ds.msg_qnum,
        (unsigned long)ds.msg_cbytes, (unsigned long)ds.msg_qbytes, ds.msg_perm.mode);
  msg_fill(&m, 9, 20);
  if (msgsnd(msqid, &m, 20, 0) != 0) die("msgsnd 9");
  check_exit0("msg-receiver", c);
  for (int i = 2; i >= 0; i--) {
    ssize_t n = msgrcv(msqid, &m, sizeof m.text, i + 1, IPC_NOWAIT);
    char name[32];
    snprintf(name, sizeof name, "msg-type%d", i + 1);
    check(name, n == (ssize_t)sizes[i] && msg_ok(&m, i + 1, sizes[i]), "n %zd", n);
  }
  check_exit0("msg-sender", d);
  static char big[sizeof(long) + 3000];
  ssize_t n = msgrcv(msqid, big, 3000, 7, IPC_NOWAIT);
  long type;
  memcpy(&type, big, sizeof type);
  int same = n == 3000 && type == 7;
  for (int i = 0; same && i < 3000; i++) same = big[sizeof(long) + i] == (char)((i % 1000) * 13 + 7);
  check("msg-type7", same, "n %zd type %ld", n, type);
  check("msg-empty", msg_qnum(0), "messages left");
}

/* ---- shmalone ---- */
static void mode_shmalone(void) {
  key_t key = (key_t)(0x5d000000 | getpid());
  int id = shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0604);
  if (id < 0) die("shmget");
  snprintf(ipc, sizeof ipc, "shm:%d", id);
  char *p = shmat(id, NULL, 0);
  if (p == (void *)-1) die("shmat");
  for (int i = 0; i < 8192; i += 61) p[i] = (char)(i * 3 + 1);
  shmdt(p);
  ready();
  wait_trigger(trigger);
  struct shmid_ds ds;
  int ok = shmctl(id, IPC_STAT, &ds) == 0;
  check("shm-stat", ok && ds.shm_perm.__key == key && ds.shm_segsz == 8192 &&
                        (ds.shm_perm.mode & 0777) == 0604 && ds.shm_nattch == 0,
        "ok %d key 0x%x size %zu mode 0%o nattch %lu", ok, ds.shm_perm.__key, ds.shm_segsz,
        ds.shm_perm.mode, (unsigned long)ds.shm_nattch);
  p = shmat(id, NULL, SHM_RDONLY);
  int same = p != (void *)-1;
  for (int i = 0; same && i < 8192; i += 61) same = p[i] == (char)(i * 3 + 1);
  check("shm-content", same, "");
}

/* ---- mqwait ---- */
static char mqname[64];
static mqd_t mq_inherited;
static int mq_receiver(void *arg) {
  (void)arg;
  mqd_t q = mq_open(mqname, O_RDONLY);
  if (q == (mqd_t)-1) return 2;
  char buf[64];
  unsigned prio = 0;
  ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
  if (n < 0) printf("mq_receive: %s\n", strerror(errno));
  if (n != 5 || memcmp(buf, "later", 5) != 0 || prio != 1) return 1;
  /* The root's descriptor of the same queue, inherited: one description. */
  n = mq_receive(mq_inherited, buf, sizeof buf, &prio);
  if (n < 0) printf("mq_receive inherited: %s\n", strerror(errno));
  fflush(stdout);
  return n == 4 && memcmp(buf, "more", 4) == 0 ? 0 : 3;
}

static void on_usr2(int sig) { (void)sig; }

/* how: 0 named queues, 1 the root's queue unlinked while open, 2 the root
 * registered for its notification (SIGUSR2). */
static void mode_mqwait(int how) {
  char name_a[64];
  snprintf(name_a, sizeof name_a, "/cryo-ipcprobe-%d-a", getpid());
  snprintf(mqname, sizeof mqname, "/cryo-ipcprobe-%d-b", getpid());
  struct mq_attr attr = {.mq_maxmsg = 5, .mq_msgsize = 64};
  mqd_t q = mq_open(name_a, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0600, &attr);
  if (q == (mqd_t)-1) die("mq_open a");
  if (how == 1) mq_unlink(name_a); /* open, no longer named */
  if (mq_send(q, "three", 5, 3) != 0 || mq_send(q, "nine!", 5, 9) != 0) die("mq_send");
  if (how == 2) { /* registered once not empty: nothing sends the signal yet */
    signal(SIGUSR2, on_usr2);
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    if (mq_notify(q, &ev) != 0) die("mq_notify");
  }
  mqd_t q2 = mq_open(mqname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  if (q2 == (mqd_t)-1) die("mq_open b");
  snprintf(ipc, sizeof ipc, "mq:%s,mq:%s", mqname + 1, name_a + 1);
  mq_inherited = q2;
  pid_t c = spawn(mq_receiver, NULL); /* blocks on the empty queue b */
  sleep_ms(100);
  ready();
  wait_trigger(trigger);
  struct mq_attr now;
  if (mq_getattr(q, &now) != 0) die("mq_getattr");
  check("mq-attr", now.mq_maxmsg == 5 && now.mq_msgsize == 64 && now.mq_curmsgs == 2 &&
                       (now.mq_flags & O_NONBLOCK),
        "maxmsg %ld msgsize %ld curmsgs %ld flags 0x%lx", now.mq_maxmsg, now.mq_msgsize,
        now.mq_curmsgs, now.mq_flags);
  if (mq_send(q2, "later", 5, 1) != 0) die("mq_send later");
  sleep_ms(50);
  if (mq_send(q2, "more", 4, 0) != 0) die("mq_send more");
  check_exit0("mq-receiver", c);
  char buf[64];
  unsigned prio = 0;
  ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
  check("mq-first", n == 5 && memcmp(buf, "nine!", 5) == 0 && prio == 9, "n %zd prio %u", n, prio);
  n = mq_receive(q, buf, sizeof buf, &prio);
  check("mq-second", n == 5 && memcmp(buf, "three", 5) == 0 && prio == 3, "n %zd prio %u", n,
        prio);
  n = mq_receive(q, buf, sizeof buf, &prio);
  check("mq-nonblock", n < 0 && errno == EAGAIN, "n %zd errno %d", n, errno);
  struct mq_attr a2;
  check("mq-access", mq_getattr(q2, &a2) == 0 && mq_send(q2, "x", 1, 0) == 0 &&
                         mq_receive(q2, buf, sizeof buf, NULL) == 1,
        "errno %d", errno);
  if (how == 2) {
    /* Registered still: a message into the empty queue signals the root. */
    check("mq-notify-busy", mq_notify(q, &(struct sigevent){.sigev_notify = SIGEV_NONE}) != 0 &&
                                errno == EBUSY,
          "errno %d", errno);
  }
  mq_unlink(mqname);
  if (how != 1) mq_unlink(name_a);
}

/* ---- pmutex ---- */
struct shared {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  pthread_mutex_t cond_mutex;
  pthread_barrier_t barrier;
  pthread_rwlock_t rwlock;
  int signalled;
  int counter;
};
static struct shared *sh;

static int pm_locker(void *arg) {
  (void)arg;
  if (pthread_mutex_lock(&sh->mutex) != 0) return 1;
  sh->counter++;
  pthread_mutex_unlock(&sh->mutex);
  if (pthread_rwlock_rdlock(&sh->rwlock) != 0) return 2;
  pthread_rwlock_unlock(&sh->rwlock);
  return 0;
}

static int pm_waiter(void *arg) {
  (void)arg;
  pthread_mutex_lock(&sh->cond_mutex);
  while (!sh->signalled) pthread_cond_wait(&sh->cond, &sh->cond_mutex);
  pthread_mutex_unlock(&sh->cond_mutex);
  return 0;
}

static int pm_barrier(void *arg) {
  (void)arg;
  int r = pthread_barrier_wait(&sh->barrier);
  return r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD ? 0 : 1;
}

static void *shared_area(size_t n) {
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  return p;
}

static void mode_pmutex(void) {
  sh = shared_area(sizeof *sh);
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&sh->mutex, &ma);
  pthread_mutex_init(&sh->cond_mutex, &ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_cond_init(&sh->cond, &ca);
  pthread_barrierattr_t ba;
  pthread_barrierattr_init(&ba);
  pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
  pthread_barrier_init(&sh->barrier, &ba, 2);
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
  pthread_rwlock_init(&sh->rwlock, &ra);
  pthread_mutex_lock(&sh->mutex);
  pthread_rwlock_wrlock(&sh->rwlock);
  pid_t a = spawn(pm_locker, NULL);
  pid_t b = spawn(pm_waiter, NULL);
  pid_t c = spawn(pm_barrier, NULL);
  sleep_ms(150);
  ready();
  wait_trigger(trigger);
  check("pm-held", sh->counter == 0, "counter %d", sh->counter);
  pthread_mutex_unlock(&sh->mutex);
  pthread_mutex_lock(&sh->cond_mutex);
  sh->signalled = 1;
  pthread_cond_broadcast(&sh->cond);
  pthread_mutex_unlock(&sh->cond_mutex);
  int r = pthread_barrier_wait(&sh->barrier);
  check("pm-barrier", r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD, "%d", r);
  sleep_ms(50);
  pthread_rwlock_unlock(&sh->rwlock);
  check_exit0("pm-locker", a);
  check_exit0("pm-waiter", b);
  check_exit0("pm-barrier-child", c);
  check("pm-counter", sh->counter == 1, "counter %d", sh->counter);
}

/* ---- robust ---- */
static int rb_holder(void *arg) {
  (void)arg;
  if (pthread_mutex_lock(&sh->mutex) != 0) return 1;
  sh->signalled = 1;
  wait_trigger(trigger);
  return 0; /* exits holding it */
}

static int rb_waiter(void *arg) {
  (void)arg;
  int r = pthread_mutex_lock(&sh->mutex);
  if (r != EOWNERDEAD) {
    printf("robust lock: %d\n", r);
    return 1;
  }
  pthread_mutex_consistent(&sh->mutex);
  pthread_mutex_unlock(&sh->mutex);
  return 0;
}

static int rb_locked(long want) { return sh->signalled == want; }

static void mode_robust(void) {
  sh = shared_area(sizeof *sh);
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&sh->mutex, &ma);
  pid_t a = spawn(rb_holder, NULL);
  if (!await(rb_locked, 1)) die("holder");
  pid_t b = spawn(rb_waiter, NULL);
  sleep_ms(100);
  ready();
  wait_trigger(trigger);
  check_exit0("robust-holder", a);
  check_exit0("robust-waiter", b);
  int r = pthread_mutex_lock(&sh->mutex);
  check("robust-after", r == 0, "%d", r);
}

/* ---- memfdscm ---- */
static int sock[2];
static int memfd_child(void *arg) {
  (void)arg;
  char c;
  struct iovec iov = {&c, 1};
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  if (recvmsg(sock[1], &mh, 0) != 1) return 2;
  int fd;
  memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof fd);
  volatile int *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 3;
  p[1] = 22;
  p[1024 + 1] = 23;
  while (p[0] != 11) sleep_ms(5);
  wait_trigger(trigger);
  int ok = p[0] == 11 && p[1024] == 12;
  p[2] = 33;
  while (p[3] != 44) sleep_ms(5);
  return ok ? 0 : 4;
}

static void mode_memfdscm(void) {
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sock) != 0) die("socketpair");
  pid_t c = spawn(memfd_child, NULL);
  int fd = memfd_create("ipcprobe", 0);
  if (fd < 0 || ftruncate(fd, 8192) != 0) die("memfd");
  volatile int *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  char cbuf[CMSG_SPACE(sizeof(int))];
  char byte = 'x';
  struct iovec iov = {&byte, 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  if (sendmsg(sock[0], &mh, 0) != 1) die("sendmsg");
  close(fd); /* only the mappings keep it in the root */
  p[0] = 11;
  p[1024] = 12;
  for (int i = 0; i < 300 && p[1] != 22; i++) sleep_ms(10);
  ready();
  wait_trigger(trigger);
  check("memfd-before", p[1] == 22 && p[1024 + 1] == 23, "%d %d", p[1], p[1025]);
  int i;
  for (i = 0; i < 300 && p[2] != 33; i++) sleep_ms(10);
  check("memfd-after", p[2] == 33, "the child's write is not seen");
  p[3] = 44;
  check_exit0("memfd-child", c);
}

/* ---- filemap ---- */
static char path[256];
static int filemap_child(void *arg) {
  (void)arg;
  int fd = open(path, O_RDWR);
  if (fd < 0) return 2;
  volatile int *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 3;
  close(fd);
  p[1] = 22;
  wait_trigger(trigger);
  int ok = p[0] == 11;
  p[2] = 33;
  while (p[3] != 44) sleep_ms(5);
  return ok ? 0 : 4;
}

static void mode_filemap(void) {
  snprintf(path, sizeof path, "%s/shared.bin", work);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) die("file");
  pid_t c = spawn(filemap_child, NULL);
  volatile int *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  p[0] = 11;
  for (int i = 0; i < 300 && p[1] != 22; i++) sleep_ms(10);
  ready();
  wait_trigger(trigger);
  check("filemap-before", p[1] == 22, "%d", p[1]);
  int i;
  for (i = 0; i < 300 && p[2] != 33; i++) sleep_ms(10);
  check("filemap-after", p[2] == 33, "the child's write is not seen");
  int words[3] = {0};
  check("filemap-read", pread(fd, words, sizeof words, 0) == sizeof words && words[0] == 11 &&
                            words[1] == 22 && words[2] == 33,
        "%d %d %d", words[0], words[1], words[2]);
  p[3] = 44;
  check_exit0("filemap-child", c);
}

/* ---- eventfd ---- */
static int efd, efd2;
static int eventfd_child(void *arg) {
  (void)arg;
  eventfd_t v = 0;
  if (eventfd_read(efd2, &v) != 0) return 2;
  return v == 7 ? 0 : 3;
}

static void mode_eventfd(void) {
  efd = eventfd(5, 0);
  efd2 = eventfd(0, 0);
  if (efd < 0 || efd2 < 0) die("eventfd");
  pid_t c = spawn(eventfd_child, NULL);
  sleep_ms(100);
  ready();
  wait_trigger(trigger);
  if (eventfd_write(efd2, 7) != 0) die("write");
  check_exit0("eventfd-child", c);
  eventfd_t v = 0;
  check("eventfd-count", eventfd_read(efd, &v) == 0 && v == 5, "%llu", (unsigned long long)v);
}

/* ---- posixshm ---- */
static int posixshm_child(void *arg) {
  volatile int *p = arg;
  p[1] = 22;
  wait_trigger(trigger);
  int ok = p[0] == 11;
  p[2] = 33;
  while (p[3] != 44) sleep_ms(5);
  return ok ? 0 : 4;
}

static void mode_posixshm(void) {
  char name[64];
  snprintf(name, sizeof name, "/cryo-ipcprobe-%d", getpid());
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) die("shm_open");
  volatile int *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  close(fd);
  pid_t c = spawn(posixshm_child, (void *)p);
  shm_unlink(name);
  p[0] = 11;
  for (int i = 0; i < 300 && p[1] != 22; i++) sleep_ms(10);
  ready();
  wait_trigger(trigger);
  check("posixshm-before", p[1] == 22, "%d", p[1]);
  int i;
  for (i = 0; i < 300 && p[2] != 33; i++) sleep_ms(10);
  check("posixshm-after", p[2] == 33, "the child's write is not seen");
  char dev[96];
  snprintf(dev, sizeof dev, "/dev/shm%s", name);
  check("posixshm-gone", access(dev, F_OK) != 0, "%s is back", dev);
  p[3] = 44;
  check_exit0("posixshm-child", c);
}

/* ---- posixsem ---- */
struct psem {
  sem_t unnamed;
};
static sem_t *named_a, *named_b;
static struct psem *ps;

static int psem_named_waiter(void *arg) {
  (void)arg;
  int r = sem_wait(named_b);
  if (r != 0) printf("sem_wait named: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static int psem_unnamed_waiter(void *arg) {
  (void)arg;
  int r = sem_wait(&ps->unnamed);
  if (r != 0) printf("sem_wait unnamed: %s\n", strerror(errno));
  fflush(stdout);
  return r == 0 ? 0 : 1;
}

static void mode_posixsem(void) {
  char a[64], b[64];
  snprintf(a, sizeof a, "/cryo-ipcprobe-%d-a", getpid());
  snprintf(b, sizeof b, "/cryo-ipcprobe-%d-b", getpid());
  named_a = sem_open(a, O_CREAT | O_EXCL, 0600, 2);
  named_b = sem_open(b, O_CREAT | O_EXCL, 0600, 0);
  if (named_a == SEM_FAILED || named_b == SEM_FAILED) die("sem_open");
  snprintf(ipc, sizeof ipc, "shmfile:sem.%s,shmfile:sem.%s", a + 1, b + 1);
  ps = shared_area(sizeof *ps);
  if (sem_init(&ps->unnamed, 1, 0) != 0) die("sem_init");
  pid_t c1 = spawn(psem_named_waiter, NULL);
  pid_t c2 = spawn(psem_unnamed_waiter, NULL);
  sleep_ms(100);
  ready();
  wait_trigger(trigger);
  int v = -1;
  sem_getvalue(named_a, &v);
  check("psem-named-value", v == 2, "%d", v);
  if (sem_post(named_b) != 0 || sem_post(&ps->unnamed) != 0) die("sem_post");
  check_exit0("psem-named-waiter", c1);
  check_exit0("psem-unnamed-waiter", c2);
  sem_unlink(a);
  sem_unlink(b);
}

/* ---- shmhuge ---- */
#define HUGE_SIZE (2 << 20)
static int huge_child(void *arg) {
  volatile char *p = arg;
  p[4096] = 22;
  wait_trigger(trigger);
  int ok = p[0] == 11;
  p[8192] = 33;
  while (p[12288] != 44) sleep_ms(5);
  return ok ? 0 : 4;
}

/* The kernel page size of the mapping at `addr` (smaps), in kB. */
static long page_kb(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[256];
  int in = 0;
  long kb = -1;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = lo <= (unsigned long)addr && (unsigned long)addr < hi;
    } else if (in && sscanf(line, "KernelPageSize: %ld kB", &kb) == 1) {
      break;
    }
  }
  if (f) fclose(f);
  return kb;
}

static void mode_shmhuge(void) {
  int id = shmget(IPC_PRIVATE, HUGE_SIZE, IPC_CREAT | SHM_HUGETLB | 0600);
  if (id < 0) die("shmget SHM_HUGETLB");
  snprintf(ipc, sizeof ipc, "shm:%d", id);
  volatile char *p = shmat(id, NULL, 0);
  if (p == (void *)-1) die("shmat");
  p[0] = 11;
  pid_t c = spawn(huge_child, (void *)p);
  for (int i = 0; i < 300 && p[4096] != 22; i++) sleep_ms(10);
  ready();
  wait_trigger(trigger);
  check("huge-before", p[4096] == 22, "%d", p[4096]);
  check("huge-pages", page_kb((const void *)p) == 2048, "KernelPageSize %ld kB",
        page_kb((const void *)p));
  int i;
  for (i = 0; i < 300 && p[8192] != 33; i++) sleep_ms(10);
  check("huge-after", p[8192] == 33, "the child's write is not seen");
  p[12288] = 44;
  check_exit0("huge-child", c);
}

/* ---- mqinflight ---- */
static void mode_mqinflight(int keep) {
  snprintf(mqname, sizeof mqname, "/cryo-ipcprobe-%d-f", getpid());
  struct mq_attr attr = {.mq_maxmsg = 5, .mq_msgsize = 64};
  mqd_t q = mq_open(mqname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  if (q == (mqd_t)-1) die("mq_open");
  snprintf(ipc, sizeof ipc, "mq:%s", mqname + 1);
  if (mq_send(q, "held", 4, 2) != 0) die("mq_send");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) die("socketpair");
  char cbuf[CMSG_SPACE(sizeof(int))];
  char byte = 'q';
  struct iovec iov = {&byte, 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  int qfd = (int)q;
  memcpy(CMSG_DATA(cm), &qfd, sizeof qfd);
  if (sendmsg(sv[0], &mh, 0) != 1) die("sendmsg");
  if (!keep) close(qfd); /* only the message holds the queue's description */
  ready();
  wait_trigger(trigger);
  char c;
  struct msghdr rh = {.msg_iov = &(struct iovec){&c, 1}, .msg_iovlen = 1, .msg_control = cbuf,
                      .msg_controllen = sizeof cbuf};
  int got = recvmsg(sv[1], &rh, 0) == 1 && CMSG_FIRSTHDR(&rh) != NULL;
  int fd = -1;
  if (got) memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&rh)), sizeof fd);
  check("mqinflight-received", got, "");
  char buf[64];
  unsigned prio = 0;
  ssize_t n = got ? mq_receive((mqd_t)fd, buf, sizeof buf, &prio) : -1;
  check("mqinflight-queue", n == 4 && memcmp(buf, "held", 4) == 0 && prio == 2, "n %zd errno %d",
        n, errno);
  if (keep) { /* one description: O_NONBLOCK set through one is seen through the other */
    struct mq_attr na = {.mq_flags = O_NONBLOCK}, got_attr;
    mq_setattr(q, &na, NULL);
    check("mqinflight-same", mq_getattr((mqd_t)fd, &got_attr) == 0 &&
                                 (got_attr.mq_flags & O_NONBLOCK) != 0,
          "flags 0x%lx", got_attr.mq_flags);
  }
  mq_unlink(mqname);
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_ipcprobe <trigger> <work-dir> <mode>");
  trigger = argv[1];
  work = argv[2];
  const char *mode = argv[3];
  if (strcmp(mode, "semwait") == 0) mode_semwait();
  else if (strcmp(mode, "semrefused") == 0) hold_refused_fd(), mode_semwait();
  else if (strcmp(mode, "msgwait") == 0) mode_msgwait();
  else if (strcmp(mode, "shmalone") == 0) mode_shmalone();
  else if (strcmp(mode, "mqwait") == 0) mode_mqwait(0);
  else if (strcmp(mode, "mqgone") == 0) mode_mqwait(1);
  else if (strcmp(mode, "mqnotify") == 0) mode_mqwait(2);
  else if (strcmp(mode, "mqinflight") == 0) mode_mqinflight(0);
  else if (strcmp(mode, "mqinflightref") == 0) mode_mqinflight(1);
  else if (strcmp(mode, "pmutex") == 0) mode_pmutex();
  else if (strcmp(mode, "robust") == 0) mode_robust();
  else if (strcmp(mode, "memfdscm") == 0) mode_memfdscm();
  else if (strcmp(mode, "filemap") == 0) mode_filemap();
  else if (strcmp(mode, "eventfd") == 0) mode_eventfd();
  else if (strcmp(mode, "posixshm") == 0) mode_posixshm();
  else if (strcmp(mode, "posixsem") == 0) mode_posixsem();
  else if (strcmp(mode, "shmhuge") == 0) mode_shmhuge();
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return verdict();
}
