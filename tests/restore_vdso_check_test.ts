/**
 * The restore's vdso check (engine/restore/checks.ts `checkVdso`) with
 * cryo's own vdso facts started before the plan (`startOwnVdso`): the same
 * refusals as when read in the check itself (another layout, another
 * hash), the same pass for this host's own facts; and those facts
 * remembered for the boot (engine/proc/vm_flags_memo.ts), used only while
 * the memo is to be trusted.
 */

import assert from "node:assert/strict";
import { checkVdso, startOwnVdso } from "../engine/restore/checks.ts";
import { vdsoFacts } from "../engine/vdso.ts";
import { recallOwnVdso, rememberOwnVdso } from "../engine/proc/vm_flags_memo.ts";
import { RestoreError } from "../engine/errors.ts";
import type { Manifest } from "../engine/model.ts";

function manifest(vdso: { name: string; size: number }[], vdsoSha256: string): Manifest {
  return { host: { vdso, vdsoSha256, kernelRelease: "test" } } as unknown as Manifest;
}

Deno.test("vdso check: started early or read in the check, the same verdicts", async () => {
  const own = await vdsoFacts(Deno.pid);
  assert.ok(own.layout.some((v) => v.name === "[vdso]"));
  for (const started of [() => startOwnVdso(), () => undefined]) {
    await checkVdso(manifest(own.layout, own.sha256), started());
    const other = own.layout.map((v) => ({ ...v, size: v.size + 4096 }));
    await assert.rejects(
      () => checkVdso(manifest(other, own.sha256), started()),
      (e: unknown) => e instanceof RestoreError && e.message.includes("vdso layout"),
    );
    await assert.rejects(
      () => checkVdso(manifest(own.layout, "00".repeat(32)), started()),
      (e: unknown) => e instanceof RestoreError && e.message.includes("vdso differs"),
    );
  }
});

Deno.test("vdso check: facts started and never awaited leave nothing pending", async () => {
  startOwnVdso();
  await new Promise((r) => setTimeout(r, 50));
});

Deno.test("vdso check: cryo's own facts remembered for the boot, used while they are to be trusted", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "cryo-vdso-memo-" });
  const before = Deno.env.get("CRYO_CACHE_DIR");
  Deno.env.set("CRYO_CACHE_DIR", dir);
  try {
    const own = await vdsoFacts(Deno.pid);
    assert.equal(recallOwnVdso(), undefined, "nothing remembered in a fresh cache");
    // Read and hashed the first time, then remembered.
    assert.deepEqual(await startOwnVdso(), own);
    assert.deepEqual(recallOwnVdso(), own);
    // Remembered facts are what the next restore checks against: a memo that says otherwise
    // shows whether it was taken (and the check's verdict follows it).
    const other = { layout: own.layout, sha256: "ab".repeat(32) };
    rememberOwnVdso(other);
    assert.deepEqual(await startOwnVdso(), other);
    await assert.rejects(
      () => checkVdso(manifest(own.layout, own.sha256), startOwnVdso()),
      (e: unknown) => e instanceof RestoreError && e.message.includes("vdso differs"),
    );
    // Not trusted (writable by others), another boot's, or malformed: read again.
    const path = `${dir}/vmflags/${
      Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim()
    }.json`;
    Deno.chmodSync(path, 0o666);
    assert.equal(recallOwnVdso(), undefined);
    assert.deepEqual(await startOwnVdso(), own);
    Deno.chmodSync(path, 0o600);
    rememberOwnVdso(other);
    const text = Deno.readTextFileSync(path);
    Deno.writeTextFileSync(path, text.replace(/"boot":"[^"]*"/, '"boot":"another"'));
    assert.equal(recallOwnVdso(), undefined);
    for (
      const bad of [{ layout: [{ name: "[heap]", size: 4096 }], sha256: "" }, {
        layout: own.layout,
        sha256: "xyz",
      }]
    ) {
      rememberOwnVdso(bad);
      assert.equal(recallOwnVdso(), undefined);
    }
    await checkVdso(manifest(own.layout, own.sha256), startOwnVdso());
  } finally {
    if (before === undefined) Deno.env.delete("CRYO_CACHE_DIR");
    else Deno.env.set("CRYO_CACHE_DIR", before);
    Deno.removeSync(dir, { recursive: true });
  }
});
