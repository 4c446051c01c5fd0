/**
 * The restorability table: for every resource kind and every piece of task
 * state, whether cryo saves and restores it, needs an opt-in for it, or
 * refuses it. Dump consults it while the tree is frozen (before anything is
 * killed), restore consults it first; docs/ARCHITECTURE.md shows the same
 * table (tests/support_test.ts keeps the two equal).
 *
 * Collectors report what a process uses with {@link Refusals.use}; whatever
 * is neither saved nor opted into becomes one line of the refusal.
 *
 * @module
 */

import { UnsupportedError } from "./errors.ts";

/** How cryo handles one kind of state. */
export type Support = "saved" | "opt-in" | "refused" | "not-applicable";

/** One row of the table. */
export interface SupportRow {
  /** Stable identifier used by the collectors. */
  id: string;
  /** Where it belongs: task state, memory, an fd kind, a socket kind. */
  area: "task" | "memory" | "fd" | "tty" | "socket";
  /** What it is, for people. */
  what: string;
  support: Support;
  /** The opt-in (CLI flag name without dashes) for "opt-in" rows. */
  optIn?: string;
  /** Why it is refused, or what the opt-in does. */
  note?: string;
}

/** The table itself, grouped by area. */
// deno-fmt-ignore
export const SUPPORT_TABLE = [
  // Task state.
  { id: "task.tree", area: "task", what: "process tree, pids and tids, sessions and groups", support: "saved" },
  { id: "task.regs", area: "task", what: "registers, XSAVE state, fs/gs base", support: "saved" },
  { id: "task.threads", area: "task", what: "threads, TLS, clear_child_tid, robust lists, rseq", support: "saved" },
  { id: "task.signals", area: "task", what: "signal actions, masks, pending signals, sigaltstack", support: "saved" },
  { id: "task.syscalls", area: "task", what: "syscalls interrupted by the freeze (waits, sleeps, futexes)", support: "saved", note: "re-issued (one resumed through restart_syscall as its original call, from the kernel's restart block); a relative futex or poll timeout starts again in full; a call a pending signal would interrupt ends in EINTR, as the kernel would end it" },
  { id: "task.itimers", area: "task", what: "interval timers (setitimer)", support: "saved" },
  { id: "task.posix-timers", area: "task", what: "POSIX timers: ids, clocks, notification, signal and value, time left, interval", support: "saved", note: "time stops while in the image; a pending timer signal is re-queued by the timer" },
  { id: "task.posix-timer-overrun", area: "task", what: "POSIX timer overrun counts (timer_getoverrun) above zero", support: "refused", note: "the kernel has no call that sets them" },
  { id: "task.posix-timer-unnamed", area: "task", what: "POSIX timers tied to a thread or process cryo cannot name", support: "refused", note: "the creator's thread CPU clock in a multi-threaded process, another process's CPU clock, an exited target thread" },
  { id: "task.rlimits", area: "task", what: "resource limits", support: "saved" },
  { id: "task.misc", area: "task", what: "umask, cwd, comm, personality", support: "saved", note: "personality per thread" },
  { id: "task.sched", area: "task", what: "per-thread policy and priority, nice, CPU affinity, timer slack, ioprio", support: "saved", note: "restore fails, naming the thread, where not allowed" },
  { id: "task.attrs", area: "task", what: "oom_score_adj, dumpable, child subreaper, THP disable, membarrier registrations, memory-deny-write-execute (PR_SET_MDWE), coredump_filter, TSC mode (PR_SET_TSC), MCE kill policy (PR_MCE_KILL), speculation controls (PR_SET_SPECULATION_CTRL), I/O flusher (PR_SET_IO_FLUSHER)", support: "saved", note: "TSC mode, MCE kill policy and the I/O flusher per thread (the I/O flusher needs CAP_SYS_RESOURCE at restore); speculation controls: the main thread's, given to every thread (a thread with other ones is refused: task.thread-speculation), a forced disable set last" },
  { id: "task.thread-attrs", area: "task", what: "parent-death signal, no_new_privs, thread names", support: "saved" },
  { id: "task.mempolicy", area: "task", what: "a NUMA memory policy of a thread that get_mempolicy could not read", support: "refused", note: "policies that are read are saved (memory.mempolicy)" },
  { id: "task.thread-fs", area: "task", what: "a thread with cwd, root and umask of its own (unshare(CLONE_FS) in a thread)", support: "refused", note: "restored threads share the process's" },
  { id: "task.thread-files", area: "task", what: "a thread with an fd table of its own (unshare(CLONE_FILES) in a thread)", support: "refused", note: "restored threads share the process's" },
  { id: "task.thread-login", area: "task", what: "a thread with a login uid or session id other than its main thread's (written in that thread, or in the main thread after the thread started)", support: "refused", note: "restored threads inherit the main thread's" },
  { id: "task.thread-speculation", area: "task", what: "a thread with speculation controls other than its main thread's (PR_SET_SPECULATION_CTRL in a thread)", support: "refused", note: "not saved per thread yet" },
  { id: "task.thread-namespaces", area: "task", what: "a thread in namespaces other than its main thread's (unshare or setns in a thread)", support: "refused", note: "restored threads share the process's" },
  { id: "task.seccomp", area: "task", what: "seccomp strict mode and filters", support: "saved", note: "installed last; they act from detach on" },
  { id: "task.keyrings", area: "task", what: "thread and process keyrings (keyctl)", support: "refused", note: "not saved yet (looked for in every thread)" },
  { id: "task.session-keyring", area: "task", what: "a session keyring joined (keyctl) that holds keys, other than the user's fallback", support: "saved", note: "cannot be given: restore refuses unless it is the restorer's; an empty one (a login's, a service's) is not recorded and the restored process has the restorer's" },
  { id: "task.login", area: "task", what: "login uid and session id", support: "saved", note: "a session id cannot be set: the restorer's, or unset (written by the launcher); another login session's only with --new-audit-session (a new session id)" },
  { id: "task.dumpable-root", area: "task", what: "dumpable 2 (suid_dumpable after a set-id exec)", support: "refused", note: "prctl cannot set it" },
  { id: "task.membarrier-unknown", area: "task", what: "membarrier registrations before Linux 6.3", support: "refused", note: "cannot be read" },
  { id: "task.syscall-dispatch", area: "task", what: "syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH)", support: "refused", note: "not saved yet" },
  { id: "task.landlock", area: "task", what: "a Landlock domain (landlock_restrict_self)", support: "refused", note: "cannot be read back: the restored process would run unrestricted" },
  { id: "task.landlock-unchecked", area: "task", what: "no_new_privs in a thread, on a host with Landlock enabled where cryo cannot read Landlock domains (no BPF task iterator or BTF)", support: "refused", note: "it may be in a Landlock domain, which the restored process would not have" },
  { id: "task.seccomp-notify", area: "task", what: "seccomp filters handing syscalls to a user-space listener", support: "refused", note: "the listener's fd cannot be re-connected" },
  { id: "task.namespaces", area: "task", what: "namespaces other than cryo's own (mnt, pid, net, ipc, uts, user, cgroup, time)", support: "refused", note: "not re-created yet (except those of a launched tree: task.launched-*); also a process whose children's pid or time namespace is not its own (an unshare waiting for its first child)" },
  { id: "task.launched-pidns", area: "task", what: "the pid and mount namespaces of a tree started by `cryo launch` (root is pid 1; mounts are cryo's plus its /proc)", support: "saved", note: "dumped from inside; restored into fresh namespaces with the same inner pids (engine/pidns/)" },
  { id: "task.launched-uts", area: "task", what: "a launched tree's own UTS namespace, shared by all its processes (`cryo launch --uts`, or its own unshare)", support: "saved", note: "host and domain name, set in a fresh UTS namespace" },
  { id: "task.launched-ipc", area: "task", what: "a launched tree's own IPC namespace: SysV message queues, semaphore sets, shm segments (attached or not), limits", support: "saved", note: "same ids, keys, modes, owners, contents, in a fresh IPC namespace; no times, last pids, SEM_UNDO" },
  { id: "task.sysv-host-used", area: "task", what: "System V semaphore sets, message queues and unattached shm segments of the host's IPC namespace that the tree uses (waits on, last operated on, created)", support: "saved", note: "ids, keys, creators and sizes only: the restore requires each still there, the same one; contents stay the host's, as a file's do; a use the kernel does not show is not found" },
  { id: "task.semop-wait", area: "task", what: "threads waiting in semop/semtimedop (the kernel never restarts them: the freeze makes them fail with EINTR)", support: "saved", note: "re-issued at restore and set back before a live tree is let go; a relative timeout starts again in full" },
  { id: "task.launched-posix-mqueue", area: "task", what: "POSIX message queues in a launched tree's own IPC namespace", support: "refused", note: "not saved yet" },
  { id: "task.launched-tmpfs", area: "task", what: "tmpfs mounts in a launched tree's own mount namespace: options, directories, files, symlinks, modes, owners, times", support: "saved", note: "mounted and filled in the fresh mount namespace; no inode numbers, change times, propagation" },
  { id: "task.launched-tmpfs-entry", area: "task", what: "hard links, special files (devices, fifos, sockets), extended attributes, non-UTF-8 names in a launched tree's tmpfs", support: "refused", note: "not saved yet" },
  { id: "task.launched-mount-other", area: "task", what: "other mounts in a launched tree's mount namespace (other file systems, bind mounts, a tmpfs also mounted outside)", support: "refused", note: "their content lives outside the tree" },
  { id: "task.cgroups", area: "task", what: "control group membership (every hierarchy; threads placed apart from their process: v1 tasks, v2 threaded)", support: "saved", note: "restore moves each process back, then each such thread; the cgroups must exist" },
  { id: "task.counters", area: "task", what: "start time, CPU time, I/O and page-fault counters", support: "not-applicable", note: "kernel accounting; it starts afresh" },
  { id: "task.creds", area: "task", what: "credentials per thread: uids, gids, groups", support: "saved", note: "restored last" },
  { id: "task.caps", area: "task", what: "capabilities (all five sets), securebits, keep-caps", support: "saved", note: "the restorer must hold every capability used" },
  { id: "task.root", area: "task", what: "root directory (chroot)", support: "saved" },
  { id: "task.cwd-deleted", area: "task", what: "root directory deleted", support: "refused", note: "it has no path to enter again" },
  { id: "task.cwd-deleted-saved", area: "task", what: "a cwd deleted while in use", support: "saved", note: "made again (empty) at its path for the restored process to enter, given back the mode, owner and times recorded at dump, removed before the tree runs; the path must be free" },
  { id: "task.shared-files-parent", area: "task", what: "fd table shared by a process and its children (CLONE_FILES, no exec since; through any depth of such children)", support: "saved", note: "the parent restores the fds once; each child, restored by inheritance (never exec'ed: exec unshares the table), is forked into it with CLONE_FILES and runs its program while the parent waits at that fork" },
  { id: "task.shared-files", area: "task", what: "fd table shared by processes other than through parent-child links (a process and its grandchild, the parent between them on a table of its own), or by a child whose vdso moved apart from its parent's", support: "refused", note: "restore forks a child into its parent's table only, without exec" },
  { id: "task.shared-fs-parent", area: "task", what: "cwd, root and umask shared by a process and its children (CLONE_FS)", support: "saved", note: "the parent forks each child with CLONE_FS; both set the same cwd and umask into the one fs_struct" },
  { id: "task.shared-fs", area: "task", what: "cwd, root and umask shared other than through parent-child links, or with a root other than /", support: "refused", note: "a second chroot would resolve its path inside the first" },
  { id: "task.shared-vm", area: "task", what: "memory shared by processes (CLONE_VM without CLONE_THREAD, vfork)", support: "refused", note: "not restored yet" },
  { id: "task.zombie", area: "task", what: "zombie children (pid, exit status, group, uids and gids), reaped by their parent", support: "saved", note: "their capabilities are those of their ids" },
  { id: "task.zombie-unusual", area: "task", what: "zombies that dumped core, left their parent's group, or whose parent ignores SIGCHLD", support: "refused", note: "cannot be re-created as they were" },
  { id: "task.stopped", area: "task", what: "stopped processes (group stop), pending SIGSTOP", support: "saved", note: "restored stopped by the same signal" },
  { id: "task.continued", area: "task", what: "children continued (SIGCONT) whose parent in the tree has not collected the continue report (waitpid WCONTINUED)", support: "saved", note: "stopped and continued again at restore while the parent is held" },
  { id: "task.continued-handled", area: "task", what: "such children that catch or block SIGCONT", support: "refused", note: "the SIGCONT that makes the report again would reach the handler or stay pending" },
  { id: "task.stopped-handled", area: "task", what: "processes stopped by a signal they now catch or block", support: "refused", note: "the stop could not be re-created with its signal" },
  { id: "task.leader-exited", area: "task", what: "processes whose main thread exited before the others", support: "refused", note: "a zombie main thread cannot be re-created" },
  { id: "task.rlimit-cpu-used", area: "task", what: "a finite RLIMIT_CPU in a process that used CPU time", support: "refused", note: "the kernel counts the limit against the CPU time used, which starts afresh in a restored process: it would get that time again" },
  { id: "task.exit-signal", area: "task", what: "children cloned with an exit signal other than SIGCHLD (or none)", support: "refused", note: "restore forks every child with SIGCHLD" },
  { id: "task.tracer", area: "task", what: "processes tracing (ptrace) a process outside the tree", support: "refused", note: "the tracee is not dumped; a restored tracer would trace nothing (a tracee inside the tree cannot be seized: refused as already traced)" },
  { id: "task.frozen-cgroup", area: "task", what: "processes in a frozen cgroup (cgroup v2 cgroup.freeze, v1 freezer)", support: "refused", note: "injected syscalls would wait for the thaw; cryo neither thaws nor re-freezes: thaw it first" },
  { id: "task.session-other", area: "task", what: "processes in a session other than their parent's that a restore cannot make (the parent called setsid after the fork; members of one session whose leader exited with different parents; a leader alive outside the tree)", support: "refused", note: "a restored process is born into its parent's session or makes its own; a session cannot be joined" },
  { id: "task.session-placeholder", area: "task", what: "sessions whose leader exited, their members alive (a daemon's double fork)", support: "saved", note: "made again by a placeholder process with the leader's pid, forked by the members' parent, which calls setsid and clones them for that parent (CLONE_PARENT); then it is killed and reaped before the tree runs" },
  { id: "task.group-placeholder", area: "task", what: "process groups whose leader exited and was reaped, their members alive (a pipeline whose first command ended)", support: "saved", note: "made again by a placeholder process with the leader's pid, forked by a member's parent; the members join it, then it is killed and reaped before the tree runs" },
  { id: "task.group-leader-gone", area: "task", what: "processes in a process group the restore cannot make again (its leader gone, in another session than theirs)", support: "refused", note: "not reached by a tree the kernel allows; kept as the check's last word" },
  { id: "task.sysvsem-undo", area: "task", what: "System V semaphore undo lists shared by processes (CLONE_SYSVSEM without CLONE_THREAD)", support: "refused", note: "a restored process has a list of its own; the adjustments themselves (semop with SEM_UNDO) are shown by no interface: a known gap" },
  { id: "task.pdeath-thread", area: "task", what: "children with a parent-death signal (PR_SET_PDEATHSIG) forked by a thread other than their parent's main thread", support: "refused", note: "the signal fires when that thread exits; a restored child is forked by the main thread" },
  { id: "task.exiting", area: "task", what: "processes exiting (an exit that waits: a close a FUSE server has not answered, a large memory torn down)", support: "refused", note: "they run no more code, so they cannot stop; there is nothing left to restore" },
  { id: "task.fuse-wait", area: "task", what: "threads waiting for a FUSE request whose server neither answers nor lets it be interrupted", support: "refused", note: "they cannot stop until the server answers: retry then (the thread is let go once it stops)" },
  { id: "task.restart-syscall", area: "task", what: "a thread inside restart_syscall (a sleep, poll or futex wait resumed after a stop) whose original call cannot be told", support: "refused", note: "the original call is read from the kernel's restart block (BPF task iterator, /proc/kallsyms) and re-issued; refused where that cannot be read, or its arguments disagree" },
  { id: "task.signal-interrupt", area: "task", what: "a signal with a handler pending at the dump that neither the thread's mask nor the mask of the call it waits in (sigsuspend, ppoll, pselect6, epoll_pwait with a mask) blocks", support: "refused", note: "the handler would run with the thread's mask, not the call's; in other calls such a signal ends the call as the kernel would (EINTR, or restarted with SA_RESTART)" },
  { id: "task.vfork", area: "task", what: "parents waiting in vfork() for their child", support: "refused", note: "the child runs on the parent's memory, which cryo cannot share again" },
  // Memory.
  { id: "memory.anon", area: "memory", what: "private and shared anonymous memory", support: "saved" },
  { id: "memory.file", area: "memory", what: "file mappings (private copies-on-write saved)", support: "saved" },
  { id: "memory.ghost", area: "memory", what: "mappings of deleted files and memfds (content saved in the image)", support: "saved" },
  { id: "memory.sysv-shm", area: "memory", what: "System V shared memory segments attached by the tree (id, key, size, owner, mode, content, attach address and flags, marked for removal)", support: "saved", note: "re-created by the engine with the same id through shm_next_id; creator, pids and times are not kept" },
  { id: "memory.sysv-shm-locked", area: "memory", what: "System V shared memory segments locked with SHM_LOCK", support: "refused", note: "not restored yet" },
  { id: "memory.sysv-shm-outside", area: "memory", what: "System V shm segments also attached by processes outside the tree", support: "refused", note: "the restored segment would no longer be shared with them" },
  { id: "memory.sysv-shm-partial", area: "memory", what: "System V shm attachments partly unmapped, or segments not listed in /proc/sysvipc/shm", support: "refused", note: "shmat attaches a whole segment" },
  { id: "memory.sysv-shm-rootless", area: "memory", what: "System V shm segments of a tree dumped rootless in the host's IPC namespace", support: "refused", note: "their ids are given through shm_next_id, which its user namespace cannot write" },
  { id: "memory.aio", area: "memory", what: "native AIO contexts (io_setup): ring size and address (the aio_context_t), kernel id, completed events not reaped, head and tail", support: "saved", note: "fs/aio-nr is charged the smallest count giving the same ring (the program's own count is not visible)" },
  { id: "memory.aio-inflight", area: "memory", what: "AIO requests submitted and not completed (counted from the free slots of the context)", support: "refused", note: "they live in the kernel; retry when they have completed" },
  { id: "memory.aio-orphan", area: "memory", what: "AIO ring mappings without their context in the process (inherited across fork)", support: "refused", note: "the kernel does not pass contexts across fork; the mapping shares the parent's ring" },
  { id: "memory.aio-other", area: "memory", what: "AIO rings cryo cannot re-create as they were (partly unmapped, re-protected, a header the kernel did not write)", support: "refused", note: "see the detail" },
  { id: "memory.deleted-special", area: "memory", what: "mappings of deleted device or special files", support: "refused", note: "they cannot be re-created unlinked" },
  { id: "memory.flags", area: "memory", what: "madvise and mlock flags, mlockall, guard regions, KSM merge-any, sealed mappings (mseal)", support: "saved", note: "sealed again by the engine once the restore program has run" },
  { id: "memory.hugetlb", area: "memory", what: "huge page (hugetlb) memory: private and shared anonymous MAP_HUGETLB mappings, MFD_HUGETLB memfds (with their mappings), files of a hugetlbfs mount (deleted ones too) and System V SHM_HUGETLB segments, at their huge page size (smaps KernelPageSize, the file's block size)", support: "saved", note: "only pages holding data are saved; the restore refuses, before any process is made, a host with fewer free huge pages of a size than the images take" },
  { id: "memory.vmflags", area: "memory", what: "hugetlb mappings of System V SHM_HUGETLB segments and of deleted hugetlbfs files, userfaultfd and shadow-stack mappings", support: "refused", note: "not re-created yet" },
  { id: "memory.secretmem", area: "memory", what: "memfd_secret areas and fds", support: "refused", note: "no other process can read their pages (not even through /proc/<pid>/mem)" },
  { id: "memory.pkey", area: "memory", what: "mappings given a memory protection key (pkey_mprotect; smaps ProtectionKey, CPUs with PKU)", support: "refused", note: "not re-created yet: the restored mapping would have key 0, open to every access the key denied" },
  { id: "memory.mempolicy", area: "memory", what: "NUMA memory policies: each thread's (set_mempolicy, numactl) and each private mapping's own (mbind): mode, mode flags, nodes", support: "saved", note: "refused at restore when a node they name is not online on the host" },
  { id: "memory.mempolicy-shared", area: "memory", what: "NUMA policies of shared mappings (shmem, System V shm, shared file mappings; mbind)", support: "refused", note: "the policy lives on the memory object, which other holders share" },
  { id: "memory.cow", area: "memory", what: "pages shared copy-on-write across fork, shared anonymous memory inherited across fork", support: "saved", note: "stored once, inherited by the child at restore" },
  { id: "memory.shmem-pieces", area: "memory", what: "one shared anonymous object mapped in several places (a piece moved by mremap, mapped again through map_files, held by a parent and its child at different addresses)", support: "saved", note: "made once at its size, every piece mapped from it at its offset" },
  { id: "memory.shmem-unreachable", area: "memory", what: "shared anonymous memory with pages the process has not mapped, dumped without access to /proc/<pid>/map_files (rootless)", support: "refused", note: "pages another holder wrote are found only through the memory object itself" },
  { id: "memory.shmem-past-end", area: "memory", what: "shared anonymous mappings wholly past the end of their memory object (grown with mremap, then the object's part unmapped)", support: "refused", note: "not re-created yet (a mapping partly past it is: SIGBUS stays past the end)" },
  { id: "memory.anon-shared-tree", area: "memory", what: "shared anonymous memory shared other than by inheritance at the same address, nor by a process and its children restored by inheritance (siblings alone, a grandparent and a grandchild, a child that exec'd)", support: "refused", note: "not restored yet (one object is made in the process whose inheriting children map it elsewhere)" },
  // Fds.
  { id: "fd.file", area: "fd", what: "regular files, directories, devices", support: "saved" },
  { id: "fd.proc-own", area: "fd", what: "files of the process's own /proc/<pid> directory, or of an ancestor's in the tree (their main thread's), with their offsets", support: "saved", note: "reopened by path once the process exists again (an ancestor exists before its descendants make their fds)" },
  { id: "fd.transfer-limit", area: "fd", what: "objects handed between processes at restore (shared descriptions, pipes, unix sockets, ptys, deleted files) in a tree whose fds reach its NOFILE hard limit", support: "refused", note: "they are handed over at fd numbers above every fd of the tree, which the limit forbids (valgrind keeps its fds just under it)" },
  { id: "fd.proc-other", area: "fd", what: "files of another process's or thread's /proc/<pid> directory (not the holder's own nor an ancestor's)", support: "refused", note: "outside the tree the pid may name another process (or none) at restore time; inside it, that process (a descendant, a sibling, a thread) may not exist yet when the fd is opened" },
  { id: "fd.mqueue", area: "fd", what: "POSIX message queue descriptors of a named queue (mq_open)", support: "saved", note: "opened again by name: the queue outlives the killed tree, its messages and attributes are the host's (as a file's content); the restore requires the same queue" },
  { id: "fd.mqueue-unlinked", area: "fd", what: "POSIX message queues unlinked while open", support: "refused", note: "their messages and attributes are not saved yet" },
  { id: "fd.mqueue-notify", area: "fd", what: "POSIX message queues with a notification (mq_notify) registered by a process of the tree", support: "refused", note: "the registration ends with the process; its sigevent value is shown nowhere" },
  { id: "fd.ghost", area: "fd", what: "files deleted while open, O_TMPFILE files, memfds (content, holes, size, mode, owner, access and modification times, seals, write-life hint; restored unlinked)", support: "saved" },
  { id: "fd.memfd-hugetlb", area: "fd", what: "deleted files of a hugetlbfs mount (held by an fd or a mapping)", support: "saved", note: "made again at their path on a hugetlbfs mount of the same huge page size and removed, filled through a mapping; refused at restore when the directory is no such mount" },
  { id: "fd.ghost-reserved", area: "fd", what: "a deleted file or memfd on tmpfs holding pages fallocate reserved and nothing wrote", support: "refused", note: "the copy keeps data only and tmpfs shows not where such pages are (no FIEMAP; SEEK_DATA and mincore skip them): the reservation would be lost. On ext4 and other FIEMAP file systems they are found and reserved again" },
  { id: "fd.path-shadowed", area: "fd", what: "a file whose path leads elsewhere since its open (a mount made over its directory), on a file system without file handles", support: "refused", note: "reopening the path would fail or open the mount's file; with file handles it is reopened by its handle" },
  { id: "fd.inode-flags", area: "fd", what: "an fd open for writing on a file made immutable (chattr +i) since its open, or not O_APPEND on one made append-only (chattr +a)", support: "refused", note: "the restore's open with the fd's flags is EPERM, even for root" },
  { id: "fd.memfd-future-write-mapped", area: "fd", what: "a memfd sealed with F_SEAL_FUTURE_WRITE that a shared writable mapping (made before the seal) maps", support: "refused", note: "the seal forbids mapping it writable again at restore" },
  { id: "fd.device-stateful", area: "fd", what: "character devices with state of their own per open file (/dev/kmsg read from, /dev/net/tun, /dev/fuse, /dev/uinput, PM QoS requests, watchdogs, vhost, vfio)", support: "refused", note: "reopening the device would lose it" },
  { id: "fd.path", area: "fd", what: "O_PATH fds of a symbolic link itself, a socket's file or a FIFO", support: "saved", note: "opened again by path with O_PATH; the path must still name the same file" },
  { id: "fd.path-tree-socket", area: "fd", what: "O_PATH fds of the file of a unix socket bound in the tree", support: "refused", note: "the restore binds the socket again, which makes a new file" },
  { id: "fd.deleted-linked", area: "fd", what: "files whose name was removed while another name (a hard link) keeps them, on a file system without file handles", support: "refused", note: "a copy would not be the file the other name shows" },
  { id: "fd.deleted", area: "fd", what: "deleted special files (device nodes, an O_PATH fd of a removed socket file)", support: "refused", note: "they cannot be re-created unlinked" },
  { id: "fd.deleted-dir", area: "fd", what: "fds (O_DIRECTORY, O_PATH) of a removed directory; O_PATH fds of a removed symlink", support: "saved", note: "made again at its path (a directory empty, with its mode, owner and times; a symlink with its content and owner), opened by cryo and removed again before the tree gets it; the path must be free (a removed directory that is also a deleted cwd: the one made for the cwd)" },
  { id: "fd.pipe", area: "fd", what: "pipes (in a process, shared by the tree, leading out)", support: "saved" },
  { id: "fd.pipe-packets", area: "fd", what: "packets (O_DIRECT writes) waiting in pipes and FIFOs, with their boundaries", support: "saved", note: "written again one by one in packet mode" },
  { id: "fd.pipe-packets-mixed", area: "fd", what: "a pipe or FIFO holding packets (O_DIRECT writes) after plain bytes, or plain bytes and a packet read as one", support: "refused", note: "they could not be queued again exactly; retry when the pipe is drained" },
  { id: "fd.pipe-outside", area: "fd", what: "a pipe end or terminal leading out of the tree held above fd 2 (not also held at fds 0-2 in the tree) by a process other than the root", support: "refused", note: "nothing of the restorer's stands for it (fds 0-2 stand for those held there); the root's is saved and needs `--inherit-fd N=PATH` or `N=fd:M` at restore" },
  { id: "fd.pipe-reopened", area: "fd", what: "a pipe end open through several descriptions (reopened through /proc) in a pipe several processes of the tree hold", support: "refused", note: "not saved yet (a pipe one process holds: its other descriptions reopened through /proc/self/fd at restore)" },
  { id: "fd.epoll-split", area: "fd", what: "a shared epoll watching fds that no one holder has", support: "refused", note: "its watches cannot be re-added" },
  { id: "fd.epoll-oneshot-fired", area: "fd", what: "an EPOLLONESHOT epoll watch that fired and was not re-armed (EPOLL_CTL_MOD), of a file other than an eventfd, timerfd or signalfd", support: "refused", note: "added again it would report a hang-up or error the disarmed watch does not (epoll_ctl always adds them, and the kernel disarms a watch only by reporting it); retry once it is re-armed. On an eventfd, timerfd or signalfd, which report neither, it comes back exactly" },
  { id: "fd.epoll-orphan", area: "fd", what: "an epoll watch whose fd number was closed while only another process or a message holds its file", support: "refused", note: "a watch is re-added through an fd of the epoll's own process" },
  { id: "fd.fifo", area: "fd", what: "named pipes (FIFOs) with their buffered bytes", support: "saved" },
  { id: "fd.fifo-deleted", area: "fd", what: "named pipes whose path was removed (with their buffered bytes)", support: "saved", note: "made again under the old name, which must be free at restore, then unlinked" },
  { id: "fd.shared", area: "fd", what: "open file descriptions shared by processes of the tree", support: "saved", note: "re-created once by the holders' common ancestor" },
  { id: "fd.flags", area: "fd", what: "status flags, owner and signal (O_ASYNC, F_SETOWN_EX, F_SETSIG)", support: "saved" },
  { id: "fd.owner-outside", area: "fd", what: "fd owners outside the tree (F_SETOWN to another process)", support: "refused", note: "restore could not make them own it again" },
  { id: "fd.lock", area: "fd", what: "file locks (flock, POSIX record locks, OFD locks) and active file leases (F_SETLEASE)", support: "saved" },
  { id: "fd.lock-unattached", area: "fd", what: "file locks no fd shows (held through a memory mapping only)", support: "refused", note: "not saved yet" },
  { id: "fd.lease", area: "fd", what: "file leases being broken (a conflicting open waits), and delegations", support: "refused", note: "the broken lease's waiter and break time are not saved" },
  { id: "fd.eventfd", area: "fd", what: "eventfd", support: "saved" },
  { id: "fd.timerfd", area: "fd", what: "timerfd", support: "saved", note: "pending expirations kept; time stops while in the image" },
  { id: "fd.signalfd", area: "fd", what: "signalfd", support: "saved" },
  { id: "fd.epoll", area: "fd", what: "epoll", support: "saved", note: "a watch whose fd number was since closed or reused (its file kept by a dup) is added again under that number" },
  { id: "fd.inotify", area: "fd", what: "inotify instances and their watches (same watch descriptors, masks, flags)", support: "saved", note: "watches re-added by path; a watch added after restore is numbered after the highest restored one" },
  { id: "fd.inotify-queued", area: "fd", what: "inotify events not yet read", support: "refused", note: "they cannot be put back; retry when the instance is idle" },
  { id: "fd.inotify-unresolved", area: "fd", what: "inotify watches on an inode without a path (deleted and held open only outside the tree, or on a filesystem without file handles)", support: "refused", note: "a watch can only be re-added by path, or on a deleted file the tree holds" },
  { id: "fd.inotify-shared", area: "fd", what: "inotify instances shared by several processes of the tree", support: "refused", note: "each process would get an instance of its own, and every event would reach each one" },
  { id: "fd.inotify-wd-gap", area: "fd", what: "inotify watch descriptors more than 2048 numbers past the ones below them", support: "refused", note: "the restore program reaches each number one watch at a time" },
  { id: "fd.fanotify", area: "fd", what: "fanotify", support: "refused", note: "needs a global view of the filesystem" },
  { id: "fd.pidfd", area: "fd", what: "pidfds of the process itself, its children or its ancestors in the tree", support: "saved", note: "re-opened with pidfd_open once that process exists" },
  { id: "fd.pidfd-unordered", area: "fd", what: "pidfds of other processes of the tree (siblings, grandchildren, threads other than a leader)", support: "refused", note: "their creation is not ordered before the holder's fds" },
  { id: "fd.pidfd-outside", area: "fd", what: "pidfds of processes outside the tree", support: "refused", note: "the pid may name another process (or none) at restore time" },
  { id: "fd.pidfd-zombie", area: "fd", what: "pidfds of children that exited and were not reaped (zombies)", support: "refused", note: "a zombie is made again after its parent's fds" },
  { id: "fd.pidfd-shared", area: "fd", what: "pidfds shared by several processes of the tree", support: "refused", note: "each process would get a pidfd of its own, no longer sharing status flags" },
  { id: "fd.pidfd-dead", area: "fd", what: "pidfds of processes that have exited and were reaped (exit status kept)", support: "saved", note: "from a child cloned with CLONE_PIDFD that ends the same way at once and is reaped" },
  { id: "fd.pidfd-dead-shared", area: "fd", what: "pidfds of one exited and reaped process held by several processes of the tree (each its own description)", support: "refused", note: "each process's program would make a reaped process of its own: they would no longer name one process" },
  { id: "fd.pidfd-dead-other", area: "fd", what: "pidfds of exited processes that dumped core, of exited threads, or without an exit status", support: "refused", note: "a child cannot end that way without a core dump, or the status is unknown" },
  { id: "fd.io_uring", area: "fd", what: "io_uring", support: "refused", note: "its rings and in-flight requests live in the kernel" },
  { id: "fd.perf", area: "fd", what: "perf events", support: "refused", note: "counters cannot be re-created as they were" },
  { id: "fd.bpf", area: "fd", what: "bpf maps and programs", support: "refused", note: "kernel objects cryo cannot re-create" },
  { id: "fd.userfaultfd", area: "fd", what: "userfaultfd", support: "refused", note: "its registered ranges and pending faults live in the kernel" },
  { id: "fd.nsfs", area: "fd", what: "fds of the process's own namespaces (/proc/self/ns/<type>)", support: "saved", note: "opened again from /proc/self/ns/<type> by the restored process, which is in the same namespaces" },
  { id: "fd.nsfs-other", area: "fd", what: "fds of namespaces the process is not in", support: "refused", note: "the namespace may no longer exist at restore time" },
  { id: "fd.anon-other", area: "fd", what: "other anonymous inodes", support: "refused", note: "unknown kind" },
  // Terminals.
  { id: "tty.pty", area: "tty", what: "pseudo-terminals whose master is in the tree (same index, termios, window size, packet mode, lock, exclusive mode of either side, the master's output stopped (tcflow), a slave closed again (EIO), output column modulo 8, controlling terminal, foreground group)", support: "saved" },
  { id: "tty.pty-queued", area: "tty", what: "bytes waiting in a pty of the tree: input the slave has not read (raw, or canonical lines and a partial line), output the master has not", support: "saved", note: "read at dump in a raw mode and put back unprocessed; restore puts them back before the tree runs" },
  { id: "tty.pty-queued-rootless", area: "tty", what: "bytes waiting in a pty of a tree dumped rootless", support: "refused", note: "putting input back (TIOCSTI) needs CAP_SYS_ADMIN in the initial user namespace" },
  { id: "tty.pty-packet-status", area: "tty", what: "a pty master in packet mode with a status byte not read yet", support: "refused", note: "reading it would consume it; retry when the terminal is idle" },
  { id: "tty.pty-output-blocked", area: "tty", what: "a pty whose output is stopped (^S, tcflow) or whose master's buffer is full", support: "refused", note: "its bytes could not be written back" },
  { id: "tty.pty-slave-unopened", area: "tty", what: "a pty of the tree whose slave no process ever opened", support: "refused", note: "its input cannot be read without opening the slave, and closing it again would show the master a hang-up" },
  { id: "tty.pty-input-full", area: "tty", what: "a pty whose input fills the line discipline (4095 bytes)", support: "refused", note: "more bytes may wait before it, not processed yet" },
  { id: "task.autogroup-outside", area: "task", what: "an autogroup nice value (/proc/<pid>/autogroup) of a session whose leader is outside the tree", support: "refused", note: "the restored process joins the restorer's session, whose autogroup is not the image's to change" },
  { id: "tty.external", area: "tty", what: "terminals outside the tree (the user's terminal, a pty whose master is outside); a process, not a session leader, whose controlling terminal would not come back (its session leader or its terminal outside the tree)", support: "opt-in", optIn: "shell-job", note: "restore attaches them to the restorer's stdin/stdout/stderr; such a process takes the restorer's session and controlling terminal" },
  { id: "tty.external-ctty", area: "tty", what: "a session leader whose controlling terminal is outside the tree", support: "refused", note: "its session could not get that terminal back" },
  { id: "tty.fg-group-gone", area: "tty", what: "a pty of the tree whose foreground process group has no process in the tree (its members exited, or live outside)", support: "refused", note: "the restore could not make it the foreground group again (tcsetpgrp fails)" },
  { id: "tty.devtty", area: "tty", what: "/dev/tty open, its terminal the holder's controlling terminal, a pty of the tree", support: "saved", note: "reopened as /dev/tty once the controlling terminal is back" },
  { id: "tty.devtty-other", area: "tty", what: "/dev/tty open on a pty of the tree that is not its holder's controlling terminal as restored", support: "refused", note: "reopening /dev/tty would give another terminal" },
  { id: "tty.hung-up-gone", area: "tty", what: "a pty slave fd hung up when its master was closed (the pty gone: a daemon whose ssh session ended)", support: "saved", note: "the slave of a new pty, hung up (TIOCVHANGUP), its master closed: only the pty index differs" },
  { id: "tty.hung-up", area: "tty", what: "a terminal fd hung up (vhangup, TIOCVHANGUP) while its terminal exists, or in a user namespace", support: "refused", note: "a terminal reopened by the restore would not be hung up" },
  { id: "tty.ldisc", area: "tty", what: "a pty whose line discipline is not N_TTY (TIOCSETD)", support: "refused", note: "the discipline's state cannot be read; the restore would give N_TTY" },
  // Sockets.
  { id: "socket.stdio", area: "socket", what: "unix sockets on fds 0-2 leading out of the tree", support: "saved", note: "re-attached to the restorer's stdio; a TCP, UDP or netlink socket on fds 0-2 (an inetd-style service's connection) is saved and restored like any other" },
  { id: "socket.unix", area: "socket", what: "unix sockets in the tree: pairs, listeners, pending and accepted connections, queued data, shutdown, options", support: "saved", note: "a datagram socket whose peer was closed is made as a socketpair whose other end sends its queue again and is closed" },
  { id: "socket.unix-external", area: "socket", what: "unix sockets connected to a peer outside the tree", support: "opt-in", optIn: "ext-unix-sk", note: "reconnected to the peer's address at restore (a datagram socket stays unconnected if nothing is bound there)" },
  { id: "socket.unix-scm", area: "socket", what: "unix sockets with file descriptors in flight (SCM_RIGHTS) cryo cannot send again", support: "refused", note: "inotify, ttys, deleted files and memfds, unlinked message queues... no tree process holds; an epoll whose watched files no tree process holds at their numbers; a pipe end whose other end an outsider may hold; other families' sockets; fd-carrying sockets; stdio fds" },
  { id: "socket.unix-scm-fds", area: "socket", what: "file descriptors in flight (SCM_RIGHTS) in unix socket queues: tree fds' descriptions, files, eventfds, signalfds, timerfds, epolls, pipes (either end, or both), named message queues, unix sockets, TCP listeners and connections, unconnected TCP/UDP sockets", support: "saved", note: "sent again with their message (a description several messages carry is made once); an epoll's watches re-added by the holder of their files; a connection to the outside needs --tcp-established; in a stream only 1-byte messages with fds" },
  { id: "socket.unix-pending-data", area: "socket", what: "bytes sent on unix connections not accepted yet", support: "refused", note: "they can only be read by accepting the connection" },
  { id: "socket.unix-other", area: "socket", what: "unix sockets in a state cryo cannot re-create exactly", support: "refused", note: "see the detail" },
  { id: "socket.tcp-listen", area: "socket", what: "listening TCP sockets (IPv4, IPv6)", support: "saved" },
  { id: "socket.tcp-closed", area: "socket", what: "TCP sockets never connected (bound or not)", support: "saved" },
  { id: "socket.tcp-tree", area: "socket", what: "established and half-closed TCP connections inside the tree (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING; a receive side shut down by the program)", support: "saved", note: "TCP repair mode; this side's FIN is queued again by shutdown(), the peer's FIN (or its ACK of this side's) is a segment cryo writes to the restored socket from a raw socket (marked, so that the network lock lets it through)" },
  { id: "socket.tcp-established", area: "socket", what: "established and half-closed TCP connections to peers outside the tree", support: "opt-in", optIn: "tcp-established", note: "the dump drops their incoming segments from before it reads them (a BPF network lock) until the restore, or until the tree resumes (--leave-running, a failed dump), so a peer sending meanwhile sends again" },
  { id: "socket.tcp-accept-queue", area: "socket", what: "listening TCP sockets with connections not accepted yet", support: "refused", note: "those connections cannot be carried over; dump --skip-in-flight leaves them out instead (the kernel resets them when the tree is killed, the listener comes back with an empty queue)" },
  { id: "socket.tcp-ended", area: "socket", what: "TCP connections that ended (TCP_CLOSE after both FINs or a reset, the fd still open)", support: "saved", note: "re-created as a socket shut down both ways, unbound (reads give 0, writes EPIPE); refused while bytes are still queued or an error is pending, unless --tcp-close" },
  { id: "socket.tcp-close", area: "socket", what: "TCP connections with --tcp-close (dump: not read, no lock; restore: of an image dumped with --tcp-established)", support: "saved", note: "come back as sockets shut down both ways (TCP_CLOSE, reads give 0, POLLHUP, writes EPIPE), their queues dropped; the peers see the connection end (a FIN or reset at the kill, or a reset at their next segment)" },
  { id: "socket.tcp-other", area: "socket", what: "TCP sockets connecting (SYN_SENT), connections that ended with bytes still queued or an error pending, a connection whose send side is shut down without a FIN", support: "refused", note: "not saved yet" },
  { id: "socket.tcp-urgent", area: "socket", what: "TCP urgent (out-of-band) data not read yet", support: "refused", note: "not saved yet" },
  { id: "socket.tcp-md5", area: "socket", what: "TCP sockets with MD5 signature keys (TCP_MD5SIG: BGP sessions)", support: "refused", note: "not saved yet: a restored socket without its keys would have its segments dropped by the peer (a dump by a user without CAP_NET_ADMIN cannot see them)" },
  { id: "socket.tcp-rootless", area: "socket", what: "established TCP connections of a tree dumped rootless", support: "refused", note: "TCP repair mode needs CAP_NET_ADMIN in the host's network namespace" },
  { id: "socket.udp", area: "socket", what: "UDP sockets (bound, connected)", support: "saved" },
  { id: "socket.udp-queued", area: "socket", what: "UDP datagrams waiting to be read", support: "saved", note: "sent again at restore from their senders' addresses" },
  { id: "socket.udp-queued-other", area: "socket", what: "UDP datagrams that cannot be queued again exactly", support: "refused", note: "see the detail: senders that cannot be faked, non-peer senders, SO_PEEK_OFF, UDP_GRO, per-datagram options" },
  { id: "socket.inet-shared", area: "socket", what: "TCP, UDP and netlink sockets shared by several processes (pre-fork servers, connections inherited across fork)", support: "saved", note: "created once, by the holders' common ancestor, and inherited by every holder" },
  { id: "socket.inet-owner", area: "socket", what: "TCP, UDP and netlink sockets owned by a user other than root", support: "saved", note: "created with the owner's fs uid and gid" },
  { id: "socket.inet-owner-split", area: "socket", what: "TCP and UDP sockets whose owner (sk_uid) is not their fd's owner", support: "refused", note: "a re-created socket has one owner for both (the kernel keeps them equal: a safety check)" },
  { id: "socket.inet-multicast", area: "socket", what: "TCP and UDP sockets that joined multicast groups", support: "refused", note: "not saved yet" },
  { id: "socket.ping", area: "socket", what: "ICMP echo (\"ping\") sockets: SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6 (iputils ping, unprivileged)", support: "saved", note: "bound to the same echo identifier, connected to the same peer, with their options" },
  { id: "socket.udplite", area: "socket", what: "UDP-Lite sockets (bound, connected, shut down)", support: "saved", note: "with the checksum coverage options (UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV)" },
  { id: "socket.raw", area: "socket", what: "raw IPv4/IPv6 sockets (SOCK_RAW, any protocol)", support: "saved", note: "with IP_HDRINCL, ICMP_FILTER / ICMPV6_FILTER, IP options (IP_OPTIONS), bound and connected addresses" },
  { id: "socket.inet-queued-other", area: "socket", what: "UDP-Lite, ping and raw sockets with datagrams waiting to be read", support: "refused", note: "their senders cannot be faked to queue them again exactly" },
  { id: "socket.inet-other", area: "socket", what: "other IPv4/IPv6 sockets (SCTP, DCCP, MPTCP, ...)", support: "refused", note: "not saved yet" },
  { id: "socket.netlink-route", area: "socket", what: "netlink route and kernel uevent sockets (NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT), bound or never bound", support: "saved" },
  { id: "socket.netlink-queued", area: "socket", what: "netlink messages waiting to be read, or a dump in progress", support: "refused", note: "the kernel's replies cannot be queued again" },
  { id: "socket.netlink", area: "socket", what: "other netlink sockets (generic, audit, ...)", support: "refused", note: "not saved yet" },
  { id: "socket.inet-option", area: "socket", what: "TCP and UDP sockets with SO_TIMESTAMPING's SOF_TIMESTAMPING_OPT_ID, an upper layer protocol on TCP (TCP_ULP: kernel TLS), or a UDP socket of a kernel tunnel (UDP_ENCAP other than ESP in UDP: L2TP, GTP, ...)", support: "refused", note: "the counter cannot be set (setsockopt restarts it); kernel TLS keys and record state cannot be read, and the socket would come back sending in the clear; a tunnel's state belongs to its module" },
  { id: "socket.inet-pending", area: "socket", what: "TCP and UDP sockets with an error pending (SO_ERROR) or queued (IP_RECVERR), UDP sockets with a datagram being built (UDP_CORK, MSG_MORE), TCP connections whose SYN was saved (TCP_SAVE_SYN) and not read", support: "refused", note: "no setsockopt puts them back" },
  { id: "socket.inet-filter", area: "socket", what: "TCP and UDP sockets with a classic BPF filter (SO_ATTACH_FILTER, SO_LOCK_FILTER)", support: "saved", note: "attached again once the socket's queued datagrams are back; a datagram arriving during the restore is queued unfiltered" },
  { id: "socket.filter", area: "socket", what: "sockets with an eBPF filter (SO_ATTACH_BPF), unix and netlink sockets with a classic one (SO_ATTACH_FILTER)", support: "refused", note: "an eBPF program cannot be read back; classic filters are saved for TCP and UDP only" },
  { id: "socket.packet", area: "socket", what: "AF_PACKET sockets (SOCK_RAW, SOCK_DGRAM): protocol, bound interface (by index, checked by name at restore), PACKET_* and SO_* options, classic filter, memberships (multicast, promiscuous, all-multicast), fanout group", support: "saved" },
  { id: "socket.packet-queued", area: "socket", what: "AF_PACKET sockets with packets waiting to be read", support: "refused", note: "a packet socket's queue cannot be filled again; retry when the program has read them" },
  { id: "socket.packet-ring-mapped", area: "socket", what: "AF_PACKET rx rings (TPACKET_V1, V2, V3) and unused tx rings, their mapping at its address and permissions, the frames the program owns; the kernel fills next where it filled next at dump (libpcap, tcpdump)", support: "saved", note: "packets the kernel puts in a V3 block after the one it was filling at the freeze are lost, as on the wire; PACKET_STATISTICS restart from zero" },
  { id: "socket.packet-ring", area: "socket", what: "AF_PACKET rings whose kernel position cannot be set up again: a V1/V2 position inside a block of several frames, timestamps that do not tell it, a full V3 ring (retry), a tx ring that was used, a ring mapped in other pieces or not by the process that holds its socket", support: "refused", note: "a new ring starts at block 0: only a turn by whole blocks of the mapping puts the kernel's position back" },
  { id: "socket.packet-interface", area: "socket", what: "AF_PACKET sockets bound to (or members on) an interface removed since, or whose index names another interface at restore, or none", support: "refused", note: "checked at dump and at restore" },
  { id: "socket.packet-other", area: "socket", what: "SOCK_PACKET sockets, fanout groups steered by a BPF program", support: "refused", note: "not saved" },
  { id: "socket.other", area: "socket", what: "other sockets", support: "refused", note: "not saved yet" },
] as const satisfies readonly SupportRow[];

