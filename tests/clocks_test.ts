/**
 * The tree's clocks across a restore (engine/task/clocks.ts): a dump
 * records CLOCK_MONOTONIC and CLOCK_BOOTTIME; a restore where either is
 * behind (an image from another boot or host) is refused in one line before
 * anything is made, the image left as it was, and restored with
 * `allowClockBackwards` (`--allow-clock-backwards`). An image of an older
 * cryo (no clocks) restores as before.
 */

import assert from "node:assert/strict";
import { checkClocks } from "../engine/task/clocks.ts";
import type { Manifest } from "../engine/model.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { runCli } from "./helpers/commands.ts";

const clocks = (mono: bigint, boot: bigint) => ({
  monotonicNs: String(mono),
  boottimeNs: String(boot),
});
const withClocks = (c?: ReturnType<typeof clocks>) =>
  ({ host: { ...(c ? { clocks: c } : {}) } }) as unknown as Manifest;

Deno.test("clocks: a restore whose clocks are behind the image's is refused, naming how far", () => {
  const now = () => clocks(5_000_000_000n, 9_000_000_000n);
  // Same boot, later: both clocks moved on.
  checkClocks(withClocks(clocks(4_000_000_000n, 8_000_000_000n)), false, now);
  // An older image has none.
  checkClocks(withClocks(), false, now);
  assert.throws(
    () => checkClocks(withClocks(clocks(5_000_000_000n + 3_723_000_000_000n, 0n)), false, now),
    (e: Error) =>
      e instanceof RestoreError &&
      e.message ===
        "cannot restore: this host's CLOCK_MONOTONIC is 1 h 2 min behind the image's (dumped on another boot or host): the tree would see its clocks go back; --allow-clock-backwards restores it anyway",
  );
  assert.throws(
    () => checkClocks(withClocks(clocks(0n, 9_250_000_000n)), false, now),
    /CLOCK_BOOTTIME is 250 ms behind/,
  );
  checkClocks(withClocks(clocks(10n ** 18n, 10n ** 18n)), true, now);
});

Deno.test(
  "clocks: an image from a host whose clocks were ahead is refused, kept, and restored when allowed",
  withTargets(async () => {
    const rt = await startTriggered("rt_autogroup", /^ready pid=(\d+)$/m, { extra: ["leader"] });
    const dir = await tempImageDir();
    const dump = await checkpoint(rt.t.pid, { dir });
    await rt.t.wait();
    const c = dump.manifest.host.clocks!;
    assert.match(c.monotonicNs, /^\d+$/);
    // As if dumped on a host up for a day longer.
    const path = `${dir}/manifest.json`;
    const m = JSON.parse(Deno.readTextFileSync(path));
    m.host.clocks.monotonicNs = String(BigInt(c.monotonicNs) + 86_400_000_000_000n);
    Deno.writeTextFileSync(path, JSON.stringify(m));
    const cli = await runCli(["restore", dir, "--detach"]);
    assert.equal(cli.code, 1);
    assert.match(
      cli.stderr,
      /^cryo: cannot restore: this host's CLOCK_MONOTONIC is (23 h 59 min|1 d) behind the image's .* --allow-clock-backwards restores it anyway\n$/,
    );
    await assert.rejects(() => restore(dir), /CLOCK_MONOTONIC is (23 h 59 min|1 d) behind/);
    const tree = await restore(dir, { allowClockBackwards: true });
    rt.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== rt.t.pid) adoptPid(pid);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["leader", "autogroup-nice"], await rt.t.wait());
  }),
);
