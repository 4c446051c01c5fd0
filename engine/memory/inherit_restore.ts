/**
 * Restoring memory by inheritance (see inherit.ts for the dump side).
 *
 * The parent forks each inheriting child (clone3 with set_tid) once its own
 * mappings are in, with their pages and flags. The engine catches the
 * child at its birth stop, maps the child's own bootstrap into it and
 * starts the child's program there (engine/restore/inherit_session.ts);
 * nothing is exec'ed, so the child keeps the inherited address space. Its
 * program then unmaps what it inherited but does not have (the parent's
 * bootstrap, every parent mapping it does not keep), writes into each kept
 * mapping only the pages that differ and drops the ones it lacks, maps its
 * other mappings as a fresh process would, and goes on with its own state.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { cloneArgs } from "../../ffi/structs.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { cloneWithTid } from "../program/clone.ts";
import { emitVmFlags } from "./flags.ts";

const MADV_DONTNEED = 4;
const PREAD_MAX = 1 << 30;
const PR_SET_MEMORY_MERGE = 67;

/** The children of `proc` restored by inheritance. */
export function inheritingChildren(
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
): number[] {
  return proc.children.filter((c) => images?.get(c)?.inheritsMemory === true);
}

/** The parent whose memory `proc` inherits, or undefined. */
export function inheritedFrom(
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
): ProcessImage | undefined {
  if (!proc.inheritsMemory) return undefined;
  const parent = images?.get(proc.ppid);
  if (!parent) throw new Error(`process ${proc.pid} inherits memory but its parent is missing`);
  return parent;
}

/**
 * In an inheriting child, before its own mappings: sets the process-wide
 * memory settings a fork passed on, unmaps the parent's bootstrap and
 * every parent mapping it does not keep.
 */
export function emitDropInherited(
  p: ProgramBuilder,
  proc: ProcessImage,
  parent: ProcessImage,
): void {
  emitInheritedProcessFlags(p, proc);
  p.op(SYS.munmap, [BigInt(parent.bootstrap.start), parent.bootstrap.size], {
    comment: "the parent's bootstrap",
  });
  // Every part of a parent mapping that no kept mapping covers goes.
  const kept = proc.mappings.filter((m) => m.inherited)
    .map((m) => ({ start: BigInt(m.start), end: BigInt(m.end) }));
  let k = 0;
  for (const m of parent.mappings) {
    if (m.kind === "vdso" || m.kind === "vsyscall") continue;
    let at = BigInt(m.start);
    const end = BigInt(m.end);
    while (k < kept.length && kept[k].end <= at) k++;
    for (let i = k; i < kept.length && kept[i].start < end; i++) {
      if (kept[i].start > at) unmap(p, at, kept[i].start, m);
      if (kept[i].end > at) at = kept[i].end;
    }
    if (at < end) unmap(p, at, end, m);
  }
}

function unmap(p: ProgramBuilder, start: bigint, end: bigint, m: Mapping): void {
  p.op(SYS.munmap, [start, end - start], {
    comment: `inherited 0x${start.toString(16)}-0x${end.toString(16)} of ${
      m.name || "anon"
    }, not kept`,
  });
}

/**
 * A mapping kept from the parent: drop the pages the child lacks, write the
 * pages that differ (read from the image in `imageSlot`), set its
 * protection and flags.
 */
export function emitInheritedMapping(p: ProgramBuilder, m: Mapping, imageSlot: number): void {
  const start = BigInt(m.start);
  const len = BigInt(m.end) - start;
  for (const d of m.discard ?? []) {
    p.op(SYS.madvise, [BigInt(d.addr), d.length, MADV_DONTNEED], {
      comment: "page the parent has and this process has not",
    });
  }
  const writable = m.perms[1] === "w";
  // The inherited piece has the parent's protection until this sets the child's.
  if (m.pages.length) p.op(SYS.mprotect, [start, len, protOf(m.perms) | 2]);
  for (const run of m.pages) {
    for (let done = 0; done < run.length; done += PREAD_MAX) {
      const n = Math.min(PREAD_MAX, run.length - done);
      p.op(SYS.pread64, [
        slot(imageSlot),
        BigInt(run.addr) + BigInt(done),
        n,
        run.fileOffset + done,
      ], {
        comment: `pages of ${m.start}-${m.end} that differ from the parent's`,
      });
    }
  }
  if (!m.pages.length || !writable) p.op(SYS.mprotect, [start, len, protOf(m.perms)]);
  emitVmFlags(p, m);
}

function protOf(perms: string): number {
  return (perms[0] === "r" ? 1 : 0) | (perms[1] === "w" ? 2 : 0) | (perms[2] === "x" ? 4 : 0);
}

/**
 * KSM merge-any is passed on by fork: an inheriting child without it
 * clears it. (THP disable, also passed on, is set explicitly by
 * engine/task/attrs.ts in every process.)
 */
function emitInheritedProcessFlags(p: ProgramBuilder, proc: ProcessImage): void {
  if (!proc.inheritsMemory || proc.memoryFlags?.ksmMergeAny) return;
  // Clearing fails only on a kernel without KSM, where nothing was inherited.
  p.op(SYS.prctl, [PR_SET_MEMORY_MERGE, 0, 0, 0, 0], {
    allowFail: true,
    comment: "no KSM merge-any",
  });
}

/**
 * In a parent, once its memory is in: forks the children that inherit it
 * (into its fd table or fs info where they shared them).
 */
export function emitInheritForks(
  p: ProgramBuilder,
  children: readonly number[],
  /** Clone flags of a child (CLONE_FILES, CLONE_FS: engine/task/shared_tables.ts). */
  flagsOf: (child: number) => bigint = () => 0n,
): void {
  for (const child of children) {
    const args = cloneWithTid(p, child, { flags: flagsOf(child), exitSignal: 17n });
    p.op(SYS.clone3, [args, cloneArgs.size], {
      jumpIfZeroTo: `inherit-${child}`,
      comment: `fork child ${child}, which inherits this memory`,
    });
  }
}

/** Where the forked children would continue: the engine redirects them at birth. */
export function emitInheritLabels(p: ProgramBuilder, children: readonly number[]): void {
  for (const child of children) {
    p.label(`inherit-${child}`);
    p.end(`child ${child}: the engine starts its own program at its birth stop`);
  }
}
