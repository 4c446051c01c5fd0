/**
 * Regular files, directories and character devices: reopened by path with
 * their flags; the offset is restored with lseek.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import type { FdSource } from "./types.ts";

const O_CREAT_TRUNC_EXCL = 0o100 | 0o1000 | 0o200;
const O_DIRECTORY = 0o200000;

/** Reopen a path-backed fd. */
export function planRegular(f: FdInfo): FdSource | string {
  if (f.target.endsWith(" (deleted)")) return "a deleted file is not supported yet";
  const flags = f.flags & ~O_CREAT_TRUNC_EXCL;
  return {
    kind: "open",
    path: f.target,
    flags: f.kind === "directory" ? flags | O_DIRECTORY : flags,
  };
}

/** Open flags a user-given replacement path is opened with. */
export function replacementFlags(f: FdInfo): number {
  return f.flags & ~O_CREAT_TRUNC_EXCL;
}
