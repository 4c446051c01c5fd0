/**
 * Processes in odd states the dump refuses, leaving them running untouched
 * and no image: a tracer (ptrace) of a process outside the tree, a process
 * in a frozen cgroup (v2 cgroup.freeze, v1 freezer), a process faulting on
 * a page a userfaultfd of another process handles, a thread held in a FUSE
 * request (tests/targets/fuse_stall.c), a process exiting.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { wchanOf, withStalledFuse } from "./helpers/fuse.ts";
import { waitUntil } from "./helpers/wait.ts";
import { statusField } from "./helpers/proc.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;
const SIGTERM = 15;

/** Asserts that `dump` is refused with a message matching `message`. */
async function assertRefused(dump: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(dump, (e: unknown) => {
    assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test(
  "dump refuses a tracer of a process outside the tree; the tracer still traces it",
  withTargets(async () => {
    const tracee = await startTarget("sleeper", ["600"]);
    await tracee.waitFor(/^ready pid=\d+/m);
    const tracer = await startTarget("dump_tracer", [String(tracee.pid)]);
    await tracer.waitFor(/^tracing /m);
    const dir = await tempImageDir();
    await assertRefused(
      checkpoint(tracer.pid, { dir }),
      new RegExp(
        `process ${tracer.pid}: processes tracing \\(ptrace\\) a process outside the tree`,
      ),
    );
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    assert.equal(statusField(tracer.pid, "TracerPid"), "0");
    assert.equal(statusField(tracee.pid, "TracerPid"), String(tracer.pid));
    // The tracer passes SIGTERM on and sees its tracee die: it exits 0 (1 on ECHILD).
    tracee.signal(SIGTERM);
    const st = await tracer.wait();
    assert.deepEqual(st.kind === "exited" ? st.code : st, 0, tracer.output());
  }),
);

/** The mount point of the cgroup hierarchy of `fstype` holding `option` ("" for v2), if mounted. */
function cgroupMount(fstype: string, option: string): string | undefined {
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const [fs, , opts = ""] = right.split(" ");
    if (fs === fstype && (option === "" || opts.split(",").includes(option))) {
      return left.split(" ")[4];
    }
  }
  return undefined;
}

for (
  const [label, fstype, option, file, frozen, thawed] of [
    ["v2 cgroup.freeze", "cgroup2", "", "cgroup.freeze", "1", "0"],
    ["v1 freezer", "cgroup", "freezer", "freezer.state", "FROZEN", "THAWED"],
  ] as const
) {
  Deno.test(
    `dump refuses a process in a frozen cgroup (${label}); it stays frozen, untraced, and runs on once thawed`,
    withTargets(async () => {
      const mount = cgroupMount(fstype, option);
      if (!mount || !pathExists(`${mount}/cgroup.procs`)) {
        console.log(`no ${label} hierarchy mounted: not checked`);
        return;
      }
      // Unique (Deno.pid repeats across pid namespaces); removed even when the target fails.
      const group = `${mount}/cryo-test-frozen-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
      Deno.mkdirSync(group);
      let a: Awaited<ReturnType<typeof startTriggered>> | undefined;
      try {
        a = await startTriggered("rt_oddstate", READY, { extra: ["rtqueue"] });
        Deno.writeTextFileSync(`${group}/cgroup.procs`, String(a.t.pid));
        Deno.writeTextFileSync(`${group}/${file}`, frozen);
        const dir = await tempImageDir();
        await assertRefused(
          checkpoint(a.t.pid, { dir }),
          new RegExp(
            `process ${a.t.pid}: processes in a frozen cgroup .*: its cgroup ${group} is frozen`,
          ),
        );
        assert.equal(pathExists(dir), false, "the refused dump left an image");
        assert.equal(statusField(a.t.pid, "TracerPid"), "0");
        assert.equal(Deno.readTextFileSync(`${group}/${file}`).trim(), frozen);
        Deno.writeTextFileSync(`${group}/${file}`, thawed);
        await Deno.writeTextFile(a.trigger, "");
        assertChecksPassed(a.t, ["queued-11", "queued-22", "queued-33"], await a.t.wait());
      } finally {
        Deno.writeTextFileSync(`${group}/${file}`, thawed);
        await a?.t.kill();
        for (let i = 0; i < 100; i++) {
          try {
            Deno.removeSync(group);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }
    }),
  );
}

Deno.test(
  "dump refuses a process blocked in a page fault a userfaultfd of another process handles; the fault completes after",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["uffd"] });
    const child = Number(a.t.output().match(/^child=(\d+)$/m)?.[1]);
    assert.ok(child > 0, a.t.output());
    const dir = await tempImageDir();
    await assertRefused(checkpoint(child, { dir }), /userfaultfd/);
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    assert.equal(statusField(child, "TracerPid"), "0");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["uffd-fault"], await a.t.wait());
  }),
);

Deno.test(
  "dump refuses, by name, a process in a FUSE read its server holds (the interrupt ignored); the process is let go and reads on",
  withTargets(() =>
    withStalledFuse("read", async (file, release) => {
      const a = await startTriggered("rt_oddstate", READY, { extra: ["fuseread", file] });
      await waitUntil("read entered", () => wchanOf(a.t.pid) === "request_wait_answer");
      const dir = await tempImageDir();
      await assertRefused(
        checkpoint(a.t.pid, { dir }),
        new RegExp(`process ${a.t.pid}: threads waiting for a FUSE request`),
      );
      assert.equal(pathExists(dir), false, "the refused dump left an image");
      await release();
      // Not left stopped under cryo's trace: it gets its bytes and ends.
      assertChecksPassed(a.t, ["fuse-read", "fuse-offset"], await a.t.wait());
    })
  ),
);

Deno.test(
  "dump refuses at once, by name, a process exiting (its close of a FUSE file held by the server); it ends once answered",
  withTargets(() =>
    withStalledFuse("flush", async (file, release) => {
      const a = await startTriggered("rt_oddstate", READY, { extra: ["fuseexit", file] });
      await waitUntil("exit entered", () => wchanOf(a.t.pid) === "request_wait_answer");
      const dir = await tempImageDir();
      const began = performance.now();
      await assertRefused(
        checkpoint(a.t.pid, { dir }),
        new RegExp(`process ${a.t.pid}: processes exiting .*: it is exiting`),
      );
      assert.ok(performance.now() - began < 5000, "not refused at once");
      assert.equal(pathExists(dir), false, "the refused dump left an image");
      assert.equal(statusField(a.t.pid, "TracerPid"), "0");
      await release();
      const st = await a.t.wait();
      assert.deepEqual(st.kind === "exited" ? st.code : st, 0, a.t.output());
    })
  ),
);

Deno.test(
  "dump refuses a listener whose full queue holds a connection with bytes sent, while more children block in connect(); all go on",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["unixconnect"] });
    const dir = await tempImageDir();
    await assertRefused(
      checkpoint(a.t.pid, { dir }),
      /bytes sent on unix connections not accepted yet/,
    );
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["unix-connect"], await a.t.wait());
  }),
);

Deno.test(
  "dump refuses at once, by name, a process whose FUSE read was interrupted already (uninterruptible, the server holding it)",
  withTargets(() =>
    withStalledFuse("read", async (file, release) => {
      const a = await startTriggered("rt_oddstate", READY, { extra: ["fuseread", file] });
      await waitUntil("read entered", () => wchanOf(a.t.pid) === "request_wait_answer");
      // A stop request interrupts the read: the kernel sends the server an INTERRUPT,
      // which it ignores, and waits on uninterruptibly (D); SIGCONT cancels the stop.
      a.t.signal(19); // SIGSTOP
      await waitUntil("read interrupted", () => statusField(a.t.pid, "State")[0] === "D");
      a.t.signal(18); // SIGCONT
      const dir = await tempImageDir();
      const began = performance.now();
      await assertRefused(
        checkpoint(a.t.pid, { dir }),
        new RegExp(`process ${a.t.pid}: threads waiting for a FUSE request`),
      );
      assert.ok(performance.now() - began < 5000, "not refused at once");
      assert.equal(pathExists(dir), false, "the refused dump left an image");
      assert.equal(statusField(a.t.pid, "TracerPid"), "0");
      await release();
      assertChecksPassed(a.t, ["fuse-read", "fuse-offset"], await a.t.wait());
    })
  ),
);
