/**
 * Signals that arrive while a freeze seizes the threads are not lost: a
 * thread that takes one between its seize and its interrupt reports a
 * signal-delivery stop, which the freeze resumes with the signal
 * (engine/dump/freeze.ts `awaitStops`). tests/targets/rt_sigflood.c
 * counts queued real-time signals (never merged: each one sent is one
 * handler run) while its sender queues them and dumps with
 * `--leave-running` come one after another; the count must be exact.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const SIGNALS = 200_000;

Deno.test(
  "signals arriving while the threads are seized are delivered, none lost, across 12 dumps",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_sigflood", /^ready pid=(\d+)$/m);
    const dump = async () => {
      const dir = await tempImageDir();
      await checkpoint(t.pid, { dir, leaveRunning: true, sync: false });
      await Deno.remove(dir, { recursive: true });
    };
    await dump(); // the engine's first dump in this process is the slow one
    const sender = await startTarget("rt_sigflood", ["send", String(t.pid), String(SIGNALS)]);
    const t0 = performance.now();
    let dumps = 0;
    while (dumps < 12 && !/^sent /m.test(sender.output())) {
      await dump();
      dumps++;
    }
    await sender.waitFor(/^sent \d+$/m, 60_000);
    const ms = Math.round(performance.now() - t0);
    assert.ok(dumps >= 3, `only ${dumps} dumps in the ${ms} ms the signals came: too few to tell`);
    await Deno.writeTextFile(trigger, "");
    const received = Number((await t.waitFor(/^received (\d+)$/m, 20_000))[1]);
    assert.equal(received, SIGNALS, `${SIGNALS - received} signals lost over ${dumps} dumps`);
  }),
);
