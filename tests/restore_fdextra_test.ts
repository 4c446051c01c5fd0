/**
 * Fd state the other round trips leave out (tests/targets/rt_fdextra.c):
 * packets waiting in a pipe and a FIFO in packet mode (O_DIRECT), with a
 * plain tail, a directory fd part-way through getdents (on ext4 its offset
 * is past 2^53), an O_PATH fd, /proc/self/status part-read, and IPv4/IPv6 UDP and TCP sockets with
 * options the kernel keeps per socket (TTLs, marks, the device bound to,
 * multicast settings, ancillary-data switches, TCP_MAXSEG of a listener,
 * SO_TIMESTAMPING, IP_OPTIONS, IPv6 sticky extension headers and traffic
 * class, ...). After dump, kill and restore the target checks each item. A unix
 * socket with a packet filter attached (a UDP socket's is saved), sockets that joined
 * multicast groups (IPv4, IPv6), SO_TIMESTAMPING with OPT_ID, a file of another
 * process's /proc directory and a pipe holding plain
 * bytes then a packet are refused by name, and the target runs on.
 */

import { childrenOf } from "./helpers/proc.ts";
import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertTriggeredRoundTrip,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) dirpos=(\d+)$/m;

const CHECKS = [
  "pipe-packets",
  "pipe-plain-tail",
  "pipe-odirect",
  "fifo-packets",
  "dir-pos",
  "dir-more",
  "o-path",
  "proc-own",
  "udp-ttl",
  "udp-mark",
  "udp-mcast-ttl",
  "udp-mcast-loop",
  "udp-timestamp",
  "udp-pktinfo",
  "udp-recverr",
  "udp-freebind",
  "udp-pmtu",
  "udp-bindtodevice",
  "tcp-maxseg",
  "tcp-syncnt",
  "tcp-linger2",
  "tcp-ttl",
  "tcp-listening",
  "tcp-mark",
  "tcp-window-clamp",
  "udp6-hops",
  "udp6-recvpktinfo",
  "udp6-timestampns-new",
  "udp-timestamping",
  "udp-ip-options",
  "udp6-tclass",
  "tcp-timestamping-new",
  "udp6-recvhopopts",
  "udp6-recvrthdr",
  "udp6-recvdstopts",
  "udp6-hopopts",
  "udp6-dstopts",
];

Deno.test(
  "pipe packets, a directory's far offset, O_PATH and per-socket options come back",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_fdextra", READY, [], CHECKS);
  }),
);

Deno.test(
  "socket filters, multicast groups, another process's /proc file and a pipe mixing plain bytes and a packet are refused by name",
  withTargets(async () => {
    const rt = await startTriggered("rt_fdextra", READY, { passWork: true, extra: ["refuse"] });
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(rt.t.pid, { dir }),
      (e: Error) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        // The unix socket's (a UDP socket's classic filter is saved: restore_sockbits_test.ts).
        const filters = e.message.match(
          /unix and netlink sockets with a classic one \(SO_ATTACH_FILTER\): a classic BPF filter of 1 instructions/g,
        );
        assert.equal(filters?.length, 1, e.message);
        assert.match(e.message, /SO_TIMESTAMPING 0x82 with SOF_TIMESTAMPING_OPT_ID/);
        assert.match(
          e.message,
          /a pipe or FIFO holding packets \(O_DIRECT writes\) after plain bytes/,
        );
        return true;
      },
    );
    assert.equal(rt.t.poll(), undefined, "the target died");
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(
      rt.t,
      [
        ...CHECKS,
        "refused-udp-filter",
        "refused-unix-filter",
        "refused-proc-other",
        "refused-mixed-pipe",
        "refused-timestamping-id",
      ],
      await rt.t.wait(),
    );
  }),
);

Deno.test(
  "a child holding its parent's /proc file (an fd leaked across fork) keeps it; a parent's on its child's is refused",
  withTargets(async () => {
    const ready = /^ready pid=(\d+) child=(\d+)$/m;
    const rt = await startTriggered("rt_proc_parent", ready);
    const child = Number(rt.ready[2]);
    adoptPid(child); // killed with the target if the test fails before it ends
    const rtd = await dumpKillRestore(rt.t);
    assert.deepEqual(rtd.tree.pids.toSorted(), [rt.t.pid, child].toSorted());
    await Deno.writeTextFile(rt.trigger, "");
    const status = await rt.t.wait();
    assertChecksPassed(
      rt.t,
      ["proc-parent-offset", "proc-parent-names-parent", "proc-parent-flags"],
      status,
    );
    assertChecksPassed(rt.t, ["proc-parent-child"], status, { run: 2 });

    const other = await startTriggered("rt_proc_parent", ready, { extra: ["descendant"] });
    adoptPid(Number(other.ready[2]));
    const dir = await tempImageDir();
    await assert.rejects(() => checkpoint(other.t.pid, { dir }), (e: Error) => {
      assert.ok(e instanceof UnsupportedError, String(e));
      assert.match(
        e.message,
        new RegExp(
          `process ${other.t.pid} fd \\d+ \\(/proc/${other.ready[2]}/status\\): ` +
            `files of another process's .*: process ${other.ready[2]} of the tree`,
        ),
      );
      return true;
    });
    assert.equal(other.t.poll(), undefined, "the target died");
    await Deno.writeTextFile(other.trigger, "");
    assertChecksPassed(other.t, ["proc-parent-child"], await other.t.wait(), { run: 2 });
  }),
);

Deno.test(
  "fds just under the NOFILE hard limit (valgrind's) come back: the temporaries go below them",
  withTargets(async () => {
    const rt = await startTriggered("rt_fd_limit_vdso", /^ready pid=(\d+)$/m, {
      passWork: true,
      extra: ["fds"],
    });
    await dumpKillRestore(rt.t);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(
      rt.t,
      ["fd-60", "fd-61", "fd-62", "fd-63", "nofile", "no-other-fds"],
      await rt.t.wait(),
    );
  }),
);

Deno.test(
  "a process that unmapped its [vdso] (valgrind's does) is restored without one",
  withTargets(async () => {
    const rt = await startTriggered("rt_fd_limit_vdso", /^ready pid=(\d+)$/m, {
      passWork: true,
      extra: ["vdso"],
    });
    await dumpKillRestore(rt.t);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["no-vdso", "vvar", "clock"], await rt.t.wait());
  }),
);

Deno.test(
  "a tree whose fds reach its NOFILE hard limit and that shares a pipe is refused by name and runs on",
  withTargets(async () => {
    const rt = await startTriggered("rt_fd_limit_vdso", /^ready pid=(\d+)$/m, {
      passWork: true,
      extra: ["tree"],
    });
    for (const p of childrenOf(rt.t.pid)) adoptPid(p);
    const dir = await tempImageDir();
    await assert.rejects(() => checkpoint(rt.t.pid, { dir }), (e: Error) => {
      assert.ok(e instanceof UnsupportedError, String(e));
      assert.match(
        e.message,
        new RegExp(
          `process ${rt.t.pid}: objects handed between processes .*: its fds reach 63, the transfer fds \\d+, over its NOFILE hard limit 64`,
        ),
      );
      return true;
    });
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["fd-60", "fd-63", "nofile", "child"], await rt.t.wait());
  }),
);
