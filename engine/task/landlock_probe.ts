/**
 * Where Landlock's part of the LSMs' credential blob (cred->security) lies
 * on this boot: the kernel assigns each LSM its offset at boot
 * (lsm_set_blob_size) and no interface shows it. Found by experiment, once
 * per boot (the caller remembers it with the task program's layout): a
 * tiny probe executable, emitted here as the restore's launcher is (cryo
 * needs no compiler), sets no_new_privs, creates a ruleset, stops, then
 * restricts itself (landlock_restrict_self) and stops again; the task
 * program, with a window on the blob's first bytes, reads its record at
 * each stop. Landlock's word is the domain pointer (the first member of
 * struct landlock_cred_security): NULL at the first stop, a kernel pointer
 * at the second; nothing else of the credentials changes in between.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { BpfError } from "../../ffi/bpf.ts";
import { posixSpawn } from "../../ffi/spawn.ts";
import {
  loadTaskStateProgram,
  LSM_WINDOW_BYTES,
  readTaskStates,
  type TaskRecord,
  type TaskStateLayout,
} from "../../ffi/bpf_task.ts";
import { BootstrapBuilder } from "../restore/stub.ts";
import { buildExecutable } from "../restore/launcher_elf.ts";

const SYS_LANDLOCK_CREATE_RULESET = 444;
const SYS_LANDLOCK_RESTRICT_SELF = 446;
const LANDLOCK_CREATE_RULESET_VERSION = 1;
const LANDLOCK_ACCESS_FS_READ_FILE = 1n << 2n;
const PR_SET_PDEATHSIG = 1;
const PR_SET_NO_NEW_PRIVS = 38;
const SIGKILL = 9;
const SIGSTOP = 19;
const SIGCONT = 18;
const WUNTRACED = 2;
const PROBE_BASE = 0x200000000n;
/** Kernel addresses start here on x86-64 (a domain pointer is one). */
const KERNEL_SPACE = 0xffff800000000000n;

let abi: number | undefined;

/** Probes tried ({@link findLandlockOffset} calls that got past the kernel's checks) and processes run, in this cryo process (tests). */
export const landlockProbeStats = { tried: 0, runs: 0 };

/**
 * The Landlock ABI version of the running kernel
 * (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)); 0
 * when the kernel has none or it is disabled. Asked once per cryo process.
 */
export function landlockAbi(): number {
  if (abi === undefined) {
    const r = rawSyscall(SYS_LANDLOCK_CREATE_RULESET, 0, 0, LANDLOCK_CREATE_RULESET_VERSION);
    abi = r > 0n ? Number(r) : 0;
  }
  return abi;
}

/** The probe executable's bytes (see the module's comment). */
export function landlockProbeExecutable(): Uint8Array {
  const boot = new BootstrapBuilder(PROBE_BASE);
  const p = boot.program();
  p.op(SYS.prctl, [PR_SET_PDEATHSIG, SIGKILL], { comment: "die with cryo" });
  p.op(SYS.prctl, [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0], { comment: "no_new_privs" });
  const attr = new Uint8Array(8);
  new DataView(attr.buffer).setBigUint64(0, LANDLOCK_ACCESS_FS_READ_FILE, true);
  p.op(SYS_LANDLOCK_CREATE_RULESET, [p.data(attr, 8), 8, 0], { store: 2, comment: "a ruleset" });
  p.op(SYS.getpid, [], { store: 1 });
  p.op(SYS.kill, [{ slot: 1 }, SIGSTOP], { comment: "stop: unrestricted" });
  p.op(SYS_LANDLOCK_RESTRICT_SELF, [{ slot: 2 }, 0], { comment: "restrict itself" });
  p.op(SYS.kill, [{ slot: 1 }, SIGSTOP], { comment: "stop: restricted" });
  p.op(SYS.exit_group, [0]);
  p.end();
  const built = p.build();
  const bootstrap = boot.finish({ restore: built });
  return buildExecutable({ base: PROBE_BASE, blob: bootstrap.blob, entry: bootstrap.entryRestore });
}

/** Waits for child `pid` to stop; false when it ended instead (reaped). */
function waitStopped(pid: number): boolean {
  const status = new Uint8Array(4);
  for (;;) {
    const r = rawSyscall(SYS.wait4, pid, status, WUNTRACED, 0);
    if (r === -4n) continue; // EINTR
    if (r < 0n) return false;
    const st = new DataView(status.buffer).getUint32(0, true);
    return (st & 0xff) === 0x7f;
  }
}

