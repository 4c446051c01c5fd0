/**
 * IPv4/IPv6 sockets other than TCP and UDP (tests/targets/rt_inetkinds.c):
 * ICMP echo ("ping") sockets, UDP-Lite sockets with their checksum
 * coverage, raw sockets with IP_HDRINCL, IP options and ICMP filters. Found
 * refused by CRIU's zdtm tests socket_icmp, socket6_icmp, socket_udplite,
 * socket-raw and sock_ip_opts00/01 (docs/COMPATIBILITY.md). Each mode is
 * dumped (killed), restored, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode with the checks it must pass. */
const MODES: Record<string, string[]> = {
  ping: ["ping-ident", "ping6-ident", "ping-ttl", "ping-rcvtimeo", "ping-works", "ping6-connected"],
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
