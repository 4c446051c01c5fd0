/**
 * The supervised target of a policy: starting a command (with posix_spawn,
 * so that Deno's own child reaper never sees it and cryo can trace it),
 * attaching to an existing pid, and noticing when it ends — by wait4 on
 * the pid for our own children, by /proc for anyone else's.
 *
 * @module
 */

import { delimiter, isAbsolute, resolve } from "node:path";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { type FileAction, posixSpawn } from "../../ffi/spawn.ts";
import { decodeWaitStatus, waitPid, WNOHANG } from "../../ffi/wait.ts";
import { readStat } from "../proc/stat.ts";
import { TargetError } from "../errors.ts";
import { signalName } from "./signals.ts";

/** How a target ended: an exit code, a signal, or unknown (not our child, already reaped). */
export type TargetExit =
  | { code: number; signal?: undefined; unknown?: undefined }
  | { signal: number; code?: undefined; unknown?: undefined }
  | { unknown: true; code?: undefined; signal?: undefined };

/** A command for cryo to start (see `PolicySpec.target`). */
export interface CommandLaunch {
  /** The program and its arguments. */
  command: readonly string[];
  /** Working directory. */
  cwd?: string;
  /** Variables added to the runner's environment. */
  env?: Readonly<Record<string, string>>;
  /** File for stdin (default /dev/null). */
  stdin?: string;
  /** File for stdout (default: the runner's). */
  stdout?: string;
  /** File for stderr (default: the runner's). */
  stderr?: string;
}

/** Whether an end is abnormal: killed by a signal, a non-zero exit code, or unknown. */
export function isAbnormalExit(exit: TargetExit): boolean {
  return exit.code !== 0;
}

/**
 * The exit code a supervisor passes on for `exit`: the code, 128 + signal, or 1 when unknown.
 *
 * ```ts
 * exitCodeOf({ signal: 9 }); // 137
 * ```
 */
export function exitCodeOf(exit: TargetExit): number {
  if (exit.code !== undefined) return exit.code;
  if (exit.signal !== undefined) return 128 + exit.signal;
  return 1;
}

/**
 * How a target ended, for people.
 *
 * ```ts
 * describeExit({ code: 3 }); // "exited with code 3"
 * describeExit({ signal: 9 }); // "killed by SIGKILL"
 * ```
 */
export function describeExit(exit: TargetExit): string {
  if (exit.code !== undefined) return `exited with code ${exit.code}`;
  if (exit.signal !== undefined) return `killed by ${signalName(exit.signal)}`;
  return "ended (exit status unknown)";
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The executable `name` names: a path (relative to `cwd`), or a file found in $PATH. */
export function resolveExecutable(name: string, cwd?: string): string {
  if (name.includes("/")) {
    const path = isAbsolute(name) ? name : resolve(cwd ?? Deno.cwd(), name);
    if (!isExecutable(path)) throw new TargetError(`cannot start ${name}: not an executable file`);
    return path;
  }
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(delimiter)) {
    const path = `${dir || "."}/${name}`;
    if (isExecutable(path)) return resolve(path);
  }
  throw new TargetError(`cannot start ${name}: command not found in PATH`);
}

const O_RDONLY = 0;
const O_WRONLY_CREAT_TRUNC = 0o1 | 0o100 | 0o1000;

function fileActions(launch: CommandLaunch): FileAction[] {
  const actions: FileAction[] = [
    { kind: "open", fd: 0, path: resolve(launch.stdin ?? "/dev/null"), flags: O_RDONLY },
  ];
  const stdout = launch.stdout && resolve(launch.stdout);
  const stderr = launch.stderr && resolve(launch.stderr);
  if (stdout) actions.push({ kind: "open", fd: 1, path: stdout, flags: O_WRONLY_CREAT_TRUNC });
  if (stderr && stderr === stdout) actions.push({ kind: "dup2", fd: 1, newFd: 2 });
  else if (stderr) {
    actions.push({ kind: "open", fd: 2, path: stderr, flags: O_WRONLY_CREAT_TRUNC });
  }
  return actions;
}

function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** The process a policy supervises. */
export class TargetProcess {
  /** Its pid (a restored target keeps the pid). */
  readonly pid: number;
  /** Whether it is our child (started or restored by us), so that we reap it. */
  readonly ownChild: boolean;
  readonly #startTime: number;
  #exit: TargetExit | undefined;

