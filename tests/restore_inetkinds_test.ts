/**
 * IPv4/IPv6 sockets other than TCP and UDP (tests/targets/rt_inetkinds.c):
 * ICMP echo ("ping") sockets, UDP-Lite sockets with their checksum
 * coverage, raw sockets with IP_HDRINCL, IP options and ICMP filters. Found
 * refused by CRIU's zdtm tests socket_icmp, socket6_icmp, socket_udplite,
 * socket-raw and sock_ip_opts00/01 (docs/COMPATIBILITY.md). Each mode is
 * dumped (killed), restored, and checks itself; datagrams queued on them
 * are refused by name, and the process goes on with them.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertDumpRefused, dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode with the checks it must pass. */
const MODES: Record<string, string[]> = {
  ping: [
    "ping-ident",
    "ping6-ident",
    "ping-ttl",
    "ping-rcvtimeo",
    "ping-works",
    "ping6-connected",
    "ping-shut-rd",
  ],
  udplite: [
    "udplite-cscov",
    "udplite-bound",
    "udplite-a-to-b",
    "udplite-b-connected",
    "udplite-shut-wr",
  ],
  raw: [
    "raw-hdrincl",
    "raw-ip-options",
    "raw-bound",
    "raw-icmp-filter",
    "raw-icmp6-filter",
    "raw-protocol",
    "raw-connected",
    "raw-shut-rdwr",
  ],
};

for (const [mode, checks] of Object.entries(MODES)) {
  Deno.test(
    `other inet sockets come back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_inetkinds", READY, { extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}

Deno.test(
  "ping and UDP-Lite sockets with datagrams queued are refused by name, and keep them",
  withTargets(async () => {
    const rt = await startTriggered("rt_inetkinds", READY, { extra: ["queued"] });
    await assertDumpRefused(rt.t.pid, (items, message) => {
      for (const [fd, kind] of [[3, "ping"], [4, "udplite"]]) {
        const re = new RegExp(
          `^process ${rt.t.pid} fd ${fd} \\(socket:\\[\\d+\\]\\): UDP-Lite, ping and raw ` +
            `sockets with datagrams waiting to be read: ${kind} socket with datagrams`,
        );
        assert.ok(items.some((l) => re.test(l)), `${re}\n${message}`);
      }
      assert.equal(items.length, 2, message);
    });
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["queued-ping-kept", "queued-udplite-kept"], await rt.t.wait());
  }),
);
