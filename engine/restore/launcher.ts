/**
 * The launcher: a tiny executable emitted from TypeScript that stops
 * itself (so the engine can seize it before it does anything), writes the
 * tree's login uid where the restore gives one, then clone3()s the root of the tree with its original pid as a sibling of
 * itself (CLONE_PARENT: the restored root becomes cryo's child) and exits.
 * The root child execs the root image.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { CLONE, cloneArgs } from "../../ffi/structs.ts";
import { cloneWithTid } from "../program/clone.ts";
import { posixSpawn } from "../../ffi/spawn.ts";
import { type Bootstrap, BootstrapBuilder } from "./stub.ts";
import { buildExecutable } from "./launcher_elf.ts";

const LAUNCHER_BASE = 0x200000000n;

/** A spawned launcher process, stopped by its own SIGSTOP. */
export interface Launcher {
  pid: number;
  /** Temporary executable file (removed by {@link removeLauncher}). */
  path: string;
}

/**
 * Writes the launcher executable for `rootPid` / `rootImage`; returns its
 * path and program. `loginuid`: written to its own /proc/self/loginuid
 * first (every process of the tree inherits it, and the session id the
 * kernel gives with it).
 */
export function writeLauncher(
  rootPid: number,
  rootImage: string,
  loginuid?: number,
): { path: string; bootstrap: Bootstrap } {
  const boot = new BootstrapBuilder(LAUNCHER_BASE);
  const p = boot.program();
  // Dies with cryo: a cryo killed before it seized the launcher leaves no stopped orphan.
  p.op(SYS.prctl, [1, /* PR_SET_PDEATHSIG */ 9], { comment: "die with cryo" });
  p.op(SYS.getpid, [], { store: 1 });
  p.op(SYS.kill, [{ slot: 1 }, 19 /* SIGSTOP */], { comment: "wait for the tracer" });
  if (loginuid !== undefined) {
    const file = p.cstring("/proc/self/loginuid");
    const text = new TextEncoder().encode(String(loginuid));
    p.op(SYS.open, [file, 1 /* O_WRONLY */], { store: 2, comment: "open /proc/self/loginuid" });
    p.op(SYS.write, [{ slot: 2 }, p.data(text, 1), text.length], {
      comment: `login uid ${loginuid} (with the session id the kernel gives)`,
    });
    p.op(SYS.close, [{ slot: 2 }]);
  }
  // With CLONE_PARENT the exit signal is the launcher's own (SIGCHLD); clone3 wants 0 here.
  // CLONE_PTRACE: traced from birth (the session traces without PTRACE_O_TRACECLONE).
  const args = cloneWithTid(p, rootPid, { flags: CLONE.PARENT | CLONE.PTRACE });
  p.op(SYS.clone3, [args, cloneArgs.size], { jumpIfZeroTo: "root", comment: `root ${rootPid}` });
  p.op(SYS.exit_group, [0]);
  p.end();
  p.label("root");
  const path = p.cstring(rootImage);
  p.op(SYS.execve, [path, p.u64s([path, 0]), p.u64s([0])]);
  p.end();
  const built = p.build();
  const bootstrap = boot.finish({ restore: built });
  const exe = buildExecutable({
    base: LAUNCHER_BASE,
    blob: bootstrap.blob,
    entry: bootstrap.entryRestore,
  });
  const file = Deno.makeTempFileSync({ prefix: "cryo-launcher-" });
  try {
    Deno.writeFileSync(file, exe, { mode: 0o700 });
    Deno.chmodSync(file, 0o700);
  } catch (e) {
    removeLauncher({ path: file }); // not spawned: nothing else removes it
    throw e;
  }
  return { path: file, bootstrap };
}

/**
 * Spawns the launcher with cryo's stdio, and `provided` fds of cryo
 * (transfer fd number -> cryo's fd, every cryo fd above every transfer
 * number) at their transfer numbers, which the tree inherits. Nothing else
 * of cryo's is passed on. The launcher stops itself at once.
 */
export function spawnLauncher(
  path: string,
  provided: ReadonlyMap<number, number> = new Map(),
): Launcher {
  if (provided.size === 0) {
    return { pid: posixSpawn(path, ["cryo-launcher"], { env: [] }), path };
  }
  const own = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name));
  const pid = posixSpawn(path, ["cryo-launcher"], {
    env: [],
    closeFrom: null,
    fileActions: [
      ...[...provided].map(([to, from]) => ({ kind: "dup2" as const, fd: from, newFd: to })),
      ...own.filter((fd) => fd >= 3 && !provided.has(fd)).map((fd) => ({
        kind: "close" as const,
        fd,
      })),
    ],
  });
  return { pid, path };
}

/** Removes the launcher file. */
export function removeLauncher(l: { path: string }): void {
  try {
    Deno.removeSync(l.path);
  } catch { /* already gone */ }
}
