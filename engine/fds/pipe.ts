/**
 * Pipes. A pipe with both ends in one process is re-created with pipe2()
 * and refilled with the bytes that were in it (read at dump time with
 * tee(), which copies without consuming). A pipe with one end leading out
 * of the tree is re-attached to the restorer's stdio. A pipe whose ends are
 * held by several processes of the tree is created once by their common
 * ancestor (shared.ts) with this same plan.
 *
 * @module
 */

import { peekPipe } from "../../ffi/pipe.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { pollFd } from "../../ffi/pty_queue.ts";
import { encodeBase64 } from "../base64.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { FdSource } from "./types.ts";
import { ownerOf } from "../task/creds.ts";
import { supportOf } from "../support.ts";
import { replacementFlags } from "./regular.ts";

const O_ACCMODE = 3;

/**
 * Dump-time extras of a pipe or FIFO end held by `pid`: the pipe's owner
 * (its creator's fs ids) when it is not root, and for a read or read-write
 * end the buffered bytes and buffer size, and the sizes of the packets
 * (O_DIRECT writes) at their head ("pipe-packets": "3,5", or "mixed" when
 * packets and plain bytes mix: refused by {@link pipePackets}).
 */
export function collectPipe(pid: number, fd: number, flags: number): Record<string, string> {
  const owner = ownerOf(Deno.statSync(`/proc/${pid}/fd/${fd}`));
  const out: Record<string, string> = owner ? { "pipe-owner": owner } : {};
  if ((flags & O_ACCMODE) === 1) return out;
  try {
    const { data, size, packets } = peekPipe(pid, fd);
    return {
      ...out,
      "pipe-data": encodeBase64(data),
      "pipe-size": String(size),
      ...(packets !== undefined ? { "pipe-packets": packets?.join(",") ?? "mixed" } : {}),
    };
  } catch {
    return out;
  }
}

const POLLERR = 0x8;
const POLLHUP = 0x10;

/**
 * Whether pipe end `fd` of `pid` (one not paired in the tree) has no other
 * end anywhere: no writer left for a read end (POLLHUP), no reader for a
 * write end (POLLERR). One pidfd_getfd and one poll.
 */
export function pipeWidowed(pid: number, fd: number, flags: number): boolean {
  try {
    const lone = (flags & O_ACCMODE) === 1 ? POLLERR : POLLHUP;
    return withTargetFd(pid, fd, (copy) => (pollFd(copy, 0) & lone) !== 0);
  } catch {
    return false;
  }
}

/**
 * The packets recorded at the head of pipe or FIFO `f`'s bytes, or the
 * refusal of bytes in packet mode that cannot be queued again exactly.
 */
export function pipePackets(f: FdInfo): { packets?: number[] } | string {
  const v = f.extra["pipe-packets"];
  if (v === undefined) return {};
  if (v === "mixed") {
    const row = supportOf("fd.pipe-packets-mixed");
    return `${row.what}: ${row.note}`;
  }
  return { packets: v.split(",").map(Number) };
}

/**
 * What a restore knows of the tree when it plans a pipe end leading out of
 * it (see {@link outsidePipeSource}).
 */
export interface OutsidePipeContext {
  /** Every process of the tree by pid. */
  tree: ReadonlyMap<number, ProcessImage>;
  /** The tree's root, whose fds `--inherit-fd` replaces. */
  rootPid: number;
  /** The root's `--inherit-fd` overrides: fd number -> "path" or "fd:N". */
  rootInheritFds?: Map<number, string>;
  /** The dump's check: what only `--inherit-fd` can give is accepted (the restore asks for it). */
  check: boolean;
}

