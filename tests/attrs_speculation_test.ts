/**
 * Speculation controls and PR_SET_IO_FLUSHER (engine/task/attrs.ts), on
 * their own: which values a dump saves and in what order restore sets
 * them, with made-up prctl results (the probes of
 * tests/restore_probe_test.ts need a CPU with controls a process may set
 * and CAP_SYS_RESOURCE, and skip without them).
 */

import assert from "node:assert/strict";
import {
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
