/**
 * Pre-copy or fork snapshots for a `dump --leave-running` whose pre-copy
 * would pay (engine/dump/precopy_policy.ts), chosen by what a page table
 * entry change costs on this host.
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
 * tree whose processes' snapshots are expected to be taken is frozen once
 * and each process read from its own snapshot instead of pre-copied. Below
 * it (the usual host) nothing changes: the probe's memo is read, and the
 * pre-copy runs as before. `CRYO_PTE_COST=costly` or `=cheap` sets the
 * answer (tests, benchmarks).
 *
 * A tree of several processes is decided as a whole (one pre-copy for all,
 * or one freeze for all): it is frozen once when one of its processes is
 * large enough for the pre-copy's stall to outlast the tree's freeze
 * ({@link treeSnapshotRule}) and every process's snapshot is expected, the room for their copies counted together, but for at most
 * {@link FROZEN_REMAINDER_MAX_BYTES} of processes copied frozen (too small
 * for a snapshot to pay, or one refused: shared anonymous memory, seccomp,
 * an area a fork does not copy). In the freeze each process then takes
 * its snapshot where its own conditions hold (engine/dump/mod.ts; a child
 * that shares pages copy-on-write with its parent counts only the pages
 * its own image stores, engine/memory/inherit.ts).
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
import { forkSnapshotWanted, memoryRoom, SNAPSHOT_MIN_BYTES } from "./fork_snapshot.ts";
import { classifyVma } from "./vmas.ts";

/**
 * Nanoseconds per page table entry change from which the pre-copy's
 * arming and release stall the target longer than a snapshot's freeze:
 * the bench VM measures 520 to 700 ns, hosts without shadowed page tables
 * some tens.
 */
export const COSTLY_PTE_CHANGE_NS = 200;

/**
 * Bytes of a tree's processes whose snapshots are not expected that may
 * still be copied in its one freeze (~0.5 ms per MiB here) rather than the
 * whole tree pre-copied: {@link SNAPSHOT_MIN_BYTES}, below which a
 * snapshot would not shorten the freeze either.
 */
export const FROZEN_REMAINDER_MAX_BYTES = SNAPSHOT_MIN_BYTES;

/**
 * A tree of several processes is frozen once instead of pre-copied only
 * when its largest process (as the estimate listed it) has at least
 * `largestBytes` (tests lower it): the pre-copy stalls each process for its
 * own entries, while the freeze holds every process through the whole
 * tree's collect and forks. On the bench VM three processes of 512 MiB
 * saw 0.249 -> 0.141 s, of 256 MiB 0.113 -> 0.110 s, of 128 MiB 0.100 ->
 * 0.130 s, of 64 MiB 0.058 -> 0.071 s (docs/PERFORMANCE.md, nineteenth
 * pass, branch treesnap): below that the pre-copy's stall hides under its
 * own final freeze.
 */
export const treeSnapshotRule = { largestBytes: 256 * 1024 * 1024 };

/**
 * Counts for tests: dumps that took snapshots instead of a pre-copy
 * (`trees`: of those, trees of several processes), probes run.
 */
export const snapshotChoiceStats = { chosen: 0, trees: 0, probes: 0 };

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
 * Whether a fork snapshot of process `pid` is expected to be taken in its
 * freeze (fork_snapshot.ts), read with it running: worth it for its
 * `bytes` over `mappings`, no thread under seccomp, room for a copy of every
 * page (besides the `reserved` bytes of the tree's other snapshots), no
 * shared anonymous or hugetlb memory (maps), no area the fork would not
 * copy as it is (the VmFlags from the BPF iterator, when it loads). Never
 * throws (false when something cannot be read).
 */
export function snapshotExpected(
  pid: number,
  bytes: number,
  mappings: number,
  reserved = 0,
): boolean {
  if (!forkSnapshotWanted(bytes, mappings)) return false;
  try {
    for (const st of readThreadStatuses(pid, listTids(pid)).values()) {
      if ((st.fields.Seccomp ?? "0") !== "0") return false;
    }
    if (memoryRoom(pid) < reserved + bytes) return false;
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
 * Whether a dump left running whose pre-copy pays is frozen once and read
 * from fork snapshots instead (see the module doc): only where entry
 * changes are costly and, for each process of the tree as the estimate
 * listed it (`each`: its own bytes and mappings), its snapshot is
 * expected, but for at most {@link FROZEN_REMAINDER_MAX_BYTES} of them,
 * and a tree of several processes has one of {@link treeSnapshotRule}'s
 * size. Counts the choice in {@link snapshotChoiceStats}.
 */
export function snapshotInsteadOfPrecopy(
  pid: number,
  estimate: {
    bytes: number;
    mappings: number;
    pids: readonly number[];
    each?: readonly { bytes: number; mappings: number }[];
  },
): boolean {
  const { pids } = estimate;
  const each = estimate.each ?? (pids.length === 1 ? [estimate] : undefined);
  if (!each || each.length !== pids.length || pids[0] !== pid) return false;
  if (pids.length > 1 && !each.some((e) => e.bytes >= treeSnapshotRule.largestBytes)) return false;
  if (!pteChangesCostly()) return false;
  let reserved = 0, frozen = 0;
  for (let i = 0; i < pids.length; i++) {
    if (snapshotExpected(pids[i], each[i].bytes, each[i].mappings, reserved)) {
      reserved += each[i].bytes;
    } else {
      frozen += each[i].bytes;
      if (pids.length === 1 || frozen > FROZEN_REMAINDER_MAX_BYTES) return false;
    }
  }
  if (reserved === 0) return false;
  snapshotChoiceStats.chosen++;
  if (pids.length > 1) snapshotChoiceStats.trees++;
  return true;
}
