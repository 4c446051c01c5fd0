/**
 * The per-thread state that otherwise only injected syscalls report
 * (sigaltstack, clear_child_tid, the parent-death signal, securebits, the
 * timer slack), read for every thread of a process at once from a BPF
 * `task` iterator (ffi/bpf_task.ts). The task_struct and cred offsets come
 * from the running kernel's BTF (ffi/btf.ts), each member checked to exist
 * with the size the program reads; the layout is remembered for the boot
 * (engine/proc/vm_flags_memo.ts). Whether the values may be used instead
 * of the injected ones is engine/dump/thread_state.ts's decision.
 *
 * @module
 */

import { Btf, BTF_KIND } from "../../ffi/btf.ts";
import {
  findNoTscBit,
  loadTaskStateProgram,
  readTaskStateBytes,
  readTaskStates,
  type TaskRecord,
  type TaskStateLayout,
} from "../../ffi/bpf_task.ts";
import {
  recallThreadState,
  rememberLandlockUnfound,
  rememberThreadLayout,
} from "./vm_flags_memo.ts";
import { findLandlockOffset } from "../task/landlock_probe.ts";

/** The program's kernel layout, from the running kernel's BTF (throws when something is missing or unexpected). */
export function taskStateLayout(btf: Btf): TaskStateLayout {
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`BTF has no ${what}`);
    return v;
  };
  const struct = (name: string) => need(btf.find(BTF_KIND.STRUCT, name), `struct ${name}`);
  /** Offset of a member that is a pointer or an integer of `size` bytes. */
  const member = (s: number, name: string, want: "ptr" | 4 | 8) => {
    const m = need(btf.member(s, name), `member ${name} of ${btf.name(s)}`);
    const t = btf.resolve(m.type);
    const ok = want === "ptr"
      ? btf.kind(t) === BTF_KIND.PTR
      : btf.kind(t) === BTF_KIND.INT && btf.sizeOrType(t) === want;
    if (!ok) {
      throw new Error(
        `member ${name} of ${btf.name(s)} is not a ${want === "ptr" ? want : want * 8}-bit integer`,
      );
    }
    return m.offset;
  };
  const ctx = struct("bpf_iter__task");
  const task = struct("task_struct");
  const helper = need(btf.enumerator("bpf_func_id", "BPF_FUNC_seq_write"), "BPF_FUNC_seq_write");
  const probeRead = need(
    btf.enumerator("bpf_func_id", "BPF_FUNC_probe_read_kernel"),
    "BPF_FUNC_probe_read_kernel",
  );
  return {
    attachBtfId: need(btf.find(BTF_KIND.FUNC, "bpf_iter_task"), "FUNC bpf_iter_task"),
    seqWriteHelper: Number(helper),
    probeReadHelper: Number(probeRead),
    ctxMeta: member(ctx, "meta", "ptr"),
    ctxTask: member(ctx, "task", "ptr"),
    metaSeq: member(struct("bpf_iter_meta"), "seq", "ptr"),
    pid: member(task, "pid", 4),
    tgid: member(task, "tgid", 4),
    sasSsSp: member(task, "sas_ss_sp", 8),
    sasSsSize: member(task, "sas_ss_size", 8),
    sasSsFlags: member(task, "sas_ss_flags", 4),
    pdeathSignal: member(task, "pdeath_signal", 4),
    clearChildTid: member(task, "clear_child_tid", "ptr"),
    timerSlackNs: member(task, "timer_slack_ns", 8),
    cred: member(task, "cred", "ptr"),
    securebits: member(struct("cred"), "securebits", 4),
    mm: member(task, "mm", "ptr"),
    defFlags: member(struct("mm_struct"), "def_flags", 8),
    realCred: member(task, "real_cred", "ptr"),
    atomicFlags: member(task, "atomic_flags", 8),
    seccompMode: need(btf.member(task, "seccomp"), "member seccomp of task_struct").offset +
      member(struct("seccomp"), "mode", 4),
    flags: member(task, "flags", 4),
    ...credFields(btf, struct("cred"), struct("group_info")),
    comm: commOffset(btf, task),
    children: childrenOffset(btf, task),
    threadInfoFlags: need(btf.member(task, "thread_info"), "member thread_info of task_struct")
      .offset + member(struct("thread_info"), "flags", 8),
    personality: member(task, "personality", 4),
    // Absent without CONFIG_NUMA: every task has the default policy.
    mempolicy: btf.member(task, "mempolicy") ? member(task, "mempolicy", "ptr") : -1,
    nsproxy: member(task, "nsproxy", "ptr"),
    fs: member(task, "fs", "ptr"),
    files: member(task, "files", "ptr"),
    // Absent without CONFIG_CGROUPS: every thread is in the same (no) cgroups.
    cgroups: btf.member(task, "cgroups") ? member(task, "cgroups", "ptr") : -1,
    // Absent without CONFIG_AUDIT: every task's are unset. (kuid_t is a one-member struct.)
    loginuid: btf.member(task, "loginuid") ? sizedMember(btf, task, "loginuid", 4) : -1,
    sessionid: btf.member(task, "sessionid") ? member(task, "sessionid", 4) : -1,
    // Absent without CONFIG_KEYS: no task has a thread keyring.
    threadKeyring: btf.member(struct("cred"), "thread_keyring")
      ? member(struct("cred"), "thread_keyring", "ptr")
      : -1,
    // The session keyring keyctl's lookups see (task->cred's): whether it is set.
    sessionKeyring: btf.member(struct("cred"), "session_keyring")
      ? member(struct("cred"), "session_keyring", "ptr")
      : -1,
    // Absent without CONFIG_SECURITY: no LSM blob (and no Landlock).
    credSecurity: btf.member(struct("cred"), "security")
      ? member(struct("cred"), "security", "ptr")
      : -1,
  };
}

