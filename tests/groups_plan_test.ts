/**
 * The plan of sessions and groups (engine/task/groups.ts) on made-up trees:
 * which placeholders a restore forks, and by whom; what is refused. The
 * round trips of the same cases on real processes are in
 * tests/restore_treeprobe_test.ts.
 */

import assert from "node:assert/strict";
import type { ProcessImage } from "../engine/model.ts";
import { Refusals } from "../engine/support.ts";
import { checkGroupsAndSessions, placeholderPids, placeholdersOf } from "../engine/task/groups.ts";

/** A process image with only what the plan reads. */
function proc(
  pid: number,
  ppid: number,
  sid: number,
  pgid: number,
  more: Partial<ProcessImage> = {},
): ProcessImage {
  return { pid, ppid, sid, pgid, ...more } as ProcessImage;
}

function problems(images: ProcessImage[]): readonly string[] {
  const r = new Refusals();
  checkGroupsAndSessions(images, r);
  return r.problems;
}

Deno.test("groups plan: a group whose leader is gone gets a placeholder forked by the first member's parent", () => {
  // Root 100 (outside session 1, group 1); 101 leads its group; 102 and 103 are in group 150 (gone).
  const tree = [
    proc(100, 1, 1, 1),
    proc(101, 100, 1, 101),
    proc(102, 101, 1, 150),
    proc(103, 101, 1, 150),
  ];
  assert.deepEqual(problems(tree), []);
  assert.deepEqual(placeholderPids(tree), [{ pid: 150, host: 101 }]);
  const byPid = new Map(tree.map((p) => [p.pid, p]));
  assert.deepEqual(placeholdersOf(101, byPid), [{ pid: 150, session: false, members: [] }]);
  assert.deepEqual(placeholdersOf(100, byPid), []);
});

Deno.test("groups plan: a session whose leader is gone is made by a placeholder that clones its members", () => {
  // 100 leads session 100; 102 and 103 (children of 100) are in session and group 150 (gone);
  // 104, a child of 102, inherits it.
  const tree = [
    proc(100, 1, 100, 100),
    proc(102, 100, 150, 150),
    proc(103, 100, 150, 150),
    proc(104, 102, 150, 150),
  ];
  assert.deepEqual(problems(tree), []);
  const byPid = new Map(tree.map((p) => [p.pid, p]));
  assert.deepEqual(placeholdersOf(100, byPid), [{ pid: 150, session: true, members: [102, 103] }]);
});

Deno.test("groups plan: what no placeholder can make is refused by name", () => {
  // A parent that called setsid after the fork: its child is in the root's session (outside).
  assert.match(
    problems([proc(100, 1, 1, 1), proc(101, 100, 101, 101), proc(102, 101, 1, 1)]).join("\n"),
    /^process 102: processes in a session other than their parent's .*: it is in session 1, its parent 101 in session 101 \(the leader 1 is not in the tree\)$/,
  );
  // Members of one gone session with different parents: the second cannot be cloned into it.
  const split = problems([
    proc(100, 1, 100, 100),
    proc(101, 100, 101, 101),
    proc(102, 100, 150, 150),
    proc(103, 101, 150, 150),
  ]);
  assert.equal(split.length, 1, split.join("\n"));
  assert.match(split[0], /^process 103: .*it is in session 150, its parent 101 in session 101/);
  // A group whose leader is a zombie of the tree is joined: no placeholder, nothing refused.
  const zombie = [
    proc(100, 1, 1, 1, { zombies: [{ pid: 101, pgid: 101, sid: 1 } as never] }),
    proc(102, 100, 1, 101),
  ];
  assert.deepEqual(problems(zombie), []);
  assert.deepEqual(placeholderPids(zombie), []);
});
