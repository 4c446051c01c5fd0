/**
 * Which fd tables and fs info shared by processes the dump restores
 * (engine/task/shared_tables.ts): a child sharing its parent's joins it, at
 * any depth; sharing that skips a process between, and fs info with a
 * root other than /, are refused by name. (The round trips of real trees:
 * tests/restore_fdshare_test.ts, rt_files_shared.c.)
 */

import assert from "node:assert/strict";
import type { FdInfo, ProcessImage } from "../engine/model.ts";
import { Refusals } from "../engine/support.ts";
import { planSharedTables } from "../engine/task/shared_tables.ts";

/** A process image with only what the planner reads. */
function proc(pid: number, ppid: number, root = "/"): ProcessImage {
  return { pid, ppid, root, fds: [{ fd: 3 } as FdInfo] } as unknown as ProcessImage;
}

/** Compares by groups of pids sharing one table. */
function groups(...sets: number[][]) {
  return (a: number, b: number) => sets.some((s) => s.includes(a) && s.includes(b));
}

Deno.test("a child and grandchild in the root's fd table join it; their fds are the root's", () => {
  const images = [proc(1, 0), proc(2, 1), proc(3, 2), proc(4, 2)];
  const refusals = new Refusals();
  planSharedTables(images, refusals, { files: groups([1, 2, 3]), fs: groups() });
  assert.deepEqual(refusals.problems, []);
  assert.deepEqual(images.map((p) => p.sharesParentFiles ?? false), [false, true, true, false]);
  assert.deepEqual(images.map((p) => p.fds.length), [1, 0, 0, 1]);
  assert.equal(images.some((p) => p.sharesParentFs), false);
});

Deno.test("an fd table shared past a process with its own is refused by name", () => {
  const images = [proc(1, 0), proc(2, 1), proc(3, 2)];
  const refusals = new Refusals();
  planSharedTables(images, refusals, { files: groups([1, 3]), fs: groups() });
  assert.equal(refusals.problems.length, 1);
  assert.match(
    refusals.problems[0],
    /^processes 1 and 3 share one fd table: .*not through a parent$/,
  );
});

Deno.test("fs info shared with a child joins; with a root other than / it is refused", () => {
  const plain = [proc(1, 0), proc(2, 1)];
  const refusals = new Refusals();
  planSharedTables(plain, refusals, { files: groups(), fs: groups([1, 2]) });
  assert.deepEqual(refusals.problems, []);
  assert.equal(plain[1].sharesParentFs, true);
  assert.equal(plain[1].fds.length, 1, "its fd table is its own");

  const jailed = [proc(1, 0, "/jail"), proc(2, 1, "/jail")];
  const refused = new Refusals();
  planSharedTables(jailed, refused, { files: groups(), fs: groups([1, 2]) });
  assert.equal(refused.problems.length, 1, "once");
  assert.match(refused.problems[0], /processes 1 and 2 share cwd, root and umask: .*not \//);
});
