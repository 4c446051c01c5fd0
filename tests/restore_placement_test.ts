/**
 * Where a process lives: a process moved into another cgroup comes back in
 * it; the root of a cgroup v1 hierarchy gone since the dump is nothing to
 * restore; a process in namespaces other than cryo's is refused by name.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { RestoreError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import type { ProcessImage } from "../engine/model.ts";
import { checkCgroups, restoreCgroups } from "../engine/task/placement.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

/** A writable cgroup directory of its own: pids (v1) if mounted, else the v2 root. */
function makeCgroup(): string | null {
  for (const base of ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    if (!pathExists(`${base}/cgroup.procs`)) continue;
    const dir = `${base}/cryo-test-${crypto.randomUUID().slice(0, 8)}`;
    try {
      Deno.mkdirSync(dir);
      return dir;
    } catch { /* not writable here */ }
  }
  return null;
}

function cgroupLines(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/cgroup`).split("\n").filter((l) => l);
}

const cgroup = makeCgroup();

Deno.test({
  name: "placement: a process moved into another cgroup is restored into it",
  ignore: cgroup === null,
  fn: withTargets(async () => {
    const dir = cgroup!;
    let t: Awaited<ReturnType<typeof startTarget>> | undefined;
    try {
      t = await startTarget("/bin/sleep", ["30"]);
      Deno.writeTextFileSync(`${dir}/cgroup.procs`, `${t.pid}\n`);
      const before = cgroupLines(t.pid);
      assert.ok(before.some((l) => l.endsWith(dir.slice(dir.lastIndexOf("/")))), before.join(" "));
      await dumpKillRestore(t);
      assert.deepEqual(cgroupLines(t.pid), before);
    } finally {
      await t?.kill(); // the cgroup can go once empty
      for (let i = 0; i < 300; i++) { // an exiting task keeps the cgroup busy
        try {
          Deno.removeSync(dir);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }),
});

Deno.test(
  "placement: a restore into a cgroup that no longer exists is refused before anything runs",
  withTargets(async () => {
    const dir = makeCgroup();
    if (dir === null) return;
    const t = await startTarget("/bin/sleep", ["30"]);
    Deno.writeTextFileSync(`${dir}/cgroup.procs`, `${t.pid}\n`);
    const image = await tempImageDir();
    await checkpoint(t.pid, { dir: image });
    await t.wait();
    for (let i = 0; i < 300 && pathExists(dir); i++) {
      try {
        Deno.removeSync(dir);
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await assert.rejects(
      () => restore(image),
      (e: unknown) => e instanceof RestoreError && /cgroup .* does not exist/.test(String(e)),
    );
    assert.equal(pathExists(`/proc/${t.pid}`), false, "nothing was created");
  }),
);

Deno.test(
  "placement: the root of a cgroup hierarchy gone since the dump is passed over, not refused",
  withTargets(async () => {
    // A named v1 hierarchy another program had mounted while the tree was dumped, gone since:
    // the process was in its root, as every process is. (Not mounted here: it would show in
    // the cgroups of every process of the machine while it exists.)
    const t = await startTarget("/bin/sleep", ["30"]);
    const gone = `99:name=cryo-gone-${crypto.randomUUID().slice(0, 8)}:/`;
    const image = { pid: t.pid, cgroups: [...cgroupLines(t.pid), gone] } as ProcessImage;
    checkCgroups([image]);
    restoreCgroups(image);
    // Not its root, or a hierarchy that exists: still refused.
    const sub = { pid: t.pid, cgroups: [`99:name=cryo-gone-x:/sub`] } as ProcessImage;
    assert.throws(() => checkCgroups([sub]), /whose hierarchy is not mounted here/);
    assert.throws(() => restoreCgroups(sub), /cannot move it into cgroup/);
    await t.kill();
  }),
);

Deno.test(
  "placement: a process in its own namespace is refused by name and runs on",
  withTargets(async () => {
    const t = await startTarget("/usr/bin/unshare", ["--uts", "/bin/sleep", "30"]);
    await waitUntil(
      "unshare to exec sleep",
      () => Deno.readLinkSync(`/proc/${t.pid}/exe`).endsWith("sleep"),
      30000,
    );
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: unknown) => e instanceof UnsupportedError && /its uts namespace/.test(e.message),
    );
    assert.equal(pathExists(dir), false);
    assert.equal(t.poll(), undefined, "still running");
  }),
);
