/**
 * System V semaphore sets, message queues and shm segments of the host's
 * IPC namespace that a dumped tree was seen using, without holding them
 * (an attached shm segment is saved whole: engine/memory/sysvshm.ts; a
 * launched tree's own namespace is saved whole: engine/pidns/ipc.ts).
 *
 * Such an object lives in the namespace, not in a process: the killed
 * tree leaves it behind, and the restored tree names it again by its id.
 * The dump records which ones the tree uses, as far as the kernel shows
 * it: a thread waiting in semop/semtimedop/msgrcv/msgsnd on it (the id is
 * the call's first argument), a semaphore whose last semop was a tree
 * process's (GETPID), a queue whose last send or receive was (lspid,
 * lrpid), a segment a tree process created or last attached or detached
 * (cpid, lpid). The restore refuses, naming the object, when one of them
 * is gone or is another object now (key, creator, size or number of
 * semaphores changed): the program would otherwise go on with an id that
 * means nothing, or something else (a restore on another host). A
 * /proc/sysvipc table is read only when the namespace holds objects of its
 * kind (three *_INFO calls tell, in the freeze: most hosts hold none). Its
 * content is not recorded: like a file on disk it is shared with the rest
 * of the host, which may change it meanwhile. An id the tree keeps in its
 * memory and used in no way the kernel shows is not found.
 *
 * @module
 */

import { ipcObjectCounts, msgStat, semGetPid, semStat } from "../../ffi/sysvipc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { RestoreError } from "../errors.ts";
import type { ProcessImage, SysvUsed } from "../model.ts";
import { readSysvShm } from "../memory/sysvshm.ts";
import type { Refusals } from "../support.ts";

const WAITS: ReadonlyMap<number, SysvUsed["kind"]> = new Map([
  [SYS.semop, "sem"],
  [SYS.semtimedop, "sem"],
  [SYS.msgrcv, "msg"],
  [SYS.msgsnd, "msg"],
]);

const NAMES: Record<SysvUsed["kind"], string> = {
  sem: "semaphore set",
  msg: "message queue",
  shm: "shm segment",
};

/** The rows of /proc/sysvipc/<table> as records by column name. */
function table(name: "sem" | "msg" | "shm"): Record<string, string>[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(`/proc/sysvipc/${name}`);
  } catch {
    return []; // no SysV IPC
  }
  const [head, ...rows] = text.split("\n");
  const cols = head.trim().split(/\s+/);
  return rows.map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= cols.length)
    .map((f) => Object.fromEntries(cols.map((c, i) => [c, f[i]])));
}

/** Identity of object `id` of `kind` now: undefined when there is none. */
function identity(kind: SysvUsed["kind"], id: number): Omit<SysvUsed, "why"> | undefined {
  try {
    if (kind === "sem") {
      const s = semStat(id);
      return { kind, id, key: s.key, cuid: s.cuid, cgid: s.cgid, size: s.nsems };
    }
    if (kind === "msg") {
      const s = msgStat(id);
      return { kind, id, key: s.key, cuid: s.cuid, cgid: s.cgid, size: 0 };
    }
  } catch {
    return undefined; // EINVAL or EIDRM: none with that id
  }
  const s = readSysvShm().get(id);
  return s && { kind, id, key: s.key, cuid: s.cuid, cgid: s.cgid, size: s.size };
}

/**
 * Dump (tree frozen, in cryo's IPC namespace): the objects the tree is seen
 * using (see the module doc), except the shm segments it attaches
 * (`attached`, saved as such).
 */
export function collectSysvUsed(
  images: readonly ProcessImage[],
  attached: ReadonlySet<number>,
  refusals: Refusals,
): SysvUsed[] {
  const pids = new Set(images.map((p) => p.pid));
  const found = new Map<string, { kind: SysvUsed["kind"]; id: number; why: string }>();
  const add = (kind: SysvUsed["kind"], id: number, why: string) => {
    if (!found.has(`${kind}:${id}`)) found.set(`${kind}:${id}`, { kind, id, why });
  };
  for (const p of images) {
    for (const t of p.threads) {
      const kind = WAITS.get(t.syscall.nr);
      if (kind === undefined) continue;
      const id = Number(BigInt.asIntN(32, BigInt(t.regs.rdi)));
      if (id >= 0) add(kind, id, `thread ${t.tid} of process ${p.pid} waits on it`);
    }
  }
  // A table of a kind the namespace holds none of now is not read (most hosts: none at all).
  const counts = ipcObjectCounts();
  const rows = (kind: SysvUsed["kind"]) => counts?.[kind] === 0 ? [] : table(kind);
  for (const row of rows("sem")) {
    const id = Number(row.semid), nsems = Number(row.nsems);
    for (let i = 0; i < nsems; i++) {
      const pid = semGetPid(id, i);
      if (pids.has(pid)) {
        add("sem", id, `process ${pid} made the last semop on semaphore ${i}`);
        break;
      }
    }
  }
  for (const row of rows("msg")) {
    for (const col of ["lspid", "lrpid"]) {
      const pid = Number(row[col]);
      if (pids.has(pid)) {
        const what = col === "lspid" ? "sent" : "received";
        add("msg", Number(row.msqid), `process ${pid} ${what} the last message`);
      }
    }
  }
  for (const row of rows("shm")) {
    const id = Number(row.shmid);
    if (attached.has(id)) continue;
    for (const col of ["cpid", "lpid"]) {
      const pid = Number(row[col]);
      if (pids.has(pid)) {
        const what = col === "cpid" ? "created it" : "attached or detached it last";
        add("shm", id, `process ${pid} ${what}`);
      }
    }
  }
  const out: SysvUsed[] = [];
  for (const f of found.values()) {
    const now = identity(f.kind, f.id);
    if (now === undefined) continue; // gone meanwhile: nothing to find again
    out.push({ ...now, why: f.why });
    refusals.use("task.sysv-host-used", `System V ${NAMES[f.kind]} ${f.id}`);
  }
  return out;
}

const hex = (key: number) => `0x${(key >>> 0).toString(16)}`;

/**
 * Restore pre-flight (in the restorer's IPC namespace): every object the
 * tree used is still there, the same one. Throws a RestoreError naming the
 * first that is not.
 */
export function checkSysvUsed(used: readonly SysvUsed[]): void {
  for (const u of used) {
    const now = identity(u.kind, u.id);
    const what = `System V ${NAMES[u.kind]} ${u.id} (key ${
      hex(u.key)
    }), which the tree uses (${u.why})`;
    if (now === undefined) throw new RestoreError(`cannot restore: ${what}, is gone`);
    const changed = [
      now.key !== u.key ? `key ${hex(now.key)}` : "",
      now.cuid !== u.cuid || now.cgid !== u.cgid
        ? `created by uid ${now.cuid} gid ${now.cgid}`
        : "",
      now.size !== u.size
        ? (u.kind === "sem" ? `${now.size} semaphores` : `${now.size} bytes`)
        : "",
    ].filter((s) => s !== "");
    if (changed.length) {
      throw new RestoreError(`cannot restore: ${what}, is another one now (${changed.join(", ")})`);
    }
  }
}
