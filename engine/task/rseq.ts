/**
 * Threads stopped inside an rseq critical section. A thread the freeze
 * stops was preempted: the kernel aborts its critical section when it next
 * returns to user space (its instruction pointer moved to the section's
 * abort handler). Cryo's first injection is that return, with the
 * instruction pointer elsewhere: the kernel then only clears the thread's
 * rseq_cs, and the registers saved (and put back at the thaw, and in the
 * image) would resume the section half done, unprotected, on whatever CPU
 * it runs on. So the freeze makes the abort itself, before anything runs in
 * the thread: exactly what the kernel would have done.
 *
 * @module
 */

import { getRegs, type RseqConfig, setRegs } from "../../ffi/ptrace.ts";
import { processVmRead, processVmReadMany } from "../../ffi/process_vm.ts";
import { signed } from "../../ffi/regs.ts";
import { rseqConfigsEach } from "../../ffi/thread_reads.ts";

/**
 * Each thread's rseq registration as {@link abortRseqSections} read it in
 * the current freeze: a stopped thread cannot change it, so the collect
 * takes it from here (ffi/thread_reads.ts `readThreadsHere`) instead of
 * asking again. Forgotten at each freeze's start and thaw
 * ({@link forgetRseqConfigs}).
 */
const configs = new Map<number, RseqConfig>();

/** The registrations read by {@link abortRseqSections} since the freeze began (by thread). */
export function frozenRseqConfigs(): ReadonlyMap<number, RseqConfig> {
  return configs;
}

/** Forgets the registrations read (engine/dump/freeze.ts: at each freeze's start and thaw). */
export function forgetRseqConfigs(): void {
  configs.clear();
}

/** Offset of rseq_cs in struct rseq. */
const RSEQ_CS = 8n;
/** struct rseq_cs: version, flags (u32), start_ip, post_commit_offset, abort_ip (u64). */
const CS_BYTES = 32;

/** The abort handler of the critical section `cs` (an address in `pid`) if `rip` is inside it. */
function abortTarget(pid: number, cs: bigint, rip: bigint, sig: number): bigint | undefined {
  const d = new Uint8Array(CS_BYTES);
  try {
    if (processVmRead(pid, cs, d) !== CS_BYTES) return undefined;
  } catch {
    return undefined; // the kernel would fail the thread (SIGSEGV) just as after a restore
  }
  const v = new DataView(d.buffer);
  const start = v.getBigUint64(8, true), length = v.getBigUint64(16, true);
  const abort = v.getBigUint64(24, true);
  if (v.getUint32(0, true) !== 0 || rip < start || rip - start >= length) return undefined;
  if (abort - start < length || abort < 4n) return undefined; // invalid: left to the kernel
  const before = new Uint8Array(4);
  try {
    if (processVmRead(pid, abort - 4n, before) !== 4) return undefined;
  } catch {
    return undefined;
  }
  return new DataView(before.buffer).getUint32(0, true) === sig ? abort : undefined;
}

/**
 * Moves each thread of `tids` (threads of `pid`, in a ptrace stop of this
 * thread, nothing run in them since) that sits in an rseq critical section
 * to the section's abort handler. Costs one table run of
 * PTRACE_GET_RSEQ_CONFIGURATION and one process_vm_readv for the threads'
 * rseq_cs words; registers are read only for a thread whose rseq_cs is set.
 * A section the kernel would find invalid is left to it (it fails the
 * thread alike after a restore). Each registration read is kept for the
 * collect ({@link frozenRseqConfigs}). Never throws.
 */
export function abortRseqSections(pid: number, tids: readonly number[]): void {
  try {
    const registered = rseqConfigsEach(tids);
    registered.forEach((c, i) => c && configs.set(tids[i], c));
    const areas = registered.map((c) => c && c.addr !== 0n ? c : undefined);
    const at: number[] = [];
    areas.forEach((a, i) => a && at.push(i));
    if (at.length === 0) return;
    const remote = new BigUint64Array(2 * at.length);
    at.forEach((i, k) => {
      remote[2 * k] = areas[i]!.addr + RSEQ_CS;
      remote[2 * k + 1] = 8n;
    });
    const words = new BigUint64Array(at.length);
    const bytes = new Uint8Array(words.buffer);
    let read = 0;
    try {
      read = processVmReadMany(pid, bytes, remote, at.length);
    } catch { /* each one below */ }
    at.forEach((i, k) => {
      if ((k + 1) * 8 > read) {
        // Past the first piece the kernel could not read: one at a time.
        const one = new Uint8Array(8);
        try {
          if (processVmRead(pid, remote[2 * k], one) !== 8) return;
        } catch {
          return;
        }
        words[k] = new DataView(one.buffer).getBigUint64(0, true);
      }
      const cs = words[k];
      if (cs === 0n) return;
      const tid = tids[i];
      const regs = getRegs(tid);
      // In a syscall it is not inside a section (a syscall there is a bug the kernel may kill).
      if (signed(regs.orig_rax) >= 0n) return;
      const abort = abortTarget(pid, cs, regs.rip, areas[i]!.sig);
      if (abort !== undefined) setRegs(tid, { ...regs, rip: abort });
    });
  } catch { /* gone: the freeze finds out */ }
}
