/**
 * Private pid namespaces (engine/pidns/):
 * - `cryo launch` starts a self-checking tree (tests/targets/rt_pidns.c) as
 *   pid 1 of its own pid namespace; it is dumped while it runs, and its image
 *   restored twice, side by side and beside the original: each copy gets
 *   fresh host pids and the same pids inside, and checks its own getpid()
 *   values, its parent and its memory;
 * - the CLI: launch --detach --pid-file, launch waiting for the command's
 *   status, dump and restore --detach printing host pids;
 * - `restore --new-pid-ns` of an ordinary tree whose pids are in use (the
 *   original runs): the same pids inside, under cryo's init, which exits
 *   with the root's status;
 * - refusals: a launched tree's child, a launched tree with a bind mount,
 *   exclusions; the trees run on untouched;
 * - a deleted file of a launched tree, handed to pid 1 of each copy;
 * - a damaged image: the restore fails with the engine's message, no process is left.
 * Every namespace is killed by the host pid of its init.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { launch } from "../engine/pidns/mod.ts";
import { killNamespace } from "./helpers/pidns.ts";
import { becomeSubreaper, buildTarget, startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { waitUntil } from "./helpers/wait.ts";
import { runCli } from "./helpers/commands.ts";

/** The NSpid levels of `pid`, host first. */
function nspid(pid: number): number[] {
  const line = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")
    .find((l) => l.startsWith("NSpid:"))!;
  return line.split(/\s+/).slice(1).filter((x) => x).map(Number);
}

function childrenOf(pid: number): number[] {
  return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
    .filter((x) => x).map(Number);
}

function nsInode(pid: number): string {
  return Deno.readLinkSync(`/proc/${pid}/ns/pid`).replace(/^pid:\[(\d+)\]$/, "$1");
}

