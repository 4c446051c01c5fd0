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
import type { FdInfo } from "../model.ts";
import type { FdSource } from "./types.ts";
import { ownerOf } from "../task/creds.ts";
import { supportOf } from "../support.ts";

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

/**
 * Bytes buffered in the pipes and FIFOs of `fds` that a restore program
 * writes back (its data area must hold them: see dump/vmas.ts's
 * bootstrapSizeFor).
 */
export function pipeQueueBytes(fds: readonly FdInfo[]): number {
  return fds.reduce((n, f) => n + Math.ceil((f.extra["pipe-data"]?.length ?? 0) * 3 / 4), 0);
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
    return withTargetFd(pid, fd, (copy) => pipeEndAlone(copy, flags));
  } catch {
    return false;
  }
}

/**
 * Whether cryo's own pipe end `fd` (status flags `flags`) has no other end
 * anywhere (see {@link pipeWidowed}). One poll.
 */
export function pipeEndAlone(fd: number, flags: number): boolean {
  const lone = (flags & O_ACCMODE) === 1 ? POLLERR : POLLHUP;
  return (pollFd(fd, 0) & lone) !== 0;
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
 * Restore plan of a pipe end; `outside` is where one leading out of the
 * tree comes from (outside.ts `outsideSource`).
 */
export function planPipe(
  f: FdInfo,
  outside: FdSource | string,
  fds: readonly FdInfo[] = [f],
): FdSource | string {
  if (f.restore === "inherit") return outside;
  if (f.restore !== "process" && f.restore !== "tree") {
    return `a pipe end of unknown kind "${f.restore}"`;
  }
  const end = (f.flags & O_ACCMODE) === 0 ? "read" : "write";
  const rank = f.restore === "process" ? reopenRank(f, fds) : 0;
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
    ...(rank ? { reopen: rank } : {}),
  };
}

/**
 * 0 for the first description of each end of `f`'s pipe among the
 * holder's `fds` (the ends pipe2 makes); for the others (opened through
 * /proc/self/fd, read-write ones included), their rank from 1, by fd.
 */
function reopenRank(f: FdInfo, fds: readonly FdInfo[]): number {
  const descriptions = fds.filter((o) =>
    o.kind === "pipe" && o.target === f.target && o.sameAs === undefined && !o.excluded
  ).sort((a, b) => a.fd - b.fd);
  const firsts = new Set(
    [0, 1].map((mode) => descriptions.find((o) => (o.flags & O_ACCMODE) === mode)),
  );
  const others = descriptions.filter((o) => !firsts.has(o));
  return others.findIndex((o) => o.fd === f.fd) + 1;
}
