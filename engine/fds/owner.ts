/**
 * The owner of an open file description (F_SETOWN / F_SETOWN_EX: which
 * process, thread or group gets SIGIO/SIGURG) and the signal sent instead
 * of SIGIO (F_SETSIG). /proc does not show them: the dump asks fcntl() on a
 * copy of each fd taken with pidfd_getfd (the same open file description,
 * so nothing is injected); the restored process sets them again at the end
 * of its program, once every process and thread of it exists.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { fOwnerEx } from "../../ffi/structs.ts";
import { fdOwnerOf } from "../../ffi/fcntl.ts";
import { eachTargetFd } from "../../ffi/pidfd.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { PlannedFd } from "./types.ts";

const F_SETSIG = 10;
const F_SETOWN_EX = 15;

/** Reads the owner and signal of every fd in `fds` of the frozen process `pid` that has one. */
export function queryFdOwners(
  pid: number,
  fds: readonly number[],
): Map<number, NonNullable<FdInfo["owner"]>> {
  const out = new Map<number, NonNullable<FdInfo["owner"]>>();
  // One pidfd for them all (in the freeze: pidfd_getfd, two fcntl and a close per fd).
  eachTargetFd(pid, fds, (copy, fd) => {
    const o = fdOwnerOf(copy);
    if (o.pid !== 0 || o.sig > 0) out.set(fd, o);
  });
  return out;
}

/** Ops setting the recorded owners and signals of the restored fds of `proc`. */
export function emitFdOwners(p: ProgramBuilder, proc: ProcessImage, fds: PlannedFd[]): void {
  const planned = new Map(fds.map((f) => [f.fd, f]));
  for (const f of proc.fds) {
    const pf = planned.get(f.fd);
    if (!f.owner || !pf || pf.source.kind === "same") continue;
    if (f.owner.pid !== 0) {
      const arg = p.data(fOwnerEx.encode({ type: f.owner.type, pid: f.owner.pid }));
      p.op(SYS.fcntl, [f.fd, F_SETOWN_EX, arg], {
        comment: `fd ${f.fd} owner ${["tid", "pid", "pgrp"][f.owner.type]} ${f.owner.pid}`,
      });
    }
    if (f.owner.sig) {
      p.op(SYS.fcntl, [f.fd, F_SETSIG, f.owner.sig], { comment: `fd ${f.fd} signal` });
    }
  }
}
