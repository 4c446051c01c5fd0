/**
 * Process-tree relations and task states between processes
 * (tests/targets/rt_treeprobe.c, one mode per case): the tree is dumped
 * (killed) and restored with the CLI (`restore --detach`: the restored
 * root comes back to this process, a child subreaper), then every process
 * checks the relation itself and the root reports. A case cryo refuses
 * must fail the dump with one line naming it, leave no image and the tree
 * running untraced; the tree then checks itself all the same.
 */

import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { cliDumpRestoreOrRefused } from "./helpers/cli_tree.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) pids=([\d,]*)(?: semid=(\d+))?$/m;
const IPC_RMID = 0;

/** Mode, and what the dump does with it: restore it, or refuse it (the one line's pattern). */
const CASES: [string, "restored" | RegExp][] = [
  ["clonevm", /share one address space/],
  ["clonesighand", /share one address space/],
  ["clonefiles", "restored"],
  ["clonefs", "restored"],
  [
    "clonesysvsem",
    /processes \d+ and \d+: System V semaphore undo lists .*: they share one undo list/,
  ],
  // Mode semundo (a child's SEM_UNDO adjustment) stays out: a known gap.
  // Nothing shows the adjustments, and the dump's kill applies them.
  ["cloneparent", "restored"],
  ["continued", "restored"],
  ["continuedseen", "restored"],
  [
    "continuedcaught",
    /process \d+ \(continued, its parent \d+ not told yet\): .*: it catches SIGCONT/,
  ],
  ["sigcont", "restored"],
  ["chldinfo", "restored"],
  ["sigign", "restored"],
  ["nocldwait", "restored"],
  ["nocldstop", "restored"],
  ["subreaper", "restored"],
  ["pdeath", "restored"],
  ["ptrace", /process \d+ is already traced by pid \d+/],
  [
    "pdeaththread",
    /process \d+: children with a parent-death signal .*: thread \d+ of its parent \d+ forked it/,
  ],
  ["setsid", "restored"],
  ["joingroup", "restored"],
  ["zombiegroup", "restored"],
  ["deadgroup", "restored"],
  ["deadgroupign", "restored"],
  ["deadsession", "restored"],
  ["daemon", "restored"],
  [
    "latesetsid",
    /processes in a session other than their parent's .*: it is in session \d+, its parent \d+ in session \d+/,
  ],
  ["orphanpg", "restored"],
];

for (const [mode, expect] of CASES) {
  const what = expect === "restored"
    ? "comes back as it was (dump and restore with the CLI)"
    : "the dump refuses it by name; the tree runs on untouched";
  Deno.test(
    `tree probe ${mode}: ${what}`,
    withTargets(async () => {
      const a = await startTriggered("rt_treeprobe", READY, { extra: [mode] });
      const others = a.ready[2] ? a.ready[2].split(",").map(Number) : [];
      for (const pid of others) adoptPid(pid);
      const semid = a.ready[3] ? Number(a.ready[3]) : -1;
      try {
        await cliDumpRestoreOrRefused(a, others, mode, expect);
        await Deno.writeTextFile(a.trigger, "");
        assertChecksPassed(a.t, [], await a.t.wait(), { what: mode });
      } finally {
        if (semid >= 0) rawSyscall(SYS.semctl, semid, 0, IPC_RMID, 0);
      }
    }),
  );
}
