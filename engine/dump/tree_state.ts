/**
 * Dump-time checks of state that processes of the tree share with each
 * other or that has no path any more: memory shared by processes (not
 * threads; fd tables and fs info: engine/task/shared_tables.ts), System V semaphore undo lists, a deleted cwd or root, file leases, locks
 * /proc/locks shows for the tree that no fd of it carries, children
 * cloned with an exit signal other than SIGCHLD, and children with a
 * parent-death signal forked by a thread other than their parent's main one.
 * Each is refused by name through the restorability table.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { closePipe, type PipeChild, spawnPipeReader } from "../../ffi/pipe_child.ts";
import { waitPid } from "../../ffi/wait.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals, SupportId } from "../support.ts";
import { locksOf } from "../fds/locks.ts";
import { devMajor, devMinor } from "../proc/fds.ts";
import { lockFileId, parseLockLine, type ProcLock, readLocks } from "../proc/locks.ts";
import { readStat } from "../proc/stat.ts";

const KCMP_VM = 1;
const KCMP_SYSVSEM = 6;

/** (Fd tables and fs info shared by processes: engine/task/shared_tables.ts.) */
const SHARED: [number, SupportId, string][] = [
  [KCMP_VM, "task.shared-vm", "share one address space"],
];

/** Refuses processes of the tree that share memory (kcmp). */
export function checkSharedTables(pids: readonly number[], refusals: Refusals): void {
  for (let i = 0; i < pids.length; i++) {
    for (let j = 0; j < i; j++) {
      for (const [type, id, what] of SHARED) {
        if (rawSyscall(SYS.kcmp, pids[j], pids[i], type, 0, 0) === 0n) {
          refusals.use(id, `processes ${pids[j]} and ${pids[i]} ${what}`);
        }
      }
    }
  }
}

/**
 * A task known to have no System V semaphore undo list, for
 * kcmp(KCMP_SYSVSEM) to compare with: kthreadd (pid 2 of the initial pid
 * namespace), which no clone with CLONE_SYSVSEM made and which never calls
 * semop; where it cannot be seen (a pid namespace), a `cat` cryo starts for
 * the comparison (posix_spawn clones without CLONE_SYSVSEM, and cat makes
 * no thread and no semop), ended by `release`. Undefined where neither can
 * be compared.
 */
function noUndoListTask(): { pid: number; release(): void } | undefined {
  const comparable = (pid: number) => rawSyscall(SYS.kcmp, Deno.pid, pid, KCMP_SYSVSEM, 0, 0) >= 0n;
  try {
    const stat = Deno.readTextFileSync("/proc/2/stat");
    if (/^2 \(kthreadd\) \w 0 /.test(stat) && comparable(2)) return { pid: 2, release() {} };
  } catch { /* not in this pid namespace */ }
  let child: PipeChild;
  try {
    child = spawnPipeReader("/bin/cat", ["cat"]);
  } catch {
    return undefined;
  }
  const release = () => {
    closePipe(child);
    try {
      waitPid(child.pid);
    } catch { /* reaped */ }
  };
  if (comparable(child.pid)) return { pid: child.pid, release };
  release();
  return undefined;
}

/**
 * Refuses processes of the tree that share one System V semaphore undo
 * list (clone with CLONE_SYSVSEM but not CLONE_THREAD): a restored process
 * has a list of its own. kcmp(KCMP_SYSVSEM) also finds two processes
 * without any list equal, so a pair counts only where one has a list: it
 * has several threads (pthread_create gives the process a list), or it
 * differs from a task known to have none ({@link noUndoListTask}; without
 * one, pairs of single-threaded processes are not compared).
 */
export function checkSharedSemUndo(
  procs: readonly { pid: number; threads: number }[],
  refusals: Refusals,
): void {
  if (procs.length < 2) return;
  // A reference only where two single-threaded processes could share a list.
  const none = procs.filter((p) => p.threads === 1).length > 0 ? noUndoListTask() : undefined;
  let withList;
  try {
    withList = procs.filter((p) =>
      p.threads > 1 ||
      (none !== undefined && rawSyscall(SYS.kcmp, none.pid, p.pid, KCMP_SYSVSEM, 0, 0) > 0n)
    );
  } finally {
    none?.release();
  }
  for (let i = 0; i < withList.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, b] = [withList[j].pid, withList[i].pid];
      if (rawSyscall(SYS.kcmp, a, b, KCMP_SYSVSEM, 0, 0) === 0n) {
        refusals.use("task.sysvsem-undo", `processes ${a} and ${b}`, "they share one undo list");
      }
    }
  }
}

/**
 * Refuses processes whose parent is in the tree and whose exit would send
 * it a signal other than SIGCHLD (clone() with another exit signal, or
 * none): restore forks every child with SIGCHLD. (The root's exit signal
 * goes to a parent outside the tree, the restorer after restore.)
 */
