/**
 * Credentials, per thread: what a dump records and the restore program
 * sections that re-create them.
 *
 * Linux keeps credentials per thread (a raw setresuid() changes only the
 * calling thread), so every thread is recorded from its own
 * /proc/<pid>/task/<tid>/status (uids, gids, groups, the five capability
 * sets, no_new_privs) and from prctl injected into it (securebits,
 * keep-caps).
 *
 * Restore re-creates them **last**: the restored tasks start as root with
 * the restorer's capabilities, and everything else (mappings, PR_SET_MM,
 * fds, rlimits, threads, signals, timers, the engine's per-thread
 * injections, scheduling and seccomp of engine/task/mod.ts) is done with
 * those privileges first. Then every thread runs its own section of the
 * restore program, all at once (the engine points each there, see
 * creds_restore.ts; threads with equal credentials share a section), raw
 * syscalls only, in this order:
 *
 * 1. setgroups, setresgid, setfsgid (CAP_SETGID);
 * 2. capset: the recorded inheritable set, permitted and effective = the
 *    recorded permitted set plus CAP_SETUID/SETGID/SETPCAP for what follows;
 * 3. securebits = SECBIT_NO_SETUID_FIXUP, so the uid change leaves every
 *    capability set alone; setresuid, setfsuid (CAP_SETUID);
 * 4. PR_CAPBSET_DROP of every capability not in the recorded bounding set;
 *    ambient set cleared and raised (CAP_SETPCAP; needs permitted and
 *    inheritable, which hold it);
 * 5. the recorded securebits (keep-caps, locks, ... ; CAP_SETPCAP);
 * 6. capset of the recorded effective, permitted, inheritable sets (only
 *    drops, no privilege needed);
 * 7. no_new_privs (cannot be unset: last).
 *
 * What a credential change resets (pdeathsig, dumpable) is set afterwards
 * (engine/task/mod.ts, restoreTaskStateAfterCredentials). Objects the
 * kernel gives their creator's fs ids (pipes) are created with their
 * recorded owner by {@link emitAsOwner}, since the tasks are root then.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { capUserData, capUserHeader, LINUX_CAPABILITY_VERSION_3 } from "../../ffi/structs.ts";
import type { ProcessImage, ThreadCredentials } from "../model.ts";
import type { InjectionSession } from "../dump/injected.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import { UnsupportedError } from "../errors.ts";
import { setgroupsDenied } from "./userns.ts";
import { RUN_DONE_SLOT } from "./sched_run.ts";
import type { ProgramBuilder } from "../program/builder.ts";

/** prctl options used here. */
export const PR = {
  GET_KEEPCAPS: 7,
  CAPBSET_DROP: 24,
  GET_SECUREBITS: 27,
  SET_SECUREBITS: 28,
  SET_NO_NEW_PRIVS: 38,
  CAP_AMBIENT: 47,
} as const;
const PR_CAP_AMBIENT_RAISE = 2;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;

/** SECBIT_NO_SETUID_FIXUP: uid changes leave the capability sets alone. */
export const SECBIT_NO_SETUID_FIXUP = 1 << 2;
/** SECBIT_KEEP_CAPS: the bit PR_SET_KEEPCAPS sets. */
export const SECBIT_KEEP_CAPS = 1 << 4;

/** Capabilities the restore sequence itself needs until its last steps. */
export const CAP_SETGID = 6;
/** See {@link CAP_SETGID}. */
export const CAP_SETUID = 7;
/** See {@link CAP_SETGID}. */
export const CAP_SETPCAP = 8;
/** The capabilities a restorer must hold to restore any credentials. */
export const RESTORE_CAPS: bigint = (1n << BigInt(CAP_SETGID)) | (1n << BigInt(CAP_SETUID)) |
  (1n << BigInt(CAP_SETPCAP));

// deno-fmt-ignore
const CAP_NAMES = [
  "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
  "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
  "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock",
  "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
  "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice", "cap_sys_resource",
  "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease", "cap_audit_write",
  "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
  "cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
  "cap_checkpoint_restore",
];

/** The capability numbers set in `mask`, ascending. */
export function capBits(mask: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((mask >> BigInt(i)) & 1n) out.push(i);
  return out;
}

/** The names of the capabilities in `mask` ("cap_net_raw, cap_41"). */
export function capNames(mask: bigint): string {
  return capBits(mask).map((i) => CAP_NAMES[i] ?? `cap_${i}`).join(", ");
}

