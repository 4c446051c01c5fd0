/**
 * Crash-safe injection (ffi/safe_inject.ts): a thread whose tracer lets go
 * of it at any instant of an injected syscall resumes in its own state.
 * The tracer's death is stood in for by a PTRACE_DETACH without a signal at
 * each point: the injected registers set but the syscall not run, the
 * syscall's exit stop, and the thread's own mask put back but not yet its
 * registers. rt_regs checks every register it can (GPR, x87, SSE, AVX,
 * flags, fs/gs bases, its mask) in a loop; inject_restart sits in read()
 * interrupted by the freeze and must issue it again; a page mapped with
 * its munmap armed as undo must be gone once the thread ran.
 */

import assert from "node:assert/strict";
import { assertChecksPassed, RT_REGS_CHECKS } from "./helpers/checks.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { deadlineIn, sleep, waitUntil } from "./helpers/wait.ts";
import { statusField } from "./helpers/proc.ts";
import { readWord, startRegsInLoop, waitIterations } from "./helpers/rt_regs.ts";
import { tempDir } from "./helpers/fs.ts";
import { detach, getRegs } from "../ffi/ptrace.ts";
import { CrashSafeThread, findSafeSites } from "../ffi/safe_inject.ts";
import { signed } from "../ffi/regs.ts";
import { SYS } from "../ffi/sysno.ts";
import { areaBelow } from "../engine/dump/injected.ts";
import { batchResults, encodeBatchTable, installBatchCode } from "../ffi/syscall_batch.ts";
import { processVmReadFully, processVmWriteFully } from "../ffi/process_vm.ts";
import { freezeThreads as freeze } from "./helpers/ptrace_stop.ts";

/**
 * Where a test lets go of the thread. "batch-restore": in the close right
 * after a batch (at its signal-delivery stop), before the mask and
 * registers are put back; "batch-closed": after that close (registers and
 * mask put back in place, no further stop), by a plain detach as at thaw.
 */
type Where =
  | "inject-mid"
  | "exit"
  | "inject-restore"
  | "batch-mid"
  | "batch-end"
  | "batch-restore"
  | "batch-closed";

/** The quiet signal batches end with in these tests (the targets leave SIGURG alone). */
const SIGURG = 23;

/**
 * Maps a page for the batch code at `at` with its munmap armed as undo,
 * and runs a batch of getpid, getppid and sigaltstack queries (results
 * below the thread's area): the thread is let go inside it by the hook.
 */
function runBatchIn(pid: number, t: CrashSafeThread, at: bigint): void {
  t.armUndo(SYS.munmap, at, 4096);
  assert.equal(t.call(SYS.mmap, at, 4096, 5, 0x22 | 0x100000, -1, 0), at);
  installBatchCode(pid, at);
  const table = t.area - 8192n;
  const steps = [
    { nr: SYS.getpid, args: [] },
    { nr: SYS.getppid, args: [] },
    { nr: SYS.sigaltstack, args: [0, table - 64n] },
    { nr: SYS.getpid, args: [] },
  ];
  processVmWriteFully(
    pid,
    table,
    encodeBatchTable(table, steps, { signal: SIGURG, tgid: pid, tid: pid }, t.site),
  );
  t.runBatch(at, table, SIGURG);
  const out = new Uint8Array(steps.length * 64);
  processVmReadFully(pid, table, out);
  assert.deepEqual(batchResults(out, steps.length).map((r) => r === BigInt(pid)), [
    true,
    false,
    false,
    true,
  ]);
}

/**
 * Opens crash-safe injection in thread `tid` and lets go of it at `where`
 * (by PTRACE_DETACH); every other thread of `tids` is detached normally.
 */
