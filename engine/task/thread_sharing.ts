/**
 * What the threads of one process normally share but a thread can make its
 * own: its fs info (cwd, root, umask: `unshare(CLONE_FS)`), its fd table
 * (`unshare(CLONE_FILES)`), its namespaces (`unshare` or `setns` in the
 * thread), and its login uid and session id (a thread that wrote its own
 * /proc/thread-self/loginuid, or was created before its process's main
 * thread wrote one). Restored threads are cloned sharing all of these (the
 * login ids inherited from the main thread), so dump refuses a thread that
 * has its own, by name (task.thread-fs, task.thread-files,
 * task.thread-namespaces, task.thread-login).
 *
 * The task iterator's fs, files and nsproxy pointers and login ids when its
 * records were read in this freeze (engine/dump/thread_state.ts); else
 * kcmp(KCMP_FS, KCMP_FILES) of each thread with the main thread, from cryo
 * (two syscalls a thread), each thread's /proc ns links and its
 * /proc/<pid>/task/<tid>/loginuid and sessionid.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { Refusals, SupportId } from "../support.ts";

const KCMP_FILES = 2;
const KCMP_FS = 3;

const SHARED: [number, SupportId, string, "fs" | "files"][] = [
  [KCMP_FS, "task.thread-fs", "its own cwd, root and umask", "fs"],
  [KCMP_FILES, "task.thread-files", "its own fd table", "files"],
];

/** A thread's login uid and session id (task->loginuid, task->sessionid). */
export interface LoginIdsOfThread {
  loginuid: number;
  sessionid: number;
}

/** The task iterator's pointers and login ids per thread (engine/dump/thread_state.ts). */
export interface SharingRecords {
  nsproxy: ReadonlyMap<number, bigint>;
  fs: ReadonlyMap<number, bigint>;
  files: ReadonlyMap<number, bigint>;
  /** Absent: read from /proc. */
  loginIds?: ReadonlyMap<number, LoginIdsOfThread>;
}

/** The namespace links compared thread by thread (those of task->nsproxy). */
const NAMESPACES = [
  "mnt",
  "net",
  "ipc",
  "uts",
  "cgroup",
  "pid_for_children",
  "time_for_children",
] as const;

/**
 * Refuses the threads `tids` of frozen process `pid` that do not share
 * their fs info, fd table or namespaces with the main thread (`records`:
 * each thread's pointers, when the task iterator read them).
 */
export function checkThreadSharing(
  pid: number,
  tids: readonly number[],
  refusals: Refusals,
  records?: SharingRecords,
): void {
  if (tids.length < 2) return;
  const mainNs = records?.nsproxy.get(pid);
  let mainLinks: (string | undefined)[] | undefined;
  const loginIds = (tid: number) => records?.loginIds?.get(tid) ?? procLoginIds(pid, tid);
  const mainLogin = loginIds(pid);
  for (const tid of tids) {
    if (tid === pid) continue;
    const login = loginIds(tid);
    if (
      login && mainLogin &&
      (login.loginuid !== mainLogin.loginuid || login.sessionid !== mainLogin.sessionid)
    ) {
      refusals.use(
        "task.thread-login",
        `process ${pid} thread ${tid}`,
        `its login uid ${login.loginuid} and session id ${login.sessionid} are not its main ` +
          `thread's (${mainLogin.loginuid}, ${mainLogin.sessionid})`,
      );
    }
    for (const [type, id, what, field] of SHARED) {
      const mine = records?.[field].get(pid), theirs = records?.[field].get(tid);
      // kcmp: 0 the same; a thread gone meanwhile (ESRCH) is the freeze's business.
      const own = mine !== undefined && theirs !== undefined
        ? theirs !== mine
        : rawSyscall(SYS.kcmp, pid, tid, type, 0, 0) > 0n;
      if (own) refusals.use(id, `process ${pid} thread ${tid}`, `it has ${what}`);
    }
    const ns = records?.nsproxy.get(tid);
    if (mainNs !== undefined && ns !== undefined) {
      if (ns !== mainNs) {
        refusals.use(
          "task.thread-namespaces",
          `process ${pid} thread ${tid}`,
          "its namespaces are not its main thread's",
        );
      }
      continue;
    }
    mainLinks ??= NAMESPACES.map((n) => link(pid, pid, n));
    NAMESPACES.forEach((n, i) => {
      const theirs = link(pid, tid, n);
      if (theirs !== undefined && mainLinks![i] !== undefined && theirs !== mainLinks![i]) {
        refusals.use(
          "task.thread-namespaces",
          `process ${pid} thread ${tid}`,
          `its ${n} namespace (${theirs}) is not its main thread's (${mainLinks![i]})`,
        );
      }
    });
  }
}

/** /proc/<pid>/task/<tid>/ns/<name>, or undefined (a kind this kernel lacks, a thread gone). */
function link(pid: number, tid: number, name: string): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/task/${tid}/ns/${name}`);
  } catch {
    return undefined;
  }
}

/** /proc/<pid>/task/<tid>/loginuid and sessionid, or undefined (a kernel without audit, a thread gone). */
function procLoginIds(pid: number, tid: number): LoginIdsOfThread | undefined {
  try {
    const read = (name: string) =>
      Number(Deno.readTextFileSync(`/proc/${pid}/task/${tid}/${name}`).trim());
    return { loginuid: read("loginuid"), sessionid: read("sessionid") };
  } catch {
    return undefined;
  }
}