/**
 * The offset of the Landlock domain pointer in cred->security's blob on
 * this boot, found with the probe (the lowest 8-byte word of the blob's
 * first {@link LSM_WINDOW_BYTES} bytes that is NULL before the restriction
 * and a kernel pointer after; a read past a blob smaller than the window
 * sees other memory, never below Landlock's own word). Undefined when the
 * kernel has no Landlock (nothing is tried); why when it could not be told
 * (up to 2 probe runs), and whether that will repeat on this boot
 * ({@link ProbeFailure}: the caller remembers a lasting failure for the
 * boot, as it does an offset, and a passing one for a short while). Never
 * throws.
 */
export function findLandlockOffset(layout: TaskStateLayout): number | ProbeFailure | undefined {
  if (layout.credSecurity < 0 || landlockAbi() <= 0) return undefined;
  landlockProbeStats.tried++;
  let progFd = -1;
  let file: string | undefined;
  try {
    progFd = loadTaskStateProgram(layout, { offset: 0, bytes: LSM_WINDOW_BYTES });
    file = Deno.makeTempFileSync({ prefix: "cryo-landlock-probe-" });
    Deno.writeFileSync(file, landlockProbeExecutable(), { mode: 0o700 });
    Deno.chmodSync(file, 0o700);
    let ended = false;
    for (let round = 0; round < 2; round++) {
      landlockProbeStats.runs++;
      const found = probeOnce(progFd, file);
      if (typeof found === "number") return found;
      if (found === "ended") ended = true;
    }
    // Two runs that stopped where they should and showed no pointer: so on every run.
    return ended
      ? { why: "the probe process ended before it was read", lasting: false }
      : { why: "the probe process saw no domain pointer appear", lasting: true };
  } catch (e) {
    return {
      why: `the probe failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`,
      lasting: lastingProbeError(e),
    };
  } finally {
    if (progFd >= 0) rawSyscall(SYS.close, progFd);
    if (file) {
      try {
        Deno.removeSync(file);
      } catch { /* gone */ }
    }
  }
}

/** Why the offset probe failed, and whether it will fail so again on this boot. */
export interface ProbeFailure {
  why: string;
  /**
   * The verifier's rejection of the probe's program, or two runs that saw no
   * pointer: the same kernel says the same until it boots again. Otherwise
   * (no memory, no BPF right for this caller, a full or noexec TMPDIR, a
   * probe process killed) another try may succeed.
   */
  lasting: boolean;
}

const EACCES = 13;
const EINVAL = 22;

/**
 * Whether error `e` of the probe's set-up will repeat on this boot: only the
 * verifier's rejection of the program (EACCES or EINVAL with its log). A
 * load that failed for lack of memory, of the caller's rights or to a signal
 * (EAGAIN, after the loader's own retries), or a temporary file or a spawn
 * that failed, may not.
 */
export function lastingProbeError(e: unknown): boolean {
  return e instanceof BpfError && e.log !== "" && (e.errno === EACCES || e.errno === EINVAL);
}

/**
 * One probe run: its two records' window compared (see {@link findLandlockOffset});
 * "ended" when the process ended before its second stop (killed).
 */
function probeOnce(progFd: number, file: string): number | undefined | "ended" {
  const pid = posixSpawn(file, ["cryo-landlock-probe"], { env: [] });
  let reaped = false;
  try {
    const record = (): TaskRecord | undefined => {
      const rs = readTaskStates(progFd, pid);
      return rs.length === 1 && rs[0].lsmRead ? rs[0] : undefined;
    };
    if (!waitStopped(pid)) return (reaped = true, "ended");
    const before = record();
    rawSyscall(SYS.kill, pid, SIGCONT);
    if (!waitStopped(pid)) return (reaped = true, "ended");
    const after = record();
    if (!before || !after) return undefined;
    const b = new DataView(before.lsmBytes.buffer, before.lsmBytes.byteOffset);
    const a = new DataView(after.lsmBytes.buffer, after.lsmBytes.byteOffset);
    for (let at = 0; at < LSM_WINDOW_BYTES; at += 8) {
      if (b.getBigUint64(at, true) === 0n && a.getBigUint64(at, true) >= KERNEL_SPACE) return at;
    }
    return undefined;
  } finally {
    if (!reaped) {
      rawSyscall(SYS.kill, pid, SIGKILL);
      const status = new Uint8Array(4);
      while (rawSyscall(SYS.wait4, pid, status, 0, 0) === -4n) { /* EINTR */ }
    }
  }
}
