/**
 * The per-thread status a dump reads once after the freeze
 * (engine/proc/status.ts readThreadStatuses): its Name line serves as the
 * thread's comm (statusComm undoes the kernel's escapes), and each thread
 * gets its own status, not the main thread's.
 */

import assert from "node:assert/strict";
import { readThreadStatuses, statusComm } from "../engine/proc/status.ts";
import { listTids } from "../engine/proc/tasks.ts";

/** This process's main thread comm, set to `name` while `fn` runs. */
function withOwnComm(name: string, fn: () => void): void {
  const path = `/proc/self/task/${Deno.pid}/comm`;
  const before = Deno.readTextFileSync(path).replace(/\n$/, "");
  Deno.writeTextFileSync(path, name);
  try {
    fn();
  } finally {
    Deno.writeTextFileSync(path, before);
  }
}

Deno.test("a thread's comm read from its status equals its comm file, escapes undone", () => {
  for (const name of ["plain", "a\\b", "x\\ny", "new\nline", "tab\tend ", "\\\\n\\"]) {
    withOwnComm(name, () => {
      const comm = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/comm`).replace(/\n$/, "");
      const st = readThreadStatuses(Deno.pid, [Deno.pid]).get(Deno.pid)!;
      assert.equal(statusComm(st), comm, `comm ${JSON.stringify(name)}`);
    });
  }
});

Deno.test("each thread's status is its own (Pid line, comm)", () => {
  const tids = listTids(Deno.pid);
  const statuses = readThreadStatuses(Deno.pid, tids);
  assert.equal(statuses.size, tids.length);
  for (const tid of tids) {
    const st = statuses.get(tid)!;
    assert.equal(st.pid, tid);
    assert.equal(st.tgid, Deno.pid);
    const comm = Deno.readTextFileSync(`/proc/self/task/${tid}/comm`).replace(/\n$/, "");
    assert.equal(statusComm(st), comm);
  }
});
