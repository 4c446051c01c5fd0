/**
 * Character devices with state per open file (engine/fds/devices.ts): a
 * dump of a process holding /dev/kmsg (its read position), /dev/net/tun
 * attached to an interface, or /dev/cpu_dma_latency with a latency request
 * is refused naming each and what reopening would lose; the process goes
 * on untouched (tests/targets/rt_devices.c checks its tun fd and its
 * request after). Devices with nothing of their own per open file
 * (/dev/null, /dev/urandom, /dev/kvm, /dev/loop-control) are not refused.
 * Before, every device fd was restored by reopening its path: the tun fd
 * came back detached, the request was gone, the log was read again.
 */

import assert from "node:assert/strict";
import { statefulDevice } from "../engine/fds/devices.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { assertDumpRefused, dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

Deno.test(
  "devices: /dev/kmsg, an attached tun fd and a PM QoS request are refused by name, the process untouched",
  withTargets(async () => {
    const rt = await startTriggered("rt_devices", READY, {
      extra: ["kmsg", "tun", "dma", "null", "urandom", "kvm", "loop-control"],
    });
    const out = rt.t.output();
    const opened = [...out.matchAll(/^opened (\S+) fd (\d+)$/gm)].map((m) => [m[1], m[2]]);
    const stateful = opened.filter(([n]) => ["kmsg", "tun", "dma"].includes(n));
    if (!stateful.length) {
      console.log(`skipped: no stateful device could be opened here:\n${out}`);
      return;
    }
    const name: Record<string, string> = {
      kmsg: "kmsg: reopening it would lose its read position in the kernel log",
      tun: "tun: reopening it would lose the network interface it is attached to",
      dma: "cpu_dma_latency: reopening it would lose the latency request it holds",
    };
    await assertDumpRefused(rt.t.pid, (items, message) => {
      const want = stateful.map(([n, fd]) =>
        new RegExp(`^process ${rt.t.pid} fd ${fd} \\(/dev/\\S+\\): .*: ${name[n]}$`)
      );
      assert.equal(items.length, want.length, message);
      for (const re of want) assert.ok(items.some((l) => re.test(l)), `${re}\n${message}`);
    });
    await Deno.writeTextFile(rt.trigger, "");
    const checks = [
      ...(stateful.some(([n]) => n === "tun") ? ["tun-attached"] : []),
      ...(stateful.some(([n]) => n === "dma") ? ["dma-request"] : []),
    ];
    assertChecksPassed(rt.t, checks, await rt.t.wait());
  }),
);

Deno.test("devices: the stateless ones are not on the list", () => {
  const dev = (major: number, minor: number) => major * 256 + minor;
  assert.equal(statefulDevice(dev(1, 3)), undefined); // null
  assert.equal(statefulDevice(dev(1, 9)), undefined); // urandom
  assert.equal(statefulDevice(dev(5, 0)), undefined); // tty
  assert.equal(statefulDevice(dev(1, 11))?.name, "kmsg");
  if (pathExists("/sys/dev/char/10:200")) assert.equal(statefulDevice(dev(10, 200))?.name, "tun");
  if (pathExists("/sys/dev/char/10:232")) assert.equal(statefulDevice(dev(10, 232)), undefined); // kvm
});

Deno.test(
  "devices: /dev/kmsg opened write-only (a logger) is saved and reopened",
  withTargets(async () => {
    const rt = await startTriggered("rt_devices", READY, { extra: ["kmsgw"] });
    const fd = rt.t.output().match(/^opened kmsgw fd (\d+)$/m)?.[1];
    if (!fd) {
      console.log(`skipped: /dev/kmsg cannot be opened here:\n${rt.t.output()}`);
      return;
    }
    await dumpKillRestore(rt.t);
    assert.equal(Deno.readLinkSync(`/proc/${rt.t.pid}/fd/${fd}`), "/dev/kmsg");
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, [], await rt.t.wait());
  }),
);