/** The offsets in struct cred of its ids and capabilities (each a one-member struct), group_info's. */
function credFields(btf: Btf, cred: number, groupInfo: number) {
  /** Offset of a member of `s` whose type is `size` bytes (a struct such as kuid_t or an integer). */
  const sized = (s: number, name: string, size: number) => {
    const m = btf.member(s, name);
    if (!m || btf.sizeOrType(btf.resolve(m.type)) !== size) {
      throw new Error(`BTF has no ${size}-byte member ${name} of ${btf.name(s)}`);
    }
    return m.offset;
  };
  const gi = btf.member(cred, "group_info");
  if (!gi || btf.kind(btf.resolve(gi.type)) !== BTF_KIND.PTR) {
    throw new Error("BTF has no pointer group_info in struct cred");
  }
  return {
    credUid: sized(cred, "uid", 4),
    credGid: sized(cred, "gid", 4),
    credSuid: sized(cred, "suid", 4),
    credSgid: sized(cred, "sgid", 4),
    credEuid: sized(cred, "euid", 4),
    credEgid: sized(cred, "egid", 4),
    credFsuid: sized(cred, "fsuid", 4),
    credFsgid: sized(cred, "fsgid", 4),
    credCapInh: sized(cred, "cap_inheritable", 8),
    credCapPrm: sized(cred, "cap_permitted", 8),
    credCapEff: sized(cred, "cap_effective", 8),
    credCapBnd: sized(cred, "cap_bset", 8),
    credCapAmb: sized(cred, "cap_ambient", 8),
    groupInfo: gi.offset,
    ngroups: sized(groupInfo, "ngroups", 4),
  };
}

/** Offset of task_struct's children list (a struct list_head, `next` its first member). */
function childrenOffset(btf: Btf, task: number): number {
  const m = btf.member(task, "children");
  const head = btf.find(BTF_KIND.STRUCT, "list_head");
  if (
    !m || head === undefined || btf.resolve(m.type) !== head ||
    btf.member(head, "next")?.offset !== 0
  ) {
    throw new Error("BTF has no list_head children in task_struct");
  }
  return m.offset;
}

/** Offset of task_struct's comm, checked to be an array (of 16 bytes: checked against status). */
function commOffset(btf: Btf, task: number): number {
  const m = btf.member(task, "comm");
  if (!m || btf.kind(btf.resolve(m.type)) !== BTF_KIND.ARRAY) {
    throw new Error("BTF has no array comm in task_struct");
  }
  return m.offset;
}

/** The loaded program, or why there is none; made once per cryo process. */
let loaded:
  | { fd: number; layout: TaskStateLayout; noTscBit: number | undefined }
  | { unavailable: string }
  | undefined;

/** Why the Landlock offset was not found (by this process's probe or one earlier on this boot). */
let unfound: string | undefined;

/** Why the Landlock offset probe failed on this boot, when {@link loadThreadIterator} found it had. */
export function landlockOffsetUnfound(): string | undefined {
  return unfound;
}

/**
 * Loads the task program once (its layout from BTF, or as read earlier on
 * this boot); true when it is there, else false with
 * {@link threadIteratorUnavailable} saying why. Never throws.
 */
export function loadThreadIterator(): boolean {
  if (!loaded) {
    try {
      const recalled = recallThreadState();
      const remembered = recalled?.layout;
      let layout = remembered ?? taskStateLayout(Btf.vmlinux());
      // Found once per boot, remembered with the layout (a probe process: landlock_probe.ts);
      // a failed probe is remembered too: not run again on this boot when the failure will
      // repeat, for a minute otherwise.
      let landlockOffset = layout.landlockOffset;
      unfound = landlockOffset === undefined ? recalled?.landlockUnfound : undefined;
      if (landlockOffset === undefined && unfound === undefined) {
        const found = findLandlockOffset(layout);
        if (typeof found === "object") {
          rememberLandlockUnfound(unfound = found.why, found.lasting);
        } else landlockOffset = found;
      }
      if (landlockOffset !== undefined) layout = { ...layout, landlockOffset };
      const fd = loadTaskStateProgram(layout);
      const noTscBit = layout.noTscBit ?? findNoTscBit(fd);
      loaded = { fd, layout, noTscBit };
      if (
        !remembered || (noTscBit !== undefined && layout.noTscBit === undefined) ||
        landlockOffset !== remembered.landlockOffset
      ) {
        rememberThreadLayout({ ...layout, ...(noTscBit !== undefined ? { noTscBit } : {}) });
      }
    } catch (e) {
      loaded = { unavailable: e instanceof Error ? e.message : String(e) };
    }
  }
  return "fd" in loaded;
}

