/**
 * Round trips of memory details (tests/targets/rt_memflags.c): mlock,
 * mlock2(MLOCK_ONFAULT), madvise flags, mprotect splits, MAP_GROWSDOWN,
 * guard regions, mlockall(MCL_FUTURE[|MCL_ONFAULT]), PR_SET_THP_DISABLE,
 * PR_SET_MEMORY_MERGE; the target compares its maps lines and VmFlags
 * itself, and none of the ops setting them may fail silently. A sealed
 * mapping comes back sealed.
 */

import assert from "node:assert/strict";
import { collectMemoryDetails } from "../engine/memory/flags.ts";
import type { Mapping } from "../engine/model.ts";
import { PKEY_CODE, readSmapsFlags, type SmapsArea } from "../engine/proc/smaps_flags.ts";
import { Refusals } from "../engine/support.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { compileProcess } from "../engine/restore/compile.ts";
import { SYS } from "../ffi/sysno.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { MEMFLAGS_CHECKS, MEMFLAGS_READY } from "./helpers/memflags.ts";

/**
 * Every op restoring a flag of the image in `path` may not fail: a flag
 * that cannot be set fails the restore instead of being lost.
 */
async function assertFlagOpsMustSucceed(path: string): Promise<void> {
  const { process } = await readImageFile(path);
  const { bootstrap } = compileProcess(process, { imagePath: path, childImages: new Map() });
  const flagOps = bootstrap.restore.ops.filter((op) =>
    (op.nr === SYS.madvise && op.args[2] !== 23n /* MADV_POPULATE_WRITE: a speed-up */) ||
    op.nr === SYS.mlock2 || op.nr === SYS.mlockall
  );
  assert.ok(flagOps.length >= 10, `only ${flagOps.length} flag ops`);
  for (const op of flagOps) assert.ok(!op.allowFail, `${op.comment} may fail silently`);
}

async function roundTrip(modes: string[], checks: readonly string[] = []): Promise<void> {
  const { t, trigger } = await startTriggered("rt_memflags", MEMFLAGS_READY, { extra: modes });
  const { dump, dir } = await dumpKillRestore(t);
  assert.ok(dump.stats.processes === 1);
  await assertFlagOpsMustSucceed(`${dir}/${t.pid}.elf`);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, [...MEMFLAGS_CHECKS, ...checks], await t.wait(15000), {
    what: `rt_memflags ${modes.join(" ")}`,
  });
}

Deno.test(
  "mlock, madvise flags, mprotect splits, growsdown and guard regions come back exactly",
  withTargets(() => roundTrip([])),
);

Deno.test(
  "mlockall(MCL_FUTURE), PR_SET_THP_DISABLE and PR_SET_MEMORY_MERGE come back",
  withTargets(() => roundTrip(["future", "nothp", "ksm"])),
);

Deno.test(
  "mlockall(MCL_FUTURE|MCL_ONFAULT) comes back",
  withTargets(() => roundTrip(["future-onfault"])),
);

Deno.test(
  "areas asking for huge pages and for none, beside a plain page, come back with their contents and pages as they were",
  withTargets(() => roundTrip(["huge"], ["huge-pages"])),
);

Deno.test(
  "a sealed mapping comes back sealed (mseal, by the engine after the program)",
  withTargets(() => roundTrip(["sealed"])),
);

Deno.test(
  "a mapping with a memory protection key is refused by name, other odd flags beside it too",
  () => {
    // This machine's CPU has no PKU (no process can hold a key), so the refusal is tested on
    // this process's own areas, one given the code both VmFlags readers put for a key.
    const areas = readSmapsFlags(Deno.pid).filter((a) => a.path === "" && a.perms[1] === "w");
    assert.ok(areas.length >= 2, "two writable anonymous areas");
    const mapping = (a: SmapsArea, vmFlags: string[]): Mapping => ({
      start: `0x${a.start.toString(16)}`,
      end: `0x${a.end.toString(16)}`,
      perms: a.perms,
      offset: "0x0",
      kind: "anon",
      name: "",
      vmFlags,
      pages: [],
    });
    const refusals = new Refusals();
    collectMemoryDetails(
      Deno.pid,
      [
        mapping(areas[0], [...areas[0].vmFlags, PKEY_CODE]),
        mapping(areas[1], [...areas[1].vmFlags, PKEY_CODE, "ss"]),
      ],
      undefined,
      refusals,
    );
    const problems = refusals.problems;
    assert.equal(problems.length, 3, problems.join("\n"));
    assert.match(problems[0], /mapping 0x[0-9a-f]+-0x[0-9a-f]+ \(anonymous\): .*protection key/);
    assert.match(problems[1], /protection key \(pkey_mprotect\) is not re-created/);
    assert.match(problems[2], /VmFlags ss not re-created/);
    const plain = new Refusals();
    collectMemoryDetails(Deno.pid, [mapping(areas[0], areas[0].vmFlags)], undefined, plain);
    assert.deepEqual(plain.problems, []);
  },
);
