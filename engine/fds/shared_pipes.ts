/**
 * Pipes shared between processes of the tree (a shell pipeline, a parent
 * talking to its child). Each such pipe is created by the lowest common
 * ancestor of the processes holding it, before that ancestor forks its
 * children, at a fixed "transfer" fd number above every fd of the tree and
 * without O_CLOEXEC, so that it survives the forks and the execs of the
 * children's images; each holder then takes its end from that number in
 * its own fd phase, like an inherited fd, and every process closes the
 * transfer fds it does not use.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { decodeBase64 } from "../base64.ts";
import type { ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { emitAsOwner } from "../task/creds.ts";

/** One pipe shared inside the tree. */
export interface SharedPipe {
  /** "pipe:[inode]". */
  id: string;
  /** Pid that creates it (lowest common ancestor of the holders). */
  creator: number;
  /** Transfer fd numbers of the read and write ends. */
  readFd: number;
  writeFd: number;
  /** Bytes buffered in it at dump time (base64), and its buffer size. */
  data?: string;
  size?: number;
  /** "uid:gid" it is created with, when not root's. */
  owner?: string;
}

function ancestors(pid: number, parent: Map<number, number>): number[] {
  const out = [pid];
  for (let p = parent.get(pid); p !== undefined; p = parent.get(p)) out.push(p);
  return out;
}

/** Finds the pipes shared between processes of the tree and who creates each. */
export function planSharedPipes(processes: readonly ProcessImage[]): SharedPipe[] {
  const parent = new Map<number, number>();
  for (const p of processes) for (const c of p.children) parent.set(c, p.pid);
  const holders = new Map<
    string,
    { pids: Set<number>; data?: string; size?: number; owner?: string }
  >();
  let maxFd = 2;
  for (const p of processes) {
    for (const f of p.fds) {
      maxFd = Math.max(maxFd, f.fd);
      if ((f.kind !== "pipe" && f.kind !== "fifo") || f.restore !== "tree" || f.excluded) continue;
      const h = holders.get(f.target) ?? { pids: new Set<number>() };
      h.pids.add(p.pid);
      if (f.extra["pipe-data"]) h.data = f.extra["pipe-data"];
      if (f.extra["pipe-size"]) h.size = Number(f.extra["pipe-size"]);
      if (f.extra["pipe-owner"]) h.owner = f.extra["pipe-owner"];
      holders.set(f.target, h);
    }
  }
  const out: SharedPipe[] = [];
  // Above every fd of the tree, and above what pipe2() can return while the
  // creators make them (0-2 plus two per pipe), so a dup3 never targets itself.
  let next = Math.max(maxFd + 1, 3 + 2 * holders.size + 1);
  for (const [id, h] of holders) {
    const chains = [...h.pids].map((pid) => ancestors(pid, parent));
    const creator = chains[0].find((a) => chains.every((c) => c.includes(a)))!;
    out.push({
      id,
      creator,
      readFd: next,
      writeFd: next + 1,
      data: h.data,
      size: h.size,
      ...(h.owner ? { owner: h.owner } : {}),
    });
    next += 2;
  }
  return out;
}

const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;

/** Ops creating the shared pipes `pid` is responsible for (run before its children fork). */
export function emitSharedPipeCreation(
  p: ProgramBuilder,
  pipes: readonly SharedPipe[],
  pid: number,
  scratchSlot: number,
  slotsAddress: bigint,
): void {
  const scratch = slotsAddress + BigInt(scratchSlot * 8);
  for (const s of pipes.filter((x) => x.creator === pid)) {
    const pair = p.reserve(8);
    emitAsOwner(
      p,
      s.owner,
      () => p.op(SYS.pipe2, [pair, O_CLOEXEC], { comment: `${s.id}, shared in the tree` }),
    );
    p.copy(scratch, pair, 4);
    p.op(SYS.dup3, [{ slot: scratchSlot }, s.readFd, 0], { comment: `read end -> ${s.readFd}` });
    p.op(SYS.close, [{ slot: scratchSlot }]);
    p.copy(scratch, pair + 4n, 4);
    p.op(SYS.dup3, [{ slot: scratchSlot }, s.writeFd, 0], { comment: `write end -> ${s.writeFd}` });
    p.op(SYS.close, [{ slot: scratchSlot }]);
    if (s.size && s.size !== 65536) {
      p.op(SYS.fcntl, [s.writeFd, F_SETPIPE_SZ, s.size], { allowFail: true });
    }
    const bytes = s.data ? decodeBase64(s.data) : new Uint8Array();
    if (bytes.length) {
      p.op(SYS.write, [s.writeFd, p.data(bytes, 1), bytes.length], {
        comment: `${bytes.length} bytes back into ${s.id}`,
      });
    }
  }
}
