/**
 * Where a process lives: a process moved into another cgroup comes back in
 * it, and a thread in another cgroup than its process (v1) in its own; the
 * root of a cgroup v1 hierarchy gone since the dump is nothing to restore; a
 * process in namespaces other than cryo's, or that unshared a pid or time
 * namespace for its children to come, is refused by name.
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
import { signalThenPass } from "./helpers/checks.ts";

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

for (const mode of ["", "bpf"]) {
  Deno.test(
    `placement: a thread in another v1 cgroup than its process is restored into it${
      mode ? ` (threads read by the ${mode} task iterator: css_set pointers compared)` : ""
    }`,
    withTargets(async () => {
      if (mode) Deno.env.set("CRYO_THREADSTATE", mode);
      // A v1 named hierarchy of its own (no controller): threads are placed one by one there.
      // One fixed name: the kernel keeps such a hierarchy after its unmount (it shows in every
      // process's /proc/<pid>/cgroup), and mounting the name again reuses it.
      const name = "cryothr-test";
      const hier = Deno.makeTempDirSync({ prefix: "cryo-thread-cgroup-" });
      const mount = new Deno.Command("mount", {
        args: ["-t", "cgroup", "-o", `none,name=${name}`, "none", hier],
        stderr: "piped",
      }).outputSync();
      if (!mount.success) {
        Deno.removeSync(hier);
        console.log(`skipped: no v1 cgroup mount here (${new TextDecoder().decode(mount.stderr)})`);
        return;
      }
      let t: Awaited<ReturnType<typeof startTarget>> | undefined;
      try {
        Deno.mkdirSync(`${hier}/sub`, { recursive: true }); // left by a killed run, maybe
        t = await startTarget("rt_thread_cgroup", [hier, name]);
        await t.waitFor(/^ready pid=\d+$/m);
        await dumpKillRestore(t);
        await signalThenPass(t);
      } finally {
        await t?.kill();
        for (let i = 0; i < 300; i++) { // an exiting task keeps the cgroup busy
          try {
            Deno.removeSync(`${hier}/sub`);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        new Deno.Command("umount", { args: [hier] }).outputSync();
        Deno.removeSync(hier);
        if (mode) Deno.env.delete("CRYO_THREADSTATE");
      }
    }),
  );
}

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

for (const kind of ["pid", "time"]) {
  Deno.test(
    `placement: a process that unshared a ${kind} namespace for its children is refused by name and runs on`,
    withTargets(async () => {
      const t = await startTarget("rt_nschildren", [kind]);
      await t.waitFor(/^ready pid=(\d+)$/m);
      const dir = await tempImageDir();
      await assert.rejects(
        () => checkpoint(t.pid, { dir }),
        (e: unknown) =>
          e instanceof UnsupportedError &&
          new RegExp(`its children's ${kind} namespace`).test(e.message),
      );
      assert.equal(pathExists(dir), false, "no image");
      assert.equal(t.poll(), undefined, "still running");
    }),
  );
}
