/**
 * NUMA memory policies (engine/memory/mempolicy.ts): tests/targets/rt_numa.c
 * sets a task policy in its main thread, another in a second thread, and
 * policies of their own on two mappings; after a dump, kill and restore its
 * get_mempolicy checks (task and MPOL_F_ADDR) must all pass, on the smaps
 * path and on the BPF paths (the VmFlags iterator, the task iterator).
 */

import assert from "node:assert/strict";
import { parseCpuList } from "../engine/task/sched.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { planRestore, preflight } from "../engine/restore/mod.ts";
import { CryoError, RestoreError, UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { threadStatePaths } from "../engine/dump/thread_state.ts";
import { checkPolicyAreas, vmFlagsPaths } from "../engine/dump/vm_flags.ts";
import {
  checkPolicyNodes,
  describePolicy,
  MASK_BYTES,
  maskOfNodes,
  nodesOfMask,
  policyOf,
  queryMappingPolicies,
} from "../engine/memory/mempolicy.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { threadBpfTest, withMemoEnv } from "./helpers/thread_bpf.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = [
  "main_policy",
  "thread_policy",
  "thread2_policy",
  "mapping_a",
  "mapping_b",
  "mapping_c",
  "mapping_local",
  "mapping_preferred_many",
  "mapping_weighted",
  "mapping_balancing",
  "patterns",
];

/**
 * Starts rt_numa (`none`: without policies), round-trips it, asserts its
 * checks (and, given `path`, the VmFlags path the dump took: on the BPF one
 * the iterator's vm_policy says which areas to ask).
 */
async function roundTrip(extra: string[] = [], path?: "bpf" | "smaps"): Promise<void> {
  const { t, trigger } = await startTriggered("rt_numa", READY, { extra });
  assert.match(t.output(), /^policies main=/m);
  await dumpKillRestore(t);
  if (path) assert.match(vmFlagsPaths.get(t.pid) ?? "", new RegExp(`^${path}`));
  await Deno.writeTextFile(trigger, "");
  const status = await t.wait();
  assertChecksPassed(t, extra.length ? CHECKS : [...CHECKS, "policies_set"], status);
}

for (const mode of ["smaps", "bpf"] as const) {
  Deno.test(
    `numa: task and mapping policies come back (${mode} VmFlags)`,
    withTargets(() => withVmFlagsMode(mode, () => roundTrip([], mode))),
  );
}

Deno.test(
  "numa: a process without policies comes back with the default ones",
  withTargets(() => roundTrip(["none"])),
);

threadBpfTest(
  "numa: on the BPF task path, the threads with a policy are injected and every policy comes back",
  withTargets(() =>
    withMemoEnv({ CRYO_THREADSTATE: "bpf" }, async () => {
      const { t, trigger } = await startTriggered("rt_numa", READY);
      // The first dump checks the iterator against the injected values; the next takes them.
      const first = await tempImageDir();
      await checkpoint(t.pid, { dir: first, leaveRunning: true });
      assert.equal(threadStatePaths.get(t.pid), "bpf: checked");
      const { dir } = await dumpKillRestore(t);
      assert.equal(threadStatePaths.get(t.pid), "bpf");
      const policies = async (d: string) =>
        (await readImageFile(`${d}/${t.pid}.elf`)).process.threads.map((th) => th.mempolicy);
      const taken = await policies(dir);
      assert.deepEqual(taken, await policies(first));
      assert.equal(taken.filter((p) => p).length, 2, "main and worker 1 have one, worker 2 none");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, [...CHECKS, "policies_set"], await t.wait(15000));
    })
  ),
);

Deno.test("numa: a policy naming a node that is not online is refused in one line", () => {
  const proc = {
    pid: 42,
    threads: [{ tid: 42, mempolicy: { mode: 2, nodes: [0] } }],
    mappings: [{ start: "0x1000", end: "0x2000", mempolicy: { mode: 3 | (1 << 14), nodes: [5] } }],
  } as unknown as Parameters<typeof checkPolicyNodes>[0];
  assert.throws(
    () => checkPolicyNodes(proc, new Set([0])),
    (e: Error) =>
      e instanceof RestoreError && !e.message.includes("\n") &&
      e.message ===
        "cannot restore the NUMA memory policy of process 42 mapping 0x1000-0x2000 (interleave(relative) nodes 5): node 5 is not online on this host (online: 0)",
  );
  checkPolicyNodes(proc, new Set([0, 5])); // both online: nothing to refuse
});

