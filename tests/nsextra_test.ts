/**
 * The other namespaces of a launched tree (engine/pidns/extras.ts):
 * - tests/targets/rt_nsextra.c, launched with its own UTS (--hostname) and
 *   IPC namespaces, or unsharing them itself, sets host and domain names,
 *   makes a System V message queue with two messages, a semaphore set, an
 *   unattached shm segment, and a tmpfs with files; it is dumped (and
 *   killed), restored, and checks all of it itself (PASS);
 * - refusals by name: a bind mount, a hard link and a fifo in a tmpfs, an
 *   image directory under the tree's own mount, a process in another UTS namespace than
 *   the root's, a POSIX message queue; each tree runs on untouched.
 * - the CLI: launch --hostname --ipc.
 * Every namespace is killed by the host pid of its init.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { launch, type LaunchNamespaces } from "../engine/pidns/mod.ts";
import { killNamespace } from "./helpers/pidns.ts";
import { becomeSubreaper, buildTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { waitUntil } from "./helpers/wait.ts";
import { runCli } from "./helpers/commands.ts";

function readOr(file: string): string {
  try {
    return Deno.readTextFileSync(file);
  } catch {
    return "";
  }
}

/** Launches rt_nsextra in `mode`; resolves with its host pid and ready line. */
async function launchTarget(
  work: string,
  mode: string,
  more: LaunchNamespaces,
): Promise<{ pid: number; ready: string }> {
  const bin = await buildTarget("rt_nsextra");
  const out = `${work}/out`;
  const tree = launch(
    "/bin/sh",
    ["-c", `exec ${bin} ${work} ${mode} </dev/null >${out} 2>&1`],
    more,
  );
  try {
    await waitUntil("ready", () => /ready|FAIL|error/.test(readOr(out)), 60_000);
  } catch (e) {
    killNamespace(tree.pid);
    throw e;
  }
  const ready = readOr(out);
  if (!ready.includes("ready")) {
    killNamespace(tree.pid);
    throw new Error(`rt_nsextra: ${ready}`);
  }
  return { pid: tree.pid, ready };
}

function assertRunsUntraced(pid: number): void {
  const state = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1][0];
  assert.match(state, /[SR]/, `process ${pid} runs`);
  assert.equal(Deno.readTextFileSync(`/proc/${pid}/status`).match(/TracerPid:\s+(\d+)/)![1], "0");
}

async function roundTrip(mode: string, more: LaunchNamespaces): Promise<void> {
  becomeSubreaper();
  const work = await tempDir(`cryo-nsextra-${mode}-`);
  const inits: number[] = [];
  try {
    const t = await launchTarget(work, mode, more);
    inits.push(t.pid);
    assert.notEqual(
      Deno.readLinkSync(`/proc/${t.pid}/ns/uts`),
      Deno.readLinkSync("/proc/self/ns/uts"),
    );
    const img = `${work}/img`;
    const dumped = await checkpoint(t.pid, { dir: img, sync: false });
    const ns = dumped.manifest.namespaces!;
    assert.deepEqual(ns.uts, { hostname: "nsx-host", domainname: "nsx.domain" });
    assert.equal(ns.ipc?.msgQueues.length, 1);
    assert.equal(ns.ipc?.msgQueues[0].messages.length, 2);
    assert.deepEqual(ns.ipc?.semSets[0].values, [1, 42, 7]);
    assert.equal(dumped.manifest.sysvShm?.length, 2, "the attached and the unattached segment");
    assert.deepEqual(ns.mounts?.map((m) => m.mountPoint), [`${work}/mnt`, `${work}/ro`]);
    assert.deepEqual(
      ns.mounts![0].entries.map((e) => `${e.type} ${e.path}`),
      ["dir ", "file a.txt", "symlink link", "dir sub", "file sub/b.bin"],
    );
    killNamespace(t.pid); // dumped without leaveRunning: already gone
    if (mode === "self") {
      const shown = await runCli(["show", img]);
      assert.match(
        shown.stdout,
        /its own namespaces also: uts \(host name nsx-host\), ipc \(1 message queues, 1 semaphore sets\), tmpfs .*\/mnt \(5 entries\), tmpfs .*\/ro \(2 entries\)/,
        shown.stdout + shown.stderr,
      );
    }
    const r = await restore(img);
    inits.push(r.rootPid);
    assert.notEqual(r.rootPid, t.pid);
    Deno.writeTextFileSync(`${work}/go`, "");
    const report = `${work}/report`;
    await waitUntil("report", () => /^(PASS|FAIL)$/m.test(readOr(report)), 60_000);
    const text = readOr(report);
    assert.match(text, /^PASS$/m, text);
    const oks = text.split("\n").filter((l) => / ok$/.test(l)).length;
    assert.equal(oks, mode === "launched" ? 24 : 23, text);
    assert.deepEqual(await r.exited, { code: 0 });
  } finally {
    for (const p of inits) killNamespace(p);
  }
}

Deno.test(
  "nsextra: launched with --hostname --ipc: names, SysV IPC and a tmpfs come back",
  withTargets(() => roundTrip("launched", { hostname: "nsx-launch", ipc: true })),
);