export function checkExitSignals(images: readonly ProcessImage[], refusals: Refusals): void {
  const pids = new Set(images.map((p) => p.pid));
  for (const p of images) {
    if (!pids.has(p.ppid)) continue;
    const sig = readStat(p.pid).exitSignal;
    if (sig !== 17 /* SIGCHLD */) {
      refusals.use(
        "task.exit-signal",
        `process ${p.pid}`,
        `its exit sends its parent ${p.ppid} signal ${sig}, not SIGCHLD`,
      );
    }
  }
}

/**
 * Refuses children with a parent-death signal (PR_SET_PDEATHSIG, in any of
 * their threads) forked by a thread of their parent other than its main
 * thread: the signal fires when that thread exits, and a restored child is
 * forked by its parent's main thread. The forking thread is the one whose
 * children file lists the child (read while the tree is frozen, only for
 * such children of multi-threaded parents).
 */
export function checkPdeathForkers(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((p) => [p.pid, p]));
  for (const c of images) {
    const parent = byPid.get(c.ppid);
    if (!parent || parent.threads.length < 2) continue;
    if (!c.threads.some((t) => (t.attrs?.pdeathsig ?? 0) !== 0)) continue;
    for (const t of parent.threads) {
      if (t.tid === parent.pid) continue;
      let kids: string[];
      try {
        kids = Deno.readTextFileSync(`/proc/${parent.pid}/task/${t.tid}/children`).split(" ");
      } catch {
        continue;
      }
      if (!kids.includes(String(c.pid))) continue;
      refusals.use(
        "task.pdeath-thread",
        `process ${c.pid}`,
        `thread ${t.tid} of its parent ${parent.pid} forked it`,
      );
    }
  }
}

/**
 * Refuses a deleted root (a deleted cwd is made again for the restore:
 * engine/restore/deleted_cwd.ts), and fds holding a lease being broken or
 * a delegation.
 */
export function checkProcessPaths(image: ProcessImage, refusals: Refusals): void {
  if (image.root.endsWith(" (deleted)")) {
    refusals.use("task.cwd-deleted", `process ${image.pid} root (${image.root})`);
  }
  for (const f of image.fds) {
    if (f.excluded) continue;
    for (const l of locksOf(f)) {
      if (l.class === "other") {
        refusals.use("fd.lease", `process ${image.pid} fd ${f.fd} (${f.target})`, l.text);
      }
    }
  }
}

/**
 * Refuses fd owners (F_SETOWN) that are not a process, thread or process
 * group of the tree: restore could not make them own the fd again.
 */
export function checkFdOwners(images: readonly ProcessImage[], refusals: Refusals): void {
  const tids = new Set(images.flatMap((p) => [p.pid, ...p.threads.map((t) => t.tid)]));
  const groups = new Set(images.map((p) => p.pgid));
  for (const p of images) {
    for (const f of p.fds) {
      if (!f.owner || f.owner.pid === 0 || f.excluded) continue;
      const known = f.owner.type === 2 ? groups.has(f.owner.pid) : tids.has(f.owner.pid);
      if (!known) {
        const what = ["thread", "process", "process group"][f.owner.type] ?? "owner";
        refusals.use(
          "fd.owner-outside",
          `process ${p.pid} fd ${f.fd} (${f.target})`,
          `owned by ${what} ${f.owner.pid}, which is not in the tree`,
        );
      }
    }
  }
}

/**
 * Refuses locks of the tree that no fd shows (/proc/locks against the fds'
 * "lock:" lines): a flock or OFD lock held through a description only a
 * memory mapping keeps open, a POSIX lock cryo could not attribute.
 */
export function checkUnattachedLocks(
  images: readonly ProcessImage[],
  refusals: Refusals,
  /** /proc/locks read while the tree was frozen, if the caller has it (default: read now). */
  locks: readonly ProcLock[] = readLocks(),
): void {
  const pids = new Set(images.map((p) => p.pid));
  const key = (l: { class: string; type: string; file: string; start: string; end: string }) =>
    `${l.class} ${l.type} ${l.file} ${l.start} ${l.end}`;
  const shown = new Set<string>();
  const files = new Map<string, string>(); // lock file id -> a path of the tree
  for (const p of images) {
    for (const f of p.fds) {
      for (const line of (f.extra["lock"] ?? "").split("\n")) {
        const l = parseLockLine(line);
        if (l) shown.add(key(l));
      }
    }
    const add = (x: { dev: number; ino: number; path: string } | undefined) => {
      if (x) files.set(lockFileId(devMajor(x.dev), devMinor(x.dev), x.ino), x.path);
    };
    for (const f of p.fds) add(f.file);
    // Indexed, no copy: 10,000 mappings (most without a file) are walked in the freeze.
    for (let i = 0; i < p.mappings.length; i++) add(p.mappings[i].file);
  }
  for (const l of locks) {
    const path = files.get(l.file);
    const ours = pids.has(l.pid) || (l.class === "OFDLCK" && path !== undefined);
    if (!ours || shown.has(key(l))) continue;
    refusals.use(
      "fd.lock-unattached",
      `${l.pid > 0 ? `process ${l.pid}` : "the tree"}: ${l.class} ${l.type} lock on ${
        path ?? l.file
      }`,
    );
  }
}
