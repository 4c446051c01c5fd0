/**
 * Rootless use of private pid namespaces: a user without CAP_SYS_ADMIN
 * gets a user namespace of its own that owns the new pid and mount
 * namespaces (`cryo launch`, the restore of what it launched, and cryo's
 * engine joining them for a dump).
 *
 * The user's uid and gid are mapped to themselves (one line each,
 * `setgroups` denied first as the kernel requires): the tree sees and the
 * image records the user's real ids, so the host-side checks of a restore
 * (trust.ts `checkOwnCredentials`) read the same numbers as the kernel
 * enforces. A non-root uid loses its capabilities at execve, so the
 * emitted programs make every capability they hold in the new namespace
 * inheritable and ambient before exec'ing cryo's engine or a restore image
 * (which need CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in
 * the namespace that owns the pid namespace: set_tid, ns_last_pid,
 * PR_SET_MM_MAP); the command `cryo launch` runs gets none (its
 * inheritable set is cleared first, which clears the ambient one).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { capUserData, capUserHeader, LINUX_CAPABILITY_VERSION_3 } from "../../ffi/structs.ts";
import { O } from "../../ffi/ns.ts";
import { capLastCap, PR } from "../task/creds.ts";
import { readStatus } from "../proc/status.ts";
import type { ProgramBuilder } from "../program/builder.ts";

const CAP_SYS_ADMIN = 21;
const PR_CAP_AMBIENT_RAISE = 2;

/** The ids a rootless namespace maps to themselves. */
export interface UserNsIds {
  uid: number;
  gid: number;
}

/**
 * The ids to map when cryo (this process) lacks CAP_SYS_ADMIN and so needs
 * a user namespace of its own to make pid and mount namespaces; undefined
 * when it holds it (root: no user namespace).
 */
export function rootlessIds(): UserNsIds | undefined {
  const st = readStatus(Deno.pid);
  if ((st.capEff >> BigInt(CAP_SYS_ADMIN)) & 1n) return undefined;
  return { uid: st.uid[1], gid: st.gid[1] };
}

/** Whether process `pid` is in another user namespace than cryo. */
export function inOtherUserNs(pid: number): boolean {
  return Deno.readLinkSync(`/proc/${pid}/ns/user`) !== Deno.readLinkSync("/proc/self/ns/user");
}

function writeProcFile(p: ProgramBuilder, path: string, text: string): void {
  const bytes = new TextEncoder().encode(text);
  p.op(SYS.open, [p.cstring(path), O.WRONLY, 0], { store: 2, comment: `open ${path}` });
  p.op(SYS.write, [{ slot: 2 }, p.data(bytes, 1), bytes.length], { comment: `${path}: ${text}` });
  p.op(SYS.close, [{ slot: 2 }]);
}

/**
 * Emits, right after unshare(CLONE_NEWUSER|...), the identity maps of the
 * new user namespace: setgroups "deny", then uid_map and gid_map.
 */
export function emitIdentityMaps(p: ProgramBuilder, ids: UserNsIds): void {
  writeProcFile(p, "/proc/self/setgroups", "deny");
  writeProcFile(p, "/proc/self/uid_map", `${ids.uid} ${ids.uid} 1`);
  writeProcFile(p, "/proc/self/gid_map", `${ids.gid} ${ids.gid} 1`);
}

function allCaps(): bigint {
  return (1n << BigInt(capLastCap() + 1)) - 1n;
}

function header(p: ProgramBuilder): bigint {
  return p.data(capUserHeader.encode({ version: LINUX_CAPABILITY_VERSION_3, pid: 0 }));
}

/**
 * Emits: every capability (held in the user namespace just made or
 * joined) made inheritable and ambient, so it survives the execve of a
 * non-root uid.
 */
export function emitAmbientAll(p: ProgramBuilder): void {
  const all = allCaps();
  const sets = capUserData.encode({ effective: all, permitted: all, inheritable: all });
  p.op(SYS.capset, [header(p), p.data(sets)], { comment: "all capabilities inheritable" });
  for (let cap = 0; cap <= capLastCap(); cap++) {
    p.op(SYS.prctl, [PR.CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0], {
      comment: `ambient capability ${cap}`,
    });
  }
}

/** Emits: the inheritable (hence ambient) set cleared, so an execve drops every capability. */
export function emitNoInheritedCaps(p: ProgramBuilder): void {
  const all = allCaps();
  const sets = capUserData.encode({ effective: all, permitted: all, inheritable: 0n });
  p.op(SYS.capset, [header(p), p.data(sets)], { comment: "no inheritable capabilities" });
}
