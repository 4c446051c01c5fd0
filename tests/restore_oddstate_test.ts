/**
 * Processes caught in odd states at dump time (tests/targets/rt_oddstate.c):
 * waiting in a syscall that swaps the signal mask for its duration
 * (sigsuspend, ppoll, pselect, epoll_pwait), in sigtimedwait, inside a
 * signal handler on an altstack (SA_NODEFER|SA_RESETHAND), with several
 * queued values of one real-time signal. Each is dumped (killed), restored,
 * woken, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { wchanOf, withStalledFuse } from "./helpers/fuse.ts";
import { statusField } from "./helpers/proc.ts";
import { getAffinity, setAffinity } from "../ffi/sched.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";
import { SYS } from "../ffi/sysno.ts";

const READY = /^ready pid=(\d+)$/m;
const SIGUSR1 = 10;

/** Whether a thread of `pid` waits in syscall `nr` (from /proc/<pid>/task/<tid>/syscall). */
function inSyscall(pid: number, nr: number): boolean {
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/syscall`);
      if (Number(text.split(" ")[0]) === nr) return true;
    }
  } catch { /* gone meanwhile */ }
  return false;
}

const MASKED: [string, number][] = [
  ["sigsuspend", 130],
  ["ppoll", SYS.ppoll],
  ["pselect", SYS.pselect6],
  ["epoll_pwait", SYS.epoll_pwait],
  ["sigtimedwait", SYS.rt_sigtimedwait],
];

// Alone, with 9 more threads (per-thread state from the BPF iterator where
// it is loaded: no injection into the waiter), in a worker thread.
const HOW = [["main thread", ""], ["with 9 threads", "threads"], ["in a worker", "worker"]];

for (const [mode, nr] of MASKED) {
  for (const [label, how] of HOW) {
    Deno.test(
      `odd state ${mode} (${label}): dumped inside the call, the mask after it is the one before it`,
      withTargets(async () => {
        const a = await startTriggered("rt_oddstate", READY, { extra: [mode, how] });
        await waitUntil(`${mode} entered`, () => inSyscall(a.t.pid, nr));
        await dumpKillRestore(a.t);
        await waitUntil(`${mode} re-entered`, () => inSyscall(a.t.pid, nr));
        a.t.signal(SIGUSR1);
        const checks = mode === "sigtimedwait"
          ? ["sigtimedwait", "mask-after"]
          : ["call", "handler-mask", "mask-after"];
        assertChecksPassed(a.t, checks, await a.t.wait());
      }),
    );
  }
}

for (
  const [mode, checks] of [
    ["inhandler", ["handler-ran", "altstack", "nodefer", "resethand", "mask-after", "local"]],
    ["rtqueue", ["queued-11", "queued-22", "queued-33"]],
    ["wait4", ["wait4"]],
  ] as const
) {
  Deno.test(
    `odd state ${mode}: comes back as it was`,
    withTargets(async () => {
      const a = await startTriggered("rt_oddstate", READY, { extra: [mode] });
      if (mode === "wait4") await waitUntil("wait4 entered", () => inSyscall(a.t.pid, SYS.wait4));
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(a.t, checks, await a.t.wait());
    }),
  );
}

Deno.test(
  "odd state select: dumped inside a select with a 3 s timeout, it times out no earlier than 3 s",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["select"] });
    await waitUntil(
      "select entered",
      () => inSyscall(a.t.pid, SYS.select) || inSyscall(a.t.pid, SYS.pselect6),
    );
    await sleep(1000);
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // 1.5 s in the image: a restart that counted the time the image lay
    // (or a timeout cut short) would wake before its 3 s.
    await sleep(1500);
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.equal(tree.rootPid, a.t.pid);
    assertChecksPassed(a.t, ["select", "select-elapsed"], await a.t.wait());
  }),
);

Deno.test(
  "odd state futexrt: a FUTEX_CLOCK_REALTIME absolute wait times out at its deadline across a restore",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["futexrt"] });
    await waitUntil("futex entered", () => inSyscall(a.t.pid, SYS.futex));
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // The deadline is 3 s after it began: a relative restart would wake late.
    await sleep(2500);
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.equal(tree.rootPid, a.t.pid);
    assertChecksPassed(a.t, ["futexrt", "futexrt-deadline"], await a.t.wait());
  }),
);

// Third probe (branch oddstate3): the blocking calls and states "Not probed" before.

const SYS_SENDFILE = 40;
const SYS_ACCEPT = 43;
const SYS_SPLICE = 275;
const SYS_FLOCK = 73;
const SYS_FCNTL = 72;
const SYS_RECVFROM = 45;
const SYS_FUTEX_WAITV = 449;

Deno.test(
  "odd state pause: dumped inside pause(), a signal after the restore ends it (EINTR, handler run)",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["pause"] });
    await waitUntil("pause entered", () => inSyscall(a.t.pid, SYS.pause));
    await dumpKillRestore(a.t);
    await waitUntil("pause re-entered", () => inSyscall(a.t.pid, SYS.pause));
    a.t.signal(SIGUSR1);
    assertChecksPassed(a.t, ["pause"], await a.t.wait());
  }),
);

Deno.test(
  "odd state accept: dumped inside accept() on a unix listener, it accepts a connection made after the restore",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["accept"] });
    await waitUntil("accept entered", () => inSyscall(a.t.pid, SYS_ACCEPT));
    await dumpKillRestore(a.t);
    const c = await Deno.connect({ transport: "unix", path: `${a.trigger}.sock` });
    await c.write(new TextEncoder().encode("hi"));
    assertChecksPassed(a.t, ["accept"], await a.t.wait());
    c.close();
  }),
);

// Each ends in a check the target makes after the trigger: the syscall it was dumped in (if named).
for (
  const [mode, nr, checks] of [
    ["ttyread", undefined, ["tty-read"]],
    ["sendfile", SYS_SENDFILE, ["copy-offsets", "copy-stream"]],
    ["splice", SYS_SPLICE, ["copy-offsets", "copy-stream"]],
    ["copyrange", undefined, ["copy-offsets", "copy-content"]],
    ["robust", SYS.futex, ["robust"]],
    ["robustpi", SYS.futex, ["robust"]],
    ["clones", undefined, ["clones-0", "clones-1", "clones-go-on"]],
    ["nested", undefined, ["nested-order", "nested-masks", "nested-mask-after"]],
    ["pendall", undefined, ["pending-shared", "pending-thread", "pending-not-moved"]],
    ["fresh", undefined, ["fresh-exec"]],
    ["sockwrite", undefined, ["sock-write"]],
    ["waitall", SYS_RECVFROM, ["recv-waitall"]],
    ["futexwaitv", SYS_FUTEX_WAITV, ["futex-waitv"]],
  ] as const
) {
  Deno.test(
    `odd state ${mode}: comes back as it was`,
    withTargets(async () => {
      const a = await startTriggered("rt_oddstate", READY, { extra: [mode] });
      if (nr !== undefined) await waitUntil(`${mode} blocked`, () => inSyscall(a.t.pid, nr));
      if (mode === "fresh") {
        // Its child stopped before the first instruction of the program it exec'd.
        const child = Number(a.t.output().match(/^child=(\d+)$/m)?.[1]);
        assert.equal(statusField(child, "State")[0], "T");
      }
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(a.t, checks, await a.t.wait());
    }),
  );
}

Deno.test(
  "odd state execloop: a thread other than the main one execs again and again; dumped 12 times among the execs, it goes on",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["execloop", "0"] });
    await sleep(100);
    // Each dump has a fair chance to meet an exec half done (before: refused as a zombie
    // main thread or exiting, "no permission", ECHILD, "died", or 10 s then stuck).
    for (let i = 0; i < 12; i++) {
      await checkpoint(a.t.pid, { dir: await tempImageDir(), leaveRunning: true });
      assert.equal(statusField(a.t.pid, "TracerPid"), "0");
    }
    await dumpKillRestore(a.t);
    await sleep(100);
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["exec-loop"], await a.t.wait());
  }),
);

for (const kind of ["flock", "posix", "ofd"]) {
  Deno.test(
    `odd state lock wait (${kind}): blocked on a lock its child holds; after the restore it gets it only once the child lets go`,
    withTargets(async () => {
      const lock = `${await tempDir("cryo-oddlock-")}/lock`;
      const a = await startTriggered("rt_oddstate", READY, {
        extra: ["lockwait-tree", lock, kind],
      });
      await waitUntil(
        "lock wait entered",
        () => inSyscall(a.t.pid, kind === "flock" ? SYS_FLOCK : SYS_FCNTL),
      );
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(a.t, ["lock-wait"], await a.t.wait());
    }),
  );
}

for (const kind of ["flock", "posix"]) {
  Deno.test(
    `odd state lock wait (${kind}): blocked on a lock a process outside the tree holds; it gets it once that one lets go`,
    withTargets(async () => {
      const work = await tempDir("cryo-oddlock-");
      const trigger = `${work}/go`;
      const holder = await startTarget("rt_oddstate", [trigger, "lockhold", `${work}/lock`, kind]);
      await holder.waitFor(READY);
      const waiter = await startTarget("rt_oddstate", [trigger, "lockwait", `${work}/lock`, kind]);
      await waiter.waitFor(READY);
      await waitUntil(
        "lock wait entered",
        () => inSyscall(waiter.pid, kind === "flock" ? SYS_FLOCK : SYS_FCNTL),
      );
      await dumpKillRestore(waiter);
      await sleep(200); // the restored waiter must still wait
      assert.equal(pathExists(`${trigger}.released`), false);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(waiter, ["lock-wait"], await waiter.wait());
      await holder.wait();
    }),
  );
}

/** Moves `pid` to a CPU other than the one its rseq critical section began on, then lets it commit. */
async function migrateAndCommit(pid: number, flag: string): Promise<void> {
  const f = await Deno.open(flag, { read: true, write: true });
  try {
    const word = new Uint8Array(4);
    await f.seek(8, Deno.SeekMode.Start);
    await f.read(word);
    const began = new DataView(word.buffer).getUint32(0, true);
    const cpus = getAffinity(pid);
    const other = cpus.find((c) => c !== began);
    if (other !== undefined) setAffinity(pid, [other]);
    await sleep(100);
    await f.seek(0, Deno.SeekMode.Start);
    await f.write(new Uint8Array([1]));
  } finally {
    f.close();
  }
}

const RSEQ_CHECKS = ["rseq-same-cpu", "rseq-cpu-id", "rseq-registered", "rseq-sched_getcpu"];

Deno.test(
  "odd state rseq: dumped inside an rseq critical section, the restored thread aborts it (the section commits on the CPU it began on)",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["rseq"] });
    await sleep(200);
    await dumpKillRestore(a.t);
    await migrateAndCommit(a.t.pid, `${a.trigger}.rseq`);
    assertChecksPassed(a.t, RSEQ_CHECKS, await a.t.wait());
  }),
);

Deno.test(
  "odd state rseq: left running after a dump inside an rseq critical section, the thread aborts it",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["rseq"] });
    await sleep(200);
    await checkpoint(a.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await migrateAndCommit(a.t.pid, `${a.trigger}.rseq`);
    assertChecksPassed(a.t, RSEQ_CHECKS, await a.t.wait());
  }),
);

Deno.test(
  "odd state FUSE read: dumped inside a read its server holds but lets be interrupted (EINTR), the read restarts after the restore and gets its bytes",
  withTargets(() =>
    withStalledFuse("read-eintr", async (file, release) => {
      const a = await startTriggered("rt_oddstate", READY, { extra: ["fuseread", file] });
      await waitUntil("read entered", () => wchanOf(a.t.pid) === "request_wait_answer");
      await dumpKillRestore(a.t);
      await waitUntil("read re-entered", () => wchanOf(a.t.pid) === "request_wait_answer");
      await release();
      assertChecksPassed(a.t, ["fuse-read", "fuse-offset"], await a.t.wait());
    })
  ),
);
