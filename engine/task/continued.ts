/**
 * A child continued (SIGCONT after a group stop) whose parent has not
 * collected the continue report yet: its parent's `waitid(WCONTINUED)`
 * (waitpid with WCONTINUED) would report it once.
 *
 * Dump: a parent with live children asks itself, by one injected
 * `waitid(P_ALL, WCONTINUED|WNOHANG|WNOWAIT)` (nothing collected), and only
 * when that finds one, the same per child; the children found are recorded
 * in the parent's image (`continuedChildren`).
 *
 * Restore: while the parent is still held, each such child is stopped with
 * SIGSTOP and let go into its group stop, the parent has the stop report
 * and the SIGCHLD taken for it (engine/task/stopped.ts), then the child is
 * sent SIGCONT, which makes the continue report again, and the SIGCHLD
 * that follows is taken too (the parent had it, or had handled it, before
 * the dump). A child that catches or blocks SIGCONT is refused: the SIGCONT
 * would reach its handler, or stay pending (`task.continued-handled`).
 * The root's continue report belongs to its parent outside the tree: not
 * recorded.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { __WALL, P_ALL, P_PID, WCONTINUED, WNOHANG, WNOWAIT } from "../../ffi/wait.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { InjectionSession } from "../dump/injected.ts";

const SIGCONT = 18;
const SIGCHLD = 17;
const SA_NOCLDSTOP = 1n;
const FLAGS = WCONTINUED | WNOHANG | WNOWAIT | __WALL;

/** The child whose continue report `waitid` wrote at the scratch page (si_pid), 0 for none. */
function reportedPid(s: InjectionSession, pid: number, idType: number, id: number): number {
  s.write(0, new Uint8Array(128));
  const r = s.call(pid, SYS.waitid, idType, id, s.scratch, FLAGS, 0);
  if (r < 0n) return 0;
  return new DataView(s.read(16, 4).buffer).getInt32(0, true);
}

/**
 * The live children of `pid` (in an injection session `s` of it) whose
 * continue report it has not collected.
 */
export function queryContinuedChildren(
  s: InjectionSession,
  pid: number,
  children: readonly number[],
): number[] {
  if (children.length === 0 || reportedPid(s, pid, P_ALL, 0) === 0) return [];
  return children.filter((c) => reportedPid(s, pid, P_PID, c) === c);
}

/** Refuses continued children (of `images`) whose continue could not be made again as it was. */
export function checkContinued(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  for (const parent of images) {
    for (const pid of parent.continuedChildren ?? []) {
      const child = byPid.get(pid);
      if (!child) continue;
      const action = child.sigactions[SIGCONT - 1];
      const handler = BigInt(action?.handler ?? "0x0");
      const bit = 1n << BigInt(SIGCONT - 1);
      const blocked = child.threads.some((t) => (BigInt(t.sigmask) & bit) !== 0n);
      const where = `process ${pid} (continued, its parent ${parent.pid} not told yet)`;
      // SIG_IGN is fine: the continue happens all the same, the signal is dropped.
      if (handler > 1n || blocked) {
        refusals.use(
          "task.continued-handled",
          where,
          `it ${blocked ? "blocks" : "catches"} SIGCONT`,
        );
      } else {
        refusals.use("task.continued", where);
      }
    }
  }
}

/** Whether a stop or continue of a child of `parent` sends it SIGCHLD (not SIG_IGN, no SA_NOCLDSTOP). */
export function notifiedOfStops(parent: ProcessImage): boolean {
  const a = parent.sigactions[SIGCHLD - 1];
  return BigInt(a?.handler ?? "0x0") !== 1n && (BigInt(a?.flags ?? "0x0") & SA_NOCLDSTOP) === 0n;
}
