/**
 * Round trip of signal state and interval timers: tests/targets/rt_signals.c
 * installs handlers with flags and masks, an ignored signal, a blocked mask
 * with thread and process pending signals (two queued real-time signals
 * with values), a sigaltstack, a 50 ms ITIMER_REAL with a counting SIGALRM
 * handler and an ITIMER_VIRTUAL; it is dumped, killed and restored with the
 * same pid, then checks everything itself after the trigger file appears.
 */

import assert from "node:assert/strict";
import { readImageFile } from "../engine/image/reader.ts";
import { dumpKillRestore, removeImageDir } from "./helpers/roundtrip.ts";
import { startTarget, type Target, withTargets } from "./helpers/targets.ts";

/** The checks rt_signals.c reports, in the order it prints them. */
const SIGNAL_CHECKS = [
  "sigaction-table",
  "sigaction-usr1",
  "sigaction-hup",
  "sig-ign",
  "sig-dfl",
  "sigmask",
  "sigpending",
  "sigaltstack",
  "itimer-real",
  "itimer-virtual",
  "alarms-continue",
  "sig-ign-effective",
  "pending-thread-usr2",
  "pending-process-winch",
  "pending-queued-rt",
  "no-spurious-signals",
  "handler-onstack",
  "handler-mask",
  "resethand",
];

const SIGUSR2 = 12;
const SIGWINCH = 28;

/** Asserts that every expected check line says ok and the target printed PASS and exited 0. */
function assertChecksPassed(t: Target, names: string[], code: number | undefined): void {
  const out = t.output();
  const failed = out.split("\n").filter((l) => /^check \S+ FAIL/.test(l) || l === "FAIL");
  assert.deepEqual(failed, [], `target reported failures:\n${out}`);
  for (const name of names) {
    assert.match(out, new RegExp(`^check ${name} ok$`, "m"), `no "check ${name} ok" in:\n${out}`);
  }
  assert.match(out, /^PASS$/m, out);
  assert.equal(code, 0, out);
}

Deno.test(
  "signal handlers, masks, pending signals, sigaltstack and itimers survive dump, kill and restore",
  withTargets(async () => {
    const work = await Deno.makeTempDir({ prefix: "cryo-rt-signals-" });
    const trigger = `${work}/go`;
    let dir: string | undefined;
    try {
      const t = await startTarget("rt_signals", [trigger]);
      const ready = await t.waitFor(/^ready pid=(\d+) altstack=0x([0-9a-f]+) alarms=(\d+)$/m);
      const pid = t.pid;
      assert.equal(Number(ready[1]), pid);
      assert.ok(Number(ready[3]) >= 1, "the interval timer did not fire before the dump");

      const rt = await dumpKillRestore(t);
      dir = rt.dir;
      assert.equal(rt.tree.rootPid, pid, "restored with another pid");
      assert.deepEqual(rt.tree.pids, [pid]);

      // The image itself: the timer, the thread's private SIGUSR2, the process's SIGWINCH.
      const proc = (await readImageFile(`${rt.dir}/${pid}.elf`)).process;
      assert.equal(proc.itimers.real.intervalUs, 50000);
      assert.equal(proc.itimers.virtual.intervalUs, 7_000_000);
      const main = proc.threads.find((x) => x.tid === pid)!;
      assert.ok(
        main.pending.some((s) => s.signo === SIGUSR2),
        "SIGUSR2 not pending for the thread",
      );
      assert.ok(proc.sharedPending.some((s) => s.signo === SIGWINCH), "SIGWINCH not pending");
      assert.equal(main.sigaltstack.sp, `0x${ready[2]}`);

      await Deno.writeTextFile(trigger, "");
      const st = await t.wait(15000);
      assertChecksPassed(t, SIGNAL_CHECKS, st.kind === "exited" ? st.code : undefined);
    } finally {
      if (dir) await removeImageDir(dir);
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }),
);
