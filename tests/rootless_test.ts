/**
 * Rootless use (engine/pidns/userns.ts), run as the real unprivileged user
 * 65534 (nobody, through setpriv without capabilities, with its own
 * DENO_DIR):
 * - `cryo launch --hostname --ipc` of a self-checking tree
 *   (tests/targets/rt_pidns.c) in a user namespace of its own, `cryo dump` of it, kill, `cryo restore`: the
 *   copy runs as the user's uid with the recorded pids inside, its host
 *   name, and checks its pids, its parent and its memory;
 * - what the user namespace cannot reach (SysV shm of the host's IPC
 *   namespace, TCP repair, map_files of a memfd, shared anonymous memory
 *   another process wrote) is refused by name at
 *   dump and the tree runs on, as is an image directory in a parent the
 *   user may not write; a restore into a cgroup the user cannot
 *   write is refused in pre-flight; `cryo check` names the user's mode;
 * - the same user cannot read an image root made (0700 directory), nor
 *   restore an image recording other credentials (made readable to it
 *   on purpose): one-line errors, non-zero exit.
 * Every namespace is killed by the host pid of its init, even on failure.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { launch } from "../engine/pidns/mod.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import { killNamespace } from "./helpers/pidns.ts";
import { becomeSubreaper, buildTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { waitUntil } from "./helpers/wait.ts";
import { assertOneLineError, runCli, runCommand } from "./helpers/commands.ts";
import { denoDirForNobody, NOBODY, runCliAs } from "./helpers/nobody.ts";

const NOBODY_UID = 65534;

function status(pid: number, key: string): string[] {
  const line = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")
    .find((l) => l.startsWith(`${key}:`))!;
  return line.split(/\s+/).slice(1).filter((x) => x);
}

/** A temp dir owned by nobody (mode 0700). */
async function nobodyDir(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  Deno.chownSync(dir, NOBODY_UID, NOBODY_UID);
  return dir;
}

async function readable(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch {
    return "";
  }
}