Deno.test(
  "numa: a policy on a shared mapping is refused at dump, in one line, the process left running",
  withTargets(async () => {
    const { t } = await startTriggered("rt_numa", READY, { extra: ["shared"] });
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: Error) =>
        e instanceof UnsupportedError && !e.message.includes("\n") &&
        /NUMA policy bind nodes 0 on a mapping of kind anon-shared/.test(e.message),
    );
    assert.ok(Deno.statSync(`/proc/${t.pid}`), "left running");
    await t.kill();
  }),
);

Deno.test(
  "numa: an image naming node 5 is refused by the restore's preflight, in one line",
  withTargets(async () => {
    const { t } = await startTriggered("rt_numa", READY);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    const plan = await planRestore(dir);
    await preflight(plan); // as dumped: node 0 is online here
    // The loaded image edited: the main thread's policy names node 5 (not online here).
    const main = plan.units[0].image.threads.find((th) => th.tid === t.pid)!;
    assert.deepEqual(main.mempolicy, { mode: 2, nodes: [0] });
    main.mempolicy = { mode: 2, nodes: [5] };
    await assert.rejects(
      () => preflight(plan),
      (e: Error) =>
        e instanceof RestoreError && !e.message.includes("\n") &&
        e.message ===
          `cannot restore the NUMA memory policy of process ${t.pid} thread ${t.pid} (bind nodes 5): node 5 is not online on this host (online: 0)`,
    );
  }),
);

Deno.test("numa: node masks round-trip and policies read as words", () => {
  assert.deepEqual(nodesOfMask(maskOfNodes([0, 3, 64, 1023])), [0, 3, 64, 1023]);
  assert.equal(maskOfNodes([]).length, MASK_BYTES);
  assert.throws(() => maskOfNodes([1024]));
  assert.equal(describePolicy({ mode: 1 | (1 << 15), nodes: [0] }), "preferred(static) nodes 0");
  assert.equal(describePolicy({ mode: 4, nodes: [] }), "local");
  assert.deepEqual([...parseCpuList("0-2,5\n")], [0, 1, 2, 5]);
  assert.equal(policyOf(0, new Uint8Array(MASK_BYTES)), undefined);
});

Deno.test(
  "numa: the mapping policies read in batches of their own are the ones the target set",
  withTargets(async () => {
    const { t } = await startTriggered("rt_numa", READY);
    const tree = freezeTree(t.pid);
    try {
      const maps = readMaps(t.pid);
      const found = withInjection(t.pid, (s) => queryMappingPolicies(s, maps));
      const got = [...found].map(([i, p]) => [maps[i].start, p.mode, p.nodes] as const);
      // rt_numa's mappings a (interleave, relative nodes), b (bind) and the four more
      // (local, preferred-many, weighted interleave, bind with numa balancing), in address order.
      assert.doesNotMatch(t.output(), /^skip/m, "this kernel has every mode");
      assert.deepEqual(got.map(([, mode, nodes]) => [mode, nodes]), [
        [0x4003, [0]],
        [2, [0]],
        [4, []],
        [5, [0]],
        [6, [0]],
        [0x2002, [0]],
      ]);
      assert.equal(got[1][0] - got[0][0], 2n * 16n * 4096n);
      // Only the areas asked: none.
      assert.equal(withInjection(t.pid, (s) => queryMappingPolicies(s, maps, new Set())).size, 0);
    } finally {
      thawTree(tree);
      await t.kill();
    }
  }),
);

Deno.test("numa: an area given a policy after the areas to ask were chosen fails the dump", () => {
  // Two iterator records (start, end, flags, vm_policy): the second area has a policy.
  const words = new BigUint64Array([0x1000n, 0x2000n, 0x73n, 0n, 0x3000n, 0x4000n, 0x73n, 0xffffn]);
  const bytes = new Uint8Array(words.buffer);
  const frozen = { pid: 7, policies: new Set<bigint>() } as unknown as Parameters<
    typeof checkPolicyAreas
  >[0];
  assert.throws(
    () => checkPolicyAreas(frozen, bytes),
    (e: Error) =>
      e instanceof CryoError &&
      e.message ===
        "process 7: the mapping at 0x3000 was given a NUMA policy while cryo read the process; dump it again",
  );
  frozen.policies = new Set([0x3000n]);
  checkPolicyAreas(frozen, bytes); // asked: nothing to refuse
});
