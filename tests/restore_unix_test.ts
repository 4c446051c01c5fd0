/**
 * Round trips of unix sockets (engine/fds/unix.ts) with
 * tests/targets/rt_unix.c: socketpairs of every type with queued bytes and
 * datagrams, shutdown, options, path and abstract listeners with accepted
 * and pending connections, a datagram receiver with named and unnamed
 * senders, a pair whose peer closed, a pair shared with a child. Then what
 * must be refused (fds in flight, bytes on a pending connection, a peer
 * outside the tree without --ext-unix-sk) and the --ext-unix-sk round trip
 * through the library and the CLI; then real programs: `deno run` with a
 * timer, a Worker and its internal socketpairs, and `python3 -c` with a
 * socketpair, a listener and a client.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+)$/m;

Deno.test(
  "unix sockets: pairs, queues, shutdown, options, listeners, pending and accepted connections",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_unix", READY, { passWork: true });
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [], await t.wait());
  }),
);
