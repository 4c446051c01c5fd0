/**
 * The standard core notes of a process written straight into one buffer:
 * byte for byte `encodeNotes(coreNoteSpecs(proc))` (engine/image/notes.ts,
 * the XSAVE areas as recorded), without a spec, a note array and an owner
 * encoding per note and their concatenation. The image writer encodes them
 * after the thaw for every dump; with 64 threads that was 192 notes, each
 * allocated, encoded and copied twice (docs/PERFORMANCE.md, branch
 * threadsprep).
 *
 * @module
 */

import type { ProcessImage, ThreadState } from "../model.ts";
import {
  encodeAuxv,
  encodeFileNote,
  encodeSiginfo,
  fileNoteEntries,
  FPREGS_SIZE,
  hexToBigInt,
  NT_AUXV,
  NT_FILE,
  NT_PRFPREG,
  NT_PRPSINFO,
  NT_PRSTATUS,
  NT_SIGINFO,
  NT_X86_XSTATE,
  prpsinfoOf,
  PRSTATUS_REG_OFFSET,
  PRSTATUS_SIZE,
  SIGSTOP,
} from "./notes.ts";
import { USER_REGS_FIELDS } from "../../ffi/regs.ts";
import { threadXsave } from "./thread_xsave.ts";

/** "CORE\0" padded to 8: the owner field of every note but NT_X86_XSTATE. */
const CORE_NAME = [0x43, 0x4f, 0x52, 0x45, 0, 0, 0, 0];
/** "LINUX\0" padded to 8. */
const LINUX_NAME = [0x4c, 0x49, 0x4e, 0x55, 0x58, 0, 0, 0];

const align4 = (n: number) => (n + 3) & ~3;

/**
 * `encodeNotes(coreNoteSpecs(proc))`, byte for byte (the XSAVE areas as
 * recorded, not in gdb's standard layout), written into one buffer.
 */
export function encodeCoreNotes(proc: ProcessImage): Uint8Array<ArrayBuffer> {
  const threads = [...proc.threads].sort((a, b) =>
    (a.tid === proc.pid ? 0 : 1) - (b.tid === proc.pid ? 0 : 1)
  );
  const xsaves = threads.map(threadXsave);
  // The process-wide notes after the first thread's NT_PRSTATUS, in coreNoteSpecs' order.
  const first: [number, Uint8Array][] = threads.length === 0 ? [] : [
    [
      NT_PRPSINFO,
      prpsinfoOf(proc),
    ],
    [NT_SIGINFO, encodeSiginfo(SIGSTOP)],
    [NT_AUXV, encodeAuxv(proc.auxv)],
    [NT_FILE, encodeFileNote(fileNoteEntries(proc))],
  ];
  let size = 0;
  for (const x of xsaves) {
    size += 20 + PRSTATUS_SIZE;
    if (x.length >= FPREGS_SIZE) size += 20 + FPREGS_SIZE + 20 + align4(x.length);
  }
  for (const [, desc] of first) size += 20 + align4(desc.length);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = 0;
  /** Writes a note's header and owner; returns where its descriptor goes. */
  const head = (type: number, descsz: number, linux: boolean): number => {
    v.setUint32(at, linux ? 6 : 5, true);
    v.setUint32(at + 4, descsz, true);
    v.setUint32(at + 8, type, true);
    out.set(linux ? LINUX_NAME : CORE_NAME, at + 12);
    const desc = at + 20;
    at = desc + align4(descsz);
    return desc;
  };
  threads.forEach((t, i) => {
    const xsave = xsaves[i];
    const fpvalid = xsave.length >= FPREGS_SIZE;
    writePrstatus(v, head(NT_PRSTATUS, PRSTATUS_SIZE, false), proc, t, fpvalid);
    if (i === 0) {
      for (const [type, desc] of first) out.set(desc, head(type, desc.length, false));
    }
    if (fpvalid) {
      out.set(xsave.subarray(0, FPREGS_SIZE), head(NT_PRFPREG, FPREGS_SIZE, false));
      out.set(xsave, head(NT_X86_XSTATE, xsave.length, true));
    }
  });
  return out;
}

/** `encodePrstatus` of coreNoteSpecs' values for thread `t`, at `at` of a zeroed buffer. */
function writePrstatus(
  v: DataView,
  at: number,
  proc: ProcessImage,
  t: ThreadState,
  fpvalid: boolean,
): void {
  let sigpend = 0n;
  for (const s of t.pending ?? []) {
    if (s.signo >= 1 && s.signo <= 64) sigpend |= 1n << BigInt(s.signo - 1);
  }
  v.setInt32(at, SIGSTOP, true); // pr_info.si_signo
  v.setInt16(at + 12, SIGSTOP, true); // pr_cursig
  v.setBigUint64(at + 16, sigpend, true);
  v.setBigUint64(at + 24, hexToBigInt(t.sigmask), true);
  v.setInt32(at + 32, t.tid, true);
  v.setInt32(at + 36, proc.ppid, true);
  v.setInt32(at + 40, proc.pgid, true);
  v.setInt32(at + 44, proc.sid, true);
  const regs = t.regs as Record<string, string | undefined>;
  for (let i = 0; i < USER_REGS_FIELDS.length; i++) {
    v.setBigUint64(at + PRSTATUS_REG_OFFSET + 8 * i, hexToBigInt(regs[USER_REGS_FIELDS[i]]), true);
  }
  v.setInt32(at + 328, fpvalid ? 1 : 0, true);
}
