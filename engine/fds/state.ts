/**
 * State that belongs to an open file description rather than to one fd:
 * the status flags (set exactly as they were: creation syscalls and open()
 * cannot express all of them, and an fd taken from the restorer's stdio has
 * the restorer's), the offset of a file reopened by path, and the flock and
 * OFD locks held through it. Set once per description, right after it is
 * created (by the process, or by the tree's creator of a shared one).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { descriptionLocks, emitDescriptionLocks } from "./locks.ts";
import { type DescriptionState, type FdSource, SETFL_MASK } from "./types.ts";

const F_SETFL = 4;
const O_PATH = 0o10000000;

/** The description state of `f` re-created as `source` (none for fds taken from a holder). */
export function descriptionState(f: FdInfo, source: FdSource): DescriptionState | undefined {
  if (source.kind === "same" || source.kind === "transfer") return undefined;
  const state: DescriptionState = { setfl: f.flags & SETFL_MASK };
  // An O_PATH fd has no status flags to set (fcntl F_SETFL fails with EBADF).
  if (source.kind === "open" && f.flags & O_PATH) state.pathOnly = true;
  const seekable = f.kind === "file" || f.kind === "directory" || f.kind === "memfd" ||
    f.ghost !== undefined;
  // extra.pos: the exact offset when it is past 2^53 (engine/proc/fdinfo.ts).
  if (source.kind === "open" && seekable && (f.pos > 0 || f.extra.pos)) {
    state.pos = f.extra.pos ? BigInt(f.extra.pos) : f.pos;
  }
  const locks = descriptionLocks(f);
  if (locks.length) state.locks = locks;
  return state;
}

/** Ops setting `state` on the description at `fd`. */
export function emitDescriptionState(p: ProgramBuilder, fd: number, state: DescriptionState) {
  if (!state.pathOnly) {
    p.op(SYS.fcntl, [fd, F_SETFL, state.setfl], {
      comment: `fd ${fd} status flags 0${state.setfl.toString(8)}`,
    });
  }
  if (state.pos !== undefined) p.op(SYS.lseek, [fd, state.pos, 0], { comment: `fd ${fd} offset` });
  if (state.locks) emitDescriptionLocks(p, fd, state.locks);
}
