/**
 * The IPC namespace of a launched tree (`cryo launch --ipc`, or one it
 * made itself). Everything here runs inside that namespace (dump) or the
 * fresh one (restore), so /proc/sysvipc and /proc/sys/kernel are its own.
 *
 * - Dump: every System V message queue with its messages, read in order
 *   without consuming them (msgrcv MSG_COPY), every semaphore set with its
 *   values, every shm segment (attached or not: the unattached ones join
 *   the manifest's `sysvShm`, engine/memory/sysvshm.ts re-creates them all),
 *   with keys, ids, modes and owners; the namespace's limits (msgmax, sem,
 *   shmmax, ..., fs/mqueue/*). POSIX message queues are refused by name
 *   (the namespace's mqueue fs is mounted for a moment to list them).
 * - Restore: the limits first, then each object with its id (the
 *   namespace's {msg,sem}_next_id names the id the next get uses), key and
 *   mode, its content, and its owner.
 *
 * Not kept: send/receive/operation times and last pids of the objects,
 * per-semaphore last pids, semaphore undo lists of the processes
 * (SEM_UNDO adjustments live in the tasks, invisible from /proc), and an
 * id the tree itself asked for through {msg,sem,shm}_next_id and has not
 * used yet (they read -1 after a restore).
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "../base64.ts";
import {
  msgCopy,
  msgGet,
  msgSend,
  msgSet,
  msgStat,
  semGet,
  semGetAll,
  semSet,
  semSetAll,
  semStat,
} from "../../ffi/sysvipc.ts";
import { IPC_CREAT, IPC_EXCL } from "../../ffi/sysvshm.ts";
import { mount, umount } from "../../ffi/mounts.ts";
import type { NamespaceExtras, SysvMsgQueue, SysvSemSet, SysvShmSegment } from "../model.ts";
import { readSysvShm, saveSysvShmSegment, sysvShmLocked } from "../memory/sysvshm.ts";
import { RestoreError } from "../errors.ts";
import type { Refusals } from "../support.ts";

/** What the IPC namespace holds besides shm segments. */
export type IpcState = NonNullable<NamespaceExtras["ipc"]>;

/** The per-namespace limits saved and restored. */
const SYSCTLS = [
  "/proc/sys/kernel/msgmax",
  "/proc/sys/kernel/msgmnb",
  "/proc/sys/kernel/msgmni",
  "/proc/sys/kernel/sem",
  "/proc/sys/kernel/shmmax",
  "/proc/sys/kernel/shmall",
  "/proc/sys/kernel/shmmni",
  "/proc/sys/kernel/shm_rmid_forced",
  "/proc/sys/fs/mqueue/queues_max",
  "/proc/sys/fs/mqueue/msg_max",
  "/proc/sys/fs/mqueue/msgsize_max",
  "/proc/sys/fs/mqueue/msg_default",
  "/proc/sys/fs/mqueue/msgsize_default",
];

/** The ids (second column) of a /proc/sysvipc table. */
function ids(table: "msg" | "sem"): number[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(`/proc/sysvipc/${table}`);
  } catch { /* no SysV IPC */ }
  return text.split("\n").slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length > 2)
    .map((f) => Number(f[1]));
}

function collectQueue(id: number): SysvMsgQueue {
  const st = msgStat(id);
  const messages: SysvMsgQueue["messages"] = [];
  for (let i = 0; i < st.qnum; i++) {
    const m = msgCopy(id, i, Math.max(1, st.cbytes));
    messages.push({ mtype: m.mtype.toString(), text: encodeBase64(m.text) });
  }
  return {
    id,
    key: st.key,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    cuid: st.cuid,
    cgid: st.cgid,
    qbytes: st.qbytes,
    messages,
  };
}

function collectSet(id: number): SysvSemSet {
  const st = semStat(id);
  return {
    id,
    key: st.key,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    cuid: st.cuid,
    cgid: st.cgid,
    values: semGetAll(id, st.nsems),
  };
}

/** The POSIX message queues of this IPC namespace (its mqueue fs, mounted for a moment at `at`). */
function posixQueues(at: string): string[] {
  Deno.mkdirSync(at);
  try {
    mount("mqueue", at, "mqueue", 0, "");
    try {
      return [...Deno.readDirSync(at)].map((e) => e.name);
    } finally {
      umount(at, 2 /* MNT_DETACH */);
    }
  } finally {
    Deno.removeSync(at);
  }
}

