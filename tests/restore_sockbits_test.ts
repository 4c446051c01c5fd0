/**
 * Socket state bits that no buffer size or option value shows
 * (tests/targets/rt_sockbits.c): SO_BUF_LOCK (which buffer sizes the
 * program fixed; setting a size at restore locks it), SO_NO_CHECK, and a
 * listener of a SO_REUSEPORT group that cleared the option after its bind,
 * UDP sockets shut down, classic BPF filters on TCP and UDP sockets. Found
 * by CRIU's zdtm tests sock_opts02, sock_opts00, socket-tcp-reuseport,
 * socket_udp_shutdown and sock_filter00/01 (docs/COMPATIBILITY.md).
 * Each mode is dumped (killed), restored, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode with the checks it must pass. */
const MODES: Record<string, string[]> = {
  "buf-lock": [
    "lock-tcp-snd",
    "lock-udp-rcv",
    "lock-tcp-sized-unlocked",
    "lock-udp-both",
    "lock-conn-snd",
    "lock-conn-sized-unlocked",
    "lock-size-kept",
    "lock-conn-works",
  ],
  "no-check": ["no-check-udp", "no-check-tcp"],
  "reuseport-cleared": [
    "reuseport-options",
    "reuseport-same-port",
    "reuseport-third",
    "reuseport-spread",
  ],
  "udp-shutdown": [
    "udp-shut-wr",
    "udp-shut-rd",
    "udp-shut-other-way",
    "udp-shut-unconnected",
  ],
  filter: [
    "filter-udp-code",
    "filter-udp-locked",
    "filter-tcp-code",
    "filter-tcp-unlocked",
    "filter-queued-kept",
    "filter-acts",
    "filter-lock-holds",
  ],
};

for (const [mode, checks] of Object.entries(MODES)) {
  Deno.test(
    `socket bits come back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_sockbits", READY, { extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}
