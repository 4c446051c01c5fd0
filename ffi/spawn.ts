/**
 * posix_spawn through libc, so that the spawned process is invisible to
 * Deno's own child reaper (which would steal ptrace wait events).
 *
 * @module
 */

import { cstr, CStringArray, libcSpawn, SyscallError } from "./libc.ts";

/** A file action applied in the child before exec. */
export type FileAction =
  | { kind: "dup2"; fd: number; newFd: number }
  | { kind: "close"; fd: number }
  | { kind: "open"; fd: number; path: string; flags: number; mode?: number }
  /** Close every fd from `fd` up (at this point of the actions, unlike `closeFrom`). */
  | { kind: "closefrom"; fd: number };

/** Options for {@link posixSpawn}. */
export interface SpawnOptions {
  /** Environment as `KEY=value` strings; defaults to this process's env. */
  env?: string[];
  /** Operations on fds in the child (applied in order). */
  fileActions?: FileAction[];
  /** Put the child in its own process group. */
  newProcessGroup?: boolean;
  /** Reset all signal dispositions and the mask in the child (default true). */
  resetSignals?: boolean;
  /**
   * Close every inherited fd from this number up in the child, before the
   * file actions run (default 3: only stdin, stdout and stderr are passed
   * on; Deno keeps some fds without O_CLOEXEC that must not leak). `null`
   * keeps them all.
   */
  closeFrom?: number | null;
}

const POSIX_SPAWN_SETPGROUP = 0x02;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

/** Spawns `path` with `argv` and returns its pid. Throws {@link SyscallError}. */
export function posixSpawn(path: string, argv: readonly string[], opts: SpawnOptions = {}): number {
  const c = libcSpawn();
  const ptr = Deno.UnsafePointer.of;
  const pidBuf = new Int32Array(1);
  const actionsBuf = new Uint8Array(256);
  const attrBuf = new Uint8Array(512);
  const actions = ptr(actionsBuf);
  const attr = ptr(attrBuf);
  c.posix_spawn_file_actions_init(actions);
  c.posix_spawnattr_init(attr);
  // Every buffer whose address a call gets, held until the end (read in `finally`).
  const keep: unknown[] = [pidBuf, actionsBuf, attrBuf];
  try {
    const closeFrom = opts.closeFrom === undefined ? 3 : opts.closeFrom;
    if (closeFrom !== null) {
      const r = c.posix_spawn_file_actions_addclosefrom_np(actions, closeFrom);
      if (r !== 0) {
        throw new SyscallError("posix_spawn_file_actions_addclosefrom_np", [closeFrom], r);
      }
    }
    for (const a of opts.fileActions ?? []) {
      let r = 0;
      if (a.kind === "dup2") r = c.posix_spawn_file_actions_adddup2(actions, a.fd, a.newFd);
      else if (a.kind === "close") r = c.posix_spawn_file_actions_addclose(actions, a.fd);
      else if (a.kind === "closefrom") {
        r = c.posix_spawn_file_actions_addclosefrom_np(actions, a.fd);
      } else {
        const p = cstr(a.path);
        keep.push(p);
        r = c.posix_spawn_file_actions_addopen(actions, a.fd, ptr(p), a.flags, a.mode ?? 0o644);
      }
      if (r !== 0) throw new SyscallError("posix_spawn_file_actions", [a.kind], r);
    }
    let flags = 0;
    if (opts.resetSignals !== false) {
      flags |= POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
      const all = new BigUint64Array(16).fill(0xffffffffffffffffn);
      const none = new BigUint64Array(16);
      keep.push(all, none);
      c.posix_spawnattr_setsigdefault(attr, ptr(all));
      c.posix_spawnattr_setsigmask(attr, ptr(none));
    }
    if (opts.newProcessGroup) {
      flags |= POSIX_SPAWN_SETPGROUP;
      c.posix_spawnattr_setpgroup(attr, 0);
    }
    c.posix_spawnattr_setflags(attr, flags);
    const argvArr = new CStringArray(argv);
    const envArr = new CStringArray(
      opts.env ?? Object.entries(Deno.env.toObject()).map(([k, v]) => `${k}=${v}`),
    );
    const pathBuf = cstr(path);
    keep.push(pathBuf, argvArr, envArr);
    const r = c.posix_spawn(
      ptr(pidBuf),
      ptr(pathBuf),
      actions,
      attr,
      ptr(argvArr.pointers),
      ptr(envArr.pointers),
    );
    if (r !== 0) throw new SyscallError("posix_spawn", [path], r);
    return pidBuf[0];
  } finally {
    c.posix_spawn_file_actions_destroy(actions);
    c.posix_spawnattr_destroy(attr);
    keep.length = 0;
  }
}
