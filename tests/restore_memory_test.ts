/**
 * Round trip of a process's memory: tests/targets/rt_memory.c sets up heap
 * chunks, a 256 MiB anonymous region, a sparse 1 GiB reservation, private
 * and shared file mappings, guard pages, brk memory and a 2000-frame deep
 * stack; it is dumped, killed and restored with the same pid, then checks
 * everything itself after the trigger file appears.
 */

import assert from "node:assert/strict";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const MiB = 1 << 20;

/** The checks rt_memory.c reports, in the order it prints them. */
const MEMORY_CHECKS = [
  "maps",
  "exe",
  "cmdline",
  "environ",
  "auxv",
  "mm-fields",
  "brk-content",
  "brk-end",
  "brk-grows",
  "brk-shrinks",
  "heap",
  "heap-usable",
  "anon-256m",
  "sparse-touched",
  "sparse-untouched-zero",
  "sparse-writable",
  "private-file-modified",
  "private-file-clean",
  "private-file-unchanged",
  "shared-file-before",
  "shared-file-writes-through",
  "shared-file-sees-writes",
  "guard-maps",
  "guard-segv",
  "guard-neighbours",
  "readonly-anon",
  "madvise-flags",
  "deep-stack",
];

/** The line rt_memory prints at the bottom of its deep recursion. */
const READY =
  /^ready pid=(\d+) sparse=0x([0-9a-f]+) sparse_len=(\d+) sparse_touched=(\d+) stack=(\d+)$/m;

/** VmFlags of every mapping of `pid`, by "start-end perms". */
function vmFlags(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  let range = "";
  for (const line of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    const head = line.match(/^([0-9a-f]+-[0-9a-f]+) (\S+)/);
    if (head) range = `${head[1]} ${head[2]}`;
    const flags = line.match(/^VmFlags:\s*(.*?)\s*$/);
    if (flags) out.set(range, flags[1]);
  }
  return out;
}

/** What {@link memoryRoundTrip} saw. */
interface MemoryRun {
  /** VmFlags by mapping, just before the dump and right after the restore. */
  flagsBefore: Map<string, string>;
  flagsAfter: Map<string, string>;
  /** Whether /proc/self/maps after the restore was byte-for-byte the one before. */
  mapsExact: boolean;
}

/**
 * Starts rt_memory with `options`, dumps, kills and restores it, checks
 * the image's page data sizes, triggers it and asserts that it reports
 * every check of {@link MEMORY_CHECKS} plus `extraChecks` ok.
 */
async function memoryRoundTrip(options: string[], extraChecks: string[]): Promise<MemoryRun> {
  const { t, trigger, ready } = await startTriggered("rt_memory", READY, {
    passWork: true,
    extra: options,
    timeoutMs: 20000,
  });
  const pid = t.pid;
  const sparseStart = BigInt(`0x${ready[2]}`);
  const touched = Number(ready[4]);
  assert.ok(Number(ready[5]) > 512 * 1024, `stack only ${ready[5]} bytes deep`);
  const flagsBefore = vmFlags(pid);

  const rt = await dumpKillRestore(t);
  assert.deepEqual(rt.tree.pids, [pid]);
  const flagsAfter = vmFlags(pid);

  // Only touched memory is saved: about 256 MiB + heap, never the 1 GiB reservation.
  const pagesBytes = rt.dump.stats.pagesBytes;
  assert.ok(pagesBytes >= 256 * MiB, `pagesBytes ${pagesBytes} < 256 MiB`);
  assert.ok(pagesBytes < 320 * MiB, `pagesBytes ${pagesBytes} is far more than touched`);
  const image = await readImageFile(`${rt.dir}/${pid}.elf`);
  const sparse = image.process.mappings.find((m) =>
    BigInt(m.start) <= sparseStart && sparseStart < BigInt(m.end)
  );
  assert.ok(sparse, "the sparse reservation is not in the image");
  const saved = sparse.pages.reduce((n, r) => n + r.length, 0);
  assert.ok(saved >= touched * 4096, `sparse mapping: only ${saved} bytes saved`);
  // Transparent huge pages may round each touched page up to 2 MiB.
  assert.ok(saved <= touched * 2 * MiB, `sparse mapping: ${saved} bytes saved`);

  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, [...MEMORY_CHECKS, ...extraChecks], await t.wait(20000));
  const mapsExact = t.output().match(/^info maps-exact (yes|no)/m)?.[1] === "yes";
  return { flagsBefore, flagsAfter, mapsExact };
}

Deno.test(
  "memory survives dump, kill and restore (heap, 256 MiB, sparse, file maps, guards, brk, stack)",
  withTargets(async () => {
    const run = await memoryRoundTrip([], []);
    if (!run.mapsExact) console.log("note: /proc/self/maps equal only after merging neighbours");
  }),
);

Deno.test(
  "shared anonymous memory, and a read-only shared view of an O_RDWR file, survive",
  withTargets(async () => {
    // "/dev/zero (deleted)" in maps is shared anonymous memory, not a deleted file;
    // an r--s mapping of a file opened O_RDWR keeps VM_MAYWRITE, so mprotect(PROT_WRITE) works.
    await memoryRoundTrip(["anon-shared", "ro-shared-rdwr"], [
      "anon-shared",
      "shared-file-mprotect",
    ]);
  }),
);

Deno.test({
  name: "mappings keep their VmFlags and /proc/self/maps is exactly the same",
  fn: withTargets(async () => {
    const run = await memoryRoundTrip([], []);
    const diffs: string[] = [];
    for (const [range, flags] of run.flagsBefore) {
      const after = run.flagsAfter.get(range);
      if (after !== flags) diffs.push(`${range}: "${flags}" -> "${after ?? "(no such mapping)"}"`);
    }
    assert.deepEqual(diffs, []);
    assert.ok(run.mapsExact, "/proc/self/maps differs (mappings merged)");
  }),
});
