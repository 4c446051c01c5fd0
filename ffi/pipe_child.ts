/**
 * A child process reading a pipe that only this process can write to
 * (posix_spawn, so Deno's reaper never sees it: ffi/spawn.ts): the child's
 * input ends, and a reader such as `cat` exits, as soon as this process
 * closes its end or dies, whatever killed it.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { posixSpawn } from "./spawn.ts";
import { SYS } from "./sysno.ts";

const O_CLOEXEC = 0o2000000;
const O_WRONLY = 1;

/** A child started by {@link spawnPipeReader}. */
export interface PipeChild {
  /** The child's pid (this process's child: reap it). */
  pid: number;
  /** The pipe's write end, held by this process only (O_CLOEXEC). */
  writeFd: number;
}

/**
 * Starts `path` with `argv`, its stdin the read end of a new pipe, its
 * stdout and stderr /dev/null, no other fd. Throws {@link SyscallError}.
 */
export function spawnPipeReader(path: string, argv: readonly string[]): PipeChild {
  const pair = new Int32Array(2);
  const r = rawSyscall(SYS.pipe2, pair, O_CLOEXEC);
  if (r < 0n) throw new SyscallError("pipe2", [], Number(-r));
  try {
    const pid = posixSpawn(path, argv, {
      closeFrom: null,
      fileActions: [
        { kind: "dup2", fd: pair[0], newFd: 0 },
        { kind: "open", fd: 1, path: "/dev/null", flags: O_WRONLY },
        { kind: "open", fd: 2, path: "/dev/null", flags: O_WRONLY },
        { kind: "closefrom", fd: 3 },
      ],
    });
    return { pid, writeFd: pair[1] };
  } catch (e) {
    rawSyscall(SYS.close, pair[1]);
    throw e;
  } finally {
    rawSyscall(SYS.close, pair[0]);
  }
}

/** Closes the write end of `child`'s pipe (its input ends). */
export function closePipe(child: PipeChild): void {
  rawSyscall(SYS.close, child.writeFd);
}
