/**
 * The threads' runs started at their birth: each thread but the main one
 * of a process, stopped at its birth (clone3 with CLONE_PTRACE), is sent
 * at once into its own section of the program (its own state, then its
 * credentials: thread_state.ts, engine/task/creds.ts) instead of waiting,
 * parked, for the finalize to run every thread at once. The session
 * starts the run at the birth stop (one `PTRACE_SETREGS` and one
 * `PTRACE_CONT`, while the main thread goes on with its program: the
 * births come during its clones) and takes the run's end (a SIGTRAP stop)
 * as the thread's park; the finalize then runs only the main thread
 * (engine/task/creds_restore.ts) and checks each thread's run from its
 * area, as before.
 *
 * Only where that order changes nothing the finalize does before the
 * credentials (engine/task/mod.ts `restoreTaskState`), that is for a
 * process whose threads:
 *
 * - have no seccomp filter and are not in strict mode (installing one may
 *   need privileges the credentials drop);
 * - read their scheduling in their own run (a fair policy; real-time and
 *   deadline ones are set from cryo before the credentials);
 * - are in cryo's own cgroups (the launcher's, so nothing is moved at the
 *   finalize: a move into a cpuset would change the affinity the run read;
 *   a process moved anyway has its threads' scheduling checked again from
 *   cryo: {@link BirthRuns.afterCgroups});
 *
 * and not for a lazy restore (a thread's section may touch memory the
 * userfaultfd registered later in the program serves).
 *
 * @module
 */

import { cont, getRegs, setRegs } from "../../ffi/ptrace.ts";
import type { UserRegs } from "../../ffi/regs.ts";
import type { ProcessImage } from "../model.ts";
import { collectCgroups } from "../task/placement.ts";
import { restoreSched } from "../task/sched.ts";
import { sectionRun } from "../task/creds_restore.ts";
import type { CompiledProcess } from "./compile.ts";

/** One process whose threads may run at birth. */
interface Unit {
  image: ProcessImage;
  compiled: CompiledProcess;
}

/** Whether `unit`'s threads may run their sections at birth (see the module doc). */
export function runsAtBirth(unit: Unit, ourCgroups: () => ReadonlySet<string>): boolean {
  const { image, compiled } = unit;
  if (compiled.threadSections.length === 0 || compiled.lazy !== undefined) return false;
  if (image.threads.some((t) => t.seccomp === undefined || t.seccomp.mode !== 0)) return false;
  if (compiled.threadSections.some((s) => !s.schedRead)) return false;
  const ours = ourCgroups();
  return (image.cgroups ?? []).every((line) => ours.has(line));
}

/** The runs started at birth, per process of a restore session. */
export class BirthRuns {
  /** Per thread that may run at birth: its process's unit and its run's start and slots. */
  readonly #start = new Map<number, { unit: Unit; op: number; slots: bigint }>();
  /** Threads whose run is under way. */
  readonly #running = new Set<number>();
  /** Per process: the threads whose run at birth reached a stop, and its parked registers. */
  readonly #ran = new Map<number, Set<number>>();
  readonly #parked = new Map<number, UserRegs>();
  /** Runs at birth that reached their stop. */
  #stops = 0;

  /** `units`: every process of the session. */
  constructor(units: Iterable<Unit>) {
    let ours: Set<string> | undefined;
    const ourCgroups = () => ours ??= new Set(collectCgroups(Deno.pid));
    for (const unit of units) {
      if (!runsAtBirth(unit, ourCgroups)) continue;
      const ops = new Map(unit.compiled.creds.threads.map((t) => [t.tid, t.op]));
      for (const s of unit.compiled.threadSections) {
        const op = ops.get(s.tid);
        if (op !== undefined) this.#start.set(s.tid, { unit, op, slots: s.slots });
      }
      this.#ran.set(unit.image.pid, new Set());
    }
  }

  /**
   * At thread `tid`'s birth stop: starts its run when it may run at birth
   * (true), else false (it stays parked for the finalize).
   */
  start(tid: number): boolean {
    const s = this.#start.get(tid);
    if (!s) return false;
    const pid = s.unit.image.pid;
    // Every thread is born from a clone3 of the same stub: one's registers serve for all.
    let from = this.#parked.get(pid);
    if (!from) {
      from = getRegs(tid);
      this.#parked.set(pid, from);
    }
    const run = sectionRun(tid, s.unit.compiled.bootstrap, s.op, s.slots, from);
    setRegs(tid, run.regs);
    cont(tid, 0);
    this.#running.add(tid);
    return true;
  }

  /**
   * A SIGTRAP stop of thread `tid`: true when it is the stop of its run at
   * birth (at its section's END or at a failed op: the finalize tells them
   * apart from the run's area, engine/task/creds_restore.ts).
   */
  stopped(tid: number): boolean {
    const s = this.#start.get(tid);
    if (!s || !this.#running.delete(tid)) return false;
    this.#ran.get(s.unit.image.pid)!.add(tid);
    this.#stops++;
    return true;
  }

  /**
   * Whether a thread that may run at birth has not reached its run's stop
   * yet: its birth or its stop comes soon (the session polls more often).
   */
  get pending(): boolean {
    return this.#stops < this.#start.size;
  }

  /** The threads of process `pid` whose run at birth reached its stop. */
  ranOf(pid: number): ReadonlySet<number> {
    return this.#ran.get(pid) ?? new Set();
  }

  /**
   * After the finalize's cgroup moves of `image` (`moved`: any): the
   * scheduling its threads read at birth may be stale, so each of them is
   * checked (and set) from cryo as for a thread that read nothing.
   */
  afterCgroups(image: ProcessImage, moved: boolean): void {
    if (!moved) return;
    for (const t of image.threads) {
      if (this.ranOf(image.pid).has(t.tid)) restoreSched(image.pid, t.tid, t.sched!, true);
    }
  }
}
