/**
 * The migration sender's work directory (engine/migrate/work_dir.ts): made
 * private with the sender's pid in its name; the ones left by senders that
 * no longer run, and only those that are the user's own, are removed by
 * the next sender.
 */

import assert from "node:assert/strict";
import { makeWorkDir, removeStaleWorkDirs } from "../engine/migrate/work_dir.ts";

/** A pid that existed and is gone (its process exited and was reaped). */
async function gonePid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("migrate work directories: only a gone sender's own directory is removed", async () => {
  const parent = Deno.makeTempDirSync({ prefix: "cryo-workdir-test-" });
  const live = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const gone = await gonePid();
    const names = {
      gone: `cryo-migrate-${gone}-a`,
      goneNotOurs: `cryo-migrate-${gone}-b`,
      live: `cryo-migrate-${live.pid}-c`,
      own: `cryo-migrate-${Deno.pid}-d`,
      other: `cryo-other-${gone}-e`,
    };
    for (const n of Object.values(names)) Deno.mkdirSync(`${parent}/${n}/r0`, { recursive: true });
    Deno.writeFileSync(`${parent}/${names.gone}/r0/pages`, new Uint8Array(4096));
    Deno.writeTextFileSync(`${parent}/cryo-migrate-${gone}-file`, "a file, not a directory");
    if (Deno.uid() === 0) Deno.chownSync(`${parent}/${names.goneNotOurs}`, 65534, 65534);
    const removed = removeStaleWorkDirs(parent).sort();
    assert.deepEqual(
      removed,
      [`${parent}/${names.gone}`].concat(
        Deno.uid() === 0 ? [] : [`${parent}/${names.goneNotOurs}`],
      ).sort(),
    );
    const left = [...Deno.readDirSync(parent)].map((e) => e.name).sort();
    const kept = [names.live, names.own, names.other, `cryo-migrate-${gone}-file`];
    if (Deno.uid() === 0) kept.push(names.goneNotOurs);
    assert.deepEqual(left, kept.sort());
  } finally {
    live.kill("SIGKILL");
    await live.status;
    Deno.removeSync(parent, { recursive: true });
  }
});

Deno.test("migrate work directories: made private, named by the sender's pid", async () => {
  const dir = await makeWorkDir();
  try {
    assert.match(dir.slice(dir.lastIndexOf("/") + 1), new RegExp(`^cryo-migrate-${Deno.pid}-`));
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