/**
 * Dump (in the tree's IPC namespace, tree frozen): its objects. The shm
 * segments not in `sysvShm` (the attached ones) are saved into `dir` and
 * appended to it. `scratch` is a path where a directory may be made for a
 * moment.
 */
export function collectIpc(
  dir: string,
  scratch: string,
  sysvShm: SysvShmSegment[],
  refusals: Refusals,
): IpcState {
  const where = "its own IPC namespace";
  const sysctls: Record<string, string> = {};
  for (const f of SYSCTLS) {
    try {
      sysctls[f] = Deno.readTextFileSync(f).trim();
    } catch { /* not on this kernel */ }
  }
  const msgQueues = ids("msg").map(collectQueue);
  const semSets = ids("sem").map(collectSet);
  refusals.use("task.launched-ipc", where);
  for (const seg of readSysvShm().values()) {
    if (sysvShm.some((s) => s.shmid === seg.shmid)) continue;
    if (sysvShmLocked(seg)) {
      refusals.use("memory.sysv-shm-locked", where, `shmid ${seg.shmid} is SHM_LOCKed`);
      continue;
    }
    if (seg.nattch > 0) {
      refusals.use(
        "memory.sysv-shm-outside",
        where,
        `shmid ${seg.shmid} is attached ${seg.nattch} times by processes outside the tree`,
      );
      continue;
    }
    sysvShm.push(saveSysvShmSegment(seg, dir));
  }
  const queues = posixQueues(scratch);
  if (queues.length) {
    refusals.use("task.launched-posix-mqueue", where, `POSIX message queues ${queues.join(", ")}`);
  }
  return { msgQueues, semSets, sysctls };
}

function withNextId<T>(kind: "msg" | "sem", id: number, make: () => number, what: string): number {
  const file = `/proc/sys/kernel/${kind}_next_id`;
  Deno.writeTextFileSync(file, `${id}\n`);
  const got = make();
  if (got < 0) {
    throw new RestoreError(
      `cannot restore: System V ${what} ${id} cannot be re-created (errno ${-got})`,
    );
  }
  if (got !== id) {
    throw new RestoreError(`cannot restore: System V ${what} ${id} was re-created as ${got}`);
  }
  return got;
}

function checkCreator(o: SysvMsgQueue | SysvSemSet, what: string): void {
  if (o.cuid !== Deno.uid() || o.cgid !== Deno.gid()) {
    throw new RestoreError(
      `cannot restore: System V ${what} ${o.id} was created by uid ${o.cuid} gid ${o.cgid}, ` +
        `which this restorer (uid ${Deno.uid()} gid ${Deno.gid()}) cannot re-create`,
    );
  }
}

/**
 * Restore (in the fresh, empty IPC namespace, before the tree is
 * created): its limits, message queues and semaphore sets. Throws a
 * RestoreError (the namespace dies with the failed restore).
 */
export function restoreIpc(state: IpcState): void {
  for (const [f, v] of Object.entries(state.sysctls)) {
    try {
      if (Deno.readTextFileSync(f).trim() !== v) Deno.writeTextFileSync(f, `${v}\n`);
    } catch (e) {
      throw new RestoreError(`cannot restore: ${f} = ${v}: ${(e as Error).message}`);
    }
  }
  for (const q of state.msgQueues) {
    checkCreator(q, "message queue");
    const id = withNextId(
      "msg",
      q.id,
      () => msgGet(q.key, IPC_CREAT | IPC_EXCL | q.mode),
      "msq id",
    );
    // The limit first: the messages may need more than the default.
    msgSet(id, Deno.uid() ?? 0, Deno.gid() ?? 0, 0o600, q.qbytes);
    for (const m of q.messages) {
      msgSend(id, { mtype: BigInt(m.mtype), text: decodeBase64(m.text) });
    }
    msgSet(id, q.uid, q.gid, q.mode, q.qbytes);
  }
  for (const s of state.semSets) {
    checkCreator(s, "semaphore set");
    const id = withNextId(
      "sem",
      s.id,
      () => semGet(s.key, s.values.length, IPC_CREAT | IPC_EXCL | s.mode),
      "sem id",
    );
    semSetAll(id, s.values);
    semSet(id, s.uid, s.gid, s.mode);
  }
  for (const kind of ["msg", "sem"]) {
    try {
      Deno.writeTextFileSync(`/proc/sys/kernel/${kind}_next_id`, "-1\n");
    } catch { /* best effort */ }
  }
}
