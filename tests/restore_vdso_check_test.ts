/**
 * The restore's vdso check (engine/restore/checks.ts `checkVdso`) with
 * cryo's own vdso facts started before the plan (`startOwnVdso`): the same
 * refusals as when read in the check itself (another layout, another
 * hash), the same pass for this host's own facts.
 */

import assert from "node:assert/strict";
import { checkVdso, startOwnVdso } from "../engine/restore/checks.ts";
import { vdsoFacts } from "../engine/vdso.ts";
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
