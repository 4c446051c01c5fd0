/**
 * The dump's namespace check (engine/task/placement.ts `checkNamespaces`):
 * cryo's own namespace links are read once, not in each freeze, and a
 * process in another namespace is still refused by name.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkNamespaces, ownNamespaceStats } from "../engine/task/placement.ts";
import { Refusals } from "../engine/support.ts";

Deno.test("namespaces: cryo's own links are read once; another uts namespace is refused", async () => {
  const first = new Refusals();
  checkNamespaces(Deno.pid, first);
  const reads = ownNamespaceStats.reads;
  assert.ok(reads > 0, "cryo's own links read");
  assert.deepEqual(first.problems, [], "cryo's own namespaces are cryo's");
  // A process with a uts namespace of its own (unshare -u), checked after the first look.
  const child = new Deno.Command("unshare", {
    args: ["-u", "sleep", "30"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const pid = child.pid;
    // unshare execs sleep in the same process: wait until it is sleep.
    for (let i = 0; i < 200; i++) {
      if (Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep")) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const refusals = new Refusals();
    checkNamespaces(pid, refusals);
    assert.equal(ownNamespaceStats.reads, reads, "not read again");
    assert.equal(refusals.problems.length, 1, refusals.problems.join("\n"));
    assert.match(refusals.problems[0], /its uts namespace .* is not cryo's/);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});