Deno.test(
  "nsextra: a tree that unshared its UTS and IPC namespaces itself comes back",
  withTargets(() => roundTrip("self", {})),
);

Deno.test(
  "nsextra: a bind mount, hard links and fifos in a tmpfs, a mixed UTS namespace, a POSIX queue: refused",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-nsextra-refuse-");
    const inits: number[] = [];
    try {
      // A bind mount (its files are the host's).
      const mnt = `${work}/bind`;
      Deno.mkdirSync(mnt);
      const tmp = `${work}/tmp`;
      Deno.mkdirSync(tmp);
      const bound = launch("/bin/sh", [
        "-c",
        `mount --bind ${work} ${mnt} && mount -t tmpfs none ${tmp} && touch ${tmp}/a && ` +
        `ln ${tmp}/a ${tmp}/b && mkfifo ${tmp}/f && exec sleep 60 </dev/null >/dev/null 2>&1`,
      ]);
      inits.push(bound.pid);
      // A child in a UTS namespace other than the root's.
      const mixed = launch("/bin/sh", [
        "-c",
        "unshare -u sleep 60 </dev/null >/dev/null 2>&1 & exec sleep 60 </dev/null >/dev/null 2>&1",
      ], { uts: true });
      inits.push(mixed.pid);
      const kids = () => readOr(`/proc/${mixed.pid}/task/${mixed.pid}/children`).trim();
      const sleeping = (p: number | string) => readOr(`/proc/${p}/cmdline`).startsWith("sleep");
      await waitUntil("sleeps", () => {
        const k = kids();
        return sleeping(bound.pid) && sleeping(mixed.pid) && k !== "" && sleeping(k) &&
          readOr(`/proc/${bound.pid}/mountinfo`).includes(mnt);
      }, 60_000);
      const refused = await checkpoint(bound.pid, { dir: `${work}/img1`, sync: false }).then(
        () => "",
        (e) => (e as Error).message,
      );
      assert.match(
        refused,
        /mount .*\/bind .*other mounts in a launched tree's mount namespace.*bind mount/,
      );
      assert.match(refused, /tmpfs .*\/tmp: a: hard links.*a file with 2 hard links/);
      assert.match(refused, /tmpfs .*\/tmp: f: hard links.*a special file/);
      await assert.rejects(
        checkpoint(mixed.pid, { dir: `${work}/img2`, sync: false }),
        /its uts namespace .* is not cryo's/,
      );
      // A POSIX message queue in its own IPC namespace.
      const mq = await launchTarget(work, "mq", { ipc: true });
      inits.push(mq.pid);
      const mqRefused = await checkpoint(mq.pid, { dir: `${work}/img3`, sync: false }).then(
        () => "",
        (e) => (e as Error).message,
      );
      assert.match(
        mqRefused,
        /POSIX message queues in a launched tree's own IPC namespace: POSIX message queues nsx-queue/,
      );
      // (Its descriptor alone would be opened again by name: the queue dies with the namespace.)
      // An image directory under one of the tree's own mounts (the engine inside would not reach it).
      const covered = launch("/bin/sh", [
        "-c",
        `mount -t tmpfs none ${tmp} && exec sleep 60 </dev/null >/dev/null 2>&1`,
      ]);
      inits.push(covered.pid);
      await waitUntil(
        "covered",
        () => readOr(`/proc/${covered.pid}/mountinfo`).includes(tmp),
        60_000,
      );
      await assert.rejects(
        checkpoint(covered.pid, { dir: `${tmp}/img`, sync: false }),
        /the tree's own mount .*\/tmp hides cryo's image directory .*\/tmp\/img/,
      );
      for (const p of [bound.pid, mixed.pid, Number(kids()), mq.pid, covered.pid]) {
        assertRunsUntraced(p);
      }
    } finally {
      for (const p of inits) killNamespace(p);
    }
  }),
);

Deno.test(
  "nsextra: cryo launch --hostname --ipc gives the command its own UTS and IPC namespaces",
  withTargets(async () => {
    becomeSubreaper();
    const work = await tempDir("cryo-nsextra-cli-");
    const r = await runCli([
      "launch",
      "--detach",
      "--hostname",
      "nsx-cli",
      "--ipc",
      "--",
      "/bin/sh",
      "-c",
      `cat /proc/sys/kernel/hostname >${work}/h; exec sleep 60 </dev/null >/dev/null 2>&1`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(r.stdout.trim());
    try {
      await waitUntil("hostname", () => readOr(`${work}/h`) !== "", 60_000);
      assert.equal(readOr(`${work}/h`), "nsx-cli\n");
      for (const ns of ["uts", "ipc"]) {
        assert.notEqual(
          Deno.readLinkSync(`/proc/${pid}/ns/${ns}`),
          Deno.readLinkSync(`/proc/self/ns/${ns}`),
          ns,
        );
      }
      assert.equal(
        Deno.readLinkSync(`/proc/${pid}/ns/net`),
        Deno.readLinkSync("/proc/self/ns/net"),
      );
    } finally {
      killNamespace(pid);
    }
  }),
);
