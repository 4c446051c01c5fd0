/**
 * A policy with pre-copy (`preDump`, engine/policy/predump.ts) against
 * tests/targets/rt_precopy.c, which rewrites random pages of the first half
 * of its memory all the time: pre-dumps every 200 ms, a checkpoint every
 * 600 ms built on the latest pre-dump. Checked: checkpoints reuse the
 * pre-dumped pages, no fallback happens, retention keeps its count and no
 * scratch image is left, every stored image is self-contained (no parent,
 * no tracking), the target keeps no tracking fd once the policy stops and
 * checks itself, and the latest image restores with its memory exact. A
 * pre-dump chain lost under the runner gives a reported fallback to a plain
 * checkpoint, and pre-copy resumes after it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { definePolicy, type PolicyEvent, runPolicy } from "../mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readManifest } from "../engine/image/manifest.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { tempDir } from "./helpers/fs.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { adoptPid, becomeSubreaper, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

const READY = /^ready pid=(\d+) region=0x([0-9a-f]+) pages=(\d+)$/m;
const CHECKS = ["pages", "writes", "rewrite"];
const PAGE = 4096;

Deno.test("policy preDump: validated, the period in ms", () => {
  const good = { target: { pid: 5 }, dir: "/tmp/x" };
  assert.equal(definePolicy({ ...good, preDump: { every: "1.5s" } }).preDumpEveryMs, 1500);
  assert.equal(definePolicy(good).preDumpEveryMs, undefined);
  const cases: [unknown, RegExp][] = [
    [{ ...good, preDump: { every: "soon" } }, /preDump\.every: expected a duration/],
    [{ ...good, preDump: { evry: "1s" } }, /preDump\.evry: unknown field — did you mean "every"\?/],
    [{ ...good, preDump: "10s" }, /preDump: expected \{ every \}/],
  ];
  for (const [spec, re] of cases) assert.throws(() => definePolicy(spec as never), re);
});

/** The fds of `pid` with what they point at. */
function fdsOf(pid: number): string[] {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) =>
    `${e.name} ${Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)}`
  ).sort();
}

Deno.test(
  "policy preDump: checkpoints built on pre-dumps, stored self-contained, retention kept, no tracking left, latest restores exact",
  withTargets(async () => {
    becomeSubreaper();
    const { t, trigger, ready } = await startTriggered("rt_precopy", READY, { extra: ["16"] });
    const pages = Number(ready[3]);
    const before = fdsOf(t.pid);
    const dir = `${await tempDir("cryo-policy-predump-")}/ck`;
    const events: PolicyEvent[] = [];
    const run = runPolicy({
      target: { pid: t.pid },
      dir,
      every: "600ms",
      preDump: { every: "200ms" },
      keep: 2,
      onStop: "leave",
    }, { onEvent: (e) => events.push(e) });
    const of = <T extends PolicyEvent["type"]>(type: T) =>
      events.filter((e): e is Extract<PolicyEvent, { type: T }> => e.type === type);
    try {
      await waitUntil("4 checkpoints", () => of("checkpoint-done").length >= 4, 60000);
    } finally {
      await run.stop();
    }
    assert.deepEqual(of("checkpoint-failed"), []);
    assert.deepEqual(of("predump-fallback"), [], "no fallback to plain checkpoints");
    assert.ok(of("predump-done").length >= 2, `${of("predump-done").length} pre-dumps`);
    const half = (pages / 2) * PAGE;
    const reused = of("checkpoint-done").map((e) => e.checkpoint.stats.parentReusedBytes ?? 0);
    assert.ok(reused.some((b) => b >= half), `reused from pre-dumps: ${reused.join(" ")}`);

    // Retention kept its count; the scratch chain is gone; every image stands alone.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.equal(names.length, 3, names.join(" ")); // keep: 2, and `latest`
    assert.ok(names.includes("latest"), names.join(" "));
    for (const name of names.filter((n) => n !== "latest")) {
      const m = await readManifest(`${dir}/${name}`);
      assert.equal(m.parent, undefined, `${name} names a parent`);
      assert.equal(m.tracking, undefined, `${name} records tracking`);
    }

    // The target runs on without our tracking, and checks itself.
    assert.deepEqual(fdsOf(t.pid), before, "the same fds once the policy stopped");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "original after the policy" });

    // The latest image restores alone, memory exact.
    const tree = await restore(`${dir}/latest`);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, CHECKS, await t.wait(30000), { run: 2, what: "restored from latest" });
  }),
);

Deno.test(
  "policy preDump: a lost pre-dump chain falls back to a plain checkpoint, reported; pre-copy resumes after it",
  withTargets(async () => {
    becomeSubreaper();
    const { t, trigger } = await startTriggered("rt_precopy", READY, { extra: ["8"] });
    const before = fdsOf(t.pid);
    const dir = `${await tempDir("cryo-policy-predump-")}/ck`;
    const events: PolicyEvent[] = [];
    let sabotaged = false;
    const run = runPolicy({
      target: { pid: t.pid },
      dir,
      every: "600ms",
      preDump: { every: "150ms" },
      keep: 2,
      onStop: "leave",
    }, {
      onEvent: (e) => {
        events.push(e);
        if (e.type === "predump-done" && !sabotaged) {
          // The chain's images vanish under the runner: what builds on them must fail.
          sabotaged = true;
          for (const s of Deno.readDirSync(dir)) {
            if (s.name.startsWith(".predump-")) {
              Deno.removeSync(`${dir}/${s.name}`, { recursive: true });
            }
          }
        }
      },
    });
    const after = (type: PolicyEvent["type"]) => {
      const i = events.findIndex((e) => e.type === "predump-fallback");
      return i < 0 ? [] : events.slice(i).filter((e) => e.type === type);
    };
    try {
      await waitUntil(
        "2 checkpoints and a pre-dump after the fallback",
        () => after("checkpoint-done").length >= 2 && after("predump-done").length >= 1,
        60000,
      );
    } finally {
      await run.stop();
    }
    const fallback = events.find((e) => e.type === "predump-fallback");
    assert.ok(fallback && "error" in fallback && fallback.error, "the fallback says why");
    assert.deepEqual(events.filter((e) => e.type === "checkpoint-failed"), []);
    for (const name of [...Deno.readDirSync(dir)].map((e) => e.name)) {
      assert.ok(!name.startsWith(".predump-"), `scratch left: ${name}`);
      if (name === "latest") continue;
      assert.equal((await readManifest(`${dir}/${name}`)).parent, undefined, name);
    }
    assert.deepEqual(fdsOf(t.pid), before, "the same fds once the policy stopped");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "original after the policy" });
  }),
);
