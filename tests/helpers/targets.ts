/**
 * Test helpers: compile C targets from tests/targets/ (cached by content
 * hash), start them with posix_spawn (invisible to Deno's reaper), read
 * their reports and always clean up by pid.
 *
 * @module
 */

import { compileCached } from "../../scripts/cc.ts";
import { posixSpawn } from "../../ffi/spawn.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { waitPid, type WaitStatus, WNOHANG } from "../../ffi/wait.ts";
import { pathExists, removeTempDirs } from "./fs.ts";
import { deadlineIn } from "./wait.ts";

/**
 * Fds this test process inherited without FD_CLOEXEC (a harness's pipe, a
 * shell's stray fd) leak into every program Deno.Command starts; a pipe
 * leading out of a dumped tree above fd 2 must then be given at restore
 * (engine/fds/pipe.ts). Made close-on-exec once, when the helpers load.
 */
function closeInheritedOnExec(): void {
  const F_SETFD = 2, FD_CLOEXEC = 1;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(e.name);
    if (fd > 2) rawSyscall(SYS.fcntl, fd, F_SETFD, FD_CLOEXEC);
  }
}
closeInheritedOnExec();

const root = new URL("../../", import.meta.url).pathname;
const targetsDir = `${root}tests/targets`;
/** The headers a target may include (common.h, tcp_stream.h, ...): part of every target's cache key. */
const headers = [...Deno.readDirSync(targetsDir)]
  .filter((e) => e.isFile && e.name.endsWith(".h"))
  .map((e) => `${targetsDir}/${e.name}`)
  .sort();

/**
 * Compiles tests/targets/<name>.c once per content hash (of the source,
 * the headers of tests/targets and the flags); returns the binary path.
 */
export function buildTarget(name: string, extraFlags: string[] = []): Promise<string> {
  return compileCached(
    `${targetsDir}/${name}.c`,
    ["-O1", "-g", "-pthread", `-I${targetsDir}`, ...extraFlags],
    name,
    headers,
  );
}

let subreaper = false;
/** Makes this test process a child subreaper, so orphans of restored trees come back to us. */
export function becomeSubreaper(): void {
  if (subreaper) return;
  rawSyscall(SYS.prctl, 36, /* PR_SET_CHILD_SUBREAPER */ 1, 0, 0, 0);
  subreaper = true;
}

/** A running test target. */
export class Target {
  /** The pid the kernel gave it. */
  readonly pid: number;
  /** File receiving its stdout and stderr. */
  readonly outputPath: string;
  #status: WaitStatus | undefined;

  constructor(pid: number, outputPath: string) {
    this.pid = pid;
    this.outputPath = outputPath;
  }

  /** What it printed so far. */
  output(): string {
    try {
      return Deno.readTextFileSync(this.outputPath);
    } catch {
      return "";
    }
  }

