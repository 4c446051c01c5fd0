/**
 * Fds leading out of the tree: pipe ends whose other end a process outside
 * holds, terminals outside it (`--shell-job`). Nothing of them can be made
 * again; the restorer's stdin, stdout and stderr stand for those the tree
 * held on fds 0-2, and for any fd of the same pipe end or terminal (a dup
 * of a child's stdin). Any other such fd has nothing standing for it: an
 * fd the root holds takes what `--inherit-fd` gives it (the restore asks
 * for it by name), and one the root does not hold is refused at dump.
 * What `--inherit-fd` gives a root's fd, every fd of the tree holding the
 * same pipe end or terminal takes (a child's stdin shared with the root).
 *
 * @module
 */

import type { FdInfo, ProcessImage } from "../model.ts";
import { replacementFlags } from "./regular.ts";
import { indexOf, planPtys } from "./tty.ts";
import type { FdSource } from "./types.ts";

const O_ACCMODE = 3;

/** What a restore knows of the tree when it plans an fd leading out of it. */
export interface OutsideContext {
  /** Every process of the tree by pid. */
  tree: ReadonlyMap<number, ProcessImage>;
  /** The tree's root, whose fds `--inherit-fd` replaces. */
  rootPid: number;
  /** The root's `--inherit-fd` overrides: fd number -> "path" or "fd:N". */
  rootInheritFds?: Map<number, string>;
  /** The dump's check: what only `--inherit-fd` can give is accepted (the restore asks for it). */
  check: boolean;
}

/** Whether `g` is the same pipe end or terminal leading out of the tree as `f`. */
function sameOutside(f: FdInfo, g: FdInfo): boolean {
  if (g.kind !== f.kind || g.target !== f.target || g.restore !== "inherit") return false;
  return f.kind !== "pipe" || ((g.flags & O_ACCMODE) === 0) === ((f.flags & O_ACCMODE) === 0);
}

/** The lowest fd at most `highest` of `p` holding what `f` holds. */
function lowestHolding(f: FdInfo, p: ProcessImage | undefined, highest: number) {
  let best: number | undefined;
  for (const g of p?.fds ?? []) {
    if (g.fd <= highest && sameOutside(f, g)) best = Math.min(best ?? g.fd, g.fd);
  }
  return best;
}

/** What `f` is, for errors. */
function describe(f: FdInfo): string {
  if (f.kind !== "pipe") return `a terminal outside the tree (${f.target})`;
  const end = (f.flags & O_ACCMODE) === 0 ? "read" : "write";
  return `the ${end} end of a pipe to a process outside the tree`;
}

/**
 * Where fd `f` leading out of the tree (a pipe end, or a terminal that is
 * not a pty of the tree) comes from at restore; a string says why nothing
 * does (see the module doc).
 */
export function outsideSource(f: FdInfo, cx: OutsideContext): FdSource | string {
  // What the user gave a root's fd holding the same, every fd holding it takes.
  const root = cx.tree.get(cx.rootPid);
  for (const g of root?.fds ?? []) {
    const given = sameOutside(f, g) ? cx.rootInheritFds?.get(g.fd) : undefined;
    if (given !== undefined) return givenSource(f, given);
  }
  if (f.fd <= 2) return { kind: "inherit", from: f.fd };
  let stdio: number | undefined;
  for (const p of cx.tree.values()) {
    const at = lowestHolding(f, p, 2);
    if (at !== undefined) stdio = Math.min(stdio ?? at, at);
  }
  if (stdio !== undefined) return { kind: "inherit", from: stdio };
  const rootFd = lowestHolding(f, root, Infinity);
  if (rootFd === undefined) {
    return `${describe(f)}, not held by the tree's root: ` +
      `nothing of the restorer's stands for it above fd 2`;
  }
  if (cx.check) return { kind: "inherit", from: 0 }; // the restore asks for it
  const as = f.fd === rootFd ? "" : ` (the root's fd ${rootFd})`;
  return `${describe(f)}${as}: nothing of the restorer's stands for it above fd 2 ` +
    `(use --inherit-fd ${rootFd}=PATH or ${rootFd}=fd:N)`;
}

/** The source of `f` from a user's `--inherit-fd` value ("PATH" or "fd:N"). */
function givenSource(f: FdInfo, given: string): FdSource {
  return given.startsWith("fd:")
    ? { kind: "inherit", from: Number(given.slice(3)) }
    : { kind: "open", path: given, flags: replacementFlags(f) };
}

/**
 * The root's fds that a restore of the tree must be given with
 * `--inherit-fd` ({@link outsideSource}).
 */
export function inheritFdsNeeded(images: readonly ProcessImage[], rootPid: number): number[] {
  const tree = new Map(images.map((i) => [i.pid, i]));
  const ptys = new Set(planPtys(images, 0).map((p) => p.index));
  const leadsOut = (f: FdInfo) =>
    f.restore === "inherit" && f.sameAs === undefined && !f.excluded &&
    (f.kind === "pipe" ||
      (f.kind === "tty" && f.extra["tty-role"] !== "devtty" && !ptys.has(indexOf(f) ?? -1)));
  return (tree.get(rootPid)?.fds ?? [])
    .filter((f) =>
      leadsOut(f) && typeof outsideSource(f, { tree, rootPid, check: false }) === "string"
    )
    .map((f) => f.fd);
}
