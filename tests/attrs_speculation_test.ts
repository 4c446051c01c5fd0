/**
 * Speculation controls and PR_SET_IO_FLUSHER (engine/task/attrs.ts), on
 * their own: which values a dump saves and in what order restore sets
 * them, which threads' controls are refused for differing from the main
 * thread's, and which TSC mode and MCE policy each thread gets back, with made-up prctl results (the probes of
 * tests/restore_probe_test.ts need a CPU with controls a process may set
 * and CAP_SYS_RESOURCE, and skip without them).
 */

import assert from "node:assert/strict";
import {
  checkThreadSpeculation,
  collectProcessAttrs,
  type InjectedAttrs,
  restoreAttrsBeforeCredentials,
  restoreCpuAndMdwe,
} from "../engine/task/attrs.ts";
import { Refusals } from "../engine/support.ts";
import type { ProcessImage } from "../engine/model.ts";
import { speculationCtrl } from "../ffi/probe.ts";

const PRCTL = 1, ENABLE = 2, DISABLE = 4, FORCE = 8;

function injected(speculation: number[]): InjectedAttrs {
  return {
    dumpable: 1,
    childSubreaper: false,
    thpDisable: 0,
    membarrier: 0,
    speculation,
    pdeathsig: new Map(),
  };
}

Deno.test("speculation controls: only those a process may set and that differ from cryo's are saved", () => {
  const none = collectProcessAttrs(Deno.pid, injected([-19, -22, FORCE]), new Refusals());
  assert.equal(none.speculation, undefined, "unsupported, or fixed by the kernel: nothing");
  // cryo's own values (this process's) are what restored tasks inherit: not saved.
  const own = [0, 1, 2].map((c) => Number(speculationCtrl(c)));
  const same = collectProcessAttrs(Deno.pid, injected(own), new Refusals());
  assert.equal(same.speculation, undefined);
  const mine = (c: number, v: number) => own[c] === v ? undefined : v & ~PRCTL;
  const some = collectProcessAttrs(
    Deno.pid,
    injected([PRCTL | FORCE, PRCTL | DISABLE, PRCTL | ENABLE]),
    new Refusals(),
  );
  assert.deepEqual(some.speculation, {
    ...(mine(0, PRCTL | FORCE) ? { storeBypass: FORCE } : {}),
    ...(mine(1, PRCTL | DISABLE) ? { indirectBranch: DISABLE } : {}),
    ...(mine(2, PRCTL | ENABLE) ? { l1dFlush: ENABLE } : {}),
  });
});

Deno.test("speculation controls are set in every thread, a forced disable last, before MDWE", () => {
  const calls: string[] = [];
  const image = {
    // This process: restoreAttrsBeforeCredentials writes its oom_score_adj back unchanged.
    pid: Deno.pid,
    threads: [{ tid: Deno.pid, attrs: { pdeathsig: 0, noNewPrivs: false, ioFlusher: true } }, {
      tid: -1,
      attrs: { pdeathsig: 0, noNewPrivs: false },
    }],
    attrs: {
      mdwe: 1,
      speculation: { storeBypass: FORCE, indirectBranch: DISABLE, l1dFlush: ENABLE },
    },
  } as unknown as ProcessImage;
  const inj = {
    call: (tid: number, _nr: number, ...a: (number | bigint)[]) => {
      calls.push(`${tid}:${a.slice(0, 3).join(",")}`);
      return 0n;
    },
    write: () => {},
  };
  restoreCpuAndMdwe(image, inj);
  assert.deepEqual(calls, [
    `${Deno.pid}:53,1,4`,
    "-1:53,1,4",
    `${Deno.pid}:53,2,2`,
    "-1:53,2,2",
    `${Deno.pid}:53,0,8`,
    "-1:53,0,8",
    `${Deno.pid}:65,1,0`,
  ]);
  calls.length = 0;
  // This process's own oom_score_adj, written back unchanged.
  const oomScoreAdj = Number(Deno.readTextFileSync("/proc/self/oom_score_adj").trim());
  restoreAttrsBeforeCredentials({ ...image, attrs: { oomScoreAdj } } as ProcessImage, inj);
  assert.ok(calls.includes(`${Deno.pid}:57,1,0`), calls.join(" "));
  assert.ok(!calls.some((c) => c.startsWith("-1:57")), calls.join(" "));
});

Deno.test("speculation controls per thread: a thread whose controls differ from the main thread's is refused by name", () => {
  const values = (speculation: number[]) => ({ tsc: 1, personality: 0, mempolicy: 0, speculation });
  const same = new Refusals();
  checkThreadSpeculation(
    10,
    [10, 11],
    same,
    new Map([[10, values([PRCTL | ENABLE, -19, -19])], [
      11,
      values([PRCTL | ENABLE, -19, -19]),
    ]]),
  );
  assert.doesNotThrow(() => same.throwIfAny("x"));
  const injectedDiff = new Refusals();
  checkThreadSpeculation(
    10,
    [10, 11],
    injectedDiff,
    new Map([[10, values([PRCTL | ENABLE, -19, -19])], [
      11,
      values([PRCTL | DISABLE, -19, -19]),
    ]]),
  );
  assert.throws(
    () => injectedDiff.throwIfAny("x"),
    /process 10 thread 11: a thread with speculation controls other than its main thread's .*: its storeBypass control is 5, the main thread's 3/,
  );
  // The task iterator's atomic_flags where the threads were not injected.
  const records = (a: number, b: number) => ({
    nsproxy: new Map<number, bigint>(),
    fs: new Map<number, bigint>(),
    files: new Map<number, bigint>(),
    specFlags: new Map([[10, a], [11, b]]),
    threadKeyring: new Map<number, bigint>(),
  });
  const iterSame = new Refusals();
  checkThreadSpeculation(10, [10, 11], iterSame, undefined, records(0x08, 0x08));
  assert.doesNotThrow(() => iterSame.throwIfAny("x"));
  const iterDiff = new Refusals();
  checkThreadSpeculation(10, [10, 11], iterDiff, undefined, records(0, 0x20));
  assert.throws(
    () => iterDiff.throwIfAny("x"),
    /process 10 thread 11: .*its speculation flags are 0x20, the main thread's 0x0/,
  );
});

Deno.test("TSC mode and MCE kill policy: each thread's own; an older image's process-wide values go to threads without their own", () => {
  const calls: string[] = [];
  const inj = {
    call: (tid: number, _nr: number, ...a: (number | bigint)[]) => {
      calls.push(`${tid}:${a.slice(0, 3).join(",")}`);
      return 0n;
    },
    write: () => {},
  };
  const image = (
    attrs: object,
    threads: object[],
  ) => ({ pid: 10, attrs, threads } as unknown as ProcessImage);
  restoreCpuAndMdwe(
    image({}, [
      { tid: 10, attrs: { pdeathsig: 0, noNewPrivs: false } },
      { tid: 11, attrs: { pdeathsig: 0, noNewPrivs: false, tsc: 2, mceKill: 1 } },
    ]),
    inj,
  );
  assert.deepEqual(calls, ["11:26,2,0", "11:33,1,1"]);
  calls.length = 0;
  restoreCpuAndMdwe(
    image({ tsc: 2, mceKill: 0 }, [
      { tid: 10, attrs: { pdeathsig: 0, noNewPrivs: false } },
      { tid: 11, attrs: { pdeathsig: 0, noNewPrivs: false } },
    ]),
    inj,
  );
  assert.deepEqual(calls, ["10:26,2,0", "10:33,1,0", "11:26,2,0", "11:33,1,0"]);
});
