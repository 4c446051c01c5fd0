/**
 * Round trip of CPU state: tests/targets/rt_regs.c holds known values in
 * the general purpose registers, the x87 stack and control word, MXCSR,
 * xmm/ymm (and zmm/opmask with AVX-512), DF and AC flags, fs_base/gs_base
 * and a TLS variable, and spins in an assembly loop that re-checks them on
 * every iteration. It is dumped while inside that loop, killed and
 * restored with the same pid; SIGUSR1 then ends the loop and the target
 * reports every check itself.
 */

import assert from "node:assert/strict";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed, RT_REGS_CHECKS } from "./helpers/checks.ts";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { withTargets } from "./helpers/targets.ts";
import { readWord, startRegsInLoop, waitIterations } from "./helpers/rt_regs.ts";

const EFLAGS_DF = 0x400n;
const EFLAGS_AC = 0x40000n;

/** Checks rt_regs.c reports only when it uses AVX-512. */
const AVX512_CHECKS = ["zmm-upper", "zmm16-31", "opmask"];

/** Dumps rt_regs inside its checking loop, restores it, stops the loop and checks its report. */
async function roundTripRegisters(args: string[]): Promise<void> {
  const { t, ready, iter } = await startRegsInLoop(args); // inside its checking loop
  const pid = t.pid;
  assert.equal(Number(ready[1]), pid);
  const loopStart = BigInt(`0x${ready[2]}`);
  const loopEnd = BigInt(`0x${ready[3]}`);
  const avx512 = ready[4] === "yes";

  const rt = await dumpKillRestore(t);
  assert.deepEqual(rt.tree.pids, [pid]);

  // The dump must have caught the thread inside the checking loop, with DF and AC set (with
  // `thread`, the second thread: parked at its birth, its state set by the finalize).
  const image = await readImageFile(`${rt.dir}/${pid}.elf`);
  const threaded = args.includes("thread");
  assert.equal(image.process.threads.length, threaded ? 2 : 1);
  const main = image.process.threads.find((x) => threaded ? x.tid !== pid : x.tid === pid);
  assert.ok(main, "no checking thread in the image");
  const rip = BigInt(main.regs.rip);
  assert.ok(
    rip >= loopStart && rip <= loopEnd,
    `dumped rip 0x${rip.toString(16)} is outside the loop 0x${loopStart.toString(16)}-0x${
      loopEnd.toString(16)
    }`,
  );
  const eflags = BigInt(main.regs.eflags);
  assert.equal(
    eflags & (EFLAGS_DF | EFLAGS_AC),
    EFLAGS_DF | EFLAGS_AC,
    `eflags ${main.regs.eflags}`,
  );

  // Many iterations of re-checking after the restore.
  await waitIterations(t, iter, readWord(pid, iter), 10000n);
  assert.equal(t.poll(), undefined, `restored target died early:\n${t.output()}`);
  t.signal(SIGUSR1);
  const st = await t.wait(10000);
  const names = avx512 ? [...RT_REGS_CHECKS, ...AVX512_CHECKS] : RT_REGS_CHECKS;
  assertChecksPassed(t, names, st);
}

Deno.test(
  "registers survive dump, kill and restore inside a checking loop (GPR, x87, SSE, AVX, AVX-512, flags, fs/gs, TLS)",
  withTargets(() => roundTripRegisters([])),
);

Deno.test(
  "registers survive dump, kill and restore with AVX only (AVX-512 state unused)",
  withTargets(() => roundTripRegisters(["noavx512"])),
);

Deno.test(
  "registers of a thread but the main one survive dump, kill and restore inside a checking loop",
  withTargets(() => roundTripRegisters(["thread"])),
);
