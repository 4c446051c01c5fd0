/**
 * The opt-ins (CRIU's names: --ext-unix-sk, --tcp-established,
 * --shell-job): each has its row in the restorability table and its flag
 * on `cryo dump` and `cryo restore`; a use is refused without the opt-in
 * and recorded in the manifest with it; a restore of an image that needed
 * an opt-in the command line lacks is refused with a line naming it.
 * (The --ext-unix-sk round trip itself is in restore_unix_test.ts.)
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { Refusals, SUPPORT_TABLE, type SupportRow } from "../engine/support.ts";
import { OPT_IN_FLAGS, optInsOf } from "../cli/dump.ts";
import { runCli } from "./helpers/commands.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

Deno.test("opt-ins: every flag has a table row and every opt-in row has a flag", () => {
  const rows = (SUPPORT_TABLE as readonly SupportRow[]).filter((r) => r.support === "opt-in");
  assert.deepEqual(rows.map((r) => r.optIn).sort(), [...OPT_IN_FLAGS].sort());
  for (const id of ["socket.unix-external", "socket.tcp-established", "tty.external"]) {
    assert.ok(rows.some((r) => r.id === id), `row ${id}`);
  }
});

Deno.test("opt-ins: a use is refused naming the flag without it, allowed and recorded with it", () => {
  const without = new Refusals();
  assert.equal(without.use("socket.tcp-established", "process 1 fd 3"), false);
  assert.equal(without.use("tty.external", "process 1"), false);
  assert.match(without.problems[0], /^process 1 fd 3: needs --tcp-established/);
  assert.match(without.problems[1], /^process 1: needs --shell-job/);
  const given = new Refusals(["tcp-established", "shell-job", "ext-unix-sk"]);
  assert.equal(given.use("socket.tcp-established", "process 1 fd 3"), true);
  assert.equal(given.use("tty.external", "process 1"), true);
  assert.deepEqual(given.problems, []);
  assert.deepEqual(given.usedOptIns, ["shell-job", "tcp-established"], "only those used");
});

Deno.test("opt-ins: the CLI flags become engine opt-ins", () => {
  assert.deepEqual(optInsOf({ extUnixSk: true, tcpEstablished: true, shellJob: true }), [
    "ext-unix-sk",
    "tcp-established",
    "shell-job",
  ]);
  assert.deepEqual(optInsOf({ json: true }), []);
});

Deno.test("opt-ins: dump and restore --help list the three flags", async () => {
  for (const cmd of ["dump", "restore"]) {
    const r = await runCli([cmd, "--help"]);
    assert.equal(r.code, 0, r.stderr);
    for (const flag of OPT_IN_FLAGS) assert.match(r.stdout, new RegExp(`--${flag}\\b`), cmd);
  }
});

Deno.test(
  "opt-ins: an image that needed opt-ins is refused without them, naming each, and restored with them",
  withTargets(async () => {
    const t = await startTarget("sleeper", ["30"]);
    await t.waitFor(/^ready pid=(\d+)/m);
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir });
    assert.equal(dump.manifest.optIns, undefined, "nothing needed an opt-in");
    await t.wait();
    // As if the tree had used them (the TCP and terminal kinds record these).
    const path = `${dir}/manifest.json`;
    const manifest = JSON.parse(await Deno.readTextFile(path));
    manifest.optIns = ["shell-job", "tcp-established"];
    await Deno.writeTextFile(path, JSON.stringify(manifest));
    await assert.rejects(restore(dir, { optIns: ["tcp-established"] }), (e: unknown) => {
      assert.ok(e instanceof RestoreError, `${e}`);
      assert.match((e as Error).message, /the image needs --shell-job \(its dump needed it\)/);
      return true;
    });
    await assert.rejects(
      restore(dir),
      /the image needs --shell-job, --tcp-established \(its dump needed them\)/,
    );
    const tree = await restore(dir, { optIns: ["shell-job", "tcp-established"] });
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    t.signal(9);
  }),
);
