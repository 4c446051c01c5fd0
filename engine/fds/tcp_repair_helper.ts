/**
 * The undo of a repair-mode read of a TCP connection that no process of the
 * tree holds (one only a queued SCM_RIGHTS message holds: engine/fds/unix_scm.ts,
 * read through cryo's own copy). A tree connection's read has the target's
 * main thread parked on the undo (engine/dump/injected.ts `withRepairUndo`);
 * this one has no process of the tree to run it, so a tiny helper process
 * does: it holds a copy of the socket (its fd 3) and blocks reading a pipe
 * that only cryo can write to (its fd 0).
 *
 * - cryo ends the read (repair mode off): it SIGKILLs the helper, which
 *   has not touched the socket, and reaps it (at once, however loaded the
 *   machine: the helper need not be scheduled);
 * - cryo dies meanwhile, whatever killed it: the pipe ends, the helper
 *   switches repair mode off (`setsockopt(3, SOL_TCP, TCP_REPAIR, &0)`),
 *   puts back SO_REUSEADDR (repair mode overrides it) and exits, closing its
 *   copy (the message's reference keeps the connection).
 *
 * The helper is an executable emitted like the restore launcher (a restore
 * program run by engine/restore/stub.ts), started by posix_spawn in a process
 * group of its own with every signal but SIGKILL and SIGSTOP blocked, and
 * removed from the disk as soon as it runs. It needs CAP_NET_ADMIN of its own
 * (cryo's, kept across exec by root): without it the read runs unguarded, as
 * a tree connection's does when the target cannot be injected crash-safely.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { getsockoptInt, SO, SOL } from "../../ffi/net.ts";
import { TCP } from "../../ffi/tcp_repair.ts";
import { posixSpawn } from "../../ffi/spawn.ts";
import { BootstrapBuilder } from "../restore/stub.ts";
import { buildExecutable } from "../restore/launcher_elf.ts";
import { readStatus } from "../proc/status.ts";
import type { RepairGuard } from "./tcp.ts";

const BASE = 0x200000000n;
const O_CLOEXEC = 0o2000000;
const O_WRONLY = 1;
const SIG_BLOCK = 0;
const CAP_NET_ADMIN = 12n;
const SIGKILL = 9;

/**
 * The helper's executable for a socket whose SO_REUSEADDR is `reuseaddr`:
 * block signals; read fd 0, which returns only at its end (nothing is ever
 * written to it); undo repair mode on fd 3; exit.
 */
export function repairUndoExecutable(reuseaddr: number): Uint8Array {
  const boot = new BootstrapBuilder(BASE);
  const p = boot.program();
  p.op(SYS.rt_sigprocmask, [SIG_BLOCK, p.u64s([~0n & 0xffffffffffffffffn]), 0, 8], {
    comment: "block every signal (SIGKILL and SIGSTOP stay)",
  });
  p.op(SYS.read, [0, p.reserve(8), 1], {
    allowFail: true,
    comment: "wait for the pipe's end: cryo is gone",
  });
  const zero = p.u64s([0]);
  const reuse = p.u64s([reuseaddr]);
  p.op(SYS.setsockopt, [3, SOL.TCP, TCP.REPAIR, zero, 4], {
    allowFail: true,
    comment: "repair mode off",
  });
  p.op(SYS.setsockopt, [3, SOL.SOCKET, SO.REUSEADDR, reuse, 4], {
    allowFail: true,
    comment: "SO_REUSEADDR back",
  });
  p.op(SYS.exit_group, [0]);
  p.end();
  const bootstrap = boot.finish({ restore: p.build() });
  return buildExecutable({ base: BASE, blob: bootstrap.blob, entry: bootstrap.entryRestore });
}

/** A started helper: its pid and the pipe's write end (cryo's only). */
interface Helper {
  pid: number;
  writeFd: number;
}

/** Starts the helper holding a copy of cryo's fd `fd`; undefined when it cannot undo. */
function startHelper(fd: number): Helper | undefined {
  const reuseaddr = getsockoptInt(fd, SOL.SOCKET, SO.REUSEADDR) ?? 0;
  const pair = new Int32Array(2);
  if (rawSyscall(SYS.pipe2, pair, O_CLOEXEC) < 0n) return undefined;
  let file: string | undefined;
  let helper: Helper | undefined;
  try {
    file = Deno.makeTempFileSync({ prefix: "cryo-repair-undo-" });
    Deno.writeFileSync(file, repairUndoExecutable(reuseaddr), { mode: 0o700 });
    Deno.chmodSync(file, 0o700);
    // (closeFrom null: the pipe's read end and the socket are moved by the actions first.)
    const pid = posixSpawn(file, ["cryo-repair-undo"], {
      env: [],
      newProcessGroup: true,
      closeFrom: null,
      fileActions: [
        { kind: "dup2", fd: pair[0], newFd: 0 },
        { kind: "dup2", fd, newFd: 3 },
        { kind: "open", fd: 1, path: "/dev/null", flags: O_WRONLY },
        { kind: "open", fd: 2, path: "/dev/null", flags: O_WRONLY },
        { kind: "closefrom", fd: 4 },
      ],
    });
    helper = { pid, writeFd: pair[1] };
    // posix_spawn returns once the helper has exec'd: it holds its copy from here on.
    if ((readStatus(pid).capEff & (1n << CAP_NET_ADMIN)) === 0n) {
      endHelper(helper);
      return undefined;
    }
    return helper;
  } catch {
    if (helper) endHelper(helper);
    else rawSyscall(SYS.close, pair[1]);
    return undefined;
  } finally {
    rawSyscall(SYS.close, pair[0]);
    if (file) {
      try {
        Deno.removeSync(file);
      } catch { /* gone */ }
    }
  }
}

/**
 * Ends the helper before it did anything (the pipe still open: it is blocked
 * in its read, or not there yet) and reaps it.
 */
function endHelper(h: Helper): void {
  rawSyscall(SYS.kill, h.pid, SIGKILL);
  const status = new Uint8Array(4);
  while (rawSyscall(SYS.wait4, h.pid, status, 0, 0) === -4n) { /* EINTR */ }
  rawSyscall(SYS.close, h.writeFd);
}

/**
 * The guard of the repair-mode read of a connection held through cryo's
 * own fd `fd` (engine/fds/tcp.ts {@link RepairGuard}): a helper stands by
 * to switch repair mode off should cryo die before the read switches it off.
 */
export function helperRepairGuard(fd: number): RepairGuard {
  return (fn) => {
    const helper = startHelper(fd);
    try {
      return fn();
    } finally {
      // (fn switches repair mode off before it returns or throws.)
      if (helper) endHelper(helper);
    }
  };
}
