/**
 * UDP datagrams waiting to be read (tests/targets/rt_udpq.c): an IPv4
 * socket holding datagrams from two senders (one empty, one of 1200 bytes,
 * a small SO_RCVBUF) and one from an address of no interface here, a dual-stack IPv6 socket holding IPv6 datagrams and
 * one from an IPv4 sender, a connected socket holding one from its peer.
 * After dump, kill and restore, and after a `leaveRunning` dump, the target
 * reads every queue and checks payloads, sources and order, that nothing
 * more is queued, and that SO_PEEK_OFF is as it was (off on the queued
 * sockets, 5 on an empty one). A datagram queued on a socket before it was
 * connected to another peer, and ones on sockets with UDP_GRO and with
 * IP_RECVTTL (per-datagram data), are refused by name, and the target
 * keeps its queues untouched. Re-queueing itself (on a socket of this
 * process) fails naming the datagram a full receive buffer dropped, and
 * refuses a socket something else reached first.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { requeueDatagrams } from "../engine/fds/udp_queue.ts";
import type { InetSocket } from "../engine/model.ts";
import { encodeBase64 } from "../engine/base64.ts";
import {
  AF,
  closeFd,
  decodeInetAddr,
  encodeInetAddr,
  newSocket,
  setsockoptInt,
  SO,
  SOCK,
  sockName,
  SOL,
} from "../ffi/net.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

const READY = /^ready pid=(\d+)$/m;

const CHECKS = [
  "ports",
  "peek-off",
  "v4-1",
  "v4-2",
  "v4-3",
  "v4-4",
  "v4-5",
  "v4-6",
  "v4-empty",
  "v6-1",
  "v6-2",
  "v6-3",
  "v6-4",
  "v6-empty",
  "conn-1",
  "conn-empty",
  "conn-peer",
  "v4-after-1",
  "v4-after-empty",
  "v6-after-1",
  "v6-after-empty",
  "conn-after-1",
  "conn-after-empty",
];

/** The ports the target printed, by socket name. */
function portsOf(out: string): Record<string, number> {
  const line = out.match(/^ports (.*)$/m)?.[1] ?? "";
  return Object.fromEntries(line.split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, +v]));
}

Deno.test(
  "queued UDP datagrams come back with their payloads, senders and order",
  withTargets(async () => {
    const rt = await startTriggered("rt_udpq", READY);
    const pid = rt.t.pid;
    const { dir } = await dumpKillRestore(rt.t);
    // The image holds the queues, oldest first, with their senders.
    const image = (await readImageFile(`${dir}/${pid}.elf`)).process;
    const ports = portsOf(rt.t.output());
    const queue = image.fds.find((f) => f.inet?.local?.port === ports.r4)?.inet?.datagrams;
    assert.deepEqual(queue?.map((d) => d.from.port), [
      ports.a4,
      ports.b4,
      ports.a4,
      ports.b4,
      ports.a4,
      4000,
    ]);
    assert.equal(queue?.[5].from.address, "203.0.113.7");
    assert.equal(queue?.[2].data, "");
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, CHECKS, await rt.t.wait());
  }),
);

Deno.test(
  "a leaveRunning dump leaves every UDP queue as it was",
  withTargets(async () => {
    const rt = await startTriggered("rt_udpq", READY);
    await checkpoint(rt.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.equal(rt.t.poll(), undefined, "the target died");
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, CHECKS, await rt.t.wait());
  }),
);

Deno.test(
  "a datagram queued before connect() to another peer, and ones on UDP_GRO and IP_RECVTTL sockets, are refused by name",
  withTargets(async () => {
    const rt = await startTriggered("rt_udpq", READY, { extra: ["refuse"] });
    const p = portsOf(rt.t.output());
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(rt.t.pid, { dir }),
      (e: Error) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        assert.match(
          e.message,
          new RegExp(
            `UDP datagrams that cannot be queued again exactly: on 127\\.0\\.0\\.1:${p.rx}: ` +
              `datagram 1 from 127\\.0\\.0\\.1:${p.a4}: it was queued before the socket was ` +
              `connected to 127\\.0\\.0\\.1:${p.b4}`,
          ),
        );
        assert.match(
          e.message,
          new RegExp(
            `on 127\\.0\\.0\\.1:${p.rg}: UDP_GRO is on \\(queued datagrams may be merged\\)`,
          ),
        );
        assert.match(
          e.message,
          new RegExp(
            `on 127\\.0\\.0\\.1:${p.ri}: IP_RECVTTL on: what the process reads with each datagram`,
          ),
        );
        return true;
      },
    );
    assert.equal(rt.t.poll(), undefined, "the target died");
    assert.equal(Number(statusField(rt.t.pid, "TracerPid")), 0, "still traced");
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, [
      ...CHECKS,
      "refused-1",
      "refused-empty",
      "refused-gro-1",
      "refused-gro-empty",
      "refused-ttl-1",
      "refused-ttl-empty",
    ], await rt.t.wait());
  }),
);

/** A UDP socket of this process bound to 127.0.0.1 (port chosen by the kernel), SO_RCVBUF `rcvbuf`. */
function localSocket(rcvbuf?: number): { fd: number; socket: InetSocket } {
  const fd = newSocket(AF.INET, SOCK.DGRAM);
  if (rcvbuf) setsockoptInt(fd, SOL.SOCKET, SO.RCVBUF, rcvbuf);
  const addr = encodeInetAddr(AF.INET, { address: "127.0.0.1", port: 0 });
  assert.equal(rawSyscall(SYS.bind, fd, addr, addr.length), 0n);
  const local = decodeInetAddr(sockName(fd)!)!;
  return {
    fd,
    socket: {
      family: "ipv4",
      proto: "udp",
      state: "closed",
      local: { address: local.address, port: local.port },
      peer: null,
      options: [],
    },
  };
}

Deno.test("re-queueing fails naming the datagram the receive buffer cannot hold", () => {
  const { fd, socket } = localSocket(1);
  try {
    const big = encodeBase64(new Uint8Array(3000));
    socket.datagrams = [1, 2, 3, 4].map((i) => ({
      from: { address: "203.0.113.7", port: 4000 + i },
      data: big,
    }));
    assert.throws(
      () => requeueDatagrams(Deno.pid, fd, socket),
      /datagram \d from 203\.0\.113\.7:400\d was dropped \(receive buffer of \d+ bytes full\)/,
    );
  } finally {
    closeFd(fd);
  }
});

Deno.test("re-queueing refuses a socket that already received something", () => {
  const { fd, socket } = localSocket();
  try {
    socket.datagrams = [{ from: { address: "127.0.0.1", port: 9 }, data: "" }];
    requeueDatagrams(Deno.pid, fd, socket);
    assert.throws(
      () => requeueDatagrams(Deno.pid, fd, socket),
      /other datagrams reached the socket before its queue was put back/,
    );
  } finally {
    closeFd(fd);
  }
});