  private constructor(pid: number, ownChild: boolean) {
    this.pid = pid;
    this.ownChild = ownChild;
    this.#startTime = readStat(pid).starttime;
  }

  /**
   * Starts `launch.command` in its own process group (so that a Ctrl-C
   * meant for the runner does not reach it), stdin from /dev/null unless
   * given, stdout/stderr to the runner's own or to the named files.
   */
  static spawn(launch: CommandLaunch): TargetProcess {
    const [program, ...args] = launch.command;
    const exe = resolveExecutable(program, launch.cwd);
    const env = launch.env
      ? Object.entries({ ...Deno.env.toObject(), ...launch.env }).map(([k, v]) => `${k}=${v}`)
      : undefined;
    let path = exe;
    let argv = [program, ...args];
    if (launch.cwd) {
      // posix_spawn has no portable chdir: a shell changes directory and execs (same pid).
      path = "/bin/sh";
      argv = ["sh", "-c", 'cd "$0" && exec "$@"', resolve(launch.cwd), exe, ...args];
    }
    const pid = posixSpawn(path, argv, {
      env,
      fileActions: fileActions(launch),
      newProcessGroup: true,
    });
    return new TargetProcess(pid, true);
  }

  /** Supervises an existing process (not started by us unless it is our child). */
  static attach(pid: number): TargetProcess {
    if (!Number.isInteger(pid) || pid <= 0) throw new TargetError(`invalid pid ${pid}`);
    let stat;
    try {
      stat = readStat(pid);
    } catch {
      throw new TargetError(`no process with pid ${pid}`);
    }
    if (stat.state === "Z" || stat.state === "X") throw new TargetError(`pid ${pid} is a zombie`);
    return new TargetProcess(pid, stat.ppid === Deno.pid);
  }

  /** Supervises a process we restored (our child). */
  static adopt(pid: number): TargetProcess {
    return new TargetProcess(pid, true);
  }

  /**
   * How it ended, or `undefined` while it runs. Never blocks. Must not be
   * called while a checkpoint traces it (wait4 would take ptrace stops).
   */
  poll(): TargetExit | undefined {
    if (this.#exit) return this.#exit;
    this.#exit = this.ownChild ? this.#pollChild() : this.#pollOther();
    return this.#exit;
  }

  #pollChild(): TargetExit | undefined {
    try {
      const st = waitPid(this.pid, WNOHANG);
      if (st.kind === "exited") return { code: st.code };
      if (st.kind === "signaled") return { signal: st.signal };
      return undefined;
    } catch {
      return { unknown: true }; // ECHILD: reaped elsewhere (e.g. while being dumped)
    }
  }

  #pollOther(): TargetExit | undefined {
    let stat;
    try {
      stat = readStat(this.pid);
    } catch {
      return { unknown: true };
    }
    if (stat.starttime !== this.#startTime) return { unknown: true }; // the pid was reused
    if (stat.state !== "Z" && stat.state !== "X") return undefined;
    const st = decodeWaitStatus(this.pid, stat.exitCode);
    if (st.kind === "exited") return { code: st.code };
    if (st.kind === "signaled") return { signal: st.signal };
    return { unknown: true };
  }

  /** Sends signal `sig` to it (nothing once it has ended). */
  signal(sig: number): void {
    if (!this.poll()) rawSyscall(SYS.kill, this.pid, sig);
  }

  /**
   * Sends `sig` to its whole process group when it leads one that we
   * created (a started or restored target), else to the process alone.
   */
  signalTree(sig: number): void {
    if (this.poll()) return;
    let leader = false;
    try {
      leader = this.ownChild && readStat(this.pid).pgrp === this.pid;
    } catch { /* gone */ }
    rawSyscall(SYS.kill, leader ? -this.pid : this.pid, sig);
  }

  /**
   * Ends it (and its process group, see {@link signalTree}): SIGTERM, then
   * SIGKILL after `graceMs`; resolves with how it ended (reaped when it is
   * our child).
   */
  async terminate(graceMs: number): Promise<TargetExit> {
    this.signalTree(15);
    const deadline = Date.now() + graceMs;
    let killed = false;
    for (;;) {
      const exit = this.poll();
      if (exit) return exit;
      if (!this.ownChild && !processExists(this.pid)) return { unknown: true };
      if (!killed && Date.now() >= deadline) {
        this.signalTree(9);
        killed = true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
