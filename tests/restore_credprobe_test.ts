/**
 * Round trips of credentials, security and scheduling state first probed by
 * tests/targets/rt_credprobe.c (branch credprobe): a stack of seccomp
 * filters with every action and their data, equal filters installed by two
 * threads on their own (not shared), other ids with a parent-death signal
 * and dumpable set after them, privileged scheduling, nice, I/O class,
 * oom_score_adj and RLIMIT_NICE set as root before dropping to a user,
 * every rlimit, an fs uid changed in one thread only, 65536 groups with a
 * thread's own groups, personality flags, dumpable 0, RLIMIT_CPU with CPU
 * time already used.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) worker=\d+$/m;

const ROUND_TRIPS: [string, string[]][] = [
  ["seccompstack", []],
  ["seccompsame", ["seccompsame-tsync"]],
  ["credpdeath", []],
  ["privsched", []],
  ["rlimits", []],
  ["fsuidthread", []],
  ["groups", []],
  ["personality", ["personality-read-implies-exec"]],
  ["dumpable0", []],
  ["cputime", ["cputime-clock"]],
];

for (const [item, extra] of ROUND_TRIPS) {
  Deno.test(
    `credprobe ${item}: the state comes back after dump, kill and restore`,
    withTargets(async () => {
      const a = await startTriggered("rt_credprobe", READY, { extra: [item] });
      // Threads that dropped to a user must still see the trigger file.
      await Deno.chmod(a.work, 0o755);
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      const status = await a.t.wait();
      assertChecksPassed(a.t, [`${item}-main`, `${item}-worker`, ...extra], status);
    }),
  );
}
