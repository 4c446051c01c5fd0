/**
 * A TCP connection between two processes of the tree dumped at a zero
 * window both ways (tests/targets/rt_tcpwin.c: both receive queues full,
 * the child blocked in a write, the parent not reading, 4 MiB buffers on
 * the parent's end): after the restore the parent reads part of the
 * child's stream, then writes blocking while the child reads; both streams
 * must arrive exact within the target's time limit, and each end's segment
 * size (TCP_MAXSEG) must be what it was, up to 32767. A restored loopback
 * connection used to start with 524-byte segments, below the window scale's
 * unit: zdtm's socket-tcpbuf-local hung after a restore (the receiver
 * dropped one for lack of memory, and the sender's ACKs, stamped beyond the
 * receiver's shrunk window, were discarded with their window updates). The
 * stall itself needs that drop and a backed-off retransmission, which this
 * target does not produce reliably: on the code before, its segment-size
 * check is what fails (docs/COMPATIBILITY.md "TCP connections restored at
 * a zero window").
 */

import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { checkpointRetrying, startFullQueues, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) inq=(\d+) outq=(\d+)$/m;
const CHECKS = ["stream", "count", "time", "mss", "peer"];
const optIns = ["tcp-established"];
/** Bytes the child writes blocking once the queues are full. */
const MORE = 16 << 20;

Deno.test(
  "a TCP connection inside the tree dumped at a zero window, one end blocked in a write: both streams exact in time after restore, its segment size kept (loopback: up to 32767)",
  withTargets(async () => {
    const { t, trigger } = await startFullQueues(
      "rt_tcpwin",
      READY,
      String(MORE),
      64 << 10,
      1 << 20,
    );
    const dir = await tempImageDir();
    await checkpointRetrying(t.pid, { dir, optIns });
    await t.wait(30000);
    const tree = await restore(dir, { optIns });
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(60000), { what: `restored from ${dir}` });
  }),
);
