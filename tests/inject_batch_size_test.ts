/**
 * Injected syscall batches of any size (engine/dump/injected.ts
 * `InjectionSession.calls`): a batch of more steps than one table on the
 * thread's free stack holds runs in several runs and returns every result;
 * steps that point into the thread's own stack above the scratch page (the
 * crash-safe frames, the red zone, the live stack) are refused before
 * anything runs. A NUMA policy read once put 2000 results of 4 bytes at
 * 4-byte steps from the start of the 4 KiB scratch page: it overwrote the
 * main thread's live stack and the target died. rt_regs checks every
 * register in its loop; the test also compares its stack above the stack
 * pointer before and after.
 */

import assert from "node:assert/strict";
import { assertChecksPassed, RT_REGS_CHECKS } from "./helpers/checks.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { withTargets } from "./helpers/targets.ts";
import { readWord, startRegsInLoop, waitIterations } from "./helpers/rt_regs.ts";
import { detach, getRegs } from "../ffi/ptrace.ts";
import { processVmReadFully } from "../ffi/process_vm.ts";
import { SYS } from "../ffi/sysno.ts";
import {
  InjectionLimitError,
  type InjectionSession,
  MAX_BATCH,
  SCRATCH_BYTES,
  withInjection,
} from "../engine/dump/injected.ts";
import { freezeThreads as freeze } from "./helpers/ptrace_stop.ts";
import { readMaps } from "../engine/proc/maps.ts";

/** Bytes of the live stack compared above the stack pointer. */
const LIVE = 2048;

/**
 * Freezes a running rt_regs, runs `fn` in an injection session on it, lets
 * it go; then checks that its live stack above its stack pointer and its
 * mappings are as before and that it goes on checking its registers.
 */
async function inRegsTarget<T>(fn: (s: InjectionSession, pid: number) => T): Promise<T> {
  const { t, iter } = await startRegsInLoop(["noavx512"]);
  const maps = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
  const tids = freeze(t.pid);
  const rsp = getRegs(t.pid).rsp;
  const before = new Uint8Array(LIVE);
  processVmReadFully(t.pid, rsp, before);
  let result: T;
  try {
    result = withInjection(t.pid, (s) => fn(s, t.pid), undefined, readMaps(t.pid));
    const after = new Uint8Array(LIVE);
    processVmReadFully(t.pid, rsp, after);
    assert.deepEqual(after, before, "the live stack above the stack pointer is as before");
  } finally {
    for (const tid of tids) detach(tid, 0);
  }
  await waitIterations(t, iter, readWord(t.pid, iter), 10000n);
  assert.equal(t.poll(), undefined, `the target died:\n${t.output()}`);
  assert.equal(Deno.readTextFileSync(`/proc/${t.pid}/maps`), maps);
  t.signal(SIGUSR1);
  assertChecksPassed(t, RT_REGS_CHECKS, await t.wait(10000));
  return result;
}

for (const n of [MAX_BATCH, 5000]) {
  Deno.test(
    `injected batch: ${n} steps run and return every result, the target goes on`,
    withTargets(async () => {
      let pid = 0;
      let runs = 0;
      const r = await inRegsTarget((s, p) => {
        pid = p;
        // getpid and getppid alternate: a result out of place would show.
        const r = s.calls(
          p,
          Array.from({ length: n }, (_, k) => ({ nr: k % 2 ? SYS.getppid : SYS.getpid, args: [] })),
        );
        runs = s.batchRuns;
        return r;
      });
      assert.equal(r.length, n);
      r.forEach((v, k) => {
        if (k % 2 === 0) assert.equal(v, BigInt(pid), `step ${k}`);
        else assert.ok(v > 0n && v !== BigInt(pid), `step ${k}: ${v}`);
      });
      // In batches (not one injected syscall each), of at most MAX_BATCH steps.
      assert.ok(runs >= Math.ceil(n / MAX_BATCH) && runs <= Math.ceil(n / 64), `${runs} runs`);
    }),
  );
}

Deno.test(
  "injected batch: steps whose results would go past the scratch page are refused before they run",
  withTargets(async () => {
    await inRegsTarget((s, pid) => {
      const stack = readMaps(pid).find((m) => m.start <= s.scratch && s.scratch < m.end)!;
      // The NUMA read that killed a target: 2000 modes of 4 bytes from the scratch page's start.
      const steps = Array.from({ length: 2000 }, (_, k) => ({
        nr: SYS.get_mempolicy,
        args: [s.scratch + BigInt(4 * k), 0, 0, stack.start, 2 /* MPOL_F_ADDR */],
      }));
      assert.throws(() => s.calls(pid, steps), InjectionLimitError);
      // One by one as well (a step above the scratch page, the first one).
      assert.throws(
        () => s.call(pid, SYS.get_mempolicy, s.scratch + BigInt(SCRATCH_BYTES), 0, 0, 0, 0),
        InjectionLimitError,
      );
      // Reads and writes of the scratch page past its end.
      assert.throws(() => s.read(SCRATCH_BYTES - 4, 8), InjectionLimitError);
      assert.throws(() => s.write(SCRATCH_BYTES, new Uint8Array(1)), InjectionLimitError);
      // What fits runs: the same reads within the page.
      const ok = s.calls(pid, steps.slice(0, SCRATCH_BYTES / 4));
      assert.ok(ok.every((v) => v === 0n), "get_mempolicy of the stack succeeded");
    });
  }),
);
