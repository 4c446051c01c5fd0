/**
 * A second probe of socket state (tests/targets/rt_sockprobe2.c, one mode
 * per case): socket, IP, IPv6, TCP and UDP options on connections,
 * listeners and UDP sockets beyond those the first probe covered, corked
 * data (TCP_CORK, UDP_CORK), a SO_REUSEPORT group and a saved SYN. Each
 * mode is dumped (killed), restored, and checks itself; what cannot come
 * back exactly is refused by name and the target runs on.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Modes that come back exactly, with the checks each must pass. */
const ROUND_TRIPS: Record<string, string[]> = {
  "tos-priority": ["tos-priority-tcp", "tos-priority-udp"],
  "tcp-mapped": ["mapped-queued", "mapped-reply", "mapped-udp"],
  "udp-mapped-queue": ["udp-mapped-queue"],
  "udp-reuseport": ["udp-reuseport-port", "udp-reuseport-spread"],
  "tcp-bound": ["bound-port", "bound-connect", "bound-source"],
  "tcp-peekoff": ["tcp-peekoff", "tcp-peekoff-peek", "tcp-peekoff-read"],
  reuseport: ["reuseport-same-port", "reuseport-join", "reuseport-spread"],
};

for (const [mode, checks] of Object.entries(ROUND_TRIPS)) {
  Deno.test(
    `socket state comes back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_sockprobe2", READY, { passWork: true, extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}

/** SOL_SOCKET options a unix socket must have set and found again. */
const UNIX_OPTIONS = [
  "SO_PRIORITY",
  "SO_RCVTIMEO",
  "SO_BUSY_POLL",
  "SO_MAX_PACING_RATE",
  "SO_INCOMING_CPU",
  "SO_TXTIME",
  "SO_RCVMARK",
  "SO_SELECT_ERR_QUEUE",
];

/** Options each option mode must have set and found again (the kernel took them all here). */
const OPTION_CHECKS: Record<string, string[]> = {
  "tcp4-conn": [
    "SO_RCVTIMEO",
    "SO_SNDTIMEO",
    "SO_LINGER",
    "IP_TRANSPARENT",
    "SO_BUSY_POLL",
    "SO_PREFER_BUSY_POLL",
    "SO_MAX_PACING_RATE",
    "SO_ZEROCOPY",
    "SO_RCVMARK",
    "SO_SELECT_ERR_QUEUE",
    "SO_WIFI_STATUS",
    "SO_TXREHASH",
    "SO_PRIORITY",
    "TCP_TX_DELAY",
    "TCP_INQ",
    "TCP_RTO_MIN_US",
    "TCP_DELACK_MAX_US",
    "TCP_CONGESTION",
    "IP_TOS",
    "IP_LOCAL_PORT_RANGE",
    "IP_RECVERR_RFC4884",
  ],
  "tcp6-conn": [
    "SO_BUSY_POLL",
    "TCP_INQ",
    "IPV6_TCLASS",
    "IPV6_AUTOFLOWLABEL",
    "IPV6_ADDR_PREFERENCES",
    "IPV6_MINHOPCOUNT",
    "IPV6_RECVERR_RFC4884",
    "IPV6_FLOWINFO_SEND",
  ],
  "tcp4-listen": [
    "TCP_SAVE_SYN",
    "TCP_FASTOPEN_NO_COOKIE",
    "TCP_FASTOPEN_KEY",
    "TCP_DEFER_ACCEPT",
    "TCP_FASTOPEN",
    "SO_ZEROCOPY",
    "IP_TOS",
  ],
  "tcp6-listen": ["TCP_SAVE_SYN", "IPV6_MINHOPCOUNT", "IPV6_ADDR_PREFERENCES"],
  udp4: [
    "SO_INCOMING_CPU",
    "SO_RCVBUFFORCE",
    "SO_SNDBUFFORCE",
    "SO_TXTIME",
    "SO_BROADCAST",
    "UDP_SEGMENT",
    "UDP_ENCAP",
    "IP_PASSSEC",
    "IP_CHECKSUM",
    "IP_UNICAST_IF",
    "IP_MULTICAST_IF",
    "IP_LOCAL_PORT_RANGE",
  ],
  "unix-stream": UNIX_OPTIONS,
  "unix-dgram": UNIX_OPTIONS,
  netlink: [
    ...UNIX_OPTIONS,
    "SO_PASSCRED",
    "SO_PASSSEC",
    "SO_LINGER",
    "SO_SNDTIMEO",
    "SO_RCVLOWAT",
  ],
  udp6: [
    "SO_RCVTIMEO",
    "IPV6_TRANSPARENT",
    "UDP_NO_CHECK6_TX",
    "UDP_NO_CHECK6_RX",
    "IPV6_MULTICAST_IF",
    "IPV6_MULTICAST_ALL",
    "IPV6_AUTOFLOWLABEL",
  ],
};

for (const [mode, names] of Object.entries(OPTION_CHECKS)) {
  Deno.test(
    `socket options come back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_sockprobe2", READY, { passWork: true, extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      const works = mode.endsWith("-conn")
        ? ["conn-works"]
        : mode.endsWith("-listen")
        ? ["listen-works"]
        : [];
      const checks = [...names.map((n) => `opt-${n}`), ...works];
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}

/** Modes the dump refuses: the line it must print, and the checks of the target running on. */
const REFUSED: Record<string, { line: RegExp; checks: string[] }> = {
  "udp-cork": {
    line: /a datagram being built, not sent yet \(UDP_CORK or MSG_MORE; \d+ bytes/,
    checks: ["udp-cork-held", "udp-cork-datagram"],
  },
  "udp-more": {
    line: /a datagram being built, not sent yet \(UDP_CORK or MSG_MORE; \d+ bytes/,
    checks: ["udp-cork-held", "udp-cork-datagram"],
  },
  "udp-err": {
    line: /an error pending on it \(SO_ERROR\) or on its error queue \(IP_RECVERR, MSG_ERRQUEUE\)/,
    checks: ["udp-err"],
  },
  "udp-errqueue": {
    line: /an error pending on it \(SO_ERROR\) or on its error queue \(IP_RECVERR, MSG_ERRQUEUE\)/,
    checks: ["udp-errqueue"],
  },
  "udp-l2tp": {
    line: /UDP_ENCAP type 3 \(a kernel tunnel/,
    checks: ["udp-l2tp"],
  },
  "saved-syn": {
    line: /the connection's SYN saved by TCP_SAVE_SYN and not read yet/,
    checks: ["saved-syn"],
  },
};

for (const [mode, { line, checks }] of Object.entries(REFUSED)) {
  Deno.test(
    `socket state refused by name: ${mode}`,
    withTargets(() =>
      assertRefusedLeavesRunning("rt_sockprobe2", READY, mode, (e) => {
        // saved-syn: the client's end, whose peer is refused, is named too.
        assert.ok(e.items.some((l) => line.test(l)), e.message);
        if (mode !== "saved-syn") assert.equal(e.items.length, 1, e.message);
      }, checks)
    ),
  );
}
