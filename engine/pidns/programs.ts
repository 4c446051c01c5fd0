/**
 * The tiny executables cryo emits (like the restore launcher) to work with
 * private pid namespaces without a C compiler: each is a restore program
 * run by the stub of engine/restore/stub.ts, written to a temporary file
 * and started with posix_spawn.
 *
 * - the **namespace maker** (`cryo launch`, and `cryo restore` of a tree
 *   launched so): unshare(CLONE_NEWPID|CLONE_NEWNS), mount propagation of
 *   "/" made slave (nothing mounted inside leaks out), then clone3 with
 *   CLONE_PARENT of the namespace's init (pid 1; a child of cryo, not of
 *   the maker) which mounts its own /proc and execs; for a restore, a
 *   second child (cryo's engine, in the namespace) is cloned once /proc is
 *   mounted. The host pids of the children are written to fd 7.
 * - the **entrant** (`cryo dump` of such a tree): setns into the pid and
 *   mount namespaces of a pidfd, fork, the child execs cryo's engine, the
 *   entrant waits for it and exits.
 *
 * Fds of the maker: 0-2 cryo's; 3/4 the "go" pipe (the engine writes one
 * byte to 4 when the init may exec the root image), 5/6 the "ready" pipe
 * (the init writes one byte once /proc is mounted), 7 the pid report file.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { P_ALL, P_PID, WEXITED, WNOHANG, WNOWAIT } from "../../ffi/wait.ts";
import { CLONE, cloneArgs } from "../../ffi/structs.ts";
import { CLONE_NS, MS, O } from "../../ffi/ns.ts";
import { BootstrapBuilder } from "../restore/stub.ts";
import { buildExecutable } from "../restore/launcher_elf.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { emitAmbientAll, emitIdentityMaps, emitNoInheritedCaps, type UserNsIds } from "./userns.ts";

const BASE = 0x200000000n;

/** An argv/env vector, and the executable to run. */
export interface Exec {
  path: string;
  argv: string[];
  env: string[];
}

/** What the namespace init does once /proc is mounted. */
export interface InitPlan {
  /** The program to exec (the command, or the root image). */
  exec?: Exec;
  /**
   * Instead of an exec: stay the namespace's init, reap every orphan, and
   * exit when the process with this (inner) pid ends: with its exit code,
   * or 128 + its signal.
   */
  reapFor?: number;
  /** Wait for one byte on the go pipe before exec (a restore). */
  waitGo: boolean;
  /** Written to /proc/sys/kernel/ns_last_pid, so the engine's own tasks get pids above it. */
  lastPid?: number;
  /** More namespaces to make with the pid and mount ones (CLONE_NEWUTS, CLONE_NEWIPC). */
  unshare?: bigint;
  /** The host name of a new UTS namespace. */
  hostname?: string;
  /**
   * Rootless: a new user namespace mapping these ids to themselves owns the
   * other new namespaces (engine/pidns/userns.ts).
   */
  userNs?: UserNsIds;
}

function cloneParent(p: ProgramBuilder, reportAt: bigint): bigint {
  return p.data(cloneArgs.encode({
    flags: CLONE.PARENT | CLONE.PARENT_SETTID,
    pidfd: 0n,
    childTid: 0n,
    parentTid: reportAt,
    exitSignal: 0n,
    stack: 0n,
    stackSize: 0n,
    tls: 0n,
    setTid: 0n,
    setTidSize: 0n,
    cgroup: 0n,
  }));
}

function emitExec(p: ProgramBuilder, e: Exec, failCode: number): void {
  const path = p.cstring(e.path);
  const argv = p.u64s([...e.argv.map((a) => p.cstring(a)), 0]);
  const env = p.u64s([...e.env.map((a) => p.cstring(a)), 0]);
  p.op(SYS.execve, [path, argv, env], { allowFail: true, comment: `exec ${e.path}` });
  const msg = new TextEncoder().encode(`cryo: cannot execute ${e.path}\n`);
  p.op(SYS.write, [2, p.data(msg, 1), msg.length], { allowFail: true });
  p.op(SYS.exit_group, [failCode]);
}

function writeExe(build: (p: ProgramBuilder, slotsAddress: bigint) => void): string {
  const boot = new BootstrapBuilder(BASE);
  const p = boot.program();
  build(p, boot.slotsAddress);
  const bootstrap = boot.finish({ restore: p.build() });
  const exe = buildExecutable({ base: BASE, blob: bootstrap.blob, entry: bootstrap.entryRestore });
  const file = Deno.makeTempFileSync({ prefix: "cryo-ns-" });
  Deno.writeFileSync(file, exe, { mode: 0o700 });
  Deno.chmodSync(file, 0o700);
  return file;
}

const SEEK_SET = 0;
const SEEK_CUR = 1;