/**
 * The bit of a record's `tifFlags` that says the thread's TSC mode is
 * PR_TSC_SIGSEGV (found on cryo's own thread when the program was
 * loaded), or undefined when the program is not loaded or it could not
 * be told (the records then cannot tell a thread's TSC mode).
 */
export function noTscBit(): number | undefined {
  return loaded && "fd" in loaded ? loaded.noTscBit : undefined;
}

/** The loaded task program's kernel layout (undefined when it is not loaded). */
export function threadIteratorLayout(): TaskStateLayout | undefined {
  return loaded && "fd" in loaded ? loaded.layout : undefined;
}

/** Whether the task program is loaded (without trying to load it). */
export function threadIteratorLoaded(): boolean {
  return loaded !== undefined && "fd" in loaded;
}

/** Why the task program could not be loaded (undefined when it was, or was not tried). */
export function threadIteratorUnavailable(): string | undefined {
  return loaded && "unavailable" in loaded ? loaded.unavailable : undefined;
}

/** The records of the threads of process `pid` (the program must be loaded). */
export function readThreadRecords(pid: number): TaskRecord[] {
  if (!loaded || !("fd" in loaded)) throw new Error("the task iterator is not loaded");
  return readTaskStates(loaded.fd, pid);
}

/** The records of {@link readThreadRecords} undecoded (ffi/bpf_task.ts `readTaskStateBytes`). */
export function readThreadRecordBytes(pid: number): Uint8Array<ArrayBuffer> {
  if (!loaded || !("fd" in loaded)) throw new Error("the task iterator is not loaded");
  return readTaskStateBytes(loaded.fd, pid);
}

/**
 * Whether the thread of record `r` has children (its task->children list
 * is not empty: its first link is not the list head itself). The program
 * must be loaded (the records are its).
 */
export function recordHasChildren(r: TaskRecord): boolean {
  if (!loaded || !("fd" in loaded)) throw new Error("the task iterator is not loaded");
  return r.childrenNext !== r.task + BigInt(loaded.layout.children);
}

/** The inode of the initial pid namespace (PROC_PID_INIT_INO). */
const INIT_PID_NS = "pid:[4026531836]";

/**
 * Whether cryo runs in the initial pid namespace: the records carry
 * task->pid, a tid of that namespace, which is then the tid cryo knows.
 */
export function inInitialPidNamespace(): boolean {
  try {
    return Deno.readLinkSync("/proc/self/ns/pid") === INIT_PID_NS;
  } catch {
    return false;
  }
}

const SS_ONSTACK = 1;
const SS_DISABLE = 2;
const SS_AUTODISARM = 0x80000000;

/**
 * The flags sigaltstack(NULL, &old) reports in a thread with record `r`
 * whose stack pointer is `rsp` (kernel/signal.c: SS_DISABLE without a
 * size, SS_ONSTACK when the stack pointer is on the alternate stack unless
 * it is auto-disarmed, and the SS_AUTODISARM bit as set), as a signed
 * 32-bit int.
 */
export function sigaltstackFlags(r: TaskRecord, rsp: bigint | undefined): number {
  let mode = 0;
  if (r.sasSsSize === 0n) mode = SS_DISABLE;
  else if ((r.sasSsFlags & SS_AUTODISARM) === 0) {
    if (rsp === undefined) throw new Error(`thread ${r.tid}: its stack pointer is needed`);
    if (rsp > r.sasSsSp && rsp - r.sasSsSp <= r.sasSsSize) mode = SS_ONSTACK;
  }
  // Signed, as stack_t's int ss_flags (and the injected read: ffi/structs.ts stackT).
  return mode | (r.sasSsFlags & SS_AUTODISARM);
}

/**
 * Whether the flags sigaltstack reports depend on the stack pointer: the
 * thread has an alternate stack that is not auto-disarmed.
 */
export function flagsNeedStackPointer(r: TaskRecord): boolean {
  return r.sasSsSize !== 0n && (r.sasSsFlags & SS_AUTODISARM) === 0;
}

/**
 * Whether stack pointer `rsp` lies on the alternate stack of `r` or within
 * `margin` bytes above it: an injected call, which runs a little below the
 * thread's stack pointer, could see it on the stack when the thread is not,
 * or the other way round.
 */
export function nearAltStack(r: TaskRecord, rsp: bigint, margin: bigint): boolean {
  return rsp > r.sasSsSp && rsp - r.sasSsSp <= r.sasSsSize + margin;
}

/** Offset of member `name` of `s` whose type is `size` bytes (a one-member struct or an integer). */
function sizedMember(btf: Btf, s: number, name: string, size: number): number {
  const m = btf.member(s, name);
  if (!m || btf.sizeOrType(btf.resolve(m.type)) !== size) {
    throw new Error(`BTF has no ${size}-byte member ${name} of ${btf.name(s)}`);
  }
  return m.offset;
}