/** The lowest fd at most `below` of `p` holding the same end of the same pipe as `f`. */
function sameEndIn(f: FdInfo, p: ProcessImage | undefined, below: number): number | undefined {
  const reads = (f.flags & O_ACCMODE) === 0;
  let best: number | undefined;
  for (const g of p?.fds ?? []) {
    if (g.fd > below || g.kind !== "pipe" || g.target !== f.target) continue;
    if (((g.flags & O_ACCMODE) === 0) !== reads) continue;
    best = Math.min(best ?? g.fd, g.fd);
  }
  return best;
}

/**
 * Where pipe end `f` leading out of the tree comes from at restore. Fds
 * 0-2 take the restorer's same stdio fd, and so does any fd of a pipe end
 * the tree also holds at 0-2 (a dup of a child's stdin). Anything else has
 * nothing of the restorer's standing for it: an end the root holds takes
 * what `--inherit-fd` gives the root's fd (asked for at restore), and one
 * the root does not hold is refused.
 */
export function outsidePipeSource(f: FdInfo, cx: OutsidePipeContext): FdSource | string {
  if (f.fd <= 2) return { kind: "inherit", from: f.fd };
  let stdio: number | undefined;
  for (const p of cx.tree.values()) {
    const at = sameEndIn(f, p, 2);
    if (at !== undefined) stdio = Math.min(stdio ?? at, at);
  }
  if (stdio !== undefined) return { kind: "inherit", from: stdio };
  const end = (f.flags & O_ACCMODE) === 0 ? "read" : "write";
  const what = `the ${end} end of a pipe to a process outside the tree`;
  const rootFd = sameEndIn(f, cx.tree.get(cx.rootPid), Infinity);
  if (rootFd === undefined) {
    return `${what}, not held by the tree's root: nothing of the restorer's stands for it above fd 2`;
  }
  const given = cx.rootInheritFds?.get(rootFd);
  if (given !== undefined) {
    return given.startsWith("fd:")
      ? { kind: "inherit", from: Number(given.slice(3)) }
      : { kind: "open", path: given, flags: replacementFlags(f) };
  }
  if (cx.check) return { kind: "inherit", from: end === "read" ? 0 : 1 }; // restore asks for it
  const as = f.fd === rootFd ? "" : ` (the root's fd ${rootFd})`;
  return `${what}${as}: nothing of the restorer's stands for it above fd 2 (use --inherit-fd ${rootFd}=PATH or ${rootFd}=fd:N)`;
}

/**
 * The root's fds that a restore of the tree must be given with
 * `--inherit-fd`: pipe ends leading out of the tree above fd 2 that nothing
 * of the restorer's stands for ({@link outsidePipeSource}).
 */
export function inheritFdsNeeded(images: readonly ProcessImage[], rootPid: number): number[] {
  const tree = new Map(images.map((i) => [i.pid, i]));
  const root = tree.get(rootPid);
  return (root?.fds ?? [])
    .filter((f) =>
      f.kind === "pipe" && f.restore === "inherit" && f.sameAs === undefined &&
      typeof outsidePipeSource(f, { tree, rootPid, check: false }) === "string"
    )
    .map((f) => f.fd);
}

/**
 * Restore plan of a pipe end; `outside` is where one leading out of the
 * tree comes from ({@link outsidePipeSource}).
 */
export function planPipe(f: FdInfo, outside: FdSource | string): FdSource | string {
  if (f.restore === "inherit") return outside;
  if (f.restore !== "process" && f.restore !== "tree") {
    return `a pipe end of unknown kind "${f.restore}"`;
  }
  const end = (f.flags & O_ACCMODE) === 0 ? "read" : "write";
  const packets = pipePackets(f);
  if (typeof packets === "string") return packets;
  return {
    kind: "pipe",
    id: f.target,
    end,
    flags: f.flags,
    ...(f.extra["pipe-data"] ? { data: f.extra["pipe-data"] } : {}),
    ...(f.extra["pipe-size"] ? { size: Number(f.extra["pipe-size"]) } : {}),
    ...packets,
    ...(f.extra["pipe-owner"] ? { owner: f.extra["pipe-owner"] } : {}),
  };
}
