/**
 * Test hook for fault injection: with `CRYO_TEST_PAUSE_AT=<phase>` (or
 * `<phase>:<n>` for its n-th occurrence, 1-based) in the environment, cryo
 * stops itself with SIGSTOP when it reaches that phase, so that a test can
 * SIGKILL it exactly there (tests/kill_anywhere_test.ts). Without the
 * variable every {@link pausePoint} is a no-op.
 *
 * Dump phases: frozen, collect, scratch, inject (before each injected
 * syscall), inject-mid (the injected registers set, the syscall not run
 * yet), inject-restore (a thread's own mask back, not yet its registers),
 * probe (the mlockall probe page mapped), batch-mid and batch-end (a syscall
 * batch about to run, and ended), precopy-arm (the pre-copy's first freeze
 * over, a process's tracking about to be armed), precopy-settle (the tracking
 * armed, the tree frozen by the barrier before the copy), precopy-pages (each piece
 * pre-copied while the tree runs, `--leave-running`), ghosts, pages,
 * precopy-release (the tree thawed, the tracking not yet released),
 * precopy-release-chunk (before each chunk of the tracking's release), notes, written,
 * manifest, fsync, rename, killed; rehearsal-helper (a dump frozen once: the
 * collect's rehearsal's helper process frozen, engine/dump/rehearsal.ts), helper-started
 * (that helper started, not yet waited for); snapshot-born (a fork snapshot made, not yet
 * told to die with cryo), snapshot (the snapshot ready, the tree not yet thawed),
 * snapshot-reaped (the snapshot reaped by cryo, not yet in the target:
 * engine/dump/fork_snapshot.ts). Restore phases: planned, spawned,
 * launched, exec, program-done, finalize, released; with --lazy, lazy-serve
 * (before each chunk of the background pass, after the tree was released).
 * Migration (`cryo migrate`): migrate-stopped (the source stopped after the
 * final dump, its last round not sent yet).
 *
 * @module
 */

import { rawSyscall, selfPid } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

function wanted(): { phase: string; nth: number } | undefined {
  let spec: string | undefined;
  try {
    spec = Deno.env.get("CRYO_TEST_PAUSE_AT");
  } catch {
    return undefined; // no env permission: never pause
  }
  if (!spec) return undefined;
  const [phase, n] = spec.split(":");
  return { phase, nth: n ? Number(n) : 1 };
}

const target = wanted();
let seen = 0;

/** Whether `CRYO_TEST_PAUSE_AT` names `phase` (a test stops cryo there). */
export function pauseWanted(phase: string): boolean {
  return target?.phase === phase;
}

/**
 * Stops cryo (SIGSTOP) if `CRYO_TEST_PAUSE_AT` names this occurrence of
 * `phase`. The signal is sent to the calling thread (tgkill): it stops the
 * whole process, and the caller before it goes on. Sent to the process, it
 * was taken by the main thread, and a worker that paused went on meanwhile
 * (a pre-copy's release on the copy lane's thread ran to its end).
 */
export function pausePoint(phase: string): void {
  if (!target || muted || target.phase !== phase || ++seen !== target.nth) return;
  rawSyscall(SYS.tgkill, selfPid(), rawSyscall(SYS.gettid), 19 /* SIGSTOP */);
}

let muted = 0;

/**
 * Runs `fn` with every {@link pausePoint} a no-op that is not counted
 * (work on a process other than the target, such as the collect's
 * rehearsal on a helper: engine/dump/rehearsal.ts).
 */
export function withoutPausePoints<T>(fn: () => T): T {
  muted++;
  try {
    return fn();
  } finally {
    muted--;
  }
}
