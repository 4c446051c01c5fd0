/**
 * Codecs of ffi/net.ts and ffi/tcp_repair.ts against byte layouts the
 * kernel uses: sockaddr_in, sockaddr_in6 (zero compression, v4-mapped,
 * scope id), sockaddr_nl and the tcp_repair_opt list; addresses read
 * back from real sockets; the check of socket records read from an image.
 */

import { remoteAddress } from "../engine/proc/net_owners.ts";
import assert from "node:assert/strict";
import {
  AF,
  closeFd,
  decodeInetAddr,
  decodeNetlinkAddr,
  encodeInetAddr,
  encodeNetlinkAddr,
  newSocket,
  SOCK,
  sockName,
} from "../ffi/net.ts";
import { encodeRepairOptions } from "../ffi/tcp_repair.ts";
import { socketRecordProblem } from "../engine/fds/inet_schema.ts";
import type { FdInfo, InetSocket } from "../engine/model.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

Deno.test("net: sockaddr_in and sockaddr_in6 round trip, byte-exact", () => {
  const v4 = encodeInetAddr(AF.INET, { address: "127.0.0.1", port: 8080 });
  assert.deepEqual([...v4.subarray(0, 8)], [2, 0, 0x1f, 0x90, 127, 0, 0, 1]);
  assert.deepEqual(decodeInetAddr(v4), { address: "127.0.0.1", port: 8080 });
  for (const address of ["::1", "::", "fe80::1:2", "2001:db8::8:800:200c:417a", "::ffff:7f00:1"]) {
    const b = encodeInetAddr(AF.INET6, { address, port: 443, scopeId: 3, flowinfo: 0 });
    assert.equal(b.length, 28);
    assert.deepEqual(decodeInetAddr(b), { address, port: 443, flowinfo: 0, scopeId: 3 });
  }
  const mapped = encodeInetAddr(AF.INET6, { address: "::ffff:7f00:1", port: 1 });
  assert.deepEqual([...mapped.subarray(8, 24)], [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0xff,
    0xff,
    127,
    0,
    0,
    1,
  ]);
});

Deno.test("net: the kernel's own addresses decode (bind to port 0, read back)", () => {
  for (const [family, address] of [[AF.INET, "127.0.0.1"], [AF.INET6, "::1"]] as const) {
    const fd = newSocket(family, SOCK.STREAM);
    try {
      const addr = encodeInetAddr(family, { address, port: 0 });
      assert.equal(rawSyscall(SYS.bind, fd, addr, addr.length), 0n);
      const got = decodeInetAddr(sockName(fd)!);
      assert.equal(got?.address, address);
      assert.ok(got!.port > 0);
    } finally {
      closeFd(fd);
    }
  }
});

Deno.test("net: sockaddr_nl and the TCP_REPAIR_OPTIONS list", () => {
  const nl = encodeNetlinkAddr({ portid: 0xfffffffe, groups: 5 });
  assert.deepEqual([...nl], [16, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 5, 0, 0, 0]);
  assert.deepEqual(decodeNetlinkAddr(nl), { portid: 0xfffffffe, groups: 5 });
  const opts = encodeRepairOptions({
    mss: 1460,
    wscale: { snd: 7, rcv: 9 },
    sack: true,
    timestamps: true,
  });
  const dv = new DataView(opts.buffer);
  const pairs = [0, 1, 2, 3].map((i) => [dv.getUint32(i * 8, true), dv.getUint32(i * 8 + 4, true)]);
  assert.deepEqual(pairs, [[2, 1460], [3, 7 | (9 << 16)], [4, 0], [8, 0]]);
});

Deno.test("net: damaged socket records in an image are refused naming the field", () => {
  const base: FdInfo = {
    fd: 3,
    kind: "socket",
    target: "socket:[1]",
    flags: 2,
    cloexec: false,
    pos: 0,
    mntId: 0,
    extra: {},
    restore: "tcp",
  };
  const listener: InetSocket = {
    family: "ipv6",
    proto: "tcp",
    state: "listen",
    local: { address: "::1", port: 80 },
    peer: null,
    options: [{ level: 1, name: 2, label: "SO_REUSEADDR", int: 1 }],
    backlog: 5,
  };
  assert.equal(socketRecordProblem({ ...base, inet: listener }), undefined);
  const cases: [InetSocket, RegExp][] = [
    [{ ...listener, local: { address: "::1:::2", port: 80 } }, /inet\.local\.address: not an ipv6/],
    [{ ...listener, local: { address: "::1", port: 70000 } }, /inet\.local\.port/],
    [{ ...listener, state: "established" }, /established connection needs tcp/],
    [{ ...listener, proto: "udp" }, /UDP socket is never listening/],
    [{ ...listener, proto: "ping" }, /ping socket is never listening/],
    [
      { ...listener, proto: "raw", state: "closed" },
      /a raw socket, and only one, has its protocol/,
    ],
    [{ ...listener, proto: "udplite", state: "closed", protocol: 1 }, /and only one, has its/],
    [{ ...listener, proto: "raw", state: "closed", protocol: 263 }, /inet\.protocol/],
    [
      {
        ...listener,
        proto: "udplite",
        state: "closed",
        datagrams: [{ from: { address: "::1", port: 5 }, data: "" }],
      },
      /only a bound UDP socket has queued datagrams/,
    ],
    [
      { ...listener, datagrams: [{ from: { address: "::1", port: 5 }, data: "" }] },
      /only a bound UDP socket has queued datagrams/,
    ],
    [
      {
        ...listener,
        proto: "udp",
        state: "closed",
        datagrams: [{ from: { address: "10.0.0.1", port: 5 }, data: "" }],
      },
      /inet\.datagrams\.0\.from\.address: not an ipv6 address/,
    ],
    [
      {
        ...listener,
        proto: "udp",
        state: "closed",
        datagrams: [{ from: { address: "::1", port: 5 }, data: "not base64!" }],
      },
      /inet\.datagrams\.0\.data: expected base64/,
    ],
    [
      {
        ...listener,
        state: "established",
        peer: { address: "::1", port: 1 },
        tcp: {
          peerInTree: true,
          sndSeq: 1,
          rcvSeq: 1,
          sendQueue: "AAAA",
          unsent: 4,
          recvQueue: "",
          mss: 1460,
          wscale: null,
          sack: false,
          timestamps: false,
          timestamp: 0,
          window: { sndWl1: 0, sndWnd: 0, maxWindow: 0, rcvWnd: 0, rcvWup: 0 },
        },
      },
      /inet\.tcp\.unsent: more unsent bytes/,
    ],
  ];
  for (const [inet, re] of cases) {
    assert.match(socketRecordProblem({ ...base, inet }) ?? "accepted", re);
  }
});

Deno.test("net: /proc/net remote addresses of ping and raw sockets decode", () => {
  assert.equal(remoteAddress("0100007F"), "127.0.0.1");
  assert.equal(remoteAddress("0B00007F"), "127.0.0.11");
  assert.equal(remoteAddress("00000000000000000000000001000000"), "::1");
  assert.equal(remoteAddress("000080FE000000000000000001000000"), "fe80::1");
});