Deno.test(
  "pidns: a launched tree restores twice beside the original, same pids inside",
  withTargets(async () => {
    becomeSubreaper();
    const bin = await buildTarget("rt_pidns");
    const work = await tempDir("cryo-pidns-");
    const out = `${work}/out`;
    const inits: number[] = [];
    try {
      const tree = launch("/bin/sh", ["-c", `exec ${bin} ${work} </dev/null >${out} 2>&1`]);
      inits.push(tree.pid);
      await waitUntil("ready", () => {
        try {
          return Deno.readTextFileSync(out).includes("ready");
        } catch {
          return false;
        }
      }, 60_000);
      assert.match(Deno.readTextFileSync(out), /ready pid=1 child=2/);
      assert.deepEqual(nspid(tree.pid).slice(-1), [1]);

      const img = `${work}/img`;
      const dumped = await checkpoint(tree.pid, { dir: img, leaveRunning: true, sync: false });
      assert.equal(dumped.manifest.pidNamespace, "own");
      assert.equal(dumped.manifest.rootPid, 1);
      assert.deepEqual(dumped.manifest.processes.map((p) => p.pid), [1, 2]);

      const copies = [];
      for (let i = 0; i < 2; i++) {
        const r = await restore(img, { verifyChecksums: true });
        inits.push(r.rootPid);
        copies.push(r);
        assert.deepEqual(r.pids, [1, 2]);
      }
      const hosts = inits.map((p) => nspid(p));
      assert.equal(new Set(inits).size, 3, `host pids ${inits}`);
      for (const [i, init] of inits.entries()) {
        assert.equal(hosts[i].at(-1), 1, `init ${init} is pid 1 inside`);
        const kids = childrenOf(init);
        assert.equal(kids.length, 1, `init ${init} has one child`);
        assert.equal(nspid(kids[0]).at(-1), 2, `child of ${init} is pid 2 inside`);
      }
      const inodes = inits.map(nsInode);
      assert.equal(new Set(inodes).size, 3, "three pid namespaces");
      Deno.writeTextFileSync(`${work}/go`, "");
      for (const [i, init] of inits.entries()) {
        for (const role of ["parent", "child"]) {
          const file = `${work}/report.${inodes[i]}.${role}`;
          await waitUntil(`${file}`, () => {
            try {
              return /^(PASS|FAIL)$/m.test(Deno.readTextFileSync(file));
            } catch {
              return false;
            }
          }, 60_000);
          const text = Deno.readTextFileSync(file);
          assert.match(text, /^PASS$/m, `${role} of ${init}:\n${text}`);
        }
      }
      for (const c of copies) assert.deepEqual(await c.exited, { code: 0 });
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "pidns: cryo launch --detach --pid-file prints the host pid of pid 1",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-pidns-cli-");
    const r = await runCli([
      "launch",
      "--detach",
      "--pid-file",
      `${work}/pid`,
      "--",
      "/bin/sh",
      "-c",
      "exec sleep 60 </dev/null >/dev/null 2>&1",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const waited = await runCli(["launch", "--", "/bin/sh", "-c", "exit 7"]);
    assert.equal(waited.code, 7, "launch exits with the command's status");
    const pid = Number(Deno.readTextFileSync(`${work}/pid`).trim());
    let restored = 0;
    try {
      assert.equal(Number(r.stdout.trim()), pid);
      assert.equal(nspid(pid).at(-1), 1);
      assert.notEqual(
        Deno.readLinkSync(`/proc/${pid}/ns/mnt`),
        Deno.readLinkSync("/proc/self/ns/mnt"),
      );
      // cryo dump (which kills it) and cryo restore --detach print host pids.
      const d = await runCli(["dump", String(pid), "--dir", `${work}/img`, "--no-sync"]);
      assert.equal(d.code, 0, d.stderr);
      const r2 = await runCli(["restore", `${work}/img`, "--detach"]);
      assert.equal(r2.code, 0, r2.stderr);
      restored = Number(r2.stdout.trim());
      assert.notEqual(restored, pid);
      assert.equal(nspid(restored).at(-1), 1);
      assert.match(Deno.readTextFileSync(`/proc/${restored}/cmdline`), /^sleep\0/);
    } finally {
      killNamespace(pid);
      if (restored) killNamespace(restored);
    }
  }),
);

Deno.test(
  "pidns: restore --new-pid-ns of an ordinary tree whose pids are taken (the original runs)",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-pidns-new-");
    const t = await startTarget("rt_pidns", [work]);
    await waitUntil("ready", () => t.output().includes("ready"), 60_000);
    const [, parent, child] = t.output().match(/ready pid=(\d+) child=(\d+)/)!.map(Number);
    assert.equal(parent, t.pid);
    const img = `${work}/img`;
    const dumped = await checkpoint(t.pid, { dir: img, leaveRunning: true, sync: false });
    assert.equal(dumped.manifest.pidNamespace, undefined);
    const r = await restore(img, { newPidNs: true });
    let init: number | undefined;
    try {
      assert.notEqual(r.rootPid, t.pid);
      assert.deepEqual(nspid(r.rootPid).slice(-1), [parent]);
      init = Number(Deno.readTextFileSync(`/proc/${r.rootPid}/stat`).split(") ")[1].split(" ")[1]);
      assert.deepEqual(nspid(init).slice(-1), [1], "the root's parent is the namespace's init");
      const kids = childrenOf(r.rootPid);
      assert.deepEqual(kids.map((k) => nspid(k).at(-1)), [child]);
      const inodes = [nsInode(r.rootPid), nsInode(t.pid)];
      assert.notEqual(inodes[0], inodes[1]);
      Deno.writeTextFileSync(`${work}/go`, "");
      for (const inode of inodes) {
        for (const who of ["parent", "child"]) {
          const file = `${work}/report.${inode}.${who}`;
          await waitUntil(file, () => {
            try {
              return /^(PASS|FAIL)$/m.test(Deno.readTextFileSync(file));
            } catch {
              return false;
            }
          }, 60_000);
          assert.match(Deno.readTextFileSync(file), /^PASS$/m, Deno.readTextFileSync(file));
        }
      }
      assert.deepEqual(await r.exited, { code: 0 }, "the init exits with the root's status");
      init = undefined;
    } finally {
      if (init !== undefined) killNamespace(init);
    }
  }),
);

Deno.test(
  "pidns: what is not a launched tree's root stays refused by name (its child; an extra mount)",
  withTargets(async () => {
    becomeSubreaper();
    const bin = await buildTarget("rt_pidns");
    const work = await tempDir("cryo-pidns-refuse-");
    const inits: number[] = [];
    try {
      // The child (pid 2 inside) of a launched tree: in another pid namespace than cryo's, not its root.
      const out = `${work}/out`;
      const tree = launch("/bin/sh", ["-c", `exec ${bin} ${work} </dev/null >${out} 2>&1`]);
      inits.push(tree.pid);
      await waitUntil("ready", () => {
        try {
          return Deno.readTextFileSync(out).includes("ready");
        } catch {
          return false;
        }
      }, 60_000);
      const child = childrenOf(tree.pid)[0];
      await assert.rejects(
        checkpoint(child, { dir: `${work}/img1`, sync: false }),
        /pid namespace .* is not cryo's/,
      );
      // Exclusions are predicates of this process: not passed to the engine inside.
      await assert.rejects(
        checkpoint(tree.pid, { dir: `${work}/img0`, sync: false, include: { fd: () => true } }),
        /exclusions are not supported for a tree in its own pid namespace/,
      );
      // A launched tree whose mount namespace has more than its /proc and tmpfs mounts.
      const mnt = await Deno.makeTempDir({ prefix: "cryo-pidns-mnt-" });
      const out2 = `${work}/out2`;
      const other = launch("/bin/sh", [
        "-c",
        `mount --bind ${work} ${mnt} && exec ${bin} ${work}/b </dev/null >${out2} 2>&1`,
      ]);
      inits.push(other.pid);
      await waitUntil("ready 2", () => {
        try {
          return Deno.readTextFileSync(out2).includes("ready");
        } catch {
          return false;
        }
      }, 60_000);
      await assert.rejects(
        checkpoint(other.pid, { dir: `${work}/img2`, sync: false }),
        /other mounts in a launched tree's mount namespace/,
      );
      // Both trees run on untouched.
      for (const p of [tree.pid, child, other.pid]) {
        const state = Deno.readTextFileSync(`/proc/${p}/stat`).split(") ")[1][0];
        assert.match(state, /[SR]/, `process ${p} runs`);
        assert.equal(
          Deno.readTextFileSync(`/proc/${p}/status`).match(/TracerPid:\s+(\d+)/)![1],
          "0",
        );
      }
      await Deno.remove(mnt).catch(() => {});
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "pidns: a launched tree's deleted file comes back in each restored copy (fds handed to pid 1)",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-pidns-ghost-");
    const file = `${work}/gone`;
    const tree = launch("/bin/sh", [
      "-c",
      `exec 5<>${file}; printf hello >&5; rm ${file}; exec sleep 60 </dev/null >/dev/null 2>&1`,
    ]);
    const inits = [tree.pid];
    try {
      await waitUntil("sleep", () => {
        try {
          return Deno.readTextFileSync(`/proc/${tree.pid}/cmdline`).startsWith("sleep") &&
            Deno.readLinkSync(`/proc/${tree.pid}/fd/5`).endsWith("(deleted)");
        } catch {
          return false;
        }
      }, 60_000);
      const img = `${work}/img`;
      const dumped = await checkpoint(tree.pid, { dir: img, sync: false });
      assert.equal(dumped.manifest.ghosts?.length, 1);
      for (let i = 0; i < 2; i++) {
        const r = await restore(img);
        inits.push(r.rootPid);
        assert.match(Deno.readLinkSync(`/proc/${r.rootPid}/fd/5`), /gone \(deleted\)$/);
        assert.equal(Deno.readTextFileSync(`/proc/${r.rootPid}/fd/5`), "hello");
        assert.deepEqual(
          [...Deno.readDirSync(`/proc/${r.rootPid}/fd`)].map((e) => Number(e.name)).sort(),
          [0, 1, 2, 5],
          "no fd of the engine or the namespace maker left",
        );
      }
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "pidns: a failed restore into a namespace says why and leaves no process",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-pidns-fail-");
    const tree = launch("/bin/sh", ["-c", "exec sleep 60 </dev/null >/dev/null 2>&1"]);
    try {
      await waitUntil("sleep", () => {
        try {
          return Deno.readTextFileSync(`/proc/${tree.pid}/cmdline`).startsWith("sleep");
        } catch {
          return false;
        }
      }, 60_000);
      const img = `${work}/img`;
      const dumped = await checkpoint(tree.pid, { dir: img, sync: false });
      const file = `${img}/${dumped.manifest.processes[0].file}`;
      const bytes = Deno.readFileSync(file);
      bytes[bytes.length - 100] ^= 0xff; // damage the image's last part
      Deno.writeFileSync(file, bytes);
      const before = childrenOf(Deno.pid).length;
      await assert.rejects(restore(img), /checksum|differs/);
      assert.equal(childrenOf(Deno.pid).length, before, "no process left");
    } finally {
      killNamespace(tree.pid);
    }
  }),
);
