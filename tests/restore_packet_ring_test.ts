/**
 * AF_PACKET sockets with mmapped rings (tests/targets/rt_packet_ring.c;
 * libpcap's, so tcpdump's, way of capturing): TPACKET_V1, V2 (with an
 * unused tx ring in the same mapping) and V3 rings come back at the same
 * address with the frames the program owned, and the kernel fills next the
 * frame (block) the program reads next, round the ring.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";

const READY = /^ready pid=(\d+) ring=\S+$/m;

for (const [mode, rounds] of [["v1", 1], ["v2", 1], ["v3", 1], ["v2", 2], ["v3", 2]] as const) {
  Deno.test(
    `packet ring: a ${mode} rx ring read part way comes back where the program reads next${
      rounds > 1
        ? `, ${rounds} dumps and restores in a row (the restored mapping is in pieces)`
        : ""
    }`,
    withTargets(async () => {
      const rt = await startTriggered("rt_packet_ring", READY, { passWork: true, extra: [mode] });
      for (let i = 0; i < rounds; i++) await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(
        rt.t,
        [
          "ring-mapping",
          "ring-options",
          "ring-given-back",
          "ring-owned-kept",
          "ring-continues",
          "ring-position",
        ],
        await rt.t.wait(),
        { what: mode },
      );
    }),
  );
}

const V2_CHECKS = [
  "ring-mapping",
  "ring-options",
  "ring-given-back",
  "ring-owned-kept",
  "ring-continues",
];

for (
  const [mode, what, detail, checks] of [
    ["fork", "a ring mapping a forked child inherited", "not this process's own", V2_CHECKS],
    ["txused", "a tx ring written into", "its tx ring was used", V2_CHECKS],
    ["v3full", "a full V3 ring", "the ring is full", ["ring-full-kept"]],
  ] as const
) {
  Deno.test(
    `packet ring: ${what} is refused by name, the program left running`,
    withTargets(async () => {
      await assertRefusedLeavesRunning("rt_packet_ring", READY, mode, (e) => {
        assert.ok(e.items.some((i) => i.includes(detail)), e.items.join("\n"));
      }, checks);
    }),
  );
}

Deno.test(
  "packet ring: a v3 rx ring after a pre-dump (the chain's final dump reads the ring again)",
  withTargets(async () => {
    const rt = await startTriggered("rt_packet_ring", READY, { passWork: true, extra: ["v3"] });
    const pre = await tempImageDir();
    await checkpoint(rt.t.pid, { dir: pre, preDump: true });
    const dir = await tempImageDir();
    await checkpoint(rt.t.pid, { dir, parent: pre });
    await rt.t.wait();
    const tree = await restore(dir);
    rt.t.resetAfterRestore();
    for (const pid of tree.pids) adoptPid(pid);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(
      rt.t,
      [
        "ring-mapping",
        "ring-options",
        "ring-given-back",
        "ring-owned-kept",
        "ring-continues",
        "ring-position",
      ],
      await rt.t.wait(),
      { what: "v3 after a pre-dump" },
    );
  }),
);