  /** Waits until its output matches `re` (or throws after `timeoutMs`, at least MIN_WAIT_MS). */
  async waitFor(re: RegExp, timeoutMs = 10000): Promise<RegExpMatchArray> {
    const deadline = deadlineIn(timeoutMs);
    for (;;) {
      const m = this.output().match(re);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(
          `target ${this.pid}: timed out waiting for ${re}; output:\n${this.output()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * After the target was checkpointed (and killed) and then restored with
   * the same pid as a child of this process: forget the old exit so that
   * wait()/kill() apply to the restored process.
   */
  resetAfterRestore(): void {
    this.poll();
    this.#status = undefined;
  }

  /** Polls for exit without blocking; returns the status once it has exited. */
  poll(): WaitStatus | undefined {
    if (this.#status) return this.#status;
    let st: WaitStatus;
    try {
      st = waitPid(this.pid, WNOHANG);
    } catch {
      // ECHILD: not (or no longer) our child; treat as gone.
      this.#status = { kind: "signaled", pid: this.pid, signal: 9, core: false };
      return this.#status;
    }
    if (st.kind === "exited" || st.kind === "signaled") {
      this.#status = st;
      this.#reapedByUs = true;
    }
    return this.#status;
  }

  /** Waits for exit (polling, so the event loop keeps running), at most `timeoutMs` (at least MIN_WAIT_MS). */
  async wait(timeoutMs = 20000): Promise<WaitStatus> {
    const deadline = deadlineIn(timeoutMs);
    for (;;) {
      const st = this.poll();
      if (st) return st;
      if (Date.now() > deadline) throw new Error(`target ${this.pid} did not exit`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Sends a signal if it has not been reaped yet. */
  signal(sig: number): void {
    if (!this.#status) rawSyscall(SYS.kill, this.pid, sig);
  }

  /** Kills (SIGKILL) and reaps it (or waits for it to vanish if it is not our child). */
  async kill(): Promise<void> {
    if (this.#status && this.#status.kind !== "signaled") return;
    if (this.#status) {
      // Reaped by us (or not our child): still kill a leftover with that pid that we created.
      if (!this.#reapedByUs && pathExists(`/proc/${this.pid}`)) rawSyscall(SYS.kill, this.pid, 9);
      return;
    }
    rawSyscall(SYS.kill, this.pid, 9);
    await this.wait(5000).catch(() => {});
  }

  #reapedByUs = false;
}

/** Registry of everything started in this test process, cleaned by {@link cleanupTargets}. */
const started = new Set<Target>();

/** Registers a process this test created indirectly (e.g. a restored one) for cleanup. */
export function adoptPid(pid: number, outputPath = ""): Target {
  const t = new Target(pid, outputPath);
  started.add(t);
  return t;
}

/** Starts a compiled target (or any program) with output captured to a temp file. */
export async function startTarget(
  nameOrPath: string,
  args: string[] = [],
  opts: { cwd?: string; stdin?: string } = {},
): Promise<Target> {
  becomeSubreaper();
  const path = nameOrPath.startsWith("/") ? nameOrPath : await buildTarget(nameOrPath);
  const outputPath = await Deno.makeTempFile({ prefix: "cryo-target-" });
  const argv = [path, ...args];
  const fileActions = [
    { kind: "open" as const, fd: 0, path: opts.stdin ?? "/dev/null", flags: 0 },
    { kind: "open" as const, fd: 1, path: outputPath, flags: 0o1 | 0o2000 },
    { kind: "dup2" as const, fd: 1, newFd: 2 },
  ];
  let spawnPath = path;
  let spawnArgv = argv;
  if (opts.cwd) {
    spawnPath = "/bin/sh";
    spawnArgv = ["sh", "-c", 'cd "$0" && exec "$@"', opts.cwd, ...argv];
  }
  const pid = posixSpawn(spawnPath, spawnArgv, { fileActions });
  const t = new Target(pid, outputPath);
  started.add(t);
  return t;
}

/** Kills and reaps every target this process started. */
export async function cleanupTargets(): Promise<void> {
  for (const t of started) await t.kill();
  for (const t of started) {
    if (t.outputPath.includes("/cryo-target-")) await Deno.remove(t.outputPath).catch(() => {});
  }
  started.clear();
  await reapOrphanZombies();
}

/**
 * Reaps the dead descendants of killed targets that came back to this
 * process (a subreaper) as zombies; left alone they would pass to pid 1,
 * which does not reap them here. Only zombies whose parent is this process
 * are waited for, each by pid.
 */
async function reapOrphanZombies(): Promise<void> {
  await new Promise((r) => setTimeout(r, 50)); // the kills' effects reach the children
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    } catch {
      continue;
    }
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (state === "Z" && Number(ppid) === Deno.pid) {
      try {
        waitPid(pid, WNOHANG);
      } catch { /* someone else took it */ }
    }
  }
}

/**
 * Runs `fn` with cleanup afterwards, pass or fail: kills all started
 * targets, then removes every directory made with `tempDir()` (fs.ts).
 * Use as the body of a Deno.test.
 */
export function withTargets(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } finally {
      await cleanupTargets();
      await removeTempDirs();
    }
  };
}
