/**
 * Pre-copy or fork snapshot for a one-process `dump --leave-running` whose
 * pre-copy would pay (engine/dump/precopy_policy.ts), chosen by what a
 * page table entry change costs on this host.
 *
 * A pre-copy changes every page table entry of the target twice while the
 * target runs: its tracking's write protection is armed before the copy
 * and lifted after the dump's thaw. Where a change costs tens of
 * nanoseconds (bare metal, hardware-assisted VMs) this goes unnoticed, and
 * the final freeze copies only the pages written since. Where it traps to
 * the hypervisor (a guest whose page tables are shadowed: the bench VM, a
 * PVM guest, 0.5 to 0.7 us an entry), every thread of the target that
 * wakes is stalled through the arming and the release: 0.1 to 0.7 s at 512
 * MiB, up to 2.6 s at 2 GiB, much longer than the freeze itself
 * (docs/PERFORMANCE.md, seventeenth pass, branch bigfreeze). The fork
 * snapshot (engine/dump/fork_snapshot.ts) changes the entries once, in the
 * freeze, in a fork, and the target sees only the freeze.
 *
 * So: the cost of one entry change is measured once per boot
 * (ffi/pte_probe.ts, ~10 ms; remembered with the other per-boot facts,
 * engine/proc/vm_flags_memo.ts); from {@link COSTLY_PTE_CHANGE_NS} on, a
 * tree of one process whose snapshot is expected to be taken is frozen
 * once and read from its snapshot instead of pre-copied. Below it (the
 * usual host) nothing changes: the probe's memo is read, and the pre-copy
 * runs as before. `CRYO_PTE_COST=costly` or `=cheap` sets the answer
 * (tests, benchmarks).
 *
 * The snapshot's own conditions are checked in the freeze; those that can
 * be read before it are checked here ({@link snapshotExpected}), since a
 * snapshot refused then leaves the whole copy to the freeze. A condition
 * only the freeze shows (no room on the main thread's stack for the
 * injection) still does: the dump is then as a `--no-precopy` one.
 *
 * @module
 */

import { pteChangeNs } from "../../ffi/pte_probe.ts";
import { ANON_HUGEPAGE } from "../memory/hugetlb.ts";
import { readMaps } from "../proc/maps.ts";
import { readThreadStatuses } from "../proc/status.ts";
import { listTids } from "../proc/tasks.ts";
import { recallPteChangeNs, rememberPteChangeNs } from "../proc/vm_flags_memo.ts";
import { decodeVmFlags, loadVmaIterator, readVmaRecords } from "../proc/vma_flags_bpf.ts";
import { forkSnapshotWanted, memoryRoom } from "./fork_snapshot.ts";
import { classifyVma } from "./vmas.ts";

/**
 * Nanoseconds per page table entry change from which the pre-copy's
 * arming and release stall the target longer than a snapshot's freeze:
 * the bench VM measures 520 to 700 ns, hosts without shadowed page tables
 * some tens.
 */
export const COSTLY_PTE_CHANGE_NS = 200;

/** Counts for tests: dumps that took the snapshot instead of a pre-copy, probes run. */
export const snapshotChoiceStats = { chosen: 0, probes: 0 };

let measured: number | undefined;

/**
 * The cost of one page table entry change on this host, in ns: as
 * measured earlier on this boot, else probed now and remembered; undefined
 * when it cannot be measured.
 */
export function pteChangeCost(): number | undefined {
  if (measured !== undefined) return measured;
  measured = recallPteChangeNs();
  if (measured !== undefined) return measured;
  snapshotChoiceStats.probes++;
  measured = pteChangeNs();
  if (measured !== undefined) rememberPteChangeNs(measured);
  return measured;
}

/** Whether page table entry changes are costly here (`CRYO_PTE_COST` first, else the probe). */
export function pteChangesCostly(): boolean {
  let mode: string | undefined;
  try {
    mode = Deno.env.get("CRYO_PTE_COST");
  } catch { /* no env permission: measured */ }
  if (mode === "costly") return true;
  if (mode === "cheap") return false;
  const ns = pteChangeCost();
  return ns !== undefined && ns >= COSTLY_PTE_CHANGE_NS;
}

/** VmFlags that keep a snapshot from being taken (fork_snapshot.ts `snapshotFits`), on any area. */
const REFUSED_FLAGS = new Set(["dc", "wf", "um", "uw", "ui", "ht"]);

/**
 * Whether a fork snapshot of one-process tree `pid` is expected to be taken
 * in its freeze (fork_snapshot.ts), read with it running: worth it for its
 * `bytes` over `mappings`, no thread under seccomp, room for a copy of every
 * page, no shared anonymous or hugetlb memory (maps), no area the fork
 * would not copy as it is (the VmFlags from the BPF iterator, when it
 * loads). Never throws (false when something cannot be read).
 */
export function snapshotExpected(pid: number, bytes: number, mappings: number): boolean {
  if (!forkSnapshotWanted(bytes, mappings)) return false;
  try {
    for (const st of readThreadStatuses(pid, listTids(pid)).values()) {
      if ((st.fields.Seccomp ?? "0") !== "0") return false;
    }
    if (memoryRoom(pid) < bytes) return false;
    for (const e of readMaps(pid)) {
      if (e.path.startsWith(ANON_HUGEPAGE)) return false;
      if (classifyVma({ ...e, vmFlags: [] }) === "anon-shared") return false;
    }
    if (loadVmaIterator()) {
      const records = readVmaRecords(pid);
      for (let i = 0; i < records.count; i++) {
        const codes = decodeVmFlags(records.flags[i]);
        if (codes?.some((c) => REFUSED_FLAGS.has(c))) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a one-process dump left running whose pre-copy pays is frozen
 * once and read from a fork snapshot instead (see the module doc): only
 * where entry changes are costly and the snapshot is expected. Counts the
 * choice in {@link snapshotChoiceStats}.
 */
export function snapshotInsteadOfPrecopy(
  pid: number,
  estimate: { bytes: number; mappings: number; pids: readonly number[] },
): boolean {
  if (estimate.pids.length !== 1 || !pteChangesCostly()) return false;
  if (!snapshotExpected(pid, estimate.bytes, estimate.mappings)) return false;
  snapshotChoiceStats.chosen++;
  return true;
}
