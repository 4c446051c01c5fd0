/**
 * Load: four `cryo dump` commands (each its own `deno run -A cli.ts`
 * process) on four independent trees at the same time, then four
 * `cryo restore --detach` at the same time. Every command must succeed
 * silently, every tree must come back with its own pids and tids, and every
 * process must pass its self-check (tests/targets/load_tree.c). This
 * exercises what the commands could share: temp and launcher file names,
 * ptrace events (each CLI traces only its own tree), pid allocation.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertCliOk, runCli } from "./helpers/commands.ts";
import { pathExists } from "./helpers/fs.ts";
import {
  assertLoadReports,
  assertSameTasks,
  type LoadTree,
  startLoadTree,
} from "./helpers/load.ts";
import { adoptPid, becomeSubreaper, withTargets } from "./helpers/targets.ts";

/** How many commands run at once. */
const N = 4;

Deno.test(
  "four cryo dumps, then four cryo restores, on four trees at once do not disturb each other",
  withTargets(async () => {
    becomeSubreaper(); // the detached restored roots come back to this process
    const trees: LoadTree[] = [];
    for (let i = 0; i < N; i++) trees.push(await startLoadTree(3, 4, 256));

    const dumps = await Promise.all(
      trees.map((tr) => runCli(["dump", String(tr.t.pid), "--dir", `${tr.work}/image`])),
    );
    dumps.forEach((r, i) => assertCliOk(r, `dump ${i}`));
    for (const [i, tr] of trees.entries()) {
      // Each image holds exactly its own tree: its processes and their threads.
      const manifest = JSON.parse(await Deno.readTextFile(`${tr.work}/image/manifest.json`));
      assert.equal(manifest.rootPid, tr.t.pid, `image ${i}: root`);
      const saved = new Map<number, number[]>(
        manifest.processes.map((p: { pid: number; threads: number[] }) => [p.pid, p.threads]),
      );
      assert.deepEqual(
        [...saved.keys()].sort(),
        [...tr.tids.keys()].sort(),
        `image ${i}: processes`,
      );
      for (const [pid, list] of tr.tids) {
        assert.deepEqual(
          [...saved.get(pid)!].sort(),
          [...list].sort(),
          `image ${i}: threads of ${pid}`,
        );
      }
    }
    for (const tr of trees) {
      await tr.t.wait(20000);
      tr.t.resetAfterRestore();
      for (const pid of tr.tids.keys()) {
        // The killed children were re-parented to this process (the subreaper): reap them.
        if (pid !== tr.t.pid) await adoptPid(pid).wait(20000);
        assert.ok(!pathExists(`/proc/${pid}`), `${pid} still exists after its dump`);
      }
    }

    const restores = await Promise.all(
      trees.map((tr) => runCli(["restore", `${tr.work}/image`, "--detach"])),
    );
    restores.forEach((r, i) => {
      assertCliOk(r, `restore ${i}`);
      assert.equal(r.stdout, `${trees[i].t.pid}\n`, `restore ${i}: root pid`);
    });
    for (const tr of trees) {
      for (const pid of tr.tids.keys()) if (pid !== tr.t.pid) adoptPid(pid);
      assertSameTasks(tr.tids, "after the restore");
    }

    for (const tr of trees) await Deno.writeTextFile(tr.trigger, "");
    for (const [i, tr] of trees.entries()) {
      assertChecksPassed(tr.t, ["children", "root"], await tr.t.wait(30000), {
        what: `tree ${i}`,
      });
      assertLoadReports(tr);
    }
  }),
);
