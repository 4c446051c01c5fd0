/**
 * The per-thread state that only a thread itself can set (robust futex
 * list, rseq area, alternate signal stack, the signals queued to it, its
 * name), for every thread but the main one (whose restore program sets
 * them): one section of the restore program per thread, after its END,
 * that goes on into the thread's credentials section. At finalize the
 * engine runs every thread of a process at once from its section (one
 * resume and one stop per thread for both, all threads in parallel:
 * engine/task/creds_restore.ts) instead of injecting each syscall into
 * each thread in turn.
 *
 * A section's syscalls are checked like any op of the program: a refusal
 * stops the thread at the stub's FAIL and fails the restore with the op's
 * comment (the whole tree is then killed, as for any failure).
 *
 * Each section also reads the thread's timer slack (PR_GET_TIMERSLACK) into
 * slot 0 of slots of its own: the engine runs each thread with r12 at its
 * 8 bytes of one area (the stub's `loopRip`), and reads the area of all
 * threads at once after the run, instead of one /proc/<tid>/timerslack_ns
 * per thread (engine/task/sched.ts `checkTimerSlacks`). A thread whose
 * recorded policy is a fair one also reads its scheduling, affinity and
 * I/O priority there (slots 1 to 3 and the rest of its area:
 * engine/task/sched_run.ts), instead of cryo reading them before the runs.
 * Nothing else run from these sections (the credentials sections) uses a
 * slot.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { stackT } from "../../ffi/structs.ts";
import { decodeBase64 } from "../base64.ts";
import type { ProcessImage, ThreadState } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { CredsSections } from "../task/creds.ts";
import { emitSchedReads, RUN_AREA_BYTES, schedReadInRun } from "../task/sched_run.ts";
import { emitSetMempolicy, samePolicy } from "../memory/mempolicy.ts";

const PR_SET_NAME = 15;
const PR_GET_TIMERSLACK = 30;
const SIGTRAP = 5;
const SIGSTOP = 19;
const SS_DISABLE = 2;
const SS_ONSTACK = 1;

/**
 * The section of each thread but the main one: the op its program starts
 * at, and `slots`, the slots its run uses (r12): slot 0 receives its timer
 * slack; areas of {@link RUN_AREA_BYTES} each, one after the other in
 * thread order. `schedRead`: the section also reads the thread's
 * scheduling into its area (engine/task/sched_run.ts).
 */
export type ThreadSections = { tid: number; op: number; slots: bigint; schedRead: boolean }[];

/** Each thread's run area, by tid, as read after the runs (engine/task/creds_restore.ts). */
export type RunAreas = ReadonlyMap<number, DataView>;

/** The timer slack each thread read in its run (slot 0 of its area). */
export function slacksOf(areas: RunAreas): ReadonlyMap<number, bigint> {
  const out = new Map<number, bigint>();
  for (const [tid, view] of areas) out.set(tid, view.getBigUint64(0, true));
  return out;
}

/** The name a thread's section gives it: its record's first 15 characters, as before. */
function nameOf(t: ThreadState): string {
  return t.comm.slice(0, 15);
}

/** Bytes of a name's slot in {@link threadNames}' block (TASK_COMM_LEN). */
const NAME_SLOT = 16;

/**
 * The address of each thread's name for PR_SET_NAME, NUL-terminated, all
 * in one data block of {@link NAME_SLOT} bytes per thread instead of a
 * string (and a buffer, and a TextEncoder) each: the same bytes `cstring`
 * writes for an ASCII name, which is at most 15 characters. A name with
 * any other character gets no slot here (undefined: `cstring` as before).
 */
function threadNames(p: ProgramBuilder, threads: readonly ThreadState[]): (bigint | undefined)[] {
  const block = new Uint8Array(NAME_SLOT * threads.length);
  const ascii = threads.map((t, i) => {
    const s = nameOf(t);
    for (let k = 0; k < s.length; k++) {
      const c = s.charCodeAt(k);
      if (c >= 0x80) return false;
      block[NAME_SLOT * i + k] = c;
    }
    return true; // (the slot's other bytes stay 0: the NUL after the name)
  });
  if (!ascii.some((a) => a)) return [];
  const at = p.data(block, 1);
  return ascii.map((a, i) => a ? at + BigInt(NAME_SLOT * i) : undefined);
}