/**
 * The init's loop: wait (without reaping) for any child to end; if it is
 * `root`, exit with its status, else reap that child and wait again. The
 * stub only branches on zero, so: `umask` twice tells whether the low byte
 * of the status (the signal) is zero, and two `lseek`s on a memfd add 128.
 */
function emitReaper(p: ProgramBuilder, root: number, slotsAddress: bigint): void {
  const slotAddr = (i: number) => slotsAddress + BigInt(i) * 8n;
  const info = p.reserve(128);
  const status = p.reserve(8);
  const zero = p.reserve(8);
  // Until the engine in the namespace exits, the root is its child: wait to adopt it.
  p.label("reap-adopt");
  p.op(SYS.waitid, [P_PID, root, info, WEXITED | WNOWAIT | WNOHANG, 0], {
    allowFail: true,
    jumpIfZeroTo: "reap-loop",
    comment: `is ${root} our child yet?`,
  });
  p.op(SYS.nanosleep, [p.u64s([0, 1_000_000]), 0], { allowFail: true });
  p.copy(zero, zero, 0, { jumpIfZeroTo: "reap-adopt" });
  p.label("reap-loop");
  p.op(SYS.waitid, [P_ALL, 0, info, WEXITED | WNOWAIT, 0], { allowFail: true });
  p.op(SYS.wait4, [root, status, WNOHANG, 0], { allowFail: true, jumpIfZeroTo: "reap-other" });
  // The root ended: its signal (low byte of the status) into slot 7.
  p.copy(slotAddr(7), zero, 8);
  p.copy(slotAddr(7), status, 1);
  p.op(SYS.umask, [{ slot: 7 }]);
  p.op(SYS.umask, [0], { jumpIfZeroTo: "reap-exited", comment: "signal == 0?" });
  p.op(SYS.memfd_create, [p.cstring("status"), 0], { store: 6 });
  p.op(SYS.lseek, [{ slot: 6 }, { slot: 7 }, SEEK_SET]);
  p.op(SYS.lseek, [{ slot: 6 }, 128, SEEK_CUR], { store: 8, comment: "128 + signal" });
  p.op(SYS.exit_group, [{ slot: 8 }]);
  p.label("reap-exited");
  p.copy(slotAddr(7), status + 1n, 1); // the exit code (byte 1; slot 7's low byte was 0)
  p.op(SYS.exit_group, [{ slot: 7 }]);
  // Another child ended (an orphan): reap it by its pid (si_pid, at offset 16).
  p.label("reap-other");
  p.copy(slotAddr(5), zero, 8);
  p.copy(slotAddr(5), info + 16n, 4);
  p.op(SYS.wait4, [{ slot: 5 }, 0, WNOHANG, 0], { allowFail: true });
  p.copy(zero, zero, 0, { jumpIfZeroTo: "reap-loop" });
}

/**
 * Writes the namespace maker: `init` becomes pid 1 of a new pid namespace
 * (with its own mount namespace and /proc); `engine`, when given, is
 * cloned into that namespace once /proc is mounted. Returns the path of
 * the executable.
 */
