/**
 * The early start of a one-process restore (engine/restore/early_start.ts):
 * the root is launched and loads its memory before the compile and the
 * preflight. A restore through it brings back every area and page
 * (tests/targets/rt_anon_runs.c checks bounds, protections, VmFlags and
 * content itself); a plan that fails after the early start (the file of an
 * fd removed after the dump: the preflight refuses it) leaves no process,
 * the pid free and the image files unchanged, and a corrupted page is still
 * refused by the checksum pass before anything of the image runs.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import type { RestoreEvent } from "../engine/restore/session.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";

const ESRCH = 3;

/** Whether no task has the id `pid`. */
function pidFree(pid: number): boolean {
  return rawSyscall(SYS.kill, pid, 0) === -BigInt(ESRCH);
}

/** The bytes of every file of `dir`, by name. */
function filesOf(dir: string): Map<string, Uint8Array> {
  return new Map(
    [...Deno.readDirSync(dir)].map((e) => [e.name, Deno.readFileSync(`${dir}/${e.name}`)]),
  );
}

/** Pids of the processes whose executable is a file of `dir`. */
function runningFrom(dir: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${e.name}/exe`).startsWith(`${dir}/`)) out.push(Number(e.name));
    } catch { /* gone, or a kernel thread */ }
  }
  return out;
}

Deno.test(
  "early start: a one-process restore loads its memory early; every area and page comes back",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_anon_runs", /^ready pid=(\d+) areas=(\d+)$/m, {
      extra: ["200", "5"],
    });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir, leaveRunning: true, precopy: false });
    await t.kill();
    const events: RestoreEvent["type"][] = [];
    await restore(dir, { onEvent: (e) => events.push(e.type) });
    t.resetAfterRestore();
    assert.deepEqual(
      events.filter((e) => e !== "running"),
      ["launched", "exec", "memory-loaded", "program-done"],
    );
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["areas", "content"], await t.wait(30000), { what: "rt_anon_runs" });
  }),
);

Deno.test(
  "early start: a plan that fails after the early start leaves no process, the pid free, the image unchanged",
  withTargets(async () => {
    const work = await tempDir("cryo-early-work-");
    const t = await startTarget("kill_target", [work]);
    await t.waitFor(/^ready /m);
    const dir = `${await tempDir("cryo-early-")}/image`;
    await checkpoint(t.pid, { dir, precopy: false });
    await t.wait();
    const before = filesOf(dir);
    Deno.removeSync(`${work}/data`); // fd 3's file: the preflight refuses it, after the early start
    const events: RestoreEvent[] = [];
    await assert.rejects(
      restore(dir, { onEvent: (e) => events.push(e) }),
      new RegExp(`fd \\d+ of process ${t.pid} was ${work}/data, which is missing`),
    );
    assert.ok(
      events.some((e) => e.type === "exec" && e.pid === t.pid),
      `the root was started early: ${JSON.stringify(events)}`,
    );
    assert.ok(pidFree(t.pid), `pid ${t.pid} is free again`);
    assert.deepEqual(runningFrom(dir), [], "no process runs the image");
    assert.deepEqual(filesOf(dir), before, "the image files are unchanged");
  }),
);

Deno.test(
  "early start: a corrupted page is refused by the checksum pass; nothing is left",
  withTargets(async () => {
    const work = await tempDir("cryo-early-work-");
    const t = await startTarget("kill_target", [work]);
    await t.waitFor(/^ready /m);
    const dir = `${await tempDir("cryo-early-")}/image`;
    await checkpoint(t.pid, { dir, precopy: false });
    await t.wait();
    // One byte of the largest page run flipped: the shape checks cannot see it, the CRC does.
    const path = `${dir}/${t.pid}.elf`;
    const { process } = await readImageFile(path);
    const run = process.mappings.flatMap((m) => m.pages).sort((a, b) => b.length - a.length)[0];
    assert.ok(run, "the image has pages");
    const bytes = Deno.readFileSync(path);
    bytes[Number(run.fileOffset) + 100] ^= 0xff;
    Deno.writeFileSync(path, bytes);
    const events: RestoreEvent[] = [];
    await assert.rejects(restore(dir, { onEvent: (e) => events.push(e) }), /checksum/);
    assert.ok(events.some((e) => e.type === "memory-loaded"), JSON.stringify(events));
    assert.ok(!events.some((e) => e.type === "running"), "nothing ran");
    assert.ok(pidFree(t.pid), `pid ${t.pid} is free again`);
    assert.deepEqual(runningFrom(dir), [], "no process runs the image");
  }),
);
