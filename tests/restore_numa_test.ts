/**
 * NUMA memory policies (engine/memory/mempolicy.ts): tests/targets/rt_numa.c
 * sets a task policy in its main thread, another in a second thread, and
 * policies of their own on two mappings; after a dump, kill and restore its
 * get_mempolicy checks (task and MPOL_F_ADDR) must all pass, on the smaps
 * path and on the BPF paths (the VmFlags iterator, the task iterator).
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = ["main_policy", "thread_policy", "mapping_a", "mapping_b", "mapping_c", "patterns"];

/** Starts rt_numa (`none`: without policies), round-trips it, asserts its checks. */
async function roundTrip(extra: string[] = []): Promise<void> {
  const { t, trigger } = await startTriggered("rt_numa", READY, { extra });
  assert.match(t.output(), /^policies main=/m);
  await dumpKillRestore(t);
  await Deno.writeTextFile(trigger, "");
  const status = await t.wait();
  assertChecksPassed(t, extra.length ? CHECKS : [...CHECKS, "policies_set"], status);
}

for (const mode of ["smaps", "bpf"] as const) {
  Deno.test(
    `numa: task and mapping policies come back (${mode} VmFlags)`,
    withTargets(() => withVmFlagsMode(mode, () => roundTrip())),
  );
}

Deno.test(
  "numa: a process without policies comes back with the default ones",
  withTargets(() => roundTrip(["none"])),
);