/** The highest capability number of this kernel (/proc/sys/kernel/cap_last_cap). */
export function capLastCap(): number {
  return Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Credentials of one thread read from its status file, plus its securebits and keep-caps. */
export function readThreadCreds(
  pid: number,
  tid: number,
  securebits: number,
  keepCaps: boolean,
  /** The thread's status when already read (no other thread can change its credentials). */
  status?: ProcStatus,
): ThreadCredentials {
  const st = status ?? readStatus(pid, tid);
  return {
    uid: st.uid,
    gid: st.gid,
    groups: [...st.groups].sort((a, b) => a - b),
    capInh: hex(st.capInh),
    capPrm: hex(st.capPrm),
    capEff: hex(st.capEff),
    capBnd: hex(st.capBnd),
    capAmb: hex(st.capAmb),
    securebits,
    keepCaps,
    noNewPrivs: st.noNewPrivs,
  };
}

/** What {@link collectCreds} returns. */
export interface CollectedCreds {
  /** Each thread's credentials by tid. */
  threads: Map<number, ThreadCredentials>;
}

/**
 * Collects every thread's credentials of the stopped process `s.pid`
 * (securebits and keep-caps by prctl injected into each thread).
 */
export function collectCreds(
  s: InjectionSession,
  tids: readonly number[],
  /** Each thread's securebits when already read (engine/dump/injected.ts). */
  known?: ReadonlyMap<number, number>,
): CollectedCreds {
  const threads = new Map<number, ThreadCredentials>();
  for (const tid of tids) {
    const securebits = known?.get(tid) ??
      Number(s.check(tid, "prctl(PR_GET_SECUREBITS)", SYS.prctl, PR.GET_SECUREBITS));
    // PR_GET_KEEPCAPS is the SECURE_KEEP_CAPS bit of the securebits.
    const keepCaps = (securebits & SECBIT_KEEP_CAPS) !== 0;
    threads.set(tid, readThreadCreds(s.pid, tid, securebits, keepCaps, s.statuses?.get(tid)));
  }
  return { threads };
}

/** Where the credential sections of a compiled restore program start (op indexes). */
export interface CredsSections {
  /** One section per thread (threads with equal credentials share one), main thread first. */
  threads: { tid: number; op: number }[];
}

/**
 * Appends the credential sections of `proc` to the program (after its END:
 * the main program never reaches them; the engine points each thread at
 * its own; threads with equal credentials share one). `lastCap` is this
 * kernel's highest capability number: every capability up to it that the
 * recorded bounding set lacks is dropped.
 */
export function emitCredsSections(
  p: ProgramBuilder,
  proc: ProcessImage,
  lastCap: number = capLastCap(),
): CredsSections {
  const missing = proc.threads.filter((t) => !t.creds).map((t) => t.tid);
  if (missing.length) {
    const who = missing;
    throw new UnsupportedError(`process ${proc.pid}`, [
      `thread${who.length > 1 ? "s" : ""} ${who.join(", ")}: no credentials recorded ` +
      `(image written by an older cryo)`,
    ]);
  }
  const header = p.data(capUserHeader.encode({ version: LINUX_CAPABILITY_VERSION_3, pid: 0 }));
  // Threads with equal credentials (the usual case) share one section.
  const sections = new Map<string, number>();
  const threads = proc.threads.map((t) => {
    const key = JSON.stringify(t.creds);
    let op = sections.get(key);
    if (op === undefined) {
      op = emitThreadCreds(p, t.tid, t.creds!, header, lastCap);
      sections.set(key, op);
    }
    return { tid: t.tid, op };
  });
  return { threads };
}

function emitThreadCreds(
  p: ProgramBuilder,
  tid: number,
  c: ThreadCredentials,
  header: bigint,
  lastCap: number,
): number {
  const first = p.opCount;
  const say = (what: string) => ({ comment: `credentials: ${what}` });
  const [ruid, euid, suid, fsuid] = c.uid;
  const [rgid, egid, sgid, fsgid] = c.gid;
  const inh = BigInt(c.capInh);
  const prm = BigInt(c.capPrm);
  const eff = BigInt(c.capEff);
  const bnd = BigInt(c.capBnd);
  const amb = BigInt(c.capAmb);

  const groups = new Uint8Array(Math.max(4, c.groups.length * 4));
  const gv = new DataView(groups.buffer);
  c.groups.forEach((g, i) => gv.setUint32(i * 4, g, true));
  // In a rootless namespace the groups are the inherited ones (checked equal: trust.ts).
  if (!setgroupsDenied()) {
    p.op(
      SYS.setgroups,
      [c.groups.length, p.data(groups, 4)],
      say(`groups [${shortList(c.groups)}]`),
    );
  }
  p.op(SYS.setresgid, [rgid, egid, sgid], say(`gids ${rgid} ${egid} ${sgid}`));
  if (fsgid !== egid) p.op(SYS.setfsgid, [fsgid], say(`fsgid ${fsgid}`));

  const working = prm | RESTORE_CAPS;
  const temp = capUserData.encode({ effective: working, permitted: working, inheritable: inh });
  p.op(SYS.capset, [header, p.data(temp)], say(`inheritable ${hex(inh)}`));
  p.op(SYS.prctl, [PR.SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0], say("no setuid fixup"));
  p.op(SYS.setresuid, [ruid, euid, suid], say(`uids ${ruid} ${euid} ${suid}`));
  if (fsuid !== euid) p.op(SYS.setfsuid, [fsuid], say(`fsuid ${fsuid}`));

  for (let cap = 0; cap <= lastCap; cap++) {
    if ((bnd >> BigInt(cap)) & 1n) continue;
    p.op(SYS.prctl, [PR.CAPBSET_DROP, cap, 0, 0, 0], say(`drop ${capNames(1n << BigInt(cap))}`));
  }
  p.op(SYS.prctl, [PR.CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0], say("ambient cleared"));
  for (const cap of capBits(amb)) {
    p.op(
      SYS.prctl,
      [PR.CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0],
      say(`ambient ${capNames(1n << BigInt(cap))}`),
    );
  }
  p.op(
    SYS.prctl,
    [PR.SET_SECUREBITS, c.securebits, 0, 0, 0],
    say(`securebits ${hex(BigInt(c.securebits))}`),
  );
  const final = capUserData.encode({ effective: eff, permitted: prm, inheritable: inh });
  p.op(SYS.capset, [header, p.data(final)], say(`capabilities eff ${hex(eff)} prm ${hex(prm)}`));
  if (c.noNewPrivs) p.op(SYS.prctl, [PR.SET_NO_NEW_PRIVS, 1, 0, 0, 0], say("no_new_privs"));
  if (c.securebits === 0) emitNoSecurebitsCheck(p, first);
  // The run's done mark: its tid, after every op that can fail (creds_restore.ts reads it from
  // the run's area instead of the registers at its stop; sched_run.ts RUN_DONE_SLOT).
  p.op(SYS.gettid, [], { store: RUN_DONE_SLOT, comment: "credentials: the run's done mark" });
  p.end(`credentials restored (first used by thread ${tid})`);
  return first;
}

/** An option no prctl knows: the call fails (EINVAL) and stops the thread at the stub's FAIL. */
const PR_NONE = -1;

/**
 * The read-back of securebits recorded as 0 (every image but a few), in
 * the section itself: PR_GET_SECUREBITS jumps over a failing op when it
 * returns 0 (engine/task/creds_restore.ts reads back the others' by a
 * prctl run in each thread after the sections).
 */
function emitNoSecurebitsCheck(p: ProgramBuilder, section: number): void {
  const ok = `creds-securebits-${section}`;
  p.op(SYS.prctl, [PR.GET_SECUREBITS, 0, 0, 0, 0], {
    jumpIfZeroTo: ok,
    comment: "credentials: securebits read back",
  });
  p.op(SYS.prctl, [PR_NONE, 0, 0, 0, 0], {
    comment: "credentials: securebits read back not 0, as recorded",
  });
  p.label(ok);
}

function shortList(values: readonly number[]): string {
  const head = values.slice(0, 8).join(" ");
  return values.length > 8 ? `${head} ... (${values.length})` : head;
}

/** "uid:gid" of a kernel object a process holds, when it is not root's (e.g. `pipe-owner`). */
export function ownerOf(st: { uid: number | null; gid: number | null }): string | undefined {
  const uid = st.uid ?? 0;
  const gid = st.gid ?? 0;
  return uid === 0 && gid === 0 ? undefined : `${uid}:${gid}`;
}

/**
 * Emits `emit` (ops creating an object the kernel gives the creator's fs
 * ids, such as a pipe) with the fs uid and gid set to `owner` ("uid:gid"),
 * and back to root's afterwards: the restored tasks are still root then,
 * their own credentials come last. Nothing is added without an owner.
 */
export function emitAsOwner(p: ProgramBuilder, owner: string | undefined, emit: () => void): void {
  if (!owner) {
    emit();
    return;
  }
  const [uid, gid] = owner.split(":").map(Number);
  p.op(SYS.setfsgid, [gid], { comment: `created with fs gid ${gid}` });
  p.op(SYS.setfsuid, [uid], { comment: `created with fs uid ${uid}` });
  emit();
  p.op(SYS.setfsuid, [0]);
  p.op(SYS.setfsgid, [0]);
}