/** The identifier of a row of {@link SUPPORT_TABLE}. */
export type SupportId = typeof SUPPORT_TABLE[number]["id"];

const BY_ID = new Map<string, SupportRow>(SUPPORT_TABLE.map((r) => [r.id, r]));

/** The row of `id`. */
export function supportOf(id: SupportId): SupportRow {
  return BY_ID.get(id)!;
}

/**
 * Collects, for one tree, every use of something not restorable. `optIns`
 * are the opt-ins given on the command line (e.g. "tcp-established").
 */
export class Refusals {
  readonly #optIns: ReadonlySet<string>;
  readonly #problems: string[] = [];
  readonly #usedOptIns = new Set<string>();

  constructor(optIns: Iterable<string> = []) {
    this.#optIns = new Set(optIns);
  }

  /**
   * Records that `where` (e.g. "process 12 fd 4 (socket:[99])") uses `id`.
   * Returns true when it will be restored (saved, or an opt-in given).
   */
  use(id: SupportId, where: string, detail?: string): boolean {
    const row = supportOf(id);
    if (row.support === "saved" || row.support === "not-applicable") return true;
    if (row.support === "opt-in" && row.optIn && this.#optIns.has(row.optIn)) {
      this.#usedOptIns.add(row.optIn);
      return true;
    }
    const why = row.support === "opt-in"
      ? `needs --${row.optIn}${row.note ? ` (${row.note})` : ""}`
      : `${row.what}: ${detail ?? row.note ?? "not supported"}`;
    this.#problems.push(`${where}: ${why}`);
    return false;
  }

  /** Adds a problem found outside the table (e.g. by a kind's planner). */
  add(line: string): void {
    this.#problems.push(line);
  }

  /** The opt-ins that were needed and given. */
  get usedOptIns(): string[] {
    return [...this.#usedOptIns].sort();
  }

  /** Every problem line so far. */
  get problems(): readonly string[] {
    return this.#problems;
  }

  /** Throws an UnsupportedError listing every problem, if there is any. */
  throwIfAny(what: string): void {
    if (this.#problems.length) throw new UnsupportedError(what, [...this.#problems]);
  }
}

/** The table as Markdown (docs/ARCHITECTURE.md embeds exactly this). */
export function supportTableMarkdown(): string {
  const rows = SUPPORT_TABLE.map((r: SupportRow) => {
    const support = r.support === "opt-in" ? `opt-in (\`--${r.optIn}\`)` : r.support;
    return `| ${r.area} | ${r.what} | ${support} | ${r.note ?? ""} |`;
  });
  return ["| area | what | support | note |", "| --- | --- | --- | --- |", ...rows].join("\n");
}