function letGoInside(
  pid: number,
  tids: number[],
  where: Where,
  during?: (t: CrashSafeThread) => void,
): void {
  const sites = findSafeSites(pid);
  assert.ok(sites, "the target has `syscall; ret` and an rt_sigreturn restorer");
  let armed = false;
  const hook = (phase: string) => {
    if (armed && phase === (where === "batch-restore" ? "inject-restore" : where)) {
      armed = false;
      // A dead tracer leaves the stop signal to be delivered: so does this detach.
      detach(pid, where === "batch-end" || where === "batch-restore" ? SIGURG : 0);
      throw new Error("let go");
    }
  };
  const t = CrashSafeThread.open(pid, sites, (rsp, bytes) => areaBelow(pid, rsp, bytes, 0), hook);
  assert.ok(t, "the thread can be injected into crash-safely");
  for (const tid of tids) if (tid !== pid) detach(tid, 0);
  assert.equal(t.call(SYS.getpid), BigInt(pid));
  during?.(t);
  if (where === "batch-restore" || where === "batch-closed") {
    runBatchIn(pid, t, BATCH_PAGE);
    if (where === "batch-closed") {
      // The batch page stays (its undo disarmed); unmapBatchPage removes it afterwards.
      t.disarmUndo();
      t.close();
      detach(pid, 0);
      return;
    }
    armed = true;
    try {
      t.close();
      assert.fail(`${where} was not reached`);
    } catch (e) {
      if ((e as Error).message !== "let go") throw e;
    }
    return;
  }
  armed = true;
  try {
    if (where === "exit") {
      detach(pid, 0);
      return;
    }
    if (where === "inject-mid") t.call(SYS.getpid);
    else if (where === "batch-mid" || where === "batch-end") runBatchIn(pid, t, BATCH_PAGE);
    else t.close();
    assert.fail(`${where} was not reached`);
  } catch (e) {
    if ((e as Error).message !== "let go") throw e;
  }
}

/** Where the batch tests map their code page (free in the targets). */
const BATCH_PAGE = 0x3e0000000000n;

/** Runs syscall `nr` in the main thread of running `pid` (frozen for it, then let go). */
function callIn(pid: number, nr: number, ...args: (number | bigint)[]): bigint {
  const tids = freeze(pid);
  const t = CrashSafeThread.open(
    pid,
    findSafeSites(pid)!,
    (rsp, b) => areaBelow(pid, rsp, b, 0),
    () => {},
  );
  assert.ok(t);
  try {
    return t.call(nr, ...args);
  } finally {
    t.close();
    t.restoreArea();
    for (const tid of tids) detach(tid, 0);
  }
}

/** Unmaps the batch page a "batch-closed" test left in `pid`. */
function unmapBatchPage(pid: number, where: Where): void {
  if (where === "batch-closed") assert.equal(callIn(pid, SYS.munmap, BATCH_PAGE, 4096), 0n);
}

async function registersSurvive(where: Where): Promise<void> {
  const { t, iter } = await startRegsInLoop(["noavx512"]); // in its checking loop
  const maps = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
  const tids = freeze(t.pid);
  letGoInside(t.pid, tids, where);
  await waitIterations(t, iter, readWord(t.pid, iter), 10000n); // many iterations of re-checking
  assert.equal(t.poll(), undefined, `the target died:\n${t.output()}`);
  unmapBatchPage(t.pid, where);
  // A batch's code page is gone once the thread ran its undo.
  assert.equal(Deno.readTextFileSync(`/proc/${t.pid}/maps`), maps);
  t.signal(SIGUSR1);
  const st = await t.wait(10000);
  assertChecksPassed(t, RT_REGS_CHECKS, st);
}

/** The points of an injection where a thread can be let go (its undo then runs in the target). */
const LET_GO_POINTS = [
  "inject-mid",
  "exit",
  "inject-restore",
  "batch-mid",
  "batch-end",
  "batch-restore",
] as const;

for (const where of [...LET_GO_POINTS, "batch-closed"] as const) {
  Deno.test(
    `crash-safe injection: let go at ${where}, the thread's registers, FPU state and mask are its own`,
    withTargets(() => registersSurvive(where)),
  );
}

/** Whether the target sleeps in read() (syscall 0), as /proc says. */
function blockedInRead(t: Target): boolean {
  const nr = Deno.readTextFileSync(`/proc/${t.pid}/syscall`).split(" ")[0];
  return nr === "0" && statusField(t.pid, "State").startsWith("S");
}

async function readGoesOn(where: Where): Promise<Target> {
  const dir = await tempDir("cryo-inject-restart-");
  const fifo = `${dir}/fifo`;
  await new Deno.Command("mkfifo", { args: [fifo] }).output();
  const t = await startTarget("inject_restart", [fifo]);
  await t.waitFor(/^ready pid=(\d+)/m);
  await waitUntil("the target blocked in read()", () => blockedInRead(t));
  const tids = freeze(t.pid);
  const regs = getRegs(t.pid);
  assert.equal(signed(regs.rax), -512n, "the freeze interrupted read() with -ERESTARTSYS");
  letGoInside(t.pid, tids, where);
  if (where === "batch-closed") {
    await waitUntil("the target blocked in read() again", () => blockedInRead(t));
    unmapBatchPage(t.pid, where);
  }
  // It issued its read() again and sleeps in it (had it returned, it would have exited).
  await waitUntil("the target blocked in read() again", () => {
    assert.equal(t.poll(), undefined, `read() returned:\n${t.output()}`);
    return blockedInRead(t);
  });
  const w = await Deno.open(fifo, { write: true });
  await w.write(new TextEncoder().encode("x"));
  w.close();
  const st = await t.wait(10000);
  assert.match(t.output(), /^read x$/m, t.output());
  assert.equal(st.kind === "exited" && st.code, 0);
  return t;
}

