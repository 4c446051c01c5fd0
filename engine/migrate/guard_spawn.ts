/**
 * The sender's handle on its guard process (engine/migrate/guard.ts):
 * started before the first round, told which processes the sender
 * stopped, and told "done" once the switch happened; if the sender fails
 * (or dies, its pipe then closing), the guard continues and untracks the
 * source.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { type FileAction, posixSpawn } from "../../ffi/spawn.ts";
import { waitPid } from "../../ffi/wait.ts";
import { CryoError } from "../errors.ts";
import { readStat } from "../proc/stat.ts";
import { readTrackingState } from "../dump/tracking_state.ts";
import { treePids, uffdsOf } from "./guard.ts";

/** This environment without the test pause hook (engine/pause.ts): the guard never pauses. */
function guardEnv(): string[] {
  return Object.entries(Deno.env.toObject())
    .filter(([k]) => k !== "CRYO_TEST_PAUSE_AT")
    .map(([k, v]) => `${k}=${v}`);
}

/** A running guard of the source tree. */
export class SourceGuard {
  readonly #pid: number;
  #pipe: number;

  private constructor(pid: number, pipe: number) {
    this.#pid = pid;
    this.#pipe = pipe;
  }

  /** Starts the guard of the tree of `root` (which must be running). */
  static start(root: number): SourceGuard {
    let starttime: number;
    try {
      starttime = readStat(root).starttime;
    } catch {
      throw new CryoError(`no process ${root}`);
    }
    // The program's own userfaultfds (not a stale tracking of cryo's) are left alone.
    const stale = new Set((readTrackingState(root)?.fds ?? []).map((f) => `${f.pid}:${f.fd}`));
    const before = treePids(root).flatMap(uffdsOf).filter((w) => !stale.has(w));
    const fds = new Int32Array(2);
    if (rawSyscall(SYS.pipe2, fds, 0o2000000) < 0n) throw new CryoError("pipe2 failed");
    // The read end above every target fd, so the dup2 below always moves it (dropping CLOEXEC).
    const r = Number(rawSyscall(SYS.fcntl, fds[0], 1030, /* F_DUPFD_CLOEXEC */ 100));
    rawSyscall(SYS.close, fds[0]);
    const w = fds[1];
    if (r < 0) {
      rawSyscall(SYS.close, w);
      throw new CryoError("fcntl(F_DUPFD_CLOEXEC) failed");
    }
    const actions: FileAction[] = [0, 1, 2].map((fd) => ({
      kind: "open",
      fd,
      path: "/dev/null",
      flags: fd === 0 ? 0 : 1,
    }));
    actions.push({ kind: "dup2", fd: r, newFd: 3 }, { kind: "closefrom", fd: 4 });
    const script = new URL("./guard.ts", import.meta.url).href;
    let pid: number;
    try {
      pid = posixSpawn(Deno.execPath(), [
        "deno",
        "run",
        "-A",
        "--no-lock",
        "--quiet",
        script,
        String(root),
        String(starttime),
        before.length ? before.join(",") : "-",
      ], { fileActions: actions, newProcessGroup: true, closeFrom: null, env: guardEnv() });
    } catch (e) {
      rawSyscall(SYS.close, w);
      throw e;
    } finally {
      rawSyscall(SYS.close, r);
    }
    return new SourceGuard(pid, w);
  }

  /** Tells the guard that the sender stopped `pids` (it continues them if the sender fails). */
  stopped(pids: number[]): void {
    if (this.#pipe < 0 || !pids.length) return;
    const msg = new Uint8Array(5 + 4 * pids.length);
    msg[0] = 0x53; // "S"
    const words = new Uint32Array([pids.length, ...pids]);
    msg.set(new Uint8Array(words.buffer), 1);
    rawSyscall(SYS.write, this.#pipe, msg, msg.length);
  }

  /**
   * Ends the guard: with `switched`, it just exits; otherwise it does its
   * recovery (continue, untrack) first. Waits for it either way.
   */
  end(switched: boolean): void {
    if (this.#pipe < 0) return;
    if (switched) rawSyscall(SYS.write, this.#pipe, new Uint8Array([0x44]), 1);
    rawSyscall(SYS.close, this.#pipe);
    this.#pipe = -1;
    try {
      waitPid(this.#pid, 0);
    } catch { /* reaped */ }
  }
}
