/**
 * The processes of a benchmark run: spawned with posix_spawn (invisible to
 * Deno's reaper), waited for by pid with their resource usage (wait4
 * rusage: peak RSS, CPU time), and always killed and reaped by pid at the
 * end. The bench is a child subreaper, so a restored process that its
 * restorer left behind (`restore --detach`) becomes the bench's child.
 *
 * @module
 */

import { posixSpawn } from "../../ffi/spawn.ts";
import { rawSyscall, rawSyscallOffThread } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { decodeWaitStatus, type WaitStatus } from "../../ffi/wait.ts";

const WNOHANG = 1;
const ECHILD = 10n;
const EINTR = 4n;

/** How a waited-for child ended and what it used. */
export interface ChildResult {
  status: WaitStatus;
  /** Seconds from spawn to reap (poll granularity: 1 ms). */
  wallSeconds: number;
  /** Peak resident set size of the child (and the children it reaped), bytes. */
  maxRssBytes: number;
  userSeconds: number;
  systemSeconds: number;
}

/** A spawned process whose stdout and stderr go to files. */
export interface Child {
  pid: number;
  /** performance.now() at spawn. */
  spawnedAt: number;
  /** Wall clock (ms since the epoch, fractional) at spawn. */
  spawnedAtEpochMs: number;
  stdoutPath: string;
  stderrPath: string;
}

const live = new Set<number>();

/** Makes the bench a child subreaper (PR_SET_CHILD_SUBREAPER). */
export function becomeSubreaper(): void {
  const r = rawSyscall(SYS.prctl, 36, 1, 0, 0, 0);
  if (r < 0n) throw new Error(`prctl(PR_SET_CHILD_SUBREAPER) failed: ${r}`);
}

/** Wall clock in ms since the epoch with sub-ms precision. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Spawns `argv` (argv[0] is the path) with stdin /dev/null and output to the given files;
 * `env`: variables set (or replaced) in the child's environment, the bench's own otherwise.
 */
export function spawnChild(
  argv: string[],
  stdoutPath: string,
  stderrPath = stdoutPath,
  env?: Readonly<Record<string, string>>,
): Child {
  const O_WRONLY_CREAT_APPEND = 0o1 | 0o100 | 0o2000;
  const fileActions = [
    { kind: "open" as const, fd: 0, path: "/dev/null", flags: 0 },
    { kind: "open" as const, fd: 1, path: stdoutPath, flags: O_WRONLY_CREAT_APPEND },
    stderrPath === stdoutPath
      ? { kind: "dup2" as const, fd: 1, newFd: 2 }
      : { kind: "open" as const, fd: 2, path: stderrPath, flags: O_WRONLY_CREAT_APPEND },
  ];
  const spawnedAtEpochMs = epochMs();
  const spawnedAt = performance.now();
  const pid = posixSpawn(argv[0], argv, {
    fileActions,
    ...(env
      ? {
        env: Object.entries({ ...Deno.env.toObject(), ...env }).map(([k, v]) => `${k}=${v}`),
      }
      : {}),
  });
  live.add(pid);
  return { pid, spawnedAt, spawnedAtEpochMs, stdoutPath, stderrPath };
}

/** Registers a pid the bench now owns (a restored process re-parented to it). */
export function adopt(pid: number): void {
  live.add(pid);
}

/** wait4(pid, WNOHANG) with rusage; undefined while it runs. */
function tryReap(pid: number): { status: WaitStatus; usage: BigInt64Array } | undefined {
  const status = new Int32Array(1);
  const usage = new BigInt64Array(18); // struct rusage: 144 bytes
  for (;;) {
    const r = rawSyscall(SYS.wait4, pid, status, WNOHANG, usage);
    if (r === -EINTR) continue;
    if (r === -ECHILD) {
      live.delete(pid);
      throw new Error(`process ${pid} is not a child of the bench`);
    }
    if (r < 0n) throw new Error(`wait4(${pid}) failed: ${r}`);
    if (r === 0n) return undefined;
    const st = decodeWaitStatus(pid, status[0]);
    if (st.kind === "exited" || st.kind === "signaled") {
      live.delete(pid);
      return { status: st, usage };
    }
  }
}

/** waitid(2): wait by pid; for exited children; leave the child waitable. */
const P_PID = 1, WEXITED = 4, WNOWAIT = 0x01000000;

/**
 * Waits until `child` exits (killing it after `timeoutMs`); returns its
 * status and usage. The wait blocks on Deno's blocking pool (`waitid` with
 * WNOWAIT, then `wait4` reaps it with its usage), so the bench takes no CPU
 * while a measured command runs: a poll every millisecond woke it ~1,000
 * times a second, beside a dump copying on both CPUs (docs/PERFORMANCE.md,
 * "Latest: status of issue 10 after the third pass").
 */
export async function waitChild(child: Child, timeoutMs = 600_000): Promise<ChildResult> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    rawSyscall(SYS.kill, child.pid, 9);
  }, timeoutMs);
  const info = new Uint8Array(128); // siginfo_t, filled by the kernel off the main thread
  try {
    for (;;) {
      const done = tryReap(child.pid);
      if (done) {
        if (timedOut) throw new Error(`process ${child.pid} (${child.stdoutPath}) timed out`);
        const tv = (i: number) => Number(done.usage[i]) + Number(done.usage[i + 1]) / 1e6;
        return {
          status: done.status,
          wallSeconds: (performance.now() - child.spawnedAt) / 1000,
          maxRssBytes: Number(done.usage[4]) * 1024,
          userSeconds: tv(0),
          systemSeconds: tv(2),
        };
      }
      const r = await rawSyscallOffThread(SYS.waitid, P_PID, child.pid, info, WEXITED | WNOWAIT);
      if (r < 0n) await new Promise((res) => setTimeout(res, 1)); // interrupted: look again
    }
  } finally {
    clearTimeout(timer);
  }
}

/** True when `pid` exists and is a child of the bench (never signal anyone else's process). */
function isOurChild(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return ppid === Deno.pid;
  } catch {
    return false;
  }
}

/** Sends SIGKILL to `pid` and reaps it, if it is the bench's child; otherwise only forgets it. */
export async function killAndReap(pid: number, timeoutMs = 10_000): Promise<void> {
  if (!isOurChild(pid)) {
    live.delete(pid);
    return;
  }
  rawSyscall(SYS.kill, pid, 9);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let done;
    try {
      done = tryReap(pid);
    } catch {
      return; // not our child (already reaped)
    }
    if (done) return;
    if (performance.now() > deadline) throw new Error(`process ${pid} did not die`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Kills and reaps every process the bench started or adopted that is still there. */
export async function cleanupProcesses(): Promise<void> {
  for (const pid of [...live]) await killAndReap(pid, 5000).catch(() => {});
  live.clear();
}

/**
 * Waits until `pid` is gone: a zombie child of the bench is reaped, anyone
 * else's exit awaited (a restore needs the original pid free).
 */
export async function waitPidFree(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const stat = (() => {
      try {
        return Deno.readTextFileSync(`/proc/${pid}/stat`);
      } catch {
        return undefined;
      }
    })();
    if (stat === undefined) return;
    const state = stat.slice(stat.lastIndexOf(")") + 2)[0];
    if (state === "Z" || state === "X") {
      try {
        tryReap(pid);
      } catch { /* someone else's child, or reaped already */ }
    }
    if (performance.now() > deadline) throw new Error(`pid ${pid} is still in use`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