Deno.test(
  "rootless: an unprivileged user launches, dumps and restores its own tree",
  withTargets(async () => {
    becomeSubreaper();
    const denoDir = await denoDirForNobody();
    const bin = await buildTarget("rt_pidns");
    const work = await nobodyDir("cryo-rootless-");
    const out = `${work}/out`;
    const inits: number[] = [];
    try {
      const l = await runCliAs(NOBODY, denoDir, [
        "launch",
        "--detach",
        "--pid-file",
        `${work}/pid`,
        "--hostname",
        "rootless-tree",
        "--ipc",
        "--",
        "/bin/sh",
        "-c",
        `exec ${bin} ${work} </dev/null >${out} 2>&1`,
      ]);
      assert.equal(l.code, 0, l.stderr);
      const pid = Number(l.stdout.trim());
      inits.push(pid);
      await waitUntil("ready", async () => (await readable(out)).includes("ready"), 60_000);
      assert.match(Deno.readTextFileSync(out), /ready pid=1 child=2/);
      assert.equal(status(pid, "Uid")[1], String(NOBODY_UID));
      assert.notEqual(
        Deno.readLinkSync(`/proc/${pid}/ns/user`),
        Deno.readLinkSync("/proc/self/ns/user"),
        "the tree has a user namespace of its own",
      );
      assert.equal(status(pid, "CapEff")[0], "0000000000000000", "the command holds no capability");

      const img = `${work}/img`;
      const d = await runCliAs(NOBODY, denoDir, ["dump", String(pid), "--dir", img, "--no-sync"]);
      assert.equal(d.code, 0, d.stderr);
      await waitUntil("tree killed by the dump", () => {
        try {
          const k = waitPid(pid, WNOHANG).kind;
          return k === "exited" || k === "signaled";
        } catch {
          return true;
        }
      }, 30_000);
      inits.splice(inits.indexOf(pid), 1);
      assert.equal((Deno.statSync(img).mode ?? 0) & 0o777, 0o700, "image dir 0700");
      assert.equal(Deno.statSync(img).uid, NOBODY_UID, "image dir owned by the user");

      const r = await runCliAs(NOBODY, denoDir, ["restore", img, "--detach"]);
      assert.equal(r.code, 0, r.stderr);
      const restored = Number(r.stdout.trim());
      inits.push(restored);
      assert.notEqual(restored, pid);
      assert.equal(status(restored, "NSpid").at(-1), "1");
      assert.equal(status(restored, "Uid")[1], String(NOBODY_UID));
      const host = await runCommand(["nsenter", "-t", String(restored), "-u", "hostname"]);
      assert.equal(host.stdout.trim(), "rootless-tree", "its UTS namespace's name");
      const ns = Deno.readLinkSync(`/proc/${restored}/ns/pid`).replace(/\D/g, "");
      Deno.writeTextFileSync(`${work}/go`, "");
      for (const role of ["parent", "child"]) {
        const file = `${work}/report.${ns}.${role}`;
        await waitUntil(file, async () => /^(PASS|FAIL)$/m.test(await readable(file)), 60_000);
        const text = Deno.readTextFileSync(file);
        assert.match(text, /^PASS$/m, `${role}:\n${text}`);
      }
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "rootless: a user cannot read root's images nor restore other credentials",
  withTargets(async () => {
    becomeSubreaper();
    const denoDir = await denoDirForNobody();
    const bin = await buildTarget("rt_pidns");
    const work = await tempDir("cryo-rootless-root-");
    Deno.chmodSync(work, 0o755);
    const out = `${work}/out`;
    const inits: number[] = [];
    try {
      const tree = launch("/bin/sh", ["-c", `exec ${bin} ${work} </dev/null >${out} 2>&1`]);
      inits.push(tree.pid);
      await waitUntil("ready", async () => (await readable(out)).includes("ready"), 60_000);
      const img = `${work}/img`;
      await checkpoint(tree.pid, { dir: img, leaveRunning: true, sync: false });
      assert.equal((Deno.statSync(img).mode ?? 0) & 0o777, 0o700);

      const denied = await runCliAs(NOBODY, denoDir, ["restore", img]);
      assertOneLineError(denied, 1, /not readable by uid 65534/, "root's image");

      // The same image opened to the user on purpose: it records uid 0.
      const open = `${work}/open`;
      Deno.renameSync(img, open);
      for (const e of Deno.readDirSync(open)) {
        Deno.chownSync(`${open}/${e.name}`, NOBODY_UID, NOBODY_UID);
      }
      Deno.chownSync(open, NOBODY_UID, NOBODY_UID);
      const foreign = await runCliAs(NOBODY, denoDir, ["restore", open]);
      assertOneLineError(foreign, 1, /ran as uid 0; uid 65534 may restore only/, "uid 0 image");
      // Running or sleeping: neither stopped nor dead.
      assert.match(status(tree.pid, "State")[0], /[RS]/, "the original runs on");
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "rootless: what the user namespace cannot reach is refused by name; the tree runs on",
  withTargets(async () => {
    becomeSubreaper();
    const denoDir = await denoDirForNobody();
    const bin = await buildTarget("rootless_refused");
    const work = await nobodyDir("cryo-rootless-refused-");
    const cases: [string, RegExp][] = [
      ["shm", /System V shm segments of a tree dumped rootless/],
      ["tcp", /established TCP connections of a tree dumped rootless/],
      ["memfd", /map_files cannot be opened without CAP_CHECKPOINT_RESTORE on the host/],
      [
        "sharedanon",
        /mapping [0-9a-f]+-[0-9a-f]+: shared anonymous memory with pages the process has not mapped/,
      ],
    ];
    const inits: number[] = [];
    try {
      for (const [kind, re] of cases) {
        const out = `${work}/out.${kind}`;
        const l = await runCliAs(NOBODY, denoDir, [
          "launch",
          "--detach",
          "--",
          "/bin/sh",
          "-c",
          `exec ${bin} ${kind} </dev/null >${out} 2>&1`,
        ]);
        assert.equal(l.code, 0, l.stderr);
        const pid = Number(l.stdout.trim());
        inits.push(pid);
        await waitUntil(
          `${kind} ready`,
          async () => (await readable(out)).includes("ready"),
          60_000,
        );
        const d = await runCliAs(NOBODY, denoDir, [
          "dump",
          String(pid),
          "--dir",
          `${work}/${kind}`,
        ]);
        assertOneLineError(d, 1, re, `dump of ${kind}`);
        assert.match(status(pid, "State")[0], /^[SR]$/, `${kind}: the tree runs on`);
        assert.equal(status(pid, "TracerPid")[0], "0", `${kind}: released`);
      }
      // An image directory in a parent the user may not write: said so, nothing made.
      const rootsOwn = await tempDir("cryo-rootless-parent-");
      Deno.chmodSync(rootsOwn, 0o755);
      try {
        const d = await runCliAs(NOBODY, denoDir, [
          "dump",
          String(inits[0]),
          "--dir",
          `${rootsOwn}/img`,
        ]);
        assertOneLineError(
          d,
          1,
          /cannot write .*\/img: no permission to create files in its parent$/,
          "dir",
        );
        assert.deepEqual([...Deno.readDirSync(rootsOwn)], [], "nothing made in the parent");
        assert.match(status(inits[0], "State")[0], /^[SR]$/, "the tree runs on");
      } finally {
        Deno.removeSync(rootsOwn, { recursive: true });
      }
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test("rootless: cryo check names the mode open to the user", async () => {
  const denoDir = await denoDirForNobody();
  const user = await runCliAs(NOBODY, denoDir, ["check", "--json"]);
  assert.equal(user.code, 1, "host pids stay out of reach");
  assert.equal(user.stderr, "cryo: required features missing: clone3 set_tid\n");
  const mode = JSON.parse(user.stdout).mode;
  assert.equal(mode.kind, "launched", mode.why);
  assert.match(mode.why, /uid 65534.*cryo launch/);
  const root = await runCli(["check", "--json"]);
  assert.equal(JSON.parse(root.stdout).mode.kind, "host");
});

/** A cgroup directory of its own, made by root (null where none can be made). */
function rootCgroup(): string | null {
  for (const base of ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    try {
      Deno.statSync(`${base}/cgroup.procs`);
      const dir = `${base}/cryo-rootless-${crypto.randomUUID().slice(0, 8)}`;
      Deno.mkdirSync(dir);
      return dir;
    } catch { /* not here */ }
  }
  return null;
}

Deno.test(
  "rootless: a restore into a cgroup the user may not write is refused before anything runs",
  withTargets(async () => {
    becomeSubreaper();
    const cgroup = rootCgroup();
    if (cgroup === null) return;
    const denoDir = await denoDirForNobody();
    const work = await nobodyDir("cryo-rootless-cg-");
    const inits: number[] = [];
    try {
      const l = await runCliAs(NOBODY, denoDir, [
        "launch",
        "--detach",
        "--",
        "/bin/sh",
        "-c",
        "exec /bin/sleep 1000 </dev/null >/dev/null 2>&1",
      ]);
      assert.equal(l.code, 0, l.stderr);
      const pid = Number(l.stdout.trim());
      inits.push(pid);
      await waitUntil("sleep exec'd", () => {
        try {
          return Deno.readLinkSync(`/proc/${pid}/exe`).endsWith("sleep");
        } catch {
          return false;
        }
      }, 30_000);
      Deno.writeTextFileSync(`${cgroup}/cgroup.procs`, `${pid}\n`);
      const img = `${work}/img`;
      const d = await runCliAs(NOBODY, denoDir, ["dump", String(pid), "--dir", img, "--no-sync"]);
      assert.equal(d.code, 0, d.stderr);
      const r = await runCliAs(NOBODY, denoDir, ["restore", img, "--detach"]);
      assertOneLineError(r, 1, /may not move processes into/, "restore into root's cgroup");
    } finally {
      for (const p of inits) killNamespace(p);
      for (let i = 0; i < 50; i++) {
        try {
          Deno.removeSync(cgroup);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }),
);