export function writeNamespaceMaker(init: InitPlan, engine?: Exec): string {
  return writeExe((p, slotsAddress) => {
    const pids = p.reserve(8);
    const user = init.userNs ? CLONE_NS.NEWUSER : 0n;
    p.op(SYS.unshare, [user | CLONE_NS.NEWPID | CLONE_NS.NEWNS | (init.unshare ?? 0n)], {
      comment: "new pid and mount ns (and more)",
    });
    if (init.userNs) {
      emitIdentityMaps(p, init.userNs);
      emitAmbientAll(p);
    }
    if (init.hostname !== undefined) {
      const name = new TextEncoder().encode(init.hostname);
      p.op(SYS.sethostname, [p.data(name, 1), name.length], { comment: "host name" });
    }
    p.op(SYS.mount, [0, p.cstring("/"), 0, MS.REC | MS.SLAVE, 0], { comment: "/ slave" });
    if (init.waitGo) {
      p.op(SYS.pipe2, [p.reserve(8), 0], { comment: "go pipe: 3, 4" });
      p.op(SYS.pipe2, [p.reserve(8), 0], { comment: "ready pipe: 5, 6" });
    }
    p.op(SYS.clone3, [cloneParent(p, pids), cloneArgs.size], {
      jumpIfZeroTo: "init",
      comment: "the namespace's init",
    });
    p.op(SYS.write, [7, pids, 4], { comment: "report the init's pid" });
    if (engine) {
      const buf = p.reserve(8);
      p.op(SYS.close, [6], { allowFail: true });
      p.op(SYS.read, [5, buf, 1], { jumpIfZeroTo: "fail", comment: "wait: /proc mounted" });
      p.op(SYS.clone3, [cloneParent(p, pids + 4n), cloneArgs.size], {
        jumpIfZeroTo: "engine",
        comment: "cryo's engine in the namespace",
      });
      p.op(SYS.write, [7, pids + 4n, 4], { comment: "report the engine's pid" });
    }
    p.op(SYS.exit_group, [0]);
    p.label("fail");
    p.op(SYS.exit_group, [1]);

    p.label("init");
    if (init.waitGo) {
      p.op(SYS.close, [4], { allowFail: true });
      p.op(SYS.close, [5], { allowFail: true });
    }
    p.op(SYS.close, [7], { allowFail: true });
    p.op(SYS.mount, [
      p.cstring("proc"),
      p.cstring("/proc"),
      p.cstring("proc"),
      MS.NOSUID | MS.NODEV | MS.NOEXEC,
      0,
    ], { comment: "the namespace's /proc" });
    if (init.lastPid !== undefined) {
      const text = new TextEncoder().encode(String(init.lastPid));
      p.op(SYS.open, [p.cstring("/proc/sys/kernel/ns_last_pid"), O.WRONLY, 0], { store: 2 });
      p.op(SYS.write, [{ slot: 2 }, p.data(text, 1), text.length]);
      p.op(SYS.close, [{ slot: 2 }]);
    }
    if (init.waitGo) {
      const buf = p.reserve(8);
      p.op(SYS.write, [6, p.cstring("r"), 1], { comment: "ready" });
      p.op(SYS.close, [6], { allowFail: true });
      p.op(SYS.read, [3, buf, 1], { jumpIfZeroTo: "abandon", comment: "wait for the engine" });
      p.op(SYS.close, [3], { allowFail: true });
    }
    // The launched command runs without capabilities (a restore image needs them: its stub).
    if (init.userNs && init.exec && !init.waitGo) emitNoInheritedCaps(p);
    if (init.exec) emitExec(p, init.exec, 127);
    else emitReaper(p, init.reapFor!, slotsAddress);
    p.label("abandon");
    p.op(SYS.exit_group, [1]);

    if (engine) {
      p.label("engine");
      p.op(SYS.close, [3], { allowFail: true });
      p.op(SYS.close, [5], { allowFail: true });
      p.op(SYS.close, [6], { allowFail: true });
      p.op(SYS.close, [7], { allowFail: true });
      emitExec(p, engine, 126);
    }
    p.end();
  });
}

/**
 * Writes the entrant: joins the pid and mount namespaces of process `pid`
 * (by pidfd; and `moreNamespaces`, CLONE_NEW* flags), and its user
 * namespace first when `joinUserNs` (a rootless tree: the capabilities
 * gained there are made ambient for the engine), forks, and the child execs
 * `engine`; the entrant waits for it and exits 0.
 */
export function writeEntrant(
  pid: number,
  engine: Exec,
  moreNamespaces = 0n,
  joinUserNs = false,
): string {
  return writeExe((p) => {
    const user = joinUserNs ? CLONE_NS.NEWUSER : 0n;
    p.op(SYS.pidfd_open, [pid, 0], { store: 1, comment: `pidfd of ${pid}` });
    p.op(SYS.setns, [{ slot: 1 }, user | CLONE_NS.NEWPID | CLONE_NS.NEWNS | moreNamespaces], {
      comment: "enter",
    });
    p.op(SYS.close, [{ slot: 1 }]);
    if (joinUserNs) emitAmbientAll(p);
    const args = p.data(cloneArgs.encode({
      flags: 0n,
      pidfd: 0n,
      childTid: 0n,
      parentTid: 0n,
      exitSignal: 17n,
      stack: 0n,
      stackSize: 0n,
      tls: 0n,
      setTid: 0n,
      setTidSize: 0n,
      cgroup: 0n,
    }));
    p.op(SYS.clone3, [args, cloneArgs.size], { jumpIfZeroTo: "engine", store: 3 });
    p.op(SYS.wait4, [{ slot: 3 }, 0, 0, 0], { allowFail: true });
    p.op(SYS.exit_group, [0]);
    p.label("engine");
    emitExec(p, engine, 126);
    p.end();
  });
}

/**
 * Writes the user namespace probe of `cryo check`: the maker's first steps
 * (unshare(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS), identity maps), then
 * exit 0; a refused step ends it with another status.
 */
export function writeUserNsProbe(ids: UserNsIds): string {
  return writeExe((p) => {
    const flags = CLONE_NS.NEWUSER | CLONE_NS.NEWPID | CLONE_NS.NEWNS;
    p.op(SYS.unshare, [flags], { comment: "new namespaces" });
    emitIdentityMaps(p, ids);
    p.op(SYS.exit_group, [0]);
    p.end();
  });
}
