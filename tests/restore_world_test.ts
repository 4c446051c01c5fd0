/**
 * Restores after the world changed between dump and restore
 * (tests/targets/rt_world.c): a file an fd or a mapping holds was
 * modified, replaced, removed or retyped, a directory moved, a device node
 * swapped. Each restore must either bring back exactly the recorded state
 * (the target checks it) or refuse with one line naming what changed,
 * leaving the image intact and no process behind.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready (\d+)$/m;

/** What a restore after `change` did: refused (the message) or restored (the target's report). */
type Outcome = { refused: string } | { restored: string };

/** Starts rt_world in `mode`, dumps it (killed), runs `change(work)`, restores; the outcome. */
async function probe(
  mode: string,
  change: (work: string, dir: string) => Promise<void> | void,
): Promise<Outcome> {
  const { t, work, trigger } = await startTriggered("rt_world", READY, {
    passWork: true,
    extra: [mode],
  });
  const dir = await tempImageDir();
  await checkpoint(t.pid, { dir });
  await t.wait();
  await change(work, dir);
  const before = imageListing(dir);
  let tree;
  try {
    tree = await restore(dir);
  } catch (e) {
    if (!(e instanceof RestoreError)) throw e;
    assert.equal(Deno.readDirSync(`/proc`).some((p) => p.name === String(t.pid)), false);
    assert.deepEqual(imageListing(dir), before, "the image is left as it was");
    return { refused: e.message };
  }
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  await Deno.writeTextFile(trigger, "");
  await t.wait();
  return { restored: t.output().split("\n").filter((l) => / FAIL|^PASS|^FAIL/.test(l)).join("; ") };
}

/** Names and sizes of the image's files. */
function imageListing(dir: string): string {
  return [...Deno.readDirSync(dir)].map((e) =>
    `${e.name}:${Deno.statSync(`${dir}/${e.name}`).size}`
  )
    .sort().join(" ");
}

const run = (cmd: string, ...args: string[]) => {
  const r = new Deno.Command(cmd, { args }).outputSync();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
};

/** Every probed case: mode, what changes, and the change. */
const CASES: [string, string, (work: string, dir: string) => Promise<void> | void][] = [
  ["fd", "unchanged", () => {}],
  ["fd", "modified", (w) => Deno.writeFileSync(`${w}/f.bin`, new Uint8Array(8192).fill(65))],
  ["fd", "truncated", (w) => Deno.truncateSync(`${w}/f.bin`, 10)],
  ["fd", "extended", (w) => Deno.writeTextFileSync(`${w}/f.bin`, "more", { append: true })],
  ["fd", "replaced", (w) => {
    Deno.writeTextFileSync(`${w}/new`, "x");
    Deno.renameSync(`${w}/new`, `${w}/f.bin`);
  }],
  ["fd", "deleted", (w) => Deno.removeSync(`${w}/f.bin`)],
  ["fd", "chmod000", (w) => Deno.chmodSync(`${w}/f.bin`, 0)],
  ["fd", "now-dir", (w) => {
    Deno.removeSync(`${w}/f.bin`);
    Deno.mkdirSync(`${w}/f.bin`);
  }],
  ["fd", "parent-renamed", (w) => Deno.renameSync(w, `${w}.moved`)],
  ["private", "unchanged", () => {}],
  [
    "private",
    "modified",
    (w) => Deno.writeFileSync(`${w}/p.bin`, new Uint8Array(3 * 4096).fill(66)),
  ],
  ["private", "modified-same-mtime", (w) => {
    const m = Deno.statSync(`${w}/p.bin`).mtime!;
    Deno.writeFileSync(`${w}/p.bin`, new Uint8Array(3 * 4096).fill(66));
    Deno.utimeSync(`${w}/p.bin`, m, m);
  }],
  ["private", "replaced-same-size", (w) => {
    Deno.writeFileSync(`${w}/n`, new Uint8Array(3 * 4096).fill(66));
    Deno.renameSync(`${w}/n`, `${w}/p.bin`);
  }],
  ["private", "deleted", (w) => Deno.removeSync(`${w}/p.bin`)],
  ["shared", "unchanged", () => {}],
  ["shared", "modified", (w) => Deno.writeFileSync(`${w}/s.bin`, new Uint8Array(4096).fill(67))],
  ["shared", "truncated", (w) => Deno.truncateSync(`${w}/s.bin`, 0)],
  ["shared", "replaced", (w) => {
    Deno.writeFileSync(`${w}/n`, new Uint8Array(4096).fill(67));
    Deno.renameSync(`${w}/n`, `${w}/s.bin`);
  }],
  ["cwd", "unchanged", () => {}],
  ["cwd", "removed", (w) => Deno.removeSync(`${w}/d`)],
  ["cwd", "renamed", (w) => Deno.renameSync(`${w}/d`, `${w}/e`)],
  ["cwd", "replaced", (w) => {
    Deno.renameSync(`${w}/d`, `${w}/e`);
    Deno.mkdirSync(`${w}/d`);
  }],
  ["dirfd", "replaced", (w) => {
    Deno.renameSync(`${w}/d`, `${w}/e`);
    Deno.mkdirSync(`${w}/d`);
  }],
  ["dirfd", "now-file", (w) => {
    Deno.removeSync(`${w}/d`);
    Deno.writeTextFileSync(`${w}/d`, "x");
  }],
  ["dev", "unchanged", () => {}],
  ["dev", "other-device", (w) => {
    Deno.removeSync(`${w}/nul`);
    run("mknod", `${w}/nul`, "c", "1", "5");
  }],
  ["dev", "now-file", (w) => {
    Deno.removeSync(`${w}/nul`);
    Deno.writeTextFileSync(`${w}/nul`, "x");
  }],
  ["fifo", "unchanged", () => {}],
  ["fifo", "now-file", (w) => {
    Deno.removeSync(`${w}/fifo`);
    Deno.writeTextFileSync(`${w}/fifo`, "x");
  }],
  ["fifo", "other-fifo", (w) => {
    Deno.removeSync(`${w}/fifo`);
    run("mkfifo", `${w}/fifo`);
  }],
  ["fifo", "removed", (w) => Deno.removeSync(`${w}/fifo`)],
  ["unix", "unchanged", () => {}],
  ["unix", "path-removed", (w) => Deno.removeSync(`${w}/sock`)],
  ["unix", "path-now-file", (w) => {
    Deno.removeSync(`${w}/sock`);
    Deno.writeTextFileSync(`${w}/sock`, "x");
  }],
];

if (Deno.env.get("CRYO_WORLD_REPORT")) {
  Deno.test(
    "report: restore after the world changed",
    withTargets(async () => {
      const only = Deno.env.get("CRYO_WORLD_REPORT");
      for (const [mode, what, change] of CASES) {
        if (only !== "all" && !`${mode}/${what}`.includes(only!)) continue;
        let out: string;
        try {
          out = JSON.stringify(await probe(mode, change));
        } catch (e) {
          out = `ERROR ${e instanceof Error ? e.message : e}`;
        }
        console.log(`WORLD ${mode}/${what}: ${out}`);
      }
    }),
  );
}