/**
 * Appends one section per non-main thread of `proc` to the program (after
 * its END: the main program never reaches them). Pending SIGSTOP and
 * SIGTRAP are left out, as before (engine/task/stopped.ts, sigtrap.ts).
 * `then`: the op each thread goes on at when its section is done (its
 * credentials section, engine/task/creds.ts: one resume of the thread
 * sets both, its own state first, see {@link chainedCreds}); a thread
 * without one stops at its section's END.
 */
export function emitThreadSections(
  p: ProgramBuilder,
  proc: ProcessImage,
  then?: ReadonlyMap<number, number>,
): ThreadSections {
  const out: ThreadSections = [];
  const others = proc.threads.filter((t) => t.tid !== proc.pid);
  // All ones until a run stores its slack: no record equals it (a thread that did not run is
  // never taken for one that read its recorded slack).
  const area = others.length
    ? p.data(new Uint8Array(RUN_AREA_BYTES * others.length).fill(0xff))
    : 0n;
  const names = threadNames(p, others);
  // A thread is cloned with the main thread's NUMA policy (set by the program first).
  const mainPolicy = proc.threads.find((t) => t.tid === proc.pid)?.mempolicy;
  for (const t of others) {
    const op = p.opCount;
    const say = (what: string) => ({ comment: `thread ${t.tid}: ${what}` });
    if (BigInt(t.robustList.head) !== 0n) {
      p.op(SYS.set_robust_list, [BigInt(t.robustList.head), t.robustList.len], say("robust list"));
    }
    if (t.rseq) {
      p.op(SYS.rseq, [BigInt(t.rseq.addr), t.rseq.len, 0, BigInt(t.rseq.sig)], say("rseq"));
    }
    if (BigInt(t.sigaltstack.sp) !== 0n || t.sigaltstack.flags !== SS_DISABLE) {
      const ss = stackT.encode({
        sp: BigInt(t.sigaltstack.sp),
        flags: t.sigaltstack.flags & ~SS_ONSTACK, // not settable
        size: BigInt(t.sigaltstack.size),
      });
      p.op(SYS.sigaltstack, [p.data(ss), 0], say("sigaltstack"));
    }
    for (const sig of t.pending.filter((x) => x.signo !== SIGSTOP && x.signo !== SIGTRAP)) {
      p.op(
        SYS.rt_tgsigqueueinfo,
        [proc.pid, t.tid, sig.signo, p.data(decodeBase64(sig.raw))],
        say(`pending signal ${sig.signo}`),
      );
    }
    if (!samePolicy(t.mempolicy, mainPolicy)) {
      emitSetMempolicy(p, t.mempolicy, `thread ${t.tid}`); // engine/memory/mempolicy.ts
    }
    const name = names[out.length] ?? p.cstring(nameOf(t));
    p.op(SYS.prctl, [PR_SET_NAME, name, 0, 0, 0], say("name"));
    // Read back by the engine from slot 0 of the run's own slots (any result, checked there).
    p.op(SYS.prctl, [PR_GET_TIMERSLACK, 0, 0, 0, 0], {
      store: 0,
      allowFail: true,
      ...say("timer slack read back"),
    });
    const slots = area + BigInt(RUN_AREA_BYTES * out.length);
    const schedRead = schedReadInRun(t);
    if (schedRead) emitSchedReads(p, slots, say);
    const next = then?.get(t.tid);
    // An empty copy: result 0, so always a jump.
    if (next !== undefined) {
      p.copy(0, 0, 0, { jumpIfZeroTo: next, ...say("on to its credentials") });
    } else p.end(`thread ${t.tid}: own state restored`);
    out.push({ tid: t.tid, op, slots, schedRead });
  }
  return out;
}

/**
 * The credentials runs of a process whose thread sections go on into the
 * credentials sections (`emitThreadSections` with `then`): each thread
 * but the main one starts at its own section, so that one resume of each
 * thread restores its own state and then its credentials (the engine's
 * finalize runs them all at once, engine/task/creds_restore.ts). Its own
 * state is still set before its credentials change, as when the two ran
 * apart (the signals queued to it are charged to the restorer, as before).
 */
export function chainedCreds(creds: CredsSections, sections: ThreadSections): CredsSections {
  const start = new Map(sections.map((s) => [s.tid, s.op]));
  return { threads: creds.threads.map((t) => ({ tid: t.tid, op: start.get(t.tid) ?? t.op })) };
}