for (
  const where of [
    "inject-mid",
    "exit",
    "batch-mid",
    "batch-end",
    "batch-restore",
    "batch-closed",
  ] as const
) {
  Deno.test(
    `crash-safe injection: let go at ${where}, a read() interrupted by the freeze is issued again`,
    withTargets(async () => {
      await readGoesOn(where);
    }),
  );
}

Deno.test(
  "crash-safe injection: a page mapped with its munmap armed as undo is gone once the thread ran",
  withTargets(async () => {
    const { t } = await startRegsInLoop(["noavx512"]);
    const maps = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
    const tids = freeze(t.pid);
    const at = 0x3f0000000000n;
    assert.ok(!maps.includes("3f0000000000-"), "the probe address is free");
    letGoInside(t.pid, tids, "exit", (thread) => {
      thread.armUndo(SYS.munmap, at, 4096);
      const r = thread.call(SYS.mmap, at, 4096, 1, 0x22 | 0x100000, -1, 0);
      assert.equal(r, at);
      assert.match(Deno.readTextFileSync(`/proc/${t.pid}/maps`), /^3f0000000000-/m);
    });
    const deadline = deadlineIn(5000);
    while (/^3f0000000000-/m.test(Deno.readTextFileSync(`/proc/${t.pid}/maps`))) {
      assert.ok(Date.now() < deadline, "the probe page is still mapped");
      await sleep(10);
    }
    assert.equal(Deno.readTextFileSync(`/proc/${t.pid}/maps`), maps);
    t.signal(SIGUSR1);
    assertChecksPassed(t, RT_REGS_CHECKS, await t.wait(10000));
  }),
);

Deno.test(
  "crash-safe injection: let go anywhere, the thread keeps its sigaltstack (the frames leave it alone)",
  withTargets(async () => {
    const { t, iter } = await startRegsInLoop(["noavx512"]);
    // A sigaltstack of its own, set by injection: 64 KiB somewhere in its stack mapping.
    const rsp = (() => {
      const tids = freeze(t.pid);
      const r = getRegs(t.pid).rsp;
      for (const tid of tids) detach(tid, 0);
      return r;
    })();
    const ss = { sp: (rsp - 0x40000n) & ~0xfffn, flags: 0, size: 0x10000n };
    const sigaltstack = (): { sp: bigint; flags: number; size: bigint } => {
      const out = rsp - 0x1000n - 4096n * 4n; // below every crash-safe area
      assert.equal(callIn(t.pid, SYS.sigaltstack, 0, out), 0n);
      const b = new Uint8Array(24);
      processVmReadFully(t.pid, out, b);
      const dv = new DataView(b.buffer);
      return {
        sp: dv.getBigUint64(0, true),
        flags: dv.getInt32(8, true),
        size: dv.getBigUint64(16, true),
      };
    };
    const at = rsp - 0x1000n - 4096n * 5n;
    const b = new Uint8Array(24);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, ss.sp, true);
    dv.setInt32(8, ss.flags, true);
    dv.setBigUint64(16, ss.size, true);
    const tids = freeze(t.pid);
    processVmWriteFully(t.pid, at, b);
    for (const tid of tids) detach(tid, 0);
    assert.equal(callIn(t.pid, SYS.sigaltstack, at, 0), 0n);
    assert.deepEqual(sigaltstack(), ss);
    for (const where of LET_GO_POINTS) {
      const mapsBefore = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
      letGoInside(t.pid, freeze(t.pid), where);
      await waitIterations(t, iter, readWord(t.pid, iter), 1000n); // it ran on after the let-go
      await waitUntil(
        `the batch page is gone after ${where}`,
        () => Deno.readTextFileSync(`/proc/${t.pid}/maps`) === mapsBefore,
      );
      assert.deepEqual(sigaltstack(), ss, `sigaltstack after a let-go at ${where}`);
    }
    t.signal(SIGUSR1);
    assertChecksPassed(t, RT_REGS_CHECKS, await t.wait(10000));
  }),
);
