/**
 * A rehearsal of the collect, run in the pre-copy's pin barrier (a freeze
 * it makes anyway, engine/dump/precopy.ts): the dump's final freeze runs
 * the collect's code for the second time in this process, compiled and
 * with its inline caches warm, instead of for the first time (a CLI dump
 * is a fresh Deno: the cold collect took about twice the warm one,
 * docs/PERFORMANCE.md). What it collects is thrown away: refusals, images,
 * sockets (none are read). It reads what the dump reads, by the same
 * means, so it leaves the tree as a dump left running does; the mappings
 * are taken from /proc/<pid>/maps, not smaps (whose page walk is the
 * costly part at large sizes, and whose flags are not needed here).
 *
 * @module
 */

import { Refusals } from "../support.ts";
import type { FrozenTree } from "./freeze.ts";
import { collectProcess, pipeTopology } from "./process.ts";
import { readFds } from "../proc/fds.ts";
import { readMaps } from "../proc/maps.ts";
import { isTrackingFd } from "./tracking.ts";
import { collectLifecycle } from "../task/lifecycle.ts";
import { rawSyscallOffThread } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { BootstrapBuilder, messageProgram } from "../restore/stub.ts";

/**
 * Collects every process of frozen `tree` and discards the result; never
 * throws (a process that cannot be collected now is the dump's business).
 */
export function rehearseCollect(tree: FrozenTree, optIns?: string[]): void {
  try {
    const fdLists = tree.processes.map((p) =>
      readFds(p.pid).filter((f) => !isTrackingFd(p.pid, f.fd))
    );
    const topology = pipeTopology(tree.processes.map((p, i) => ({ pid: p.pid, fds: fdLists[i] })));
    tree.processes.forEach((p, i) => {
      try {
        const refusals = new Refusals(optIns);
        const areas = readMaps(p.pid).map((m) => ({ ...m, vmFlags: [] }));
        const c = collectProcess(
          p.pid,
          p.threads,
          p.children,
          fdLists[i],
          topology,
          refusals,
          undefined,
          areas,
        );
        collectLifecycle(p, c.image, tree, refusals);
      } catch { /* the dump will tell */ }
    });
  } catch { /* the dump will tell */ }
}

/**
 * Warms, with the tree running, code that the final freeze would otherwise
 * run for the first time: the library of off-thread syscalls (its dlopen),
 * which the pre-copy's validation scan starts with, and the builder of the
 * bootstrap blob (pure code).
 */
export async function warmUpFinalFreeze(): Promise<void> {
  await rawSyscallOffThread(SYS.getpid);
  const boot = new BootstrapBuilder(0x10000n);
  boot.finish({ restore: messageProgram(boot.program(), "cryo warm-up\n", 1) });
}
